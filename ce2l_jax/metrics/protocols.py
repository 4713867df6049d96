"""SYSU-MM01 and RegDB evaluation protocols, and `evaluate`, which runs their trials on features.

A *test-set description* is a set of parallel arrays over the test images (both modalities):
`pid` (identity; for SYSU the dataset's own identity number, needed by the official mode),
`camid` (SYSU cameras 1, 2, 4, 5 visible, 3, 6 infrared), for RegDB `modality` (0 visible,
1 thermal), and for the SYSU official mode `files` (file names). Protocol functions return
`Trial(query, gallery)`: int64 index arrays into those arrays, in ascending order (gallery order
breaks distance ties in the metrics).

SYSU-MM01 (Wu et al., ICCV 2017; the dataset's own evaluation code):
* queries: every infrared image (cameras 3 and 6) of the test set, in both modes;
* gallery cameras: `all`-search 1, 2, 4, 5; `indoor`-search 1, 2;
* `single`-shot: one image per (identity, camera) of those cameras; `multi`-shot: ten per
  (identity, camera), or all of them if fewer;
* 10 trials, each with its own gallery. `sampling="random"`: trial t draws one uniform key per
  test image from `np.random.default_rng(seed + t)` and takes, in every (identity, camera), the
  images with the smallest keys. So a trial's indoor gallery is its all-search gallery restricted
  to cameras 1, 2, and its single-shot gallery is a subset of its multi-shot one. Pass `files`
  to make the draw independent of the order of the description.
  `sampling="official"`: the dataset's `rand_perm_cam.mat`: cell {cam}{id} is a 10 × n matrix of
  1-based indices into that identity's images in that camera sorted by file name; trial t takes
  the first `number_shot` indices of row t (t = 0..9).
* metrics: `eval_sysu` (camera-3 queries never see camera-2 images).

RegDB (Nguyen et al., Sensors 2017; split protocol of Ye et al.): each of the 10 splits has its
own test set; one trial per split; queries are all images of one modality, the gallery all images
of the other (`visible_to_thermal` or `thermal_to_visible`); metrics: `eval_regdb`. The caller
runs the 10 splits and averages them with `pool_results`.

LLCM (Zhang & Wang, CVPR 2023), as the authors' released evaluation code does it (github.com/
ZYK100/LLCM: `DEEN/test.py`, `DEEN/data_manager.py` `process_query_llcm` /
`process_gallery_llcm`, `AGW/eval_metrics.py` `eval_llcm`): 10 trials per direction; trial t
draws, with Python's `random.seed(t)`, one image per (identity, camera) of one modality:
identities ascending, cameras in the order LLCM_CAMERAS lists (the infrared list has no camera 3),
`random.choice` among that group's images sorted by file name (`llcm_gallery` replays exactly
these draws from the file names). `ir_to_vis` (the code's `test_mode = [1, 2]`): queries every
infrared test image, gallery the trial's visible draw. `vis_to_ir` (`test_mode = [2, 1]`): the
code extracts every visible image as "query" and the infrared draw as "gallery", then scores the
transposed distances, i.e. the infrared draw ranks every visible image; `llcm_trials` keeps that
(Trial.query = the infrared draw, Trial.gallery = every visible image) so that numbers compare
with the published ones. Metrics: `eval_llcm` (a gallery image of the query's identity from the
query's camera is removed; CMC over identities as SYSU's).
"""


from __future__ import annotations

import dataclasses
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from ce2l_jax import INFRARED, VISIBLE
from ce2l_jax.metrics import ranking, reranking
from ce2l_jax.metrics.ranking import eval_regdb, eval_sysu

SYSU_INFRARED_CAMS = (3, 6)
SYSU_GALLERY_CAMS = {"all": (1, 2, 4, 5), "indoor": (1, 2)}
SYSU_SHOTS = {"single": 1, "multi": 10}
SYSU_NUM_TRIALS = 10
REGDB_DIRECTIONS = {"visible_to_thermal": (VISIBLE, INFRARED),
                    "thermal_to_visible": (INFRARED, VISIBLE)}
RESULT_KEYS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")
LLCM_CAMERAS = {VISIBLE: (1, 2, 3, 4, 5, 6, 7, 8, 9), INFRARED: (1, 2, 4, 5, 6, 7, 8, 9)}
LLCM_DIRECTIONS = ("ir_to_vis", "vis_to_ir")
LLCM_NUM_TRIALS = 10
_RANKS = {"rank1": 1, "rank5": 5, "rank10": 10, "rank20": 20}


class Trial(NamedTuple):
  """Query and gallery of one trial: int64 indices into the test-set description."""
  query: np.ndarray
  gallery: np.ndarray


# --------------------------------------------------------------------------- SYSU-MM01


def sysu_queries(camid) -> np.ndarray:
  """Indices of the SYSU queries: every infrared image (cameras 3 and 6), ascending."""
  camid = np.asarray(camid)
  if camid.ndim != 1:
    raise ValueError(f"camid must be 1-D, got shape {camid.shape}")
  return np.flatnonzero(np.isin(camid, SYSU_INFRARED_CAMS)).astype(np.int64)


def _sysu_mode(mode, shot):
  if mode not in SYSU_GALLERY_CAMS:
    raise ValueError(f"mode must be one of {sorted(SYSU_GALLERY_CAMS)}, got {mode!r}")
  if shot not in SYSU_SHOTS:
    raise ValueError(f"shot must be one of {sorted(SYSU_SHOTS)}, got {shot!r}")
  return SYSU_GALLERY_CAMS[mode], SYSU_SHOTS[shot]


def _pid_camid(pid, camid):
  pid, camid = np.asarray(pid), np.asarray(camid)
  if pid.ndim != 1 or camid.shape != pid.shape:
    raise ValueError(f"pid and camid must be 1-D and of equal length, got shapes {pid.shape} "
                     f"and {camid.shape}")
  if pid.size == 0:
    raise ValueError("the test-set description is empty (pid has no entries)")
  return pid, camid


def _take_per_group(idx, pid, camid, sort_key, k):
  """Of the images `idx`, the k first by `sort_key` in every (pid, camid) group, ascending."""
  order = idx[np.lexsort((sort_key[idx], camid[idx], pid[idx]))]
  p, c = pid[order], camid[order]
  new_group = np.ones(order.size, bool)
  new_group[1:] = (p[1:] != p[:-1]) | (c[1:] != c[:-1])
  group_start = np.maximum.accumulate(np.where(new_group, np.arange(order.size), 0))
  return np.sort(order[np.arange(order.size) - group_start < k]).astype(np.int64)


def sysu_gallery(pid, camid, *, mode="all", shot="single", trial=0, seed=0,
                 files=None) -> np.ndarray:
  """Seeded random SYSU gallery of one trial: indices into the test set, ascending.

  Trial t uses `np.random.default_rng(seed + trial)`: one uniform key per test image (all of
  them, so the draw does not depend on `mode` or `shot`); in every (identity, camera) of the
  mode's cameras the images with the 1 (single) or 10 (multi) smallest keys are taken, all of them
  if fewer. Keys are handed out in the description's order, or, when `files` is given, in
  (pid, camid, file name) order, which makes the gallery independent of the record order.
  """
  pid, camid = _pid_camid(pid, camid)
  cams, k = _sysu_mode(mode, shot)
  draw = np.random.default_rng(seed + trial).random(pid.size)
  if files is None:
    keys = draw
  else:
    files = _files(files, pid)
    keys = np.empty_like(draw)
    keys[np.lexsort((files, camid, pid))] = draw
  return _take_per_group(np.flatnonzero(np.isin(camid, cams)), pid, camid, keys, k)


def _files(files, pid):
  files = np.asarray(files)
  if files.shape != pid.shape:
    raise ValueError(f"files must have one name per test image ({pid.size}), got shape "
                     f"{files.shape}")
  return files


def parse_rand_perm_cam(mat: Any) -> dict[tuple[int, int], np.ndarray]:
  """`{(camera, identity): (10, n) int64 array of 1-based indices}` from `rand_perm_cam.mat`.

  `mat`: the dict `scipy.io.loadmat(path)` returns, its `"rand_perm_cam"` entry (a 6 × 1 cell),
  or any nesting of that shape (cell per camera of cells per identity, 1-based in both).
  Identities with an empty matrix (no image in that camera) are left out.
  """
  if isinstance(mat, Mapping):
    if "rand_perm_cam" not in mat:
      raise ValueError(f"mat has no 'rand_perm_cam' entry (keys: {sorted(mat)})")
    mat = mat["rand_perm_cam"]
  out = {}
  for cam, cam_cells in enumerate(_cells(mat), start=1):
    for ident, m in enumerate(_cells(cam_cells), start=1):
      m = np.asarray(m)
      if m.size:
        if m.ndim != 2:
          raise ValueError(f"rand_perm_cam cell {{{cam}}}{{{ident}}} must be a matrix, "
                           f"got shape {m.shape}")
        out[(cam, ident)] = m.astype(np.int64)
  return out


def _cells(x):
  """The elements of a MATLAB cell array as loaded by scipy (object array), or of a list."""
  if isinstance(x, np.ndarray) and x.dtype == object:
    return list(x.reshape(-1))
  if isinstance(x, (list, tuple)):
    return list(x)
  raise ValueError(f"expected a cell array (object ndarray or list), got {type(x).__name__}")


def sysu_official_gallery(pid, camid, files, rand_perm_cam, *, mode="all", shot="single",
                          trial=0) -> np.ndarray:
  """The official SYSU gallery of trial `trial` (0..9) from `parse_rand_perm_cam`'s output.

  In every (identity, camera) of the mode's cameras the test images are sorted by file name and
  the first 1 (single) or 10 (multi) 1-based indices of row `trial` of cell {camera}{identity}
  pick them. `pid` must be the dataset's identity numbers. Raises ValueError when a group's image
  count differs from the matrix's (a different copy of the dataset) or has no matrix.
  """
  pid, camid = _pid_camid(pid, camid)
  files = _files(files, pid)
  cams, k = _sysu_mode(mode, shot)
  idx = np.flatnonzero(np.isin(camid, cams))
  order = idx[np.lexsort((files[idx], camid[idx], pid[idx]))]
  p, c = pid[order], camid[order]
  bounds = np.flatnonzero(np.r_[True, (p[1:] != p[:-1]) | (c[1:] != c[:-1]), True])
  picked = []
  for a, b in zip(bounds[:-1], bounds[1:]):  # one (identity, camera) group at a time
    key = (int(c[a]), int(p[a]))
    perm = rand_perm_cam.get(key)
    if perm is None:
      raise ValueError(f"rand_perm_cam has no entry for camera {key[0]} identity {key[1]}, "
                       f"which has {b - a} test images")
    if perm.shape[1] != b - a:
      raise ValueError(f"rand_perm_cam lists {perm.shape[1]} images for camera {key[0]} "
                       f"identity {key[1]}, the test set has {b - a}")
    if not 0 <= trial < perm.shape[0]:
      raise ValueError(f"trial must be in [0, {perm.shape[0]}), got {trial}")
    picked.append(order[a + perm[trial, :k] - 1])
  return np.sort(np.concatenate(picked) if picked else np.zeros(0, np.int64)).astype(np.int64)


def sysu_trials(pid, camid, *, mode="all", shot="single", num_trials=SYSU_NUM_TRIALS, seed=0,
                sampling="random", files=None, rand_perm_cam=None) -> list[Trial]:
  """The SYSU-MM01 trials: the same queries (`sysu_queries`) and one gallery per trial.

  `sampling="random"`: `sysu_gallery(..., trial=t, seed=seed, files=files)` for t < num_trials;
  `sampling="official"`: `sysu_official_gallery` with `files` and `rand_perm_cam` (the output of
  `parse_rand_perm_cam`), num_trials ≤ 10.
  """
  query = sysu_queries(camid)
  if sampling == "random":
    galleries = [sysu_gallery(pid, camid, mode=mode, shot=shot, trial=t, seed=seed, files=files)
                 for t in range(num_trials)]
  elif sampling == "official":
    if files is None or rand_perm_cam is None:
      raise ValueError("sampling='official' needs files and rand_perm_cam")
    galleries = [sysu_official_gallery(pid, camid, files, rand_perm_cam, mode=mode, shot=shot,
                                       trial=t) for t in range(num_trials)]
  else:
    raise ValueError(f"sampling must be 'random' or 'official', got {sampling!r}")
  return [Trial(query, g) for g in galleries]


# --------------------------------------------------------------------------- RegDB


def regdb_trial(modality, direction="visible_to_thermal") -> Trial:
  """The RegDB trial of one split's test set: queries of one modality, gallery of the other.

  `modality`: (n,) 0 visible / 1 thermal per test image. Chosen by modality, not by slicing.
  """
  if direction not in REGDB_DIRECTIONS:
    raise ValueError(f"direction must be one of {sorted(REGDB_DIRECTIONS)}, got {direction!r}")
  modality = np.asarray(modality)
  if modality.ndim != 1:
    raise ValueError(f"modality must be 1-D, got shape {modality.shape}")
  q_mod, g_mod = REGDB_DIRECTIONS[direction]
  query = np.flatnonzero(modality == q_mod).astype(np.int64)
  gallery = np.flatnonzero(modality == g_mod).astype(np.int64)
  if query.size == 0 or gallery.size == 0:
    raise ValueError(f"modality has {query.size} query and {gallery.size} gallery images for "
                     f"{direction}: both must be non-empty")
  return Trial(query, gallery)


# --------------------------------------------------------------------------- LLCM


def llcm_gallery(pid, camid, modality, files, *, gallery_modality: int, trial: int) -> np.ndarray:
  """The released code's draw of trial `trial`: one image per (identity, camera) of
  `gallery_modality`, indices into the test-set description, ascending (module docstring).

  `files`: each image's path (any prefix; only the order of names within one (identity,
  camera) group matters, which is their sorted order as in `sorted(os.listdir(...))`).
  """
  import random
  pid, camid = _pid_camid(pid, camid)
  modality = np.asarray(modality)
  files = _files(files, pid)
  cams = LLCM_CAMERAS[int(gallery_modality)]
  idx = np.flatnonzero((modality == gallery_modality) & np.isin(camid, cams))
  names = np.asarray([str(f).rsplit("/", 1)[-1] for f in files[idx]])
  # Groups in the code's loop order: identity ascending, then camera in list order.
  cam_rank = np.asarray([cams.index(int(c)) for c in camid[idx]], np.int64)
  order = idx[np.lexsort((names, cam_rank, pid[idx]))]
  p, c = pid[order], camid[order]
  bounds = np.flatnonzero(np.r_[True, (p[1:] != p[:-1]) | (c[1:] != c[:-1]), True])
  rng = random.Random(trial)
  # `random.choice(seq)` picks seq[randbelow(len(seq))]: the same call on range(n), same state.
  picked = [order[a + rng.choice(range(b - a))] for a, b in zip(bounds[:-1], bounds[1:])]
  return np.sort(np.asarray(picked, np.int64))


def llcm_trials(pid, camid, modality, files, direction="ir_to_vis",
                num_trials=LLCM_NUM_TRIALS) -> list[Trial]:
  """The LLCM trials of one direction (module docstring): `ir_to_vis` every infrared image
  against trial t's visible draw; `vis_to_ir` trial t's infrared draw against every visible
  image (the released code's transposed scoring)."""
  if direction not in LLCM_DIRECTIONS:
    raise ValueError(f"direction must be one of {LLCM_DIRECTIONS}, got {direction!r}")
  pid, camid = _pid_camid(pid, camid)
  modality = np.asarray(modality)
  if modality.shape != pid.shape:
    raise ValueError(f"modality must have one entry per test image ({pid.size}), got shape "
                     f"{modality.shape}")
  every = {m: np.flatnonzero((modality == m) & np.isin(camid, LLCM_CAMERAS[m])).astype(np.int64)
           for m in (VISIBLE, INFRARED)}
  for m, name in ((VISIBLE, "visible"), (INFRARED, "infrared")):
    if every[m].size == 0:
      raise ValueError(f"the LLCM test set has no {name} image in cameras {LLCM_CAMERAS[m]}")
  out = []
  for t in range(num_trials):
    if direction == "ir_to_vis":
      out.append(Trial(every[INFRARED], llcm_gallery(pid, camid, modality, files,
                                                     gallery_modality=VISIBLE, trial=t)))
    else:
      out.append(Trial(llcm_gallery(pid, camid, modality, files, gallery_modality=INFRARED,
                                    trial=t), every[VISIBLE]))
  return out


def eval_llcm(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20, *,
              chunk_elements=1 << 22):
  """LLCM metrics `(cmc, mAP, mINP)` (the released `eval_llcm` rules), vectorised.

  For each query the gallery images of its identity taken by its camera are removed from its
  ranked list (a stable sort: ties keep gallery order); AP and INP on that list; the CMC counts
  each gallery identity at its first occurrence (as `eval_sysu`). Queries without a true match
  left are skipped (as `ranking`'s functions; ValueError if none has one).
  """
  distmat, q_pids, g_pids, max_rank = ranking._check(distmat, q_pids, g_pids, max_rank)
  n_q, n_g = distmat.shape
  q_camids = ranking._check_1d("q_camids", q_camids, n_q, "query rows")
  g_camids = ranking._check_1d("g_camids", g_camids, n_g, "gallery columns")
  q_dense, g_dense, _ = ranking._dense_labels(q_pids, g_pids)
  hist = np.zeros(max_rank + 2, np.int64)
  sums, n_valid = np.zeros(2), 0
  step = max(1, int(chunk_elements) // n_g)
  for s in range(0, n_q, step):
    e = min(n_q, s + step)
    order = ranking.stable_argsort_rows(distmat[s:e])
    pid_s = g_dense[order]
    same = pid_s == q_dense[s:e, None]
    removed = same & (g_camids[order] == q_camids[s:e, None])
    rows, cols = np.nonzero(same & ~removed)                 # row-major: ranked within a row
    if rows.size == 0:
      continue
    rank = cols + 1 - np.cumsum(removed, axis=1, dtype=np.int64)[rows, cols]
    valid, first, ap, inp = ranking._per_row(rows, rank, e - s)
    cmc_rank = 1 + ranking._distinct_before(pid_s[valid], cols[first], removed[valid])
    hist += np.bincount(np.minimum(cmc_rank, max_rank + 1), minlength=max_rank + 2)
    sums += ap.sum(), inp.sum()
    n_valid += ap.size
  if n_valid == 0:
    raise ValueError("no query has a true match in the gallery (after removing the query's "
                     "camera): check q_pids / g_pids")
  return np.cumsum(hist[1:max_rank + 1]) / n_valid, sums[0] / n_valid, sums[1] / n_valid


# --------------------------------------------------------------------------- running trials


@dataclasses.dataclass(frozen=True)
class TrialResults:
  """Results of a set of trials; every value is a fraction.

  mean, std: `{key: float}` for key in RESULT_KEYS, over trials (std with ddof=0).
  per_trial: `{key: (n_trials,) float64}`.
  cmc: (max_rank,) mean CMC curve over trials (for plotting).
  """
  mean: dict
  std: dict
  per_trial: dict
  cmc: np.ndarray

  @property
  def num_trials(self) -> int:
    return int(self.per_trial[RESULT_KEYS[0]].size)

  def to_dict(self) -> dict:
    """JSON-ready: plain floats and lists."""
    return {"mean": {k: float(v) for k, v in self.mean.items()},
            "std": {k: float(v) for k, v in self.std.items()},
            "per_trial": {k: [float(x) for x in v] for k, v in self.per_trial.items()},
            "cmc": [float(x) for x in self.cmc], "num_trials": self.num_trials}

  @classmethod
  def from_per_trial(cls, per_trial: Mapping[str, Sequence[float]], cmcs) -> "TrialResults":
    """Mean/std from per-trial values; `cmcs` (n_trials, max_rank) averaged into `cmc`."""
    per_trial = {k: np.asarray(per_trial[k], np.float64).reshape(-1) for k in RESULT_KEYS}
    return cls(mean={k: float(v.mean()) for k, v in per_trial.items()},
               std={k: float(v.std()) for k, v in per_trial.items()},
               per_trial=per_trial, cmc=np.mean(np.asarray(cmcs, np.float64), axis=0))


def pool_results(results: Sequence[TrialResults]) -> TrialResults:
  """One result from several (e.g. the 10 RegDB splits): trials pooled, mean/std recomputed."""
  if not results:
    raise ValueError("results is empty")
  lengths = {r.cmc.size for r in results}
  if len(lengths) != 1:
    raise ValueError(f"results have CMC curves of different lengths {sorted(lengths)}")
  per_trial = {k: np.concatenate([r.per_trial[k] for r in results]) for k in RESULT_KEYS}
  cmcs = np.concatenate([np.broadcast_to(r.cmc, (r.num_trials, r.cmc.size)) for r in results])
  return TrialResults.from_per_trial(per_trial, cmcs)


def pairwise_distances(query, gallery, metric="euclidean", *, chunk_rows=4096) -> np.ndarray:
  """(n_query, n_gallery) distances between feature rows, computed `chunk_rows` queries at a time.

  `euclidean`: sqrt(max(|q|² + |g|² − 2 q·g, 0)); `cosine`: 1 − q·g / (|q| |g|) (a zero
  vector has distance 1 to everything). float32 in → float32 out, else float64. Each chunk is
  one BLAS product written into the output and finished in place, so the output is the only
  large allocation (smaller chunks cost BLAS efficiency: 1,024 rows took ~20 % more CPU time).
  """
  q, g = _as_features("query features", query), _as_features("gallery features", gallery)
  if q.shape[1] != g.shape[1]:
    raise ValueError(f"query and gallery features differ in dimension: {q.shape[1]} vs "
                     f"{g.shape[1]}")
  dtype = np.float32 if q.dtype == np.float32 and g.dtype == np.float32 else np.float64
  q, g = q.astype(dtype, copy=False), g.astype(dtype, copy=False)
  if metric == "cosine":
    q = q / _safe_norm(q)
    g = g / _safe_norm(g)
  elif metric != "euclidean":
    raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
  out = np.empty((q.shape[0], g.shape[0]), dtype)
  g_t = g.T  # a view: BLAS takes the transpose flag
  g_sq = np.einsum("ij,ij->i", g, g)
  for s in range(0, q.shape[0], chunk_rows):
    qc = q[s:s + chunk_rows]
    block = out[s:s + chunk_rows]
    np.matmul(qc, g_t, out=block)
    if metric == "cosine":
      np.subtract(dtype(1), block, out=block)
    else:
      block *= -2
      block += np.einsum("ij,ij->i", qc, qc)[:, None]
      block += g_sq[None, :]
      np.maximum(block, 0, out=block)
      np.sqrt(block, out=block)
  return out


def _safe_norm(x):
  n = np.linalg.norm(x, axis=1, keepdims=True)
  return np.where(n > 0, n, 1).astype(x.dtype)


def _as_features(name, x):
  x = np.asarray(x)
  if x.ndim != 2:
    raise ValueError(f"{name} must be 2-D (n, dim), got shape {x.shape}")
  if x.shape[0] == 0:
    raise ValueError(f"{name} are empty (shape {x.shape})")
  if x.dtype.kind not in "fiu" or x.dtype == np.float16 or str(x.dtype) == "bfloat16":
    x = x.astype(np.float32)
  if not np.isfinite(x).all():
    raise ValueError(f"{name} contain NaN or inf")
  return x


def evaluate(features, pid, camid, trials: Sequence[Trial], *, protocol="sysu",
             metric="euclidean", max_rank=20, rerank=None) -> TrialResults:
  """Runs `trials` on the features of a test-set description.

  Args:
    features: (n, dim) one feature per test image (queries and gallery candidates alike;
      concatenate them if they were extracted separately, in the order of `pid`/`camid`).
    pid, camid: (n,) the test-set description (camid may be None for RegDB).
    trials: `Trial`s (`sysu_trials`, `[regdb_trial(...)]`); indices into the arrays above.
    protocol: "sysu" (`eval_sysu`), "regdb" (`eval_regdb`) or "llcm" (`eval_llcm`; camid
      needed).
    metric: "euclidean" or "cosine" (`pairwise_distances`).
    max_rank: CMC length, ≥ 20 (rank20 is reported); a trial's curve shorter than that (small
      gallery) is extended with its last value.
    rerank: None, or `reranking.RerankParams(k1, k2, lambda_value)`: every trial's distances are
      k-reciprocal re-ranked over its own queries and gallery (`reranking.rerank`, on squared
      Euclidean distances whatever `metric` says).

  The distances between all queries and all gallery images used by any trial are computed once
  (float32 features: float32, (n_query, n_union_gallery) memory) and every trial reads its
  columns. Returns `TrialResults` (keys RESULT_KEYS, fractions).
  """
  if protocol not in ("sysu", "regdb", "llcm"):
    raise ValueError(f"protocol must be 'sysu', 'regdb' or 'llcm', got {protocol!r}")
  if not isinstance(max_rank, (int, np.integer)) or max_rank < 20:
    raise ValueError(f"max_rank must be an integer ≥ 20 (rank20 is reported), got {max_rank!r}")
  features = _as_features("features", features)
  n = features.shape[0]
  pid = np.asarray(pid)
  if pid.shape != (n,):
    raise ValueError(f"pid must have one entry per feature row ({n}), got shape {pid.shape}")
  if protocol in ("sysu", "llcm"):
    if camid is None:
      raise ValueError(f"camid is required for protocol={protocol!r}")
    camid = np.asarray(camid)
    if camid.shape != (n,):
      raise ValueError(f"camid must have one entry per feature row ({n}), got shape "
                       f"{camid.shape}")
  trials = [Trial(np.asarray(q, np.int64), np.asarray(g, np.int64)) for q, g in trials]
  if not trials:
    raise ValueError("trials is empty")
  for t, (q, g) in enumerate(trials):
    for name, ix in (("query", q), ("gallery", g)):
      if ix.ndim != 1 or ix.size == 0:
        raise ValueError(f"trial {t}: {name} indices must be a non-empty 1-D array, got shape "
                         f"{ix.shape}")
      if ix.min() < 0 or ix.max() >= n:
        raise ValueError(f"trial {t}: {name} indices out of range [0, {n})")
  q_all = np.unique(np.concatenate([q for q, _ in trials]))
  g_all = np.unique(np.concatenate([g for _, g in trials]))
  dist = pairwise_distances(features[q_all], features[g_all], metric) if rerank is None else None
  per_trial = {k: [] for k in RESULT_KEYS}
  cmcs = []
  for q, g in trials:
    q_pos, g_pos = np.searchsorted(q_all, q), np.searchsorted(g_all, g)
    if rerank is not None:
      d = reranking.rerank(features[q], features[g], k1=rerank.k1, k2=rerank.k2,
                           lambda_value=rerank.lambda_value)
    else:
      d = np.take(dist, g_pos, axis=1)
      if not (q_pos.size == q_all.size and np.array_equal(q_pos, np.arange(q_all.size))):
        d = d[q_pos]
    if protocol == "sysu":
      cmc, m_ap, m_inp = eval_sysu(d, pid[q], pid[g], camid[q], camid[g], max_rank)
    elif protocol == "llcm":
      cmc, m_ap, m_inp = eval_llcm(d, pid[q], pid[g], camid[q], camid[g], max_rank)
    else:
      cmc, m_ap, m_inp = eval_regdb(d, pid[q], pid[g], max_rank)
    cmc = np.concatenate([cmc, np.full(max_rank - cmc.size, cmc[-1])])
    cmcs.append(cmc)
    for k, r in _RANKS.items():
      per_trial[k].append(cmc[r - 1])
    per_trial["mAP"].append(m_ap)
    per_trial["mINP"].append(m_inp)
  return TrialResults.from_per_trial(per_trial, cmcs)
