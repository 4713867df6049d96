r"""D²RL (Wang et al., CVPR 2019, "Learning to Reduce Dual-level Discrepancy for Infrared-Visible
Person Re-identification"): image-level generators turn every image into a unified four-channel
(RGB + infrared) image, a shared ResNet embeds it; the two are trained jointly
(`ce2l_jax/trainers/d2rl.py`, `ce2l_jax/models/d2rl.py`).

  python run.py --config=configs/d2rl.py:synthetic_sysu --workdir=workdirs/d2rl_sysu
  python run.py --config=configs/d2rl.py:synthetic_sysu,runlocal --workdir=/tmp/x     # dry run

Stages: `cyclegan` pre-trains the image-level generators (Sec. 3.3's pre-training; this
project's CycleGAN, the dataset config's settings), `convert` is off, `reid` trains the whole
network jointly from there, `evaluate` as every row.
Reductions and choices, stated (Sec. 3.1 / 3.2 / 3.3):
- translators: the project's CycleGAN ResNet generators and PatchGAN discriminators (LSGAN +
  λ_cyc 10 cycle L1), not the paper's VAE-based ones (no KL / reconstruction terms); no image
  pool and no identity-mapping term in the joint phase;
- unified image: [RGB (real or generated), mean channel of the infrared (generated or real)];
- feature network: one shared ResNet on the four channels — ResNet-50 widths at 256×128 on the
  real datasets (`d2rl`), the `resnet_tiny` widths at 64×32 on the twins (`d2rl_tiny`, generators
  ngf 8 with 2 residual blocks, as configs/synthetic.py's CycleGAN);
- feature loss: identity cross-entropy + batch-hard triplet (margin 0.3, all 2·P·K unified
  images pooled), image-level loss weight 1 (λ_img), generators and discriminators Adam 2e-4,
  β1 0.5; the feature network the dataset config's optimiser (Adam 1e-3 on the twins, AGW's
  SGD schedule on the real datasets).
Paper figures (RegDB | SYSU all-search r1/mAP): 43.4/44.1 | 28.9/29.2.
"""

from configs import rows


def get_config(arg=None):
  dataset, rest = rows.split_arg(arg)
  c = rows.dataset_config(dataset)
  c.convert.enabled = False        # the CycleGAN stage pre-trains the generators only
  if rows.is_synthetic(c):
    c.reid.model = "d2rl_tiny"
  else:
    rows.modern_reid(c)
    c.reid.model = "d2rl"
    c.cyclegan.image_size = (256, 128)
    c.input.update(dict(resize=(256, 128), crop=(256, 128), image_size=(256, 128)))
  c.reid.model_kwargs.ngf = c.cyclegan.ngf
  c.reid.model_kwargs.n_blocks = c.cyclegan.n_blocks
  c.reid.trainer = "d2rl"
  c.reid.update(dict(ce_weight=1.0, lsr_on="none", cross_weight=0.0, intra_weight=0.0,
                     triplet_weight=1.0, triplet_margin=0.3))
  c.d2rl.update(dict(from_cyclegan=True, train_generators=True, image_weight=1.0,
                     lambda_cycle=10.0, gen_lr=2e-4, beta1=0.5))
  return rows.finish(c, "D²RL", rest)
