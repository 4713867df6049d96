"""The training loop every trainer calls: a library of small functions, not an engine class.

A trainer writes its config, optimiser, losses, step maths and state creation (a
`flax.struct` pytree with a `step` field); this module does the rest, once:

  gate(old, new, checks, params)   inside the step: the update is applied only when every
                                   checked scalar and every updated parameter is finite
  jit_step(step_fn, mesh, axis)    `jax.jit` over the `data` mesh: state replicated and donated,
                                   batch sharded on `axis`; on CPU with the XLA scheduler the
                                   trainer asks for (`cpu_compiler_options`)
  cached(key, build)               compiled steps reused across `train` calls of one process
  abstract_state(create, mesh)     the restore target (shapes, dtypes, replicated shardings)
  restore_or_init(...)             resume order: the workdir's latest checkpoint, then
                                   `config.resume`, then `config.init`, then scratch
  itstime(step, every, total)      the one predicate for logging, checkpointing, evaluating
  run(cfg, state, step, ...)       the loop: step → log window → log → checkpoint → eval →
                                   progress; the non-finite policy on the host, one step late

The non-finite policy (`<section>.nan_policy`): the step's `gate` has already kept the old
state; the host reads the step's `finite/<name>` flags one step late (so dispatch runs ahead)
and, with 'stop', raises `NonFiniteError` naming the step, the terms and the last good
checkpoint (a state is saved only after its own step was checked, so no checkpoint holds a
non-finite parameter); with 'skip' it counts the step (`skipped` in the log) and goes on.

`metrics.jsonl` holds every logged step once however often a run is resumed: at its start the
loop drops the rows of its stage with a step after the one it resumes from (a killed run's rows
that its checkpoint does not cover).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import time
from typing import Any, Callable, Iterator, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ce2l_jax import checkpoint, parallel
from ce2l_jax.metric_writer import MetricWriter

# Config fields only the host loop reads: changing them never changes the compiled step.
LOOP_FIELDS = ("nan_policy", "log_every", "eval_every", "checkpoint_every", "max_to_keep",
               "progress")
NAN_POLICIES = ("stop", "skip")


class NonFiniteError(FloatingPointError):
  """A loss term, a gradient norm or an updated parameter was NaN or infinite (policy 'stop')."""


# --------------------------------------------------------------------------------------------
# Inside the step
# --------------------------------------------------------------------------------------------


def all_finite(tree: Any) -> jax.Array:
  """True when every element of every leaf is finite (elementwise: a norm can overflow alone)."""
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def gate(old: Any, new: Any, checks: Mapping[str, jax.Array], params: Any) -> tuple[Any, dict[str, jax.Array]]:
  """(state, flags): `new` when every scalar of `checks` and every leaf of `params` (the updated
  parameters) is finite, else `old` with `new`'s step count.

  `flags` holds `finite/<name>` for each check and `finite/update` for the parameters, and
  `skipped` (1.0 when the update was dropped): merge them into the step's metrics.
  """
  finite = {k: jnp.isfinite(v) for k, v in checks.items()}
  finite["update"] = all_finite(params)
  ok = jnp.all(jnp.stack(list(finite.values())))
  state = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old).replace(step=new.step)
  flags = {f"finite/{k}": v for k, v in finite.items()}
  flags["skipped"] = (~ok).astype(jnp.float32)
  return state, flags


# --------------------------------------------------------------------------------------------
# Compiling, restoring
# --------------------------------------------------------------------------------------------


def fast_compile_options(cfg) -> dict[str, Any] | None:
  """A stage's `fast_compile` on CPU: no LLVM optimisation (compiles ~5× faster, runs slower;
  for seconds-long smoke runs and tests)."""
  if cfg.get("fast_compile") and jax.default_backend() == "cpu":
    return {"xla_backend_optimization_level": 0}
  return None


# XLA:CPU's instruction schedulers (`--xla_cpu_scheduler_type`), by the names a trainer and
# `CE2L_CPU_SCHEDULER` use. Measured round-robin in one process (benchmarks/bench_cpu_scheduler.py,
# docs/benchmarks.md): "memory" halves the re-ID steps' temp buffers (AGW ResNet-50 32+32:
# 8.35 → 4.89 GiB; BDTR AlexNet 64+64: 2.45 → 1.23 GiB) and makes them faster (−17 %, −16 %;
# the demo's resnet_tiny ±0), so the re-ID trainers ask for it; the CycleGAN's step gains no
# memory from it and the demo's runs 19–28 % slower under it, so the CycleGAN keeps "default".
CPU_SCHEDULERS = {"memory": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED",
                  "default": "CPU_SCHEDULER_TYPE_DEFAULT",
                  "concurrency": "CPU_SCHEDULER_TYPE_CONCURRENCY_OPTIMIZED"}
CPU_SCHEDULER_ENV = "CE2L_CPU_SCHEDULER"


def cpu_compiler_options(preferred: str = "default", backend: str | None = None) -> dict[str, Any]:
  """A step's compiler options: on CPU, XLA's scheduler named by `CE2L_CPU_SCHEDULER` when it is
  set (one choice for a whole run), else `preferred` (the one measured best for that step);
  nothing on other backends."""
  if preferred not in CPU_SCHEDULERS:
    raise ValueError(f"CPU scheduler {preferred!r}: use one of {', '.join(CPU_SCHEDULERS)}")
  scheduler = os.environ.get(CPU_SCHEDULER_ENV) or preferred
  if scheduler not in CPU_SCHEDULERS:
    raise ValueError(f"{CPU_SCHEDULER_ENV}={scheduler!r}: use one of {', '.join(CPU_SCHEDULERS)}")
  if (backend or jax.default_backend()) != "cpu":
    return {}
  return {"xla_cpu_scheduler_type": CPU_SCHEDULERS[scheduler]}


def jit_step(step_fn: Callable, mesh, batch_axis: int = 0,
             compiler_options: Mapping[str, Any] | None = None,
             scheduler: str = "default") -> Callable:
  """`step_fn(state, batch) -> (state, metrics)` jitted over `mesh`: state replicated and
  donated, every batch array sharded on `batch_axis`, metrics replicated; compiled with
  `cpu_compiler_options(scheduler)` and then `compiler_options`."""
  repl = parallel.replicated(mesh)
  options = {**cpu_compiler_options(scheduler), **(compiler_options or {})}
  return jax.jit(step_fn, in_shardings=(repl, parallel.batch_sharding(mesh, batch_axis)),
                 out_shardings=(repl, repl), donate_argnums=(0,),
                 compiler_options=options or None)


_CACHE: collections.OrderedDict[Any, Any] = collections.OrderedDict()
CACHE_SIZE = 8


def cached(key: Any, build: Callable[[], Any]) -> Any:
  """`build()` once per hashable `key` in this process (the 8 most recent kept): a resumed or
  repeated `train` call reuses the compiled step instead of compiling it again."""
  if key in _CACHE:
    _CACHE.move_to_end(key)
    return _CACHE[key]
  value = _CACHE[key] = build()
  while len(_CACHE) > CACHE_SIZE:
    _CACHE.popitem(last=False)
  return value


def config_key(cfg: Any, ignore: tuple[str, ...] = ()) -> str:
  """A cache key for a config section: its values but `LOOP_FIELDS` and `ignore`, as JSON."""
  values = {k: v for k, v in cfg.to_dict().items() if k not in LOOP_FIELDS + tuple(ignore)}
  return json.dumps(values, sort_keys=True, default=str)


def abstract_state(create: Callable[..., Any], mesh, *args: Any) -> Any:
  """The state `create(*args)` would make (`args` may be `jax.ShapeDtypeStruct`s), as shapes and
  dtypes with replicated shardings on `mesh`, computing nothing: a checkpoint's restore target."""
  repl = parallel.replicated(mesh)
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl),
                      jax.eval_shape(create, *args))


class Start(NamedTuple):
  """Where a run starts: `kind` is 'workdir', 'resume', 'init' or 'scratch'."""
  state: Any
  kind: str
  path: str | None
  data_restored: bool   # the input iterator continues from the checkpoint's position


def restore_or_init(ckpt: checkpoint.Checkpointer, target: Any, init: Callable[[str | None], Any],
                    train_iter: Any = None, *, resume: str | None = None, init_path: str | None = None,
                    resume_dir: Callable[[str], str] = lambda p: p) -> Start:
  """The workdir's latest checkpoint (`ckpt`), then `resume` (another run's folder, turned into
  its checkpoint folder by `resume_dir`), then `init(init_path)` (pretrained weights), then
  `init(None)` (scratch). A checkpoint restores into `target` (`abstract_state`), resharded
  onto the current mesh, and moves `train_iter` to the saved input position when it can.
  Restoring an input position saved by another number of processes is refused
  (`checkpoint.check_process_count`)."""
  kind, path = checkpoint.resolve_init(ckpt.directory, resume, init_path)
  if kind == "workdir" or kind == "resume":
    src = ckpt.directory if kind == "workdir" else resume_dir(path)
    source = ckpt if kind == "workdir" else checkpoint.Checkpointer(src, max_to_keep=None)
    try:
      step = source.latest_step()
      has_data = checkpoint.check_process_count(src, step)
      it = train_iter if has_data and hasattr(train_iter, "set_state") else None
      state = source.restore(target, it, step=step)
      if jax.process_index() == 0:
        print(f"resuming from the checkpoint of step {step} in {src}", flush=True)
    finally:
      if source is not ckpt:
        source.close()
    return Start(state, kind, src, it is not None)
  return Start(init(path if kind == "init" else None), kind, path, False)


def restore_latest(ckpt_dir: str, target: Any, step: int | None = None, what: str = "") -> tuple[Any, int]:
  """(state, step) of the checkpoint `step` (default: the latest) in `ckpt_dir`."""
  ckpt = checkpoint.Checkpointer(ckpt_dir, max_to_keep=None)
  try:
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no {what + ' ' if what else ''}checkpoint in {ckpt.directory}")
    return ckpt.restore(target, step=step), int(step)
  finally:
    ckpt.close()


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


def itstime(step: int, every: int, total: int | None = None) -> bool:
  """True at every multiple of `every` (never when `every` <= 0) and at the last step `total`."""
  return (every > 0 and step % every == 0) or (total is not None and step == total)


class Outcome(NamedTuple):
  state: Any
  logged: dict[str, float]      # the last logged row (window means)
  evaluated: dict[str, float]   # the last evaluation's numbers


def _window_row(rows: list[dict[str, Any]], seconds: float) -> dict[str, float]:
  """Means over the window's applied steps (all steps when none was); `lr` of the last step,
  `skipped` counted; `finite/*` flags left out."""
  good = [r for r in rows if not r.get("skipped")] or rows
  out: dict[str, float] = {}
  for k in rows[-1]:
    if k.startswith("finite/"):
      continue
    if k == "lr":
      out[k] = float(rows[-1][k])
    elif k == "skipped":
      out[k] = float(sum(r[k] for r in rows))
    else:
      out[k] = float(np.mean([r[k] for r in good]))
  out["steps_per_sec"] = len(rows) / max(seconds, 1e-9)
  return out


def run(cfg: Any, state: Any, step_fn: Callable, train_iter: Iterator, *, num_steps: int,
        ckpt: checkpoint.Checkpointer, writer: MetricWriter, name: str,
        prepare: Callable[[Any], Any] = lambda b: b, first_batch: Any = None,
        eval_fn: Callable[[Any, int], Mapping[str, float]] | None = None,
        show: tuple[str, ...] = ("loss",)) -> Outcome:
  """Trains `state` (at step `state.step`) up to `num_steps` with the jitted `step_fn`.

  `cfg`: the trainer's config section (`log_every`, `checkpoint_every`, `eval_every`,
  `nan_policy`, `progress`); `name` is its name ('reid', 'cyclegan') in messages. Each step
  takes `next(train_iter)` (after `first_batch`, a batch already taken from it) through
  `prepare` (host batch → global arrays). Every `log_every` steps the window's means go to
  `writer` (keys `show` on the progress bar), every `checkpoint_every` steps the state and the
  input position (when `train_iter` has grain's `get_state`) to `ckpt`, every `eval_every`
  steps `eval_fn(state, step)`'s numbers to `writer`; all three at the last step too.
  Raises `NonFiniteError` (policy 'stop'); the checkpoints written before stay the latest.
  """
  policy = cfg.get("nan_policy", "stop")
  if policy not in NAN_POLICIES:
    raise ValueError(f"{name}.nan_policy={policy!r}: stop or skip")
  start = int(jax.device_get(state.step))
  writer.truncate_after(start)
  chief = jax.process_index() == 0
  bar = None
  if cfg.get("progress", True) and chief and start < num_steps:
    from tqdm import tqdm
    bar = tqdm(total=num_steps, initial=start, desc=name, unit="step", dynamic_ncols=True)
  saves_data = hasattr(train_iter, "get_state")
  window: list[dict[str, Any]] = []
  pending: tuple[int, dict[str, Any]] | None = None   # the newest step, checked one step late
  skipped_total = 0
  logged: dict[str, float] = {}
  evaluated: dict[str, float] = {}
  t_window = time.perf_counter()

  def check(entry: tuple[int, dict[str, Any]]) -> None:
    nonlocal skipped_total
    step_no, m = entry
    flags = jax.device_get({k[len("finite/"):]: v for k, v in m.items() if k.startswith("finite/")})
    bad = sorted(k for k, ok in flags.items() if not ok)
    if not bad:
      return
    if policy == "stop":
      shown = [k for k in bad if k in m] + (["update_norm"] if "update" in bad and "update_norm" in m else [])
      values = jax.device_get({k: m[k] for k in shown})
      last = ckpt.latest_step()
      raise NonFiniteError(
          f"{name} step {step_no}: non-finite {', '.join(bad)}"
          + (" (" + ", ".join(f"{k}={float(v)}" for k, v in values.items()) + ")" if values else "")
          + "; the update was not applied and training stopped. Last good checkpoint: "
          + (f"step {last}" if last is not None else "none") + f" in {ckpt.directory}. Lower "
          f"{name}.lr or set {name}.nan_policy='skip' to skip such updates.")
    skipped_total += 1
    logging.warning("%s step %d: non-finite %s, update skipped (%d so far)", name, step_no,
                    ", ".join(bad), skipped_total)

  try:
    for step_no in range(start + 1, num_steps + 1):
      if first_batch is not None:
        batch, first_batch = first_batch, None
      else:
        try:
          batch = next(train_iter)
        except StopIteration:
          raise RuntimeError(f"the {name} train iterator ran out at step {step_no} of {num_steps}; "
                             "it must be endless") from None
      state, metrics = step_fn(state, prepare(batch))
      if pending is not None:
        check(pending)
      pending = (step_no, metrics)
      window.append(metrics)
      if itstime(step_no, cfg.log_every, num_steps):
        check(pending)
        pending = None
        now = time.perf_counter()
        logged = _window_row(jax.device_get(window), now - t_window)
        window, t_window = [], now
        writer.write_scalars(step_no, logged)
        if bar is not None:
          bar.set_postfix({k: f"{logged[k]:.4g}" for k in show if k in logged}, refresh=False)
      if itstime(step_no, cfg.checkpoint_every, num_steps):
        if pending is not None:
          check(pending)
          pending = None
        # One process: host copies (orbax would compile a slice per array shape and device).
        saved = jax.device_get(state) if jax.process_count() == 1 else state
        ckpt.save(step_no, saved, train_iter if saves_data else None, force=True)
      if eval_fn is not None and itstime(step_no, cfg.get("eval_every", 0), num_steps):
        evaluated = {k: float(v) for k, v in eval_fn(state, step_no).items()}
        writer.write_scalars(step_no, evaluated)
      if bar is not None:
        bar.update(1)
    if pending is not None:
      check(pending)
  finally:
    if bar is not None:
      bar.close()
    writer.flush()
  return Outcome(state, logged, evaluated)
