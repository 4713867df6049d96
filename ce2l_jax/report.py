"""Results tables and pictures of a run: what `<workdir>/results.{md,json}`, `cmc.png`,
`ranking_examples.png` and `conversion_samples.png` show (docs/architecture.md, workdir layout).

  results_markdown(config, rows)        the protocol's settings as markdown tables
  format_tables(rows)                   one `metrics.format_table` per setting
  draw_cmc(rows, path)                  CMC curves, this run solid, the raw-pixel baseline dashed
  draw_ranking_examples(...)            infrared queries with their top-k visible gallery images
  write_conversion_samples(config, wdir, params)   real → converted → reconstructed, both ways
  summarize(config, workdir, trials)    the run's results files from every trial's evaluation

`rows` are `{row name: {setting: TrialResults}}` (this run, then `BASELINE_ROW`).
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, Mapping, Sequence

import jax
import ml_collections
import numpy as np

from ce2l_jax import metrics
from ce2l_jax import workdir as workdir_lib
from ce2l_jax.metrics import ranking

# Display names of the protocol settings (results.json keeps the machine names).
SETTING_NAMES = {
    "all_single": "all-search single-shot", "all_multi": "all-search multi-shot",
    "indoor_single": "indoor-search single-shot", "indoor_multi": "indoor-search multi-shot",
    "visible_to_thermal": "visible→thermal", "thermal_to_visible": "thermal→visible",
    "ir_to_vis": "LLCM infrared→visible", "vis_to_ir": "LLCM visible→infrared (released scoring)",
}
BASELINE_ROW = "raw pixels"


def conversion_enabled(config: ml_collections.ConfigDict) -> bool:
  return bool(config.cyclegan.enabled) and bool(config.convert.get("enabled", True))


def row_name(config: ml_collections.ConfigDict) -> str:
  """The results table's row for this run: `config.name`, else e.g. 'CE²L, no LSR (alexnet_tiny)'."""
  if config.get("name"):
    return str(config.name)
  parts = ["CE²L" if conversion_enabled(config) else "no conversion"]
  r = config.reid
  if r.lsr_on == "none":
    parts.append("no LSR")
  if not r.intra_weight:
    parts.append("no ℓ_intra")
  if not r.cross_weight:
    parts.append("no ℓ_cross")
  return f"{', '.join(parts)} ({r.model})"


def write_conversion_samples(config: ml_collections.ConfigDict, wdir: str, params: Mapping[str, Any],
                             translate) -> str:
  """`<wdir>/conversion_samples.png`: the CycleGAN (`params`, jitted `translate` of
  `trainers.cyclegan.step_functions`) on `cyclegan.num_samples` held-out images per modality
  (real → converted → reconstructed, both directions), enlarged to be seen. (The stage's own
  grids, `cyclegan/samples/step_*.png`, are at the generator's size.)"""
  from ce2l_jax import conversion_quality, plots
  cfg = config.cyclegan
  n = int(cfg.num_samples)  # the batch the stage compiled `translate` for
  images = conversion_quality.load_images(config, cfg.heldout_split, n, tuple(cfg.image_size))
  m = min(len(images["rgb"]), len(images["ir"]))
  pad = lambda a: np.concatenate([a[:m], np.zeros((n - m, *a.shape[1:]), a.dtype)])
  out = jax.device_get(translate(params, pad(images["rgb"]), pad(images["ir"])))
  out = {k: np.asarray(v)[:m] for k, v in out.items()}
  path = os.path.join(wdir, "conversion_samples.png")
  if jax.process_index() == 0:
    plots.save_conversion_samples(out, path)
  return path


def results_markdown(config: ml_collections.ConfigDict, rows: Mapping[str, Mapping[str, Any]], *,
                     step: int | None = None, trials: Sequence[int] | None = None) -> str:
  first = next(iter(rows.values()))
  n = next(iter(first.values()))
  n = n.num_trials if hasattr(n, "num_trials") else n.get("num_trials", "?")
  lines = [f"# Results: {config.data.name}" + (f", RegDB trials {', '.join(map(str, trials))}"
                                               if trials and trials != [0] else ""), ""]
  if step is not None:
    lines += [f"Re-ID checkpoint: step {step}.", ""]
  lines += [f"Cells: mean ± std (population) over {n} trials (galleries) per setting"
            + (" and RegDB splits" if trials and len(trials) > 1 else "")
            + f", in %; distance: {config.eval.metric}"
            + (", flip-averaged features" if config.eval.flip else "") + ".", ""]
  for setting, table in format_tables(rows, style="markdown"):
    lines += [f"## {setting}", "", table]
  return "\n".join(lines)


def format_tables(rows: Mapping[str, Mapping[str, Any]], style: str = "text") -> list[tuple[str, str]]:
  """One `metrics.format_table` per protocol setting (the seed paper's columns r=1, r=10, r=20,
  mAP, mINP; rows: this run, the raw-pixel baseline): [(setting display name, table)]."""
  settings = list(dict.fromkeys(s for by in rows.values() for s in by))
  out = []
  for s in settings:
    name = SETTING_NAMES.get(s, s)
    table = metrics.format_table({r: {name: by[s]} for r, by in rows.items() if s in by}, style=style)
    if style == "markdown":  # the heading names the setting; keep the columns short
      head, _, rest = table.partition("\n")
      table = head.replace(f"{name}: ", "") + "\n" + rest
    out.append((name, table))
  return out


def draw_cmc(rows: Mapping[str, Mapping[str, Any]], path: str, title: str = "CMC") -> str:
  """One curve per setting: this run solid, the raw-pixel baseline dashed, same colours."""
  from ce2l_jax import plots
  curves = {}
  settings = list(dict.fromkeys(s for by in rows.values() for s in by))
  for name, by in rows.items():
    for s, res in by.items():
      cmc = res.cmc if hasattr(res, "cmc") else res["cmc"]
      color = plots.PALETTE[settings.index(s) % len(plots.PALETTE)]
      label = SETTING_NAMES.get(s, s) + ("" if len(rows) == 1 else f", {name}")
      curves[label] = plots.Curve(np.asarray(cmc), color=color, dashed=name == BASELINE_ROW,
                                  width=1 if name == BASELINE_ROW else 2)
  return plots.draw_cmc(curves, path, title=title)


def draw_ranking_examples(config, test_set, feats: np.ndarray, trials: Mapping[str, list], path: str,
                          num_queries: int = 6, top_k: int = 10) -> str | None:
  """A few infrared queries of the first trial with their top-k visible gallery images."""
  from ce2l_jax import plots
  from ce2l_jax.data import augment, sources
  setting = "thermal_to_visible" if "thermal_to_visible" in trials else next(iter(trials))
  trial = trials[setting][0]
  q_all, g = np.asarray(trial.query), np.asarray(trial.gallery)
  sysu = test_set.protocol == "sysu"
  has_match = np.isin(test_set.pid[q_all], test_set.pid[g])
  q_all = q_all[has_match]
  if not len(q_all) or not len(g):
    return None
  q = q_all[np.unique(np.linspace(0, len(q_all) - 1, num_queries).round().astype(int))]
  d = metrics.pairwise_distances(feats[q], feats[g], metric=config.eval.metric)
  if sysu:  # the SYSU rule: a camera-3 query does not see camera-2 gallery images (same room)
    q_cam, g_cam = ranking.SYSU_SAME_ROOM
    d = np.where((test_set.camid[q] == q_cam)[:, None] & (test_set.camid[g] == g_cam)[None, :], np.inf, d)
  order = np.argsort(d, axis=1, kind="stable")[:, :top_k]
  order = [row[np.isfinite(d[i, row])] for i, row in enumerate(order)]

  def images(idx):
    return [np.asarray(augment.decode(r["image"]).convert("RGB"))
            for r in sources.get_records(test_set.source, [int(i) for i in idx])]

  queries = images(q)
  galleries = [images(g[row]) for row in order]
  matches = [test_set.pid[g[row]] == test_set.pid[qi] for qi, row in zip(q, order)]
  labels = [f"id {int(test_set.pid[i])}" for i in q]
  plots.save_ranking_examples(queries, galleries, matches, path, row_labels=labels)
  return path


def _load_trial_results(path: str) -> dict[str, dict[str, Any]]:
  with open(path) as f:
    raw = json.load(f)
  out = {}
  for row, by in raw.items():
    out[row] = {s: metrics.TrialResults(
        mean=r["mean"], std=r["std"], per_trial={k: np.asarray(v) for k, v in r["per_trial"].items()},
        cmc=np.asarray(r["cmc"])) for s, r in by.items()}
  return out


def summarize(config: ml_collections.ConfigDict, workdir: str, trials: Sequence[int]) -> dict | None:
  """`<workdir>/results.{md,json}` from every trial's evaluate results (pooled over RegDB
  trials), the pictures at the top level, the table printed. None when nothing is evaluated."""
  found = [(t, os.path.join(workdir_lib.trial_dir(workdir, t), "evaluate", "results.json")) for t in trials]
  found = [(t, p) for t, p in found if os.path.exists(p)]
  if not found:
    return None
  per_trial = [_load_trial_results(p) for _, p in found]
  rows = {}
  for row in per_trial[0]:
    rows[row] = {s: metrics.pool_results([r[row][s] for r in per_trial if row in r and s in r[row]])
                 for s in per_trial[0][row]}
  done_trials = [t for t, _ in found]
  if jax.process_index() != 0:
    return rows
  workdir_lib.write_text(os.path.join(workdir, "results.json"), metrics.results_to_json(rows) + "\n")
  workdir_lib.write_text(os.path.join(workdir, "results.md"), results_markdown(config, rows, trials=done_trials))
  if done_trials != [0]:
    draw_cmc(rows, os.path.join(workdir, "cmc.png"),
             title=f"CMC, {config.data.name}, {len(done_trials)} trial(s)")
    first = workdir_lib.trial_dir(workdir, done_trials[0])
    for name in ("ranking_examples.png", "conversion_samples.png"):
      if os.path.exists(os.path.join(first, name)):
        shutil.copyfile(os.path.join(first, name), os.path.join(workdir, name))
  missing = [t for t in trials if t not in done_trials]
  print()
  print(f"Results ({config.data.name}" + (f", trials {done_trials}" if done_trials != [0] else "")
        + (f"; not evaluated yet: trials {missing}" if missing else "") + "), %:")
  for _, table in format_tables(rows):
    print(table)
  print(f"Written: {os.path.join(workdir, 'results.md')}, {os.path.join(workdir, 'results.json')}")
  return rows


