"""Every loss of CE²L, as free functions of arrays.

Re-ID (section "re-ID losses" below): cross-modality top-ranking (ℓ_cross, margin ρ1),
intra-modality constraint (ℓ_intra, margin ρ2), label-smoothed identity cross-entropy (LSR, ε).
CycleGAN: least-squares GAN loss, L1 cycle-consistency and identity losses.

Mining is done with masks over fused pairwise-distance matrices (`jnp.where`), never a Python
loop over the batch; distances go through a safe square root so gradients stay finite when two
features coincide.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

# --------------------------------------------------------------------------------------------
# CycleGAN losses (Zhu et al. 2017, least-squares GAN of Mao et al. 2017)
# --------------------------------------------------------------------------------------------


def lsgan_generator_loss(d_fake: jnp.ndarray) -> jnp.ndarray:
  """Generator side of LSGAN: E[(D(G(x)) − 1)²]."""
  return jnp.mean(jnp.square(d_fake - 1.0))


def lsgan_discriminator_loss(d_real: jnp.ndarray, d_fake: jnp.ndarray) -> jnp.ndarray:
  """Discriminator side of LSGAN: ½ (E[(D(y) − 1)²] + E[D(G(x))²])."""
  return 0.5 * (jnp.mean(jnp.square(d_real - 1.0)) + jnp.mean(jnp.square(d_fake)))


def l1_loss(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  """Mean absolute error: the cycle-consistency ‖F(G(x)) − x‖₁ and identity ‖G(y) − y‖₁ terms."""
  return jnp.mean(jnp.abs(a - b))


# --------------------------------------------------------------------------------------------
# re-ID losses
# --------------------------------------------------------------------------------------------
# BDTR (Ye et al., IJCAI 2018) as used by CE²L (Dai et al.). v_i are visible features, t_j
# infrared ones, D the Euclidean distance, P(a) the positives of anchor a in the other modality
# (same pid), N(a) its negatives there, k*(a) = argmin_{k ∈ N(a)} D(a, ·_k) its hardest negative.
#   ℓ_cross = Σ_i Σ_{j∈P(v_i)} [D(v_i,t_j) − D(v_i,t_k*) + ρ1]_+
#           + Σ_i Σ_{j∈P(t_i)} [D(t_i,v_j) − D(t_i,v_k*) + ρ1]_+
#   ℓ_intra = Σ_i Σ_{j∈P(v_i)} [ρ2 − D(t_j,t_k*)]_+  +  Σ_i Σ_{j∈P(t_i)} [ρ2 − D(v_j,v_k*)]_+
# ℓ_intra's indices are read as in ℓ_cross, as BDTR's code does (its `gather_2d` of the
# same-modality distances at (positive, hardest negative)); the hardest negative is chosen by the
# cross-modality distance and is not differentiated through (an index).
# Conventions: an anchor with no negative in the other modality contributes no term (nothing to
# rank against); an anchor with no positive contributes nothing. reduction="sum" is the papers'
# sum; "mean" divides by the number of (anchor, positive) terms kept (at least 1). BDTR's code has
# one positive per anchor and averages, i.e. "mean".

REDUCTIONS = ("mean", "sum")


def l2_normalize(x: jnp.ndarray, eps: float = 1e-12) -> jnp.ndarray:
  """x / ‖x‖₂ along the last axis, with ‖x‖ floored at sqrt(eps) (zero rows stay finite)."""
  return x * lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=-1, keepdims=True), eps))


def pairwise_distance(a: jnp.ndarray, b: jnp.ndarray, eps: float = 1e-12) -> jnp.ndarray:
  """Euclidean distances (Na, Nb) = sqrt(max(‖a‖² + ‖b‖² − 2 a·b, eps)).

  The floor at eps makes the square root safe: identical rows give ≈ sqrt(eps) = 1e-6 and a
  finite gradient instead of NaN (zero when rounding puts ‖a − b‖² at or below eps). The matmul
  runs at full float32 precision (no TF32/bf16 passes).
  """
  a = a.astype(jnp.float32)
  b = b.astype(jnp.float32)
  d2 = (jnp.sum(jnp.square(a), -1)[:, None] + jnp.sum(jnp.square(b), -1)[None, :]
        - 2.0 * jnp.matmul(a, b.T, precision=lax.Precision.HIGHEST))
  return jnp.sqrt(jnp.maximum(d2, eps))


def _one_direction(d_ao: jnp.ndarray, d_oo: jnp.ndarray, pos: jnp.ndarray, rho1: float,
                   rho2: float) -> dict:
  """Terms of one anchor modality: d_ao (Na, No) anchor→other, d_oo (No, No) inside `other`.

  Returns masks and (Na, No) term matrices, zero outside `valid` = positive pair & anchor has a
  negative.
  """
  neg = ~pos
  has_neg = jnp.any(neg, axis=1)
  d_neg = jnp.where(neg, d_ao, jnp.inf)
  hard_idx = jnp.argmin(d_neg, axis=1)
  hard_neg = jnp.where(has_neg, jnp.min(d_neg, axis=1), 0.0)
  valid = pos & has_neg[:, None]
  cross = jnp.where(valid, jax.nn.relu(d_ao - hard_neg[:, None] + rho1), 0.0)
  # D(o_j, o_k*(i)) for every (anchor i, positive j): column k*(i) of d_oo, transposed.
  d_pos_hard = jnp.take(d_oo, hard_idx, axis=1).T
  intra = jnp.where(valid, jax.nn.relu(rho2 - d_pos_hard), 0.0)
  far_pos = jnp.max(jnp.where(valid, d_ao, -jnp.inf), axis=1)
  return dict(valid=valid, cross=cross, intra=intra, d_ao=d_ao, hard_neg=hard_neg,
              has_pos_neg=jnp.any(valid, axis=1), far_pos=far_pos, d_pos_hard=d_pos_hard)


def _ranking_terms(feats_v, feats_t, pids_v, pids_t, rho1, rho2, normalize):
  """Both directions of BDTR's bi-directional ranking (shared distance matrices)."""
  if feats_v.ndim != 2 or feats_t.ndim != 2:
    raise ValueError(f"features must be (N, D), got {feats_v.shape} and {feats_t.shape}")
  if normalize:
    feats_v, feats_t = l2_normalize(feats_v), l2_normalize(feats_t)
  pos = pids_v[:, None] == pids_t[None, :]
  d_vt = pairwise_distance(feats_v, feats_t)
  d_vv = pairwise_distance(feats_v, feats_v)
  d_tt = pairwise_distance(feats_t, feats_t)
  return (_one_direction(d_vt, d_tt, pos, rho1, rho2),
          _one_direction(d_vt.T, d_vv, pos.T, rho1, rho2))


def _reduce(total, count, reduction):
  if reduction == "sum":
    return total
  if reduction == "mean":
    return total / jnp.maximum(count, 1.0)
  raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _masked_mean(x, mask):
  mask = mask.astype(jnp.float32)
  return jnp.sum(jnp.where(mask > 0, x, 0.0)) / jnp.maximum(jnp.sum(mask), 1.0)


def _cross_aux(dirs) -> dict:
  valid = jnp.concatenate([d["valid"].ravel() for d in dirs])
  terms = jnp.concatenate([d["cross"].ravel() for d in dirs])
  d_pos = jnp.concatenate([d["d_ao"].ravel() for d in dirs])
  anchors = jnp.concatenate([d["has_pos_neg"] for d in dirs])
  hard = jnp.concatenate([d["hard_neg"] for d in dirs])
  far = jnp.concatenate([d["far_pos"] for d in dirs])
  return dict(
      num_terms=jnp.sum(valid.astype(jnp.float32)),
      active_frac=_masked_mean((terms > 0).astype(jnp.float32), valid),
      pos_dist=_masked_mean(d_pos, valid),
      neg_dist=_masked_mean(hard, anchors),
      # BDTR's "prec": the anchor's farthest positive is nearer than its nearest negative.
      rank_acc=_masked_mean((far < hard).astype(jnp.float32), anchors))


def cross_modality_top_ranking(feats_v: jnp.ndarray, feats_t: jnp.ndarray, pids_v: jnp.ndarray,
                               pids_t: jnp.ndarray, margin: float = 0.5, reduction: str = "mean",
                               normalize: bool = False) -> tuple[jnp.ndarray, dict]:
  """BDTR's bi-directional cross-modality top-ranking loss ℓ_cross (margin ρ1).

  For every anchor of either modality and each positive j of it in the other modality:
  [D(anchor, j) − D(anchor, hardest negative in the other modality) + ρ1]_+, summed
  (`reduction="sum"`, the paper's ℓ_cross) or averaged over those (anchor, positive) terms
  ("mean"). feats_v (Nv, D), feats_t (Nt, D), pids (Nv,), (Nt,); `normalize` L2-normalises the
  features first (BDTR's code does). Anchors without a negative or a positive add no term.

  Returns (loss, aux) with aux: num_terms, active_frac (fraction of terms with a positive hinge),
  pos_dist (mean positive distance), neg_dist (mean hardest-negative distance), rank_acc
  (fraction of anchors whose farthest positive is nearer than their hardest negative).
  """
  dirs = _ranking_terms(feats_v, feats_t, pids_v, pids_t, margin, 0.0, normalize)
  total = sum(jnp.sum(d["cross"]) for d in dirs)
  count = sum(jnp.sum(d["valid"].astype(jnp.float32)) for d in dirs)
  return _reduce(total, count, reduction), _cross_aux(dirs)


def intra_modality(feats_v: jnp.ndarray, feats_t: jnp.ndarray, pids_v: jnp.ndarray,
                   pids_t: jnp.ndarray, margin: float = 0.1, reduction: str = "mean",
                   normalize: bool = False) -> tuple[jnp.ndarray, dict]:
  """BDTR's intra-modality constraint ℓ_intra (margin ρ2).

  For a visible anchor v_i with hardest infrared negative t_k* (argmin of D(v_i, t_k) over
  infrared negatives) and each infrared positive t_j: [ρ2 − D(t_j, t_k*)]_+ — the positive and
  the impostor are pushed apart inside the infrared modality; the same for infrared anchors inside
  the visible set. Same shapes, reductions and conventions as `cross_modality_top_ranking`.

  Returns (loss, aux) with aux: num_terms, active_frac, pos_hard_dist (mean D(·_j, ·_k*)).
  """
  dirs = _ranking_terms(feats_v, feats_t, pids_v, pids_t, 0.0, margin, normalize)
  total = sum(jnp.sum(d["intra"]) for d in dirs)
  valid = jnp.concatenate([d["valid"].ravel() for d in dirs])
  terms = jnp.concatenate([d["intra"].ravel() for d in dirs])
  count = jnp.sum(valid.astype(jnp.float32))
  aux = dict(num_terms=count, active_frac=_masked_mean((terms > 0).astype(jnp.float32), valid),
             pos_hard_dist=_masked_mean(
                 jnp.concatenate([d["d_pos_hard"].ravel() for d in dirs]), valid))
  return _reduce(total, count, reduction), aux


def label_smoothing_cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray,
                                  epsilon: float | jnp.ndarray = 0.1) -> jnp.ndarray:
  """Label-smoothed identity cross-entropy (LSR, Szegedy et al. 2016), mean over examples.

  Per example −Σ_c q(c) log p(c) with p = softmax(logits) and q = (1 − ε)·onehot(label) + ε/C,
  i.e. (1 − ε)·(−log p(label)) + ε·mean_c(−log p(c)). logits (..., C), labels (...) int;
  `epsilon` a scalar or an array broadcastable to labels' shape (per example, e.g.
  `jnp.where(batch['converted'], 0.1, 0.0)` to smooth only converted images). ε = 0 is plain CE.
  """
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(logp, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
  smooth = -jnp.mean(logp, axis=-1)
  eps = jnp.broadcast_to(jnp.asarray(epsilon, jnp.float32), nll.shape)
  return jnp.mean((1.0 - eps) * nll + eps * smooth)


def ce2l_total_loss(logits: jnp.ndarray, feats: jnp.ndarray, pids: jnp.ndarray, *,
                    epsilon: float | jnp.ndarray = 0.1, rho1: float = 0.5, rho2: float = 0.1,
                    lambda_cross: float = 1.0, lambda_intra: float = 0.1,
                    reduction: str = "mean", normalize: bool = True) -> tuple[jnp.ndarray, dict]:
  """CE²L's re-ID objective: LSR identity CE + λ_cross·ℓ_cross + λ_intra·ℓ_intra.

  Takes the paired model outputs: logits (2, N, C), feats (2, N, D) (`out['feat']`), pids (2, N)
  (slot 0 visible, slot 1 infrared — converted images sit in slot 1). Defaults are BDTR's code:
  ρ1 = 0.5, ρ2 = 0.1, λ_cross = 1, λ_intra = 0.1, mean reduction, features L2-normalised before the
  ranking terms (the margins are calibrated for unit-norm features; pass normalize=False for raw
  features); ε = 0.1 (scalar, or per example (2, N)).

  Returns (total, terms) with terms: loss (= total), loss_id, loss_cross, loss_intra, id_acc
  (top-1 identity accuracy), and the ranking diagnostics cross_active_frac, intra_active_frac,
  pos_dist, neg_dist, rank_acc, num_terms — every term by name for the metric writer.
  """
  if logits.ndim != 3 or feats.ndim != 3 or pids.ndim != 2 or logits.shape[0] != 2:
    raise ValueError("ce2l_total_loss wants paired logits (2, N, C), feats (2, N, D), pids (2, N); "
                     f"got {logits.shape}, {feats.shape}, {pids.shape}")
  loss_id = label_smoothing_cross_entropy(logits, pids, epsilon)
  dirs = _ranking_terms(feats[0], feats[1], pids[0], pids[1], rho1, rho2, normalize)
  count = sum(jnp.sum(d["valid"].astype(jnp.float32)) for d in dirs)
  loss_cross = _reduce(sum(jnp.sum(d["cross"]) for d in dirs), count, reduction)
  loss_intra = _reduce(sum(jnp.sum(d["intra"]) for d in dirs), count, reduction)
  total = loss_id + lambda_cross * loss_cross + lambda_intra * loss_intra
  aux = _cross_aux(dirs)
  valid = jnp.concatenate([d["valid"].ravel() for d in dirs])
  intra_terms = jnp.concatenate([d["intra"].ravel() for d in dirs])
  terms = dict(loss=total, loss_id=loss_id, loss_cross=loss_cross, loss_intra=loss_intra,
               id_acc=jnp.mean((jnp.argmax(logits, -1) == pids).astype(jnp.float32)),
               cross_active_frac=aux["active_frac"],
               intra_active_frac=_masked_mean((intra_terms > 0).astype(jnp.float32), valid),
               pos_dist=aux["pos_dist"], neg_dist=aux["neg_dist"], rank_acc=aux["rank_acc"],
               num_terms=aux["num_terms"])
  return total, terms
