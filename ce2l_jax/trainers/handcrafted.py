"""The hand-crafted rows of the paper's table: a fixed descriptor, then a distance.

A hand-crafted method has no network: its "training" is the cross-modality metric learned on
the training split's descriptors, its evaluation the test protocol of CE²L on the descriptors
(or their learned embeddings). Configs: configs/lomo.py, mlbp.py, hog.py, gsm.py (with
`reid.trainer = 'handcrafted'`); the section `handcrafted` (configs/base.py):

  feature         lomo | mlbp | hog (`ce2l_jax.features`), `feature_kwargs` its keywords
  metrics         the rows of one run, each a distance on the descriptor:
                    euclidean  L2-normalised descriptor, Euclidean distance (the paper's rows:
                               Wu et al. ICCV 2017 and Ye et al. AAAI 2018 score HOG, LOMO and
                               MLBP with Euclidean distance; docs/notes/paper_table.md)
                    xqda       XQDA learned on the training split (`metric_learning.fit_xqda`)
                    gsm        GSM learned on the training split (`metric_learning.fit_gsm`)
  max_train_images  > 0: a seeded subset of the training images (per modality) for the metric
                  (the real SYSU-MM01's 34k images × 27k LOMO dimensions do not fit a CPU)
  cache_dir       '' or a folder: the descriptors of the images a run reads are kept there,
                  keyed by the feature, its keywords and version, the image size, resampling,
                  the rows read and a fingerprint of the split (its labels and the bytes of 16
                  records), and reused by later runs (the LOMO and GSM rows share LOMO's;
                  `python -m ce2l_jax.paper_table` sets it)

Images are resized to `input.image_size` by the eval stream (`input.eval_batch_size` a batch).
`fit(config, sdir)` extracts the training descriptors, fits the learned metrics and writes
`<sdir>/model.npz` (the stage folder the reid stage hands it, `<workdir>/reid/`);
`evaluate_rows(config, sdir, test_set)` extracts the test
descriptors once and runs the protocol (`ce2l_jax.evaluate.Evaluator.run`) on each metric's
features, giving `{row name: {setting: TrialResults}}` (the evaluate stage adds the raw-pixel row). A learned metric is scored as the
Euclidean distance of its embedding, which equals the learned distance (XQDA) or ranks as the
learned similarity (GSM): `ce2l_jax.metric_learning`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from typing import Any, Callable, Mapping

import ml_collections
import numpy as np

from ce2l_jax import features as features_lib
from ce2l_jax import metric_learning as ml

METRICS = ("euclidean", "xqda", "gsm")
FEATURE_NAMES = {"lomo": "LOMO", "mlbp": "MLBP", "hog": "HOG"}
MODEL_FILE = "model.npz"
STAGE = "handcrafted"   # the log prefix


def check_config(hcfg: ml_collections.ConfigDict) -> None:
  """ValueError naming a bad `handcrafted.*` value."""
  if hcfg.feature not in features_lib.FEATURES:
    raise ValueError(f"handcrafted.feature must be one of {', '.join(features_lib.FEATURES)}; "
                     f"got {hcfg.feature!r}")
  bad = [m for m in hcfg.metrics if m not in METRICS]
  if bad or not hcfg.metrics:
    raise ValueError(f"handcrafted.metrics must be a non-empty tuple of {', '.join(METRICS)}; "
                     f"got {tuple(hcfg.metrics)!r}")


def row_names(config: ml_collections.ConfigDict) -> dict[str, str]:
  """`{metric: row name}`: the first metric's row is `config.name` (default the feature's name),
  the others '<name> + XQDA' / '<name> + GSM'."""
  hcfg = config.handcrafted
  name = str(config.get("name") or FEATURE_NAMES[hcfg.feature])
  return {m: name if i == 0 else f"{name} + {m.upper()}" for i, m in enumerate(hcfg.metrics)}


# --------------------------------------------------------------------------------------------
# Descriptors of a split
# --------------------------------------------------------------------------------------------


def batch_features(hcfg: ml_collections.ConfigDict) -> Callable[[np.ndarray], np.ndarray]:
  kwargs = dict(hcfg.get("feature_kwargs", {}) or {})
  return lambda images: features_lib.extract(hcfg.feature, images, **kwargs)


def source_features(source, hcfg: ml_collections.ConfigDict, indices=None, *,
                    image_size=(128, 64), batch_size: int = 64, resample: str = "bilinear",
                    threads: int = 2, batches=None) -> np.ndarray:
  """Descriptors (n, D) float32 of `source` (rows in `indices` order, default all), each image
  resized to `image_size` by the eval stream (`pipeline.build_eval_batches`), or of the given
  eval `batches` (which carry `index` and `_mask`)."""
  from ce2l_jax.data import pipeline
  fn = batch_features(hcfg)
  if batches is None:
    batches = pipeline.build_eval_batches(source, indices, int(batch_size),
                                          image_size=tuple(image_size), resample=resample,
                                          threads=threads)
    n = len(source) if indices is None else len(indices)
    position = {int(i): k for k, i in enumerate(indices)} if indices is not None else None
  else:
    n, position = len(source), None
  out = None
  filled = np.zeros(n, bool)
  for batch in batches:
    mask = np.asarray(batch["_mask"], bool)
    feats = fn(np.asarray(batch["image"])[mask])
    rows = np.asarray(batch["index"])[mask]
    if position is not None:
      rows = np.array([position[int(i)] for i in rows], np.int64)
    if out is None:
      out = np.zeros((n, feats.shape[1]), np.float32)
    out[rows] = feats
    filled[rows] = True
  if out is None or not filled.all():
    raise ValueError(f"the eval stream covered {int(filled.sum())} of {n} images")
  return out


def _fingerprint(source) -> str:
  """sha1 of a split's labels and of the image bytes and file names of 16 spread records."""
  h = hashlib.sha1()
  labels = source.labels()
  for arr in (labels.pid, labels.camid, labels.modality):
    h.update(np.ascontiguousarray(arr, np.int64).tobytes())
  from ce2l_jax.data import sources as src_lib
  picks = np.unique(np.linspace(0, len(source) - 1, 16).round().astype(int)) if len(source) else []
  for r in src_lib.get_records(source, picks):
    image = r["image"]
    h.update(image if isinstance(image, bytes) else np.ascontiguousarray(image).tobytes())
    h.update(str(r.get("file", "")).encode())
  return h.hexdigest()


def split_features(source, config: ml_collections.ConfigDict, indices=None, *,
                   threads: int = 2) -> np.ndarray:
  """Descriptors of the images `indices` of `source` (default all, in order) at
  `input.image_size`, read from / written to `handcrafted.cache_dir` when it is set."""
  hcfg, icfg = config.handcrafted, config.input
  kwargs = dict(image_size=tuple(icfg.image_size), batch_size=int(icfg.eval_batch_size),
                resample=str(icfg.get("resample", "bilinear")), threads=threads)
  if not hcfg.get("cache_dir"):
    return source_features(source, hcfg, indices, **kwargs)
  rows = np.arange(len(source)) if indices is None else np.asarray(indices, np.int64)
  key = json.dumps({"feature": hcfg.feature, "version": features_lib.VERSION,
                    "kwargs": dict(hcfg.get("feature_kwargs", {}) or {}),
                    "size": list(kwargs["image_size"]), "resample": kwargs["resample"],
                    "n": len(source), "data": _fingerprint(source),
                    "rows": hashlib.sha1(rows.tobytes()).hexdigest()}, sort_keys=True)
  digest = hashlib.sha1(key.encode()).hexdigest()[:20]
  path = os.path.join(os.path.expanduser(hcfg.cache_dir), f"{hcfg.feature}-{digest}.npy")
  if os.path.exists(path):
    return np.load(path)
  feats = source_features(source, hcfg, indices, **kwargs)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}.npy"
  np.save(tmp, feats)
  os.replace(tmp, path)
  return feats


def train_indices(config: ml_collections.ConfigDict, labels) -> tuple[np.ndarray, np.ndarray]:
  """(visible, infrared) training image indices the metric sees: all, or a seeded subset of at
  most `handcrafted.max_train_images` per modality."""
  limit, seed = int(config.handcrafted.max_train_images), int(config.get("seed", 0))
  return _subset(labels, 0, limit, seed), _subset(labels, 1, limit, seed + 1)


def _subset(labels, modality: int, limit: int, seed: int) -> np.ndarray:
  idx = np.flatnonzero(labels.modality == modality)
  if limit and len(idx) > limit:
    idx = np.sort(np.random.default_rng(seed).choice(idx, int(limit), replace=False))
  return idx


# --------------------------------------------------------------------------------------------
# Fitting (the "training" of a hand-crafted method) and the saved models
# --------------------------------------------------------------------------------------------


def _flatten_model(kind: str, model) -> dict[str, np.ndarray]:
  if kind == "xqda":
    return {"xqda/pre_mean": model.pre.mean, "xqda/pre_proj": model.pre.proj,
            "xqda/w": model.w, "xqda/eigenvalues": model.eigenvalues}
  out = {"gsm/pre_mean": model.pre.mean, "gsm/pre_proj": model.pre.proj}
  out.update({f"gsm/{k}": np.asarray(v) for k, v in model.params().items()})
  return out


def load_models(path: str) -> dict[str, Any]:
  """`{"xqda": XQDA, "gsm": GSM}` (those present) from a `model.npz`."""
  with np.load(path) as z:
    a = {k: z[k] for k in z.files}
  out = {}
  if "xqda/w" in a:
    out["xqda"] = ml.XQDA(ml.Linear(a["xqda/pre_mean"], a["xqda/pre_proj"]), a["xqda/w"],
                          a["xqda/eigenvalues"])
  if "gsm/la" in a:
    out["gsm"] = ml.GSM(ml.Linear(a["gsm/pre_mean"], a["gsm/pre_proj"]), a["gsm/la"], a["gsm/lb"],
                        a["gsm/lx"], a["gsm/ly"], a["gsm/d"], a["gsm/e"], float(a["gsm/f"]))
  return out


def save_models(path: str, models: Mapping[str, Any]) -> None:
  """The fitted models as one `.npz`, written atomically."""
  arrays = {}
  for kind, model in models.items():
    arrays.update(_flatten_model(kind, model))
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "wb") as f:
    f.write(buf.getvalue())
  os.replace(tmp, path)


def fit_models(config: ml_collections.ConfigDict, train_source, *, threads: int = 2,
               log: Callable[[str], None] = print) -> tuple[dict[str, Any], dict]:
  """Descriptors of the training split → the learned metrics of `handcrafted.metrics`."""
  hcfg = config.handcrafted
  check_config(hcfg)
  learned = [m for m in hcfg.metrics if m != "euclidean"]
  if not learned:
    return {}, {"learned": []}
  labels = train_source.labels()
  seed = int(config.get("seed", 0))
  iv, ii = train_indices(config, labels)
  t = time.perf_counter()
  feats = split_features(train_source, config, np.concatenate([iv, ii]), threads=threads)
  extract_s = time.perf_counter() - t
  x, z = feats[:len(iv)], feats[len(iv):]
  a, b = labels.pid[iv], labels.pid[ii]
  log(f"{STAGE}: {hcfg.feature} descriptors of {len(iv)} visible + {len(ii)} infrared training "
      f"images, {feats.shape[1]} dims, {extract_s:.0f} s")
  models, info = {}, {"learned": learned, "train_images": [len(iv), len(ii)],
                      "dims": int(feats.shape[1]), "extract_seconds": extract_s}
  for m in learned:
    t = time.perf_counter()
    if m == "xqda":
      models[m] = ml.fit_xqda(x, a, z, b, **dict(hcfg.xqda))
      info["xqda_dims"] = int(models[m].w.shape[1])
    else:
      models[m] = ml.fit_gsm(x, a, z, b, seed=seed, **dict(hcfg.gsm))
      info["gsm_loss"] = [float(models[m].history[0][1]), float(models[m].history[-1][1])]
    info[f"{m}_seconds"] = time.perf_counter() - t
    log(f"{STAGE}: {m} fitted in {info[f'{m}_seconds']:.0f} s")
  return models, info


def fit(config: ml_collections.ConfigDict, sdir: str, train_source=None, **kwargs) -> dict:
  """`fit_models` on the run's training split, saved to `<sdir>/model.npz`."""
  if train_source is None:
    from ce2l_jax.data import sources as src_lib
    train_source = src_lib.TfdsSource(config.data.name, config.data.train_split,
                                      config.data.get("data_dir"))
  models, info = fit_models(config, train_source, **kwargs)
  save_models(os.path.join(sdir, MODEL_FILE), models)
  return info


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def embed(metric: str, feats: np.ndarray, modality: np.ndarray, models: Mapping[str, Any]) -> np.ndarray:
  """The features whose Euclidean distances the protocol ranks, for one metric."""
  if metric == "euclidean":
    return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
  if metric not in models:
    raise ValueError(f"no fitted {metric} model: run the fit (reid) stage of this config first")
  if metric == "xqda":
    return models["xqda"].embed(feats)
  out = None
  for m, side in ((0, "x"), (1, "y")):
    rows = np.flatnonzero(modality == m)
    if rows.size:
      e = models["gsm"].embed(feats[rows], side)
      out = np.zeros((len(feats), e.shape[1]), np.float32) if out is None else out
      out[rows] = e
  return out


def evaluate_rows(config: ml_collections.ConfigDict, sdir: str, test_set=None,
                  models: Mapping[str, Any] | None = None, progress=None) -> dict[str, dict]:
  """`{row: {setting: TrialResults}}` of every metric of the run, all through
  `ce2l_jax.evaluate.Evaluator.run` (the CE²L protocol code; the evaluate stage adds raw pixels)."""
  from ce2l_jax import evaluate as ev
  hcfg = config.handcrafted
  check_config(hcfg)
  if models is None:
    path = os.path.join(sdir, MODEL_FILE)
    models = load_models(path) if os.path.exists(path) else {}
  test_set = test_set if test_set is not None else ev.open_test_set(config)
  evaluator = ev.make_evaluator(config, ev.raw_pixel_predict_fn(), None, test_set)
  if hcfg.get("cache_dir"):
    feats = split_features(test_set.source, config)
  else:  # the evaluator's own stream (same resizing as CE²L's evaluation)
    batches = progress(evaluator.batches, f"{hcfg.feature} descriptors") if progress else evaluator.batches
    feats = source_features(test_set.source, hcfg, batches=batches)
  rows = {}
  for metric, name in row_names(config).items():
    emb = embed(metric, feats, test_set.modality, models)
    evaluator.features = lambda _, emb=emb: emb
    rows[name] = evaluator.run({})
  return rows
