r"""MLBP, multi-scale block LBP histograms (Liao, Zhu, Lei, Zhang, Li, ICB 2007, the work the
VI-ReID tables' "MLBP" row cites), as a hand-crafted row of the comparison table.

  python run.py --config=configs/mlbp.py:synthetic_sysu --workdir=workdirs/mlbp_sysu
  python run.py --config=configs/mlbp.py:synthetic_regdb,runlocal --workdir=/tmp/x    # dry run

The descriptor (`ce2l_jax/features/lbp.py`): MB-LBP codes at block scales 1, 2, 3 (codes equal
scikit-image's `multiblock_lbp`), uniform (u2, 59-bin) histograms over an 8 × 4 grid of cells,
L1 per cell: 5,664 dims at 128×64. Rows 'MLBP' (Euclidean, the paper's: Ye et al. AAAI 2018) and
'MLBP + XQDA' (ours), plus raw pixels; see configs/lomo.py for the run's stages.
Paper figures (RegDB | SYSU all-search r1/r10/r20/mAP): 2.02/7.33/10.90/6.77 | 2.12/16.23/28.32/3.86.
"""

from configs import lomo


def get_config(arg=None):
  return lomo.handcrafted_row(arg, "mlbp", "MLBP")
