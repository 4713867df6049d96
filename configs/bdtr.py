r"""BDTR, the paper's "BaseLine" row (Ye et al., IJCAI 2018, "Visible Thermal Person
Re-Identification via Dual-Constrained Top-Ranking"): CE²L's re-ID network and losses without the
conversion and without label smoothing — the two-stream network trained with the bi-directional
top-ranking loss ℓ_cross (ρ1 0.5) + 0.1 · ℓ_intra (ρ2 0.1) + plain identity cross-entropy.

  python run.py --config=configs/bdtr.py:synthetic_sysu --workdir=workdirs/bdtr_sysu
  python run.py --config=configs/bdtr.py:synthetic_sysu,runlocal --workdir=/tmp/x     # dry run
  python run.py --config=configs/bdtr.py:sysu_mm01 --config.init=/data/bvlc_alexnet.npy --workdir=...

Network and data: configs/ce2l.py's for the same dataset (BDTR's two-stream AlexNet on the real
datasets; the two-stream `resnet_tiny` on the synthetic twins), `cyclegan.enabled=False`,
`reid.lsr_on='none'`. CE²L's paper (Sec. 4, "BaseLine") defines the row this way.
Paper figures (RegDB | SYSU all-search r1/mAP): 33.47/31.83 | 17.01/19.66.
"""

from configs import rows


def get_config(arg=None):
  dataset, rest = rows.split_arg(arg)
  c = rows.dataset_config(dataset)
  c.cyclegan.enabled = False
  c.reid.lsr_on = "none"
  return rows.finish(c, "BDTR (BaseLine)", rest)
