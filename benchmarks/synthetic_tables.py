"""The README's synthetic results tables: ablations on both twins over seeds, from nothing.

`make tables` runs this. For each twin (`sysu`: configs/synthetic.py, near-infrared SYSU-like,
SYSU protocol; `regdb`: configs/synthetic_regdb.py, thermal RegDB-like, RegDB protocol both
directions) and each seed it runs `run.py` for every row:

  full      CE²L: CycleGAN → conversion → re-ID (ℓ_cross + λ ℓ_intra + LSR on converted images)
  noconv    no conversion (`cyclegan.enabled=false`)
  nolsr     plain cross-entropy on every image (`reid.lsr_on=none`)
  lsr_all   LSR on every image (`reid.lsr_on=all`)
  nointra   no ℓ_intra (`reid.intra_weight=0`)
  fake_vis  one conversion direction: only the fake visible images (`input.converted_slots=visible`)
  fake_ir   the other: only the fake infrared images (`input.converted_slots=infrared`)
  share50   CE²L with an equal share of converted draws (`input.converted_share=0.5`) in place of the
            twins' 0.25 (configs/synthetic.py)
  oracle    CE²L with a perfect converter: every training image re-rendered by the twin's own
            generator in the other modality (benchmarks/oracle_conversion.py) in place of the
            CycleGAN's: what conversion could give at best (SYSU twin only; see `ORACLE_TWINS`)
  bdtr      BDTR's baseline: ℓ_cross + ℓ_intra + plain CE, no conversion. In this code base that
            is the same computation as `noconv` (LSR acts on converted images only, and there are
            none), so the row takes `noconv`'s runs instead of training the same thing twice
            (measured last session: equal to the last digit, docs/notes/synthetic_benchmark.md)
  raw       raw pixels (the evaluate stage's baseline row: no training, the same for every seed)

Rows that keep the conversion (nolsr, lsr_all, nointra, fake_vis, fake_ir, share50, oracle) reuse the `full` run's CycleGAN and
converted images of the same seed (copied, then `--stages=reid,evaluate`), as a CycleGAN does not
depend on the re-ID loss. Each cell is mean ± std over seeds of the run's value, itself the mean
over the protocol's galleries (SYSU: 10 random galleries) or trials (RegDB). Writes
`<out>.md` and `<out>.json` (machine, date, load, float32 matmul rate, wall time of every run,
every per-seed value) atomically. `--collect` runs nothing and tabulates what finished.

  python benchmarks/synthetic_tables.py                               # everything (hours on 2 cores)
  python benchmarks/synthetic_tables.py --twins=sysu --rows=full,noconv --seeds=0 --reduced
  make tables                                                         # = the first line

`--reduced` runs each twin's `:reduced` config option (fewer re-ID steps, RegDB trial 1 only;
the tables then say so). `--workroot` keeps every run folder; a finished run is not redone.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWINS = {"sysu": "configs/synthetic.py", "regdb": "configs/synthetic_regdb.py"}
ROWS = {  # name: (label, overrides, reuses the full run's conversion)
    "full": ("CE²L (full)", [], False),
    "noconv": ("no conversion", ["--config.cyclegan.enabled=false"], False),
    "nolsr": ("no LSR (plain CE)", ["--config.reid.lsr_on=none"], True),
    "lsr_all": ("LSR on all images", ["--config.reid.lsr_on=all"], True),
    "nointra": ("no ℓ_intra", ["--config.reid.intra_weight=0"], True),
    "fake_vis": ("fake visible images only (IR→RGB)", ["--config.input.converted_slots=visible"], True),
    "fake_ir": ("fake infrared images only (RGB→IR)", ["--config.input.converted_slots=infrared"], True),
    "share50": ("CE²L, converted share 0.5", ["--config.input.converted_share=0.5"], True),
    "oracle": ("CE²L, perfect conversion (the generator's own)", [], True),
    "bdtr": ("BDTR baseline (ℓ_cross + ℓ_intra + CE)",
             ["--config.cyclegan.enabled=false", "--config.reid.lsr_on=none"], False),
}
# Rows whose computation is another row's (see the docstring): they take that row's runs.
SAME_AS = {"bdtr": "noconv"}
# The oracle row replaces the copied conversion with the generator's (one convert/ per workdir:
# the RegDB twin's trials each have their own, which oracle_conversion.py does not handle).
ORACLE_TWINS = ("sysu",)
# Rows run on some twins only: the oracle's (above).
ONLY_TWINS = {"oracle": ORACLE_TWINS}
SETTINGS = {"sysu": ("all_single", "indoor_single"),
            "regdb": ("visible_to_thermal", "thermal_to_visible")}
KEYS = ("rank1", "rank10", "rank20", "mAP", "mINP")


def _atomic_write(path: str, text: str) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def matmul_gflops(n: int = 1024, reps: int = 5) -> float:
  """float32 matmul rate of this machine now (numpy), to read timings against."""
  a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
  a @ a
  t = time.perf_counter()
  for _ in range(reps):
    a @ a
  return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def machine() -> dict:
  cpu = platform.processor()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
  except OSError:
    pass
  return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
          "python": platform.python_version()}


def run_one(twin: str, row: str, seed: int, workroot: str, reduced: bool, python: str) -> dict:
  """Runs (or finds finished) one row × seed; returns {setting: {key: value}} and timing."""
  if row in SAME_AS:
    return run_one(twin, SAME_AS[row], seed, workroot, reduced, python)
  label, overrides, reuse = ROWS[row]
  wdir = os.path.join(workroot, twin, f"seed{seed}", row)
  res_path = os.path.join(wdir, "results.json")
  timing_path = os.path.join(wdir, "tables_timing.json")
  config = TWINS[twin] + (":reduced" if reduced else "")
  cmd = [python, os.path.join(ROOT, "run.py"), f"--config={os.path.join(ROOT, config)}",
         f"--workdir={wdir}", f"--config.seed={seed}", f"--config.name={label}", *overrides]
  if not os.path.exists(res_path):
    if reuse:
      full = os.path.join(workroot, twin, f"seed{seed}", "full")
      if not os.path.exists(os.path.join(full, "results.json")):
        run_one(twin, "full", seed, workroot, reduced, python)
      for dirpath, dirnames, _ in os.walk(full):  # every trial's cyclegan/ and convert/
        for d in ("cyclegan", "convert"):
          if d in dirnames:
            dst = os.path.join(wdir, os.path.relpath(os.path.join(dirpath, d), full))
            if not os.path.exists(dst):
              shutil.copytree(os.path.join(dirpath, d), dst)
        dirnames[:] = [d for d in dirnames if d.startswith("trial")]
      cmd.append("--stages=reid,evaluate")
      if row == "oracle":
        subprocess.run([python, os.path.join(ROOT, "benchmarks", "oracle_conversion.py"),
                        f"--workdir={wdir}", f"--seed={seed}", "--data=synthetic_vireid/sysu"],
                       check=True, cwd=ROOT)
    os.makedirs(wdir, exist_ok=True)
    print(f"== {twin} seed {seed} {row}: {' '.join(cmd)}", flush=True)
    t0, c0 = time.time(), os.times()
    subprocess.run(cmd, check=True, cwd=ROOT)
    c1 = os.times()
    _atomic_write(timing_path, json.dumps({
        "wall_s": time.time() - t0, "cpu_s": (c1.children_user - c0.children_user)
        + (c1.children_system - c0.children_system), "load_after": os.getloadavg()[0],
        "command": " ".join(cmd), "reused_conversion": reuse}))
  with open(res_path) as f:
    rows = json.load(f)
  timing = json.load(open(timing_path)) if os.path.exists(timing_path) else {}
  mine = next(v for k, v in rows.items() if k != "raw pixels")
  out = {"run": {s: {k: mine[s]["mean"][k] for k in KEYS} for s in mine},
         "raw": {s: {k: rows["raw pixels"][s]["mean"][k] for k in KEYS} for s in rows["raw pixels"]}
         if "raw pixels" in rows else None, "timing": timing, "workdir": wdir}
  return out


def aggregate(per_seed: list[dict]) -> dict:
  """{setting: {key: (mean, std, n)}} over seeds."""
  out = {}
  for s in per_seed[0]:
    out[s] = {k: (float(np.mean([p[s][k] for p in per_seed])),
                  float(np.std([p[s][k] for p in per_seed])), len(per_seed)) for k in KEYS}
  return out


def markdown(report: dict) -> str:
  m = report["machine"]
  lines = [f"# Synthetic benchmark tables", "",
           f"Generated by `{report['command']}` on {report['date']} — {m['cpu']}, {m['cores']} "
           f"cores, {m['platform']}; load average {report['load_start']:.1f} at the start, "
           f"float32 matmul {report['matmul_gflops']:.0f} GFLOP/s (numpy, 1024²); this "
           f"command's wall time {report['wall_s'] / 60:.1f} min; the {report.get('runs', 0)} "
           f"runs in the tables took {report.get('runs_wall_s', 0) / 60:.1f} min wall, "
           f"{report.get('runs_cpu_s', 0) / 60:.1f} min CPU in all (each run's tables_timing.json)."
           + (" **Reduced scale** (each twin's `:reduced` config option)." if report["reduced"]
              else ""), "",
           "Cells: mean ± std over seeds (each seed's value is the mean over the protocol's "
           "galleries or trials), in %; with one seed, the value alone. Raw pixels need no "
           "training (one value).", ""]
  for twin, t in report["twins"].items():
    lines += [f"## {twin} twin (`{TWINS[twin]}`), seeds {', '.join(map(str, t['seeds']))}", ""]
    for setting in SETTINGS[twin]:
      lines += [f"### {setting}", "", "| row | seeds | r=1 | r=10 | r=20 | mAP | mINP | wall (min, per seed) |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
      for row, r in t["rows"].items():
        if setting not in r["agg"]:
          continue
        agg = r["agg"][setting]
        cells = [f"{100 * agg[k][0]:.2f}" + (f" ± {100 * agg[k][1]:.2f}" if agg[k][2] > 1 else "")
                 for k in KEYS]  # one seed: no spread over seeds to show
        wall = r.get("wall_min")
        lines.append(f"| {r['label']} | {r['agg'][setting]['rank1'][2]} | " + " | ".join(cells)
                     + f" | {'' if wall is None else f'{wall:.1f}'} |")
      lines.append("")
    if t.get("not_run"):
      lines += [f"Not run: {', '.join(t['not_run'])}.", ""]
  return "\n".join(lines) + "\n"


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--twins", default="sysu,regdb")
  ap.add_argument("--rows", default=",".join(ROWS))
  ap.add_argument("--seeds", default="0,1,2")
  ap.add_argument("--reduced", action="store_true")
  ap.add_argument("--workroot", default=os.path.join(ROOT, "workdirs", "tables"))
  ap.add_argument("--out", default=os.path.join(ROOT, "docs", "results", "synthetic_tables"))
  ap.add_argument("--python", default=sys.executable)
  ap.add_argument("--collect", action="store_true",
                  help="run nothing: tabulate the rows whose runs finished for every seed")
  args = ap.parse_args(argv)
  twins = [t for t in args.twins.split(",") if t]
  rows = [r for r in args.rows.split(",") if r]
  for name, known in (("twin", TWINS), ("row", ROWS)):
    bad = [x for x in (twins if name == "twin" else rows) if x not in known]
    if bad:
      sys.exit(f"--{name}s: unknown {', '.join(bad)}; known: {', '.join(known)}")
  seeds = [int(s) for s in args.seeds.split(",")]
  t0 = time.time()
  report = {"command": "python benchmarks/synthetic_tables.py " + " ".join(argv or sys.argv[1:]),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(), "load_start": os.getloadavg()[0],
            "matmul_gflops": matmul_gflops(), "reduced": args.reduced, "twins": {}}
  for twin in twins:
    t = {"seeds": seeds, "rows": {}}
    raws = []
    done = lambda row, s: os.path.exists(  # noqa: E731
        os.path.join(args.workroot, twin, f"seed{s}", SAME_AS.get(row, row), "results.json"))
    for row in rows:
      if twin not in ONLY_TWINS.get(row, (twin,)):
        continue
      if args.collect and not all(done(row, s) for s in seeds):
        continue
      per_seed = [run_one(twin, row, s, args.workroot, args.reduced, args.python) for s in seeds]
      raws += [p["raw"] for p in per_seed if p["raw"]]
      walls = [p["timing"].get("wall_s") for p in per_seed if p["timing"].get("wall_s")]
      label = ROWS[row][0] + (f" (= {ROWS[SAME_AS[row]][0]}'s runs)" if row in SAME_AS else "")
      t["rows"][row] = {"label": label, "agg": aggregate([p["run"] for p in per_seed]),
                        "per_seed": per_seed, "wall_min": np.mean(walls) / 60 if walls else None}
    if raws:
      t["rows"]["raw"] = {"label": "raw pixels", "agg": aggregate(raws[:1]), "per_seed": raws[:1],
                          "wall_min": None}
    t["not_run"] = [ROWS[r][0] for r in ROWS if r not in t["rows"]]
    report["twins"][twin] = t
    report["wall_s"] = time.time() - t0
    # Every distinct run folder once (aliased rows share their runs), with its recorded timing.
    timings = {p["workdir"]: p["timing"] for tw in report["twins"].values()
               for r in tw["rows"].values() if r["label"] != "raw pixels" for p in r["per_seed"]}
    report["runs"] = len(timings)
    report["runs_wall_s"] = sum(x.get("wall_s", 0) for x in timings.values())
    report["runs_cpu_s"] = sum(x.get("cpu_s", 0) for x in timings.values())
    _atomic_write(args.out + ".json", json.dumps(report, indent=1, default=float) + "\n")
    _atomic_write(args.out + ".md", markdown(report))
  print(markdown(report))


if __name__ == "__main__":
  main()
