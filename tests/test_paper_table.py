"""The comparison table: cells pooled over seeds and galleries, 'not run' / 'failed' rows, the
paper's figures beside ours, the files it writes; the hand-crafted path end to end on a tiny
synthetic dataset."""

import json
import os

import numpy as np
import pytest

from ce2l_jax import paper_table as pt
from ce2l_jax.metrics.protocols import RESULT_KEYS, TrialResults


def _result(values):
  """A results.json entry of trials whose every metric equals `values[t]`."""
  per_trial = {k: list(values) for k in RESULT_KEYS}
  return TrialResults.from_per_trial(per_trial, [np.linspace(0.1, 1, 20)] * len(values)).to_dict()


def _write_run(root, dataset, config, seed, rows):
  wdir = pt.run_dir(root, dataset, config, seed)
  os.makedirs(wdir, exist_ok=True)
  with open(os.path.join(wdir, "results.json"), "w") as f:
    json.dump(rows, f)


def test_cells_pool_seeds_and_galleries_and_show_the_paper(tmp_path):
  root = str(tmp_path)
  sysu, regdb = pt.SYNTHETIC["SYSU-MM01"], pt.SYNTHETIC["RegDB"]
  _write_run(root, sysu, "hog", 0, {"HOG": {"all_single": _result([0.1, 0.3])},
                                    "HOG + XQDA": {"all_single": _result([0.5])},
                                    "raw pixels": {"all_single": _result([0.02])}})
  _write_run(root, sysu, "hog", 1, {"HOG": {"all_single": _result([0.2])}})
  _write_run(root, regdb, "hog", 0, {"HOG": {"visible_to_thermal": _result([0.4]),
                                             "thermal_to_visible": _result([0.9])}})
  # A deep row's run: its method row is the first that is not raw pixels.
  _write_run(root, sysu, "ce2l", 0, {"CE²L": {"all_single": _result([0.25])},
                                     "raw pixels": {"all_single": _result([0.0])}})
  with open(os.path.join(root, "run_times.json"), "w") as f:
    json.dump({f"{regdb}/lomo/seed0": {"seconds": 3.0, "returncode": 1}}, f)
  table = pt.collect(root, pt.SYNTHETIC, seeds=[0, 1])
  hog = table["HOG"]["SYSU-MM01"]
  assert hog["status"] == "ok" and hog["num_trials"] == 3 and hog["seeds"] == [0, 1]
  assert hog["mean"]["rank1"] == pytest.approx(20.0)
  assert hog["std"]["rank1"] == pytest.approx(100 * np.std([0.1, 0.3, 0.2]))
  assert hog["paper"]["rank1"] == 2.76
  assert table["HOG"]["RegDB"]["mean"]["mAP"] == pytest.approx(40.0)  # visible→thermal
  assert table["HOG + XQDA (ours)"]["SYSU-MM01"]["mean"]["rank1"] == pytest.approx(50.0)
  assert table["raw pixels"]["SYSU-MM01"]["mean"]["rank1"] == pytest.approx(2.0)
  assert table["CE²L"]["SYSU-MM01"]["mean"]["rank1"] == pytest.approx(25.0)
  assert table["LOMO"]["RegDB"]["status"] == pt.FAILED
  assert table["TONE"]["SYSU-MM01"]["status"] == pt.NOT_RUN
  assert set(table) == {r.name for r in pt.ROWS} and len(pt.PAPER_ROWS) == 12
  md = pt.format_markdown(table)
  lines = md.splitlines()
  assert lines[0].startswith("| Method | RegDB: r1 |") and "SYSU-MM01: mAP" in lines[0]
  assert len(lines) == 2 + len(pt.ROWS)
  hog_line = next(s for s in lines if s.startswith("| HOG |"))
  assert "20.00 ± 8.16 (2.76)" in hog_line and "40.00 ± 0.00 (13.49)" in hog_line
  assert "| TONE | not run (16.87)" in md


def test_main_collects_and_writes_the_table(tmp_path, capsys):
  root = str(tmp_path)
  _write_run(root, pt.SYNTHETIC["SYSU-MM01"], "lomo", 0,
             {"LOMO": {"all_single": _result([0.05])}})
  assert pt.main([f"--root={root}"]) == 0
  out = capsys.readouterr().out
  assert "| LOMO | not run (0.85)" in out and "5.00 ± 0.00 (1.75)" in out
  saved = json.load(open(os.path.join(root, "paper_table.json")))
  assert saved["rows"]["LOMO"]["SYSU-MM01"]["status"] == "ok"
  assert open(os.path.join(root, "paper_table.md")).read().count("\n") == 2 + 2 + len(pt.ROWS)
  assert pt.main([f"--root={root}", "--rows=lomo,nope"]) == 2
  assert "unknown nope" in capsys.readouterr().err


def test_run_command_and_missing_configs(tmp_path):
  cmd = pt.run_command("hog", "synthetic_sysu", 2, "/w", runlocal=True)
  assert cmd[2:] == ["--config=configs/hog.py:synthetic_sysu,runlocal", "--config.seed=2",
                     "--workdir=/w"]
  cmd = pt.run_command("tone", "synthetic_regdb", 0, "/w", overrides=["--x=1"], reduced=True)
  assert cmd[2:] == ["--config=configs/tone.py:synthetic_regdb,reduced", "--config.seed=0",
                     "--workdir=/w", "--x=1"]
  # The reduced spec loads: the twin's short schedule, the RegDB twin's first trial only.
  from ce2l_jax.config_check import load_config_file
  c = load_config_file("configs/tone.py:synthetic_regdb,reduced")
  assert c.reid.num_steps == 750 and tuple(c.data.trials) == (1,) and c.init == ""
  assert pt.main([f"--root={tmp_path}", "--reduced", "--real", "--run"]) == 2
  messages = []
  made = pt.run_missing(str(tmp_path), {"SYSU-MM01": "synthetic_sysu"}, ["no_such_row"], [0],
                        log=messages.append)
  assert made == {} and "configs/no_such_row.py does not exist yet" in messages[0]


@pytest.fixture(scope="module")
def tiny_data_dir(tmp_path_factory):
  from ce2l_jax import datasets
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  datasets.build_synthetic("tiny", data_dir)
  return data_dir


def _handcrafted_config(data_dir, feature="hog", metrics=("euclidean", "xqda", "gsm")):
  from configs import base
  c = base.get_config()
  c.data.name, c.data.data_dir = "synthetic_vireid/tiny", data_dir
  c.input.image_size, c.input.eval_batch_size = (32, 16), 8
  c.eval.update(dict(num_trials=2, sysu_modes=("all",), sysu_shots=("single",)))
  c.handcrafted.update(dict(feature=feature, metrics=tuple(metrics)))
  c.handcrafted.feature_kwargs = {"cell": (4, 4)} if feature == "hog" else {}
  c.handcrafted.gsm.update(dict(steps=5, pca_dims=4, batch=16))
  c.name = "HOG"
  return c


def test_handcrafted_fit_evaluate_and_cache(tiny_data_dir, tmp_path):
  from ce2l_jax.trainers import handcrafted
  c = _handcrafted_config(tiny_data_dir)
  info = handcrafted.fit(c, str(tmp_path))
  assert info["learned"] == ["xqda", "gsm"] and os.path.exists(
      os.path.join(tmp_path, "model.npz"))
  rows = handcrafted.evaluate_rows(c, str(tmp_path))
  assert list(rows) == ["HOG", "HOG + XQDA", "HOG + GSM"]
  for by_setting in rows.values():
    assert by_setting["all_single"].num_trials == 2
  # The descriptor cache gives the same descriptors and the same results.
  c.handcrafted.cache_dir = str(tmp_path / "cache")
  cached = handcrafted.evaluate_rows(c, str(tmp_path))
  assert len(os.listdir(tmp_path / "cache")) == 1
  again = handcrafted.evaluate_rows(c, str(tmp_path))
  for name in rows:
    assert cached[name]["all_single"].mean == rows[name]["all_single"].mean
    assert again[name]["all_single"].mean == rows[name]["all_single"].mean


@pytest.mark.parametrize("row", ["lomo", "mlbp", "hog", "gsm"])
def test_handcrafted_configs_load_for_every_dataset(row):
  from ce2l_jax.config_check import load_config_file
  from configs import rows
  for dataset in rows.DATASETS:
    c = load_config_file(f"configs/{row}.py:{dataset}")
    assert c.reid.trainer == "handcrafted" and not c.cyclegan.enabled
    assert c.handcrafted.feature == ("lomo" if row == "gsm" else row)
    assert c.handcrafted.metrics == (("gsm",) if row == "gsm" else ("euclidean", "xqda"))
    assert tuple(c.input.image_size) == (128, 64)
    assert c.name == {"lomo": "LOMO", "mlbp": "MLBP", "hog": "HOG", "gsm": "GSM"}[row]
    assert c.handcrafted.max_train_images == (300 if rows.is_synthetic(c) else 4000)
  small = load_config_file(f"configs/{row}.py:synthetic_regdb,runlocal")
  assert small.handcrafted.max_train_images == 48 and small.eval.num_trials == 1
  assert small.data.protocol == "regdb"


def test_handcrafted_run_through_the_stages_lands_in_the_table(tiny_data_dir, tmp_path):
  """run.py's path (stages.run) for a hand-crafted config: the reid stage fits, the evaluate
  stage scores; the table collects the run's results.json."""
  from ce2l_jax import stages
  from ce2l_jax.config_check import load_config_file
  c = load_config_file("configs/hog.py:synthetic_sysu,runlocal")
  c.data.name, c.data.data_dir = "synthetic_vireid/tiny", tiny_data_dir
  c.input.image_size = (32, 16)
  c.handcrafted.feature_kwargs = {"cell": (4, 4)}
  root = str(tmp_path)
  wdir = pt.run_dir(root, pt.SYNTHETIC["SYSU-MM01"], "hog", 0)
  rows = stages.run(c, wdir)
  assert list(rows) == ["HOG", "HOG + XQDA", "raw pixels"]
  assert os.path.exists(os.path.join(wdir, "reid", "model.npz"))
  table = pt.collect(root, pt.SYNTHETIC, seeds=[0])
  for name in ("HOG", "HOG + XQDA (ours)", "raw pixels"):
    cell = table[name]["SYSU-MM01"]
    assert cell["status"] == "ok" and cell["num_trials"] == 1
  assert table["HOG"]["RegDB"]["status"] == pt.NOT_RUN


def test_cells_say_the_scale_each_run_was_trained_at(tmp_path, capsys):
  root = str(tmp_path)
  sysu, regdb = pt.SYNTHETIC["SYSU-MM01"], pt.SYNTHETIC["RegDB"]
  _write_run(root, sysu, "ce2l", 0, {"CE²L": {"all_single": _result([0.25])}})
  _write_run(root, regdb, "tone", 0, {"TONE": {"visible_to_thermal": _result([0.1])}})
  _write_run(root, regdb, "hog", 0, {"HOG": {"visible_to_thermal": _result([0.1])}})
  configs = {
      (sysu, "ce2l"): {"reid": {"trainer": "reid", "num_steps": 750}, "init": "",
                       "cyclegan": {"enabled": True, "num_steps": 200}, "data": {"protocol": "sysu"}},
      (regdb, "tone"): {"reid": {"trainer": "reid", "num_steps": 150}, "init": "/w/x.npz",
                        "cyclegan": {"enabled": False, "num_steps": 200},
                        "data": {"protocol": "regdb", "trial": 0, "trials": [1]}},
      (regdb, "hog"): {"reid": {"trainer": "handcrafted"}, "cyclegan": {"enabled": False},
                       "data": {"protocol": "regdb", "trial": 2, "trials": [1, 2]}}}
  for (dataset, config), c in configs.items():
    with open(os.path.join(pt.run_dir(root, dataset, config, 0), "config.json"), "w") as f:
      json.dump(c, f)
  table = pt.collect(root, pt.SYNTHETIC, seeds=[0])
  assert table["CE²L"]["SYSU-MM01"]["scale"] == ["re-ID 750 steps, CycleGAN 200 steps, from scratch"]
  assert table["TONE"]["RegDB"]["scale"] == ["re-ID 150 steps, from x.npz, trial 1"]
  assert table["HOG"]["RegDB"]["scale"] == ["hand-crafted, trial 2"]
  assert pt.run_scale(None) is None
  md = pt.format_markdown(table)
  assert md.rstrip().splitlines()[-1] == (
      "Scale of the runs: RegDB (synthetic_regdb): hand-crafted, trial 2 (HOG); re-ID 150 steps, "
      "from x.npz, trial 1 (TONE) | SYSU-MM01 (synthetic_sysu): re-ID 750 steps, CycleGAN 200 "
      "steps, from scratch")
  assert pt.main([f"--root={root}", "--run", "--columns=RegDB,nope"]) == 2
  assert "--columns" in capsys.readouterr().err


def test_run_missing_runs_only_the_columns_given(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(pt.subprocess, "call", lambda cmd, **kw: calls.append(cmd) or 0)
  assert pt.main([f"--root={tmp_path}", "--run", "--rows=tone", "--columns=RegDB", "--reduced",
                  "--override=--config.reid.num_steps=150"]) == 0
  assert len(calls) == 1 and calls[0][2] == "--config=configs/tone.py:synthetic_regdb,reduced"
  assert calls[0][-1] == "--config.reid.num_steps=150"


def test_hcml_takes_tones_network_and_d2rl_ce2ls_cyclegan(tmp_path, monkeypatch):
  # The configs agree on what the reused stages read on the twins; not on the real SYSU-MM01
  # (D²RL's input differs from CE²L's there), where D²RL trains its own CycleGAN.
  assert pt.reuse_check("hcml", "synthetic_regdb,reduced") is None
  assert pt.reuse_check("d2rl", "synthetic_sysu") is None
  assert "input.image_size" in pt.reuse_check("d2rl", "sysu_mm01")
  assert pt.reuse_check("tone", "synthetic_sysu") == "tone reuses no other row"
  root, dataset = str(tmp_path), "synthetic_regdb"
  tone = pt.run_dir(root, dataset, "tone", 0)
  for sub in ("trial1/reid", "trial2/reid", "trial1/evaluate"):
    os.makedirs(os.path.join(tone, sub))
  for sub in ("trial1/reid", "trial2/reid"):
    open(os.path.join(tone, sub, "DONE"), "w").write("{}")
  open(os.path.join(tone, "trial1/reid/weights"), "w").write("w")
  hcml = pt.run_dir(root, dataset, "hcml", 0)
  # An unfinished stage of the source: nothing copied.
  os.remove(os.path.join(tone, "trial2/reid/DONE"))
  assert pt.reuse_stages(tone, hcml, ["reid"]) == [] and not os.path.exists(hcml)
  open(os.path.join(tone, "trial2/reid/DONE"), "w").write("{}")
  assert pt.reuse_stages(tone, hcml, ["reid"]) == ["trial1/reid", "trial2/reid"]
  assert open(os.path.join(hcml, "trial1/reid/weights")).read() == "w"
  assert not os.path.exists(os.path.join(hcml, "trial1/evaluate"))
  # Through run_missing: the source's stages are copied before the run starts.
  calls, messages = [], []
  monkeypatch.setattr(pt.subprocess, "call", lambda cmd, **kw: calls.append(cmd) or 0)
  sysu_tone = pt.run_dir(root, "synthetic_sysu", "tone", 0)
  os.makedirs(os.path.join(sysu_tone, "reid"))
  open(os.path.join(sysu_tone, "reid/DONE"), "w").write("{}")
  pt.run_missing(root, {"SYSU-MM01": "synthetic_sysu"}, ["hcml", "d2rl"], [0], reduced=True,
                 log=messages.append)
  assert len(calls) == 2
  assert os.path.exists(os.path.join(pt.run_dir(root, "synthetic_sysu", "hcml", 0), "reid/DONE"))
  assert any("hcml takes tone's reid" in m for m in messages)
  assert any("d2rl trains its own cyclegan (ce2l of seed 0 has not finished them)" in m
             for m in messages)
