"""The evaluator: an oracle embedding scores rank1 = mAP = 1 through the whole path (eval stream,
padding, per-modality streams, flip, SYSU and RegDB protocols); official galleries; NaN
features refused; the raw-pixel baseline equals its numpy twin. (The evaluate stage end to end
is in tests/test_run.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ce2l_jax import evaluate as ev
from ce2l_jax import metrics, parallel
from ce2l_jax.data import sources, synthetic

H, W = 16, 8
NUM_IDS = 12


def _image(pid: int, modality: int, rng) -> np.ndarray:
  """Channel 0 encodes the identity, channel 1 the modality, channel 2 is noise."""
  img = np.empty((H, W, 3), np.uint8)
  img[..., 0] = 10 * pid
  img[..., 1] = 200 * modality
  img[..., 2] = rng.integers(0, 256, (H, W))
  return img


def oracle_predict(variables, images, modality):
  """Embedding = one-hot of the pid read from the image, but only through the right stream: an
  image fed to the other modality's stream gets a wrong (shifted) identity."""
  del variables
  pid = jnp.round(images[:, 0, 0, 0].astype(jnp.float32) / 10).astype(jnp.int32)
  img_mod = (images[:, 0, 0, 1] > 100).astype(jnp.int32)
  pid = jnp.where(img_mod == modality, pid, pid + 1)
  return jax.nn.one_hot(pid, NUM_IDS + 2)


def sysu_like(n_per_group=3, seed=0):
  """Identities 1..NUM_IDS, every one in every camera 1–6 (3, 6 infrared), mixed order."""
  rng = np.random.default_rng(seed)
  recs = []
  for pid in range(1, NUM_IDS + 1):
    for cam in (1, 2, 3, 4, 5, 6):
      mod = int(cam in (3, 6))
      for j in range(n_per_group):
        recs.append(dict(image=_image(pid, mod, rng), pid=pid, camid=cam, modality=mod,
                         file=f"cam{cam}/{pid:04d}/{j:04d}.jpg"))
  order = rng.permutation(len(recs))
  return sources.InMemorySource([recs[i] for i in order])


def regdb_like(seed=1):
  rng = np.random.default_rng(seed)
  recs = [dict(image=_image(pid, mod, rng), pid=pid, camid=mod + 1, modality=mod, file=f"{pid}_{mod}_{j}")
          for pid in range(1, NUM_IDS + 1) for mod in (0, 1) for j in range(2)]
  return sources.InMemorySource([recs[i] for i in rng.permutation(len(recs))])


def eval_cfg(**kw):
  c = ev.default_config()
  c.num_trials = 3
  c.update(kw)
  return c


def _check_perfect(results, settings):
  assert sorted(results) == sorted(settings)
  for name, r in results.items():
    for k in metrics.RESULT_KEYS:
      assert r.mean[k] == pytest.approx(1.0), (name, k, r.mean[k])
      assert r.std[k] == pytest.approx(0.0)


@pytest.mark.parametrize("flip", [False, True])
def test_oracle_scores_one_on_sysu_like(flip):
  ts = ev.make_test_set(sysu_like(), "sysu")
  assert ts.rand_perm_cam is None  # no official draws: random galleries
  mesh = parallel.make_mesh()
  evaluator = ev.Evaluator(oracle_predict, ts, eval_cfg(flip=flip), image_size=(H, W), batch_size=16,
                           mesh=mesh)
  results = evaluator.run({})
  _check_perfect(results, ev.SYSU_SETTINGS)
  assert all(r.num_trials == 3 for r in results.values())
  feats = evaluator.features({})
  np.testing.assert_array_equal(np.argmax(feats, 1), ts.pid)  # every row, in source order
  periodic = evaluator.run_periodic({})
  assert periodic["all_single/rank1"] == 1.0 and periodic["all_single/mAP"] == 1.0


def test_oracle_scores_one_on_regdb_like():
  ts = ev.make_test_set(regdb_like(), ev.protocol_for("regdb/trial1"))
  assert ts.protocol == "regdb"
  evaluator = ev.Evaluator(oracle_predict, ts, eval_cfg(), image_size=(H, W), batch_size=20)
  _check_perfect(evaluator.run({}), ("visible_to_thermal", "thermal_to_visible"))


def test_wrong_stream_is_caught():
  """Feeding every image to the visible stream breaks the oracle: routing by modality matters."""
  ts = ev.make_test_set(regdb_like(), "regdb")
  wrong = lambda v, images, modality: oracle_predict(v, images, 0)
  res = ev.Evaluator(wrong, ts, eval_cfg(), image_size=(H, W), batch_size=20).run({})
  assert res["visible_to_thermal"].mean["rank1"] == 0.0


def test_official_galleries_from_rand_perm_cam():
  src = sysu_like(n_per_group=3)
  labels = src.labels()
  rng = np.random.default_rng(5)
  # MATLAB-like cell: 6 cameras × NUM_IDS identities, each a 10×3 matrix of 1-based indices.
  cells = np.empty((6, 1), object)
  perms = {}
  for cam in range(1, 7):
    ids = np.empty((NUM_IDS, 1), object)
    for pid in range(1, NUM_IDS + 1):
      perms[cam, pid] = np.stack([rng.permutation(3) + 1 for _ in range(10)])
      ids[pid - 1, 0] = perms[cam, pid]
    cells[cam - 1, 0] = ids
  ts = ev.make_test_set(src, "sysu", sampling="auto", rand_perm_cam={"rand_perm_cam": cells})
  assert ts.rand_perm_cam is not None and ts.files is not None
  trials = ev.make_trials(ts, eval_cfg(num_trials=2))
  gallery = trials["all_single"][1].gallery  # trial 1
  files = ts.files
  expected = []
  for cam in (1, 2, 4, 5):
    for pid in range(1, NUM_IDS + 1):
      group = np.flatnonzero((labels.pid == pid) & (labels.camid == cam))
      group = group[np.argsort(files[group])]
      expected.append(group[perms[cam, pid][1, 0] - 1])
  np.testing.assert_array_equal(gallery, expected)  # official order: camera, identity
  res = ev.Evaluator(oracle_predict, ts, eval_cfg(num_trials=2), image_size=(H, W), batch_size=8).run({})
  _check_perfect(res, ev.SYSU_SETTINGS)


def test_non_finite_features_raise():
  ts = ev.make_test_set(regdb_like(), "regdb")
  nan = lambda v, images, modality: oracle_predict(v, images, modality) * jnp.nan
  with pytest.raises(ev.NonFiniteFeaturesError, match="NaN/Inf features"):
    ev.Evaluator(nan, ts, eval_cfg(), image_size=(H, W), batch_size=20).run({})


def test_raw_pixel_baseline_matches_numpy_twin():
  images = np.random.default_rng(0).integers(0, 256, (5, 64, 32, 3), dtype=np.uint8)
  ours = np.asarray(ev.raw_pixel_predict_fn((32, 16))({}, jnp.asarray(images), 0))
  np.testing.assert_allclose(ours, synthetic.raw_pixel_features(images, (32, 16)), atol=1e-5)
  odd = np.asarray(ev.raw_pixel_predict_fn((7, 5))({}, jnp.asarray(images), 1))
  assert odd.shape == (5, 35)
  np.testing.assert_allclose(np.linalg.norm(odd, axis=1), 1.0, atol=1e-4)


def test_ties_break_in_the_official_order():
  """Binary features tie across identities (identity mod 3): which tied image ranks first is
  decided by the gallery order. The evaluator must give the metrics of the gallery listed as the
  official SYSU-MM01 description lists it (camera, identity, image) — computed here by the loop
  oracle on an explicitly sorted gallery — and not those of the records' (shuffled) order."""
  from tests.metric_oracles import eval_sysu_oracle
  src = sysu_like(n_per_group=2, seed=3)
  ts = ev.make_test_set(src, "sysu")
  assert ts.names is not None and ts.rand_perm_cam is None

  def tied(variables, images, modality):
    pid = jnp.round(images[:, 0, 0, 0].astype(jnp.float32) / 10).astype(jnp.int32)
    return jax.nn.one_hot(pid % 3, 3)

  cfg = eval_cfg(num_trials=2)
  evaluator = ev.Evaluator(tied, ts, cfg, image_size=(H, W), batch_size=16)
  results = evaluator.run({})
  feats = evaluator.features({})
  files = [str(f) for f in ts.names]
  differs = False
  for name, trials in evaluator.trials().items():
    for t, trial in enumerate(trials):
      q = trial.query
      official = sorted(trial.gallery, key=lambda i: (ts.camid[i], ts.pid[i], files[i]))
      np.testing.assert_array_equal(trial.gallery, official)
      def oracle(g):
        g = np.asarray(g)
        d = metrics.pairwise_distances(feats[q], feats[g], "euclidean")
        return eval_sysu_oracle(d, ts.pid[q], ts.pid[g], ts.camid[q], ts.camid[g], 20)
      cmc, m_ap, _ = oracle(official)
      got = results[name].per_trial
      assert got["rank1"][t] == pytest.approx(cmc[0]), (name, t)
      assert got["rank5"][t] == pytest.approx(cmc[4]), (name, t)
      assert got["mAP"][t] == pytest.approx(m_ap), (name, t)
      cmc_s, m_ap_s, _ = oracle(np.sort(trial.gallery))  # the records' order
      differs |= not (np.allclose(cmc_s, cmc) and np.isclose(m_ap_s, m_ap))
  assert differs  # the test has teeth: on these ties the records' order gives other numbers
