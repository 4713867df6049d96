"""A CE²L run, stage by stage: data → cyclegan → convert → reid → evaluate (what run.py calls).

  run(config, workdir, stages=STAGES, force=False) -> rows of the results table

Stages and what each reads / writes (under `<workdir>/`, or `<workdir>/trial<N>/` per RegDB trial):

  data       (always) checks `config.data.name` is built in `data.data_dir`; a synthetic_vireid
             dataset that is not is built there (seconds), a real one gives the build command.
  cyclegan   trains the CycleGAN on the training split → `cyclegan/` (checkpoints, samples,
             DONE) and `conversion_samples.png` (real → converted → reconstructed, both ways).
  convert    the CycleGAN's generators on every training image → `convert/` (TFDS dataset, DONE).
  reid       the re-ID network on real + converted images → `reid/` (checkpoints, DONE).
  evaluate   the re-ID checkpoint on the test protocol (+ the raw-pixel baseline) →
             `evaluate/` (results.json, results.md, DONE), `ranking_examples.png`, `cmc.png`.
Then `<workdir>/results.md`, `results.json` (and for several RegDB trials their pooled
`cmc.png`); the table is printed.

With `cyclegan.enabled=False` (the no-conversion baseline) the cyclegan and convert stages do
nothing and the re-ID stage trains on real images only.

Idempotent: a stage whose DONE marker exists is skipped; an interrupted one resumes from its
last checkpoint (the trainers restore the state and the input position). A stage whose input is
missing (e.g. `--stages=reid` with the CycleGAN enabled and no converted dataset) stops before
anything runs, naming the stage to run first. `<workdir>/config.json` is written at the start
(after those checks);
a workdir made with another config is refused, naming the differing keys, unless `force`
(keys that cannot change the results, `IGNORED_KEYS`, may differ).

Test hook: with the environment variable `CE2L_KILL_AFTER_CHECKPOINT=<stage>` (cyclegan or reid)
the process exits (`os._exit(KILLED_EXIT_CODE)`, no clean-up, as a SIGKILL) right after that
stage's first checkpoint is written.
"""

from __future__ import annotations

import contextlib
import difflib
import glob
import importlib.util
import json
import os
import shutil
import sys
import time
from typing import Any, Iterable, Mapping, Sequence

import ml_collections
import numpy as np

from ce2l_jax.config_check import ConfigError, check_known_keys, diff_configs, flatten

STAGES = ("cyclegan", "convert", "reid", "evaluate")
# Keys that change how a run is watched or stored, never its numbers: a workdir may be resumed
# with other values. Prefixes of dotted keys.
IGNORED_KEYS = (
    "name",                                   # the results table's row name
    "data.data_dir",                          # where the same dataset is read from
    "cyclegan.log_every", "cyclegan.eval_every", "cyclegan.checkpoint_every",
    "cyclegan.max_to_keep", "cyclegan.num_samples",
    "convert.keep_chunks",
    "input.threads", "input.prefetch", "input.worker_buffer",  # the stream is the same for any
    "reid.log_every", "reid.eval_every", "reid.checkpoint_every", "reid.keep_checkpoints",
    "reid.progress_bar",
    "eval.periodic_trials",                   # only the periodic (during training) evaluation
)
KILL_ENV = "CE2L_KILL_AFTER_CHECKPOINT"
KILLED_EXIT_CODE = 137
DONE = "DONE"
# Display names of the protocol settings (results.json keeps the machine names).
SETTING_NAMES = {
    "all_single": "all-search single-shot", "all_multi": "all-search multi-shot",
    "indoor_single": "indoor-search single-shot", "indoor_multi": "indoor-search multi-shot",
    "visible_to_thermal": "visible→thermal", "thermal_to_visible": "thermal→visible",
}
BASELINE_ROW = "raw pixels"
# The schema every config must fit (a key it lacks is a typo in a config file), and the sections
# whose keys are free (model constructor keywords).
BASE_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                           "base.py")
FREE_KEYS = ("reid.model_kwargs",)


class UserError(Exception):
  """A problem the user fixes (config, workdir, missing input); shown as one line."""


# --------------------------------------------------------------------------------------------
# Config files and checks
# --------------------------------------------------------------------------------------------


def load_config_file(spec: str, check_keys: bool = True) -> ml_collections.ConfigDict:
  """`get_config(arg)` of a config file, `spec` = 'path' or 'path:arg' (as config_flags).

  With `check_keys`, a key that configs/base.py does not have (a typo in the file, e.g.
  `c.reid.lrr = 0.1`) is a UserError naming it.
  """
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    folder = os.path.dirname(path) or "."
    known = sorted(glob.glob(os.path.join(folder, "*.py")))
    close = difflib.get_close_matches(path, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else (
        f"; config files: {', '.join(known)}" if known else "")
    raise UserError(f"config file {path!r} not found{hint}")
  name = "ce2l_config_" + os.path.splitext(os.path.basename(path))[0]
  module_spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  try:
    config = module.get_config(arg) if arg else module.get_config()
  except ValueError as e:
    raise UserError(f"{spec}: {e}") from None
  if check_keys:
    check_schema(config, where=f" in {path}")
  return config


def reference_config() -> ml_collections.ConfigDict:
  """configs/base.py's config: every key a run config may have (plus FREE_KEYS sections)."""
  return load_config_file(BASE_CONFIG, check_keys=False)


def check_schema(config: ml_collections.ConfigDict, where: str = "") -> None:
  """UserError for a key that configs/base.py lacks (`config_check.check_known_keys`)."""
  try:
    check_known_keys(config, reference_config(), free=FREE_KEYS, where=where)
  except ConfigError as e:
    raise UserError(str(e)) from None


def _choices() -> dict[str, tuple]:
  from ce2l_jax.data.augment import CHANNEL_MODES
  from ce2l_jax.models import MODEL_NAMES
  return {
      "data.protocol": ("sysu", "regdb"),
      "input.preset": ("modern", "paper"),
      "input.channel_aug.mode": tuple(CHANNEL_MODES),
      "reid.model": tuple(MODEL_NAMES),
      "reid.optimizer": ("sgd", "adam", "adamw"),
      "reid.schedule": ("constant", "warmup_step"),
      "reid.lsr_on": ("all", "converted", "none"),
      "reid.nan_policy": ("stop", "skip"),
      "eval.protocol": ("auto", "sysu", "regdb"),
      "eval.metric": ("euclidean", "cosine"),
      "eval.sampling": ("auto", "random", "official"),
      "convert.resample": ("bilinear", "bicubic", "lanczos"),
  }


def check_config(config: ml_collections.ConfigDict) -> None:
  """One-line UserErrors for values a type check cannot catch (choices, missing dataset)."""
  flat = flatten(config)
  for key, allowed in _choices().items():
    if key in flat and flat[key] not in allowed:
      close = difflib.get_close_matches(str(flat[key]), [str(a) for a in allowed], n=1)
      hint = f" (did you mean {close[0]!r}?)" if close else ""
      raise UserError(f"config key '{key}' must be one of {', '.join(map(str, allowed))}; got "
                      f"{flat[key]!r}{hint}")
  if not config.data.name:
    raise UserError("config.data.name is empty: use a dataset config (configs/sysu.py, regdb.py, "
                    "synthetic.py) or set --config.data.name")
  if config.data.protocol == "regdb":
    for t in trials_of(config):
      if not 1 <= t <= 10:
        raise UserError(f"RegDB trials are 1..10; got {t} (data.trial / data.trials)")


def prepare_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A resolved, unlocked copy (references followed), `~` expanded, checked."""
  config = config.copy_and_resolve_references()
  if config.is_locked:
    config.unlock()
  if config.data.get("data_dir"):
    config.data.data_dir = os.path.abspath(os.path.expanduser(config.data.data_dir))
  check_schema(config)
  check_config(config)
  return config


def _config_json(config: ml_collections.ConfigDict) -> str:
  return config.to_json_best_effort(indent=2, sort_keys=True)


def _is_chief() -> bool:
  """Process 0 writes the run's files (multi-host runs share the workdir)."""
  import jax
  return jax.process_index() == 0


def _atomic_write(path: str, text: str) -> None:
  if not _is_chief():
    return
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def _short(v: Any) -> str:
  s = json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else repr(v)
  return s if len(s) <= 40 else s[:37] + "..."


def check_workdir_config(workdir: str, config: ml_collections.ConfigDict, force: bool) -> None:
  """Compares `config` with `<workdir>/config.json` (but for IGNORED_KEYS): UserError naming the
  differing keys, or with `force` a warning."""
  path = os.path.join(workdir, "config.json")
  current = json.loads(_config_json(config))
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    keys = diff_configs(saved, current, ignore=IGNORED_KEYS)
    if keys and not force:
      a, b = flatten(saved), flatten(current)
      shown = ", ".join(f"{k} ({_short(a.get(k, '<missing>'))} → {_short(b.get(k, '<missing>'))})"
                        for k in keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
      raise UserError(f"{workdir} was made with another config; differing keys: {shown}. Rerun with "
                      "the same config, choose another --workdir, or pass --force to go on anyway "
                      "(finished stages are not redone: delete their folders to redo them)")
    if keys:
      print(f"warning: --force: going on in {workdir} with a config that differs in "
            f"{', '.join(keys)}; finished stages are kept", file=sys.stderr)


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """`<workdir>/config.json`, atomically (the run's config as it starts)."""
  _atomic_write(os.path.join(workdir, "config.json"), _config_json(config) + "\n")


# --------------------------------------------------------------------------------------------
# Trials and data
# --------------------------------------------------------------------------------------------


def trials_of(config: ml_collections.ConfigDict) -> list[int]:
  """RegDB: [data.trial] or data.trials (trial 0); other protocols: [0] (one run)."""
  if config.data.protocol != "regdb":
    return [0]
  if "/trial" in config.data.name:
    return [int(config.data.name.rsplit("/trial", 1)[1])]
  if config.data.trial:
    return [int(config.data.trial)]
  return [int(t) for t in config.data.trials]


def trial_config(config: ml_collections.ConfigDict, trial: int) -> ml_collections.ConfigDict:
  """The config of one RegDB trial (`data.name` = regdb/trial<N>); other protocols: config."""
  if not trial:
    return config
  c = ml_collections.ConfigDict(config.to_dict())
  if "/trial" not in c.data.name:
    c.data.name = f"{c.data.name}/trial{trial}"
  c.data.trial = trial
  return c


def trial_dir(workdir: str, trial: int) -> str:
  return os.path.join(workdir, f"trial{trial}") if trial else workdir


def dataset_is_built(name: str, data_dir: str) -> bool:
  """True when `<data_dir>/<name>/<version>/dataset_info.json` exists (no TFDS import)."""
  return bool(glob.glob(os.path.join(data_dir, name.split(":")[0], "*", "dataset_info.json")))


def _build_hint(name: str, data_dir: str) -> str:
  base, _, config = name.partition("/")
  folder = os.path.join("tfds_builders", base)
  return (f"python -m ce2l_jax.tfds_build {folder}" + (f" --config={config}" if config else "")
          + f" --manual_dir=<folder holding the released dataset> --data_dir={data_dir}")


def ensure_data(config: ml_collections.ConfigDict) -> None:
  """The `data` step: builds a missing synthetic dataset; a missing real one is a UserError.

  Several processes: process 0 builds first, the others wait for it (a shared disk then holds
  the dataset; two concurrent builds into one folder collide) and build only what they still
  miss (hosts with their own disks).
  """
  import jax
  data_dir = config.data.data_dir
  synthetic = []
  for t in trials_of(config):
    name = trial_config(config, t).data.name
    if dataset_is_built(name, data_dir):
      continue
    base, _, cfg_name = name.partition("/")
    if base == "synthetic_vireid":
      synthetic.append((name, cfg_name or "small"))
      continue
    raise UserError(f"dataset {name!r} is not built in {data_dir}: build it with `"
                    f"{_build_hint(name, data_dir)}` (docs/notes/issue3_real.md), or set "
                    "--config.data.data_dir")
  multi = jax.process_count() > 1
  if multi:
    from jax.experimental import multihost_utils
  if multi and not _is_chief():
    multihost_utils.sync_global_devices("ce2l_ensure_data")
  for name, cfg_name in synthetic:
    if not dataset_is_built(name, data_dir):
      build_synthetic(cfg_name, data_dir)
  if multi and _is_chief():
    multihost_utils.sync_global_devices("ce2l_ensure_data")


def build_synthetic(config_name: str, data_dir: str) -> None:
  """Builds `synthetic_vireid/<config_name>` into `data_dir` (seconds; array_record, no TF)."""
  from tfds_builders.synthetic_vireid.synthetic_vireid_dataset_builder import SyntheticVireid
  names = [c.name for c in SyntheticVireid.BUILDER_CONFIGS]
  if config_name not in names:
    raise UserError(f"synthetic_vireid has no config {config_name!r}; configs: {', '.join(names)}")
  print(f"data: building synthetic_vireid/{config_name} into {data_dir} (first run only)", flush=True)
  t = time.perf_counter()
  SyntheticVireid(config=config_name, data_dir=data_dir, file_format="array_record").download_and_prepare()
  print(f"data: built in {time.perf_counter() - t:.1f} s", flush=True)


# --------------------------------------------------------------------------------------------
# Stage state
# --------------------------------------------------------------------------------------------


def conversion_enabled(config: ml_collections.ConfigDict) -> bool:
  return bool(config.cyclegan.enabled) and bool(config.convert.get("enabled", True))


def done_path(wdir: str, stage: str) -> str:
  return os.path.join(wdir, stage, DONE)


def is_done(wdir: str, stage: str) -> bool:
  return os.path.exists(done_path(wdir, stage))


def _write_done(wdir: str, stage: str, info: Mapping[str, Any]) -> None:
  _atomic_write(done_path(wdir, stage), json.dumps(dict(info), indent=1) + "\n")


def check_inputs(config: ml_collections.ConfigDict, wdir: str, stages: Sequence[str]) -> None:
  """Every selected stage's input exists or is made by an earlier selected stage."""
  will = set(stages)
  conv = conversion_enabled(config)

  def available(stage: str) -> bool:
    return stage in will or is_done(wdir, stage)

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
    if is_done(wdir, stage) or (stage in ("cyclegan", "convert") and not conv):
      continue
    missing = chain(stage)
    if missing:
      first = missing[-1]
      order = [s for s in STAGES if s in set(missing) | will]
      hint = (" (or --config.cyclegan.enabled=false for the no-conversion baseline)"
              if first in ("cyclegan", "convert") else "")
      raise UserError(f"stage '{stage}' reads {where[first].format(wdir)}, which is not there: run "
                      f"the {first} stage first: --stages={','.join(order)}{hint}")


@contextlib.contextmanager
def _kill_after_first_checkpoint(stage: str):
  """The test hook of the module docstring (a no-op unless $CE2L_KILL_AFTER_CHECKPOINT=stage)."""
  if os.environ.get(KILL_ENV, "") != stage:
    yield
    return
  from ce2l_jax import checkpoint
  original = checkpoint.Checkpointer.save

  def save_then_die(self, step, *args, **kwargs):
    saved = original(self, step, *args, **kwargs)
    self.wait()
    print(f"\n{KILL_ENV}={stage}: exiting after the checkpoint of step {step}", flush=True)
    sys.stderr.flush()
    os._exit(KILLED_EXIT_CODE)
    return saved

  checkpoint.Checkpointer.save = save_then_die
  try:
    yield
  finally:
    checkpoint.Checkpointer.save = original


# --------------------------------------------------------------------------------------------
# The stages
# --------------------------------------------------------------------------------------------


def stage_cyclegan(config: ml_collections.ConfigDict, wdir: str) -> str:
  if not config.cyclegan.enabled:
    return "off (cyclegan.enabled=false: no-conversion baseline)"
  from ce2l_jax.trainers import cyclegan
  skipped = cyclegan.is_done(wdir)
  with _kill_after_first_checkpoint("cyclegan"):
    result = cyclegan.train_and_evaluate(config, wdir)
  if not (skipped and os.path.exists(os.path.join(wdir, "conversion_samples.png"))):
    write_conversion_samples(config, wdir)
  if skipped:
    return f"finished earlier ({done_path(wdir, 'cyclegan')})"
  keys = ("heldout_cycle_l1_rgb", "heldout_cycle_l1_ir", "rgb2ir_target_share", "ir2rgb_target_share")
  return "done: " + ", ".join(f"{k}={result[k]:.3f}" for k in keys if k in (result or {}))


def write_conversion_samples(config: ml_collections.ConfigDict, wdir: str) -> str:
  """`<wdir>/conversion_samples.png`: the final CycleGAN on `cyclegan.num_samples` held-out
  images per modality (real → converted → reconstructed, both directions), enlarged to be seen.
  (The stage's own grids, `cyclegan/samples/step_*.png`, are at the generator's size.)"""
  import jax
  from ce2l_jax import conversion_quality, parallel, plots
  from ce2l_jax.trainers import cyclegan
  cfg = config.cyclegan
  mesh = parallel.make_mesh(config.mesh.get("num_devices") or None)
  params, _ = cyclegan.restore_params(cfg, cyclegan.checkpoint_dir(wdir), mesh)
  n = int(cfg.num_samples)  # the batch the stage compiled `translate` for
  images = conversion_quality.load_images(config, cfg.heldout_split, n, tuple(cfg.image_size))
  m = min(len(images["rgb"]), len(images["ir"]))
  pad = lambda a: np.concatenate([a[:m], np.zeros((n - m, *a.shape[1:]), a.dtype)])
  out = jax.device_get(cyclegan.step_functions(cfg, mesh)[4](params, pad(images["rgb"]), pad(images["ir"])))
  out = {k: np.asarray(v)[:m] for k, v in out.items()}
  path = os.path.join(wdir, "conversion_samples.png")
  if jax.process_index() == 0:
    plots.save_conversion_samples(out, path)
  return path


def stage_convert(config: ml_collections.ConfigDict, wdir: str) -> str:
  if not conversion_enabled(config):
    return "off (no conversion: cyclegan.enabled or convert.enabled is false)"
  from ce2l_jax import convert
  if convert.is_complete(wdir):
    return f"finished earlier ({done_path(wdir, 'convert')})"
  summary = convert.convert_dataset(config, wdir)
  return f"done: {summary.get('num_records')} images converted"


def stage_reid(config: ml_collections.ConfigDict, wdir: str) -> str:
  if is_done(wdir, "reid"):
    return f"finished earlier ({done_path(wdir, 'reid')})"
  from ce2l_jax import checkpoint
  from ce2l_jax.trainers import reid
  t = time.perf_counter()
  if os.path.isdir(reid.checkpoint_dir(wdir)):
    ckpt = checkpoint.Checkpointer(reid.checkpoint_dir(wdir), max_to_keep=None)
    if ckpt.latest_step() is not None:
      print(f"reid: resuming from the checkpoint of step {ckpt.latest_step()}", flush=True)
    ckpt.close()
  with _kill_after_first_checkpoint("reid"):
    reid.train_and_evaluate(config, wdir, final_eval=False)
  ckpt = checkpoint.Checkpointer(reid.checkpoint_dir(wdir), max_to_keep=None)
  step = ckpt.latest_step()
  ckpt.close()
  _write_done(wdir, "reid", {"step": step, "model": config.reid.model,
                             "converted_images": conversion_enabled(config),
                             "seconds": time.perf_counter() - t})
  return f"done: {config.reid.model}, {step} steps"


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
  if is_done(wdir, "evaluate"):
    return f"finished earlier ({done_path(wdir, 'evaluate')})"
  import jax
  from ce2l_jax import evaluate as ev
  from ce2l_jax import metrics, parallel
  from ce2l_jax.metric_writer import MetricWriter
  from ce2l_jax.trainers import reid

  t = time.perf_counter()
  mesh = parallel.make_mesh(config.mesh.get("num_devices") or None)
  model, variables, step = reid.restore_variables(config, wdir, mesh)
  test_set = ev.open_test_set(config)
  evaluator = ev.make_evaluator(config, reid.make_predict_fn(model), mesh, test_set)
  evaluator.batches = _Progress(evaluator.batches, "test features")
  feats = evaluator.features(variables)
  evaluator.features = lambda _: feats  # the protocol's settings and trials reuse them
  rows = {row_name(config): evaluator.run(variables)}
  if config.eval.get("baseline", True):
    base = ev.make_evaluator(config, ev.raw_pixel_predict_fn(tuple(config.eval.baseline_size)),
                             mesh, test_set)
    base.batches = _Progress(base.batches, "raw pixels")
    rows[BASELINE_ROW] = base.run({})

  sdir = os.path.join(wdir, "evaluate")
  if jax.process_index() == 0:
    _atomic_write(os.path.join(sdir, "results.json"), metrics.results_to_json(rows) + "\n")
    _atomic_write(os.path.join(sdir, "results.md"), results_markdown(config, rows, step=step))
    writer = MetricWriter(wdir, "evaluate")
    for name, results in rows.items():
      prefix = "test" if name != BASELINE_ROW else "baseline"
      writer.write_scalars(step, {f"{prefix}/{k}": v for k, v in ev.flat_means(results).items()})
    writer.close()
    draw_cmc(rows, os.path.join(wdir, "cmc.png"), title=f"CMC, {config.data.name}")
    draw_ranking_examples(config, test_set, feats, evaluator.trials(), os.path.join(wdir, "ranking_examples.png"))
  _write_done(wdir, "evaluate", {"step": step, "seconds": time.perf_counter() - t})
  first = next(iter(rows[row_name(config)]))
  m = rows[row_name(config)][first].mean
  return f"done: {first} rank-1 {100 * m['rank1']:.2f}%, mAP {100 * m['mAP']:.2f}%"


# --------------------------------------------------------------------------------------------
# Results and pictures
# --------------------------------------------------------------------------------------------


def results_markdown(config: ml_collections.ConfigDict, rows: Mapping[str, Mapping[str, Any]], *,
                     step: int | None = None, trials: Sequence[int] | None = None) -> str:
  from ce2l_jax import metrics
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
  from ce2l_jax import metrics
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
  from ce2l_jax import metrics, plots
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
  if sysu:  # the SYSU rule: a camera-3 query does not see camera-2 gallery images
    d = np.where((test_set.camid[q] == 3)[:, None] & (test_set.camid[g] == 2)[None, :], np.inf, d)
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
  from ce2l_jax import metrics
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
  from ce2l_jax import metrics
  found = [(t, os.path.join(trial_dir(workdir, t), "evaluate", "results.json")) for t in trials]
  found = [(t, p) for t, p in found if os.path.exists(p)]
  if not found:
    return None
  per_trial = [_load_trial_results(p) for _, p in found]
  rows = {}
  for row in per_trial[0]:
    rows[row] = {s: metrics.pool_results([r[row][s] for r in per_trial if row in r and s in r[row]])
                 for s in per_trial[0][row]}
  done_trials = [t for t, _ in found]
  if not _is_chief():
    return rows
  _atomic_write(os.path.join(workdir, "results.json"), metrics.results_to_json(rows) + "\n")
  _atomic_write(os.path.join(workdir, "results.md"), results_markdown(config, rows, trials=done_trials))
  if done_trials != [0]:
    draw_cmc(rows, os.path.join(workdir, "cmc.png"),
             title=f"CMC, {config.data.name}, {len(done_trials)} trial(s)")
    first = trial_dir(workdir, done_trials[0])
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
  check_workdir_config(workdir, config, force)
  trials = trials_of(config)
  for t in trials:
    check_inputs(trial_config(config, t), trial_dir(workdir, t), selected)
  ensure_data(config)
  write_config(workdir, config)

  times: dict[str, float] = {}
  for i, t in enumerate(trials):
    cfg, wdir = trial_config(config, t), trial_dir(workdir, t)
    os.makedirs(wdir, exist_ok=True)
    head = f"[trial {t}, {i + 1}/{len(trials)}] " if t else ""
    for stage in selected:
      print(f"{head}== {stage}", flush=True)
      start = time.perf_counter()
      message = _RUNNERS[stage](cfg, wdir)
      elapsed = time.perf_counter() - start
      times[stage] = times.get(stage, 0.0) + elapsed
      print(f"{head}{stage}: {message} [{elapsed:.0f} s]", flush=True)
  rows = summarize(config, workdir, trials) if "evaluate" in selected else None
  print("stage times: " + ", ".join(f"{s} {v:.0f} s" for s, v in times.items()), flush=True)
  return rows
