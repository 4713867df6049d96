"""XQDA against its closed form and GSM on small problems (pure numpy, fast)."""

import numpy as np
import pytest

from ce2l_jax import metric_learning as ml


def _cross_modal_problem(seed=0, ids=12, per=3, d=8, signal=3, shift=2.0, noise=0.3,
                         nuisance=2.0):
  """Identity signal in the first `signal` dims; the infrared side is shifted and has large
  identity-free nuisance variance in the other dims, which Euclidean distance cannot ignore."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(ids, signal))
  a = np.repeat(np.arange(ids), per)
  b = np.repeat(np.arange(ids), per)
  x = np.zeros((len(a), d))
  z = np.zeros((len(b), d))
  x[:, :signal] = centres[a] + noise * rng.normal(size=(len(a), signal))
  z[:, :signal] = centres[b] + noise * rng.normal(size=(len(b), signal)) + shift
  x[:, signal:] = nuisance * rng.normal(size=(len(a), d - signal))
  z[:, signal:] = nuisance * rng.normal(size=(len(b), d - signal))
  return x, a, z, b


def _rank1(dist, q_labels, g_labels):
  return float(np.mean(g_labels[np.argmin(dist, axis=1)] == q_labels))


def _sqdist(p, q):
  return ((p[:, None, :] - q[None, :, :]) ** 2).sum(-1)


def _pair_covariances_loop(x, a, z, b):
  """The slow reference: (Σ_I, Σ_E, #intra pairs, #extra pairs), one outer product per
  cross-modal pair (x_i − z_j)(x_i − z_j)ᵀ, averaged over same- / different-identity pairs."""
  d = x.shape[1]
  sums, counts = [np.zeros((d, d)), np.zeros((d, d))], [0, 0]
  for i in range(len(x)):
    for j in range(len(z)):
      extra = int(a[i] != b[j])
      sums[extra] = sums[extra] + np.outer(x[i] - z[j], x[i] - z[j])
      counts[extra] += 1
  return sums[0] / counts[0], sums[1] / counts[1], counts[0], counts[1]


def test_pair_covariances_equal_the_pair_loop():
  x, a, z, b = _cross_modal_problem(ids=4, per=2, d=5)
  a = a.copy()
  a[0] = 9  # an identity only in the visible set
  si, se, n_i, n_e = ml.pair_covariances(x, a, z, b)
  ref_i, ref_e, ci, ce = _pair_covariances_loop(x, a, z, b)
  assert (n_i, n_e) == (ci, ce)
  np.testing.assert_allclose(si, ref_i, rtol=1e-10)
  np.testing.assert_allclose(se, ref_e, rtol=1e-10)


def _xqda_closed_form(x, a, z, b, lam=1e-3):
  """XQDA as the paper writes it: W = eigenvectors of Σ_I⁻¹Σ_E with eigenvalue > 1 (unit norm, as
  MATLAB's eig), M = (WᵀΣ_I W)⁻¹ − (WᵀΣ_E W)⁻¹; returns the full-space W M Wᵀ."""
  si, se, _, _ = _pair_covariances_loop(x, a, z, b)
  si = si + lam * np.eye(x.shape[1])
  evals, evecs = np.linalg.eig(np.linalg.solve(si, se))
  evals, evecs = evals.real, evecs.real
  keep = evals > 1
  w = evecs[:, keep] / np.linalg.norm(evecs[:, keep], axis=0)
  m = np.linalg.inv(w.T @ si @ w) - np.linalg.inv(w.T @ se @ w)
  return w @ m @ w.T


def test_xqda_embedding_distance_equals_the_closed_form():
  x, a, z, b = _cross_modal_problem(ids=6, per=3, d=5, signal=2)
  model = ml.fit_xqda(x, a, z, b)
  metric = _xqda_closed_form(x, a, z, b)
  diff = x[:, None, :] - z[None, :, :]
  want = np.einsum("ijd,de,ije->ij", diff, metric, diff)
  got = _sqdist(model.embed(x).astype(np.float64), model.embed(z).astype(np.float64))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
  assert np.all(model.eigenvalues > 1)


def test_xqda_qr_reduction_keeps_the_metric_on_the_span():
  # d = 40 > 24 training images: the QR basis path against the full 40-d closed form.
  x, a, z, b = _cross_modal_problem(ids=4, per=3, d=40, signal=3)
  model = ml.fit_xqda(x, a, z, b)
  assert model.pre.proj.shape == (40, 24)
  metric = _xqda_closed_form(x, a, z, b)
  diff = x[:, None, :] - z[None, :, :]
  want = np.einsum("ijd,de,ije->ij", diff, metric, diff)
  got = _sqdist(model.embed(x).astype(np.float64), model.embed(z).astype(np.float64))
  np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)


def test_xqda_beats_euclidean_on_a_planted_problem():
  x, a, z, b = _cross_modal_problem(seed=1, ids=30, per=3, d=10, signal=4)
  xt, at, zt, bt = _cross_modal_problem(seed=2, ids=30, per=3, d=10, signal=4)
  model = ml.fit_xqda(x, a, z, b)
  euclid = _rank1(_sqdist(zt, xt), bt, at)     # measured 0.07 (chance 0.03)
  learned = _rank1(_sqdist(model.embed(zt), model.embed(xt)), bt, at)  # measured 0.69
  assert learned > 0.5 and learned > euclid + 0.3, (learned, euclid)


def test_xqda_rejects_disjoint_identities():
  x, a, z, b = _cross_modal_problem(ids=3, per=2, d=4)
  with pytest.raises(ValueError, match="no identity is in both"):
    ml.fit_xqda(x, a, z, b + 100)


def _random_params(rng, r, d):
  return {"la": rng.normal(size=(r, d)), "lb": rng.normal(size=(r, d)),
          "lx": rng.normal(size=(r, d)), "ly": rng.normal(size=(r, d)),
          "d": rng.normal(size=d), "e": rng.normal(size=d), "f": 0.3}


def test_gsm_similarity_is_the_block_quadratic_form():
  rng = np.random.default_rng(0)
  p = _random_params(rng, 3, 4)
  x, y = rng.normal(size=(5, 4)), rng.normal(size=(6, 4))
  a, b = -p["la"].T @ p["la"], -p["lb"].T @ p["lb"]
  c = p["lx"].T @ p["ly"]
  big = np.block([[a, c, p["d"][:, None]], [c.T, b, p["e"][:, None]],
                  [p["d"][None], p["e"][None], np.array([[p["f"]]])]])
  want = np.array([[np.r_[xi, yj, 1] @ big @ np.r_[xi, yj, 1] for yj in y] for xi in x])
  np.testing.assert_allclose(ml.gsm_similarity(p, x, y), want, rtol=1e-10, atol=1e-10)
  np.testing.assert_allclose(ml.gsm_pair_similarity(p, x, y[:5]), np.diag(want[:, :5]))
  # The identity factors give minus the squared Euclidean distance.
  eye = {"la": np.eye(4), "lb": np.eye(4), "lx": np.eye(4), "ly": np.eye(4),
         "d": np.zeros(4), "e": np.zeros(4), "f": 0.0}
  np.testing.assert_allclose(ml.gsm_similarity(eye, x, y), -_sqdist(x, y), atol=1e-10)


def test_gsm_gradients_match_finite_differences():
  rng = np.random.default_rng(1)
  p = _random_params(rng, 2, 3)
  for k in ("la", "lb", "lx", "ly", "d", "e"):
    p[k] = p[k] * 0.3
  x, y = rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
  label = np.array([1, -1, 1, -1, 1, -1, -1.0])
  _, grads = ml.gsm_loss_and_grads(p, x, y, label, lam=0.1)
  eps = 1e-6
  for k in ("la", "lb", "lx", "ly", "d", "e", "f"):
    flat = np.atleast_1d(np.asarray(p[k], np.float64)).ravel()
    num = np.zeros_like(flat)
    for i in range(flat.size):
      for sign in (1, -1):
        q = dict(p)
        v = flat.copy()
        v[i] += sign * eps
        q[k] = v.reshape(np.shape(p[k])) if np.ndim(p[k]) else float(v[0])
        num[i] += sign * ml.gsm_loss_and_grads(q, x, y, label, lam=0.1)[0] / (2 * eps)
    np.testing.assert_allclose(np.atleast_1d(grads[k]).ravel(), num, rtol=1e-4, atol=1e-6,
                               err_msg=k)


def test_gsm_learns_and_its_embedding_ranks_by_similarity():
  x, a, z, b = _cross_modal_problem(seed=1, ids=30, per=3, d=10, signal=4)
  xt, at, zt, bt = _cross_modal_problem(seed=2, ids=30, per=3, d=10, signal=4)
  model = ml.fit_gsm(x, a, z, b, pca_dims=10, steps=400, batch=256, lr=1e-2, seed=0)
  assert model.history[-1][1] < model.history[0][1]
  sim = model.similarity(xt, zt)                         # visible × infrared
  phi, psi = model.embed(xt, "x").astype(np.float64), model.embed(zt, "y").astype(np.float64)
  dist = _sqdist(phi, psi)
  np.testing.assert_allclose(dist + sim, (dist + sim).mean(), atol=1e-3 * np.abs(sim).max())
  learned = _rank1(dist.T, bt, at)        # infrared queries, visible gallery; measured 0.51
  euclid = _rank1(_sqdist(zt, xt), bt, at)  # measured 0.07
  assert learned > euclid + 0.25, (learned, euclid)
  with pytest.raises(ValueError, match="side"):
    model.embed(xt, "visible")


def test_gsm_pair_sampler_is_balanced_and_labelled_right():
  a = np.array([0, 0, 1, 2, 5])        # identity 5 has no infrared image
  b = np.array([2, 1, 0, 0, 1, 3])
  sample = ml._PairSampler(a, b)
  i, j, label = sample(400, np.random.default_rng(0))
  assert (label == 1).sum() == 200
  np.testing.assert_array_equal(a[i] == b[j], label == 1)
  assert 4 not in i[label == 1]
  assert set(j[label == 1]) == {0, 1, 2, 3, 4}  # every infrared image of a shared identity
