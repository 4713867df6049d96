"""A CE²L run, stage by stage: data → cyclegan → convert → reid → evaluate (what run.py calls).

  run(config, workdir, stages=STAGES, force=False) -> rows of the results table

This module only orchestrates: configs are loaded and checked by `config_check`, datasets made
ready by `datasets`, trainers are handed their data stream, mesh, writer and stage folder,
results tables and pictures come from `report`; the workdir's layout (docs/architecture.md)
belongs to `workdir`, and each finished stage's DONE marker is written here, nowhere else.
With `cyclegan.enabled=False` (the no-conversion baseline) the cyclegan and convert stages do
nothing and the re-ID stage trains on real images only. RegDB trials run in turn, each in
`<workdir>/trial<N>/`; the pooled table is written and printed at the end.

Idempotent: a stage whose DONE marker exists is skipped; an interrupted one resumes from its
last checkpoint (state and input position). A stage whose input is missing (e.g.
`--stages=reid` with the CycleGAN enabled and no converted dataset) stops before anything runs,
naming the stage to run first. `<workdir>/config.json` is written at the start (after those
checks); a workdir made with another config is refused, naming the differing keys, unless
`force` (keys that cannot change the results, `config_check.IGNORED_KEYS`, may differ).

Test hook: `CE2L_KILL_AFTER_CHECKPOINT=<stage>` (cyclegan or reid) exits right after that stage's
first checkpoint (`checkpoint.kill_after_first_checkpoint`).
"""

from __future__ import annotations

import difflib
import os
import time
from typing import Iterable, Sequence

import ml_collections

from ce2l_jax import config_check, report
from ce2l_jax import workdir as wd
# Re-exported for callers of the stages (tests, scripts): where a run's names come from.
from ce2l_jax.config_check import UserError, load_config_file, prepare_config, trial_config, trials_of  # noqa: F401
from ce2l_jax.datasets import ensure_data  # noqa: F401
from ce2l_jax.report import BASELINE_ROW, conversion_enabled, row_name  # noqa: F401
from ce2l_jax.checkpoint import KILL_ENV, KILLED_EXIT_CODE, kill_after_first_checkpoint  # noqa: F401

STAGES = ("cyclegan", "convert", "reid", "evaluate")


def _mesh(config: ml_collections.ConfigDict):
  from ce2l_jax import parallel
  return parallel.make_mesh(config.mesh.get("num_devices") or None)


def check_inputs(config: ml_collections.ConfigDict, wdir: str, stages: Sequence[str]) -> None:
  """Every selected stage's input exists or is made by an earlier selected stage."""
  will = set(stages)
  conv = conversion_enabled(config)

  def available(stage: str) -> bool:
    return stage in will or wd.is_done(wdir, stage)

  def chain(stage: str) -> list[str]:
    """The stages to run (in order) so that `stage`'s output exists."""
    need = {"convert": ["cyclegan"], "reid": ["convert"] if conv else [], "evaluate": ["reid"]}
    out = []
    for s in need.get(stage, []):
      if not available(s):
        out += chain(s) + [s]
    return out

  where = {"cyclegan": "the CycleGAN checkpoint in {}/cyclegan",
           "convert": "the converted dataset in {}/convert",
           "reid": "the re-ID checkpoint in {}/reid"}
  for stage in stages:
    if wd.is_done(wdir, stage) or (stage in ("cyclegan", "convert") and not conv):
      continue
    missing = chain(stage)
    if missing:
      first = missing[-1]
      order = [s for s in STAGES if s in set(missing) | will]
      hint = (" (or --config.cyclegan.enabled=false for the no-conversion baseline)"
              if first in ("cyclegan", "convert") else "")
      raise UserError(f"stage '{stage}' reads {where[first].format(wdir)}, which is not there: run "
                      f"the {first} stage first: --stages={','.join(order)}{hint}")


# --------------------------------------------------------------------------------------------
# The stages
# --------------------------------------------------------------------------------------------


def stage_cyclegan(config: ml_collections.ConfigDict, wdir: str) -> str:
  if not config.cyclegan.enabled:
    return "off (cyclegan.enabled=false: no-conversion baseline)"
  from ce2l_jax import conversion_quality
  from ce2l_jax.metric_writer import MetricWriter
  from ce2l_jax.trainers import cyclegan
  cfg, mesh = config.cyclegan, _mesh(config)
  result = wd.read_done(wdir, "cyclegan")
  if result is None:
    image_size = tuple(int(s) for s in cfg.image_size)
    writer = MetricWriter(wdir, cyclegan.STAGE)
    try:
      train_iter = cyclegan.build_train_iterator(config, mesh)
      heldout = conversion_quality.load_images(config, cfg.heldout_split, int(cfg.num_heldout), image_size)
      n = int(cfg.num_samples)
      with kill_after_first_checkpoint("cyclegan"):
        state, result = cyclegan.train(cfg, wd.stage_dir(wdir, "cyclegan"), train_iter, mesh=mesh,
                                       eval_batch={"rgb": heldout["rgb"][:n], "ir": heldout["ir"][:n]},
                                       writer=writer)
      real = conversion_quality.load_images(config, config.data.get("train_split", "train"),
                                            int(cfg.classifier_images), image_size)
      quality = conversion_quality.evaluate(  # batch: the sample grid's compiled shape
          cyclegan.step_functions(cfg, mesh).translate, state.params, heldout, real,
          steps=int(cfg.classifier_steps), seed=int(cfg.seed), batch_size=n)
      writer.write_scalars(int(state.step), quality)
    finally:
      writer.close()
    result.update(quality)
    print("cyclegan: " + ", ".join(f"{k}={v:.4g}" for k, v in quality.items()))
    skipped = False
  else:
    skipped = True
  if not (skipped and os.path.exists(os.path.join(wdir, "conversion_samples.png"))):
    params, _ = cyclegan.restore_params(cfg, wd.checkpoint_dir(wdir, "cyclegan"), mesh)
    report.write_conversion_samples(config, wdir, params, cyclegan.step_functions(cfg, mesh).translate)
  if skipped:
    return f"finished earlier ({wd.done_path(wdir, 'cyclegan')})"
  wd.write_done(wdir, "cyclegan", result)
  keys = ("heldout_cycle_l1_rgb", "heldout_cycle_l1_ir", "rgb2ir_target_share", "ir2rgb_target_share")
  return "done: " + ", ".join(f"{k}={result[k]:.3f}" for k in keys if k in result)


def stage_convert(config: ml_collections.ConfigDict, wdir: str) -> str:
  if not conversion_enabled(config):
    return "off (no conversion: cyclegan.enabled or convert.enabled is false)"
  if wd.is_done(wdir, "convert"):
    return f"finished earlier ({wd.done_path(wdir, 'convert')})"
  from ce2l_jax import convert
  from ce2l_jax.trainers import cyclegan
  params, step = cyclegan.restore_params(config.cyclegan, wd.checkpoint_dir(wdir, "cyclegan"),
                                         step=config.convert.get("checkpoint_step"))
  summary = convert.convert_dataset(config, wdir, {r: params[r] for r in cyclegan.GEN_ROLES})
  wd.write_done(wdir, "convert", dict(summary, cyclegan_checkpoint_step=step))
  return f"done: {summary.get('num_records')} images converted"


def reid_trainer(config: ml_collections.ConfigDict):
  """The module that trains the re-ID stage: `trainers/reid.py`, or `trainers/d2rl.py` when
  `reid.trainer = 'd2rl'` (same functions: build_train_pipeline, model_info, create_model,
  make_predict_fn, train, restore_variables)."""
  if config.reid.get("trainer", "reid") == "d2rl":
    from ce2l_jax.trainers import d2rl
    return d2rl
  from ce2l_jax.trainers import reid
  return reid


def stage_reid(config: ml_collections.ConfigDict, wdir: str) -> str:
  if wd.is_done(wdir, "reid"):
    return f"finished earlier ({wd.done_path(wdir, 'reid')})"
  if _trainer(config) == "handcrafted":
    return _stage_reid_handcrafted(config, wdir)
  import jax
  from ce2l_jax import convert
  from ce2l_jax import evaluate as ev
  from ce2l_jax.metric_writer import MetricWriter
  reid = reid_trainer(config)
  t = time.perf_counter()
  cfg, mesh, sdir = config.reid, _mesh(config), wd.stage_dir(wdir, "reid")
  converted = {}
  if conversion_enabled(config):
    if not convert.is_complete(wdir):
      raise FileNotFoundError(
          f"cyclegan.enabled but there is no finished conversion in {convert.stage_dir(wdir)}: run "
          "the cyclegan and convert stages first, or set cyclegan.enabled=False")
    converted = dict(converted_data_dir=convert.converted_data_dir(wdir), converted_name=convert.DATASET_NAME)
  pipe = reid.build_train_pipeline(config, mesh, **converted)
  wd.write_json(os.path.join(sdir, reid.MODEL_INFO), reid.model_info(cfg, pipe))
  model = reid.create_model(cfg, pipe.num_classes)
  eval_fn = None
  if cfg.eval_every:
    evaluator = ev.make_evaluator(config, reid.make_predict_fn(model), mesh)
    eval_fn = lambda variables, step: evaluator.run_periodic(variables)
  writer = MetricWriter(wdir, reid.STAGE)
  try:
    with kill_after_first_checkpoint("reid"):
      state = reid.train(config, sdir, pipe.iterator(), pipe.num_classes, mesh, model=model,
                         steps_per_epoch=pipe.steps_per_epoch, eval_fn=eval_fn, writer=writer)
  finally:
    writer.close()
  step = int(jax.device_get(state.step))
  wd.write_done(wdir, "reid", {"step": step, "model": cfg.model, "converted_images": bool(converted),
                               "seconds": time.perf_counter() - t})
  return f"done: {cfg.model}, {step} steps"


def _trainer(config: ml_collections.ConfigDict) -> str:
  return str(config.reid.get("trainer", "reid"))


def _stage_reid_handcrafted(config: ml_collections.ConfigDict, wdir: str) -> str:
  """No network: the cross-modality metrics of `handcrafted.metrics` fitted on the training
  descriptors (`trainers/handcrafted.py`), saved in the stage folder."""
  from ce2l_jax.trainers import handcrafted
  t = time.perf_counter()
  info = handcrafted.fit(config, wd.stage_dir(wdir, "reid"))
  wd.write_done(wdir, "reid", dict(info, trainer="handcrafted", feature=config.handcrafted.feature,
                                   seconds=time.perf_counter() - t))
  learned = ", ".join(info["learned"]) or "nothing to learn (Euclidean)"
  return f"done: {config.handcrafted.feature} descriptors, fitted {learned}"


class _Progress:
  """An iterable with a tqdm bar over another one that has `len` (the eval batches)."""

  def __init__(self, inner, desc: str):
    self.inner, self.desc = inner, desc

  def __len__(self):
    return len(self.inner)

  def __iter__(self):
    from tqdm import tqdm
    yield from tqdm(self.inner, total=len(self.inner), desc=self.desc, unit="batch",
                    dynamic_ncols=True, leave=False)


def stage_evaluate(config: ml_collections.ConfigDict, wdir: str) -> str:
  if wd.is_done(wdir, "evaluate"):
    return f"finished earlier ({wd.done_path(wdir, 'evaluate')})"
  import jax
  from ce2l_jax import evaluate as ev
  from ce2l_jax import metrics
  from ce2l_jax.metric_writer import MetricWriter
  reid = reid_trainer(config)

  t = time.perf_counter()
  mesh = _mesh(config)
  test_set = ev.open_test_set(config)
  if _trainer(config) == "handcrafted":  # no network: a row per metric of the descriptor
    from ce2l_jax.trainers import handcrafted
    rows = handcrafted.evaluate_rows(config, wd.stage_dir(wdir, "reid"), test_set,
                                     progress=_Progress)
    step, feats, trials = None, None, None
  else:
    model, variables, step = reid.restore_variables(config, wd.stage_dir(wdir, "reid"), mesh)
    predict = reid.make_predict_fn(model)
    if config.eval.get("metric_learning", "none") == "hcml":  # configs/hcml.py
      from ce2l_jax.trainers import hcml
      predict, variables = hcml.metric_predict_fn(config, predict, variables, mesh)
    evaluator = ev.make_evaluator(config, predict, mesh, test_set)
    evaluator.batches = _Progress(evaluator.batches, "test features")
    feats = evaluator.features(variables)
    evaluator.features = lambda _: feats  # the protocol's settings and trials reuse them
    rows = {row_name(config): evaluator.run(variables)}
    if config.eval.get("rerank", False):  # the same features, k-reciprocal re-ranked distances
      rows[f"{row_name(config)} + re-ranking"] = evaluator.run(
          variables, rerank=ev.rerank_params(config.eval))
    trials = evaluator.trials()
  if config.eval.get("baseline", True):
    base = ev.make_evaluator(config, ev.raw_pixel_predict_fn(tuple(config.eval.baseline_size)),
                             mesh, test_set)
    base.batches = _Progress(base.batches, "raw pixels")
    rows[BASELINE_ROW] = base.run({})

  sdir = wd.stage_dir(wdir, "evaluate")
  if jax.process_index() == 0:
    wd.write_text(os.path.join(sdir, "results.json"), metrics.results_to_json(rows) + "\n")
    wd.write_text(os.path.join(sdir, "results.md"), report.results_markdown(config, rows, step=step))
    writer = MetricWriter(wdir, "evaluate")
    for name, results in rows.items():
      prefix = "test" if name != BASELINE_ROW else "baseline"
      writer.write_scalars(step or 0, {f"{prefix}/{k}": v for k, v in ev.flat_means(results).items()})
    writer.close()
    report.draw_cmc(rows, os.path.join(wdir, "cmc.png"), title=f"CMC, {config.data.name}")
    if feats is not None:
      report.draw_ranking_examples(config, test_set, feats, trials, os.path.join(wdir, "ranking_examples.png"))
  wd.write_done(wdir, "evaluate", {"step": step, "seconds": time.perf_counter() - t})
  first = next(iter(rows[row_name(config)]))
  m = rows[row_name(config)][first].mean
  return f"done: {first} rank-1 {100 * m['rank1']:.2f}%, mAP {100 * m['mAP']:.2f}%"


# --------------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------------

_RUNNERS = {"cyclegan": stage_cyclegan, "convert": stage_convert, "reid": stage_reid,
            "evaluate": stage_evaluate}


def parse_stages(stages: Iterable[str] | str | None) -> list[str]:
  """Selected stage names in pipeline order; UserError naming an unknown one."""
  if stages is None:
    return list(STAGES)
  if isinstance(stages, str):
    stages = stages.split(",")
  chosen = [s.strip() for s in stages if s.strip()]
  for s in chosen:
    if s not in STAGES:
      close = difflib.get_close_matches(s, STAGES, n=1)
      raise UserError(f"unknown stage {s!r}" + (f" (did you mean '{close[0]}'?)" if close else "")
                      + f"; stages: {', '.join(STAGES)}")
  if not chosen:
    raise UserError(f"--stages is empty; stages: {', '.join(STAGES)}")
  return [s for s in STAGES if s in chosen]


def run(config: ml_collections.ConfigDict, workdir: str | None, stages: Iterable[str] | None = None,
        force: bool = False) -> dict | None:
  """Runs the selected stages of the config on every trial, then writes and prints the results.

  Returns the results rows `{row: {setting: TrialResults}}` (None when nothing is evaluated).
  Raises UserError for anything the user fixes (message meant for one line).
  """
  if not workdir:
    raise UserError("--workdir is required (where checkpoints and results go)")
  selected = parse_stages(stages)
  config = prepare_config(config)
  workdir = os.path.abspath(os.path.expanduser(workdir))
  # Everything that can refuse the run does so before anything is written.
  config_check.check_workdir_config(workdir, config, force)
  trials = trials_of(config)
  for t in trials:
    check_inputs(trial_config(config, t), wd.trial_dir(workdir, t), selected)
  ensure_data(config)
  config_check.write_config(workdir, config)

  times: dict[str, float] = {}
  for i, t in enumerate(trials):
    cfg, wdir = trial_config(config, t), wd.trial_dir(workdir, t)
    os.makedirs(wdir, exist_ok=True)
    head = f"[trial {t}, {i + 1}/{len(trials)}] " if t else ""
    for stage in selected:
      print(f"{head}== {stage}", flush=True)
      start = time.perf_counter()
      message = _RUNNERS[stage](cfg, wdir)
      elapsed = time.perf_counter() - start
      times[stage] = times.get(stage, 0.0) + elapsed
      print(f"{head}{stage}: {message} [{elapsed:.0f} s]", flush=True)
  rows = report.summarize(config, workdir, trials) if "evaluate" in selected else None
  print("stage times: " + ", ".join(f"{s} {v:.0f} s" for s, v in times.items()), flush=True)
  return rows
