"""CycleGAN networks for RGB ↔ infrared conversion (Zhu et al. 2017, as used by CE²L).

Roles, named by domain (architecture.md):
  gen_rgb2ir   G : visible → infrared        (the reference's netG_A)
  gen_ir2rgb   F : infrared → visible        (the reference's netG_B)
  disc_ir      D_IR : real IR vs G(rgb)      (the reference's netD_A)
  disc_rgb     D_RGB: real RGB vs F(ir)      (the reference's netD_B)

`ResnetGenerator` is the reference "resnet_9blocks"/"resnet_6blocks" generator: reflect pad +
7×7 conv stem, two stride-2 3×3 downsamplings, `n_blocks` residual blocks, two stride-2
transposed-conv upsamplings, reflect pad + 7×7 conv, tanh. `PatchDiscriminator` is the 70×70
PatchGAN (`n_layers=3`): 4×4 convs 64-128-256-512, leaky ReLU 0.2, instance norm on every layer
but the first, a 1-channel patch map out. Instance norm has no affine parameters and every
conv has a bias, as in the reference (`norm='instance'`), so the ngf=64 ResNet-9 generator has
11,378,179 parameters and the ndf=64 PatchGAN 2,764,737. Weights are N(0, 0.02), biases 0.

Images are NHWC floats in [-1, 1]. No loss code here (see `ce2l_jax.losses`). `Conv` /
`ConvTranspose` (`ce2l_jax.models.conv`) are flax's, same parameters, in the process's default
form (custom-VJP gradients as dots on CPU, XLA's convolutions on GPU).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ce2l_jax.models.conv import Conv, ConvTranspose
from ce2l_jax.models.layers import compute_dtype, materialize

ROLES = ("gen_rgb2ir", "gen_ir2rgb", "disc_rgb", "disc_ir")


def _reflect_pad(x: jnp.ndarray, p: int) -> jnp.ndarray:
  return jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")


def _instance_norm(dtype: Any = jnp.float32) -> nn.Module:
  # torch.nn.InstanceNorm2d defaults: eps 1e-5, affine=False (statistics in float32 for any dtype).
  return nn.InstanceNorm(epsilon=1e-5, use_scale=False, use_bias=False, dtype=dtype)


class ResnetBlock(nn.Module):
  """x + [reflect-pad, conv3×3, IN, ReLU, reflect-pad, conv3×3, IN](x)."""
  features: int
  init_std: float = 0.02
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    init = nn.initializers.normal(self.init_std)
    conv = lambda: Conv(self.features, (3, 3), padding="VALID", kernel_init=init, dtype=self.dtype)
    y = nn.relu(_instance_norm(self.dtype)(conv()(_reflect_pad(x, 1))))
    return materialize(x + _instance_norm(self.dtype)(conv()(_reflect_pad(y, 1))))


def output_dtype(compute: Any) -> Any:
  """The networks' output dtype: float32 for a float32 or bfloat16 compute dtype (mixed
  precision: losses in float32), float64 for float64 (reference comparisons)."""
  return jnp.promote_types(compute, jnp.float32)


class ResnetGenerator(nn.Module):
  """The reference ResNet generator; height and width must be multiples of 4."""
  ngf: int = 64
  n_blocks: int = 9
  out_channels: int = 3
  init_std: float = 0.02
  dtype: Any = jnp.float32   # compute dtype (bfloat16 on GPUs); output float32 (float64 if dtype is)

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    init = nn.initializers.normal(self.init_std)
    norm, dt = lambda: _instance_norm(self.dtype), self.dtype
    x = x.astype(dt)
    h = Conv(self.ngf, (7, 7), padding="VALID", kernel_init=init, dtype=dt, name="stem")(_reflect_pad(x, 3))
    h = nn.relu(norm()(h))
    for i in range(2):  # downsampling: ngf → 2ngf → 4ngf, H/4 × W/4
      h = Conv(self.ngf * 2 ** (i + 1), (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)),
               kernel_init=init, dtype=dt, name=f"down{i}")(h)
      h = nn.relu(norm()(h))
    for i in range(self.n_blocks):
      h = ResnetBlock(self.ngf * 4, self.init_std, dt, name=f"block{i}")(h)
    for i in range(2):  # upsampling, torch ConvTranspose2d(k=3, s=2, p=1, output_padding=1)
      h = ConvTranspose(self.ngf * 2 ** (1 - i), (3, 3), strides=(2, 2), padding=((1, 2), (1, 2)),
                        kernel_init=init, dtype=dt, name=f"up{i}")(h)
      h = nn.relu(norm()(h))
    h = Conv(self.out_channels, (7, 7), padding="VALID", kernel_init=init, dtype=dt, name="head")(_reflect_pad(h, 3))
    return jnp.tanh(h).astype(output_dtype(dt))


class PatchDiscriminator(nn.Module):
  """PatchGAN: a map of real/fake scores, one per (receptive-field) patch; 70×70 at n_layers=3."""
  ndf: int = 64
  n_layers: int = 3
  init_std: float = 0.02
  dtype: Any = jnp.float32   # compute dtype (bfloat16 on GPUs); output float32 (float64 if dtype is)

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    init = nn.initializers.normal(self.init_std)
    pad, dt = ((1, 1), (1, 1)), self.dtype
    h = Conv(self.ndf, (4, 4), strides=(2, 2), padding=pad, kernel_init=init, dtype=dt,
             name="conv0")(x.astype(dt))
    h = nn.leaky_relu(h, 0.2)
    for n in range(1, self.n_layers + 1):  # stride 2 for layers 1..n_layers-1, stride 1 for the last
      stride = 2 if n < self.n_layers else 1
      h = Conv(self.ndf * min(2 ** n, 8), (4, 4), strides=(stride, stride), padding=pad,
               kernel_init=init, dtype=dt, name=f"conv{n}")(h)
      h = nn.leaky_relu(_instance_norm(dt)(h), 0.2)
    return Conv(1, (4, 4), padding=pad, kernel_init=init, dtype=dt, name="out")(h).astype(output_dtype(dt))


def build_models(cfg: Any) -> dict[str, nn.Module]:
  """The four networks from a `cyclegan` config section (ngf, ndf, n_blocks, n_layers_d, init_std,
  compute_dtype)."""
  init_std = float(cfg.get("init_std", 0.02))
  dt = compute_dtype(cfg.get("compute_dtype", "float32"), "cyclegan.compute_dtype")
  gen = lambda: ResnetGenerator(ngf=cfg.ngf, n_blocks=cfg.n_blocks, init_std=init_std, dtype=dt)
  disc = lambda: PatchDiscriminator(ndf=cfg.ndf, n_layers=cfg.n_layers_d, init_std=init_std,
                                    dtype=dt)
  return {"gen_rgb2ir": gen(), "gen_ir2rgb": gen(), "disc_rgb": disc(), "disc_ir": disc()}


def patch_shape(image_size: tuple[int, int], n_layers: int) -> tuple[int, int]:
  """Spatial size of the PatchGAN output for an H×W input (raises if it would be empty)."""
  def out(s: int) -> int:
    for _ in range(n_layers):
      s = (s + 2 - 4) // 2 + 1
    for _ in range(2):
      s = s + 2 - 4 + 1
    return s
  h, w = (out(int(s)) for s in image_size)
  if h < 1 or w < 1:
    raise ValueError(f"cyclegan.image_size={tuple(image_size)} is too small for a PatchGAN with "
                     f"n_layers_d={n_layers} (output {h}×{w}); use larger images or fewer layers")
  return h, w


def param_shapes(models: dict[str, nn.Module], image_size: tuple[int, int]) -> dict[str, Any]:
  """`{role: params}` as `jax.ShapeDtypeStruct`s (tracing only, nothing compiled)."""
  x = jax.ShapeDtypeStruct((1, *image_size, 3), jnp.float32)
  key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype)
  return {r: jax.eval_shape(lambda k, x, m=models[r]: m.init(k, x)["params"], key, x) for r in ROLES}


def init_params(models: dict[str, nn.Module], seed: int, image_size: tuple[int, int],
                init_std: float = 0.02) -> dict[str, Any]:
  """`{role: params}` drawn on the host: kernels N(0, init_std), biases 0 (the reference's init).

  The same distribution as the modules' own initialisers, drawn with numpy in one pass: under
  XLA:CPU every `jax.random.normal` leaf of a jitted `init` is compiled on its own (10 leaves took
  40 s on this project's shared 2-core machines; one host draw of 11M values takes ~0.2 s).
  """
  shapes = param_shapes(models, image_size)
  out = {}
  for i, r in enumerate(ROLES):
    rng = np.random.default_rng([int(seed), i])
    out[r] = jax.tree_util.tree_map_with_path(
        lambda path, s, rng=rng: (rng.normal(0.0, init_std, s.shape).astype(s.dtype)
                                  if path[-1].key == "kernel" else np.zeros(s.shape, s.dtype)),
        shapes[r])
  return out


def count_params(params: Any) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(params))
