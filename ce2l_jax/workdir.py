"""The layout of a run's folder, in one place; the only module that names its paths.

  <workdir>/
    config.json              the run's config as it started (stages.py)
    metrics.jsonl            every stage's logged scalars, one JSON row per (stage, step) log
    tensorboard/<stage>/     the same scalars as TensorBoard events (when tensorboardX is there)
    results.{md,json}, cmc.png, ranking_examples.png, conversion_samples.png   (report.py)
    <stage>/                 one folder per stage: cyclegan, convert, reid, evaluate
      checkpoints/<step>/    orbax: `state` (the train state) + `data` (the input position)
      DONE                   JSON summary of the finished stage, written last, by stages.py only
    trial<N>/                RegDB: the same layout per trial (stages and their DONE markers)

Everything here that writes does so atomically (a temporary name, then `os.replace`), from
process 0 only: several processes of a multi-host job share one workdir.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

CONFIG = "config.json"
METRICS = "metrics.jsonl"
DONE = "DONE"


def stage_dir(workdir: str, stage: str) -> str:
  return os.path.join(workdir, stage)


def checkpoint_dir(workdir: str, stage: str) -> str:
  """`<workdir>/<stage>/checkpoints`: a trainer's checkpoints (state + input position)."""
  return os.path.join(workdir, stage, "checkpoints")


def trial_dir(workdir: str, trial: int) -> str:
  """RegDB trial N's run folder (`trial<N>/`); trial 0 (one run) is the workdir itself."""
  return os.path.join(workdir, f"trial{trial}") if trial else workdir


def done_path(workdir: str, stage: str) -> str:
  return os.path.join(workdir, stage, DONE)


def is_done(workdir: str, stage: str) -> bool:
  return os.path.exists(done_path(workdir, stage))


def read_done(workdir: str, stage: str) -> dict[str, Any] | None:
  """The summary a finished stage left, or None when it has not finished."""
  path = done_path(workdir, stage)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def write_done(workdir: str, stage: str, info: Mapping[str, Any]) -> None:
  """Marks `stage` finished (stages.py alone calls this, after the stage's outputs are complete)."""
  write_json(done_path(workdir, stage), dict(info))


def write_text(path: str, text: str) -> None:
  """Writes `text` to `path` atomically (process 0 only)."""
  import jax  # (not at the top: config checks import this module before JAX is needed)
  if jax.process_index() != 0:
    return
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def write_json(path: str, obj: Any) -> None:
  """`obj` as indented JSON at `path`, atomically (process 0 only)."""
  write_text(path, json.dumps(obj, indent=1) + "\n")
