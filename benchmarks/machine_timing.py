"""What every benchmark prints beside its figures: the machine, and timings taken the same way.

`machine()` names the CPU (lscpu's model name), the CPU count, the 1-minute load average (the
machine may be shared), the jax version and backend and the Python version. `timed(f, n)` is the
median wall and CPU time of `f()` over `n` calls after one warm-up call, each blocked until
its result is ready. `matmul_rate()` is the float32 2048² `a @ a` rate, the roofline a step's
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
