"""Orbax checkpoints of a train state together with the input iterator's position.

A checkpoint is a step folder holding two items: `state` (any pytree of arrays, saved with
`StandardSave`) and, when an iterator is given, `data` (grain's iterator state). Orbax writes
into `<step>.orbax-checkpoint-tmp` and renames on success, so a process killed mid-save leaves
the previous step as the latest restorable one; such leftovers are never read.

Resume order (see `resolve_init`): the workdir's latest checkpoint, then `config.resume`
(another workdir's checkpoint folder), then `config.init` (pretrained weights, handled by the
trainer), then scratch.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp


class CheckpointMismatchError(ValueError):
  """A checkpoint's tree does not fit the model it is restored into."""


class ProcessCountError(ValueError):
  """A checkpoint's input position was saved by another number of processes than this run's."""


def check_process_count(ckpt_dir: str, step: int) -> bool:
  """Whether checkpoint `step` holds an input position (`data`) this run can restore.

  grain saves one position per process (`data/process_<i>-of-<n>.json`); each process reads
  its own part of every batch, so a position saved by `n` processes means nothing to another
  count: ProcessCountError names both counts. The state alone is restored onto any mesh (any
  device count), so a run with other devices but as many processes continues exactly.
  """
  data = os.path.join(ckpt_dir, str(step), "data")
  if not os.path.isdir(data):
    return False
  counts = {int(m.group(1)) for f in os.listdir(data) if (m := re.fullmatch(r"process_\d+-of-(\d+)\.json", f))}
  if counts and counts != {jax.process_count()}:
    saved = ", ".join(map(str, sorted(counts)))
    raise ProcessCountError(
        f"checkpoint {ckpt_dir}/{step} was saved by {saved} process(es) but this run has "
        f"{jax.process_count()}: its input position cannot be split another way; resume with "
        f"{saved} process(es) or start in a new --workdir")
  return True


class Checkpointer:

  def __init__(self, directory: str, max_to_keep: int | None = 3, save_interval_steps: int = 1,
               async_save: bool = False):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        save_interval_steps=save_interval_steps,
        create=True,
        enable_async_checkpointing=async_save,
    )
    self._mngr = ocp.CheckpointManager(self.directory, options=options)

  @property
  def manager(self) -> ocp.CheckpointManager:
    return self._mngr

  def latest_step(self) -> int | None:
    return self._mngr.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._mngr.all_steps())

  def save(self, step: int, state: Any, data_iterator: Any | None = None, force: bool = False) -> bool:
    items = {"state": ocp.args.StandardSave(state)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    saved = self._mngr.save(int(step), args=ocp.args.Composite(**items), force=force)
    return saved

  def wait(self) -> None:
    self._mngr.wait_until_finished()

  def restore(self, target: Any, data_iterator: Any | None = None, step: int | None = None) -> Any:
    """Restores into the structure (and shardings) of `target`; returns the state.

    `target` may hold arrays or `jax.ShapeDtypeStruct`s (e.g. from `jax.eval_shape`). When
    `data_iterator` is given, its position is restored in place.
    """
    step = self._mngr.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    abstract = jax.tree.map(_abstract, target)
    items = {"state": ocp.args.StandardRestore(abstract)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    try:
      restored = self._mngr.restore(step, args=ocp.args.Composite(**items))
    except (ValueError, KeyError, TypeError) as e:
      raise CheckpointMismatchError(
          f"checkpoint {self.directory}/{step} does not match the model being restored "
          f"(was it written by another model or config?): {str(e).splitlines()[0][:300]}") from None
    return restored["state"]

  def close(self) -> None:
    self._mngr.wait_until_finished()
    self._mngr.close()


def _abstract(x: Any) -> Any:
  if isinstance(x, jax.ShapeDtypeStruct):
    return x
  if isinstance(x, jax.Array):
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
  if hasattr(x, "shape") and hasattr(x, "dtype"):
    return jax.ShapeDtypeStruct(x.shape, x.dtype)
  return x


def resolve_init(workdir_ckpt_dir: str, resume: str | None = None, init: str | None = None) -> tuple[str, str | None]:
  """Returns (`kind`, path): kind is 'workdir', 'resume', 'init' or 'scratch'."""
  if os.path.isdir(workdir_ckpt_dir) and ocp.CheckpointManager(workdir_ckpt_dir).latest_step() is not None:
    return "workdir", workdir_ckpt_dir
  if resume:
    if not os.path.isdir(resume):
      raise FileNotFoundError(f"config.resume={resume!r} is not a checkpoint folder; fix the path or unset it")
    return "resume", resume
  if init:
    if not os.path.exists(init):
      raise FileNotFoundError(f"config.init={init!r} does not exist; fix the path or unset it")
    return "init", init
  return "scratch", None


KILL_ENV = "CE2L_KILL_AFTER_CHECKPOINT"
KILLED_EXIT_CODE = 137


@contextlib.contextmanager
def kill_after_first_checkpoint(stage: str):
  """Test hook (tests/test_run.py, tests/test_scale.py): with $CE2L_KILL_AFTER_CHECKPOINT=<stage>
  the process exits (`os._exit(KILLED_EXIT_CODE)`, no clean-up, as a SIGKILL) right after that
  stage's first checkpoint is written; a no-op otherwise."""
  if os.environ.get(KILL_ENV, "") != stage:
    yield
    return
  original = Checkpointer.save

  def save_then_die(self, step, *args, **kwargs):
    saved = original(self, step, *args, **kwargs)
    self.wait()
    print(f"\n{KILL_ENV}={stage}: exiting after the checkpoint of step {step}", flush=True)
    sys.stderr.flush()
    os._exit(KILLED_EXIT_CODE)
    return saved

  Checkpointer.save = save_then_die
  try:
    yield
  finally:
    Checkpointer.save = original
