"""Slow, obviously-correct loop oracles for `ce2l_jax.metrics.ranking` (tests and benchmarks only).

One query at a time, each rule of the spec written as it reads: rank by a stable sort, drop the
gallery images the camera rule removes, find the true matches, compute AP / INP on the filtered
list, and (SYSU) the CMC rank over the list of first occurrences of each identity.
"""

import numpy as np


def _one_query(dist_row, q_pid, g_pids, keep):
  """(cmc_rank_plain, cmc_rank_dedup, ap, inp) for one query, or None if it has no true match."""
  order = np.argsort(dist_row, kind="stable")  # ties keep gallery order
  order = [j for j in order if keep[j]]
  ranked_pids = [g_pids[j] for j in order]
  hits = [p == q_pid for p in ranked_pids]
  if not any(hits):
    return None
  precisions, found, last_rank = [], 0, 0
  for rank, hit in enumerate(hits, start=1):
    if hit:
      found += 1
      precisions.append(found / rank)
      last_rank = rank
  ap = sum(precisions) / found
  inp = found / last_rank
  plain_rank = hits.index(True) + 1
  identities, seen = [], set()  # each identity at its first occurrence
  for p in ranked_pids:
    if p not in seen:
      seen.add(p)
      identities.append(p)
  dedup_rank = identities.index(q_pid) + 1
  return plain_rank, dedup_rank, ap, inp


def _oracle(distmat, q_pids, g_pids, keep_fn, dedup, max_rank):
  distmat = np.asarray(distmat)
  n_q, n_g = distmat.shape
  length = min(max_rank, n_g)
  curves, aps, inps = [], [], []
  for i in range(n_q):
    keep = [keep_fn(i, j) for j in range(n_g)]
    res = _one_query(distmat[i], q_pids[i], list(g_pids), keep)
    if res is None:
      continue
    plain_rank, dedup_rank, ap, inp = res
    r = dedup_rank if dedup else plain_rank
    curves.append([1.0 if k >= r else 0.0 for k in range(1, length + 1)])
    aps.append(ap)
    inps.append(inp)
  if not aps:
    raise ValueError("no query has a true match")
  return np.mean(curves, axis=0), float(np.mean(aps)), float(np.mean(inps))


def eval_sysu_oracle(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
  """Loop version of `eval_sysu`: camera-3 queries drop camera-2 gallery images; dedup CMC."""
  return _oracle(distmat, q_pids, g_pids,
                 lambda i, j: not (q_camids[i] == 3 and g_camids[j] == 2), True, max_rank)


def eval_regdb_oracle(distmat, q_pids, g_pids, max_rank=20):
  """Loop version of `eval_regdb`: nothing removed, plain CMC."""
  return _oracle(distmat, q_pids, g_pids, lambda i, j: True, False, max_rank)
