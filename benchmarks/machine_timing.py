"""What every benchmark prints beside its figures: the machine, and timings taken the same way.

`machine()` names the CPU (lscpu's model name), the CPU count, the 1-minute load average (the
machine may be shared), the jax version and backend and the Python version. `timed(f, n)` is the
median wall and CPU time of `f()` over `n` calls after one warm-up call, each blocked until
its result is ready. `round_robin(calls, rounds)` times several variants of one computation in
turns, one call of each per round, so that the machine's drift (10–20 % between processes minutes
apart here) falls on every variant alike. `matmul_rate()` is the float32 2048² `a @ a` rate, the roofline a step's
rate is compared with (2n³ FLOPs): GFLOP/s of wall time and GFLOP per CPU-second (the steadier
figure when other jobs share the cores). jax is imported inside the functions, so a script can
set its environment (XLA_FLAGS, CE2L_CONV_IMPL) before the first call.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from typing import Any, Callable

import numpy as np


def timed(f: Callable[[], Any], repeats: int) -> tuple[float, float]:
  """(median wall s, median CPU s) of f() (blocked), after one warm-up call."""
  import jax
  jax.block_until_ready(f())
  wall, cpu = [], []
  for _ in range(repeats):
    t, c = time.perf_counter(), time.process_time()
    jax.block_until_ready(f())
    wall.append(time.perf_counter() - t)
    cpu.append(time.process_time() - c)
  return float(np.median(wall)), float(np.median(cpu))


def round_robin(calls: dict[str, Callable[[], Any]], rounds: int
                ) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, Any]]:
  """(wall s per round, CPU s per round, last result) of each named call, after one warm-up
  call each; round r runs every call once, in the dict's order."""
  import jax
  for f in calls.values():
    jax.block_until_ready(f())
  wall = {n: [] for n in calls}
  cpu = {n: [] for n in calls}
  last = {}
  for _ in range(rounds):
    for name, f in calls.items():
      t, c = time.perf_counter(), time.process_time()
      last[name] = jax.block_until_ready(f())
      wall[name].append(time.perf_counter() - t)
      cpu[name].append(time.process_time() - c)
  return wall, cpu, last


def matmul_rate(repeats: int = 5, n: int = 2048) -> tuple[float, float]:
  """float32 n×n `a @ a`: (GFLOP/s of wall time, GFLOP per CPU-second)."""
  import jax
  import jax.numpy as jnp
  a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  wall, cpu = timed(lambda: f(a), repeats)
  return 2 * n ** 3 / wall / 1e9, 2 * n ** 3 / cpu / 1e9


def machine() -> str:
  """CPU model, CPU count, load average, jax version and backend, Python version."""
  import jax
  model = "?"
  try:
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
      if line.startswith("Model name"):
        model = line.split(":", 1)[1].strip()
  except OSError:
    pass
  return (f"{model}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"jax {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind}); "
          f"Python {platform.python_version()}")
