"""The deep baselines of CE²L's comparison table: Wu et al.'s one-stream, two-stream and deep
zero-padding networks (ICCV 2017, "RGB-Infrared Cross-Modality Person Re-Identification", Sec. 4),
on this project's ResNet pieces.

Wu et al. compare, on one base network trained with the identity (softmax) loss:
- **one-stream** (their Fig. 4a): one network, every parameter shared by the two modalities;
- **two-stream** (Fig. 4b): a modality-specific sub-network at the bottom for each modality, the
  top shared;
- **deep zero-padding** (Sec. 4.2, Fig. 4d): the one-stream network fed a two-channel image: the
  visible image's grey level in channel 0 and a zero channel 1; an infrared image as a zero channel
  0 and its (single-channel) intensity in channel 1. The first convolution therefore sees the
  modality through which channel is filled, and nodes specific to one modality can evolve.

`ViReIDResNet` is all three, chosen by `specific_stages` (0: one-stream; 1: the stem — conv1, bn1,
max-pool — is modality-specific; 2: the stem and layer1) and `input_mode` ('rgb' or 'zero_pad').
Choices where the paper leaves freedom (said again in the configs' docstrings): the base network
is this project's ResNet (bottleneck stages; ResNet-50 widths for the real datasets, the
`resnet_tiny` widths on CPU) for every deep row, so the rows differ only in what Wu et al. vary;
the two-stream split is after layer1 (`specific_stages=2`); the embedding is the global average
pool of the last stage (Wu et al.'s networks end in average pooling and the softmax classifier);
an optional BN-neck (`bnneck`) is off for these rows. Grey level: ITU-R BT.601 weights
(0.299, 0.587, 0.114) of the (normalised) RGB channels; an infrared image's intensity is the mean
of its three channels (the datasets store infrared as three equal channels).

Call contract: that of `ce2l_jax.models.reid` (paired (2, N, H, W, C) → (emb (2, N, D), out);
single (N, H, W, C) with `modality` → (emb (N, D), out)); `out` holds `emb`, `feat`, `logits`.
Inputs may have any channel count (D²RL feeds four-channel unified images, `models/d2rl.py`).
No loss code here (`ce2l_jax.baseline_losses`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from ce2l_jax.models.input_forms import split_input
from ce2l_jax.models.resnet import RESNET50_BLOCKS, Bottleneck, ResNetStem, stage_specs

GREY_WEIGHTS = (0.299, 0.587, 0.114)
INPUT_MODES = ("rgb", "zero_pad")


def grey(x: jnp.ndarray) -> jnp.ndarray:
  """(..., 3) → (..., 1): the BT.601 luma of RGB channels."""
  w = jnp.asarray(GREY_WEIGHTS, x.dtype)
  return jnp.sum(x * w, axis=-1, keepdims=True)


def intensity(x: jnp.ndarray) -> jnp.ndarray:
  """(..., C) → (..., 1): the mean over channels (an infrared image's single channel)."""
  return jnp.mean(x, axis=-1, keepdims=True)


def zero_pad_input(x: jnp.ndarray, modality: int) -> jnp.ndarray:
  """Wu et al.'s zero-padding input (Sec. 4.2): (N, H, W, 3) → (N, H, W, 2).

  Visible (0): [grey(x), 0]; infrared (1): [0, intensity(x)].
  """
  zeros = jnp.zeros(x.shape[:-1] + (1,), x.dtype)
  if modality == 0:
    return jnp.concatenate([grey(x), zeros], axis=-1)
  return jnp.concatenate([zeros, intensity(x)], axis=-1)


class ViReIDResNet(nn.Module):
  """Wu et al.'s one-stream / two-stream / zero-padding network on the project's ResNet.

  specific_stages: 0 = every layer shared (one-stream, zero-padding); 1 = modality-specific stem;
  2 = modality-specific stem + layer1 (two-stream). Shared BatchNorm layers see both modalities
  together (one global batch of 2N, visible first), as in `ce2l_jax.models.reid`.
  Outputs: emb = feat = global average pool of the last stage (or the BN-neck output when
  `bnneck`), logits = the identity classifier on it.
  """
  num_classes: int
  width: int = 64
  blocks: Sequence[int] = RESNET50_BLOCKS
  last_stride: int = 1
  specific_stages: int = 0
  input_mode: str = "rgb"
  bnneck: bool = False
  fast: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jnp.ndarray, modality: int | None = None, train: bool = False):
    if self.input_mode not in INPUT_MODES:
      raise ValueError(f"input_mode must be one of {INPUT_MODES}, got {self.input_mode!r}")
    if self.specific_stages not in (0, 1, 2):
      raise ValueError(f"specific_stages must be 0, 1 or 2, got {self.specific_stages}")
    xs, ms, paired = split_input(images.astype(self.dtype), modality)
    if self.input_mode == "zero_pad":
      xs = [zero_pad_input(x, m) for x, m in zip(xs, ms)]
    specs = stage_specs(self.width, self.blocks, self.last_stride)
    n_layer1 = self.blocks[0]
    if self.specific_stages == 0:
      x = ResNetStem(self.width, (), self.fast, self.dtype, name="stem")(
          jnp.concatenate(xs, axis=0), train)
      rest = specs
    else:
      own = tuple(specs[:n_layer1]) if self.specific_stages == 2 else ()
      stems = [ResNetStem(self.width, own, self.fast, self.dtype, name=n)
               for n in ("stem_v", "stem_t")]
      x = jnp.concatenate([stems[m](xi, train) for xi, m in zip(xs, ms)], axis=0)
      rest = specs[len(own):]
    for name, planes, stride, down in rest:
      x = Bottleneck(planes, stride, down, self.dtype, name=name)(x, train)
    feat = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    emb = feat
    if self.bnneck:
      emb = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                         use_bias=False, name="bnneck")(feat)
    logits = nn.Dense(self.num_classes, dtype=self.dtype,
                      kernel_init=nn.initializers.normal(0.001), name="classifier")(emb)
    out = {"emb": emb, "feat": feat, "logits": logits.astype(jnp.float32)}
    if paired:
      out = {k: v.reshape((2, v.shape[0] // 2) + v.shape[1:]) for k, v in out.items()}
    return out["emb"], out


_TINY = dict(width=8, blocks=(1, 1, 1, 1))
_WU = {"one_stream": dict(specific_stages=0, input_mode="rgb"),
       "two_stream": dict(specific_stages=2, input_mode="rgb"),
       "zero_padding": dict(specific_stages=0, input_mode="zero_pad")}

# name → factory(num_classes, **kwargs); merged into `ce2l_jax.models.reid.create_reid_model`.
FACTORIES: dict[str, Callable[..., nn.Module]] = {}
for _name, _kw in _WU.items():
  FACTORIES[_name] = lambda num_classes, _kw=_kw, **kw: ViReIDResNet(num_classes, **{**_kw, **kw})
  FACTORIES[f"{_name}_tiny"] = (
      lambda num_classes, _kw=_kw, **kw: ViReIDResNet(num_classes, **{**_kw, **_TINY, **kw}))

DEFAULT_INPUT_SIZE = {**{n: (288, 144) for n in _WU}, **{f"{n}_tiny": (64, 32) for n in _WU}}
