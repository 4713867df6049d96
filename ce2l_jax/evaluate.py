"""Re-ID evaluation: features of a test split once, then the protocol's trials re-index them.

An evaluator is handed an un-jitted predict function (big_vision style)

    predict_fn(variables, images, modality) -> features (B, D)

with `images` the eval stream's uint8 (B, H, W, 3) and `modality` a Python int (0 visible,
1 infrared) that picks the model's stream; `ce2l_jax.trainers.reid.make_predict_fn(model)` is the
trained model's, `raw_pixel_predict_fn(size)` the raw-pixel baseline's (grayscale, resized,
mean-removed, L2-normalised pixels: the results table's baseline row).

`Evaluator(predict_fn, test_set, cfg, ...)` jits it once per modality, runs every image of the
test split through the stream of its own modality (padded rows dropped; with `eval.flip` the
features of an image and of its mirror are averaged), optionally L2-normalises, and runs:
- SYSU-MM01 (and the synthetic set, same cameras): settings `all_single`, `all_multi`,
  `indoor_single`, `indoor_multi`; infrared queries, visible gallery; `eval.num_trials` (10)
  galleries each; the dataset's `rand_perm_cam.mat` draws ('official') when available, seeded
  random ones otherwise;
- RegDB (one split per dataset config): `visible_to_thermal` and `thermal_to_visible`;
- LLCM: `ir_to_vis` and `vis_to_ir`, `eval.num_trials` draws each (the authors' released
  protocol, `metrics.llcm_trials`).
With `eval.rerank`, `run(..., rerank=rerank_params(cfg))` scores k-reciprocal re-ranked distances.
Ties (SYSU-MM01): the ranking sorts each query's distances stably (equal distances keep gallery
order), so the gallery order decides ties. TFDS stores records in hashed order; every SYSU trial's
gallery is put in the order of the official description first — camera, then identity, then
image (file name) — `official_gallery_order`, so ties break as in the official evaluation.
Results: `{setting: TrialResults}` (`ce2l_jax.metrics`); `results_dict` turns them into the
JSON form `{setting: {"mean": {rank1, rank5, rank10, rank20, mAP, mINP}, "std": {...},
"per_trial": {...}, "cmc": [...], "num_trials": n}}` (fractions), which
`ce2l_jax.metrics.format_table` reads.
A NaN or infinite feature raises `NonFiniteFeaturesError`: a diverged model is never scored.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ce2l_jax import metrics as metrics_lib
from ce2l_jax import parallel

PredictFn = Callable[[Any, jax.Array, int], jax.Array]
SYSU_SETTINGS = ("all_single", "all_multi", "indoor_single", "indoor_multi")


def default_config() -> ml_collections.ConfigDict:
  """The `eval` section."""
  c = ml_collections.ConfigDict()
  c.protocol = "auto"            # auto (regdb* → regdb, llcm* → llcm, else sysu) | sysu | regdb | llcm
  c.split = "test"
  c.flip = False                 # average the features of each image and its horizontal flip
  c.normalize_features = True    # L2-normalise features before the distances
  c.metric = "euclidean"         # euclidean | cosine
  c.batch_size = 0               # 0: input.eval_batch_size
  c.sysu_modes = ("all", "indoor")
  c.sysu_shots = ("single", "multi")
  c.num_trials = 10              # SYSU galleries per setting
  c.sampling = "auto"            # auto: official when rand_perm_cam is found, else random
  c.rand_perm_cam = ""           # path; '' looks next to the TFDS records
  c.gallery_seed = 0             # random galleries: trial t uses seed + t
  c.regdb_directions = ("visible_to_thermal", "thermal_to_visible")
  c.periodic_trials = 1          # trials of the periodic evaluation during training
  c.baseline = True              # also score raw pixels at the end (baseline row)
  c.baseline_size = (32, 16)     # (h, w) of the raw-pixel feature
  # k-reciprocal re-ranking (metrics.reranking; Zhong et al. 2017): True adds a "+ re-ranking"
  # row to the results (same features, re-ranked distances).
  c.rerank = False
  c.rerank_k1 = 20
  c.rerank_k2 = 6
  c.rerank_lambda = 0.3
  return c


def rerank_params(cfg: ml_collections.ConfigDict):
  """`metrics.reranking.RerankParams` of the eval section's rerank_* keys."""
  from ce2l_jax.metrics.reranking import RerankParams
  return RerankParams(int(cfg.get("rerank_k1", 20)), int(cfg.get("rerank_k2", 6)),
                      float(cfg.get("rerank_lambda", 0.3)))


class NonFiniteFeaturesError(FloatingPointError):
  """The model produced NaN/Inf features."""


# --------------------------------------------------------------------------------------------
# Test sets
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class TestSet:
  """The test-set description: one entry per image of `source`, in source order."""
  source: Any
  pid: np.ndarray
  camid: np.ndarray
  modality: np.ndarray
  protocol: str                              # 'sysu' | 'regdb' | 'llcm'
  files: np.ndarray | None = None            # needed by the official SYSU galleries
  rand_perm_cam: dict | None = None          # parse_rand_perm_cam output
  names: np.ndarray | None = None            # file names: the image key of the tie order

  def __len__(self) -> int:
    return len(self.pid)


def protocol_for(dataset_name: str, protocol: str = "auto") -> str:
  if protocol != "auto":
    if protocol not in ("sysu", "regdb", "llcm"):
      raise ValueError(f"eval.protocol={protocol!r}: auto, sysu, regdb or llcm")
    return protocol
  if dataset_name.lower().startswith("llcm"):
    return "llcm"
  return "regdb" if dataset_name.lower().startswith("regdb") else "sysu"


def _record_files(source) -> np.ndarray:
  from ce2l_jax.data import sources as src_lib
  out = []
  for start in range(0, len(source), 512):
    for r in src_lib.get_records(source, range(start, min(start + 512, len(source)))):
      f = r["file"]
      out.append(f.decode() if isinstance(f, bytes) else str(f))
  return np.asarray(out)


def find_rand_perm_cam(source) -> str | None:
  """`rand_perm_cam.mat` stored next to a TFDS dataset's records (metadata key `rand_perm_cam`)."""
  info = getattr(getattr(source, "_ds", None), "dataset_info", None)
  if info is None:
    return None
  meta = getattr(info, "metadata", None) or {}
  name = meta.get("rand_perm_cam") if hasattr(meta, "get") else None
  if not name:
    return None
  path = os.path.join(str(info.data_dir), name)
  return path if os.path.exists(path) else None


def make_test_set(source, protocol: str, *, sampling: str = "random",
                  rand_perm_cam: str | Mapping | None = None) -> TestSet:
  """The description of `source` (any source with `labels()`), official draws when asked."""
  labels = source.labels()
  ts = TestSet(source, labels.pid, labels.camid, labels.modality, protocol)
  if protocol == "llcm":  # the released draws depend on the file names
    ts.files = _record_files(source)
  if protocol == "sysu":  # the image key of the official tie order
    try:
      ts.names = _record_files(source)
    except (KeyError, TypeError):  # a source without file names: ties by source index
      ts.names = None
  if protocol == "sysu" and sampling in ("auto", "official"):
    perm = rand_perm_cam if rand_perm_cam is not None else find_rand_perm_cam(source)
    if perm is None:
      if sampling == "official":
        raise FileNotFoundError("eval.sampling='official' but no rand_perm_cam.mat was found: set "
                                "eval.rand_perm_cam to its path or use eval.sampling='random'")
    else:
      if isinstance(perm, str):
        import scipy.io
        perm = scipy.io.loadmat(perm)
      ts.rand_perm_cam = metrics_lib.parse_rand_perm_cam(perm)
      ts.files = ts.names if ts.names is not None else _record_files(source)
  return ts


def open_test_set(config: ml_collections.ConfigDict) -> TestSet:
  """The run's test split (`config.data.name`, `data_dir`, `eval.split`)."""
  from ce2l_jax.data import sources as src_lib
  ecfg = config.eval
  source = src_lib.TfdsSource(config.data.name, ecfg.split, config.data.get("data_dir"))
  return make_test_set(source, protocol_for(config.data.name, ecfg.protocol),
                       sampling=ecfg.sampling, rand_perm_cam=ecfg.rand_perm_cam or None)


def official_gallery_order(gallery: np.ndarray, test_set: TestSet) -> np.ndarray:
  """`gallery` (indices into the test set) in the official description's order: camera, then
  identity, then image (file name; the source index where names are unknown)."""
  g = np.asarray(gallery, np.int64)
  image = test_set.names[g] if test_set.names is not None else g
  return g[np.lexsort((g, image, test_set.pid[g], test_set.camid[g]))]


def make_trials(test_set: TestSet, cfg: ml_collections.ConfigDict,
                num_trials: int | None = None) -> dict[str, list]:
  """`{setting: [Trial]}` of the protocol (indices into the test set); SYSU galleries in
  `official_gallery_order`."""
  trials = _make_trials(test_set, cfg, num_trials)
  if test_set.protocol != "sysu":
    return trials
  return {name: [metrics_lib.Trial(t.query, official_gallery_order(t.gallery, test_set))
                 for t in ts] for name, ts in trials.items()}


def _make_trials(test_set: TestSet, cfg: ml_collections.ConfigDict,
                 num_trials: int | None = None) -> dict[str, list]:
  if test_set.protocol == "llcm":
    return {d: metrics_lib.llcm_trials(test_set.pid, test_set.camid, test_set.modality,
                                       test_set.files, d, int(num_trials or cfg.num_trials))
            for d in metrics_lib.LLCM_DIRECTIONS}
  if test_set.protocol == "regdb":
    return {d: [metrics_lib.regdb_trial(test_set.modality, d)] for d in cfg.regdb_directions}
  n = int(num_trials or cfg.num_trials)
  sampling = "random"
  if cfg.sampling in ("auto", "official") and test_set.rand_perm_cam is not None:
    sampling = "official"
  out = {}
  for mode in cfg.sysu_modes:
    for shot in cfg.sysu_shots:
      kw = dict(mode=mode, shot=shot, num_trials=n, seed=int(cfg.gallery_seed), files=test_set.files)
      if sampling == "official":
        try:
          out[f"{mode}_{shot}"] = metrics_lib.sysu_trials(
              test_set.pid, test_set.camid, sampling="official",
              rand_perm_cam=test_set.rand_perm_cam, **kw)
          continue
        except ValueError as e:
          if cfg.sampling == "official":
            raise
          logging.warning("official SYSU galleries do not fit this test set (%s); using random "
                          "galleries", e)
          sampling = "random"
      out[f"{mode}_{shot}"] = metrics_lib.sysu_trials(test_set.pid, test_set.camid, **kw)
  return out


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------


def raw_pixel_predict_fn(size: Sequence[int] = (32, 16)) -> PredictFn:
  """The baseline's features: grayscale, area-resized to `size`, mean-removed, L2-normalised
  (as `ce2l_jax.data.synthetic.raw_pixel_features`); `variables` and `modality` are ignored."""
  th, tw = (int(s) for s in size)

  def predict(variables, images, modality):
    del variables, modality
    gray = jnp.asarray(images, jnp.float32).mean(axis=-1)
    n, h, w = gray.shape
    if h % th == 0 and w % tw == 0:
      small = gray.reshape(n, th, h // th, tw, w // tw).mean(axis=(2, 4))
    else:
      small = jax.image.resize(gray, (n, th, tw), "linear", antialias=True)
    small = small.reshape(n, -1)
    small = small - small.mean(axis=1, keepdims=True)
    return small / (jnp.linalg.norm(small, axis=1, keepdims=True) + 1e-6)

  return predict


def _gather(x) -> np.ndarray:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(jax.device_get(x))


class FeatureExtractor:
  """Features of padded eval batches, each image through its modality's stream."""

  def __init__(self, predict_fn: PredictFn, *, flip: bool = False, mesh=None):
    self.mesh = mesh

    def features(variables, images, modality):
      f = predict_fn(variables, images, modality).astype(jnp.float32)
      if flip:
        f = 0.5 * (f + predict_fn(variables, images[:, :, ::-1], modality).astype(jnp.float32))
      return f

    self._fn = jax.jit(features, static_argnums=(2,))

  def __call__(self, variables, batches, num_examples: int) -> np.ndarray:
    """(num_examples, D) float32, row i = the example with `index` i."""
    out = None
    filled = np.zeros(num_examples, bool)
    for batch in batches:
      mask = _gather(np.asarray(batch["_mask"], bool))
      index = _gather(np.asarray(batch["index"]))
      modality = _gather(np.asarray(batch["modality"]))
      images = np.asarray(batch["image"])
      if self.mesh is not None:
        images = parallel.shard_batch({"image": images}, self.mesh)["image"]
      for m in np.unique(modality[mask]):
        feats = _gather(self._fn(variables, images, int(m)))
        rows = mask & (modality == m)
        if out is None:
          out = np.zeros((num_examples, feats.shape[1]), np.float32)
        out[index[rows]] = feats[rows]
        filled[index[rows]] = True
    if out is None or not filled.all():
      raise ValueError(f"the eval stream covered {int(filled.sum())} of {num_examples} examples")
    return out


# --------------------------------------------------------------------------------------------
# The evaluator
# --------------------------------------------------------------------------------------------


def _l2_normalize(x: np.ndarray) -> np.ndarray:
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class Evaluator:
  """Runs the test protocol of `test_set` on the features `predict_fn` gives.

  `image_size` (H, W) and `batch_size` configure the eval stream (built once, iterated at every
  `run`); `mesh` shards each batch over the devices (batch_size divisible by their number).
  """

  def __init__(self, predict_fn: PredictFn, test_set: TestSet, cfg: ml_collections.ConfigDict, *,
               image_size: Sequence[int], batch_size: int = 64, mesh=None,
               resample: str = "bilinear", threads: int = 2):
    from ce2l_jax.data import pipeline
    self.test_set, self.cfg = test_set, cfg
    self.extract = FeatureExtractor(predict_fn, flip=bool(cfg.flip), mesh=mesh)
    self.batches = pipeline.build_eval_batches(
        test_set.source, None, int(batch_size), image_size=tuple(image_size), resample=resample,
        threads=threads, num_devices=mesh)
    self._trials: dict[int, dict] = {}

  def trials(self, num_trials: int | None = None) -> dict[str, list]:
    n = int(num_trials or self.cfg.num_trials)
    if n not in self._trials:
      self._trials[n] = make_trials(self.test_set, self.cfg, n)
    return self._trials[n]

  def features(self, variables) -> np.ndarray:
    feats = self.extract(variables, self.batches, len(self.test_set))
    bad = ~np.isfinite(feats).all(axis=1)
    if bad.any():
      raise NonFiniteFeaturesError(
          f"{int(bad.sum())} of {len(feats)} test images have NaN/Inf features (the model "
          "diverged?); refusing to score them")
    return _l2_normalize(feats) if self.cfg.normalize_features else feats

  def run(self, variables, num_trials: int | None = None,
          settings: Sequence[str] | None = None, rerank=None) -> dict[str, metrics_lib.TrialResults]:
    """`{setting: TrialResults}`; the features are computed once for every setting and trial.
    `rerank`: None or `rerank_params(cfg)`: k-reciprocal re-ranked distances per trial."""
    feats = self.features(variables)
    ts = self.test_set
    out = {}
    for name, trials in self.trials(num_trials).items():
      if settings is not None and name not in settings:
        continue
      out[name] = metrics_lib.evaluate(feats, ts.pid,
                                       ts.camid if ts.protocol in ("sysu", "llcm") else None,
                                       trials, protocol=ts.protocol, metric=self.cfg.metric,
                                       rerank=rerank)
    return out

  def first_setting(self) -> str:
    return next(iter(self.trials(1)))

  def run_periodic(self, variables) -> dict[str, float]:
    """One setting (the first: all_single / visible_to_thermal), `periodic_trials` trials, flat
    `{"<setting>/<key>": mean}` for the metric writer."""
    name = self.first_setting()
    res = self.run(variables, int(self.cfg.periodic_trials or 1), settings=[name])[name]
    return {f"{name}/{k}": v for k, v in res.mean.items()}


def results_dict(results: Mapping[str, metrics_lib.TrialResults]) -> dict[str, dict]:
  """JSON form: `{setting: {"mean": {...}, "std": {...}, "per_trial", "cmc", "num_trials"}}`."""
  return {k: (v.to_dict() if isinstance(v, metrics_lib.TrialResults) else dict(v))
          for k, v in results.items()}


def flat_means(results: Mapping[str, Any]) -> dict[str, float]:
  """`{"<setting>/<key>": mean}` of a results dict (for metrics.jsonl)."""
  out = {}
  for setting, r in results.items():
    mean = r.mean if isinstance(r, metrics_lib.TrialResults) else r["mean"]
    out.update({f"{setting}/{k}": float(v) for k, v in mean.items()})
  return out


def make_evaluator(config: ml_collections.ConfigDict, predict_fn: PredictFn, mesh=None,
                   test_set: TestSet | None = None) -> Evaluator:
  """An `Evaluator` of the run's test split with `config.input`'s eval image size/batch size."""
  from ce2l_jax.data import pipeline
  input_cfg = config.input if "input" in config else pipeline.default_input_config()
  ecfg = config.eval
  test_set = test_set if test_set is not None else open_test_set(config)
  return Evaluator(predict_fn, test_set, ecfg, image_size=tuple(input_cfg.image_size),
                   batch_size=int(ecfg.batch_size or input_cfg.eval_batch_size), mesh=mesh,
                   resample=str(input_cfg.get("resample", "bilinear")),
                   threads=int(input_cfg.get("threads", 2)))
