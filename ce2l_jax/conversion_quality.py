"""How good is a modality conversion? Two numbers, both on images the CycleGAN never trained on.

1. Cycle-reconstruction L1, ‖F(G(x)) − x‖₁ and ‖G(F(y)) − y‖₁ on held-out RGB / IR images, in
   the [-1, 1] scale of the generator (0 = perfect; a uniform random image scores ~0.67 vs a
   constant one).
2. Target-modality share: a small modality classifier, trained on *real* visible vs *real*
   infrared training images, is asked about the converted held-out images; the share of G(x)
   it calls infrared and of F(y) it calls visible. Real held-out images give its accuracy
   (`modality_clf_acc`): a share means little when that is low.

The classifier is logistic regression on cheap, global image statistics: a 16×8 grayscale
thumbnail, per-channel means and standard deviations, and mean absolute channel differences
(|R−G|, |G−B|, |R−B|: zero for infrared images stored as grey repeated to 3 channels). It
trains in well under a second in JAX (a jitted `lax.scan` of full-batch Adam steps); it measures whether converted images *look like* the
target modality to a simple observer, not whether identity is preserved (the re-ID stage does).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image

THUMB = (16, 8)


def image_features(images: Any) -> np.ndarray:
  """uint8 or [-1, 1] float (N, H, W, 3) → float32 (N, 16·8 + 9) features (numpy + PIL: no compile)."""
  x = np.asarray(images)
  x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else (x.astype(np.float32) + 1.0) / 2.0
  n = x.shape[0]
  gray = x.mean(axis=-1)
  thumbs = np.stack([np.asarray(Image.fromarray(g, mode="F").resize(THUMB[::-1], Image.Resampling.BOX))
                     for g in gray]) if n else np.zeros((0, *THUMB), np.float32)
  mean, std = x.mean(axis=(1, 2)), x.std(axis=(1, 2))
  r, g, b = x[..., 0], x[..., 1], x[..., 2]
  diff = np.stack([np.abs(r - g).mean((1, 2)), np.abs(g - b).mean((1, 2)), np.abs(r - b).mean((1, 2))], axis=-1)
  return np.concatenate([thumbs.reshape(n, -1), mean, std, diff], axis=-1).astype(np.float32)


@dataclasses.dataclass
class ModalityClassifier:
  """p(infrared | image) = σ(w · (f(image) − mu) / sd + b)."""
  mu: np.ndarray
  sd: np.ndarray
  w: np.ndarray
  b: float

  def prob_infrared(self, images: Any) -> np.ndarray:
    f = (image_features(images) - self.mu) / self.sd
    return 1.0 / (1.0 + np.exp(-(f @ self.w + self.b)))

  def predict(self, images: Any) -> np.ndarray:
    """0 visible / 1 infrared."""
    return (self.prob_infrared(images) > 0.5).astype(np.int64)


def train_modality_classifier(rgb: np.ndarray, ir: np.ndarray, steps: int = 300, lr: float = 0.05,
                              l2: float = 1e-3, seed: int = 0) -> ModalityClassifier:
  """Fits the classifier on real visible (`rgb`, label 0) and infrared (`ir`, label 1) images."""
  del seed  # full-batch and zero-initialised: deterministic
  f = np.concatenate([image_features(rgb), image_features(ir)])
  y = np.concatenate([np.zeros(len(rgb)), np.ones(len(ir))]).astype(np.float32)
  mu, sd = f.mean(0), f.std(0) + 1e-6
  z = jnp.asarray((f - mu) / sd)
  # Balance the two classes.
  weight = jnp.asarray(np.where(y == 1, 0.5 / max(len(ir), 1), 0.5 / max(len(rgb), 1)), jnp.float32)
  tx = optax.adam(lr)

  def loss(p):
    logits = z @ p["w"] + p["b"]
    return jnp.sum(weight * optax.sigmoid_binary_cross_entropy(logits, y)) + l2 * jnp.sum(p["w"] ** 2)

  @jax.jit
  def fit(p):
    def body(carry, _):
      p, s = carry
      g = jax.grad(loss)(p)
      u, s = tx.update(g, s, p)
      return (optax.apply_updates(p, u), s), None
    (p, _), _ = jax.lax.scan(body, (p, tx.init(p)), None, length=steps)
    return p

  p = fit({"w": jnp.zeros(z.shape[1], jnp.float32), "b": jnp.zeros((), jnp.float32)})
  return ModalityClassifier(mu=mu, sd=sd, w=np.asarray(p["w"]), b=float(p["b"]))


def evaluate(translate: Callable, params: Any, heldout: dict[str, np.ndarray], train_real: dict[str, np.ndarray],
             steps: int = 300, seed: int = 0, batch_size: int = 32) -> dict[str, float]:
  """The conversion-quality numbers (module docstring) as a flat dict of floats.

  `translate(params, rgb_uint8, ir_uint8)` is `trainers.cyclegan.make_translate_fn(...)` (jitted);
  `heldout` / `train_real` hold `rgb` and `ir` uint8 (N, H, W, 3) at the generator's size.
  """
  clf = train_modality_classifier(train_real["rgb"], train_real["ir"], steps=steps, seed=seed)
  n = min(len(heldout["rgb"]), len(heldout["ir"]))
  outs = {k: [] for k in ("fake_ir", "fake_rgb", "cycle_l1_rgb", "cycle_l1_ir")}
  for s in range(0, n, batch_size):
    rgb, ir = heldout["rgb"][s:s + batch_size], heldout["ir"][s:s + batch_size]
    m = len(rgb)
    if m < batch_size:  # one compiled shape
      pad = lambda a: np.concatenate([a, np.zeros((batch_size - m, *a.shape[1:]), a.dtype)])
      rgb, ir = pad(rgb), pad(ir)
    out = jax.device_get(translate(params, rgb, ir))
    for k in outs:
      outs[k].append(np.asarray(out[k])[:m])
  outs = {k: np.concatenate(v) for k, v in outs.items()}
  real_pred = np.concatenate([clf.predict(heldout["rgb"][:n]), clf.predict(heldout["ir"][:n])])
  real_true = np.concatenate([np.zeros(n), np.ones(n)])
  return {
      "heldout_cycle_l1_rgb": float(outs["cycle_l1_rgb"].mean()),
      "heldout_cycle_l1_ir": float(outs["cycle_l1_ir"].mean()),
      "modality_clf_acc": float(np.mean(real_pred == real_true)),
      "rgb2ir_target_share": float(np.mean(clf.predict(outs["fake_ir"]) == 1)),
      "ir2rgb_target_share": float(np.mean(clf.predict(outs["fake_rgb"]) == 0)),
      "heldout_images": float(n),
  }


def images_from_source(source: Any, n: int, image_size: tuple[int, int]) -> dict[str, np.ndarray]:
  """Up to `n` images per modality, evenly spread over the source's visible / infrared records,
  resized to `image_size` (H, W): `{"rgb", "ir"}` uint8."""
  from ce2l_jax.data import augment, sources
  out = {}
  for key, modality in (("rgb", 0), ("ir", 1)):
    sub = sources.select(source, modality=modality)
    if not len(sub):
      raise ValueError(f"no {'visible' if modality == 0 else 'infrared'} images in {source!r}")
    pick = np.unique(np.linspace(0, len(sub) - 1, min(n, len(sub))).round().astype(np.int64))
    recs = sources.get_records(sub, pick)
    out[key] = np.stack([augment.resize(r["image"], tuple(image_size)) for r in recs])
  return out


def load_images(config: Any, split: str, n: int, image_size: tuple[int, int]) -> dict[str, np.ndarray]:
  """`images_from_source` on split `split` of the run's dataset (`config.data.name`, `.data_dir`)."""
  from ce2l_jax.data import sources
  src = sources.TfdsSource(config.data.name, split, config.data.get("data_dir"))
  return images_from_source(src, n, image_size)
