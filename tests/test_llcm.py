"""LLCM: the TFDS builder on dummy data in the released layout, its bad-input checks, the
released evaluation protocol (draws and metrics) against loops written from its rules."""

import collections
import os
import pathlib
import random
import shutil

import numpy as np
import pytest

from ce2l_jax import metrics
from tests import fixtures_real as fx
from tfds_builders.llcm import llcm_dataset_builder as llcm_lib
from tfds_builders.llcm.llcm_dataset_builder import Llcm
from tfds_builders.manual_check import ManualDirError

DUMMY = pathlib.Path(llcm_lib.__file__).parent / "dummy_data"
# What the dummy tree holds (tfds_builders/llcm/dummy_data/LLCM).
EXPECTED = {"train": {"visible": 6, "infrared": 6, "pids": [1, 2, 3]},
            "test": {"visible": 8, "infrared": 8, "pids": [4, 5, 6]}}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  data = tmp_path_factory.mktemp("llcm") / "data"
  fx.build(Llcm, DUMMY, data)
  return data


@pytest.mark.parametrize("split", ["train", "test"])
def test_splits_and_records(built, split):
  records = fx.read_split("llcm", built, split)
  want = EXPECTED[split]
  assert collections.Counter(int(r["modality"]) for r in records) == {0: want["visible"],
                                                                     1: want["infrared"]}
  assert sorted({int(r["pid"]) for r in records}) == want["pids"]  # identity 7: in no list
  for r in records:
    file, cam, pid, mod = r["file"].decode(), int(r["camid"]), int(r["pid"]), int(r["modality"])
    assert file.startswith(f"{split}_{'nir' if mod else 'vis'}/cam{cam}/{pid:04d}/")
    assert (DUMMY / "LLCM" / file).is_file()
    assert r["image"].dtype == np.uint8 and r["image"].shape[2] == 3
    if mod:  # single-channel JPEG on disk: three equal channels
      assert (r["image"][..., 0] == r["image"][..., 2]).all()


def _released_draw(root, test_ids, modality, trial):
  """The authors' `process_gallery_llcm` loop, on the folder tree (random.seed(trial))."""
  cams = ([f"test_vis/cam{c}" for c in range(1, 10)] if modality == 0 else
          [f"test_nir/cam{c}" for c in (1, 2, 4, 5, 6, 7, 8, 9)])
  random.seed(trial)
  out = []
  for pid in sorted("%04d" % x for x in test_ids):
    for cam in cams:
      d = os.path.join(root, cam, pid)
      if os.path.isdir(d):
        out.append(os.path.relpath(random.choice(sorted(os.path.join(d, f) for f in os.listdir(d))), root))
  return sorted(out)


def test_draws_replay_the_released_code(built):
  records = fx.read_split("llcm", built, "test")
  pid = np.array([int(r["pid"]) for r in records])
  cam = np.array([int(r["camid"]) for r in records])
  mod = np.array([int(r["modality"]) for r in records])
  files = np.array([r["file"].decode() for r in records])
  for trial in range(10):
    for m in (0, 1):
      got = metrics.llcm_gallery(pid, cam, mod, files, gallery_modality=m, trial=trial)
      assert sorted(files[got]) == _released_draw(str(DUMMY / "LLCM"), [4, 5, 6], m, trial)
  # Over 10 trials the draws differ (groups with 2 images are drawn both ways).
  draws = {tuple(metrics.llcm_gallery(pid, cam, mod, files, gallery_modality=0, trial=t))
           for t in range(10)}
  assert len(draws) > 1


def _eval_llcm_loop(d, q_pids, g_pids, q_cams, g_cams, max_rank=20):
  """One query at a time: stable ranking, same-identity-same-camera images removed, AP / INP
  on the rest, CMC rank over the identities' first occurrences."""
  ranks, aps, inps = [], [], []
  for i in range(d.shape[0]):
    order = [j for j in np.argsort(d[i], kind="stable")
             if not (g_pids[j] == q_pids[i] and g_cams[j] == q_cams[i])]
    hits = [g_pids[j] == q_pids[i] for j in order]
    if not any(hits):
      continue
    found, prec = 0, []
    for r, h in enumerate(hits, 1):
      if h:
        found += 1
        prec.append(found / r)
        last = r
    aps.append(np.mean(prec))
    inps.append(found / last)
    seen = []
    for j in order:
      if g_pids[j] not in seen:
        seen.append(g_pids[j])
    ranks.append(seen.index(q_pids[i]) + 1)
  n = min(max_rank, d.shape[1])
  cmc = np.array([np.mean([r <= k for r in ranks]) for k in range(1, n + 1)])
  return cmc, np.mean(aps), np.mean(inps)


@pytest.mark.parametrize("seed", range(4))
def test_eval_llcm_matches_loops(seed):
  rng = np.random.default_rng(seed)
  nq, ng = 30, 45
  q_pids, g_pids = rng.integers(0, 8, nq), rng.integers(0, 8, ng)
  q_cams, g_cams = rng.integers(1, 4, nq), rng.integers(1, 4, ng)
  d = rng.integers(0, 6, (nq, ng)).astype(np.float32)  # many ties
  got = metrics.eval_llcm(d, q_pids, g_pids, q_cams, g_cams, chunk_elements=200)
  want = _eval_llcm_loop(d, q_pids, g_pids, q_cams, g_cams)
  np.testing.assert_allclose(got[0], want[0], atol=1e-12)
  assert got[1] == pytest.approx(want[1], abs=1e-12) and got[2] == pytest.approx(want[2], abs=1e-12)


def test_both_directions_evaluate_on_the_fixture(built):
  records = fx.read_split("llcm", built, "test")
  pid = np.array([int(r["pid"]) for r in records])
  cam = np.array([int(r["camid"]) for r in records])
  mod = np.array([int(r["modality"]) for r in records])
  files = np.array([r["file"].decode() for r in records])
  onehot = np.eye(10, dtype=np.float32)[pid]
  for direction in metrics.LLCM_DIRECTIONS:
    trials = metrics.llcm_trials(pid, cam, mod, files, direction)
    assert len(trials) == 10
    q_mod = 1  # both directions: infrared rows rank visible ones (the released scoring)
    for t in trials:
      assert (mod[t.query] == q_mod).all() and (mod[t.gallery] == 1 - q_mod).all()
    if direction == "ir_to_vis":
      assert len(trials[0].query) == 8 and len(trials[0].gallery) == 6  # one per (id, camera)
    else:
      assert len(trials[0].query) == 5 and len(trials[0].gallery) == 8
    res = metrics.evaluate(onehot, pid, cam, trials, protocol="llcm")
    assert res.mean["rank1"] == 1.0 and res.mean["mAP"] == 1.0 and res.num_trials == 10
    noisy = onehot + np.random.default_rng(0).normal(0, 2, onehot.shape).astype(np.float32)
    res = metrics.evaluate(noisy, pid, cam, trials, protocol="llcm")
    assert 0 < res.mean["mAP"] <= 1


def _copy(tmp_path):
  shutil.copytree(DUMMY, tmp_path / "manual")
  return tmp_path / "manual" / "LLCM"


BAD = [  # (case, break the copy, expected message)
    ("no_index", lambda r: (r / "idx" / "train_nir.txt").unlink(),
     r"LLCM/idx/train_nir.txt is missing; expected one line per image"),
    ("missing_file", lambda r: (r / "train_vis" / "cam3" / "0002" / "0002_c03_vis_0001.jpg").unlink(),
     r"train_vis.txt: 1 bad line.*train_vis/cam3/0002/0002_c03_vis_0001.jpg does not exist"),
    ("bad_line", lambda r: (r / "idx" / "train_vis.txt").write_text("train_vis/cam1/0001/x.jpg\n"),
     r"train_vis.txt: 1 bad line.*line 1: 'train_vis/cam1/0001/x.jpg' is not"),
    ("overlap", lambda r: (r / "idx" / "test_id.txt").write_text("3,4,5,6\n"),
     r"identities \[3\] \(1 in all\) are in both train .* and test"),
    ("no_infrared", lambda r: shutil.rmtree(r / "test_nir" / "cam8" / "0006"),
     r"1 test identities .* lack the images of a modality.*identity 0006: no image in .*test_nir"),
    ("unreadable", lambda r: (r / "test_vis" / "cam3" / "0005" / "0005_c03_vis_0000.jpg").write_bytes(b"xx"),
     r"1 unreadable image.*test_vis/cam3/0005/0005_c03_vis_0000.jpg: UnidentifiedImageError"),
    ("no_test_folder", lambda r: shutil.rmtree(r / "test_nir"), r"missing:.*LLCM/test_nir"),
]


@pytest.mark.parametrize("break_fn,message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_reported_before_anything_is_written(tmp_path, break_fn, message):
  root = _copy(tmp_path)
  break_fn(root)
  with pytest.raises(ManualDirError, match=f"(?s){message}"):
    fx.build(Llcm, tmp_path / "manual", tmp_path / "data")
  assert fx.files_under(tmp_path / "data") == []


def test_release_sized_lists_must_hold_the_release_image_count(tmp_path, monkeypatch):
  """With the release's identity counts (here patched to the dummy's 3 + 3), a different total
  image count (a partly extracted archive) is refused."""
  root = _copy(tmp_path)
  monkeypatch.setattr(llcm_lib, "RELEASE_IDENTITIES", {"train": 3, "test": 3})
  monkeypatch.setattr(llcm_lib, "RELEASE_IMAGES", 28)  # the dummy holds 12 + 16
  fx.build(Llcm, tmp_path / "manual", tmp_path / "ok")
  (root / "test_vis" / "cam1" / "0004" / "0004_c01_vis_0001.jpg").unlink()
  with pytest.raises(ManualDirError, match=r"12 training \+ 15 test images = 27; the release has 28"):
    fx.build(Llcm, tmp_path / "manual", tmp_path / "data")
  assert fx.files_under(tmp_path / "data") == []


def test_evaluator_runs_both_directions_on_the_built_split(built):
  """The run's evaluation path (evaluate.open_test_set → Evaluator) on the built dataset: an
  identity-one-hot model scores 1, with and without re-ranking."""
  import ml_collections
  from ce2l_jax import evaluate as ev
  config = ml_collections.ConfigDict({"data": {"name": "llcm", "data_dir": str(built)},
                                      "eval": ev.default_config()})
  test = ev.open_test_set(config)
  assert test.protocol == "llcm" and test.files is not None
  evaluator = ev.Evaluator(lambda v, x, m: x, test, config.eval, image_size=(16, 8), batch_size=8)
  evaluator.features = lambda _: np.eye(10, dtype=np.float32)[test.pid]
  for rerank in (None, ev.rerank_params(config.eval)._replace(k1=3, k2=2)):
    res = evaluator.run({}, rerank=rerank)
    assert set(res) == set(metrics.LLCM_DIRECTIONS) and all(r.num_trials == 10 for r in res.values())
    assert all(r.mean["rank1"] == 1.0 and r.mean["mAP"] == pytest.approx(1.0) for r in res.values())


def test_config_file_selects_the_llcm_protocol():
  from ce2l_jax import config_check
  from ce2l_jax import evaluate as ev
  root = pathlib.Path(__file__).resolve().parents[1]
  config = config_check.prepare_config(config_check.load_config_file(str(root / "configs" / "llcm.py")))
  assert config.data.name == "llcm" and config.data.protocol == "llcm"
  assert ev.protocol_for(config.data.name, config.eval.protocol) == "llcm"
  assert config_check.trials_of(config) == [0]  # one run, 10 galleries per direction
  dry = config_check.prepare_config(config_check.load_config_file(str(root / "configs" / "llcm.py") + ":runlocal"))
  assert dry.eval.num_trials == 1
