"""The demo's two train steps (configs/synthetic.py) per convolution form, in one run.

`make demo` trains a tiny CycleGAN (ngf 8, 64×32, batch 4) and `resnet_tiny` (64×32, P=16 × K=2
per modality); this times each jitted train step on random data under each form of
`ce2l_jax.models.conv` (`CE2L_CONV_IMPL`): compile (first call) and steady-state seconds per step,
wall and process CPU. Each form runs in its own process (the form is fixed at trace time).

  python benchmarks/bench_demo_steps.py                      # native and mixed, both steps
  python benchmarks/bench_demo_steps.py --forms native,mixed,matmul --steps 20

Results with machine and load in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one(net: str, steps: int) -> dict:
  sys.path.insert(0, ROOT)
  import jax
  import jax.numpy as jnp
  import numpy as np
  from ce2l_jax import parallel
  from ce2l_jax.trainers import loop
  from ce2l_jax.config_check import load_config_file
  config = load_config_file(os.path.join(ROOT, "configs", "synthetic.py"))
  rng = np.random.default_rng(0)
  if net == "reid":
    from ce2l_jax.train_state import TrainState
    from ce2l_jax.trainers import reid as rt
    c = config.reid
    model = rt.create_model(c, 300)
    tx, sched = rt.make_optimizer(c, int(c.num_steps))
    step = jax.jit(rt.make_train_step(model, tx, sched, c), donate_argnums=(0,),
                   compiler_options=loop.cpu_compiler_options(rt.CPU_SCHEDULER) or None)
    h, w = config.input.image_size
    state = TrainState.create(rt.init_variables(model, (h, w, 3), jax.random.PRNGKey(0)), tx,
                              jax.random.PRNGKey(1))
    n = int(config.input.p) * int(config.input.k)
    batch = {"image": jnp.asarray(rng.integers(0, 255, (2, n, h, w, 3), dtype=np.uint8)),
             "pid": jnp.asarray(np.repeat(np.arange(config.input.p), config.input.k)[None]
                                .repeat(2, 0).astype(np.int32)),
             "converted": jnp.zeros((2, n), bool)}
    call = lambda s: step(s, batch)  # noqa: E731
  else:
    from ce2l_jax.trainers import cyclegan as cg
    c = config.cyclegan
    mesh = parallel.make_mesh()
    fns = cg.step_functions(c, mesh)
    state = cg.init_train_state(c, fns.models, fns.tx_g, fns.tx_d, mesh)
    b = {k: rng.integers(0, 255, (int(c.batch_size), *c.image_size, 3), dtype=np.uint8)
         for k in ("rgb", "ir")}
    batch = parallel.shard_batch(b, mesh)
    call = lambda s: fns.train_step(s, batch)  # noqa: E731
  t = time.perf_counter()
  state, m = call(state)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t
  t, c0 = time.perf_counter(), os.times()
  for _ in range(steps):
    state, m = call(state)
  jax.block_until_ready(m)
  c1 = os.times()
  return {"net": net, "form": os.environ.get("CE2L_CONV_IMPL", "auto"), "compile_s": compile_s,
          "wall_s_per_step": (time.perf_counter() - t) / steps,
          "cpu_s_per_step": (c1.user - c0.user + c1.system - c0.system) / steps}


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--forms", default="native,mixed")
  ap.add_argument("--nets", default="reid,cyclegan")
  ap.add_argument("--steps", type=int, default=20)
  ap.add_argument("--_one", default="", help=argparse.SUPPRESS)
  args = ap.parse_args(argv)
  if args._one:
    print(json.dumps(one(args._one, args.steps)))
    return
  print(f"load average {os.getloadavg()[0]:.1f}; {os.cpu_count()} cores")
  print(f"{'net':9s} {'form':7s} {'compile s':>10s} {'wall s/step':>12s} {'CPU s/step':>11s}")
  for net in args.nets.split(","):
    for form in args.forms.split(","):
      out = subprocess.run([sys.executable, __file__, f"--_one={net}", f"--steps={args.steps}"],
                           env={**os.environ, "CE2L_CONV_IMPL": form}, capture_output=True,
                           text=True, check=True).stdout.strip().splitlines()[-1]
      r = json.loads(out)
      print(f"{net:9s} {form:7s} {r['compile_s']:10.1f} {r['wall_s_per_step']:12.3f} "
            f"{r['cpu_s_per_step']:11.3f}", flush=True)


if __name__ == "__main__":
  main()
