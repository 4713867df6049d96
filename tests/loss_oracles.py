"""Loop oracles for the re-ID losses: plain Python/numpy loops that follow the formulas literally.

D(a, b) = ‖a − b‖₂. For each anchor of one modality, every positive of it in the other modality
gives one term; the hardest negative k* is the argmin of the cross-modality distance over the
negatives (first one on ties, as `np.argmin`). Anchors with no negative or no positive give no term.
"""

from __future__ import annotations

import numpy as np


def _dist(a, b):
  return float(np.sqrt(np.sum((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def _normalize(x):
  x = np.asarray(x, np.float64)
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)


def bdtr_terms(feats_v, feats_t, pids_v, pids_t, rho1, rho2, normalize=False):
  """Lists of ℓ_cross terms and ℓ_intra terms, one per (anchor, positive), both directions."""
  if normalize:
    feats_v, feats_t = _normalize(feats_v), _normalize(feats_t)
  cross, intra = [], []
  for anchors, others, pa, po in ((feats_v, feats_t, pids_v, pids_t),
                                  (feats_t, feats_v, pids_t, pids_v)):
    for i in range(len(anchors)):
      negatives = [k for k in range(len(others)) if po[k] != pa[i]]
      positives = [j for j in range(len(others)) if po[j] == pa[i]]
      if not negatives:
        continue
      neg_d = [_dist(anchors[i], others[k]) for k in negatives]
      k_star = negatives[int(np.argmin(neg_d))]
      hardest = min(neg_d)
      for j in positives:
        cross.append(max(_dist(anchors[i], others[j]) - hardest + rho1, 0.0))
        intra.append(max(rho2 - _dist(others[j], others[k_star]), 0.0))
  return cross, intra


def _reduce(terms, reduction):
  total = float(sum(terms))
  return total if reduction == "sum" else total / max(len(terms), 1)


def cross_modality_top_ranking(feats_v, feats_t, pids_v, pids_t, margin, reduction="mean",
                               normalize=False):
  return _reduce(bdtr_terms(feats_v, feats_t, pids_v, pids_t, margin, 0.0, normalize)[0],
                 reduction)


def intra_modality(feats_v, feats_t, pids_v, pids_t, margin, reduction="mean", normalize=False):
  return _reduce(bdtr_terms(feats_v, feats_t, pids_v, pids_t, 0.0, margin, normalize)[1],
                 reduction)


def label_smoothing_cross_entropy(logits, labels, epsilon):
  """mean_n −Σ_c q_n(c) log p_n(c), q_n = (1 − ε_n) onehot + ε_n / C, loops over n and c."""
  eps = np.broadcast_to(np.asarray(epsilon, np.float64), np.shape(labels)).reshape(-1)
  logits = np.asarray(logits, np.float64).reshape(-1, np.shape(logits)[-1])
  labels = np.asarray(labels).reshape(-1)
  n, c = logits.shape
  total = 0.0
  for i in range(n):
    z = logits[i] - logits[i].max()
    logp = z - np.log(np.sum(np.exp(z)))
    for k in range(c):
      q = (1.0 - eps[i]) * (k == labels[i]) + eps[i] / c
      total -= q * logp[k]
  return total / n
