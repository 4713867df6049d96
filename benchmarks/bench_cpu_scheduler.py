"""XLA:CPU's instruction schedulers on the train steps, in one process (issue 15).

  .venv/bin/python benchmarks/bench_cpu_scheduler.py --net resnet --batch 32 --rounds 4
  .venv/bin/python benchmarks/bench_cpu_scheduler.py --net cyclegan --batch 4 --tiny

`--xla_cpu_scheduler_type` orders the step's instructions; it decides how many intermediates
are alive at once (XLA's temp buffer, most of a step's peak memory) and which operations may run
side by side on the two threads. The trainers compile their steps with the scheduler
each asks for (`reid.CPU_SCHEDULER` "memory", `cyclegan.CPU_SCHEDULER` "default";
`CE2L_CPU_SCHEDULER` overrides both for a run). This compiles one of `bench_steps.py`'s three steps (or, `--tiny`, the demo's
networks) under each scheduler of `--schedulers`, prints each executable's temp buffer
(`compiled.memory_analysis()`), then times the steps round-robin (one step of each per round,
`machine_timing.round_robin`: the machine drifts 10–20 % between processes) and prints each
one's wall and CPU seconds per round, their medians and the loss (the same maths: equal to
float32 summation order). Peak RSS needs one process per scheduler:
`CE2L_CPU_SCHEDULER=default python benchmarks/bench_steps.py ...`.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.machine_timing import machine, matmul_rate, round_robin  # noqa: E402


def compile_under(step, state, data, schedulers: list[str]) -> dict:
  """{scheduler: the step compiled under XLA:CPU's scheduler of that name (`loop.CPU_SCHEDULERS`;
  `CE2L_CPU_SCHEDULER` does not apply here)}."""
  import jax

  from ce2l_jax.trainers import loop
  return {s: jax.jit(step).lower(state, data).compile(
      compiler_options={"xla_cpu_scheduler_type": loop.CPU_SCHEDULERS[s]}) for s in schedulers}


def main(argv=None) -> dict:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--net", default="resnet", choices=["cyclegan", "resnet", "alexnet"])
  ap.add_argument("--batch", type=int, default=4, help="images per modality (domain)")
  ap.add_argument("--rounds", type=int, default=4)
  ap.add_argument("--schedulers", default="default,memory")
  ap.add_argument("--tiny", action="store_true",
                  help="the demo's networks (resnet_tiny / alexnet_tiny, CycleGAN ngf 8, 64×32)")
  args = ap.parse_args(argv)
  from benchmarks.bench_steps import cyclegan_step, reid_step
  print(f"Machine: {machine()}")
  d = matmul_rate()
  print(f"float32 2048² dot: {d[0]:.0f} GFLOP/s wall, {d[1]:.0f} GFLOP per CPU-second")
  if args.net == "cyclegan":
    kw = dict(size=(64, 32), ngf=8, n_blocks=1) if args.tiny else {}
    step, _, state, data, _ = cyclegan_step(args.batch, **kw)
  else:
    step, _, state, data, _ = reid_step(args.net, args.batch, fast=True, tiny=args.tiny)
  names = args.schedulers.split(",")
  compiled = compile_under(step, state, data, names)
  temp = {n: c.memory_analysis().temp_size_in_bytes / 2 ** 30 for n, c in compiled.items()}
  wall, cpu, out = round_robin({n: (lambda c=compiled[n]: c(state, data)) for n in names},
                               args.rounds)
  print(f"{args.net}{' (tiny)' if args.tiny else ''} batch {args.batch}+{args.batch}, "
        f"{args.rounds} rounds, load {os.getloadavg()[0]:.1f}")
  result = {}
  for n in names:
    loss = float(out[n][1])
    result[n] = dict(temp_gib=temp[n], wall=wall[n], cpu=cpu[n], loss=loss)
    print(f"{n:11s} temp {temp[n] * 1024:.0f} MiB  wall {' '.join(f'{x:.3f}' for x in wall[n])} "
          f"(median {np.median(wall[n]):.3f})  CPU {' '.join(f'{x:.3f}' for x in cpu[n])} "
          f"(median {np.median(cpu[n]):.3f})  loss {loss:.5f}")
  return result


if __name__ == "__main__":
  main()
