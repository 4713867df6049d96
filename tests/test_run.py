"""run.py end to end on configs/smoke.py, through subprocesses, as a user runs it.

One long test holds everything that needs a finished run (a full run, its outputs, a rerun that
skips every stage, config checks on it, a killed and resumed re-ID stage); the other tests are
independent (pytest-xdist spreads them). Each test builds synthetic_vireid/tiny into its own
data_dir (the `data` step does it, < 1 s). About 2–3 minutes on 2 shared CPU cores.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ce2l_jax import metrics, report, stages

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROW = "CE²L (resnet_tiny)"
SETTINGS = ("all_single", "all_multi", "indoor_single", "indoor_multi")
PICTURES = ("conversion_samples.png", "ranking_examples.png", "cmc.png")


def run_py(*args, data_dir, env=None, timeout=400):
  """run.py with the smoke config; one real CPU device (no fake devices), like a user's shell."""
  e = dict(os.environ, JAX_PLATFORMS="cpu", **(env or {}))
  e["XLA_FLAGS"] = " ".join(f for f in e.get("XLA_FLAGS", "").split()
                            if "xla_force_host_platform_device_count" not in f)
  cmd = [sys.executable, os.path.join(ROOT, "run.py"), "--config=configs/smoke.py",
         f"--config.data.data_dir={data_dir}", *args]
  return subprocess.run(cmd, cwd=ROOT, env=e, capture_output=True, text=True, timeout=timeout)


def ok(p):
  assert p.returncode == 0, f"rc={p.returncode}\n--- stdout\n{p.stdout[-3000:]}\n--- stderr\n{p.stderr[-5000:]}"
  return p


def one_line_error(p):
  assert p.returncode == 2, f"rc={p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
  lines = [s for s in p.stderr.splitlines() if s.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
  return lines[0]


def read_results(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


def test_full_run_outputs_rerun_config_checks_and_kill_resume(tmp_path):
  data, a = str(tmp_path / "tfds"), str(tmp_path / "a")
  p = ok(run_py(f"--workdir={a}", data_dir=data))
  assert "data: building synthetic_vireid/tiny" in p.stdout

  # Outputs: the table (stdout, results.md, results.json), pictures, metrics, DONE markers.
  for name in ("all-search single-shot", "indoor-search multi-shot", ROW, "raw pixels", "r=1", "mAP", "mINP"):
    assert name in p.stdout
  md = open(os.path.join(a, "results.md")).read()
  for name in (ROW, "raw pixels", "r=1", "r=10", "r=20", "mAP", "mINP", "all-search single-shot"):
    assert name in md
  res = read_results(a)
  assert set(res) == {ROW, stages.BASELINE_ROW}
  for row in res.values():
    assert set(row) == set(SETTINGS)
    for r in row.values():
      assert set(r["mean"]) == set(metrics.RESULT_KEYS) == set(r["std"])
      assert r["num_trials"] == 2 and len(r["cmc"]) >= 1
      assert all(0.0 <= v <= 1.0 for v in r["mean"].values())
  for pic in PICTURES:
    with Image.open(os.path.join(a, pic)) as im:
      assert im.format == "PNG" and im.width > 100 and im.height > 100
  for stage in stages.STAGES:
    assert os.path.exists(os.path.join(a, stage, "DONE")), stage
  cfg = json.load(open(os.path.join(a, "config.json")))
  assert cfg["data"]["name"] == "synthetic_vireid/tiny"
  rows = [json.loads(line) for line in open(os.path.join(a, "metrics.jsonl"))]
  assert {"cyclegan", "reid", "evaluate"} <= {r["stage"] for r in rows}
  assert any("test/all_single/rank1" in r for r in rows)
  assert os.path.isdir(os.path.join(a, "tensorboard", "reid"))

  # A rerun skips every stage and leaves the results as they were; an ignored key may differ.
  p = ok(run_py(f"--workdir={a}", "--config.reid.log_every=1", data_dir=data))
  assert p.stdout.count("finished earlier") == 4, p.stdout
  assert read_results(a) == res

  # Another config is refused, naming the keys; --force goes on (here with a stage that is off).
  w = str(tmp_path / "w")
  os.makedirs(w)
  shutil.copy(os.path.join(a, "config.json"), w)
  err = one_line_error(run_py(f"--workdir={w}", "--config.reid.lr=0.5", "--config.seed=3", data_dir=data))
  assert "reid.lr (0.001 → 0.5)" in err and "seed (0 → 3)" in err and "cyclegan.seed" in err
  assert "--force" in err
  p = ok(run_py(f"--workdir={w}", "--config.reid.lr=0.5", "--config.cyclegan.enabled=false", "--force",
                "--stages=cyclegan", data_dir=data))
  assert "warning: --force" in p.stderr and "reid.lr" in p.stderr and "cyclegan: off" in p.stdout
  assert json.load(open(os.path.join(w, "config.json")))["reid"]["lr"] == 0.5

  # Killed right after the re-ID stage's first checkpoint, then rerun: the same results as the
  # uninterrupted run (the CycleGAN and conversion are A's, copied).
  b = str(tmp_path / "b")
  os.makedirs(b)
  for stage in ("cyclegan", "convert"):
    shutil.copytree(os.path.join(a, stage), os.path.join(b, stage))
  p = run_py(f"--workdir={b}", data_dir=data, env={stages.KILL_ENV: "reid"})
  assert p.returncode == stages.KILLED_EXIT_CODE, p.stderr[-3000:]
  ckpts = os.listdir(os.path.join(b, "reid", "checkpoints"))
  assert "2" in ckpts and "4" not in ckpts and not os.path.exists(os.path.join(b, "reid", "DONE"))
  p = ok(run_py(f"--workdir={b}", data_dir=data))
  assert "resuming from the checkpoint of step 2" in p.stdout
  resumed = read_results(b)
  logged = [json.loads(line) for line in open(os.path.join(b, "metrics.jsonl"))]
  assert [r["step"] for r in logged if r["stage"] == "reid" and "loss" in r] == [2, 4]  # once each
  for row in res:
    for s in SETTINGS:
      for k in ("mean", "std"):
        for key, v in res[row][s][k].items():
          assert resumed[row][s][k][key] == pytest.approx(v, abs=1e-6), (row, s, k, key)


def test_no_conversion_baseline(tmp_path):
  data, c = str(tmp_path / "tfds"), str(tmp_path / "c")
  p = ok(run_py(f"--workdir={c}", "--config.cyclegan.enabled=false", data_dir=data))
  assert "cyclegan: off" in p.stdout and "convert: off" in p.stdout
  assert not os.path.exists(os.path.join(c, "cyclegan")) and not os.path.exists(os.path.join(c, "convert"))
  assert not os.path.exists(os.path.join(c, "conversion_samples.png"))
  res = read_results(c)
  assert set(res) == {"no conversion (resnet_tiny)", stages.BASELINE_ROW}
  assert os.path.exists(os.path.join(c, "ranking_examples.png")) and os.path.exists(os.path.join(c, "cmc.png"))


def test_missing_input_names_the_stage_to_run_first(tmp_path):
  data, d = str(tmp_path / "tfds"), str(tmp_path / "d")
  err = one_line_error(run_py(f"--workdir={d}", "--stages=reid", data_dir=data))
  assert "stage 'reid' reads the converted dataset" in err
  assert "--stages=cyclegan,convert,reid" in err and "cyclegan.enabled=false" in err
  err = one_line_error(run_py(f"--workdir={d}", "--stages=evaluate", "--config.cyclegan.enabled=false",
                              data_dir=data))
  assert "run the reid stage first: --stages=reid,evaluate" in err


def test_user_errors_are_one_line(tmp_path):
  data, w = str(tmp_path / "tfds"), str(tmp_path / "w")
  assert "did you mean 'reid.lr'" in one_line_error(run_py(f"--workdir={w}", "--config.reid.lrr=1", data_dir=data))
  assert "is a float" in one_line_error(run_py(f"--workdir={w}", "--config.reid.lr=fast", data_dir=data))
  assert "did you mean 'none'" in one_line_error(run_py(f"--workdir={w}", "--config.reid.lsr_on=nonee", data_dir=data))
  assert "did you mean 'reid'" in one_line_error(run_py(f"--workdir={w}", "--stages=reidd", data_dir=data))
  err = one_line_error(run_py(f"--workdir={w}", "--config.data.name=sysu_mm01", data_dir=data))
  assert "is not built" in err and "tfds_builders/sysu_mm01" in err


def test_summary_pools_regdb_like_trials(tmp_path):
  """The top-level table of several trials pools their per-trial results (mean over all)."""
  import ml_collections
  config = ml_collections.ConfigDict({"data": {"name": "regdb", "protocol": "regdb"},
                                      "eval": {"metric": "euclidean", "flip": False}})
  per = {}
  for t, r1 in ((1, 0.2), (2, 0.4)):
    res = metrics.TrialResults.from_per_trial(
        {k: [r1] for k in metrics.RESULT_KEYS}, np.full((1, 20), r1))
    rows = {"run": {"visible_to_thermal": res, "thermal_to_visible": res}}
    path = os.path.join(tmp_path, f"trial{t}", "evaluate", "results.json")
    os.makedirs(os.path.dirname(path))
    open(path, "w").write(metrics.results_to_json(rows))
    per[t] = rows
  rows = report.summarize(config, str(tmp_path), [1, 2, 3])
  assert rows["run"]["visible_to_thermal"].mean["rank1"] == pytest.approx(0.3)
  assert rows["run"]["visible_to_thermal"].std["rank1"] == pytest.approx(0.1)
  assert os.path.exists(tmp_path / "cmc.png")
  assert "trials 1, 2" in open(tmp_path / "results.md").read()
