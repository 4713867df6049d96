"""Which ResNet-50 blocks to write once: peak RSS against step time (issue 15).

  .venv/bin/python benchmarks/bench_resnet_barrier.py --stages 1234 --batch 32 --steps 4
  .venv/bin/python benchmarks/bench_resnet_barrier.py --stages 12    # barrier on layer1-2 only
  .venv/bin/python benchmarks/bench_resnet_barrier.py --stages 0     # no barrier

`ce2l_jax.models.layers.materialize` puts an optimization barrier on every Bottleneck's output
(`relu(x + y)`), which costs peak RSS (each block's output kept for the backward pass). This runs
`bench_steps.reid_step`'s AGW ResNet-50 train step (N + N at 288×144, form `auto`) with the
Bottleneck re-declared so that only the blocks of the listed stages (`layer<s>_*`) get the barrier,
and prints XLA's temp buffer (`compiled.memory_analysis()`), every step's wall and CPU time (the
first includes the first allocations) and the process's peak RSS. One configuration per process,
so that the RSS is its own; compare runs made back to back (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--stages", default="1234", help="digits of the stages with the barrier; 0: none")
  ap.add_argument("--batch", type=int, default=32, help="images per modality")
  ap.add_argument("--steps", type=int, default=4)
  args = ap.parse_args(argv)

  import jax

  from ce2l_jax.models import reid, resnet
  keep = resnet.materialize

  class Bottleneck(resnet.Bottleneck):
    """resnet.Bottleneck with the barrier on the listed stages only (names `layer<s>_<j>`):
    `resnet.materialize` is swapped while the block is traced, the block itself is the project's."""

    def __call__(self, x, train=False):
      on = self.name[len("layer")] in args.stages
      resnet.materialize = keep if on else (lambda y: y)
      try:
        return super().__call__(x, train)
      finally:
        resnet.materialize = keep

  resnet.Bottleneck = reid.Bottleneck = Bottleneck
  from benchmarks.bench_steps import reid_step
  step, _, state, data, _ = reid_step("resnet", args.batch, fast=True)
  t = time.perf_counter()
  from benchmarks.bench_steps import step_options
  compiled = jax.jit(step, donate_argnums=0).lower(state, data).compile(
      compiler_options=step_options("resnet"))  # as the trainers compile it
  mem = compiled.memory_analysis()
  print(f"stages {args.stages}, batch {args.batch}+{args.batch}: compile "
        f"{time.perf_counter() - t:.0f} s, temp buffer {mem.temp_size_in_bytes / 2 ** 30:.2f} GiB",
        flush=True)
  times = []
  for _ in range(args.steps):
    t, c = time.perf_counter(), time.process_time()
    state, loss = compiled(state, data)
    loss.block_until_ready()
    times.append(f"{time.perf_counter() - t:.2f}/{time.process_time() - c:.2f}")
  print(f"stages {args.stages}: step wall/CPU s {', '.join(times)}; peak RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20:.2f} GiB; "
        f"load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
  main()
