"""Re-ID losses against the loop oracles in tests/loss_oracles.py (tiny random inputs)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ce2l_jax import losses
from tests import loss_oracles as oracle


def _batch(seed, n_ids=4, k=3, dim=8, shuffle=True):
  """P×K-style paired batch: k images per identity in each modality, in shuffled order."""
  rng = np.random.default_rng(seed)
  pids_v = np.repeat(np.arange(n_ids), k)
  pids_t = np.repeat(np.arange(n_ids), k)
  if shuffle:
    rng.shuffle(pids_v)
    rng.shuffle(pids_t)
  fv = rng.normal(size=(len(pids_v), dim)).astype(np.float32) * 0.3
  ft = rng.normal(size=(len(pids_t), dim)).astype(np.float32) * 0.3
  return fv, ft, pids_v, pids_t


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("normalize", [False, True])
def test_ranking_losses_match_oracle(reduction, normalize):
  for seed in range(2):
    fv, ft, pv, pt = _batch(seed)
    # Unequal modality sizes and an identity present in one modality only.
    ft, pt = np.concatenate([ft, ft[:1] + 1.0]), np.concatenate([pt, [9]])
    for margin in (0.5, 2.0):  # 2.0 keeps most hinges active.
      got, aux = losses.cross_modality_top_ranking(fv, ft, pv, pt, margin, reduction, normalize)
      want = oracle.cross_modality_top_ranking(fv, ft, pv, pt, margin, reduction, normalize)
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
      assert aux["num_terms"] == 2 * len(fv) * 3  # k = 3 positives per anchor, both directions
      got, _ = losses.intra_modality(fv, ft, pv, pt, margin / 2, reduction, normalize)
      want = oracle.intra_modality(fv, ft, pv, pt, margin / 2, reduction, normalize)
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_total_loss_combines_terms_with_bdtr_defaults():
  fv, ft, pv, pt = _batch(3)
  logits = np.random.default_rng(0).normal(size=(2, len(pv), 5)).astype(np.float32)
  feats, pids = np.stack([fv, ft]), np.stack([pv, pt])
  total, terms = losses.ce2l_total_loss(logits, feats, pids)
  cross = oracle.cross_modality_top_ranking(fv, ft, pv, pt, 0.5, "mean", normalize=True)
  intra = oracle.intra_modality(fv, ft, pv, pt, 0.1, "mean", normalize=True)
  lsr = oracle.label_smoothing_cross_entropy(logits, pids, 0.1)
  np.testing.assert_allclose(terms["loss_cross"], cross, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(terms["loss_intra"], intra, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(terms["loss_id"], lsr, rtol=1e-5)
  np.testing.assert_allclose(total, lsr + cross + 0.1 * intra, rtol=1e-5)
  assert terms["loss"] == total
  assert {"id_acc", "rank_acc", "cross_active_frac", "intra_active_frac", "pos_dist",
          "neg_dist"} <= set(terms)


def test_identical_features_give_finite_gradients():
  fv, ft, pv, pt = _batch(1, n_ids=3, k=2)
  fv[:] = fv[0]  # every visible feature the same …
  ft[:2] = fv[0]  # … and equal to some infrared ones
  ft[3] = ft[2]

  def f(fv, ft):
    c, _ = losses.cross_modality_top_ranking(fv, ft, pv, pt, 0.5, "sum")
    i, _ = losses.intra_modality(fv, ft, pv, pt, 0.1, "sum")
    n, _ = losses.cross_modality_top_ranking(fv, ft, pv, pt, 0.5, normalize=True)
    return c + i + n

  value, grads = jax.value_and_grad(f, argnums=(0, 1))(jnp.asarray(fv), jnp.asarray(ft))
  assert np.isfinite(value)
  for g in grads:
    assert np.all(np.isfinite(g))
  np.testing.assert_allclose(value, oracle.cross_modality_top_ranking(fv, ft, pv, pt, 0.5, "sum")
                             + oracle.intra_modality(fv, ft, pv, pt, 0.1, "sum")
                             + oracle.cross_modality_top_ranking(fv, ft, pv, pt, 0.5,
                                                                 normalize=True), atol=1e-4)


def test_perfectly_separated_batch_gives_zero():
  # Identity p sits at 10·e_p in both modalities: positives at distance 0, negatives at 14.1.
  pids = np.array([0, 1, 2, 0, 1, 2])
  feats = 10.0 * np.eye(4, dtype=np.float32)[pids]
  for reduction in ("mean", "sum"):
    c, aux = losses.cross_modality_top_ranking(feats, feats, pids, pids, 0.5, reduction)
    i, _ = losses.intra_modality(feats, feats, pids, pids, 0.1, reduction)
    assert float(c) == 0.0 and float(i) == 0.0
    assert float(aux["rank_acc"]) == 1.0 and float(aux["active_frac"]) == 0.0
  g = jax.grad(lambda f: losses.cross_modality_top_ranking(f, f, pids, pids, 0.5)[0])(feats)
  assert np.all(g == 0)


def test_rows_without_negatives_or_positives_are_dropped():
  fv = np.random.default_rng(2).normal(size=(3, 4)).astype(np.float32)
  ft = fv + 0.1
  # A single identity: no anchor has a negative, so there are no terms at all.
  same = np.zeros(3, np.int32)
  c, aux = losses.cross_modality_top_ranking(fv, ft, same, same, 0.5, "mean")
  assert float(c) == 0.0 and float(aux["num_terms"]) == 0.0
  g = jax.grad(lambda a: losses.cross_modality_top_ranking(a, ft, same, same, 0.5)[0])(fv)
  assert np.all(np.isfinite(g))
  # Disjoint identities: no anchor has a positive.
  c, aux = losses.intra_modality(fv, ft, np.array([0, 1, 2]), np.array([3, 4, 5]), 0.1, "sum")
  assert float(c) == 0.0 and float(aux["num_terms"]) == 0.0


def test_fused_losses_jit():
  fv, ft, pv, pt = _batch(4)
  f = jax.jit(lambda a, b: losses.cross_modality_top_ranking(a, b, pv, pt, 0.5)[0])
  np.testing.assert_allclose(f(fv, ft), oracle.cross_modality_top_ranking(fv, ft, pv, pt, 0.5),
                             rtol=1e-5)


def test_label_smoothing_cross_entropy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 6, 7)).astype(np.float32) * 3
  labels = rng.integers(0, 7, size=(2, 6))
  for eps in (0.0, 0.1):
    np.testing.assert_allclose(losses.label_smoothing_cross_entropy(logits, labels, eps),
                               oracle.label_smoothing_cross_entropy(logits, labels, eps),
                               rtol=1e-5)
  # Per-example ε: smooth converted images only.
  converted = rng.random(size=(2, 6)) < 0.5
  eps = np.where(converted, 0.1, 0.0)
  np.testing.assert_allclose(losses.label_smoothing_cross_entropy(logits, labels, eps),
                             oracle.label_smoothing_cross_entropy(logits, labels, eps), rtol=1e-5)
  # ε = 0 is the plain cross-entropy.
  logp = jax.nn.log_softmax(logits)
  plain = -np.mean(np.take_along_axis(np.asarray(logp), labels[..., None], -1))
  np.testing.assert_allclose(losses.label_smoothing_cross_entropy(logits, labels, 0.0), plain,
                             rtol=1e-5)


def test_bad_reduction():
  fv, ft, pv, pt = _batch(0)
  with pytest.raises(ValueError, match="reduction"):
    losses.cross_modality_top_ranking(fv, ft, pv, pt, 0.5, "max")
