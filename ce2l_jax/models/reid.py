"""Two-stream visible–infrared re-ID models and `create_reid_model`.

Call contract (docs/architecture.md):
- training, both modalities: `model.apply(variables, images, train=True, rngs={'dropout': k},
  mutable=['batch_stats'])` with images (2, N, H, W, 3) float, slot 0 visible, slot 1 infrared →
  `((emb (2, N, D), out), new_state)`;
- one modality (test time): `model.apply(variables, images (N, H, W, 3), modality=m, train=False)`
  → `(emb (N, D), out)`; m is a Python int (0 visible, 1 infrared), static under `jit`.
`out` always holds `logits` (…, C), `feat` (…, D'), the feature the ranking losses use, and
`emb`; models add their own named intermediates. Paired outputs keep the (2, N) leading axes.

BatchNorm: a modality-specific layer (inside `stream_v` / `stream_t` / `stem_v` / `stem_t`) sees
that modality's N images only; every shared layer after the streams sees both modalities together,
one global batch of 2N (visible first), exactly like BDTR's and AGW's `torch.cat((x1, x2), 0)`.
With `jit` over a `data` mesh that is the global 2N batch across devices. At test time
(`train=False`) every BatchNorm uses its running statistics.

Initialise with the paired form so that both streams get parameters (`init_reid_variables`).
No loss code here: the losses are in `ce2l_jax.losses`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ce2l_jax.models import baselines, d2rl
from ce2l_jax.models.alexnet import ALEXNET_FC6, ALEXNET_WIDTHS, AlexNetStream
from ce2l_jax.models.input_forms import split_input
from ce2l_jax.models.layers import GeM
from ce2l_jax.models.resnet import RESNET50_BLOCKS, Bottleneck, ResNetStem, stage_specs


def _run_streams(images: jnp.ndarray, modality, streams: Sequence[Callable]):
  """Dispatch the contract's two input forms (`input_forms.split_input`) to the
  modality-specific streams.

  Returns (x, paired, per_stream_out): x concatenates the streams' outputs along the batch
  (visible first) in the paired form. `per_stream_out` stacks each stream's dict to (2, N, …).
  """
  xs, ms, paired = split_input(images, modality)
  if paired:
    (xv, ov), (xt, ot) = streams[0](xs[0]), streams[1](xs[1])
    outs = {k: jnp.stack([ov[k], ot[k]]) for k in ov}
    return jnp.concatenate([xv, xt], axis=0), True, outs
  x, o = streams[ms[0]](xs[0])
  return x, False, o


def _unflatten(tree: dict, paired: bool) -> dict:
  """(2N, …) → (2, N, …) for every array of `tree` when paired; identity otherwise."""
  if not paired:
    return tree
  return {k: v.reshape((2, v.shape[0] // 2) + v.shape[1:]) for k, v in tree.items()}


class BDTRAlexNet(nn.Module):
  """BDTR's two-stream AlexNet (Ye et al., IJCAI 2018), the re-ID network of CE²L.

  stream_v / stream_t: modality-specific BVLC AlexNet conv1 … fc6 + BatchNorm (`AlexNetStream`).
  Shared embedding (BDTR's `modal_embedding`): dropout → ReLU → fc7 (`embedding_dim`, 1024) = the
  embedding; classifier: ReLU → dropout → fc8 (`num_classes`).
  Outputs: emb = fc7 output (pre-ReLU; the retrieval feature, also `feat`, on which the ranking
  losses act — BDTR L2-normalises it inside the loss), out = {emb, feat, logits, fc6 (post-BN6),
  pool5}. Test time: running BatchNorm statistics, no dropout.
  """
  num_classes: int
  embedding_dim: int = 1024
  widths: Sequence[int] = ALEXNET_WIDTHS
  fc6_dim: int = ALEXNET_FC6
  dropout: float = 0.5
  fast: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jnp.ndarray, modality: int | None = None, train: bool = False):
    mk = lambda name: AlexNetStream(self.widths, self.fc6_dim, self.fast, self.dtype, name=name)
    streams = [mk("stream_v"), mk("stream_t")]
    x, paired, sout = _run_streams(images.astype(self.dtype), modality,
                                   [lambda im, s=s: s(im, train) for s in streams])
    fc6_bn = x
    x = nn.relu(nn.Dropout(self.dropout, deterministic=not train)(x))
    emb = nn.Dense(self.embedding_dim, dtype=self.dtype,
                   kernel_init=nn.initializers.variance_scaling(2.0, "fan_in", "normal"),
                   name="fc7")(x)
    h = nn.Dropout(self.dropout, deterministic=not train)(nn.relu(emb))
    logits = nn.Dense(self.num_classes, dtype=self.dtype,
                      kernel_init=nn.initializers.normal(0.001), name="fc8")(h)
    emb = emb.astype(jnp.float32)
    out = _unflatten({"emb": emb, "feat": emb, "logits": logits.astype(jnp.float32),
                      "fc6_bn": fc6_bn}, paired)
    out.update({k: v for k, v in sout.items()})
    return out["emb"], out


def _bnneck_scale_init(key, shape, dtype=jnp.float32):
  """AGW's BN-neck weight init, N(1, 0.01)."""
  return 1.0 + 0.01 * jax.random.normal(key, shape, dtype)


class ResNetAGW(nn.Module):
  """AGW's cross-modality ResNet (Ye et al., TPAMI 2021, "Deep Learning for Person Re-ID") minus
  the optional non-local blocks.

  stem_v / stem_t: modality-specific conv1 + bn1 + ReLU + max-pool (and layer1 too when
  `specific_layer1`); shared layer1..layer4 with `last_stride` (1) in layer4; GeM pooling (p = 3,
  fixed as in AGW's code, or `gem_learnable`); BN-neck (BatchNorm on the pooled feature, no bias
  — AGW freezes it at 0 — scale init N(1, 0.01)); bias-free classifier (N(0, 0.001)) on the BN-neck
  output.
  Outputs: out['feat'] = GeM-pooled feature before the BN-neck (the ranking losses' input),
  out['feat_bn'] = BN-neck output = emb (the retrieval feature at test time, with running
  statistics; AGW evaluates on it, L2-normalised by the evaluator), out['logits'].
  """
  num_classes: int
  width: int = 64
  blocks: Sequence[int] = RESNET50_BLOCKS
  last_stride: int = 1
  specific_layer1: bool = False
  gem_p: float = 3.0
  gem_learnable: bool = False
  fast: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jnp.ndarray, modality: int | None = None, train: bool = False):
    specs = stage_specs(self.width, self.blocks, self.last_stride)
    n_specific = self.blocks[0] if self.specific_layer1 else 0
    mk = lambda name: ResNetStem(self.width, tuple(specs[:n_specific]), self.fast, self.dtype,
                                 name=name)
    stems = [mk("stem_v"), mk("stem_t")]
    x, paired, _ = _run_streams(images.astype(self.dtype), modality,
                                [lambda im, s=s: (s(im, train), {}) for s in stems])
    for name, planes, stride, down in specs[n_specific:]:
      x = Bottleneck(planes, stride, down, self.dtype, name=name)(x, train)
    feat = GeM(self.gem_p, self.gem_learnable, name="gem")(x)
    feat_bn = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                           use_bias=False,
                           scale_init=_bnneck_scale_init,
                           name="bnneck")(feat)
    logits = nn.Dense(self.num_classes, use_bias=False, dtype=self.dtype,
                      kernel_init=nn.initializers.normal(0.001), name="classifier")(feat_bn)
    out = _unflatten({"emb": feat_bn, "feat": feat, "feat_bn": feat_bn,
                      "logits": logits.astype(jnp.float32)}, paired)
    return out["emb"], out


# Tiny variants: the same topologies with fewer channels, for tests and CPU runs.
ALEXNET_TINY = dict(widths=(16, 32, 48, 48, 32), fc6_dim=256, embedding_dim=128)
RESNET_TINY = dict(width=8, blocks=(1, 1, 1, 1))

_FACTORIES: dict[str, Callable[..., nn.Module]] = {
    "bdtr_alexnet": lambda num_classes, **kw: BDTRAlexNet(num_classes, **kw),
    "alexnet_tiny": lambda num_classes, **kw: BDTRAlexNet(num_classes, **{**ALEXNET_TINY, **kw}),
    "resnet50_agw": lambda num_classes, **kw: ResNetAGW(num_classes, **kw),
    "resnet_tiny": lambda num_classes, **kw: ResNetAGW(num_classes, **{**RESNET_TINY, **kw}),
    **baselines.FACTORIES,  # Wu et al.'s one-stream / two-stream / zero-padding (+ _tiny)
    **d2rl.FACTORIES,       # D²RL's generators + unified images + shared ResNet (+ _tiny)
}
MODEL_NAMES = tuple(_FACTORIES)

# (H, W) each model was designed for: BDTR feeds AlexNet 227×227 (pretrained fc6 needs it); AGW
# uses 288×144; the tiny ones are the smallest convenient sizes (AlexNet's strides need ≥ 67).
DEFAULT_INPUT_SIZE = {"bdtr_alexnet": (227, 227), "alexnet_tiny": (67, 67),
                      "resnet50_agw": (288, 144), "resnet_tiny": (64, 32),
                      **baselines.DEFAULT_INPUT_SIZE, **d2rl.DEFAULT_INPUT_SIZE}


def create_reid_model(name: str, num_classes: int, **kwargs) -> nn.Module:
  """The re-ID model `name` ∈ MODEL_NAMES with `num_classes` identities.

  kwargs override the module's fields:
  - bdtr_alexnet / alexnet_tiny: embedding_dim (1024 / 128), dropout (0.5), widths, fc6_dim,
    fast (True), dtype (float32; bfloat16 for GPU compute — parameters stay float32);
  - resnet50_agw / resnet_tiny: last_stride (1), specific_layer1 (False), gem_p (3.0),
    gem_learnable (False), width (64 / 8), blocks ((3, 4, 6, 3) / (1, 1, 1, 1)), fast, dtype.
  """
  if name not in _FACTORIES:
    raise ValueError(f"unknown re-ID model {name!r}; choose one of {MODEL_NAMES}")
  return _FACTORIES[name](num_classes, **kwargs)


def init_reid_variables(model: nn.Module, rng: jax.Array, height: int, width: int) -> dict:
  """Jitted `model.init` on a paired (2, 1, H, W, 3) zero batch, so both streams get parameters.

  Returns {'params', 'batch_stats'}. Wrap in `jax.eval_shape` for shapes only.
  """
  init = jax.jit(lambda r: model.init({"params": r}, jnp.zeros((2, 1, height, width, 3),
                                                              jnp.float32), train=False))
  return dict(init(rng))
