"""CMC, mAP and mINP of a query × gallery distance matrix (pure numpy, no I/O).

`eval_sysu` and `eval_regdb` have the signatures and the semantics of the AGW / DDAG / CAJ
baselines' `eval_metrics.py`, so numbers are comparable with the cross-modality re-ID literature:

* Smaller distance = more similar. Each query row is ranked by a *stable* sort: equal distances
  keep gallery order (the baselines use `np.argsort`'s default, unstable, sort; on ties they may
  differ from us).
* The ranked list of a query may be filtered (SYSU-MM01: a query from camera 3 never sees gallery
  images from camera 2, whatever their identity, because both cameras film the same room). Ranks
  are 1-based positions in the filtered list.
* A *true match* is a gallery image in the filtered list with the query's identity.
* AP = mean over the true matches of (true matches at or before it / its rank).
  INP = number of true matches / rank of the last true match (Ye et al., AGW).
* CMC(k) = fraction of queries whose CMC rank is ≤ k. For RegDB the CMC rank is the rank of the
  first true match. For SYSU-MM01 it is counted over *identities*: the filtered list is reduced to
  each gallery identity's first occurrence (the official SYSU-MM01 / AGW `eval_sysu` behaviour),
  so the CMC rank is 1 + the number of other identities seen before the first true match.
* A query with no true match left after filtering is skipped: it counts in neither the numerator
  nor the denominator of CMC, mAP and mINP. If no query has a true match, ValueError.
* `cmc` has length min(max_rank, n_gallery); for SYSU, past the number of distinct identities the
  curve stays at its last value (1.0).

Everything is vectorized over the query axis, which is processed in chunks of about
`chunk_elements` distances to bound memory (a few arrays of chunk size are alive at once). Ranks
come from sorting each row's distance values and binary-searching the true matches in it; rows in
which a true match ties in distance with another entry are recomputed with a full stable argsort,
so the answer is always the stable-sort one.
"""

from __future__ import annotations

import numpy as np

# SYSU-MM01: cameras 2 (RGB) and 3 (IR) film the same indoor room.
SYSU_SAME_ROOM = (3, 2)  # (query camera, gallery camera removed for it)

_DEFAULT_CHUNK_ELEMENTS = 1 << 18  # ~256k distances per chunk: a few MB per temporary


def eval_sysu(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20, *,
              chunk_elements=_DEFAULT_CHUNK_ELEMENTS):
  """SYSU-MM01 metrics: `(cmc, mAP, mINP)`.

  Args:
    distmat: (n_query, n_gallery) distances, smaller = more similar; no NaN.
    q_pids, g_pids: (n_query,), (n_gallery,) identity labels (any comparable dtype).
    q_camids, g_camids: (n_query,), (n_gallery,) camera ids (SYSU numbering, 1..6).
    max_rank: length of the CMC curve (capped at n_gallery).
    chunk_elements: memory bound: queries are processed ~chunk_elements // n_gallery at a time.

  For a query from camera 3 every gallery image from camera 2 is removed (same room) before
  ranking; the CMC counts each gallery identity at its first occurrence only; AP and INP use the
  filtered list without deduplication. Returns `cmc` float64 (min(max_rank, n_gallery),) of
  fractions, `mAP` and `mINP` floats (fractions). See the module docstring for the exact rules.
  Raises ValueError on mismatched shapes, NaN distances, an empty query or gallery set, or when no
  query has a true match.
  """
  distmat, q_pids, g_pids, max_rank = _check(distmat, q_pids, g_pids, max_rank)
  q_camids = _check_1d("q_camids", q_camids, distmat.shape[0], "query rows")
  g_camids = _check_1d("g_camids", g_camids, distmat.shape[1], "gallery columns")
  q_cam, g_cam = SYSU_SAME_ROOM
  return _evaluate(distmat, q_pids, g_pids, q_camids == q_cam, g_camids == g_cam,
                   dedup=True, max_rank=max_rank, chunk_elements=chunk_elements)


def eval_regdb(distmat, q_pids, g_pids, max_rank=20, *,
               chunk_elements=_DEFAULT_CHUNK_ELEMENTS):
  """RegDB metrics: `(cmc, mAP, mINP)`.

  Args as `eval_sysu` without cameras. Nothing is removed from the ranked list and the CMC is the
  plain one (rank of the first true match). Same return value and errors as `eval_sysu`.
  """
  distmat, q_pids, g_pids, max_rank = _check(distmat, q_pids, g_pids, max_rank)
  return _evaluate(distmat, q_pids, g_pids, None, None, dedup=False, max_rank=max_rank,
                   chunk_elements=chunk_elements)


# --------------------------------------------------------------------------- input checks


def _check_1d(name, arr, n, what):
  arr = np.asarray(arr)
  if arr.ndim != 1 or arr.shape[0] != n:
    raise ValueError(f"{name} must be 1-D with one entry per {what} ({n}), got shape {arr.shape}")
  return arr


def _check(distmat, q_pids, g_pids, max_rank):
  distmat = np.asarray(distmat)
  if distmat.ndim != 2:
    raise ValueError(f"distmat must be 2-D (n_query, n_gallery), got shape {distmat.shape}")
  n_q, n_g = distmat.shape
  if n_q == 0:
    raise ValueError(f"distmat has no query rows (shape {distmat.shape}): empty query set")
  if n_g == 0:
    raise ValueError(f"distmat has no gallery columns (shape {distmat.shape}): empty gallery")
  if distmat.dtype.kind in "biu":
    distmat = distmat.astype(np.float64)
  elif distmat.dtype.kind != "f":
    raise ValueError(f"distmat must hold real numbers, got dtype {distmat.dtype}")
  elif distmat.dtype == np.float16:
    distmat = distmat.astype(np.float32)  # exact, keeps the order
  if np.isnan(distmat.min()):  # min propagates NaN: no full-size temporary in the common case
    nan = np.isnan(distmat)
    i, j = np.argwhere(nan)[0]
    raise ValueError(f"distmat contains {int(nan.sum())} NaN distances "
                     f"(first at query {i}, gallery {j})")
  q_pids = _check_1d("q_pids", q_pids, n_q, "query row of distmat")
  g_pids = _check_1d("g_pids", g_pids, n_g, "gallery column of distmat")
  if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
    raise ValueError(f"max_rank must be a positive integer, got {max_rank!r}")
  return distmat, q_pids, g_pids, min(int(max_rank), n_g)


# --------------------------------------------------------------------------- core


def stable_argsort_rows(d: np.ndarray) -> np.ndarray:
  """`np.argsort(d, axis=1, kind="stable")`, faster for float32.

  For float32 each distance is mapped to an order-preserving uint32 key and packed with its
  column index into one uint64 (key << 32 | column): all packed keys are distinct, so numpy's
  fast (SIMD, unstable) sort gives exactly the stable order. -0.0 and 0.0 tie, as in comparisons.
  Other dtypes use the stable argsort. Returns intp indices of d's shape. No NaN allowed.
  """
  n = d.shape[1]
  if d.dtype != np.float32 or n >= 1 << 32:
    return np.argsort(d, axis=1, kind="stable")
  bits = (d + np.float32(0.0)).view(np.uint32)  # -0.0 + 0.0 == +0.0
  # Non-negative floats: set the sign bit; negative floats: flip every bit.
  flip = (bits >> np.uint32(31)) * np.uint32(0x7FFFFFFF) | np.uint32(0x80000000)
  key = (bits ^ flip).astype(np.uint64)
  np.left_shift(key, np.uint64(32), out=key)
  np.bitwise_or(key, np.arange(n, dtype=np.uint64), out=key)
  key.sort(axis=1)
  return (key & np.uint64(0xFFFFFFFF)).astype(np.intp)


def _dense_labels(q_pids, g_pids):
  """Gallery labels as int32 0..U-1 (g_dense) and query labels mapped alike, -1 if absent."""
  uniq, g_dense = np.unique(g_pids, return_inverse=True)
  pos = np.searchsorted(uniq, q_pids)
  pos_c = np.minimum(pos, len(uniq) - 1)
  q_dense = np.where(uniq[pos_c] == q_pids, pos_c, -1)
  return q_dense.astype(np.int32), g_dense.astype(np.int32).reshape(-1), len(uniq)


class _Gallery:
  """Gallery labels grouped by identity: columns `perm[start[u]:start[u] + count[u]]` hold u.

  `removed_p` is the camera-removal mask in that grouped ("permuted") column order.
  """

  def __init__(self, g_dense, n_ids, g_removed):
    self.dense = g_dense
    self.n = g_dense.shape[0]
    self.perm = np.argsort(g_dense, kind="stable")
    self.count = np.bincount(g_dense, minlength=n_ids)
    self.start = np.cumsum(self.count) - self.count
    self.group_start = self.start[self.count > 0]
    self.removed = g_removed            # bool (n,) or None
    self.removed_p = None if g_removed is None else g_removed[self.perm]
    self.removed_p_cols = None if g_removed is None else np.flatnonzero(self.removed_p)


def _evaluate(distmat, q_pids, g_pids, q_filter, g_removed, *, dedup, max_rank,
              chunk_elements):
  """Shared engine. `q_filter[i] & g_removed[j]` removes gallery j from query i's list.

  Each chunk of queries goes through `_fast_chunk` (sorts distance values); rows where a true
  match ties in distance with another entry are recomputed by `_exact_chunk` (stable argsort),
  so both give the stable-sort answer.
  """
  n_q, n_g = distmat.shape
  q_dense, g_dense, n_ids = _dense_labels(q_pids, g_pids)
  if g_removed is not None and not g_removed.any():
    q_filter = g_removed = None
  gal = _Gallery(g_dense, n_ids, g_removed)
  hist = np.zeros(max_rank + 2, np.int64)  # hist[r] = valid queries with CMC rank r (clipped)
  sums = np.zeros(2)                       # sum of AP, sum of INP
  n_valid = 0
  step = max(1, min(n_q, int(chunk_elements) // n_g))
  for s in range(0, n_q, step):
    e = min(n_q, s + step)
    qf = None if q_filter is None else q_filter[s:e]
    parts = []
    fast, tie_rows = _fast_chunk(distmat[s:e], q_dense[s:e], qf, gal, dedup)
    parts.append(fast)
    if tie_rows.size:
      parts.append(_exact_chunk(distmat[s:e][tie_rows], q_dense[s:e][tie_rows],
                                None if qf is None else qf[tie_rows], gal, dedup))
    for cmc_rank, ap, inp in parts:
      hist += np.bincount(np.minimum(cmc_rank, max_rank + 1), minlength=max_rank + 2)
      sums += ap.sum(), inp.sum()
      n_valid += ap.size
  if n_valid == 0:
    raise ValueError("no query has a true match in the gallery (after the camera filter): "
                     "check q_pids / g_pids")
  cmc = np.cumsum(hist[1:max_rank + 1]) / n_valid
  return cmc, sums[0] / n_valid, sums[1] / n_valid


def _per_row(rows, rank, n_rows):
  """AP, INP, first rank per valid row from match (row, filtered rank) sorted by (row, rank)."""
  counts = np.bincount(rows, minlength=n_rows)
  valid = counts > 0
  cnt = counts[valid]
  first = np.cumsum(cnt) - cnt                               # index of each row's first match
  k = np.arange(rows.size) - np.repeat(first, cnt) + 1       # true matches so far
  ap = np.bincount(rows, weights=k / rank, minlength=n_rows)[valid] / cnt
  inp = cnt / rank[first + cnt - 1]
  return valid, first, ap, inp


_EMPTY = (np.zeros(0, np.int64), np.zeros(0), np.zeros(0))


def _fast_chunk(d, q_dense, q_filter, gal, dedup):
  """Stats of a chunk from the sorted distance *values*; returns them and the rows with ties.

  The rank of a true match is 1 + the number of kept entries with a smaller distance (removed
  entries are set to +inf); a binary search in the sorted row finds it. That equals its stable
  rank unless another entry has the same distance, which is checked (the next sorted value) and
  such rows are returned for `_exact_chunk`. The SYSU CMC rank is 1 + the number of identities
  whose closest kept entry is closer than the first true match. Columns are worked on in the
  identity-grouped order `gal.perm` (a row's sorted values do not depend on column order).
  """
  c, n = d.shape
  filtered = q_filter is not None and q_filter.any()
  grouped = dedup or filtered
  rows, cols = _match_pairs(q_dense, q_filter if filtered else None, gal, grouped)
  if rows.size == 0:
    return _EMPTY, np.zeros(0, np.int64)
  if grouped:
    d = np.take(d, gal.perm, axis=1)                         # a copy, grouped by identity
    if filtered:
      d[np.ix_(np.flatnonzero(q_filter), gal.removed_p_cols)] = np.inf
  km = d[rows, cols]
  ds = np.sort(d, axis=1).reshape(-1)
  base = rows.astype(np.int64) * n
  lo = np.zeros(rows.size, np.int64)                         # lower bound: # entries < km
  hi = np.full(rows.size, n, np.int64)
  while True:
    active = lo < hi
    if not active.any():
      break
    mid = (lo + hi) >> 1
    less = ds[base + np.minimum(mid, n - 1)] < km
    lo = np.where(active & less, mid + 1, lo)
    hi = np.where(active & ~less, mid, hi)
  tie = (lo + 1 < n) & (ds[base + np.minimum(lo + 1, n - 1)] == km)
  tie_rows = np.unique(rows[tie])
  if tie_rows.size:
    ok = np.ones(c, bool)
    ok[tie_rows] = False
    keep = ok[rows]
    rows, lo = rows[keep], lo[keep]
    if rows.size == 0:
      return _EMPTY, tie_rows
  key = np.sort(rows.astype(np.int64) * (n + 1) + lo + 1)    # (row, rank), rank-sorted per row
  rows, rank = key // (n + 1), key % (n + 1)
  valid, first, ap, inp = _per_row(rows, rank, c)
  if not dedup:
    return (rank[first], ap, inp), tie_rows
  # Closest kept entry of every identity (columns grouped by identity, removed = +inf).
  closest = np.minimum.reduceat(d, gal.group_start, axis=1)[valid]
  first_dist = ds[rows[first] * n + rank[first] - 1]
  return (1 + (closest < first_dist[:, None]).sum(axis=1), ap, inp), tie_rows


def _match_pairs(q_dense, q_filter, gal, grouped):
  """(row, column) of every true match of a chunk, minus removed ones.

  Columns are positions in the identity-grouped order if `grouped`, gallery indices otherwise.
  """
  n_per = np.where(q_dense >= 0, gal.count[np.maximum(q_dense, 0)], 0)
  rows = np.repeat(np.arange(q_dense.size), n_per)
  offs = np.arange(rows.size) - np.repeat(np.cumsum(n_per) - n_per, n_per)
  cols = gal.start[q_dense[rows]] + offs
  if q_filter is not None:
    keep = ~(q_filter[rows] & gal.removed_p[cols])
    rows, cols = rows[keep], cols[keep]
  return rows, (cols if grouped else gal.perm[cols])


def _exact_chunk(d, q_dense, q_filter, gal, dedup):
  """Stats of a chunk through the full stable ranking (ties broken by gallery order)."""
  c, n = d.shape
  order = stable_argsort_rows(d)
  pid_s = gal.dense[order]                                   # identities in ranked order
  match = pid_s == q_dense[:, None]
  removed = None
  if q_filter is not None and q_filter.any():
    removed = gal.removed[order]
    removed &= q_filter[:, None]
    match &= ~removed
  rows, cols = np.nonzero(match)                             # row-major: ranked within a row
  if rows.size == 0:
    return _EMPTY
  rank = cols + 1                                            # 1-based rank, unfiltered list
  if removed is not None:
    # Filtered rank = unfiltered rank - images removed before it.
    rank = rank - np.cumsum(removed, axis=1, dtype=np.int32)[rows, cols]
  valid, first, ap, inp = _per_row(rows, rank, c)
  if not dedup:
    return rank[first], ap, inp
  return (1 + _distinct_before(pid_s[valid], cols[first],
                               None if removed is None else removed[valid]), ap, inp)


def _distinct_before(pid_s, first_col, removed):
  """Per row: number of distinct identities among kept entries at ranked positions < first_col.

  Only the prefix up to the largest first_col is looked at: entries at or after a row's first
  true match, and removed entries, become -1; the row is sorted and its distinct non-negative
  values are counted.
  """
  w = int(first_col.max())
  if w == 0:
    return np.zeros(first_col.shape, np.int64)
  p = pid_s[:, :w].copy()
  drop = np.arange(w) >= first_col[:, None]
  if removed is not None:
    drop |= removed[:, :w]
  p[drop] = -1
  p.sort(axis=1)
  new = p[:, 1:] != p[:, :-1]
  new &= p[:, 1:] >= 0
  return new.sum(axis=1) + (p[:, 0] >= 0)
