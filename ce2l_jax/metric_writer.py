"""Metrics to `<workdir>/metrics.jsonl` (always) and TensorBoard event files (when available).

Only process 0 writes. Each JSONL line is `{"step": int, "stage": str, <name>: float, ...}`;
the file is appended line by line and flushed, so a killed run keeps every line written.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Mapping

import jax
import numpy as np


def _scalar(v: Any) -> float:
  v = np.asarray(v)
  if v.size != 1:
    raise ValueError(f"metric value must be a scalar, got shape {v.shape}")
  return float(v.reshape(()))


class MetricWriter:

  def __init__(self, workdir: str, stage: str, tensorboard: bool = True):
    self.stage = stage
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      if tensorboard:
        try:
          from tensorboardX import SummaryWriter
          self._tb = SummaryWriter(os.path.join(workdir, "tensorboard", stage))
        except Exception:  # TensorBoard output is optional.
          self._tb = None

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    row = {"step": int(step), "stage": self.stage, "time": time.time()}
    for k, v in scalars.items():
      x = _scalar(v)
      row[k] = x if math.isfinite(x) else str(x)
      if self._tb is not None:
        self._tb.add_scalar(f"{self.stage}/{k}", x, int(step))
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
      f.flush()

  def truncate_after(self, step: int) -> None:
    """Drops this stage's rows with a step after `step` (atomically): a run resumed from the
    checkpoint of `step` logs the later steps again, and each step is to appear once."""
    if not self.enabled or not os.path.exists(self.path):
      return
    with open(self.path) as f:
      lines = f.readlines()
    keep = []
    for line in lines:
      try:
        row = json.loads(line)
      except json.JSONDecodeError:  # a line cut by a kill
        continue
      if not (row.get("stage") == self.stage and int(row.get("step", 0)) > step):
        keep.append(line if line.endswith("\n") else line + "\n")
    if len(keep) == len(lines):
      return
    tmp = f"{self.path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
      f.writelines(keep)
    os.replace(tmp, self.path)

  def write_image(self, step: int, name: str, image: np.ndarray) -> None:
    """`image`: uint8 HxWx3."""
    if self.enabled and self._tb is not None:
      self._tb.add_image(f"{self.stage}/{name}", np.asarray(image), int(step), dataformats="HWC")

  def flush(self) -> None:
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def read_metrics(workdir: str, stage: str | None = None) -> list[dict[str, Any]]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  rows = []
  with open(path) as f:
    for line in f:
      line = line.strip()
      if not line:
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError:  # a line cut by a kill
        continue
      if stage is None or row.get("stage") == stage:
        rows.append(row)
  return rows
