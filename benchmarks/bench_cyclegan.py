"""CycleGAN stage throughput: train-step and conversion images per second, with peak memory.

  python benchmarks/bench_cyclegan.py                      # ngf=ndf=64 (the reference widths)
  python benchmarks/bench_cyclegan.py --ngf=16 --steps=3   # shrunk for a CPU (~3 min on 2 cores)
  python benchmarks/bench_cyclegan.py --json=/tmp/bench.json

For each image size (default 128×64 with 6 residual blocks and 256×128 with 9, as the reference
uses at 128 / 256 px) on all local devices (jit over the `data` mesh, batch sharded):
- train: one full jitted step (both generators, both discriminators, the pools); images/s
  counts both domains (2 × batch per step); compile time separately;
- convert (generator only): the jitted `convert` of `ce2l_jax.convert`, uint8 in → uint8 out;
- convert (end to end): `convert.convert_source` over an in-memory set of source-size images
  (host decode, resize, translate, resize back, PNG, chunk files), the real stage's cost.
Peak memory: the process's max RSS (resource.getrusage) and, on GPUs, the device's
`peak_bytes_in_use`. Results: docs/benchmarks.md (cyclegan section).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from ce2l_jax import convert, parallel  # noqa: E402
from ce2l_jax.data import sources  # noqa: E402
from ce2l_jax.models import cyclegan as cg  # noqa: E402
from ce2l_jax.trainers import cyclegan as T  # noqa: E402


def _peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _device_peak_mb() -> float | None:
  stats = jax.local_devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return None if peak is None else peak / 2 ** 20


def _machine() -> dict:
  out = {"platform": jax.default_backend(), "devices": [str(d.device_kind) for d in jax.local_devices()],
         "python": platform.python_version(), "jax": jax.__version__, "cpu_count": os.cpu_count()}
  try:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    for line in lscpu.splitlines():
      if line.startswith("Model name:"):
        out["cpu_model"] = line.split(":", 1)[1].strip()
  except (OSError, subprocess.CalledProcessError):
    pass
  try:
    out["loadavg_1min"] = os.getloadavg()[0]
  except OSError:
    pass
  return out


def bench_size(size, n_blocks, args, mesh) -> dict:
  ndev = mesh.devices.size
  batch = ndev * max(1, args.batch // ndev)
  from ce2l_jax.config_check import BASE_CONFIG, load_config_file
  cfg = load_config_file(BASE_CONFIG).cyclegan.copy_and_resolve_references()  # the reference's numbers
  cfg.update(dict(image_size=size, ngf=args.ngf, ndf=args.ndf or args.ngf, n_blocks=n_blocks,
                  batch_size=batch, num_steps=10_000, decay_start=5_000))
  models, tx_g, tx_d, step, _ = T.step_functions(cfg, mesh)  # a StepFunctions named tuple
  state = T.init_train_state(cfg, models, tx_g, tx_d, mesh)
  rng = np.random.default_rng(0)
  host = {k: rng.integers(0, 256, (batch, *size, 3), dtype=np.uint8) for k in ("rgb", "ir")}
  b = parallel.shard_batch(host, mesh)
  t = time.perf_counter()
  compiled = step.lower(state, b).compile()
  compile_s = time.perf_counter() - t
  state, m = step(state, b)  # warm-up
  jax.block_until_ready(m)
  t = time.perf_counter()
  for _ in range(args.steps):
    state, m = step(state, b)
  jax.block_until_ready((state, m))
  dt = time.perf_counter() - t
  del compiled
  row = {"size": f"{size[0]}x{size[1]}", "n_blocks": n_blocks, "ngf": cfg.ngf, "ndf": cfg.ndf,
         "batch": batch, "gen_params_M": cg.count_params(state.params["gen_rgb2ir"]) / 1e6,
         "train_compile_s": compile_s, "train_step_s": dt / args.steps,
         "train_images_per_s": 2 * batch * args.steps / dt}

  fn = convert.make_convert_fn(cfg, mesh)
  cb = ndev * max(1, args.convert_batch // ndev)
  imgs = parallel.shard_batch({"x": rng.integers(0, 256, (cb, *size, 3), dtype=np.uint8)}, mesh)["x"]
  gen = parallel.replicate(state.params["gen_rgb2ir"], mesh)
  jax.block_until_ready(fn(gen, imgs))
  t = time.perf_counter()
  for _ in range(args.convert_calls):
    out = fn(gen, imgs)
  jax.block_until_ready(out)
  row["convert_gen_images_per_s"] = cb * args.convert_calls / (time.perf_counter() - t)

  # End to end over source-size images (decode, resize, translate, resize back, PNG, chunks).
  n = 2 * cb * max(1, args.convert_images // (2 * cb))  # whole batches per modality: no padding
  src_size = (size[0] * 9 // 8, size[1] * 9 // 8)  # sources are not at the generator size
  data = {"image": rng.integers(0, 256, (n, *src_size, 3), dtype=np.uint8),
          "pid": np.arange(n), "camid": np.where(np.arange(n) % 2, 3, 1),
          "modality": np.arange(n) % 2, "file": np.array([f"f{i}.png" for i in range(n)], object)}
  with tempfile.TemporaryDirectory() as d:  # warm-up (host-array input compiles once more)
    convert.convert_source(sources.SubsetSource(sources.InMemorySource(data), [0, 1]), state.params, d,
                           cfg=cfg, batch_size=cb, chunk_size=2, mesh=mesh, progress=False)
  with tempfile.TemporaryDirectory() as d:
    st = convert.convert_source(sources.InMemorySource(data), state.params, d, cfg=cfg,
                                batch_size=cb, chunk_size=n, mesh=mesh, progress=False)
  row["convert_e2e_images_per_s"] = st["images_per_sec"]
  row["peak_rss_mb"] = _peak_rss_mb()
  row["device_peak_mb"] = _device_peak_mb()
  return row


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--ngf", type=int, default=64)
  ap.add_argument("--ndf", type=int, default=None, help="default: --ngf")
  ap.add_argument("--sizes", default="128x64:6,256x128:9", help="HxW:n_blocks,...")
  ap.add_argument("--batch", type=int, default=8, help="global train batch per domain")
  ap.add_argument("--steps", type=int, default=5, help="timed train steps per size")
  ap.add_argument("--convert_batch", type=int, default=32)
  ap.add_argument("--convert_calls", type=int, default=4)
  ap.add_argument("--convert_images", type=int, default=64, help="rounded to 2 × convert_batch multiples")
  ap.add_argument("--json", default=None)
  args = ap.parse_args()
  mesh = parallel.make_mesh()
  machine = _machine()
  print(json.dumps(machine))
  rows = []
  t0 = time.perf_counter()
  for spec in args.sizes.split(","):
    hw, nb = spec.split(":")
    size = tuple(int(s) for s in hw.split("x"))
    row = bench_size(size, int(nb), args, mesh)
    rows.append(row)
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
  total = time.perf_counter() - t0
  print(f"total {total:.0f} s")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"machine": machine, "args": vars(args), "rows": rows, "total_s": total}, f, indent=1)


if __name__ == "__main__":
  main()
