"""Per-layer forward+backward CPU time of every convolution of a network, per conv form (issue 15).

  python benchmarks/bench_conv_choice.py --net resnet50 --batch 8
  python benchmarks/bench_conv_choice.py --net cyclegan_tiny --forms native,mixed,matmul

Traces the network once (`jax.eval_shape`) with `conv2d` / `conv_transpose2d` recorded, then
times each distinct convolution shape alone: jitted forward + weight gradient + input gradient
(the input gradient left out for a re-ID network's first layer, whose input is the image),
median CPU seconds per call for each form, and prints what `conv.auto_form` picks. The rule in
`ce2l_jax.models.conv.auto_form` was set from these tables (docs/notes/fast_convolution.md).

Networks: `alexnet` (bdtr_alexnet 227², one stream's worth: batch = images per modality),
`resnet50` (resnet50_agw 288×144), `cyclegan` (ResNet-9 generator ngf 64 + PatchGAN ndf 64,
128×64), and the demo's `alexnet_tiny` (67²), `resnet_tiny` (64×32), `cyclegan_tiny` (ngf 8,
2 blocks, PatchGAN ndf 8 with 2 layers, 64×32).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.machine_timing import machine, matmul_rate, timed  # noqa: E402


def capture(net: str, batch: int) -> list[tuple]:
  """Distinct convolutions of `net` at `batch`: (kind, x shape, kernel shape, strides, padding,
  groups, needs ∂x), in network order."""
  import jax
  import jax.numpy as jnp

  from ce2l_jax.models import conv as C
  seen, calls = set(), []
  conv2d, conv_t = C.conv2d, C.conv_transpose2d

  def rec(kind, x, k, s, p, g):
    key = (kind, tuple(x.shape), tuple(k.shape), C._pair(s), str(p), g)
    if key not in seen:
      seen.add(key)
      calls.append((kind, tuple(x.shape), tuple(k.shape), C._pair(s), p, g,
                    not (net in REID and x.shape[-1] == 3)))

  def conv2d_rec(x, k, strides=1, padding=0, groups=1, impl=None):
    rec("conv", x, k, strides, padding, groups)
    return conv2d(x, k, strides, padding, groups, "native")

  def conv_t_rec(x, k, strides=1, padding="SAME", impl=None):
    rec("transposed", x, k, strides, padding, 1)
    return conv_t(x, k, strides, padding, "native")

  C.conv2d, C.conv_transpose2d = conv2d_rec, conv_t_rec
  try:
    if net in REID:
      from ce2l_jax.models import create_reid_model, init_reid_variables
      name, (h, w) = REID[net]
      model = create_reid_model(name, 395)
      v = jax.eval_shape(lambda: init_reid_variables(model, jax.random.key(0), h, w))
      seen.clear()
      calls.clear()
      images = jax.ShapeDtypeStruct((2, batch, h, w, 3), jnp.float32)
      jax.eval_shape(lambda v, x: model.apply(v, x, train=True, rngs={"dropout": jax.random.key(1)},
                                              mutable=["batch_stats"]), v, images)
    else:
      from ce2l_jax.models import cyclegan as cg
      ngf, blocks, layers, size = CYCLEGAN[net]
      for m in (cg.ResnetGenerator(ngf=ngf, n_blocks=blocks),
                cg.PatchDiscriminator(ndf=ngf, n_layers=layers)):
        x = jax.ShapeDtypeStruct((batch, *size, 3), jnp.float32)
        jax.eval_shape(lambda x, m=m: m.apply(m.init(jax.random.key(0), x), x), x)
  finally:
    C.conv2d, C.conv_transpose2d = conv2d, conv_t
  return calls


REID = {"alexnet": ("bdtr_alexnet", (227, 227)), "resnet50": ("resnet50_agw", (288, 144)),
        "alexnet_tiny": ("alexnet_tiny", (67, 67)), "resnet_tiny": ("resnet_tiny", (64, 32))}
CYCLEGAN = {"cyclegan": (64, 9, 3, (128, 64)), "cyclegan_tiny": (8, 2, 2, (64, 32))}


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--net", required=True, choices=[*REID, *CYCLEGAN])
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--forms", default="native,mixed")
  ap.add_argument("--repeats", type=int, default=3)
  args = ap.parse_args()
  import jax
  import jax.numpy as jnp

  from ce2l_jax.models import conv as C
  forms = args.forms.split(",")
  print(f"Machine: {machine()}")
  d = matmul_rate()
  print(f"float32 2048² dot: {d[0]:.0f} GFLOP/s wall, {d[1]:.0f} GFLOP per CPU-second\n")
  print(f"| {args.net} conv (batch {args.batch}) | GFLOP fwd | "
        + " | ".join(f"{f} CPU s" for f in forms) + " | fastest | auto picks |")
  print("| --- | ---: |" + " ---: |" * len(forms) + " --- | --- |")
  rng = np.random.default_rng(0)
  totals = dict.fromkeys(forms + ["auto"], 0.0)
  for kind, xs, ks, s, p, g, dx in capture(args.net, args.batch):
    x = jnp.asarray(rng.normal(size=xs), jnp.float32)
    k = jnp.asarray(rng.normal(size=ks), jnp.float32) * 0.05
    if kind == "transposed":
      fn = lambda x, k, impl: C.conv_transpose2d(x, k, s, p, impl=impl)
      flops = 2 * np.prod(xs) * ks[0] * ks[1] * ks[2]
    else:
      fn = lambda x, k, impl: C.conv2d(x, k, s, p, g, impl=impl)
      flops = 2 * np.prod(jax.eval_shape(lambda: fn(x, k, "native")).shape) * ks[0] * ks[1] * ks[2]
    y_shape = jax.eval_shape(lambda: fn(x, k, "native")).shape
    ct = jnp.ones(y_shape, jnp.float32)
    times = {}
    for impl in forms:
      gf = jax.jit(lambda x, k, impl=impl: jax.value_and_grad(
          lambda x, k: jnp.vdot(fn(x, k, impl), ct), argnums=(0, 1) if dx else 1)(x, k))
      times[impl] = timed(lambda: gf(x, k), args.repeats)[1]
    pick = C.auto_form(kind == "transposed", xs, ks, s, g)
    best = min(times, key=times.get)
    for f in forms:
      totals[f] += times[f]
    totals["auto"] += times.get(pick, float("nan"))
    desc = (f"{'T' if kind == 'transposed' else ''}{ks[0]}×{ks[1]}/{s[0]}"
            f"{f' g{g}' if g > 1 else ''} {xs[3]}→{ks[2] if kind == 'transposed' else ks[3]} "
            f"at {xs[0]}×{xs[1]}×{xs[2]}{'' if dx else ' (no ∂x)'}")
    print(f"| {desc} | {flops / 1e9:.2f} | " + " | ".join(f"{times[f]:.3f}" for f in forms)
          + f" | {best} | {pick} |", flush=True)
  print("| **sum** | | " + " | ".join(f"{totals[f]:.3f}" for f in forms)
        + f" | | {totals['auto']:.3f} |")
  print(f"\n(median CPU s of forward + ∂K (+ ∂x) per distinct shape, each once; load average "
        f"{os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
  main()
