r"""GSM, the generalized similarity measure (Lin, Wang, Zuo, Feng, Zhang, TPAMI 2017), as a
row of the comparison table: learned on the training split over hand-crafted descriptors.

  python run.py --config=configs/gsm.py:synthetic_sysu --workdir=workdirs/gsm_sysu
  python run.py --config=configs/gsm.py:synthetic_regdb,runlocal --workdir=/tmp/x    # dry run

The similarity S(x, y) = [x; y; 1]ᵀ [[A, C, d], [Cᵀ, B, e], [dᵀ, eᵀ, f]] [x; y; 1] of a visible x
and an infrared y (§3), factorised as the paper does (A = −L_AᵀL_A, B = −L_BᵀL_B, C = L_XᵀL_Y),
learned with its hinge objective on balanced cross-modality pairs (`ce2l_jax.metric_learning`).
Choices (the paper learns GSM inside a CNN, §4; the table's GSM row does not say which features
it used): LOMO descriptors (`ce2l_jax/features/lomo.py`), whitened PCA to 128 dims, full-rank
factors started at the identity (= Euclidean), Adam lr 1e-3, 2,000 minibatches of 512 pairs,
λ = 1e-4. Row 'GSM', plus raw pixels.
Paper figures (RegDB | SYSU all-search r1/r10/r20/mAP): 17.28/34.47/45.26/15.06 | 5.29/33.71/52.95/8.00.
"""

from configs import lomo


def get_config(arg=None):
  return lomo.handcrafted_row(arg, "lomo", "GSM", metrics=("gsm",))
