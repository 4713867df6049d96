r"""CE²L, the paper's method, as a row of the comparison table: CycleGAN conversion of every
training image, then BDTR's two-stream network on real + converted images with ℓ_cross +
0.1 · ℓ_intra + label smoothing on the converted images.

  python run.py --config=configs/ce2l.py:synthetic_sysu --workdir=workdirs/ce2l_sysu
  python run.py --config=configs/ce2l.py:synthetic_sysu,runlocal --workdir=/tmp/x     # dry run
  python run.py --config=configs/ce2l.py:sysu_mm01 --config.init=/data/bvlc_alexnet.npy --workdir=...

The dataset configs unchanged: configs/sysu.py (sysu_mm01), configs/regdb.py (regdb) — the
paper's settings — and configs/synthetic.py's CPU scale on the twins (tiny CycleGAN at 64×32,
two-stream `resnet_tiny`, Adam).
Paper figures (RegDB | SYSU all-search r1/mAP): 47.50/44.21 | 29.52/28.43.
"""

from configs import rows


def get_config(arg=None):
  dataset, rest = rows.split_arg(arg)
  return rows.finish(rows.dataset_config(dataset), "CE²L", rest)
