"""Losses of the deep baselines that CE²L's own objective (`ce2l_jax.losses`) does not have.

- `cross_modality_contrastive` — TONE's contrastive loss (Ye et al., AAAI 2018, Sec. "Two-stream
  CNN network (TONE)"; the contrastive loss of Hadsell et al. 2006) over the cross-modality pairs
  of a batch: for a visible feature v_i and an infrared feature t_j with labels y_ij = [pid_i = pid_j],
      ℓ_ij = y_ij · D(v_i, t_j)² + (1 − y_ij) · [m − D(v_i, t_j)]_+²,
  averaged over all Nv·Nt pairs (`reduction="mean"`) or summed. TONE adds it to the identity loss
  so that the two streams' features of one person meet across modalities.
- `batch_hard_triplet` — the batch-hard triplet loss (Hermans et al., 2017, "In Defense of the
  Triplet Loss") that D²RL's feature-level network uses beside the identity loss (Wang et al.,
  CVPR 2019, Sec. 3.2): for every anchor a of the batch (both modalities pooled),
      ℓ_a = [max_{p: pid_p = pid_a, p ≠ a} D(a, p) − min_{n: pid_n ≠ pid_a} D(a, n) + m]_+,
  mean over anchors that have a positive and a negative.

Distances go through `ce2l_jax.losses.pairwise_distance` (a safe square root); mining is by masks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ce2l_jax.losses import l2_normalize, pairwise_distance

REDUCTIONS = ("mean", "sum")


def cross_modality_contrastive(feats_v: jnp.ndarray, feats_t: jnp.ndarray, pids_v: jnp.ndarray,
                               pids_t: jnp.ndarray, margin: float = 1.0, reduction: str = "mean",
                               normalize: bool = True) -> tuple[jnp.ndarray, dict]:
  """TONE's cross-modality contrastive loss (module docstring) over every (visible, infrared) pair.

  feats_v (Nv, D), feats_t (Nt, D), pids (Nv,), (Nt,); `normalize` L2-normalises first (then
  D ∈ [0, 2] and `margin` is on that scale). Returns (loss, aux) with aux: pos_dist, neg_dist
  (mean distance of positive / negative pairs), neg_active_frac (negatives inside the margin).
  """
  if reduction not in REDUCTIONS:
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
  if normalize:
    feats_v, feats_t = l2_normalize(feats_v), l2_normalize(feats_t)
  d = pairwise_distance(feats_v, feats_t)
  pos = (pids_v[:, None] == pids_t[None, :]).astype(jnp.float32)
  neg = 1.0 - pos
  terms = pos * jnp.square(d) + neg * jnp.square(jax.nn.relu(margin - d))
  total = jnp.sum(terms)
  loss = total if reduction == "sum" else total / terms.size
  mean_over = lambda x, m: jnp.sum(x * m) / jnp.maximum(jnp.sum(m), 1.0)
  aux = dict(pos_dist=mean_over(d, pos), neg_dist=mean_over(d, neg),
             neg_active_frac=mean_over((d < margin).astype(jnp.float32), neg))
  return loss, aux


def batch_hard_triplet(feats: jnp.ndarray, pids: jnp.ndarray, margin: float = 0.3,
                       normalize: bool = False) -> tuple[jnp.ndarray, dict]:
  """Batch-hard triplet loss (module docstring) over feats (N, D) with labels pids (N,).

  Anchors without a positive (other than themselves) or without a negative add nothing; the loss
  is the mean over the anchors kept (0 when none). Returns (loss, aux) with aux: active_frac
  (anchors with a positive hinge), hard_pos, hard_neg (mean hardest distances), num_anchors.
  """
  if feats.ndim != 2:
    raise ValueError(f"features must be (N, D), got {feats.shape}")
  if normalize:
    feats = l2_normalize(feats)
  d = pairwise_distance(feats, feats)
  n = feats.shape[0]
  same = pids[:, None] == pids[None, :]
  eye = jnp.eye(n, dtype=bool)
  pos = same & ~eye
  neg = ~same
  hard_pos = jnp.max(jnp.where(pos, d, -jnp.inf), axis=1)
  hard_neg = jnp.min(jnp.where(neg, d, jnp.inf), axis=1)
  keep = jnp.any(pos, axis=1) & jnp.any(neg, axis=1)
  hinge = jnp.where(keep, jax.nn.relu(hard_pos - hard_neg + margin), 0.0)
  count = jnp.sum(keep.astype(jnp.float32))
  loss = jnp.sum(hinge) / jnp.maximum(count, 1.0)
  kept = lambda x: jnp.sum(jnp.where(keep, x, 0.0)) / jnp.maximum(count, 1.0)
  aux = dict(active_frac=kept((hinge > 0).astype(jnp.float32)), hard_pos=kept(hard_pos),
             hard_neg=kept(hard_neg), num_anchors=count)
  return loss, aux
