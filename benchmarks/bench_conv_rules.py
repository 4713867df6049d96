"""A/B of `conv.auto_form`'s rules inside one train step, alternating in one process (issue 15).

  .venv/bin/python benchmarks/bench_conv_rules.py --net cyclegan --batch 4 --rounds 4

Isolated per-layer timings (`bench_conv_choice.py`) did not predict what a form does inside a
whole step (the CycleGAN head: 2.6× faster alone, a few per cent of the step), and the machine's
speed drifts by 10–20 % between processes minutes apart, so a rule is judged here: the same
step compiled under each variant of the rules (`conv.auto_form` as committed, or wrapped with
a candidate rule while the step is traced), then timed round-robin, one step of each variant
per round, in the same process. Prints each variant's per-round wall and CPU seconds and their
medians, and the loss of each (equal up to float32 summation order).

Variants: `auto` (the rules as committed), `narrow` (plus: mixed — its output-side branch — for
convolutions with ≤ 4 outputs from ≥ 64 inputs, the CycleGAN's 64 → 3 head and 512 → 1 PatchGAN
output; measured 2026-12-03, four runs: −4 %, +1 %, +4 %, −6 % against `auto`: not resolved, not adopted),
`strided` (plus: mixed for strided k×k convolutions from ≥ `--strided_min_in` inputs, default
16, whose input gradient XLA computes as a dilated convolution), `wide` (plus: mixed for dense
stride-1 k×k convolutions with inputs × outputs ≥ `--wide_min_product`, default 256·256: the
CycleGAN's residual blocks, whose weight gradient as per-tap dots ran 22.5 against 32.2 ms
alone; in the step 10.47 against 10.50 s, 2026-12-03: not adopted), `stem` (plus: mixed for
k×k convolutions from ≤ 4 inputs, the RGB stems, whose weight gradient XLA runs as a window-dilated
convolution) and `dense` (every non-transposed convolution mixed); on the AlexNet step 64+64
(2026-12-03, memory scheduler): 10.51 and 10.55 against 10.78 s, not resolved, not adopted. Each step is compiled as the
trainers compile theirs (`bench_steps.step_options`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.machine_timing import machine, matmul_rate, round_robin  # noqa: E402



def _narrow_rule(auto_form):
  def rule(transposed, x_shape, kernel_shape, strides, groups=1, backend=None):
    kh, kw, ci, f = kernel_shape
    if not transposed and groups == 1 and f <= 4 and kh * kw > 1 and ci >= 64:
      return "mixed"
    return auto_form(transposed, x_shape, kernel_shape, strides, groups, backend)
  return rule


def _strided_rule(auto_form, min_in: int = 16):
  def rule(transposed, x_shape, kernel_shape, strides, groups=1, backend=None):
    if not transposed and groups == 1 and max(strides) > 1 and kernel_shape[2] >= min_in:
      return "mixed"
    return auto_form(transposed, x_shape, kernel_shape, strides, groups, backend)
  return rule


def _wide_rule(auto_form, min_product: int = 256 * 256):
  def rule(transposed, x_shape, kernel_shape, strides, groups=1, backend=None):
    kh, kw, ci, f = kernel_shape
    if (not transposed and groups == 1 and max(strides) == 1 and kh * kw > 1
        and ci * f >= min_product):
      return "mixed"
    return auto_form(transposed, x_shape, kernel_shape, strides, groups, backend)
  return rule


def _stem_rule(auto_form, max_in: int = 4):
  def rule(transposed, x_shape, kernel_shape, strides, groups=1, backend=None):
    kh, kw, ci, _ = kernel_shape
    if not transposed and groups == 1 and kh * kw > 1 and ci <= max_in:
      return "mixed"
    return auto_form(transposed, x_shape, kernel_shape, strides, groups, backend)
  return rule


def _dense_rule(auto_form):
  def rule(transposed, x_shape, kernel_shape, strides, groups=1, backend=None):
    if not transposed:
      return "mixed"
    return auto_form(transposed, x_shape, kernel_shape, strides, groups, backend)
  return rule


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--net", default="cyclegan", choices=["cyclegan", "resnet", "alexnet"])
  ap.add_argument("--batch", type=int, default=4)
  ap.add_argument("--rounds", type=int, default=4)
  ap.add_argument("--variants", default="auto,narrow")
  ap.add_argument("--strided_min_in", type=int, default=16)
  ap.add_argument("--wide_min_product", type=int, default=256 * 256)
  args = ap.parse_args(argv)
  import jax

  from benchmarks.bench_steps import cyclegan_step, reid_step, step_options
  from ce2l_jax.models import conv as C
  keep = C.auto_form
  rules = {"auto": keep, "narrow": _narrow_rule(keep), "strided": _strided_rule(keep, args.strided_min_in),
           "wide": _wide_rule(keep, args.wide_min_product), "stem": _stem_rule(keep),
           "dense": _dense_rule(keep)}
  print(f"Machine: {machine()}")
  d = matmul_rate()
  print(f"float32 2048² dot: {d[0]:.0f} GFLOP/s wall, {d[1]:.0f} GFLOP per CPU-second")
  if args.net == "cyclegan":
    step, _, state, data, _ = cyclegan_step(args.batch)
  else:
    step, _, state, data, _ = reid_step(args.net, args.batch, fast=True)
  names = args.variants.split(",")
  options = step_options(args.net)  # as the trainers compile the step
  compiled = {}
  for name in names:
    C.auto_form = rules[name]
    try:
      compiled[name] = jax.jit(step).lower(state, data).compile(compiler_options=options)
    finally:
      C.auto_form = keep
  wall, cpu, out = round_robin({n: (lambda c=compiled[n]: c(state, data)) for n in names},
                               args.rounds)
  print(f"{args.net} batch {args.batch}, {args.rounds} rounds, load {os.getloadavg()[0]:.1f}")
  for name in names:
    print(f"{name:7s} wall {' '.join(f'{x:.2f}' for x in wall[name])} (median {np.median(wall[name]):.2f}) "
          f"CPU {' '.join(f'{x:.2f}' for x in cpu[name])} (median {np.median(cpu[name]):.2f}) "
          f"loss {float(out[name][1]):.5f}")

if __name__ == "__main__":
  main()
