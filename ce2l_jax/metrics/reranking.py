"""k-reciprocal re-ranking (Zhong, Zheng, Cao, Li: "Re-ranking Person Re-identification with
k-reciprocal Encoding", CVPR 2017), vectorised numpy. Pure: arrays in, a distance matrix out.

All images of a trial take part, queries and gallery alike (N = n_query + n_gallery), as in the
paper's experiments. With d the original distance between them (§3.1):

* d(p, g) = |x_p − x_g|² (the paper's Mahalanobis form with M = I), each row divided by its
  largest value so that exp(−d) below does not depend on the feature scale;
* N(p, k): the first k + 1 entries of p's ranked list over all N images: p itself first (its own
  nearest neighbour, also when identical images tie with it), then the others by distance, ties
  by index;
* R(p, k) = {g ∈ N(p, k) : p ∈ N(g, k)}, the k-reciprocal neighbours (Eq. 3);
* R*(p, k) = R(p, k) ∪ ⋃ R(q, ½k) over q ∈ R(p, k) with |R(p, k) ∩ R(q, ½k)| ≥ ⅔ |R(q, ½k)|
  (Eq. 6, ½k rounded to the nearest integer, halves up);
* V_p: V_{p,g} = exp(−d(p, g)) for g ∈ R*(p, k1), 0 elsewhere (Eq. 7), rescaled to sum 1;
* local query expansion (Eq. 10): V_p ← the mean of V_g over p and its k2 − 1 nearest (the first
  k2 entries of p's ranked list);
* Jaccard distance (Eq. 11): d_J(p, g) = 1 − Σ_j min(V_{p,j}, V_{g,j}) / Σ_j max(V_{p,j}, V_{g,j}),
  j over all N images;
* final distance (Eq. 12): d*(p, g) = (1 − λ) d_J(p, g) + λ d(p, g); defaults k1 = 20, k2 = 6,
  λ = 0.3 (§4.2).
The paper leaves the row scaling of d, the sum-1 rescaling of V and the size of N(·) open: the
choices above are the authors' released ones, so numbers compare with tables that report
"+ re-ranking". `tests/test_reranking.py` checks this module against a loop over Python sets
that spells the equations out one by one.

Cost: O(N²) memory (a few float32 and bool N × N matrices: ~240 MB at N = 6,800, SYSU's
multi-shot trial) and time dominated by the N × N distances and the ranking of every row.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ce2l_jax.metrics.ranking import stable_argsort_rows

K1, K2, LAMBDA = 20, 6, 0.3


class RerankParams(NamedTuple):
  """The paper's three parameters (§4.2 defaults)."""
  k1: int = K1
  k2: int = K2
  lambda_value: float = LAMBDA


def half(k: int) -> int:
  """½k rounded to the nearest integer, halves up (Eq. 6's R(q, ½k))."""
  return int(np.floor(k / 2 + 0.5))


def squared_distances(features: np.ndarray) -> np.ndarray:
  """(N, N) float32 |x_i − x_j|² (clipped at 0), each row divided by its largest value."""
  x = np.asarray(features, np.float32)
  sq = np.einsum("ij,ij->i", x, x)
  d = x @ x.T
  d *= -2
  d += sq[:, None]
  d += sq[None, :]
  np.maximum(d, 0, out=d)
  np.fill_diagonal(d, 0)
  top = d.max(axis=1, keepdims=True)
  d /= np.where(top > 0, top, 1)
  return d


def _nearest(d: np.ndarray, k: int, chunk_rows: int) -> np.ndarray:
  """(N, k) int64: the first k entries of every row's ranking: the row's own image first, then
  the others by distance, ties by column index (d ≥ 0)."""
  n = d.shape[0]
  out = np.empty((n, k), np.int64)
  for s in range(0, n, chunk_rows):
    block = d[s:s + chunk_rows].copy()
    block[np.arange(block.shape[0]), np.arange(s, s + block.shape[0])] = -1.0
    # The k smallest by (value, column): partition, then include every column tied with the
    # k-th value so that the stable order of the full row is kept exactly.
    if k < block.shape[1]:
      kth = np.partition(block, k - 1, axis=1)[:, k - 1:k]
      cand = block <= kth
      width = int(cand.sum(axis=1).max())
      # Columns that are candidates, in index order, padded with the row's largest value.
      cols = np.argsort(~cand, axis=1, kind="stable")[:, :width]
      vals = np.take_along_axis(block, cols, axis=1)
      vals = np.where(np.take_along_axis(cand, cols, axis=1), vals, np.inf)
      order = np.argsort(vals, axis=1, kind="stable")[:, :k]
      out[s:s + chunk_rows] = np.take_along_axis(cols, order, axis=1)
    else:
      out[s:s + chunk_rows] = stable_argsort_rows(block)[:, :k]
  return out


def _reciprocal(nearest: np.ndarray, n: int) -> np.ndarray:
  """(N, N) bool: R[p, g] = g ∈ N(p) and p ∈ N(g), from the (N, k+1) neighbour lists."""
  member = np.zeros((n, n), bool)
  member[np.arange(n)[:, None], nearest] = True
  return member & member.T


def k_reciprocal_distances(dist: np.ndarray, num_query: int, *, k1: int = K1, k2: int = K2,
                           lambda_value: float = LAMBDA, chunk_rows: int = 1024,
                           chunk_elements: int = 1 << 23) -> np.ndarray:
  """The re-ranked (num_query, N − num_query) distances from an (N, N) original distance.

  `dist`: distances among all images, queries first (rows/columns 0..num_query−1) then the
  gallery; the module's d (`squared_distances`) or any other non-negative, zero-diagonal one.
  Returns d* float32 of the queries (rows) to the gallery (columns).
  """
  d = np.asarray(dist, np.float32)
  n = d.shape[0]
  if d.ndim != 2 or d.shape[1] != n:
    raise ValueError(f"dist must be square (N, N), got shape {d.shape}")
  if not 0 < num_query < n:
    raise ValueError(f"num_query must be in [1, {n - 1}] (N = {n}), got {num_query}")
  if not (isinstance(k1, (int, np.integer)) and isinstance(k2, (int, np.integer))
          and k1 >= 1 and k2 >= 1):
    raise ValueError(f"k1 and k2 must be positive integers, got k1={k1!r}, k2={k2!r}")
  if not 0.0 <= float(lambda_value) <= 1.0:
    raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value!r}")
  if not np.isfinite(d).all():
    raise ValueError("dist contains NaN or inf")
  k1, k2 = min(int(k1), n - 1), min(int(k2), n)
  kh = half(k1)
  near = _nearest(d, max(k1 + 1, k2), chunk_rows)
  recip = _reciprocal(near[:, :k1 + 1], n)         # R(p, k1)
  recip_h = _reciprocal(near[:, :kh + 1], n)       # R(q, ½k1)

  # R*(p, k1): expand by every q ∈ R(p, k1) whose R(q, ½k1) lies ≥ ⅔ inside R(p, k1).
  r_idx = np.where(recip[np.arange(n)[:, None], near[:, :k1 + 1]], near[:, :k1 + 1], -1)  # (N, k1+1)
  h_idx = np.where(recip_h[np.arange(n)[:, None], near[:, :kh + 1]], near[:, :kh + 1], -1)  # (N, kh+1)
  expanded = recip.copy()
  rows = np.arange(n)[:, None, None]
  cand = h_idx[np.maximum(r_idx, 0)]                                   # (N, k1+1, kh+1)
  valid = (cand >= 0) & (r_idx >= 0)[:, :, None]
  inside = recip[rows, np.maximum(cand, 0)] & valid
  size = valid.sum(axis=2)
  accept = (3 * inside.sum(axis=2) >= 2 * size) & (size > 0)          # |R ∩ R_h| ≥ ⅔ |R_h|
  take = valid & accept[:, :, None]
  expanded[np.broadcast_to(rows, cand.shape)[take], cand[take]] = True

  # V: exp(−d) on R*(p, k1), rows rescaled to sum 1; then the mean over the first k2 neighbours.
  v = np.where(expanded, np.exp(-d), np.float32(0)).astype(np.float32)
  v /= v.sum(axis=1, keepdims=True)
  if k2 > 1:
    qe = np.zeros_like(v)
    for t in range(k2):
      qe += v[near[:, t]]
    qe /= k2
    v = qe

  # Jaccard distance of each query to each gallery image. Σ_j min(V_p,j, V_g,j) needs only the
  # columns j where both are non-zero (V is sparse: ≲ k2·|R*| non-zeros a row): every such
  # (p, j, g) is generated from the column lists and summed with one bincount;
  # Σ max = Σ V_p + Σ V_g − Σ min.
  sums = v.sum(axis=1, dtype=np.float64)
  n_gal = n - num_query
  g_col, g_row = np.nonzero(v[num_query:].T)                  # gallery non-zeros by column j
  g_val = v[num_query:][g_row, g_col]
  g_start = np.searchsorted(g_col, np.arange(n + 1))          # column j: g_start[j]..g_start[j+1]
  g_count = np.diff(g_start)
  q_row, q_col = np.nonzero(v[:num_query])                   # query non-zeros, by row
  reps = g_count[q_col]                                       # triples each one makes
  row_end = np.cumsum(np.bincount(q_row, weights=reps, minlength=num_query))
  mins = np.zeros((num_query, n_gal))
  s = 0
  while s < num_query:  # query rows in chunks of about chunk_elements triples
    before = row_end[s - 1] if s else 0.0
    e = max(s + 1, int(np.searchsorted(row_end, before + chunk_elements, side="right")))
    e = min(e, num_query)
    lo, hi = np.searchsorted(q_row, [s, e])
    rows, cols, r = q_row[lo:hi] - s, q_col[lo:hi], reps[lo:hi]
    entry = np.repeat(np.arange(rows.size), r)
    g_pos = g_start[cols][entry] + (np.arange(entry.size) - (np.cumsum(r) - r)[entry])
    m = np.minimum(v[s + rows[entry], cols[entry]], g_val[g_pos])
    flat = rows[entry] * n_gal + g_row[g_pos]
    mins[s:e] = np.bincount(flat, weights=m, minlength=(e - s) * n_gal).reshape(e - s, n_gal)
    s = e
  maxs = sums[:num_query, None] + sums[None, num_query:] - mins
  out = (1 - mins / maxs).astype(np.float32)
  out *= 1 - np.float32(lambda_value)
  out += np.float32(lambda_value) * d[:num_query, num_query:]
  return out


def rerank(query_features: np.ndarray, gallery_features: np.ndarray, *, k1: int = K1,
           k2: int = K2, lambda_value: float = LAMBDA) -> np.ndarray:
  """k-reciprocal re-ranked (n_query, n_gallery) distances of feature rows (module docstring)."""
  q, g = np.asarray(query_features), np.asarray(gallery_features)
  if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1] or not len(q) or not len(g):
    raise ValueError(f"query and gallery features must be non-empty (n, dim) arrays of one dim, "
                     f"got shapes {q.shape} and {g.shape}")
  d = squared_distances(np.concatenate([q, g]))
  return k_reciprocal_distances(d, len(q), k1=k1, k2=k2, lambda_value=lambda_value)
