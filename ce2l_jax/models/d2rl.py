"""D²RL's network (Wang et al., CVPR 2019, "Learning to Reduce Dual-level Discrepancy for
Infrared-Visible Person Re-identification"), built from this project's CycleGAN and ResNet pieces.

D²RL cascades two sub-networks trained jointly (paper Sec. 3):
- **image level** T_I (Sec. 3.1): a visible image x_v is translated to its infrared version
  x̂_i = G(x_v) and an infrared image x_i to its visible version x̂_v = F(x_i). Each image is then
  represented by a **unified multi-spectral image** with the colour channels of the visible
  (real or generated) image and the channel of the infrared one: X_v = [x_v, x̂_i],
  X_i = [x̂_v, x_i] — four channels (RGB + one infrared channel), so the two modalities look alike
  at the input of the next network;
- **feature level** T_F (Sec. 3.2): one shared network (ResNet-50 in the paper) embeds the
  unified images; its identity and triplet losses reach back into the generators in joint
  training.

Here G = `gen_rgb2ir`, F = `gen_ir2rgb` are the project's CycleGAN ResNet generators
(`ce2l_jax.models.cyclegan.ResnetGenerator`, images in [-1, 1]; the discriminators live with the
trainer); T_F is `ViReIDResNet` with every layer shared (`specific_stages=0`), fed the four-channel
images. Reduction, stated: the paper's image-level translators are variational auto-encoders with
a shared latent space (UNIT-style encoders/decoders, KL and reconstruction terms, Sec. 3.1); we use
the CycleGAN generators this project already trains (adversarial + cycle terms, the trainer's
objective in `ce2l_jax.trainers.d2rl`), so D²RL here starts from this project's CycleGAN stage.
The infrared channel of a unified image is the mean of the (real or generated) infrared image's
three channels.

Call contract: that of `ce2l_jax.models.reid` on ImageNet-normalised inputs (the re-ID trainers'
normalisation); the network maps them back to [-1, 1] for the generators. Paired form (2, N, H, W, 3)
→ (emb (2, N, D), out) with `out` also holding, in [-1, 1]: `real` (2, N, H, W, 3),
`fake` (2, N, …) = (G(x_v), F(x_i)) — slot 0 is the generated *infrared*, slot 1 the generated
*visible* image — and `rec` = (F(G(x_v)), G(F(x_i))) (the cycle reconstructions), plus `unified`
(2, N, H, W, 4). Single form: the unified image of that modality through T_F.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from ce2l_jax.models.baselines import ViReIDResNet, intensity
from ce2l_jax.models.cyclegan import ResnetGenerator
from ce2l_jax.models.resnet import RESNET50_BLOCKS

# ImageNet statistics of the re-ID input normalisation (ce2l_jax.data.augment.IMAGENET_*).
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def imagenet_to_unit(x: jnp.ndarray) -> jnp.ndarray:
  """ImageNet-normalised (..., 3) → [-1, 1] (the CycleGAN range)."""
  x01 = x * jnp.asarray(_STD, x.dtype) + jnp.asarray(_MEAN, x.dtype)
  return 2.0 * x01 - 1.0


def unified_image(rgb: jnp.ndarray, ir: jnp.ndarray) -> jnp.ndarray:
  """[rgb (…, 3), mean channel of ir (…, 1)] → (…, 4): D²RL's unified multi-spectral image."""
  return jnp.concatenate([rgb, intensity(ir)], axis=-1)


class D2RLNet(nn.Module):
  """Image-level generators (gen_rgb2ir, gen_ir2rgb) → unified images → feature network `reid`."""
  num_classes: int
  ngf: int = 64
  n_blocks: int = 9
  width: int = 64
  blocks: Sequence[int] = RESNET50_BLOCKS
  last_stride: int = 1
  bnneck: bool = False
  fast: bool = True
  dtype: Any = jnp.float32

  def setup(self):
    self.gen_rgb2ir = ResnetGenerator(ngf=self.ngf, n_blocks=self.n_blocks)
    self.gen_ir2rgb = ResnetGenerator(ngf=self.ngf, n_blocks=self.n_blocks)
    self.reid = ViReIDResNet(self.num_classes, width=self.width, blocks=self.blocks,
                             last_stride=self.last_stride, specific_stages=0, input_mode="rgb",
                             bnneck=self.bnneck, fast=self.fast, dtype=self.dtype)

  def __call__(self, images: jnp.ndarray, modality: int | None = None, train: bool = False):
    x = imagenet_to_unit(images.astype(jnp.float32))
    if x.ndim == 5:
      if x.shape[0] != 2 or modality is not None:
        raise ValueError(f"paired images must be (2, N, H, W, 3) without modality, got {x.shape}")
      xv, xi = x[0], x[1]
      fake_ir, fake_rgb = self.gen_rgb2ir(xv), self.gen_ir2rgb(xi)
      uni = jnp.stack([unified_image(xv, fake_ir), unified_image(fake_rgb, xi)])
      emb, out = self.reid(uni, train=train)
      out = dict(out, real=x, fake=jnp.stack([fake_ir, fake_rgb]), unified=uni)
      if train:  # the cycle reconstructions, for the image-level objective
        out["rec"] = jnp.stack([self.gen_ir2rgb(fake_ir), self.gen_rgb2ir(fake_rgb)])
      return emb, out
    if x.ndim != 4 or modality not in (0, 1):
      raise ValueError("single-modality images must be (N, H, W, 3) with modality 0 or 1 "
                       f"(a Python int); got {x.shape}, modality={modality!r}")
    if modality == 0:
      uni = unified_image(x, self.gen_rgb2ir(x))
    else:
      uni = unified_image(self.gen_ir2rgb(x), x)
    emb, out = self.reid(uni, modality=int(modality), train=train)
    return emb, dict(out, unified=uni)


D2RL_TINY = dict(ngf=8, n_blocks=2, width=8, blocks=(1, 1, 1, 1))

FACTORIES = {
    "d2rl": lambda num_classes, **kw: D2RLNet(num_classes, **kw),
    "d2rl_tiny": lambda num_classes, **kw: D2RLNet(num_classes, **{**D2RL_TINY, **kw}),
}
# The paper's ResNet-50 works at 256×128 (the CycleGAN's size here); the tiny one at 64×32.
DEFAULT_INPUT_SIZE = {"d2rl": (256, 128), "d2rl_tiny": (64, 32)}
