"""Train-step speed of the three networks against the same run's matmul roofline (issue 15).

  .venv/bin/python benchmarks/bench_steps.py                       # all nets, both conv forms
  .venv/bin/python benchmarks/bench_steps.py --nets alexnet --forms matmul --steps 3
  .venv/bin/python benchmarks/bench_steps.py --torch_python /tmp/torchvenv/bin/python
  .venv/bin/python benchmarks/bench_steps.py --layers              # per-layer conv table

Networks (the paper's shapes; CPU-sized batches, see the flags):
* `alexnet`: BDTR two-stream AlexNet (`bdtr_alexnet`), N visible + N infrared at 227×227;
* `resnet`: AGW ResNet-50 (`resnet50_agw`, last stride 1), N + N at 288×144;
* `cyclegan`: the reference CycleGAN (ResNet-9 generators ngf 64, 70×70 PatchGANs ndf 64) at
  128×64, batch N per domain: generator step (G, F, identity, cycle, LSGAN) then discriminator
  step, Adam — the trainer's step minus the history pools.
The re-ID step is forward + backward of the model on a paired batch + CE²L's loss
(`ce2l_total_loss`) + SGD with momentum. Each (net, form) runs in its own subprocess, so its peak
RSS is its own; `form` is the convolution form (`CE2L_CONV_IMPL`, see `ce2l_jax.models.conv`:
`auto` = the default, per layer `conv.auto_form`; `mixed` = XLA forward + gradients as dots in
every layer; `matmul` = im2col + dot throughout; `native` = XLA's convolutions and their
autodiff gradients in every layer (the default before 2026-12-01); `plain` = native with the
plain max-pool / grouped-conv layers too (`fast=False`), i.e. the project before issue 15).

Printed per row, all from one process: img/s (both modalities / domains), step time (median of
`--steps` after one warm-up) and its CPU time, the forward time (the same loss without the
gradient, jitted alone) and backward+update = step − forward, the step's FLOPs from XLA's
`cost_analysis()` (of the first form run, for every form, so that the rates compare the same
work; each form's own count is in the JSON), achieved GFLOP/s, the float32 2048² `dot` GFLOP/s measured
in the same process just before and after the step, and their ratio (wall clock, and CPU time:
FLOPs per CPU-second over the dot's FLOPs per CPU-second — the steadier figure on a shared
machine). With `--torch_python` (an interpreter with torch + torchvision, e.g. a separate venv)
a PyTorch twin of each step (`benchmarks/torch_twins.py`) runs on the same batch and prints its
img/s and its own dot rate. The machine may be shared: the load average is printed per row.
"""

from __future__ import annotations

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

from benchmarks.machine_timing import machine, matmul_rate, timed  # noqa: E402

NETS = ("alexnet", "resnet", "cyclegan")
FORMS = ("auto", "mixed", "matmul", "native", "plain")
NUM_CLASSES = 395  # SYSU-MM01's training identities


# --------------------------------------------------------------------- timing helpers ----


def _flops(compiled) -> float:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", float("nan")))


# ---------------------------------------------------------------------- the JAX steps ----


def reid_step(net: str, batch: int, fast: bool, tiny: bool = False):
  """(step(state, batch) → (state, loss), loss_fn(state, batch) → loss, state, batch, images/step)."""
  import jax
  import jax.numpy as jnp
  import optax

  from ce2l_jax import losses
  from ce2l_jax.models import create_reid_model, init_reid_variables
  name, (h, w) = {"alexnet": ("bdtr_alexnet", (227, 227)),
                  "resnet": ("resnet50_agw", (288, 144))}[net]
  if tiny:
    name, (h, w) = {"alexnet": ("alexnet_tiny", (67, 67)), "resnet": ("resnet_tiny", (64, 32))}[net]
  model = create_reid_model(name, NUM_CLASSES, fast=fast)
  v = init_reid_variables(model, jax.random.key(0), h, w)
  tx = optax.sgd(0.01, momentum=0.9)
  state = (v["params"], v["batch_stats"], tx.init(v["params"]))
  rng = np.random.default_rng(0)
  data = (jnp.asarray(rng.normal(size=(2, batch, h, w, 3)), jnp.float32),
          jnp.asarray(np.tile(np.repeat(np.arange(batch // 2), 2), (2, 1)), jnp.int32),
          jax.random.key(1))

  def loss_fn(params, batch_stats, data):
    images, pids, key = data
    (_, out), new = model.apply({"params": params, "batch_stats": batch_stats}, images,
                                train=True, rngs={"dropout": key}, mutable=["batch_stats"])
    total, _ = losses.ce2l_total_loss(out["logits"], out["feat"], pids)
    return total, new["batch_stats"]

  def step(state, data):
    params, batch_stats, opt_state = state
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats,
                                                                           data)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), batch_stats, opt_state), loss

  forward = lambda state, data: loss_fn(state[0], state[1], data)[0]
  return step, forward, state, data, 2 * batch


def cyclegan_step(batch: int, size=(128, 64), ngf: int = 64, n_blocks: int = 9):
  """The reference CycleGAN step (see the module docstring); same return as `reid_step`."""
  import jax
  import jax.numpy as jnp
  import optax

  from ce2l_jax.losses import l1_loss, lsgan_discriminator_loss, lsgan_generator_loss
  from ce2l_jax.models import cyclegan as cg
  models = {"gen_rgb2ir": cg.ResnetGenerator(ngf=ngf, n_blocks=n_blocks),
            "gen_ir2rgb": cg.ResnetGenerator(ngf=ngf, n_blocks=n_blocks),
            "disc_rgb": cg.PatchDiscriminator(ndf=ngf), "disc_ir": cg.PatchDiscriminator(ndf=ngf)}
  params = jax.tree.map(jnp.asarray, cg.init_params(models, 0, size))
  tx = optax.adam(2e-4, b1=0.5)
  gp = {k: params[k] for k in ("gen_rgb2ir", "gen_ir2rgb")}
  dp = {k: params[k] for k in ("disc_rgb", "disc_ir")}
  state = (gp, dp, tx.init(gp), tx.init(dp))
  rng = np.random.default_rng(0)
  data = tuple(jnp.asarray(rng.uniform(-1, 1, (batch, *size, 3)), jnp.float32) for _ in range(2))
  G = lambda p, im: models["gen_rgb2ir"].apply({"params": p["gen_rgb2ir"]}, im)
  F = lambda p, im: models["gen_ir2rgb"].apply({"params": p["gen_ir2rgb"]}, im)
  D = lambda p, k, im: models[k].apply({"params": p[k]}, im)

  def g_loss(gp, dp, x, y):
    fake_ir, fake_rgb = G(gp, x), F(gp, y)
    total = (lsgan_generator_loss(D(dp, "disc_ir", fake_ir))
             + lsgan_generator_loss(D(dp, "disc_rgb", fake_rgb))
             + 10 * l1_loss(F(gp, fake_ir), x) + 10 * l1_loss(G(gp, fake_rgb), y)
             + 5 * l1_loss(G(gp, y), y) + 5 * l1_loss(F(gp, x), x))
    return total, (fake_rgb, fake_ir)

  def d_loss(dp, x, y, fake_rgb, fake_ir):
    return (lsgan_discriminator_loss(D(dp, "disc_rgb", x), D(dp, "disc_rgb", fake_rgb))
            + lsgan_discriminator_loss(D(dp, "disc_ir", y), D(dp, "disc_ir", fake_ir)))

  def step(state, data):
    gp, dp, og, od = state
    x, y = data
    (lg, (fake_rgb, fake_ir)), gg = jax.value_and_grad(g_loss, has_aux=True)(gp, dp, x, y)
    upd, og = tx.update(gg, og, gp)
    gp = optax.apply_updates(gp, upd)
    fakes = jax.lax.stop_gradient((fake_rgb, fake_ir))
    ld, gd = jax.value_and_grad(d_loss)(dp, x, y, *fakes)
    upd, od = tx.update(gd, od, dp)
    return (gp, optax.apply_updates(dp, upd), og, od), lg + ld

  def forward(state, data):
    gp, dp, _, _ = state
    lg, (fake_rgb, fake_ir) = g_loss(gp, dp, *data)
    return lg + d_loss(dp, *data, fake_rgb, fake_ir)

  return step, forward, state, data, 2 * batch


def step_options(net: str) -> dict | None:
  """The compiler options the trainers compile `net`'s step with (XLA:CPU's scheduler)."""
  from ce2l_jax.trainers import cyclegan, loop, reid
  return loop.cpu_compiler_options(cyclegan.CPU_SCHEDULER if net == "cyclegan"
                                   else reid.CPU_SCHEDULER) or None


def bench_one(net: str, form: str, batch: int, steps: int, tiny: bool = False) -> dict:
  """One (net, form) in this process; `CE2L_CONV_IMPL` must already be set to `form`."""
  import jax
  d0 = matmul_rate()
  if net == "cyclegan":
    kw = dict(size=(64, 32), ngf=8, n_blocks=1) if tiny else {}
    step, forward, state, data, n_img = cyclegan_step(batch, **kw)
  else:
    step, forward, state, data, n_img = reid_step(net, batch, fast=form != "plain", tiny=tiny)
  options = step_options(net)
  t = time.perf_counter()
  compiled = jax.jit(step, donate_argnums=0).lower(state, data).compile(compiler_options=options)
  compile_s = time.perf_counter() - t
  fwd = jax.jit(forward).lower(state, data).compile(compiler_options=options)
  flops, fwd_flops = _flops(compiled), _flops(fwd)
  fwd_s, fwd_cpu = timed(lambda: fwd(state, data), steps)
  box = [state, None]

  def run():
    box[0], box[1] = compiled(box[0], data)
    return box[1]
  step_s, step_cpu = timed(run, steps)
  loss = float(box[1])
  d1 = matmul_rate()
  return dict(net=net, form=form, batch=batch, images_per_step=n_img, compile_s=compile_s,
              step_s=step_s, step_cpu_s=step_cpu, fwd_s=fwd_s, fwd_cpu_s=fwd_cpu,
              gflop=flops / 1e9, fwd_gflop=fwd_flops / 1e9, loss=loss,
              dot_gflops=(d0[0] + d1[0]) / 2, dot_gflops_cpu=(d0[1] + d1[1]) / 2,
              dot_before_after=(d0[0], d1[0]), load=os.getloadavg()[0],
              peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20)


# -------------------------------------------------------------------- per-layer table ----

LAYERS = {  # name: (x shape at batch n, kernel, stride, padding, groups, needs input grad)
    "AlexNet conv1 11×11/4": (lambda n: (n, 227, 227, 3), (11, 11, 3, 96), 4, 0, 1, False),
    "AlexNet conv2 5×5 g2": (lambda n: (n, 27, 27, 96), (5, 5, 48, 256), 1, 2, 2, True),
    "AlexNet conv3 3×3": (lambda n: (n, 13, 13, 256), (3, 3, 256, 384), 1, 1, 1, True),
    "AlexNet conv4 3×3 g2": (lambda n: (n, 13, 13, 384), (3, 3, 192, 384), 1, 1, 2, True),
    "ResNet stem 7×7/2": (lambda n: (n, 288, 144, 3), (7, 7, 3, 64), 2, 3, 1, False),
    "ResNet layer1 3×3": (lambda n: (n, 72, 36, 64), (3, 3, 64, 64), 1, 1, 1, True),
    "ResNet layer2 3×3/2": (lambda n: (n, 72, 36, 128), (3, 3, 128, 128), 2, 1, 1, True),
    "ResNet 1×1": (lambda n: (n, 72, 36, 256), (1, 1, 256, 64), 1, 0, 1, True),
    "ResNet downsample 1×1/2": (lambda n: (n, 72, 36, 256), (1, 1, 256, 512), 2, 0, 1, True),
    "ResNet layer4 3×3": (lambda n: (n, 18, 9, 512), (3, 3, 512, 512), 1, 1, 1, True),
    "CycleGAN block 3×3": (lambda n: (n, 34, 18, 256), (3, 3, 256, 256), 1, 0, 1, True),
    "CycleGAN down 3×3/2": (lambda n: (n, 64, 32, 64), (3, 3, 64, 128), 2, 1, 1, True),
    "CycleGAN head 7×7": (lambda n: (n, 134, 70, 64), (7, 7, 64, 3), 1, 0, 1, True),
    "PatchGAN 4×4/2": (lambda n: (n, 64, 32, 64), (4, 4, 64, 128), 2, 1, 1, True),
    "PatchGAN 4×4/1": (lambda n: (n, 16, 8, 256), (4, 4, 256, 512), 1, 1, 1, True),
    "CycleGAN up T3×3/2": (lambda n: (n, 32, 16, 256), (3, 3, 128, 256), 2, ((1, 2), (1, 2)), 0,
                           True),
}


def bench_layers(batch: int, repeats: int, forms: list[str], only: str = "") -> None:
  """fwd and fwd+bwd CPU seconds of each layer shape in each conv form, in this process."""
  import jax
  import jax.numpy as jnp

  from ce2l_jax.models import conv as C
  rng = np.random.default_rng(0)
  d = matmul_rate()
  print(f"float32 2048² dot: {d[0]:.0f} GFLOP/s wall, {d[1]:.0f} GFLOP per CPU-second")
  head = " | ".join(f"{f} fwd | {f} fwd+bwd" for f in forms)
  print(f"\n| layer (batch {batch}) | GFLOP fwd | {head} | fwd+bwd {forms[0]} / {forms[-1]} | "
        f"{forms[-1]} fwd+bwd GFLOP/CPU-s |")
  print("| --- | ---: |" + " ---: | ---: |" * len(forms) + " ---: | ---: |")
  for name, (xs, ks, s, p, g, dx) in LAYERS.items():
    if only and not any(o in name for o in only.split(",")):
      continue
    x = jnp.asarray(rng.normal(size=xs(batch)), jnp.float32)
    k = jnp.asarray(rng.normal(size=ks), jnp.float32) * 0.05
    if g == 0:  # transposed
      fn = lambda x, k, impl: C.conv_transpose2d(x, k, s, p, impl=impl)
      y_shape = jax.eval_shape(lambda: fn(x, k, "native")).shape
      flops = 2 * np.prod(xs(batch)) * ks[0] * ks[1] * ks[2]
    else:
      fn = lambda x, k, impl: C.conv2d(x, k, s, p, g, impl=impl)
      y_shape = jax.eval_shape(lambda: fn(x, k, "native")).shape
      flops = 2 * np.prod(y_shape) * ks[0] * ks[1] * ks[2]
    ct = jnp.ones(y_shape, jnp.float32)
    row = []
    for impl in forms:
      f = jax.jit(lambda x, k, impl=impl: fn(x, k, impl))
      gf = jax.jit(jax.grad(lambda x, k, impl=impl: jnp.vdot(fn(x, k, impl), ct),
                            argnums=(0, 1) if dx else 1))
      row += [timed(lambda: f(x, k), repeats)[1], timed(lambda: gf(x, k), repeats)[1]]
    fb = flops * (3 if dx else 2)
    cells = " | ".join(f"{v:.3f}" for v in row)
    print(f"| {name} | {flops / 1e9:.2f} | {cells} | {row[1] / row[-1]:.2f}× | "
          f"{fb / row[-1] / 1e9:.0f} |", flush=True)
  print("\n(CPU seconds per call, median; fwd+bwd = forward + weight gradient (+ input gradient "
        f"where the network needs it); load average {os.getloadavg()[0]:.1f})")


# ------------------------------------------------------------------------------ main ----


def _subprocess(cmd: list[str], env: dict | None = None) -> dict | None:
  r = subprocess.run(cmd, capture_output=True, text=True, env=env)
  lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
  if r.returncode or not lines:
    print(f"failed: {' '.join(cmd[-6:])}\n{r.stderr[-2000:]}", file=sys.stderr)
    return None
  return json.loads(lines[-1])


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--nets", default=",".join(NETS))
  p.add_argument("--forms", default="native,auto", help=f"conv forms among {FORMS}")
  p.add_argument("--alexnet_batch", type=int, default=16, help="images per modality")
  p.add_argument("--resnet_batch", type=int, default=8, help="images per modality")
  p.add_argument("--cyclegan_batch", type=int, default=2, help="images per domain")
  p.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up")
  p.add_argument("--torch_python", default=os.environ.get("CE2L_TORCH_PYTHON", ""),
                 help="a Python with torch + torchvision for the PyTorch twin column")
  p.add_argument("--layers", action="store_true", help="the per-layer conv table instead")
  p.add_argument("--layer_batch", type=int, default=8)
  p.add_argument("--layer_filter", default="", help="comma-separated substrings of layer names")
  p.add_argument("--tiny", action="store_true",
                 help="tiny networks (alexnet_tiny, resnet_tiny, CycleGAN ngf 8, 1 block, 64×32): a "
                      "smoke run of this script, not a benchmark")
  p.add_argument("--json", default="")
  p.add_argument("--_one", default="", help=argparse.SUPPRESS)
  args = p.parse_args()
  if args._one:
    net, form, batch = args._one.split(":")
    print(json.dumps(bench_one(net, form, int(batch), args.steps, args.tiny)))
    return
  print(f"Machine: {machine()}")
  if args.layers:
    bench_layers(args.layer_batch, args.steps, args.forms.split(","), args.layer_filter)
    return
  t0 = time.perf_counter()
  rows, twins = [], {}
  for net in [n for n in args.nets.split(",") if n]:
    if net not in NETS:
      raise SystemExit(f"error: --nets: unknown net {net!r}; choose from {NETS}")
    batch = getattr(args, f"{net}_batch")
    for form in [f for f in args.forms.split(",") if f]:
      env = {**os.environ, "CE2L_CONV_IMPL": "native" if form == "plain" else form}
      r = _subprocess([sys.executable, os.path.abspath(__file__), "--_one",
                       f"{net}:{form}:{batch}", "--steps", str(args.steps)]
                      + (["--tiny"] if args.tiny else []), env)
      if r:
        rows.append(r)
        print(f"  {net} {form}: {r['step_s']:.2f} s/step", file=sys.stderr, flush=True)
    if args.torch_python and not args.tiny:
      r = _subprocess([args.torch_python, os.path.join(ROOT, "benchmarks", "torch_twins.py"),
                       net, str(batch), str(args.steps)])
      if r:
        twins[net] = r
        print(f"  {net} torch: {r['step_s']:.2f} s/step", file=sys.stderr, flush=True)
  useful = {}
  for r in rows:
    useful.setdefault(r["net"], r["gflop"])
  rows_of = lambda net: [r for r in rows if r["net"] == net]
  print(f"\n## Train steps, median of {args.steps} after one warm-up\n")
  print("| net | conv form | batch | step s (CPU s) | img/s | fwd s | bwd+update s | GFLOP/step | "
        "GFLOP/s | dot GFLOP/s | ratio | ratio (CPU time) | peak RSS | load | PyTorch img/s "
        "(its dot) | img per CPU-s: JAX / PyTorch |")
  print("| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
        "---: | ---: | ---: |")
  for r in rows:
    gflop = useful.get(r["net"], r["gflop"])
    rate = gflop / r["step_s"]
    rate_cpu = gflop / r["step_cpu_s"]
    tw = twins.get(r["net"])
    tcol = (f"{tw['img_s']:.2f} ({tw['dot_gflops']:.0f})" if tw and r is rows_of(r["net"])[0]
            else "")
    tcpu = (f"{r['images_per_step'] / r['step_cpu_s']:.2f} / {tw['img_per_cpu_s']:.2f} = "
            f"{r['images_per_step'] / r['step_cpu_s'] / tw['img_per_cpu_s']:.2f}×"
            if tw and "img_per_cpu_s" in tw else "")
    print(f"| {r['net']} | {r['form']} | {r['batch']}+{r['batch']} | {r['step_s']:.2f} "
          f"({r['step_cpu_s']:.2f}) | {r['images_per_step'] / r['step_s']:.2f} | "
          f"{r['fwd_s']:.2f} | {r['step_s'] - r['fwd_s']:.2f} | {gflop:.0f} | {rate:.0f} | "
          f"{r['dot_gflops']:.0f} | {rate / r['dot_gflops']:.0%} | "
          f"{rate_cpu / r['dot_gflops_cpu']:.0%} | {r['peak_rss_gb']:.1f} GiB | {r['load']:.1f} | "
          f"{tcol} | {tcpu} |")
  print(f"\nGFLOP/step: XLA cost analysis of the net's first form (the same work for every form); "
        f"total {time.perf_counter() - t0:.0f} s")
  if args.json:
    with open(args.json + ".tmp", "w") as f:
      json.dump({"machine": machine(), "args": vars(args), "rows": rows, "torch": twins}, f,
                indent=1)
    os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
  main()
