r"""LOMO (Liao, Hu, Zhu, Li, CVPR 2015) as a hand-crafted row of the comparison table.

  python run.py --config=configs/lomo.py:synthetic_sysu --workdir=workdirs/lomo_sysu
  python run.py --config=configs/lomo.py:synthetic_regdb --workdir=workdirs/lomo_regdb
  python run.py --config=configs/lomo.py:synthetic_sysu,runlocal --workdir=/tmp/x    # dry run
  python run.py --config=configs/lomo.py:sysu_mm01 --workdir=workdirs/lomo_sysu_mm01

The descriptor (`ce2l_jax/features/lomo.py`, written from the paper: Retinex, joint HSV and
two-scale SILTP histograms over 10×10 windows with step 5, maximal occurrence along horizontal
strips, a three-scale pyramid, log transform, L2 normalisation) of every image resized to 128×64,
then two rows from one run:
  'LOMO'         Euclidean distance: the paper's row (Wu et al. ICCV 2017 report LOMO on SYSU-MM01
                 with Euclidean distance among other metrics; CE²L's table and Ye et al. AAAI
                 2018 copy the Euclidean one: docs/notes/paper_table.md);
  'LOMO + XQDA'  XQDA (Liao et al. 2015, §3) learned on the training split, visible against
                 infrared (ours, beside the paper's row);
plus the raw-pixel row. No network, no CycleGAN: the `reid` stage fits XQDA
(`ce2l_jax/trainers/handcrafted.py`), the `evaluate` stage scores the test split with CE²L's
protocol code. The metric sees a seeded subset of at most 4,000 training images per modality
on the real datasets (`handcrafted.max_train_images`; 34k × 26,960-dim descriptors of SYSU-MM01
do not fit a CPU's XQDA) and 300 on the twins, where the RegDB twin also runs its first split
only and SYSU's twin only all-search single-shot (reduced scale for the CPU budget of a shared
2-core machine; the test sets are whole). The raw-pixel row comes from configs/hog.py's run.
Paper figures (RegDB | SYSU all-search r1/r10/r20/mAP): 0.85/2.47/4.10/2.28 | 1.75/14.14/26.63/3.48.
"""

from configs import base, rows

REAL_MAX_TRAIN_IMAGES = 4000
# The twins at a reduced scale (the CPU budget of a shared 2-core machine): the metric sees 300
# training images per modality, the RegDB twin runs its first split only, SYSU's twin only the
# table's setting (all-search single-shot, 10 galleries).
TWIN_MAX_TRAIN_IMAGES = 300
TWIN_REGDB_TRIALS = (1,)


def handcrafted_row(arg, feature: str, name: str, metrics=("euclidean", "xqda")):
  """A hand-crafted row: `feature` at 128×64, the rows of `metrics`, no network, no conversion."""
  dataset, rest = rows.split_arg(arg)
  c = rows.dataset_config(dataset)
  c.cyclegan.enabled = False
  c.reid.trainer = "handcrafted"
  c.input.image_size = (128, 64)
  c.input.eval_batch_size = 64
  c.eval.normalize_features = False   # the rows' own features: L2-normalised (Euclidean) or embeddings
  c.eval.baseline = feature == "hog"  # the table's raw-pixel row, once
  c.handcrafted.feature = feature
  c.handcrafted.metrics = tuple(metrics)
  if rows.is_synthetic(c):
    c.handcrafted.max_train_images = TWIN_MAX_TRAIN_IMAGES
    if c.data.protocol == "regdb":
      c.data.trials = TWIN_REGDB_TRIALS
    else:
      c.eval.update(dict(sysu_modes=("all",), sysu_shots=("single",)))
  else:
    c.handcrafted.max_train_images = REAL_MAX_TRAIN_IMAGES
  if base.parse_arg(rest).runlocal:
    c.handcrafted.max_train_images = 48
    c.handcrafted.gsm.update(dict(steps=20, pca_dims=16))
  return rows.finish(c, name, rest)


def get_config(arg=None):
  return handcrafted_row(arg, "lomo", "LOMO")
