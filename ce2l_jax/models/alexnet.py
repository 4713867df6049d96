"""One modality stream of BDTR's two-stream AlexNet: BVLC AlexNet conv1 … fc6, then BatchNorm.

BVLC AlexNet (Krizhevsky et al. 2012, Caffe's `bvlc_alexnet`), 227×227 input:
  conv1 11×11/4, 96        → ReLU → LRN(5, 1e-4, 0.75) → max-pool 3/2     55² → 27²
  conv2  5×5 pad 2, 256, groups 2 → ReLU → LRN → max-pool 3/2            27² → 13²
  conv3  3×3 pad 1, 384           → ReLU
  conv4  3×3 pad 1, 384, groups 2 → ReLU
  conv5  3×3 pad 1, 256, groups 2 → ReLU → max-pool 3/2                  13² → 6²
  flatten (H, W, C order) → fc6 4096
BDTR's stream ends with fc6 followed by BatchNorm, no ReLU in between (BDTR's TensorFlow code:
`fc6 → batch_norm`; the ReLU and dropout come after, in the shared embedding, see
`ce2l_jax.models.reid.BDTRAlexNet`). That BatchNorm is modality-specific: it sees this stream's N
images only.

The flatten size follows the input (fc6's input width is inferred at init), so any input of at
least 67×67 works; pretrained fc6 weights need exactly 227×227 (6×6×256 = 9216 inputs).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from ce2l_jax.models.layers import GroupedConv, local_response_norm, max_pool

# BVLC AlexNet widths (conv1..conv5) and fc6 width.
ALEXNET_WIDTHS = (96, 256, 384, 384, 256)
ALEXNET_FC6 = 4096
# (kernel, stride, padding, groups) of conv1..conv5.
_CONV_SPECS = ((11, 4, 0, 1), (5, 1, 2, 2), (3, 1, 1, 1), (3, 1, 1, 2), (3, 1, 1, 2))


class AlexNetStream(nn.Module):
  """conv1 … fc6 + BatchNorm (`bn6`) for one modality; returns (x (N, fc6_dim), out).

  `out` holds named intermediates: `pool5` (N, h, w, C5) and `fc6` (pre-BN). BatchNorm uses batch
  statistics when `train` and running statistics otherwise (momentum 0.9, eps 1e-5 as in PyTorch).
  `fast` selects the per-group convolution and sliced max-pool (same numbers as the plain forms).
  """
  widths: Sequence[int] = ALEXNET_WIDTHS
  fc6_dim: int = ALEXNET_FC6
  fast: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> tuple[jnp.ndarray, dict]:
    if len(self.widths) != 5:
      raise ValueError(f"AlexNetStream needs 5 conv widths, got {self.widths}")
    out = {}
    conv_init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
    for i, (width, (k, s, p, g)) in enumerate(zip(self.widths, _CONV_SPECS), start=1):
      x = GroupedConv(width, k, s, p, groups=g, fast=self.fast, dtype=self.dtype,
                      kernel_init=conv_init, name=f"conv{i}")(x)
      x = nn.relu(x)
      if i in (1, 2):
        x = local_response_norm(x)
      if i in (1, 2, 5):
        x = max_pool(x, 3, 2, fast=self.fast)
    out["pool5"] = x
    x = x.reshape(x.shape[0], -1)
    x = nn.Dense(self.fc6_dim, dtype=self.dtype, kernel_init=nn.initializers.normal(0.005),
                 name="fc6")(x)
    out["fc6"] = x
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     dtype=self.dtype, name="bn6")(x)
    return x, out
