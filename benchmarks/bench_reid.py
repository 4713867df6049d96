"""Re-ID losses and model train steps: speed, achieved GFLOP/s and peak memory, in one run.

  .venv/bin/python benchmarks/bench_reid.py [--models a,b:plain,...] [--batch 8] [--repeats 3]
      [--big_repeats 2]
  .venv/bin/python benchmarks/bench_reid.py --losses_only

* Losses: ℓ_cross + 0.1·ℓ_intra (`ce2l_jax.losses`, fused masks) value and gradient for a batch
  of B = 128 and 512 images (B/2 per modality, P×K with K = 4, D = 1024), against the loop oracle
  (tests/loss_oracles.py, numpy, forward only, checked equal).
* Train step: forward + backward of the model on a paired (2, N, H, W, 3) batch + CE²L's loss
  (`ce2l_total_loss`) + an SGD-momentum update (optax), jitted with donated state; the paper's
  shapes (bdtr_alexnet 227×227, resnet50_agw 288×144) and the tiny variants, N = `--batch` per
  modality; `name:plain` runs the model with the plain layer forms (`fast=False`: grouped conv by
  `feature_group_count`, max-pool by `reduce_window`) for comparison. Images/s counts both
  modalities (2N per step). Each model runs in its own subprocess
  so that its peak RSS (`resource.getrusage(...).ru_maxrss`) is its own. FLOPs per step come
  from XLA's `cost_analysis()` of the compiled step; achieved GFLOP/s = FLOPs / step time, beside
  a float32 2048² matmul's GFLOP/s measured in the same run.
Times are wall clock, median of `--repeats` (`--big_repeats` for full-size models) after one
warm-up; the machine may be shared (CPU time per step is printed too). Whole run: ≈ 5 minutes of
CPU time on 2 cores (≈ 3–4 min wall when the machine is idle; longer when shared).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from ce2l_jax import losses  # noqa: E402
from tests import loss_oracles  # noqa: E402
from benchmarks.machine_timing import machine, matmul_rate, timed  # noqa: E402

SHAPES = {"alexnet_tiny": (67, 67), "resnet_tiny": (64, 32), "bdtr_alexnet": (227, 227),
          "resnet50_agw": (288, 144)}
NUM_CLASSES = 395  # SYSU-MM01's training identities


# ------------------------------------------------------------------------------- losses ----


def bench_losses(repeats):
  rows = []
  for b in (128, 512):
    n, k = b // 2, 4
    rng = np.random.default_rng(b)
    pids_v = rng.permutation(np.repeat(np.arange(n // k), k))
    pids_t = rng.permutation(np.repeat(np.arange(n // k), k))
    fv = rng.normal(size=(n, 1024)).astype(np.float32) / 32
    ft = rng.normal(size=(n, 1024)).astype(np.float32) / 32

    def ranking(fv, ft):
      c, _ = losses.cross_modality_top_ranking(fv, ft, pids_v, pids_t, 0.5)
      i, _ = losses.intra_modality(fv, ft, pids_v, pids_t, 0.1)
      return c + 0.1 * i

    fwd = jax.jit(ranking)
    grad = jax.jit(jax.value_and_grad(ranking, argnums=(0, 1)))
    fv_j, ft_j = jnp.asarray(fv), jnp.asarray(ft)
    t_fwd = timed(lambda: fwd(fv_j, ft_j), repeats)[0]
    t_grad = timed(lambda: grad(fv_j, ft_j), repeats)[0]
    t = time.perf_counter()
    want = (loss_oracles.cross_modality_top_ranking(fv, ft, pids_v, pids_t, 0.5)
            + 0.1 * loss_oracles.intra_modality(fv, ft, pids_v, pids_t, 0.1))
    t_oracle = time.perf_counter() - t
    np.testing.assert_allclose(float(fwd(fv_j, ft_j)), want, rtol=1e-4)
    rows.append((b, t_fwd, t_grad, t_oracle))
  print("\n## Losses: ℓ_cross + 0.1·ℓ_intra, D = 1024, K = 4 (median of %d)\n" % repeats)
  print("| B (2N) | fused fwd | fused fwd+grad | loop oracle fwd (numpy) | oracle / fused fwd |")
  print("| --- | --- | --- | --- | --- |")
  for b, tf, tg, to in rows:
    print(f"| {b} | {tf * 1e3:.2f} ms | {tg * 1e3:.2f} ms | {to * 1e3:.0f} ms | {to / tf:.0f}× |")


# ---------------------------------------------------------------------------- train step ----


def bench_step(name, batch, repeats, fast=True):
  """One model's train step; returns a dict of figures (run in a subprocess)."""
  import optax

  from ce2l_jax.models import create_reid_model, init_reid_variables

  h, w = SHAPES[name]
  model = create_reid_model(name, NUM_CLASSES, fast=fast)
  t = time.perf_counter()
  variables = init_reid_variables(model, jax.random.key(0), h, w)
  t_init = time.perf_counter() - t
  tx = optax.sgd(0.01, momentum=0.9)
  state = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.normal(size=(2, batch, h, w, 3)), jnp.float32)
  pids = jnp.asarray(np.tile(np.repeat(np.arange(batch // 2), 2), (2, 1)), jnp.int32)

  def step(state, images, pids, key):
    params, batch_stats, opt_state = state

    def loss_fn(params):
      (_, out), new = model.apply({"params": params, "batch_stats": batch_stats}, images,
                                  train=True, rngs={"dropout": key}, mutable=["batch_stats"])
      total, terms = losses.ce2l_total_loss(out["logits"], out["feat"], pids)
      return total, (terms, new["batch_stats"])

    (_, (terms, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), batch_stats, opt_state), terms["loss"]

  jitted = jax.jit(step, donate_argnums=0)
  key = jax.random.key(1)
  t = time.perf_counter()
  compiled = jitted.lower(state, images, pids, key).compile()
  t_compile = time.perf_counter() - t
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get("flops", float("nan")))
  state, loss = compiled(state, images, pids, key)  # warm-up
  jax.block_until_ready(loss)
  ts, cpu = [], time.process_time()
  for i in range(repeats):
    t = time.perf_counter()
    state, loss = compiled(state, images, pids, jax.random.fold_in(key, i))
    jax.block_until_ready(loss)
    ts.append(time.perf_counter() - t)
  step_s = float(np.median(ts))
  return dict(name=name + ("" if fast else " (plain)"), shape=f"{h}×{w}", batch=f"{batch}+{batch}",
              init_s=t_init, compile_s=t_compile, step_s=step_s, img_s=2 * batch / step_s,
              cpu_per_step_s=(time.process_time() - cpu) / repeats, gflop=flops / 1e9,
              gflops=flops / step_s / 1e9, loss=float(loss),
              peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20)


def bench_models(models, batch, repeats, big_repeats):
  rows = []
  for spec in models:
    name, _, variant = spec.partition(":")
    n = repeats if name.endswith("tiny") else big_repeats
    cmd = [sys.executable, os.path.abspath(__file__), "--_one", name, "--batch", str(batch),
           "--repeats", str(n)] + (["--plain"] if variant == "plain" else [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    if r.returncode or not lines:
      print(f"{spec}: failed\n{r.stderr[-2000:]}")
      continue
    rows.append(json.loads(lines[-1]))
    print(f"  {spec}: {rows[-1]['step_s']:.2f} s/step", file=sys.stderr)
  print(f"\n## Train step (fwd + bwd + CE²L loss + SGD), median of {repeats} (tiny) / "
        f"{big_repeats} (full size) after one warm-up\n")
  print("| model | input | batch | compile | step | img/s | CPU s/step | GFLOP/step | "
        "GFLOP/s | peak RSS |")
  print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
  for r in rows:
    print(f"| {r['name']} | {r['shape']} | {r['batch']} | {r['compile_s']:.1f} s | "
          f"{r['step_s']:.3f} s | {r['img_s']:.1f} | {r['cpu_per_step_s']:.2f} | "
          f"{r['gflop']:.2f} | "
          f"{r['gflops']:.1f} | {r['peak_rss_gb']:.2f} GB |")


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--models", default="alexnet_tiny,resnet_tiny,bdtr_alexnet,bdtr_alexnet:plain,"
                 "resnet50_agw")
  p.add_argument("--batch", type=int, default=8, help="images per modality (N)")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--big_repeats", type=int, default=2, help="timed steps of full-size models")
  p.add_argument("--losses_only", action="store_true")
  p.add_argument("--_one", default="", help=argparse.SUPPRESS)
  p.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
  args = p.parse_args()
  if args._one:
    print(json.dumps(bench_step(args._one, args.batch, args.repeats, fast=not args.plain)))
    return
  t0 = time.perf_counter()
  print(f"Machine: {machine()}")
  print(f"float32 2048² matmul: {matmul_rate()[0]:.1f} GFLOP/s")
  bench_losses(max(args.repeats, 5))
  if not args.losses_only:
    bench_models([m for m in args.models.split(",") if m], args.batch, args.repeats,
                 args.big_repeats)
  print(f"\nfloat32 2048² matmul (again, end of run): {matmul_rate()[0]:.1f} GFLOP/s")
  print(f"Total wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
  main()
