"""Cross-modality metrics learned on the training split: XQDA and GSM (pure numpy).

Both are fitted on training features of the two modalities, X (visible, n_x × d) with labels a
and Z (infrared, n_z × d) with labels b, and both are turned into *embeddings* whose squared
Euclidean distance between a visible and an infrared image is the learned distance (exactly, up
to a constant for GSM), so the test protocol (`ce2l_jax.metrics.evaluate`, Euclidean distances
of features) scores them unchanged.

**XQDA** (Liao, Hu, Zhu, Li, CVPR 2015, §3): the pairs (x_i, z_j) with a_i = b_j are intra-personal,
the others extra-personal; with their (zero-mean, as the paper's Gaussian model) covariances

  Σ_I = 1/n_I Σ_{a_i = b_j} (x_i − z_j)(x_i − z_j)ᵀ,   Σ_E = 1/n_E Σ_{a_i ≠ b_j} (x_i − z_j)(x_i − z_j)ᵀ,

computed in closed form from per-class sums (§3.3, no loop over the n_x·n_z pairs), the subspace
W (d × r) maximises the generalised Rayleigh quotient wᵀΣ_E w / wᵀΣ_I w: the leading generalised
eigenvectors of (Σ_E, Σ_I + λI), λ = 0.001 (the paper's regulariser), keeping those with
eigenvalue > 1 (the directions where extra-personal variance exceeds intra-personal, as the
authors' code), at most `dims`. The metric in the subspace is

  d(x, z) = (x − z)ᵀ W M Wᵀ (x − z),   M = (Wᵀ Σ_I W)⁻¹ − (Wᵀ Σ_E W)⁻¹.

With W normalised so that WᵀΣ_I W = I (scipy's `eigh(Σ_E, Σ_I)`), WᵀΣ_E W = diag(λ_k) and
M = diag(1 − 1/λ_k) ⪰ 0, so the embedding f(x) = diag(√(1 − 1/λ_k)) Wᵀ x gives
‖f(x) − f(z)‖² = d(x, z). When d exceeds the number of training images the features are first
reduced to their span by a QR decomposition (as the authors' code), which leaves the metric on
that span unchanged; `pca_dims` optionally reduces further (centred PCA) for speed.

**GSM**, the generalized similarity measure (Lin, Wang, Zuo, Feng, Zhang, "Cross-Domain Visual
Matching via Generalized Similarity Measure and Feature Learning", TPAMI 2017, §3): a similarity
of a visible x and an infrared y that fuses an affine Mahalanobis distance with an affine
cosine-like inner product,

  S(x, y) = [xᵀ yᵀ 1] [[A, C, d], [Cᵀ, B, e], [dᵀ, eᵀ, f]] [x; y; 1],

with A, B negative semi-definite and C free, kept tractable (§3.2) by the factorisation
A = −L_Aᵀ L_A, B = −L_Bᵀ L_B, C = L_Xᵀ L_Y:

  S(x, y) = −‖L_A x‖² − ‖L_B y‖² + 2 (L_X x)ᵀ(L_Y y) + 2 dᵀx + 2 eᵀy + f,

(L_A = L_B = L_X = L_Y = I, d = e = 0, f = 0 gives −‖x − y‖²), learned from labelled pairs
(ℓ = +1 same identity, −1 otherwise) with the paper's SVM-like objective

  min  1/|P| Σ_pairs [1 − ℓ S(x, y)]₊ + λ/2 (‖L_A‖² + ‖L_B‖² + ‖L_X‖² + ‖L_Y‖² + ‖d‖² + ‖e‖²).

The paper learns it jointly with a CNN (§4); the hand-crafted row of the VI-ReID tables applies
it to fixed features, as here: PCA-reduced, whitened features (choice, `pca_dims`), the factors
initialised at the identity (Euclidean similarity), minibatch Adam on balanced positive and
negative cross-modality pairs (choice; the paper uses SGD inside the network).
Embedding for ranking: with a(x) = ‖L_X x‖² − ‖L_A x‖² + 2dᵀx, b(y) = ‖L_Y y‖² − ‖L_B y‖² + 2eᵀy
and constants K_x ≥ max a, K_y ≥ max b over the set being embedded,
φ(x) = [L_X x, √(K_x − a(x)), 0], ψ(y) = [L_Y y, 0, √(K_y − b(y))] give
‖φ(x) − ψ(y)‖² = K_x + K_y + f − S(x, y): ranking by it is ranking by S.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import scipy.linalg

# --------------------------------------------------------------------------------------------
# Shared: pair statistics and linear reductions
# --------------------------------------------------------------------------------------------


def _check_pairs(x: np.ndarray, a: np.ndarray, z: np.ndarray, b: np.ndarray) -> None:
  if x.ndim != 2 or z.ndim != 2 or x.shape[1] != z.shape[1]:
    raise ValueError(f"features must be (n, d) with the same d; got {x.shape} and {z.shape}")
  if a.shape != (len(x),) or b.shape != (len(z),):
    raise ValueError("labels must have one entry per feature row")
  if not np.intersect1d(a, b).size:
    raise ValueError("no identity is in both modalities: no intra-personal pair to learn from")


def pair_covariances(x: np.ndarray, a: np.ndarray, z: np.ndarray, b: np.ndarray):
  """(Σ_I, Σ_E, n_I, n_E) of all cross pairs (x_i, z_j), in closed form (XQDA §3.3).

  Σ_{a_i=b_j} (x_i − z_j)(x_i − z_j)ᵀ = Σ_i m_{a_i} x_i x_iᵀ + Σ_j n_{b_j} z_j z_jᵀ − Σ_k (S_k R_kᵀ + R_k S_kᵀ)
  with m_k, n_k the class counts among Z and X and S_k, R_k the class sums of X and Z; the sum
  over all pairs is n_z Σ x xᵀ + n_x Σ z zᵀ − s rᵀ − r sᵀ (s, r the total sums).
  """
  x, z = np.asarray(x, np.float64), np.asarray(z, np.float64)
  a, b = np.asarray(a), np.asarray(b)
  _check_pairs(x, a, z, b)
  classes, a_idx = np.unique(np.concatenate([a, b]), return_inverse=True)
  ia, ib = a_idx[:len(a)], a_idx[len(a):]
  k = len(classes)
  n_x_per = np.bincount(ia, minlength=k).astype(np.float64)
  n_z_per = np.bincount(ib, minlength=k).astype(np.float64)
  sx = np.zeros((k, x.shape[1]))
  np.add.at(sx, ia, x)
  sz = np.zeros((k, z.shape[1]))
  np.add.at(sz, ib, z)
  xw = x * np.sqrt(n_z_per[ia])[:, None]
  zw = z * np.sqrt(n_x_per[ib])[:, None]
  cross = sx.T @ sz
  intra = xw.T @ xw + zw.T @ zw - cross - cross.T
  s, r = x.sum(0), z.sum(0)
  total = len(z) * (x.T @ x) + len(x) * (z.T @ z) - np.outer(s, r) - np.outer(r, s)
  n_i = float(n_x_per @ n_z_per)
  n_e = float(len(x) * len(z)) - n_i
  if n_e <= 0:
    raise ValueError("every cross pair is of one identity: no extra-personal pair")
  return intra / n_i, (total - intra) / n_e, n_i, n_e


@dataclasses.dataclass
class Linear:
  """x ↦ (x − mean) @ proj (mean may be zero)."""
  mean: np.ndarray
  proj: np.ndarray

  def __call__(self, x: np.ndarray) -> np.ndarray:
    return (np.asarray(x, np.float64) - self.mean) @ self.proj


def span_basis(x: np.ndarray, z: np.ndarray) -> Linear:
  """Orthonormal basis of the training features' span (economy QR of their transpose)."""
  q, _ = np.linalg.qr(np.concatenate([x, z]).T.astype(np.float64))
  return Linear(np.zeros(q.shape[0]), q)


def pca(x: np.ndarray, dims: int, whiten: bool = False) -> Linear:
  """Centred PCA to `dims` components (SVD); with `whiten` each component has unit variance."""
  x = np.asarray(x, np.float64)
  mean = x.mean(0)
  xc = x - mean
  if xc.shape[1] > xc.shape[0]:  # Gram trick: eigenvectors of X Xᵀ
    evals, u = np.linalg.eigh(xc @ xc.T)
    order = np.argsort(evals)[::-1][:dims]
    evals, u = np.maximum(evals[order], 1e-12), u[:, order]
    proj = xc.T @ u / np.sqrt(evals)
    sv = np.sqrt(evals)
  else:
    _, sv, vt = np.linalg.svd(xc, full_matrices=False)
    proj, sv = vt[:dims].T, sv[:dims]
  if whiten:
    proj = proj / np.maximum(sv / np.sqrt(max(len(x) - 1, 1)), 1e-12)
  return Linear(mean, proj)


# --------------------------------------------------------------------------------------------
# XQDA
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class XQDA:
  """A fitted XQDA: `pre` (reduction), W (d' × r), eigenvalues λ (r,), scale √(1 − 1/λ)."""
  pre: Linear
  w: np.ndarray
  eigenvalues: np.ndarray

  def embed(self, feats: np.ndarray) -> np.ndarray:
    """(n, d) → (n, r) with ‖f(x) − f(z)‖² = XQDA's d(x, z) (float32)."""
    scale = np.sqrt(1.0 - 1.0 / self.eigenvalues)
    return (self.pre(feats) @ self.w * scale).astype(np.float32)

  def metric(self) -> np.ndarray:
    """W M Wᵀ in the reduced space (for tests and inspection)."""
    return self.w @ np.diag(1.0 - 1.0 / self.eigenvalues) @ self.w.T


def fit_xqda(x: np.ndarray, a: Sequence[int], z: np.ndarray, b: Sequence[int], *,
             lam: float = 1e-3, dims: int = 0, pca_dims: int = 0) -> XQDA:
  """XQDA of visible features x (labels a) against infrared features z (labels b).

  `dims`: at most this many subspace dimensions (0: every eigenvalue > 1); `pca_dims`: first a
  centred PCA to that many dimensions (0: only the exact QR reduction when d > n_x + n_z).
  """
  x, z = np.asarray(x, np.float64), np.asarray(z, np.float64)
  a, b = np.asarray(a), np.asarray(b)
  _check_pairs(x, a, z, b)
  if pca_dims and pca_dims < x.shape[1]:
    pre = pca(np.concatenate([x, z]), int(pca_dims))
  elif x.shape[1] > len(x) + len(z):
    pre = span_basis(x, z)
  else:
    pre = Linear(np.zeros(x.shape[1]), np.eye(x.shape[1]))
  xr, zr = pre(x), pre(z)
  sigma_i, sigma_e, _, _ = pair_covariances(xr, a, zr, b)
  sigma_i = sigma_i + lam * np.eye(len(sigma_i))
  evals, evecs = scipy.linalg.eigh(sigma_e, sigma_i)   # ascending; evecsᵀ Σ_I evecs = I
  order = np.argsort(evals)[::-1]
  evals, evecs = evals[order], evecs[:, order]
  keep = evals > 1.0
  if not keep.any():
    keep[0] = True  # degenerate data: keep the best direction (its metric weight is ~0)
    evals = evals.copy()
    evals[0] = max(evals[0], 1.0 + 1e-6)
  r = int(keep.sum()) if not dims else min(int(dims), int(keep.sum()))
  return XQDA(pre, evecs[:, :r], evals[:r])


# --------------------------------------------------------------------------------------------
# GSM
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class GSM:
  """A fitted generalized similarity: `pre` (whitened PCA) and the factors of §3.2."""
  pre: Linear
  la: np.ndarray
  lb: np.ndarray
  lx: np.ndarray
  ly: np.ndarray
  d: np.ndarray
  e: np.ndarray
  f: float
  history: list = dataclasses.field(default_factory=list)

  def params(self) -> dict:
    return {k: getattr(self, k) for k in ("la", "lb", "lx", "ly", "d", "e", "f")}

  def similarity(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """S(x_i, y_j) for all pairs: (n, d), (m, d) raw features → (n, m)."""
    return gsm_similarity(self.params(), self.pre(x), self.pre(y))

  def embed(self, feats: np.ndarray, side: str) -> np.ndarray:
    """φ (side 'x', visible) or ψ (side 'y', infrared) of the module docstring, (n, r + 2)."""
    u = self.pre(feats)
    if side == "x":
      lin = u @ self.lx.T
      extra = (lin ** 2).sum(1) - ((u @ self.la.T) ** 2).sum(1) + 2 * u @ self.d
    elif side == "y":
      lin = u @ self.ly.T
      extra = (lin ** 2).sum(1) - ((u @ self.lb.T) ** 2).sum(1) + 2 * u @ self.e
    else:
      raise ValueError(f"side must be 'x' (visible) or 'y' (infrared), got {side!r}")
    col = np.sqrt(np.maximum(extra.max(initial=0.0) - extra, 0.0))
    zeros = np.zeros_like(col)
    cols = (col, zeros) if side == "x" else (zeros, col)
    return np.concatenate([lin, np.stack(cols, axis=1)], axis=1).astype(np.float32)


def gsm_similarity(p: dict, x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """S(x_i, y_j) of the factorised GSM for all pairs: (n, m)."""
  ax = ((x @ p["la"].T) ** 2).sum(1)
  by = ((y @ p["lb"].T) ** 2).sum(1)
  cross = (x @ p["lx"].T) @ (y @ p["ly"].T).T
  return -ax[:, None] - by[None, :] + 2 * cross + 2 * (x @ p["d"])[:, None] \
      + 2 * (y @ p["e"])[None, :] + p["f"]


def gsm_pair_similarity(p: dict, x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """S(x_i, y_i) row by row: (n, d), (n, d) → (n,)."""
  return (-((x @ p["la"].T) ** 2).sum(1) - ((y @ p["lb"].T) ** 2).sum(1)
          + 2 * ((x @ p["lx"].T) * (y @ p["ly"].T)).sum(1) + 2 * x @ p["d"] + 2 * y @ p["e"]
          + p["f"])


def gsm_loss_and_grads(p: dict, x: np.ndarray, y: np.ndarray, label: np.ndarray,
                       lam: float) -> tuple[float, dict]:
  """The objective of the module docstring on pairs (x_i, y_i, ℓ_i) and its gradients."""
  s = gsm_pair_similarity(p, x, y)
  margin = 1.0 - label * s
  active = margin > 0
  n = len(x)
  loss = float(np.maximum(margin, 0).mean())
  reg = sum(float((p[k] ** 2).sum()) for k in ("la", "lb", "lx", "ly", "d", "e"))
  loss += 0.5 * lam * reg
  g = np.where(active, -label, 0.0) / n          # dLoss/dS per pair
  ax, by = x @ p["la"].T, y @ p["lb"].T
  px, py = x @ p["lx"].T, y @ p["ly"].T
  grads = {
      "la": -2 * (g[:, None] * ax).T @ x + lam * p["la"],
      "lb": -2 * (g[:, None] * by).T @ y + lam * p["lb"],
      "lx": 2 * (g[:, None] * py).T @ x + lam * p["lx"],
      "ly": 2 * (g[:, None] * px).T @ y + lam * p["ly"],
      "d": 2 * g @ x + lam * p["d"],
      "e": 2 * g @ y + lam * p["e"],
      "f": float(g.sum()),
  }
  return loss, grads


class _PairSampler:
  """Balanced minibatches of cross-modality pairs: half positive (a visible image and a random
  infrared image of its identity), half negative (random pairs of different identities)."""

  def __init__(self, a: np.ndarray, b: np.ndarray):
    self.a, self.b = np.asarray(a), np.asarray(b)
    order = np.argsort(self.b, kind="stable")
    self.b_sorted = order
    ids, start, count = np.unique(self.b[order], return_index=True, return_counts=True)
    pos = np.searchsorted(ids, self.a)
    pos = np.minimum(pos, len(ids) - 1)
    has = ids[pos] == self.a
    self.usable = np.flatnonzero(has)
    self.start, self.count = start[pos], count[pos]

  def __call__(self, n: int, rng: np.random.Generator):
    i_pos = rng.choice(self.usable, n // 2)
    j_pos = self.b_sorted[self.start[i_pos] + (rng.random(len(i_pos)) * self.count[i_pos]).astype(np.int64)]
    i_neg = rng.integers(0, len(self.a), n - n // 2)
    j_neg = rng.integers(0, len(self.b), n - n // 2)
    same = self.a[i_neg] == self.b[j_neg]
    while same.any():  # redraw the accidental positives
      j_neg[same] = rng.integers(0, len(self.b), int(same.sum()))
      same = self.a[i_neg] == self.b[j_neg]
    i = np.concatenate([i_pos, i_neg])
    j = np.concatenate([j_pos, j_neg])
    label = np.concatenate([np.ones(len(i_pos)), -np.ones(len(i_neg))])
    return i, j, label


def fit_gsm(x: np.ndarray, a: Sequence[int], z: np.ndarray, b: Sequence[int], *,
            pca_dims: int = 128, rank: int = 0, lam: float = 1e-4, lr: float = 1e-3,
            steps: int = 2000, batch: int = 512, seed: int = 0) -> GSM:
  """GSM of visible features x (labels a) against infrared features z (labels b).

  PCA (whitened, scaled by 1/√pca_dims so that ‖x − y‖² ≈ 2 for unrelated images) to
  `pca_dims`; factors of `rank` rows (0: pca_dims), started at the identity; Adam with `lr` for
  `steps` minibatches of `batch` balanced pairs.
  """
  x, z = np.asarray(x, np.float64), np.asarray(z, np.float64)
  a, b = np.asarray(a), np.asarray(b)
  _check_pairs(x, a, z, b)
  dims = min(int(pca_dims), x.shape[1], len(x) + len(z) - 1)
  pre = pca(np.concatenate([x, z]), dims, whiten=True)
  pre = Linear(pre.mean, pre.proj / np.sqrt(dims))
  xr, zr = pre(x), pre(z)
  r = int(rank) or dims
  eye = np.eye(r, dims)
  p = {"la": eye.copy(), "lb": eye.copy(), "lx": eye.copy(), "ly": eye.copy(),
       "d": np.zeros(dims), "e": np.zeros(dims), "f": 0.0}
  m = {k: np.zeros_like(v) for k, v in p.items()}
  v2 = {k: np.zeros_like(v) for k, v in p.items()}
  rng = np.random.default_rng(seed)
  sample = _PairSampler(a, b)
  history = []
  b1, b2, eps = 0.9, 0.999, 1e-8
  for t in range(1, int(steps) + 1):
    i, j, label = sample(int(batch), rng)
    loss, grads = gsm_loss_and_grads(p, xr[i], zr[j], label, lam)
    for k in p:
      m[k] = b1 * m[k] + (1 - b1) * grads[k]
      v2[k] = b2 * v2[k] + (1 - b2) * np.square(grads[k])
      step = lr * (m[k] / (1 - b1 ** t)) / (np.sqrt(v2[k] / (1 - b2 ** t)) + eps)
      p[k] = p[k] - step
    if t == 1 or t % 100 == 0 or t == steps:
      history.append((t, loss))
  return GSM(pre, p["la"], p["lb"], p["lx"], p["ly"], p["d"], p["e"], float(p["f"]), history)
