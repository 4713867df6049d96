r"""CE²L (Dai et al.) on RegDB: the paper's setting, one model per trial.

The method of configs/base.py (BDTR two-stream AlexNet at 227×227, P=64 K=1, ℓ_cross + 0.1·ℓ_intra
+ LSR, SGD lr 1e-3) on RegDB's ten random splits. `--config.data.trial=N` runs split N only;
`data.trial=0` (the default) runs the ten splits of `data.trials` in turn, each in its own
folder `<workdir>/trial<N>/` (CycleGAN, conversion, re-ID model, evaluation per split), and
`<workdir>/results.md` pools them: mean ± std over the splits, visible→thermal and
thermal→visible. RegDB's images are small (about 128×64), so the CycleGAN works at 128×64 with
6 residual blocks (the reference's 128-pixel generator) and 100k steps (our choice, for time).

  python -m ce2l_jax.tfds_build tfds_builders/regdb --manual_dir=/data/manual --data_dir=~/tensorflow_datasets
  python run.py --config=configs/regdb.py --config.init=/data/bvlc_alexnet.npy --workdir=workdirs/regdb
  python run.py --config=configs/regdb.py --config.data.trial=3 --workdir=workdirs/regdb3   # one split
  python run.py --config=configs/regdb.py:trial=3 --workdir=workdirs/regdb3                # the same

Targets (paper, visible→thermal, mean of the 10 splits): rank-1 47.50 %, mAP 44.21 %, with the
ImageNet-pretrained AlexNet (`--config.init`).

Time (estimated, not measured: no accelerator was available): per split on one H100, CycleGAN
100k steps ≈ 30–45 min, conversion < 1 min, re-ID 60 epochs × 33 steps ≈ 2–4 min, evaluation
< 1 min; ten splits ≈ 6–8 h.
"""

from configs import base


def get_config(arg=None):
  c = base.get_config()
  c.data.name = "regdb"
  c.data.protocol = "regdb"
  c.cyclegan.image_size = (128, 64)
  c.cyclegan.n_blocks = 6
  c.cyclegan.num_steps = 100_000
  c.cyclegan.decay_start = 50_000
  return base.apply_arg(c, arg)
