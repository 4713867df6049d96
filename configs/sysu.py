r"""CE²L (Dai et al.) on SYSU-MM01: the paper's setting.

CycleGAN (ResNet-9 generators, 70×70 PatchGAN, LSGAN, λ_cycle 10, 256×128) converts every
training image RGB↔IR; the BDTR two-stream AlexNet (`bdtr_alexnet`, images resized to 256×256
and randomly cropped to 227×227, P=64 identities × K=1 image per modality) trains on real +
converted images with ℓ_cross (ρ1 0.5) + 0.1·ℓ_intra (ρ2 0.1) + cross-entropy with label
smoothing (ε 0.1) on the converted images, SGD lr 1e-3 (momentum 0.9, weight decay 5e-4), 60
epochs; evaluation: infrared queries against the visible gallery, all-search and indoor-search,
single- and multi-shot, 10 galleries each (the official `rand_perm_cam.mat` draws when the
dataset was built with it).

  python -m ce2l_jax.tfds_build tfds_builders/sysu_mm01 --manual_dir=/data/manual --data_dir=~/tensorflow_datasets
  python run.py --config=configs/sysu.py --config.init=/data/bvlc_alexnet.npy --workdir=workdirs/sysu
  python run.py --config=configs/sysu.py:runlocal --workdir=/tmp/sysu_dry     # a few steps per stage

Targets (paper, all-search single-shot): rank-1 29.52 %, mAP 28.43 %. They assume the
ImageNet-pretrained AlexNet (`--config.init=<bvlc_alexnet.npy>`, see ce2l_jax/models/pretrained.py);
from scratch expect far less. Ablations: `--config.cyclegan.enabled=false` (no conversion),
`--config.reid.lsr_on=none` (no LSR), `--config.reid.intra_weight=0` (no ℓ_intra).

Time (estimated, not measured: no accelerator was available to this project's runs): on one
H100, CycleGAN 200k steps at batch 1 ≈ 2–3 h (the bulk), conversion of the 34k training images
≈ 5 min, re-ID 60 epochs × 348 steps ≈ 20–40 min (host JPEG decoding bound; raise
`input.threads`), evaluation ≈ 2 min. On the project's 2-core CPU only `:runlocal` is practical.
"""

from configs import base


def get_config(arg=None):
  c = base.get_config()
  c.data.name = "sysu_mm01"
  return base.apply_arg(c, arg)
