"""HCML: a hierarchical cross-modality metric learned on TONE's features (Ye et al., AAAI 2018,
"Hierarchical Discriminative Learning for Visible Thermal Person Re-Identification", Sec. "HCML").

The paper learns, on the features of its two-stream network TONE, two levels of metric jointly:
**modality-specific** metrics (one linear transform per modality) that carry the two modalities
into a consistent space and compact each person's features within a modality, then a
**modality-shared** metric on that space, learned from cross-modality pairs. It optimises them by
alternating updates. We realise both levels in closed form (our choice; the alternating solver's
details are not reproduced, this is stated in configs/hcml.py):

1. modality-specific, (W_v, W_t): each feature is centred by its modality's mean and placed in a
   2D-dimensional augmented space, x̃_v = [x_v − μ_v; 0], x̃_t = [0; x_t − μ_t], so that one
   linear map W = [W_v; W_t] applies W_v to visible and W_t to infrared features. W is Fisher's
   discriminant of the identities on x̃ (both modalities pooled per identity): the top-r
   generalised eigenvectors of S_b w = λ (S_w + δ I) w, S_w the within-identity scatter (it holds
   the cross-modality and the within-modality spread of each person), S_b the between-identity
   scatter, r = min(2D, #ids − 1, `dim`).
2. modality-shared, M: XQDA (Liao et al., CVPR 2015; `ce2l_jax.metric_learning.fit_xqda`, the
   metric the hand-crafted rows use) on the cross-modality pairs in that space, z = W_mᵀ x̃: a
   subspace where the different-identity pairs spread more than the same-identity ones, with the
   metric M = Σ_I'⁻¹ − Σ_E'⁻¹ there (KISSME's form, which XQDA restricts to that subspace).

A test image of modality m gets the feature XQDA.embed(W_mᵀ (x − μ_m)); the squared Euclidean
distance between a visible and an infrared one is then the learned (z_v − z_t)ᵀ M (z_v − z_t).
Pure numpy/scipy (float64), no I/O.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg

from ce2l_jax import metric_learning


class HCMLMetric(NamedTuple):
  """Level 1 (mean_m, proj_m: x ↦ (x − mean_m) @ proj_m per modality) and level 2 (`shared`)."""
  mean_v: np.ndarray
  mean_t: np.ndarray
  proj_v: np.ndarray
  proj_t: np.ndarray
  shared: metric_learning.XQDA

  def specific(self, feats: np.ndarray, modality: int) -> np.ndarray:
    """Level 1 only: the modality-specific map into the common space."""
    mean, proj = (self.mean_v, self.proj_v) if modality == 0 else (self.mean_t, self.proj_t)
    return (np.asarray(feats, np.float64) - mean) @ proj

  def project(self, feats: np.ndarray, modality: int) -> np.ndarray:
    """Both levels: features whose squared Euclidean distance is HCML's distance."""
    return self.shared.embed(self.specific(feats, modality))


def fisher_augmented(feats_v: np.ndarray, feats_t: np.ndarray, pids_v: np.ndarray,
                     pids_t: np.ndarray, dim: int = 0,
                     reg: float = 1e-3) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Level 1: (mean_v, mean_t, W_v (D, r), W_t (D', r)) — Fisher's discriminant on x̃, with
  S_w regularised by reg·tr(S_w)/d·I; `dim` > 0 caps r."""
  xv, xt = np.asarray(feats_v, np.float64), np.asarray(feats_t, np.float64)
  mean_v, mean_t = xv.mean(0), xt.mean(0)
  dv, dt = xv.shape[1], xt.shape[1]
  x = np.zeros((len(xv) + len(xt), dv + dt))
  x[:len(xv), :dv] = xv - mean_v
  x[len(xv):, dv:] = xt - mean_t
  y = np.concatenate([np.asarray(pids_v), np.asarray(pids_t)])
  classes = np.unique(y)
  r = min(dv + dt, len(classes) - 1, int(dim) or dv + dt)
  if r < 1:
    raise ValueError("HCML needs at least two training identities")
  mu = x.mean(0)
  s_w = np.zeros((dv + dt, dv + dt))
  s_b = np.zeros_like(s_w)
  for c in classes:
    xc = x[y == c]
    mc = xc.mean(0)
    s_w += (xc - mc).T @ (xc - mc)
    s_b += len(xc) * np.outer(mc - mu, mc - mu)
  s_w += reg * max(np.trace(s_w) / len(s_w), 1e-12) * np.eye(len(s_w))
  lam, w = scipy.linalg.eigh(s_b, s_w)          # ascending, wᵀ S_w w = I
  w = w[:, np.argsort(lam)[::-1][:r]]
  return mean_v, mean_t, w[:dv], w[dv:]


def fit_hcml(feats_v: np.ndarray, feats_t: np.ndarray, pids_v: np.ndarray, pids_t: np.ndarray,
             dim: int = 0, reg: float = 1e-3) -> HCMLMetric:
  """Both levels (module docstring) from training features of each modality and their pids."""
  mean_v, mean_t, wv, wt = fisher_augmented(feats_v, feats_t, pids_v, pids_t, dim, reg)
  zv = (np.asarray(feats_v, np.float64) - mean_v) @ wv
  zt = (np.asarray(feats_t, np.float64) - mean_t) @ wt
  shared = metric_learning.fit_xqda(zv, np.asarray(pids_v), zt, np.asarray(pids_t), lam=reg)
  return HCMLMetric(mean_v, mean_t, wv, wt, shared)
