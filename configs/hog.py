r"""HOG (Dalal & Triggs, CVPR 2005; scikit-image) as a hand-crafted row of the comparison table.

  python run.py --config=configs/hog.py:synthetic_sysu --workdir=workdirs/hog_sysu
  python run.py --config=configs/hog.py:synthetic_regdb,runlocal --workdir=/tmp/x    # dry run

The descriptor (`ce2l_jax/features/hog.py`): 9 orientations, 8×8 cells, 2×2-cell blocks,
L2-Hys, the strongest colour channel's gradient: 3,780 dims at 128×64. Rows 'HOG' (Euclidean,
the paper's: Wu et al. ICCV 2017's Euclidean row on SYSU-MM01) and 'HOG + XQDA' (ours), plus raw
pixels; see configs/lomo.py for the run's stages.
Paper figures (RegDB | SYSU all-search r1/r10/r20/mAP): 13.49/33.22/43.66/10.31 | 2.76/18.25/31.91/4.24.
"""

from configs import lomo


def get_config(arg=None):
  return lomo.handcrafted_row(arg, "hog", "HOG")
