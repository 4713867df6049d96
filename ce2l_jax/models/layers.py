"""Layers shared by the re-ID backbones, written in the forms that are fast on XLA:CPU.

Measured on this project's CPUs (docs/benchmarks.md (reid section), /work/shared/STACK.md):
- a grouped convolution through `feature_group_count` costs as much as a dense convolution with
  twice the FLOPs; one convolution per group plus a concat is 2–5× faster with the same numbers,
  and `ce2l_jax.models.conv` also runs the gradients as dots (docs/notes/fast_convolution.md);
- max-pool backward through `reduce_window` (select-and-scatter) is slow; a max over the k×k
  strided slices gives the same forward and gradient (when a window has no ties) and is ~6× faster;
- local response normalisation through `reduce_window` over channels is already fast.
Each fast form has a `fast=False` plain twin, tested to give the same numbers.

All images are NHWC.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ce2l_jax.models.conv import Conv

Array = jnp.ndarray


COMPUTE_DTYPES = ("float32", "bfloat16", "float64")


def compute_dtype(name: str, key: str = "compute_dtype") -> Any:
  """The numpy dtype of a config's compute dtype (float32 | bfloat16 | float64; mixed precision
  keeps the parameters, the master weights in the optimiser and the losses in float32; float64,
  for reference comparisons, needs 64-bit JAX and float64 parameters)."""
  if str(name) not in COMPUTE_DTYPES:
    raise ValueError(f"{key}={name!r}: use one of {COMPUTE_DTYPES}")
  if str(name) == "float64" and not jax.config.jax_enable_x64:
    raise ValueError(f"{key}='float64' needs 64-bit JAX: set JAX_ENABLE_X64=1 (or "
                     "jax.config.update('jax_enable_x64', True)) or use float32")
  return jnp.dtype(str(name))


def materialize(x: Array) -> Array:
  """`x` written to memory once, on CPU: `lax.optimization_barrier`, the identity in value and
  gradient. A residual network's block output `relu(x + y)` (ResNet) or `x + y` (the CycleGAN's
  blocks) is an element-wise function of the previous block's output; XLA:CPU fuses such chains
  into each consumer, so without the barrier every later fusion — including the transposed
  copies that the weight gradients of 1×1 convolutions read — recomputes the residual additions
  of a whole stage from the convolutions' outputs. Measured (benchmarks/profile_step.py, AGW
  ResNet-50 4+4 at 288×144, quiet 2-core EPYC): 2.10 → 1.30 s per train step. Other backends:
  the identity, no barrier (their fusion is not known to duplicate this way)."""
  return lax.optimization_barrier(x) if jax.default_backend() == "cpu" else x


def _pairs(v: int | Sequence[int]) -> tuple[int, int]:
  return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def max_pool(x: Array, window: int | Sequence[int] = 3, stride: int | Sequence[int] = 2,
             padding: int | Sequence[int] = 0, fast: bool = True) -> Array:
  """Max pooling of NHWC `x`, floor output size ((H + 2p − k) // s + 1), padding with −inf.

  `fast=True` takes the max over the k×k strided slices of `x` (backward: k² cheap selects);
  `fast=False` is `flax.linen.max_pool` (`reduce_window`, backward by select-and-scatter). Same
  forward; same gradient wherever a window's maximum is unique (ties share the gradient in the
  fast form, go to one element in the plain form).
  """
  (kh, kw), (sh, sw), (ph, pw) = _pairs(window), _pairs(stride), _pairs(padding)
  if not fast:
    return nn.max_pool(x, (kh, kw), (sh, sw), padding=((ph, ph), (pw, pw)))
  if ph or pw:
    x = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=-jnp.inf)
  n, h, w, c = x.shape
  ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
  if ho < 1 or wo < 1:
    raise ValueError(f"max_pool: input {h}x{w} (padded) is smaller than the {kh}x{kw} window")
  out = None
  for i in range(kh):
    for j in range(kw):
      s = lax.slice(x, (0, i, j, 0), (n, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c),
                    (1, sh, sw, 1))
      out = s if out is None else jnp.maximum(out, s)
  return out


def local_response_norm(x: Array, size: int = 5, alpha: float = 1e-4, beta: float = 0.75,
                        k: float = 1.0) -> Array:
  """Caffe's ACROSS_CHANNELS LRN: x_c / (k + α/n · Σ_{c' ∈ window(c)} x_c'²)^β.

  The window has `size` channels centred on c ((size−1)/2 each side, zero beyond the edges); the
  sum is a `reduce_window` over the channel axis (a concrete numpy 0 as init, so JAX sees a
  differentiable window sum). BVLC AlexNet: size 5, α = 1e-4, β = 0.75, k = 1
  (TensorFlow's `tf.nn.lrn(radius=2, alpha=2e-5)` is the same layer with α/n pre-divided).
  """
  lo = (size - 1) // 2
  sq = lax.reduce_window(jnp.square(x), np.array(0, x.dtype), lax.add, (1, 1, 1, size),
                         (1, 1, 1, 1), ((0, 0), (0, 0), (0, 0), (lo, size - 1 - lo)))
  return x / jnp.power(k + (alpha / size) * sq, beta)


def GroupedConv(features: int, kernel_size: int | Sequence[int], strides: int | Sequence[int] = 1,  # noqa: N802
                padding: int | Sequence[int] | str = 0, groups: int = 1, use_bias: bool = True,
                fast: bool = True, dtype: Any = jnp.float32, **kwargs: Any) -> Conv:
  """2-D convolution with `groups` input/output channel groups (Caffe/AlexNet `group`): a
  `ce2l_jax.models.conv.Conv` module (so the parameters and the code are that module's).

  Parameters have the layout of `nn.Conv(feature_group_count=groups)`: `kernel`
  (kh, kw, in/groups, features) where output channels [g·F/G, (g+1)·F/G) read input group g, and
  `bias` (features,). `padding` is an explicit symmetric int (Caffe's `pad`), or a string.
  `fast=True` runs `ce2l_jax.models.conv.conv2d` in the process's default form ("auto": on CPU
  the custom-VJP "mixed" form for grouped and 1×1 convolutions — one XLA convolution per group
  forward, gradients as dots); `fast=False` runs one `feature_group_count` convolution (`lax.conv_general_dilated`)
  and its autodiff gradients. Same parameters, same numbers. `kwargs`: `kernel_init`,
  `bias_init`, `name`.
  """
  return Conv(features, kernel_size, strides, padding, groups, use_bias,
              impl=None if fast else "native", dtype=dtype, **kwargs)


class GeM(nn.Module):
  """Generalised-mean pooling over H, W: (mean_hw max(x, eps)^p)^(1/p) → (N, C).

  p = 1 is average pooling, p → ∞ max pooling. AGW uses p = 3 fixed; `learnable=True` makes p a
  scalar parameter `p` (initialised at `p`). The clamp at `eps` keeps x^p and its gradient finite.
  """
  p: float = 3.0
  learnable: bool = False
  eps: float = 1e-6

  @nn.compact
  def __call__(self, x: Array) -> Array:
    p = (self.param("p", nn.initializers.constant(self.p), (), jnp.float32)
         if self.learnable else jnp.asarray(self.p, jnp.float32))
    x = jnp.maximum(x.astype(jnp.float32), self.eps)
    return jnp.power(jnp.mean(jnp.power(x, p), axis=(-3, -2)), 1.0 / p)
