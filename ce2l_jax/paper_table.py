r"""The paper's comparison table: every row run (or collected) on the same data, printed in the
paper's layout with its figures beside ours.

  python -m ce2l_jax.paper_table                     # collect what has run under --root; print
  python -m ce2l_jax.paper_table --run               # run every missing row first (run.py), then print
  python -m ce2l_jax.paper_table --run --rows=lomo,hog --seeds=0,1,2
  python -m ce2l_jax.paper_table --real --run        # the real datasets (when built)
  python -m ce2l_jax.paper_table --run --reduced --root=workdirs/paper_table_reduced  # twins, short
  make paper-table                                   # = --run on the synthetic twins

Rows (the paper's order, each a config `configs/<row>.py` taking the dataset as an option):
LOMO, MLBP, HOG, GSM (hand-crafted: `ce2l_jax.trainers.handcrafted`), One-stream, Two-stream,
Zero-Padding, TONE, HCML, D²RL, BDTR, CE²L; then our extra rows, which the paper does not have:
each hand-crafted descriptor with XQDA learned on the training split, and raw pixels (from the
HOG run). Columns: RegDB | SYSU-MM01, rank-1/10/20 and mAP in %, SYSU-MM01 all-search
single-shot (`all_single`) and RegDB visible→thermal (`--regdb_setting`), each cell
`ours ± std (paper)`: mean ± population std over every gallery trial (SYSU: 10 per run; RegDB:
one per split, the splits of the run) of every seed (`--seeds`; pooled with
`metrics.pool_results`). By default the datasets are the synthetic twins (`synthetic_regdb`,
`synthetic_sysu`); `--real` takes `regdb` and `sysu_mm01`. A row whose config file does not exist
yet or whose run has not finished shows `not run`; a run that failed shows `failed` (its log is
`<workdir>/run.log`).

`--reduced` runs the twins' `:reduced` option (configs/rows.py: 750 re-ID / 200 CycleGAN steps,
the RegDB twin's trial 1), `--columns=RegDB` runs one twin only, `--override` passes run.py flags
to every run (e.g. a smaller `--config.reid.num_steps`); each cell keeps the scale its runs were
trained at (read from their config.json) and the table's last line lists it. HCML takes TONE's
trained network and D²RL CE²L's CycleGAN (same dataset and seed) when the row configs agree on
every key those stages read (`REUSE`): the same computation is not trained twice.

Layout under `--root` (default workdirs/paper_table): `<dataset>/<row>/seed<k>/` is the run's
`--workdir`; the hand-crafted rows share descriptors through `<root>/feature_cache/` (LOMO's serve
the LOMO and GSM rows); the table goes to `<root>/paper_table.md` and `.json` (atomic writes),
with each run's wall time (`<root>/run_times.json`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any, Mapping, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT_KEYS = ("rank1", "rank10", "rank20", "mAP")
COLUMNS = ("RegDB", "SYSU-MM01")
SYNTHETIC = {"RegDB": "synthetic_regdb", "SYSU-MM01": "synthetic_sysu"}
REAL = {"RegDB": "regdb", "SYSU-MM01": "sysu_mm01"}
SYSU_SETTING = "all_single"
REGDB_SETTINGS = ("visible_to_thermal", "thermal_to_visible")
NOT_RUN, FAILED = "not run", "failed"
RAW_PIXELS = "raw pixels"
# Rows of `ce2l_jax.trainers.handcrafted`: their runs share a descriptor cache under the root.
HANDCRAFTED = ("lomo", "mlbp", "hog", "gsm")
# A row whose first stages compute exactly what another row's do (same config keys for them, same
# dataset, seed and overrides) takes that row's finished stage folders instead of training the
# same thing twice: config → (source config, stages taken, key prefixes that must be equal).
# HCML is TONE's network (configs/hcml.py differs from configs/tone.py in `eval` only): it takes
# TONE's trained network. D²RL pre-trains the image level with the dataset config's CycleGAN, the
# same as CE²L's cyclegan stage: it takes CE²L's CycleGAN.
REUSE = {"hcml": ("tone", ("reid",), None),
         "d2rl": ("ce2l", ("cyclegan",), ("cyclegan", "data", "input", "mesh", "seed"))}
# For a reused `reid` stage every key but these must be equal (the evaluation's own settings).
REUSE_MAY_DIFFER = ("name", "eval")


@dataclasses.dataclass(frozen=True)
class Row:
  """A table row: its name, its config (`configs/<config>.py`), the row of that run's
  results.json it reads (None: the run's method row, the first one that is not raw pixels) and
  the paper's figures (r1, r10, r20, mAP in %; None for our extra rows)."""
  name: str
  config: str
  result_row: str | None = None
  regdb: tuple | None = None
  sysu: tuple | None = None


# CE²L's Table (Dai et al.), RegDB and SYSU-MM01 all-search single-shot.
PAPER_ROWS = (
    Row("LOMO", "lomo", "LOMO", (0.85, 2.47, 4.10, 2.28), (1.75, 14.14, 26.63, 3.48)),
    Row("MLBP", "mlbp", "MLBP", (2.02, 7.33, 10.90, 6.77), (2.12, 16.23, 28.32, 3.86)),
    Row("HOG", "hog", "HOG", (13.49, 33.22, 43.66, 10.31), (2.76, 18.25, 31.91, 4.24)),
    Row("GSM", "gsm", "GSM", (17.28, 34.47, 45.26, 15.06), (5.29, 33.71, 52.95, 8.00)),
    Row("One-stream", "one_stream", None, (13.11, 32.98, 42.51, 14.02), (12.04, 49.68, 66.74, 13.67)),
    Row("Two-stream", "two_stream", None, (12.43, 30.36, 40.96, 13.42), (11.65, 47.99, 65.50, 12.85)),
    Row("Zero-Padding", "zero_padding", None, (17.75, 34.21, 44.35, 18.90), (14.80, 54.12, 71.33, 15.95)),
    Row("TONE", "tone", None, (16.87, 34.03, 44.10, 14.92), (12.52, 50.72, 68.60, 14.42)),
    Row("HCML", "hcml", None, (24.44, 47.53, 56.78, 20.80), (14.32, 53.16, 69.17, 16.16)),
    Row("D²RL", "d2rl", None, (43.4, 66.1, 76.3, 44.1), (28.9, 70.6, 82.4, 29.2)),
    Row("BaseLine = BDTR", "bdtr", None, (33.47, 58.42, 67.52, 31.83), (17.01, 55.43, 71.96, 19.66)),
    Row("CE²L", "ce2l", None, (47.50, 72.17, 79.87, 44.21), (29.52, 69.83, 82.49, 28.43)),
)
EXTRA_ROWS = (
    Row("LOMO + XQDA (ours)", "lomo", "LOMO + XQDA"),
    Row("MLBP + XQDA (ours)", "mlbp", "MLBP + XQDA"),
    Row("HOG + XQDA (ours)", "hog", "HOG + XQDA"),
    Row("raw pixels", "hog", RAW_PIXELS),
)
ROWS = PAPER_ROWS + EXTRA_ROWS


def config_path(row: Row) -> str:
  return os.path.join(REPO, "configs", f"{row.config}.py")


def run_dir(root: str, dataset: str, config: str, seed: int) -> str:
  return os.path.join(root, dataset, config, f"seed{seed}")


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def run_command(config: str, dataset: str, seed: int, workdir: str, runlocal: bool = False,
                overrides: Sequence[str] = (), reduced: bool = False) -> list[str]:
  """The run.py command of one (config, dataset, seed); `reduced`: the twins' `:reduced` option
  (configs/rows.py: 750 re-ID / 200 CycleGAN steps, the RegDB twin's trial 1 only)."""
  spec = (f"configs/{config}.py:{dataset}" + (",reduced" if reduced else "")
          + (",runlocal" if runlocal else ""))
  return [sys.executable, os.path.join(REPO, "run.py"), f"--config={spec}",
          f"--config.seed={seed}", f"--workdir={workdir}", *overrides]


def reuse_check(config: str, spec: str) -> str | None:
  """None when `config` (at dataset spec `spec`, e.g. 'synthetic_sysu,reduced') may take its
  REUSE source's stages: the two row configs agree on every key those stages read; else why not."""
  if config not in REUSE:
    return f"{config} reuses no other row"
  from ce2l_jax import config_check
  source, _, equal = REUSE[config]
  a = config_check.load_config_file(f"{os.path.join(REPO, 'configs', source)}.py:{spec}")
  b = config_check.load_config_file(f"{os.path.join(REPO, 'configs', config)}.py:{spec}")
  keys = config_check.diff_configs(a.to_dict(), b.to_dict(),
                                   ignore=config_check.IGNORED_KEYS + REUSE_MAY_DIFFER)
  if equal is not None:
    keys = [k for k in keys if k.split(".")[0] in equal]
  return f"{source} and {config} differ in {', '.join(keys)}" if keys else None


def reuse_stages(source_dir: str, target_dir: str, stages: Sequence[str]) -> list[str]:
  """Copies the finished `stages` folders of the run in `source_dir` (at its top and in each
  RegDB `trial<N>/`) into `target_dir`; returns the folders copied ([] when a stage of the source
  is not finished, then nothing is copied)."""
  import shutil
  from ce2l_jax import workdir as wd
  if not os.path.isdir(source_dir):
    return []
  tops = [source_dir] + sorted(os.path.join(source_dir, d) for d in os.listdir(source_dir)
                               if d.startswith("trial") and os.path.isdir(os.path.join(source_dir, d)))
  pairs = [(os.path.join(t, st), os.path.join(target_dir, os.path.relpath(t, source_dir), st))
           for t in tops for st in stages if os.path.isdir(os.path.join(t, st))]
  if not pairs or not all(wd.is_done(os.path.dirname(src), os.path.basename(src)) for src, _ in pairs):
    return []
  for src, dst in pairs:
    if not os.path.exists(dst):
      tmp = f"{dst}.tmp{os.getpid()}"
      shutil.copytree(src, tmp, symlinks=True)
      os.replace(tmp, dst)
  return [os.path.relpath(dst, target_dir) for _, dst in pairs]


def _write_atomic(path: str, text: str) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def run_missing(root: str, datasets: Mapping[str, str], configs: Sequence[str], seeds: Sequence[int],
                *, runlocal: bool = False, overrides: Sequence[str] = (), reduced: bool = False,
                log=print) -> dict:
  """Runs run.py for every (dataset, config, seed) without a results.json; returns
  `{"<dataset>/<config>/seed<k>": {"seconds", "returncode"}}` of the runs made (also merged
  into `<root>/run_times.json`)."""
  times_path = os.path.join(root, "run_times.json")
  times = _read_json(times_path) or {}
  made = {}
  for dataset in (datasets[c] for c in reversed(COLUMNS) if c in datasets):  # SYSU-MM01 first
    for config in configs:
      if not os.path.exists(os.path.join(REPO, "configs", f"{config}.py")):
        log(f"paper_table: configs/{config}.py does not exist yet: {config} stays 'not run'")
        continue
      for seed in seeds:
        wdir = run_dir(root, dataset, config, seed)
        if os.path.exists(os.path.join(wdir, "results.json")):
          continue
        extra = ([f"--config.handcrafted.cache_dir={os.path.join(root, 'feature_cache')}"]
                 if config in HANDCRAFTED else [])
        cmd = run_command(config, dataset, seed, wdir, runlocal, [*extra, *overrides], reduced)
        if config in REUSE:
          spec = dataset + (",reduced" if reduced else "") + (",runlocal" if runlocal else "")
          why_not = reuse_check(config, spec)
          source, stages, _ = REUSE[config]
          copied = ([] if why_not else
                    reuse_stages(run_dir(root, dataset, source, seed), wdir, stages))
          log(f"paper_table: {config} takes {source}'s {', '.join(copied)}" if copied else
              f"paper_table: {config} trains its own {', '.join(stages)} "
              f"({why_not or f'{source} of seed {seed} has not finished them'})")
        log(f"paper_table: {' '.join(cmd[1:])}")
        os.makedirs(wdir, exist_ok=True)
        start = time.perf_counter()
        with open(os.path.join(wdir, "run.log"), "a") as f:
          rc = subprocess.call(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - start
        key = f"{dataset}/{config}/seed{seed}"
        made[key] = times[key] = {"seconds": round(seconds, 1), "returncode": rc}
        _write_atomic(times_path, json.dumps(times, indent=1) + "\n")
        log(f"paper_table: {key} {'done' if rc == 0 else f'FAILED (rc {rc})'} in {seconds:.0f} s")
  return made


# --------------------------------------------------------------------------------------------
# Collecting and formatting
# --------------------------------------------------------------------------------------------


def _read_json(path: str) -> Any:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _method_row(results: Mapping[str, Any], wanted: str | None) -> Any:
  if wanted is not None:
    return results.get(wanted)
  for name, by_setting in results.items():
    if name != RAW_PIXELS:
      return by_setting
  return None


def collect_cell(root: str, dataset: str, row: Row, seeds: Sequence[int], setting: str) -> dict:
  """`{"status": "ok", "mean": {...}, "std": {...}, "num_trials", "seeds"}` in % (or the status
  'not run' / 'failed') of one row on one dataset, pooled over seeds and gallery trials."""
  from ce2l_jax import metrics
  from ce2l_jax.metrics.protocols import TrialResults
  times = _read_json(os.path.join(root, "run_times.json")) or {}
  found, failed, scales = [], False, []
  for seed in seeds:
    wdir = run_dir(root, dataset, row.config, seed)
    res = _read_json(os.path.join(wdir, "results.json"))
    if row.result_row == RAW_PIXELS and not (res and RAW_PIXELS in res):
      # Raw pixels need no training: every run's evaluate stage scores them on the same galleries
      # (the seed's); take them from another finished run when HOG's has not run.
      for other in dict.fromkeys(r.config for r in ROWS):
        other_res = _read_json(os.path.join(run_dir(root, dataset, other, seed), "results.json"))
        if other_res and RAW_PIXELS in other_res:
          wdir, res = run_dir(root, dataset, other, seed), other_res
          break
    by_setting = _method_row(res, row.result_row) if res else None
    if by_setting and setting in by_setting:
      found.append((seed, by_setting[setting]))
      scales.append(None if row.result_row == RAW_PIXELS else
                    run_scale(_read_json(os.path.join(wdir, "config.json"))))
    elif times.get(f"{dataset}/{row.config}/seed{seed}", {}).get("returncode", 0) != 0:
      failed = True
  if not found:
    return {"status": FAILED if failed else NOT_RUN}
  pooled = metrics.pool_results([
      TrialResults.from_per_trial(r["per_trial"], [r["cmc"]] * len(r["per_trial"]["rank1"]))
      for _, r in found])
  return {"status": "ok", "seeds": [s for s, _ in found], "num_trials": pooled.num_trials,
          "mean": {k: 100 * float(pooled.mean[k]) for k in RESULT_KEYS},
          "std": {k: 100 * float(pooled.std[k]) for k in RESULT_KEYS},
          "seconds": [times.get(f"{dataset}/{row.config}/seed{s}", {}).get("seconds")
                      for s, _ in found],
          "scale": scales}


def run_scale(config: Mapping[str, Any] | None) -> str | None:
  """The scale a run was trained at, from its saved config.json: 'reid N steps' (+ ', CycleGAN M
  steps' when the row has a CycleGAN stage) for a network row, 'no training' for a hand-crafted
  one; + the RegDB trials it evaluated and the start point ('scratch' or the init file's name)."""
  if not config:
    return None
  reid, gan, data = config.get("reid", {}), config.get("cyclegan", {}), config.get("data", {})
  if reid.get("trainer") == "handcrafted":
    text = "hand-crafted"
  else:
    text = f"re-ID {reid.get('num_steps')} steps"
    if gan.get("enabled"):
      text += f", CycleGAN {gan.get('num_steps')} steps"
    text += ", from " + (os.path.basename(config["init"]) if config.get("init") else "scratch")
  if data.get("protocol") == "regdb":
    trials = [data["trial"]] if data.get("trial") else list(data.get("trials", []))
    text += f", trial{'s' if len(trials) > 1 else ''} {','.join(map(str, trials))}"
  return text


def collect(root: str, datasets: Mapping[str, str], seeds: Sequence[int],
            regdb_setting: str = REGDB_SETTINGS[0], rows: Sequence[Row] = ROWS) -> dict:
  """`{row name: {column: cell}}` for every row (`collect_cell`), plus the paper's figures."""
  settings = {"RegDB": regdb_setting, "SYSU-MM01": SYSU_SETTING}
  out = {}
  for row in rows:
    cells = {}
    for column in COLUMNS:
      cell = collect_cell(root, datasets[column], row, seeds, settings[column])
      paper = row.regdb if column == "RegDB" else row.sysu
      cell["paper"] = dict(zip(RESULT_KEYS, paper)) if paper else None
      cell["dataset"] = datasets[column]
      cells[column] = cell
    out[row.name] = cells
  return out


def keep_from(table: dict, previous_path: str, *, reduced: bool, regdb_setting: str) -> list[str]:
  """Fills the cells of `table` that have no finished run under this root with the finished cells
  of an earlier table file (`<out>.json` of an earlier run of this command), e.g. a column whose
  run folders were not kept. Each taken cell records `"from"` (the file and its date) and is
  marked † in the markdown. Returns the `row/column` names taken. Raises ValueError, naming the
  file, when it is not such a table or was made at another scale or RegDB setting."""
  try:
    with open(previous_path) as f:
      previous = json.load(f)
    prev_meta, prev_rows = previous["meta"], previous["rows"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ValueError(f"--keep_from={previous_path}: not a table file written by --out "
                     f"(<out>.json with 'meta' and 'rows'): {e}") from None
  if bool(prev_meta.get("reduced")) != reduced:
    raise ValueError(f"--keep_from={previous_path}: made {'with' if prev_meta.get('reduced') else 'without'}"
                     f" --reduced, this table {'with' if reduced else 'without'}: pass the same scale")
  source = (f"{previous_path} ({prev_meta.get('date', 'undated')}, seeds "
            f"{','.join(map(str, prev_meta.get('seeds', [])))})")
  taken = []
  for name, cells in table.items():
    for column, cell in cells.items():
      old = prev_rows.get(name, {}).get(column)
      if cell["status"] == "ok" or not old or old.get("status") != "ok":
        continue
      if column == "RegDB" and prev_meta.get("regdb_setting") != regdb_setting:
        continue
      if old.get("dataset") != cell.get("dataset"):
        continue
      cells[column] = {**old, "paper": cell.get("paper"), "from": source}
      taken.append(f"{name}/{column}")
  return taken


def _format_cell(cell: Mapping[str, Any], key: str) -> str:
  paper = cell.get("paper")
  ref = f" ({paper[key]:.2f})" if paper else ""
  if cell["status"] != "ok":
    return cell["status"] + ref
  mark = "†" if cell.get("from") else ""
  return f"{cell['mean'][key]:.2f} ± {cell['std'][key]:.2f}{mark}{ref}"


def format_markdown(table: Mapping[str, Mapping[str, Any]], *, title: str = "") -> str:
  """The paper's layout: `| Method | RegDB r1 r10 r20 mAP | SYSU-MM01 r1 r10 r20 mAP |`, cells
  'ours ± std (paper)' in %."""
  labels = {"rank1": "r1", "rank10": "r10", "rank20": "r20", "mAP": "mAP"}
  head = ["Method"] + [f"{c}: {labels[k]}" for c in COLUMNS for k in RESULT_KEYS]
  lines = ([f"{title}", ""] if title else []) + [
      "| " + " | ".join(head) + " |", "|" + "|".join([" --- "] + [" ---: "] * (len(head) - 1)) + "|"]
  for name, cells in table.items():
    lines.append("| " + " | ".join([name] + [_format_cell(cells[c], k) for c in COLUMNS
                                             for k in RESULT_KEYS]) + " |")
  scales = []
  for c in COLUMNS:
    rows_of: dict[str, list[str]] = {}
    for name, cells in table.items():
      for s in dict.fromkeys(cells[c].get("scale") or []):
        if s:
          rows_of.setdefault(s, []).append(name)
    if rows_of:
      dataset = next(iter(table.values()))[c].get("dataset", c)
      scales.append(f"{c} ({dataset}): " + "; ".join(
          f"{s} ({', '.join(rows_of[s])})" if len(rows_of) > 1 else s for s in sorted(rows_of)))
  if scales:
    lines += ["", "Scale of the runs: " + " | ".join(scales)]
  most = max((len(cells[c].get("seeds") or []) for cells in table.values() for c in COLUMNS),
             default=0)
  fewer = [f"{name} / {c} (seed{'s' if len(cells[c]['seeds']) > 1 else ''} "
           f"{','.join(map(str, cells[c]['seeds']))})"
           for name, cells in table.items() for c in COLUMNS
           if cells[c]["status"] == "ok" and not cells[c].get("from")
           and len(cells[c].get("seeds") or []) < most]
  if fewer:
    lines += ["", f"Cells over fewer than {most} seeds: " + "; ".join(fewer)]
  sources = sorted({cells[c]["from"] for cells in table.values() for c in COLUMNS
                    if cells[c].get("from")})
  if sources:
    lines += ["", "† taken from an earlier table file whose run folders were not kept (`--keep_from`): "
              + "; ".join(sources)]
  return "\n".join(lines) + "\n"


def write_table(root: str, table: Mapping[str, Any], markdown: str, meta: Mapping[str, Any]) -> None:
  write_table_to(os.path.join(root, "paper_table"), table, markdown, meta)


def write_table_to(prefix: str, table: Mapping[str, Any], markdown: str,
                   meta: Mapping[str, Any]) -> None:
  """`<prefix>.md` and `<prefix>.json` (atomic writes)."""
  _write_atomic(f"{prefix}.md", markdown)
  _write_atomic(f"{prefix}.json",
                json.dumps({"meta": dict(meta), "rows": table}, indent=1, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m ce2l_jax.paper_table", description=__doc__.split("\n")[0])
  p.add_argument("--root", default=os.path.join(REPO, "workdirs", "paper_table"),
                 help="folder of the runs (<dataset>/<row>/seed<k>) and of the table files")
  p.add_argument("--run", action="store_true", help="run every missing row first")
  p.add_argument("--rows", default="", help="comma-separated config names to run (default all)")
  p.add_argument("--seeds", default="0", help="comma-separated seeds (cells pool them)")
  p.add_argument("--real", action="store_true", help="regdb and sysu_mm01 instead of the twins")
  p.add_argument("--runlocal", action="store_true", help="dry runs (numbers meaningless)")
  p.add_argument("--reduced", action="store_true",
                 help="the twins' reduced scale (`:reduced`: 750 re-ID / 200 CycleGAN steps, RegDB "
                      "twin trial 1); use its own --root")
  p.add_argument("--regdb_setting", default=REGDB_SETTINGS[0], choices=REGDB_SETTINGS)
  p.add_argument("--out", default="",
                 help="also write the table to <out>.md and <out>.json (e.g. docs/results/paper_table)")
  p.add_argument("--columns", default=",".join(COLUMNS),
                 help="with --run: the columns (datasets) to run, e.g. --columns=RegDB "
                      "(the table always shows both)")
  p.add_argument("--keep_from", default="",
                 help="an earlier <out>.json: its finished cells fill the cells that have no run "
                      "under --root (marked †), e.g. a column whose run folders were not kept")
  p.add_argument("--override", action="append", default=[],
                 help="a run.py flag passed to every run, e.g. --override=--config.eval.num_trials=2")
  return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
  args = _parse(argv)
  try:
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
  except ValueError:
    print(f"error: --seeds must be comma-separated integers, got {args.seeds!r}", file=sys.stderr)
    return 2
  configs = list(dict.fromkeys(r.config for r in ROWS))
  if args.rows:
    chosen = [s.strip() for s in args.rows.split(",") if s.strip()]
    unknown = [c for c in chosen if c not in configs]
    if unknown:
      print(f"error: --rows: unknown {', '.join(unknown)}; rows: {', '.join(configs)}",
            file=sys.stderr)
      return 2
    configs = chosen
  datasets = REAL if args.real else SYNTHETIC
  root = os.path.abspath(args.root)
  start = time.perf_counter()
  if args.run:
    if args.reduced and args.real:
      print("error: --reduced is the synthetic twins' scale; drop it or --real", file=sys.stderr)
      return 2
    columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    if not columns or any(c not in COLUMNS for c in columns):
      print(f"error: --columns={args.columns!r}: choose from {', '.join(COLUMNS)}", file=sys.stderr)
      return 2
    run_missing(root, {c: datasets[c] for c in columns}, configs, seeds, runlocal=args.runlocal,
                overrides=args.override, reduced=args.reduced)
  table = collect(root, datasets, seeds, args.regdb_setting)
  kept = []
  if args.keep_from:
    try:
      kept = keep_from(table, args.keep_from, reduced=args.reduced, regdb_setting=args.regdb_setting)
    except ValueError as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
  wall = time.perf_counter() - start
  title = (f"Comparison table on {' | '.join(datasets[c] for c in COLUMNS)} "
           f"(RegDB {args.regdb_setting}, SYSU-MM01 {SYSU_SETTING}); seeds {args.seeds}; "
           + ("reduced scale (`:reduced`); " if args.reduced else "") +
           "cells: ours mean ± std over seeds × galleries, % (paper's figure)")
  meta = {"datasets": datasets, "seeds": seeds, "runlocal": args.runlocal,
          "reduced": args.reduced, "overrides": args.override,
          "regdb_setting": args.regdb_setting, "wall_seconds": wall, "kept_from": kept,
          "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
          "command": "python -m ce2l_jax.paper_table " + " ".join(argv if argv is not None else sys.argv[1:]),
          "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
          "load_average": [round(x, 1) for x in os.getloadavg()],
          "run_seconds": {c: sum(x for cells in table.values() if not cells[c].get("from")
                                 for x in cells[c].get("seconds") or [] if x) for c in COLUMNS},
          "kept_run_seconds": {c: sum(x for cells in table.values() if cells[c].get("from")
                                      for x in cells[c].get("seconds") or [] if x) for c in COLUMNS}}
  header = (f"Generated by `{meta['command']}` on {meta['date']} ({meta['machine']}; load average "
            f"{' / '.join(map(str, meta['load_average']))} at the end; this command {wall:.0f} s). "
            "Wall time of the runs in the table (from run_times.json): " + ", ".join(
                f"{c} {meta['run_seconds'][c] / 60:.0f} min" for c in COLUMNS) + "."
            + (" Cells marked † were taken from the earlier file (their runs' wall time: " + ", ".join(
                f"{c} {meta['kept_run_seconds'][c] / 60:.0f} min" for c in COLUMNS) + ")." if kept else ""))
  markdown = format_markdown(table, title=title + "\n\n" + header)
  write_table(root, table, markdown, meta)
  if args.out:
    write_table_to(args.out, table, markdown, meta)
  print(markdown, end="")
  print(f"\n(table written to {root}/paper_table.md and .json"
        + (f", {args.out}.md and .json" if args.out else "") + f"; this command took {wall:.0f} s)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
