"""BatchNorm with PyTorch's statistics, for the layers whose weights come from PyTorch.

Batch normalisation (Ioffe & Szegedy 2015, Algorithm 1): over the m values of a channel in a batch
(every axis but the last), μ = mean, σ² = mean((x − μ)²) (the biased variance), and

    y = γ · (x − μ) / sqrt(σ² + ε) + β                                  (train: batch statistics)
    y = γ · (x − μ_run) / sqrt(σ²_run + ε) + β                          (test: running statistics)
    μ_run ← m_r · μ_run + (1 − m_r) · μ
    σ²_run ← m_r · σ²_run + (1 − m_r) · σ² · m / (m − 1)

The last line is what `torch.nn.BatchNorm{1,2}d` does (its running variance is the *unbiased*
batch variance, Algorithm 2 of the paper); `flax.linen.BatchNorm` keeps the biased σ² there.
With m = 16 values per channel (layer4 of a small batch) the batch term differs by m/(m − 1) =
16/15, so a torchvision ResNet trained here would otherwise drift from the same model trained in
PyTorch (tests/test_reference.py compares the running statistics with PyTorch's after a step). The normalisation itself (the forward) is the same in both.

Variables have flax's names and shapes (`params`: `scale`, `bias`; `batch_stats`: `mean`, `var`),
so checkpoints and the torchvision loader (`ce2l_jax.models.pretrained`) are unchanged.
`momentum` is flax's convention (0.9 ≡ PyTorch's momentum 0.1). Under `jit` over a sharded batch
the means are over the global batch (XLA inserts the cross-device sums), as with flax's layer.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

Initializer = Callable[..., jnp.ndarray]


class BatchNorm(nn.Module):
  """`flax.linen.BatchNorm`'s interface and variables, PyTorch's running-variance update.

  use_running_average: True at test time (running statistics, nothing updated).
  """
  use_running_average: bool = False
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Any = None
  use_bias: bool = True
  use_scale: bool = True
  scale_init: Initializer = nn.initializers.ones
  bias_init: Initializer = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    features = x.shape[-1]
    axes = tuple(range(x.ndim - 1))
    ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), (features,))
    ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), (features,))
    xf = x.astype(jnp.float32)
    if self.use_running_average:
      mean, var = ra_mean.value, ra_var.value
    else:
      mean = jnp.mean(xf, axes)
      var = jnp.mean(jnp.square(xf - mean), axes)
      if not self.is_initializing():
        m = int(np.prod([x.shape[a] for a in axes]))
        unbiased = var * (m / max(m - 1, 1))
        ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * unbiased
    y = (xf - mean) / jnp.sqrt(var + self.epsilon)
    if self.use_scale:
      y = y * self.param("scale", self.scale_init, (features,), jnp.float32)
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (features,), jnp.float32)
    return y.astype(self.dtype or x.dtype)
