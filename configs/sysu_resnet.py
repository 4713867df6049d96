r"""CE²L with a modern re-ID network on SYSU-MM01: ResNet-50 AGW-style, derived from sysu.py.

Differs from configs/sysu.py only in the re-ID part: `resnet50_agw` (two modality-specific
stems, shared ResNet-50 layers with last stride 1, GeM pooling, BN-neck; retrieval on the
BN-neck feature), 288×144 inputs with the modern pipeline (P=8 identities × K=4 images per
modality, pad-10 random crop, flip, random erasing p=0.5, CAJ channel augmentation
(`adap_gray`) on the visible images), AGW's schedule (SGD lr 0.1, linear warm-up over 10
epochs, ×0.1 at epochs 40 and 70, 80 epochs), flip-averaged test features. The CycleGAN, the
conversion and the CE²L losses (ℓ_cross + 0.1·ℓ_intra + LSR on converted images) are sysu.py's.

  python run.py --config=configs/sysu_resnet.py --config.init=/data/resnet50.npz --workdir=workdirs/sysu_resnet
  # reuse a configs/sysu.py run's CycleGAN and conversion: copy its cyclegan/ and convert/
  # folders into the new (empty) workdir first; the stages see them finished.

Targets: the modern table, all-search single-shot. For reference (published, not measured here):
AGW rank-1 47.50 / mAP 47.65, AGW + channel augmentation (CAJ, ICCV 2021) 69.88 / 66.89; recent
methods reach ~70–80 rank-1. ImageNet weights are required
(`--config.init=<resnet50.npz>`, torchvision's IMAGENET1K_V1 saved as in
ce2l_jax/models/pretrained.py).

Time (estimated, no accelerator was available to this project's runs): one H100, re-ID
80 epochs × ~700 steps of 64 images at 288×144 ≈ 1.5–2 h, plus the CycleGAN as in sysu.py.
"""

from configs import base, sysu
from ce2l_jax.data import pipeline


def get_config(arg=None):
  c = sysu.get_config()
  c.input = pipeline.default_input_config()
  c.input.channel_aug.mode = "adap_gray"
  c.input.channel_aug.prob = 0.5
  c.reid.update(dict(model="resnet50_agw", lr=0.1, weight_decay=5e-4, schedule="warmup_step",
                     warmup_epochs=10.0, warmup_factor=0.01, decay_epochs=(40, 70), decay_factor=0.1,
                     epochs=80))   # AGW's schedule (Ye et al. 2021), SGD momentum 0.9 as base.py
  c.eval.flip = True
  return base.apply_arg(c, arg)
