"""`benchmarks/synthetic_tables.py` (`make tables`): what it tabulates from finished runs.

No training here: fake run folders hold `results.json` files in the evaluate stage's format, and
`--collect` must turn them into mean ± std over seeds, alias BDTR's baseline to the no-conversion
runs (the same computation in this code base) and leave unfinished rows out.
"""

import importlib.util
import json
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tables():
  spec = importlib.util.spec_from_file_location(
      "synthetic_tables", os.path.join(ROOT, "benchmarks", "synthetic_tables.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def _write_run(workroot, row, seed, rank1, label):
  wdir = os.path.join(workroot, "sysu", f"seed{seed}", row)
  os.makedirs(wdir)
  vals = {"rank1": rank1, "rank10": 0.5, "rank20": 0.7, "mAP": rank1 + 0.05, "mINP": 0.1}
  raw = {"rank1": 0.03, "rank10": 0.2, "rank20": 0.33, "mAP": 0.057, "mINP": 0.045}
  res = {label: {s: {"mean": vals} for s in ("all_single", "indoor_single")},
         "raw pixels": {s: {"mean": raw} for s in ("all_single", "indoor_single")}}
  with open(os.path.join(wdir, "results.json"), "w") as f:
    json.dump(res, f)
  with open(os.path.join(wdir, "tables_timing.json"), "w") as f:
    json.dump({"wall_s": 120.0, "cpu_s": 90.0}, f)


def test_collect_means_over_seeds_and_aliases_bdtr(tmp_path):
  t = _tables()
  work, out = str(tmp_path / "work"), str(tmp_path / "out" / "tables")
  full = {0: 0.20, 1: 0.24, 2: 0.25}
  noconv = {0: 0.10, 1: 0.12, 2: 0.17}
  for s in range(3):
    _write_run(work, "full", s, full[s], "CE²L")
    _write_run(work, "noconv", s, noconv[s], "no conversion")
  _write_run(work, "nolsr", 0, 0.3, "no LSR")  # one seed only: not finished for seeds 0-2
  t.main(["--twins=sysu", "--seeds=0,1,2", "--collect", f"--workroot={work}", f"--out={out}"])
  rep = json.load(open(out + ".json"))
  rows = rep["twins"]["sysu"]["rows"]
  assert set(rows) == {"full", "noconv", "bdtr", "raw"}
  mean, std, n = rows["full"]["agg"]["all_single"]["rank1"]
  assert n == 3
  np.testing.assert_allclose(mean, np.mean(list(full.values())), atol=1e-12)
  np.testing.assert_allclose(std, np.std(list(full.values())), atol=1e-12)
  assert rows["bdtr"]["agg"] == rows["noconv"]["agg"]  # BDTR's baseline = the no-conversion runs
  assert "no conversion" in rows["bdtr"]["label"]
  md = open(out + ".md").read()
  assert f"{100 * np.mean(list(full.values())):.2f} ± {100 * np.std(list(full.values())):.2f}" in md
  assert "no LSR" in md and "Not run" in md  # the unfinished row is named as not run
  # The runs' own cost, each distinct run once (BDTR's row reuses no-conversion's runs).
  assert rep["runs"] == 6 and rep["runs_wall_s"] == 6 * 120.0 and rep["runs_cpu_s"] == 6 * 90.0
  assert "the 6 runs in the tables took 12.0 min wall, 9.0 min CPU" in md


def test_oracle_row_replaces_the_copied_conversion_before_training(tmp_path, monkeypatch):
  """The `oracle` row: the full run's cyclegan/ and convert/ copied, then oracle_conversion.py
  on the copy, then re-ID and evaluation only (stubbed subprocesses record the order)."""
  t = _tables()
  work = str(tmp_path / "work")
  _write_run(work, "full", 0, 0.2, "CE²L")
  full = os.path.join(work, "sysu", "seed0", "full")
  for d in ("cyclegan", "convert"):
    os.makedirs(os.path.join(full, d))
    open(os.path.join(full, d, "DONE"), "w").close()
  calls = []

  def fake_run(cmd, check, cwd):
    calls.append(cmd)
    if cmd[1].endswith("run.py"):
      wdir = next(c.split("=", 1)[1] for c in cmd if c.startswith("--workdir="))
      assert os.path.exists(os.path.join(wdir, "convert", "DONE"))  # the copy came first
      _write_run_at(wdir, 0.3)

  def _write_run_at(wdir, r1):
    vals = {"rank1": r1, "rank10": 0.5, "rank20": 0.7, "mAP": r1, "mINP": 0.1}
    with open(os.path.join(wdir, "results.json"), "w") as f:
      json.dump({"oracle": {"all_single": {"mean": vals}}}, f)

  monkeypatch.setattr(t.subprocess, "run", fake_run)
  out = t.run_one("sysu", "oracle", 0, work, True, "python")
  wdir = os.path.join(work, "sysu", "seed0", "oracle")
  assert [os.path.basename(c[1]) for c in calls] == ["oracle_conversion.py", "run.py"]
  assert f"--workdir={wdir}" in calls[0] and "--data=synthetic_vireid/sysu" in calls[0]
  assert "--stages=reid,evaluate" in calls[1]
  assert out["run"]["all_single"]["rank1"] == 0.3
  # Not on the RegDB twin (per-trial conversions): the row is skipped there, not run.
  calls.clear()
  t.main(["--twins=regdb", "--rows=oracle", "--seeds=0", "--collect", f"--workroot={work}",
          f"--out={tmp_path / 'o'}"])
  assert calls == []


def test_share50_row_reuses_the_conversion_with_an_equal_share(tmp_path, monkeypatch):
  """`share50`: the full run's conversion copied, re-ID and evaluation with converted_share 0.5
  (equal mixing; both twins' full rows draw 0.25)."""
  t = _tables()
  work = str(tmp_path / "work")
  _write_run(work, "full", 0, 0.2, "CE²L")
  os.makedirs(os.path.join(work, "sysu", "seed0", "full", "convert"))
  calls = []

  def fake_run(cmd, check, cwd):
    calls.append(cmd)
    wdir = next(c.split("=", 1)[1] for c in cmd if c.startswith("--workdir="))
    assert os.path.isdir(os.path.join(wdir, "convert"))  # the copy came first
    _write_run_at = {"rank1": 0.3, "rank10": 0.5, "rank20": 0.7, "mAP": 0.3, "mINP": 0.1}
    with open(os.path.join(wdir, "results.json"), "w") as f:
      json.dump({"share": {"all_single": {"mean": _write_run_at}}}, f)

  monkeypatch.setattr(t.subprocess, "run", fake_run)
  out = t.run_one("sysu", "share50", 0, work, True, "python")
  assert len(calls) == 1 and "--config.input.converted_share=0.5" in calls[0]
  assert "--stages=reid,evaluate" in calls[0] and out["run"]["all_single"]["rank1"] == 0.3
  from configs import synthetic  # the row differs from the full row only if the default does not
  from tests.test_configs import load
  assert synthetic.CONVERTED_SHARE != 0.5
  assert load("synthetic_regdb", "reduced").input.converted_share != 0.5
