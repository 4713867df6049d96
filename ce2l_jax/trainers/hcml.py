"""HCML's "training": the two-level cross-modality metric fitted on a trained network's features
of the training split (Ye et al., AAAI 2018; the maths is `ce2l_jax/hcml.py`).

The evaluate stage calls `metric_predict_fn` when `eval.metric_learning = 'hcml'` (configs/hcml.py):
it extracts the L2-normalised embedding of every training image with the network's predict
function (each image through its modality's stream, the eval stream's resizing, no flip), fits
`hcml.fit_hcml` (`eval.hcml_dim`, `eval.hcml_reg`) and returns a predict function whose features
are the metric's embedding — an affine map per modality, f ↦ f Aᵀ_m + b_m with the two levels
folded into (A_m, b_m) — so the protocol's Euclidean distances are HCML's distances
(`eval.normalize_features` must be off: configs/hcml.py sets it).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import jax.numpy as jnp
import ml_collections
import numpy as np

from ce2l_jax import hcml


def train_features(config: ml_collections.ConfigDict, predict_fn: Callable, variables: Any,
                   mesh=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(features (N, D) L2-normalised, pid (N,), modality (N,)) of the training split."""
  from ce2l_jax import evaluate as ev
  from ce2l_jax.data import pipeline
  from ce2l_jax.data import sources as src_lib
  source = src_lib.TfdsSource(config.data.name, config.data.get("train_split", "train"),
                              config.data.get("data_dir"))
  labels = source.labels()
  icfg = config.input
  batches = pipeline.build_eval_batches(
      source, None, int(config.eval.get("batch_size") or icfg.eval_batch_size),
      image_size=tuple(icfg.image_size), resample=str(icfg.get("resample", "bilinear")),
      threads=int(icfg.get("threads", 2)), num_devices=mesh)
  feats = ev.FeatureExtractor(predict_fn, flip=False, mesh=mesh)(variables, batches, len(source))
  feats = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
  return feats, np.asarray(labels.pid), np.asarray(labels.modality)


def affine_maps(metric: hcml.HCMLMetric) -> dict[str, np.ndarray]:
  """{a_v, b_v, a_t, b_t}: `metric.project(f, m)` = f @ a_m + b_m (float32)."""
  shared = metric.shared
  scale = np.sqrt(1.0 - 1.0 / shared.eigenvalues)
  tail = shared.pre.proj @ shared.w * scale
  out = {}
  for m, (mean, proj) in (("v", (metric.mean_v, metric.proj_v)), ("t", (metric.mean_t, metric.proj_t))):
    out[f"a_{m}"] = (proj @ tail).astype(np.float32)
    out[f"b_{m}"] = ((-mean @ proj - shared.pre.mean) @ tail).astype(np.float32)
  return out


def metric_predict_fn(config: ml_collections.ConfigDict, predict_fn: Callable, variables: Any,
                      mesh=None) -> tuple[Callable, dict]:
  """(predict, variables) scoring the network's features with HCML fitted on the training split."""
  t = time.perf_counter()
  feats, pid, modality = train_features(config, predict_fn, variables, mesh)
  v, r = modality == 0, modality == 1
  metric = hcml.fit_hcml(feats[v], feats[r], pid[v], pid[r], dim=int(config.eval.get("hcml_dim", 0)),
                         reg=float(config.eval.get("hcml_reg", 1e-3)))
  maps = {k: jnp.asarray(x) for k, x in affine_maps(metric).items()}
  logging.info("HCML: fitted on %d + %d training images in %.1f s (%d dimensions)", int(v.sum()),
               int(r.sum()), time.perf_counter() - t, maps["a_v"].shape[1])

  def predict(wrapped, images, modality):
    f = predict_fn(wrapped["net"], images, modality).astype(jnp.float32)
    f = f / jnp.maximum(jnp.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    m = "v" if modality == 0 else "t"
    return f @ wrapped["hcml"][f"a_{m}"] + wrapped["hcml"][f"b_{m}"]

  return predict, {"net": variables, "hcml": maps}
