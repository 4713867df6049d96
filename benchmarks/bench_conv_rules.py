"""A/B of `conv.auto_form`'s rules inside one train step, alternating in one process (issue 15).

  .venv/bin/python benchmarks/bench_conv_rules.py --net cyclegan --batch 4 --rounds 4

Isolated per-layer timings (`bench_conv_choice.py`) did not predict what a form does inside a
whole step (the CycleGAN head: 2.6× faster alone, a few per cent of the step), and the machine's
speed drifts by 10–20 % between processes minutes apart, so a rule is judged here: the same
step compiled under each variant of the rules (`auto` with the rule's threshold set so that it
never fires, or as in `ce2l_jax.models.conv`), then timed round-robin, one step of each variant
per round, in the same process. Prints each variant's per-round wall and CPU seconds and their
medians, and the loss of each (equal up to float32 summation order).

Variants: `base` (`auto` without the narrow-output rule: XLA's convolution for a 64 → 3 head),
`auto` (the rules as committed: the output-side form for narrow outputs).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.machine_timing import machine, matmul_rate  # noqa: E402

OFF = 10 ** 9


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--net", default="cyclegan", choices=["cyclegan", "resnet", "alexnet"])
  ap.add_argument("--batch", type=int, default=4)
  ap.add_argument("--rounds", type=int, default=4)
  ap.add_argument("--variants", default="base,auto")
  args = ap.parse_args(argv)
  import jax

  from benchmarks.bench_steps import cyclegan_step, reid_step
  from ce2l_jax.models import conv as C
  keep = {"_NARROW_MIN_IN": C._NARROW_MIN_IN}
  settings = {"base": {"_NARROW_MIN_IN": OFF}, "auto": dict(keep)}
  print(f"Machine: {machine()}")
  d = matmul_rate()
  print(f"float32 2048² dot: {d[0]:.0f} GFLOP/s wall, {d[1]:.0f} GFLOP per CPU-second")
  if args.net == "cyclegan":
    step, _, state, data, _ = cyclegan_step(args.batch)
  else:
    step, _, state, data, _ = reid_step(args.net, args.batch, fast=True)
  names = args.variants.split(",")
  compiled = {}
  for name in names:
    for k, v in settings[name].items():
      setattr(C, k, v)
    try:
      compiled[name] = jax.jit(step).lower(state, data).compile()
    finally:
      for k, v in keep.items():
        setattr(C, k, v)
    jax.block_until_ready(compiled[name](state, data))  # first run: allocations
  wall = {n: [] for n in names}
  cpu = {n: [] for n in names}
  loss = {}
  for _ in range(args.rounds):
    for name in names:
      t, c = time.perf_counter(), time.process_time()
      out = jax.block_until_ready(compiled[name](state, data))
      wall[name].append(time.perf_counter() - t)
      cpu[name].append(time.process_time() - c)
      loss[name] = float(out[1])
  print(f"{args.net} batch {args.batch}, {args.rounds} rounds, load {os.getloadavg()[0]:.1f}")
  for name in names:
    print(f"{name:7s} wall {' '.join(f'{x:.2f}' for x in wall[name])} (median {np.median(wall[name]):.2f}) "
          f"CPU {' '.join(f'{x:.2f}' for x in cpu[name])} (median {np.median(cpu[name]):.2f}) loss {loss[name]:.5f}")


if __name__ == "__main__":
  main()
