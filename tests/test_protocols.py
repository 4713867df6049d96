"""SYSU-MM01 / RegDB protocols, `evaluate`, and the result table."""

import json
import os

import numpy as np
import pytest
import scipy.io

from ce2l_jax.metrics import (RESULT_KEYS, Trial, TrialResults, eval_regdb, eval_sysu, evaluate,
                              format_table, pairwise_distances, parse_rand_perm_cam,
                              pool_results, regdb_trial, results_to_json, sysu_gallery,
                              sysu_official_gallery, sysu_queries, sysu_trials)

DATA = os.path.join(os.path.dirname(__file__), "data", "sysu_eval")

# A made-up SYSU test set: images per (identity, camera 1..6).
_COUNTS = {
    11: [3, 12, 5, 0, 10, 4],
    12: [0, 0, 6, 25, 1, 0],
    15: [1, 9, 0, 2, 0, 7],
    20: [14, 0, 2, 0, 0, 3],
}


def _description(counts):
  """pid, camid, files of a test set with `counts[pid][cam - 1]` images, in shuffled order."""
  pid, cam, files = [], [], []
  for p, per_cam in counts.items():
    for c, n in enumerate(per_cam, start=1):
      for i in range(1, n + 1):
        pid.append(p)
        cam.append(c)
        files.append(f"cam{c}/{p:04d}/{i:04d}.jpg")
  order = np.random.default_rng(0).permutation(len(pid))
  return np.array(pid)[order], np.array(cam)[order], np.array(files)[order]


def _group_sizes(pid, cam, idx):
  keys, n = np.unique(np.stack([pid[idx], cam[idx]], 1), axis=0, return_counts=True)
  return {(int(p), int(c)): int(k) for (p, c), k in zip(keys, n)}


def test_sysu_queries_are_all_infrared_images():
  pid, cam, _ = _description(_COUNTS)
  q = sysu_queries(cam)
  np.testing.assert_array_equal(q, np.flatnonzero((cam == 3) | (cam == 6)))
  assert q.size == sum(c[2] + c[5] for c in _COUNTS.values())


@pytest.mark.parametrize("mode,cams", [("all", (1, 2, 4, 5)), ("indoor", (1, 2))])
@pytest.mark.parametrize("shot,k", [("single", 1), ("multi", 10)])
def test_sysu_gallery_counts(mode, cams, shot, k):
  pid, cam, _ = _description(_COUNTS)
  g = sysu_gallery(pid, cam, mode=mode, shot=shot, trial=3, seed=7)
  assert np.all(np.diff(g) > 0)
  want = {(p, c): min(k, per_cam[c - 1]) for p, per_cam in _COUNTS.items() for c in cams
          if per_cam[c - 1]}
  assert _group_sizes(pid, cam, g) == want


def test_sysu_gallery_seeding():
  pid, cam, _ = _description(_COUNTS)
  for shot in ("single", "multi"):
    a = sysu_gallery(pid, cam, shot=shot, trial=2, seed=5)
    np.testing.assert_array_equal(a, sysu_gallery(pid, cam, shot=shot, trial=2, seed=5))
    assert not np.array_equal(a, sysu_gallery(pid, cam, shot=shot, trial=3, seed=5))
    assert not np.array_equal(a, sysu_gallery(pid, cam, shot=shot, trial=2, seed=6))
  # Trial t is seeded by seed + t.
  np.testing.assert_array_equal(sysu_gallery(pid, cam, trial=3, seed=0),
                                sysu_gallery(pid, cam, trial=0, seed=3))
  trials = sysu_trials(pid, cam, mode="all", shot="multi", seed=4)
  assert len(trials) == 10
  assert len({t.gallery.tobytes() for t in trials}) == 10
  for t, tr in enumerate(trials):
    np.testing.assert_array_equal(tr.query, sysu_queries(cam))
    np.testing.assert_array_equal(tr.gallery, sysu_gallery(pid, cam, shot="multi", trial=t,
                                                           seed=4))


def test_sysu_gallery_with_files_ignores_record_order():
  pid, cam, files = _description(_COUNTS)
  perm = np.random.default_rng(9).permutation(pid.size)
  for shot in ("single", "multi"):
    a = sysu_gallery(pid, cam, shot=shot, trial=1, files=files)
    b = sysu_gallery(pid[perm], cam[perm], shot=shot, trial=1, files=files[perm])
    assert sorted(files[a]) == sorted(files[perm][b])
  with pytest.raises(ValueError, match="files must have one name per test image"):
    sysu_gallery(pid, cam, files=files[:3])


def test_sysu_gallery_nesting():
  pid, cam, _ = _description(_COUNTS)
  all_multi = sysu_gallery(pid, cam, mode="all", shot="multi", trial=1)
  all_single = sysu_gallery(pid, cam, mode="all", shot="single", trial=1)
  indoor_single = sysu_gallery(pid, cam, mode="indoor", shot="single", trial=1)
  assert set(all_single) <= set(all_multi)
  np.testing.assert_array_equal(indoor_single, all_single[np.isin(cam[all_single], (1, 2))])


def _fake_rand_perm_cam(counts, n_ids, rng):
  """A loadmat-shaped cell array: per camera, per identity 1..n_ids, a 10 × n permutation."""
  cams = np.empty((6, 1), object)
  for c in range(6):
    cells = np.empty((n_ids, 1), object)
    for p in range(1, n_ids + 1):
      n = counts.get(p, [0] * 6)[c]
      cells[p - 1, 0] = np.stack([rng.permutation(n) + 1 for _ in range(10)]).astype(np.uint8) \
          if n else np.zeros((10, 0), np.uint8)
    cams[c, 0] = cells
  return cams


def test_sysu_official_gallery_on_a_fabricated_rand_perm_cam(tmp_path):
  pid, cam, files = _description(_COUNTS)
  path = tmp_path / "rand_perm_cam.mat"
  scipy.io.savemat(path, {"rand_perm_cam": _fake_rand_perm_cam(_COUNTS, 22,
                                                                 np.random.default_rng(1))})
  loaded = scipy.io.loadmat(path)
  rpc = parse_rand_perm_cam(loaded)
  assert rpc == {} or all(v.shape[0] == 10 for v in rpc.values())
  assert set(rpc) == {(c, p) for p, per_cam in _COUNTS.items() for c in range(1, 7)
                      if per_cam[c - 1]}
  for trial in (0, 9):
    for shot, k in (("single", 1), ("multi", 10)):
      g = sysu_official_gallery(pid, cam, files, rpc, mode="all", shot=shot, trial=trial)
      # Expected: file number = the 1-based index (files are numbered 0001.. per group).
      want = sorted(f"cam{c}/{p:04d}/{i:04d}.jpg" for (c, p), m in rpc.items()
                    if c in (1, 2, 4, 5) for i in m[trial, :k])
      assert sorted(files[g]) == want
      assert np.all(np.diff(g) > 0)
  trials = sysu_trials(pid, cam, mode="indoor", shot="single", sampling="official",
                       files=files, rand_perm_cam=rpc)
  assert len(trials) == 10 and all(set(cam[t.gallery]) <= {1, 2} for t in trials)
  # A test set that is not the dataset the file describes.
  bad = dict(rpc)
  bad[(1, 11)] = bad[(1, 11)][:, :2]
  with pytest.raises(ValueError, match="lists 2 images for camera 1 identity 11, the test set "
                     "has 3"):
    sysu_official_gallery(pid, cam, files, bad)
  del bad[(1, 11)]
  with pytest.raises(ValueError, match="no entry for camera 1 identity 11"):
    sysu_official_gallery(pid, cam, files, bad)
  with pytest.raises(ValueError, match="needs files and rand_perm_cam"):
    sysu_trials(pid, cam, sampling="official")
  with pytest.raises(ValueError, match="trial must be in"):
    sysu_official_gallery(pid, cam, files, rpc, trial=10)


def test_real_rand_perm_cam_gives_the_published_figures():
  rpc = parse_rand_perm_cam(scipy.io.loadmat(os.path.join(DATA, "rand_perm_cam.mat")))
  test_ids = scipy.io.loadmat(os.path.join(DATA, "test_id.mat"))["id"].ravel().astype(int)
  assert test_ids.size == 96
  # The real per-(camera, identity) image counts of the 96 test identities.
  counts = {int(p): [rpc[(c, p)].shape[1] if (c, p) in rpc else 0 for c in range(1, 7)]
            for p in test_ids}
  pid, cam, files = _description(counts)
  assert sysu_queries(cam).size == 3803
  figures = {("all", "single"): 301, ("indoor", "single"): 112,
             ("all", "multi"): 3010, ("indoor", "multi"): 1120}
  for (mode, shot), n in figures.items():
    for trial in (0, 9):
      g = sysu_official_gallery(pid, cam, files, rpc, mode=mode, shot=shot, trial=trial)
      assert g.size == n, (mode, shot, trial)
    assert sysu_gallery(pid, cam, mode=mode, shot=shot, trial=0).size == n
  # Indoor search: 40 test identities have no camera-1/2 image, and camera-3 queries of those
  # seen only by camera 2 lose them too: 1,595 of the 3,803 queries have no true match.
  q = sysu_queries(cam)
  for cams, n_valid in (((1, 2, 4, 5), 3803), ((1, 2), 2208)):
    visible = {(int(p), int(c)) for p, c in zip(pid, cam) if c in cams}
    has_match = [any((int(pid[i]), c) in visible for c in cams if not (cam[i] == 3 and c == 2))
                 for i in q]
    assert sum(has_match) == n_valid
  # First image of identity 6 in camera 1, trial 0, is the one the matrix names.
  g = sysu_official_gallery(pid, cam, files, rpc, mode="indoor", shot="single", trial=0)
  assert f"cam1/0006/{rpc[(1, 6)][0, 0]:04d}.jpg" in set(files[g])


def test_regdb_trial_chooses_by_modality():
  modality = np.array([1, 0, 0, 1, 1, 0])
  q, g = regdb_trial(modality, "visible_to_thermal")
  np.testing.assert_array_equal(q, [1, 2, 5])
  np.testing.assert_array_equal(g, [0, 3, 4])
  q2, g2 = regdb_trial(modality, "thermal_to_visible")
  np.testing.assert_array_equal(q2, g)
  np.testing.assert_array_equal(g2, q)
  with pytest.raises(ValueError, match="direction"):
    regdb_trial(modality, "v2t")
  with pytest.raises(ValueError, match="both must be non-empty"):
    regdb_trial(np.zeros(4, int))


def test_pairwise_distances():
  rng = np.random.default_rng(0)
  q, g = rng.standard_normal((7, 5)), rng.standard_normal((4, 5))
  want = np.sqrt(((q[:, None] - g[None]) ** 2).sum(-1))
  np.testing.assert_allclose(pairwise_distances(q, g, chunk_rows=3), want, atol=1e-9)
  qn = q / np.linalg.norm(q, axis=1, keepdims=True)
  gn = g / np.linalg.norm(g, axis=1, keepdims=True)
  np.testing.assert_allclose(pairwise_distances(q, g, "cosine"), 1 - qn @ gn.T, atol=1e-9)
  out = pairwise_distances(q.astype(np.float32), g.astype(np.float32))
  assert out.dtype == np.float32
  np.testing.assert_allclose(out, want, atol=1e-5)
  with pytest.raises(ValueError, match="metric"):
    pairwise_distances(q, g, "l1")
  with pytest.raises(ValueError, match="differ in dimension"):
    pairwise_distances(q, g[:, :3])
  with pytest.raises(ValueError, match="query features contain NaN"):
    pairwise_distances(np.full((1, 5), np.nan), g)


def _one_hot_features(pid, dim=32, noise=0.0, seed=0):
  rng = np.random.default_rng(seed)
  _, dense = np.unique(pid, return_inverse=True)
  return np.eye(dim, dtype=np.float32)[dense] + noise * rng.standard_normal(
      (pid.size, dim)).astype(np.float32)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_identity_features_score_perfectly(metric):
  pid, cam, _ = _description(_COUNTS)
  feats = _one_hot_features(pid)
  res = evaluate(feats, pid, cam, sysu_trials(pid, cam, shot="multi", num_trials=3),
                 protocol="sysu", metric=metric)
  assert set(res.mean) == set(res.std) == set(res.per_trial) == set(RESULT_KEYS)
  assert all(res.mean[k] == 1 and res.std[k] == 0 for k in RESULT_KEYS)
  modality = np.arange(40) % 2
  r_pid = np.arange(40) // 2
  res = evaluate(_one_hot_features(r_pid, 32), r_pid, None, [regdb_trial(modality)],
                 protocol="regdb", metric=metric)
  assert all(res.mean[k] == 1 for k in RESULT_KEYS) and res.num_trials == 1


def test_evaluate_equals_the_metrics_trial_by_trial():
  pid, cam, _ = _description(_COUNTS)
  feats = _one_hot_features(pid, noise=0.8, seed=3)
  trials = sysu_trials(pid, cam, mode="indoor", shot="single", num_trials=4, seed=2)
  res = evaluate(feats, pid, cam, trials)
  for t, (q, g) in enumerate(trials):
    d = pairwise_distances(feats[q], feats[g])
    cmc, m_ap, m_inp = eval_sysu(d, pid[q], pid[g], cam[q], cam[g])
    assert res.per_trial["rank1"][t] == pytest.approx(cmc[0])
    assert res.per_trial["rank20"][t] == pytest.approx(cmc[-1])  # gallery < 20: last value
    assert res.per_trial["mAP"][t] == pytest.approx(m_ap)
    assert res.per_trial["mINP"][t] == pytest.approx(m_inp)
  assert res.mean["mAP"] == pytest.approx(np.mean(res.per_trial["mAP"]))
  assert res.std["rank1"] == pytest.approx(np.std(res.per_trial["rank1"]))
  assert res.cmc.shape == (20,) and np.all(np.diff(res.cmc) >= 0)
  # RegDB, 2 splits pooled by the caller.
  modality = np.arange(60) % 2
  r_pid = np.arange(60) // 6
  splits = [evaluate(_one_hot_features(r_pid, 16, 1.0, s), r_pid, None,
                     [regdb_trial(modality, "thermal_to_visible")], protocol="regdb")
            for s in range(2)]
  pooled = pool_results(splits)
  assert pooled.num_trials == 2
  assert pooled.mean["rank1"] == pytest.approx((splits[0].mean["rank1"] +
                                                splits[1].mean["rank1"]) / 2)
  q, g = regdb_trial(modality, "thermal_to_visible")
  f0 = _one_hot_features(r_pid, 16, 1.0, 0)
  _, m_ap, _ = eval_regdb(pairwise_distances(f0[q], f0[g]), r_pid[q], r_pid[g])
  assert splits[0].mean["mAP"] == pytest.approx(m_ap)


def test_evaluate_bad_input():
  pid, cam, _ = _description(_COUNTS)
  feats = _one_hot_features(pid)
  trials = sysu_trials(pid, cam, num_trials=1)
  with pytest.raises(ValueError, match="pid must have one entry per feature row"):
    evaluate(feats, pid[:-1], cam, trials)
  with pytest.raises(ValueError, match="camid is required"):
    evaluate(feats, pid, None, trials)
  with pytest.raises(ValueError, match="out of range"):
    evaluate(feats, pid, cam, [Trial(np.array([0]), np.array([pid.size]))])
  with pytest.raises(ValueError, match="max_rank"):
    evaluate(feats, pid, cam, trials, max_rank=10)
  with pytest.raises(ValueError, match="protocol"):
    evaluate(feats, pid, cam, trials, protocol="market")


def _result(seed):
  rng = np.random.default_rng(seed)
  per_trial = {k: rng.random(3) for k in RESULT_KEYS}
  return TrialResults.from_per_trial(per_trial, rng.random((3, 20)))


def test_table_text_markdown_and_json():
  rows = {"baseline": {"SYSU all-search": _result(0), "SYSU indoor-search": _result(1)},
          "CE2L (ours)": {"SYSU all-search": _result(2), "RegDB V→T": _result(3)}}
  text = format_table(rows)
  md = format_table(rows, style="markdown")
  for out in (text, md):
    for name in ("baseline", "CE2L (ours)", "SYSU all-search", "SYSU indoor-search",
                 "RegDB V→T", "r=1", "r=10", "r=20", "mAP", "mINP"):
      assert name in out
    assert "–" in out  # a row without a group
  m, s = rows["baseline"]["SYSU all-search"].mean, rows["baseline"]["SYSU all-search"].std
  assert f"{100 * m['rank1']:.2f} ± {100 * s['rank1']:.2f}" in text
  text_lines = text.splitlines()
  assert len(text_lines) == 5 and len({len(line) for line in text_lines[1:3]}) == 1
  md_lines = md.splitlines()
  assert len(md_lines) == 4 and all(line.count("|") == 17 for line in md_lines)
  loaded = json.loads(results_to_json(rows))
  assert set(loaded) == set(rows)
  got = loaded["CE2L (ours)"]["RegDB V→T"]
  assert set(got) == {"mean", "std", "per_trial", "cmc", "num_trials"}
  assert set(got["mean"]) == set(RESULT_KEYS) and len(got["cmc"]) == 20
  assert format_table(loaded) == text  # the JSON form prints the same table
  with pytest.raises(ValueError, match="style"):
    format_table(rows, style="latex")
