"""k-reciprocal re-ranking (`ce2l_jax.metrics.reranking`) against the paper's equations as loops.

`_paper_rerank` is written from Zhong et al. (CVPR 2017) §3, one equation at a time over Python
sets and dicts (the conventions the module docstring states: squared Euclidean d scaled by its row
maximum, N(p, k) = p's first k + 1 entries, V rescaled to sum 1), so that it is obviously right
and slow; the module is the vectorised form and must agree to float32 rounding.
"""

import math

import numpy as np
import pytest

from ce2l_jax import metrics
from ce2l_jax.metrics import reranking


def _paper_rerank(q, g, k1, k2, lam):
  x = np.concatenate([q, g]).astype(np.float64)
  n, nq = len(x), len(q)
  d = [[float(((x[i] - x[j]) ** 2).sum()) for j in range(n)] for i in range(n)]
  d = [[v / max(row) for v in row] for row in d]

  def ranked(p):  # p's ranking over all images: p first, the others by distance, ties by index
    return [p] + sorted((j for j in range(n) if j != p), key=lambda j: (d[p][j], j))

  def nn(p, k):  # N(p, k)
    return set(ranked(p)[:k + 1])

  def r(p, k):  # Eq. 3
    return {gi for gi in nn(p, k) if p in nn(gi, k)}

  kh = math.floor(k1 / 2 + 0.5)
  v = []
  for p in range(n):
    rp = r(p, k1)
    star = set(rp)
    for qq in rp:  # Eq. 6
      rq = r(qq, kh)
      if len(rp & rq) >= 2 / 3 * len(rq):
        star |= rq
    w = {j: math.exp(-d[p][j]) for j in star}  # Eq. 7
    total = sum(w.values())
    v.append({j: wj / total for j, wj in w.items()})
  v_qe = []
  for p in range(n):  # Eq. 10
    acc = {}
    for gi in ranked(p)[:k2]:
      for j, vj in v[gi].items():
        acc[j] = acc.get(j, 0.0) + vj / k2
    v_qe.append(acc)
  out = np.zeros((nq, n - nq))
  for i in range(nq):
    for b in range(n - nq):
      gi = nq + b
      keys = set(v_qe[i]) | set(v_qe[gi])
      mins = sum(min(v_qe[i].get(j, 0.0), v_qe[gi].get(j, 0.0)) for j in keys)
      maxs = sum(max(v_qe[i].get(j, 0.0), v_qe[gi].get(j, 0.0)) for j in keys)
      out[i, b] = (1 - lam) * (1 - mins / maxs) + lam * d[i][gi]  # Eqs. 11, 12
  return out


@pytest.mark.parametrize("nq,ng,dim,k1,k2,lam,seed", [
    (12, 30, 8, 20, 6, 0.3, 0),   # the paper's defaults (k1 close to N)
    (15, 25, 4, 6, 3, 0.3, 1),
    (20, 20, 16, 8, 1, 0.0, 2),   # no query expansion, pure Jaccard
    (7, 40, 3, 5, 4, 1.0, 3),     # λ = 1: the scaled original distance
    (10, 30, 6, 7, 2, 0.5, 7),    # odd k1: ½k1 rounds up to 4
])
def test_matches_paper_loops(nq, ng, dim, k1, k2, lam, seed):
  rng = np.random.default_rng(seed)
  # Clustered features so that reciprocal sets and expansions are non-trivial.
  centres = rng.normal(size=(5, dim))
  q = centres[rng.integers(0, 5, nq)] + 0.6 * rng.normal(size=(nq, dim))
  g = centres[rng.integers(0, 5, ng)] + 0.6 * rng.normal(size=(ng, dim))
  q, g = q.astype(np.float32), g.astype(np.float32)
  got = reranking.rerank(q, g, k1=k1, k2=k2, lambda_value=lam)
  want = _paper_rerank(q, g, k1, k2, lam)
  assert got.shape == (nq, ng)
  np.testing.assert_allclose(got, want, atol=2e-5)


def test_duplicates_and_ties_match_loops():
  """Identical images (distance ties, also with the image itself): the image first, then index
  order; more duplicates than k1 (an image's own list full of its copies) stay finite."""
  rng = np.random.default_rng(4)
  base = rng.normal(size=(6, 5)).astype(np.float32)
  q = base[[0, 1, 1, 2]]
  g = base[[0, 0, 1, 2, 3, 4, 5, 5, 3, 2]]
  got = reranking.rerank(q, g, k1=4, k2=2)
  np.testing.assert_allclose(got, _paper_rerank(q, g, 4, 2, 0.3), atol=2e-5)
  q, g = base[[0, 0, 1]], base[[0, 0, 0, 0, 0, 1, 1, 2]]
  got = reranking.rerank(q, g, k1=2, k2=2)
  assert np.isfinite(got).all()
  np.testing.assert_allclose(got, _paper_rerank(q, g, 2, 2, 0.3), atol=2e-5)


def test_chunking_does_not_change_the_answer():
  rng = np.random.default_rng(5)
  x = rng.normal(size=(60, 8)).astype(np.float32)
  d = reranking.squared_distances(x)
  a = reranking.k_reciprocal_distances(d, 20, k1=10, k2=4)
  b = reranking.k_reciprocal_distances(d, 20, k1=10, k2=4, chunk_rows=7, chunk_elements=50)
  np.testing.assert_array_equal(a, b)


def test_rerank_helps_a_one_hot_model_with_noise():
  """Features near their identity's centre: re-ranking keeps rank-1 perfect and mAP at 1."""
  rng = np.random.default_rng(6)
  pids = np.repeat(np.arange(10), 6)
  x = np.eye(10, dtype=np.float32)[pids] + 0.05 * rng.normal(size=(60, 10)).astype(np.float32)
  q, g = np.arange(0, 60, 3), np.setdiff1d(np.arange(60), np.arange(0, 60, 3))
  res = metrics.evaluate(x, pids, None, [metrics.Trial(q, g)], protocol="regdb",
                         rerank=reranking.RerankParams(k1=5, k2=2))
  assert res.mean["rank1"] == 1.0 and res.mean["mAP"] == pytest.approx(1.0)


def test_bad_arguments_are_one_line_errors():
  d = reranking.squared_distances(np.eye(5, dtype=np.float32))
  with pytest.raises(ValueError, match="num_query"):
    reranking.k_reciprocal_distances(d, 5)
  with pytest.raises(ValueError, match="k1 and k2"):
    reranking.k_reciprocal_distances(d, 2, k1=0)
  with pytest.raises(ValueError, match="lambda_value"):
    reranking.k_reciprocal_distances(d, 2, lambda_value=1.5)
  with pytest.raises(ValueError, match="square"):
    reranking.k_reciprocal_distances(d[:4], 2)


def test_rerank_row_in_the_results_table(tmp_path_factory, tmp_path):
  """`--config.eval.rerank=true`: the evaluate stage adds '<row> + re-ranking' to results.md and
  results.json, scored on the same features with re-ranked distances."""
  import json
  import shutil
  import subprocess
  import sys
  from tests.trained_workdir import ROOT, clean_env, trained_workdir
  workdir, data_dir = trained_workdir(tmp_path_factory)
  w = tmp_path / "w"
  shutil.copytree(workdir, w)
  cmd = [sys.executable, "run.py", "--config=configs/smoke.py", f"--config.data.data_dir={data_dir}",
         "--config.cyclegan.enabled=false", "--config.reid.num_steps=2", "--config.eval.rerank=true",
         "--config.eval.rerank_k1=4", "--config.eval.rerank_k2=2", "--stages=evaluate", "--force",
         f"--workdir={w}"]
  p = subprocess.run(cmd, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=600)
  assert p.returncode == 0, p.stderr[-3000:]
  with open(w / "results.json") as f:
    rows = json.load(f)
  row = "no conversion (resnet_tiny)"
  assert set(rows) == {row, f"{row} + re-ranking", "raw pixels"}
  assert set(rows[f"{row} + re-ranking"]) == set(rows[row])  # every setting
  assert f"| {row} + re-ranking |" in (w / "results.md").read_text()
