"""CMC / mAP / mINP (`ce2l_jax.metrics.ranking`): hand-made cases and the loop oracle."""

import numpy as np
import pytest

from ce2l_jax.metrics import eval_regdb, eval_sysu
from ce2l_jax.metrics.ranking import stable_argsort_rows
from tests.metric_oracles import eval_regdb_oracle, eval_sysu_oracle


def _close(got, want):
  cmc, m_ap, m_inp = got
  np.testing.assert_allclose(cmc, want[0], rtol=0, atol=1e-12)
  assert cmc.shape == np.asarray(want[0]).shape
  assert m_ap == pytest.approx(want[1], abs=1e-12)
  assert m_inp == pytest.approx(want[2], abs=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_camera3_loses_camera2_whatever_the_identity(dtype):
  # Gallery ranked by distance: cam2 pid0, cam1 pid1, cam1 pid0.
  d = np.array([[0.1, 0.2, 0.3]] * 2, dtype)
  g_pids, g_cams = np.array([0, 1, 0]), np.array([2, 1, 1])
  # Camera 3: the cam-2 true match is gone; ranked list = pid1, pid0.
  # The curve keeps min(max_rank, n_gallery) entries, the last one repeated.
  _close(eval_sysu(d[:1], [0], g_pids, [3], g_cams), ([0, 1, 1], 1 / 2, 1 / 2))
  # Camera 6 keeps it: matches at ranks 1 and 3.
  _close(eval_sysu(d[:1], [0], g_pids, [6], g_cams), ([1, 1, 1], (1 + 2 / 3) / 2, 2 / 3))
  # A cam-2 image of *another* identity is removed too.
  d2 = np.array([[0.1, 0.2]], dtype)
  _close(eval_sysu(d2, [0], [1, 0], [3], [2, 1]), ([1, 1], 1, 1))
  _close(eval_sysu(d2, [0], [1, 0], [6], [2, 1]), ([0, 1], 1 / 2, 1 / 2))
  # RegDB removes nothing.
  _close(eval_regdb(d[:1], [0], g_pids), ([1, 1, 1], (1 + 2 / 3) / 2, 2 / 3))


def test_sysu_cmc_counts_identities_at_first_occurrence():
  # Ranked: pid1, pid1, pid1, pid0 (the true match).
  d = np.array([[0.1, 0.2, 0.3, 0.4]])
  g_pids, g_cams = np.array([1, 1, 1, 0]), np.array([1, 4, 5, 1])
  # SYSU: identity list pid1, pid0 -> rank 2; past 2 identities the curve stays at 1.
  _close(eval_sysu(d, [0], g_pids, [6], g_cams), ([0, 1, 1, 1], 1 / 4, 1 / 4))
  # RegDB: plain CMC, first match at rank 4. AP / INP are not deduplicated in either.
  _close(eval_regdb(d, [0], g_pids), ([0, 0, 0, 1], 1 / 4, 1 / 4))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_ties_keep_gallery_order(dtype):
  d = np.full((1, 3), 5, dtype)
  # Ranked (stable): pid1, pid0, pid0.
  _close(eval_regdb(d, [0], [1, 0, 0]), ([0, 1, 1], (1 / 2 + 2 / 3) / 2, 2 / 3))
  _close(eval_regdb(d, [0], [0, 1, 1]), ([1, 1, 1], 1, 1))
  _close(eval_sysu(d, [0], [1, 0, 0], [6], [1, 1, 1]), ([0, 1, 1], (1 / 2 + 2 / 3) / 2, 2 / 3))
  # A tie inside an otherwise tie-free matrix (one row takes the exact path).
  d = np.array([[0.3, 0.1, 0.2, 0.9], [0.5, 0.5, 0.1, 0.9]], dtype=np.float32)
  # Row 0: match at rank 1; row 1: ranked pid9, pid8 (0.5), pid7 (0.5, later column) -> rank 3.
  _close(eval_regdb(d, [7, 7], [8, 7, 9, 8]),
         ([1 / 2, 1 / 2, 1, 1], (1 + 1 / 3) / 2, (1 + 1 / 3) / 2))


def test_minus_zero_ties_with_zero():
  d = np.array([[0.0, -0.0]], np.float32)
  _close(eval_regdb(d, [0], [1, 0]), ([0, 1], 1 / 2, 1 / 2))
  np.testing.assert_array_equal(stable_argsort_rows(d), [[0, 1]])


def test_queries_without_true_match_are_skipped():
  d = np.array([[0.2, 0.1], [0.1, 0.2], [0.1, 0.2]])
  # Query 1 (pid 5) has no match; query 2 (cam 3) only a cam-2 match.
  got = eval_sysu(d, [0, 5, 1], [0, 1], [6, 6, 3], [1, 2])
  _close(got, ([0, 1], 1 / 2, 1 / 2))
  _close(eval_regdb(d[:2], [0, 5], [0, 1]), ([0, 1], 1 / 2, 1 / 2))
  with pytest.raises(ValueError, match="no query has a true match"):
    eval_regdb(d, [5, 6, 7], [0, 1])
  with pytest.raises(ValueError, match="no query has a true match"):
    eval_sysu(d[:1], [1], [0, 1], [3], [1, 2])


def test_max_rank_larger_than_gallery():
  d = np.array([[0.3, 0.2, 0.1]])
  cmc, _, _ = eval_regdb(d, [0], [0, 1, 2], max_rank=20)
  np.testing.assert_array_equal(cmc, [0, 0, 1])
  cmc, _, _ = eval_sysu(d, [0], [0, 1, 2], [3], [1, 1, 1], max_rank=2)
  np.testing.assert_array_equal(cmc, [0, 0])


def test_stable_argsort_rows_matches_numpy():
  rng = np.random.default_rng(0)
  d = rng.integers(-3, 4, (20, 50)).astype(np.float32) / 2
  d[0, :5] = [np.inf, -np.inf, -0.0, 0.0, np.inf]
  for x in (d, d.astype(np.float64), d * 1e-30):
    np.testing.assert_array_equal(stable_argsort_rows(x), np.argsort(x, axis=1, kind="stable"))


def _random_case(seed):
  rng = np.random.default_rng(seed)
  n_q, n_g = int(rng.integers(1, 12)), int(rng.integers(1, 30))
  n_ids = int(rng.integers(1, 6))
  kind = seed % 4
  if kind == 0:    # continuous: no ties (fast path)
    d = rng.standard_normal((n_q, n_g))
  elif kind == 1:  # few distinct values: many ties (exact path)
    d = rng.integers(0, 4, (n_q, n_g)).astype(float)
  elif kind == 2:  # continuous with tied rows mixed in, and infinities
    d = rng.random((n_q, n_g))
    d[::2] = np.round(d[::2], 1)
    d[rng.random((n_q, n_g)) < 0.05] = np.inf
  else:            # duplicated columns: identical distances for repeated gallery entries
    d = rng.random((n_q, n_g))
    d[:, n_g // 2:] = d[:, :n_g - n_g // 2]
  d = d.astype(np.float32 if seed % 3 else np.float64)
  q_pids = rng.integers(0, n_ids + 1, n_q)  # pid n_ids may be absent from the gallery
  g_pids = rng.integers(0, n_ids, n_g)
  q_cams = rng.choice([3, 6], n_q)
  g_cams = rng.choice([1, 2, 4, 5], n_g)
  max_rank = int(rng.integers(1, 25))
  chunk = int(rng.integers(1, 4 * n_g))  # 1..3 queries per chunk, or all at once
  return d, q_pids, g_pids, q_cams, g_cams, max_rank, chunk


def _run(fn, *args, **kw):
  try:
    return fn(*args, **kw)
  except ValueError as e:
    return str(e)


@pytest.mark.parametrize("seed", range(120))
def test_random_matrices_match_the_loop_oracle(seed):
  d, q_pids, g_pids, q_cams, g_cams, max_rank, chunk = _random_case(seed)
  for fast, oracle, extra in ((eval_sysu, eval_sysu_oracle, (q_cams, g_cams)),
                              (eval_regdb, eval_regdb_oracle, ())):
    got = _run(fast, d, q_pids, g_pids, *extra, max_rank=max_rank, chunk_elements=chunk)
    want = _run(oracle, d, q_pids, g_pids, *extra, max_rank=max_rank)
    if isinstance(want, str):  # no valid query: both must refuse
      assert isinstance(got, str) and "no query has a true match" in got
    else:
      _close(got, want)


def test_vectorized_equals_oracle_on_a_bigger_sysu_like_matrix():
  rng = np.random.default_rng(1)
  q_pids, g_pids = rng.integers(0, 8, 60), np.repeat(np.arange(8), 6)
  q_cams, g_cams = rng.choice([3, 6], 60), np.tile([1, 2, 4, 5, 1, 2], 8)
  d = (rng.random((60, 48)) - 0.4 * (q_pids[:, None] == g_pids)).astype(np.float32)
  for chunk in (48, 1000, 1 << 20):
    _close(eval_sysu(d, q_pids, g_pids, q_cams, g_cams, chunk_elements=chunk),
           eval_sysu_oracle(d, q_pids, g_pids, q_cams, g_cams))
    _close(eval_regdb(d, q_pids, g_pids, chunk_elements=chunk),
           eval_regdb_oracle(d, q_pids, g_pids))


def test_bad_input_names_the_argument():
  d = np.zeros((2, 3))
  p2, p3 = [0, 1], [0, 1, 2]
  c2, c3 = [3, 6], [1, 2, 4]
  with pytest.raises(ValueError, match="distmat must be 2-D"):
    eval_regdb(np.zeros(3), p2, p3)
  with pytest.raises(ValueError, match="q_pids must be 1-D with one entry per query row"):
    eval_regdb(d, p3, p3)
  with pytest.raises(ValueError, match="g_pids must be 1-D with one entry per gallery column"):
    eval_regdb(d, p2, p2)
  with pytest.raises(ValueError, match="q_camids"):
    eval_sysu(d, p2, p3, c3, c3)
  with pytest.raises(ValueError, match="g_camids"):
    eval_sysu(d, p2, p3, c2, c2)
  with pytest.raises(ValueError, match="distmat contains 1 NaN.*query 1, gallery 2"):
    bad = d.copy()
    bad[1, 2] = np.nan
    eval_sysu(bad, p2, p3, c2, c3)
  with pytest.raises(ValueError, match="no query rows"):
    eval_regdb(np.zeros((0, 3)), [], p3)
  with pytest.raises(ValueError, match="no gallery columns"):
    eval_sysu(np.zeros((2, 0)), p2, [], c2, [])
  with pytest.raises(ValueError, match="max_rank"):
    eval_regdb(d, p2, p3, max_rank=0)
  with pytest.raises(ValueError, match="real numbers"):
    eval_regdb(d.astype(complex), p2, p3)
