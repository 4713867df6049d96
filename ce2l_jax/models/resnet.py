"""ResNet bottleneck backbone pieces (torchvision ResNet-50 v1.5 layout) for the AGW re-ID model.

torchvision layout: stem = conv1 7×7/2 pad 3 (no bias) → bn1 → ReLU → max-pool 3/2 pad 1; then
layer1..layer4 of bottleneck blocks (1×1 → 3×3 → 1×1 ×4, stride on the 3×3 conv — "v1.5";
a `downsample` 1×1 conv + BN on the first block of a stage when its stride or width changes).
Module and parameter names mirror torchvision's state-dict keys (`layer2_0/conv1/kernel` ↔
`layer2.0.conv1.weight`, `downsample_conv` ↔ `downsample.0`, `downsample_bn` ↔ `downsample.1`),
which is what `ce2l_jax.models.pretrained.load_torchvision_resnet` relies on.

All padding is explicit and symmetric (PyTorch semantics; flax's "SAME" pads stride-2 convs
asymmetrically). BatchNorm: momentum 0.9 (PyTorch 0.1), eps 1e-5, batch statistics when `train`,
running variance updated with the unbiased batch variance as PyTorch does
(`ce2l_jax.models.norm.BatchNorm`). tests/test_reference.py checks every stage, eval and train
mode, against torchvision's own classes.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from ce2l_jax.models.conv import Conv
from ce2l_jax.models.layers import materialize, max_pool
from ce2l_jax.models.norm import BatchNorm

RESNET50_BLOCKS = (3, 4, 6, 3)
EXPANSION = 4

# torchvision initialises convs with kaiming_normal(fan_out, relu), BN with scale 1, bias 0.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def batch_norm(train: bool, name: str, dtype: Any = jnp.float32) -> BatchNorm:
  """A PyTorch-equivalent BatchNorm (momentum 0.9 ≡ torch 0.1, eps 1e-5, unbiased running var)."""
  return BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
                   name=name)


def conv(features: int, kernel: int, stride: int, name: str, dtype: Any) -> Conv:
  """Bias-free conv with symmetric padding kernel // 2 (PyTorch's `padding=k//2`); `Conv` is
  `nn.Conv` in the process's default form (`ce2l_jax.models.conv`)."""
  p = kernel // 2
  return Conv(features, (kernel, kernel), (stride, stride), padding=((p, p), (p, p)),
                 use_bias=False, kernel_init=conv_init, dtype=dtype, name=name)


class Bottleneck(nn.Module):
  """torchvision Bottleneck: 1×1 planes → 3×3 planes (stride) → 1×1 planes·4, residual, ReLU."""
  planes: int
  stride: int = 1
  downsample: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    bn = lambda name: batch_norm(train, name, self.dtype)
    cv = lambda width, k, s, name: conv(width, k, s, name, self.dtype)
    y = nn.relu(bn("bn1")(cv(self.planes, 1, 1, "conv1")(x)))
    y = nn.relu(bn("bn2")(cv(self.planes, 3, self.stride, "conv2")(y)))
    y = bn("bn3")(cv(self.planes * EXPANSION, 1, 1, "conv3")(y))
    if self.downsample:
      x = bn("downsample_bn")(cv(self.planes * EXPANSION, 1, self.stride, "downsample_conv")(x))
    return materialize(nn.relu(x + y))


def stage_specs(width: int, blocks: Sequence[int],
                last_stride: int) -> list[tuple[str, int, int, bool]]:
  """(name, planes, stride, downsample) of every bottleneck block, in order (`layer1_0`, …).

  Stage s (1-based) has planes width·2^(s−1); stride 1 for layer1, 2 for layer2/3 and
  `last_stride` for layer4 (re-ID uses 1: a 2× larger final map). The first block of a stage
  downsamples (its input width is width for layer1, planes·4 of the previous stage otherwise).
  """
  specs, cin = [], width
  for s, n in enumerate(blocks, start=1):
    planes = width * 2 ** (s - 1)
    stride = 1 if s == 1 else (last_stride if s == 4 else 2)
    for j in range(n):
      first = j == 0
      specs.append((f"layer{s}_{j}", planes, stride if first else 1,
                    first and (stride != 1 or cin != planes * EXPANSION)))
      cin = planes * EXPANSION
  return specs


class ResNetStem(nn.Module):
  """conv1 → bn1 → ReLU → max-pool 3/2 pad 1, then the bottleneck blocks in `blocks` (may be none).

  Used once per modality in AGW (the modality-specific part); `blocks` holds layer1's specs when
  layer1 is modality-specific too.
  """
  width: int = 64
  blocks: Sequence[tuple[str, int, int, bool]] = ()
  fast: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x = Conv(self.width, (7, 7), (2, 2), padding=((3, 3), (3, 3)), use_bias=False,
                kernel_init=conv_init, dtype=self.dtype, name="conv1")(x)
    x = nn.relu(batch_norm(train, "bn1", self.dtype)(x))
    x = max_pool(x, 3, 2, padding=1, fast=self.fast)
    for name, planes, stride, down in self.blocks:
      x = Bottleneck(planes, stride, down, self.dtype, name=name)(x, train)
    return x
