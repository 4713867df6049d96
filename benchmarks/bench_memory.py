"""Resident memory of a long re-ID run: does anything grow with the step count?

  .venv/bin/python benchmarks/bench_memory.py [--steps 1000] [--checkpoint_every 100]
      [--data_dir /tmp/ce2l_bench_tfds] [--workdir /tmp/ce2l_bench_memory] [--max_growth 0.10]
      [--every 100] [--no_tensorboard]

The smoke config's re-ID stage (configs/smoke.py without the CycleGAN: synthetic_vireid/tiny
through the real TFDS + grain P×K pipeline, `resnet_tiny` at 32×16, P=4 K=2, the CE²L losses,
SGD, orbax checkpoints with the data position, metrics.jsonl + TensorBoard) run through
`reid.train` for `--steps` steps on the machine's real devices (no fake devices). The resident set
size of this process (psutil, else VmRSS of /proc/self/status) is read every 100 steps, when
the trainer logs (`reid.log_every` = 100). Prints the table, the growth from step 100 to the last
step, and exits with code 1 when that growth is `--max_growth` (10%) or more.

Step 100 is the reference, not step 0: by then every compile, the first checkpoint, grain's
prefetch threads and the allocator's pools exist. Results: docs/benchmarks.md (memory section).
"""

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def rss_mib() -> float:
  try:
    import psutil
    return psutil.Process().memory_info().rss / 2**20
  except ImportError:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmRSS:"):
          return int(line.split()[1]) / 1024
  raise RuntimeError("cannot read the resident set size")


def machine() -> str:
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")
  except (OSError, subprocess.SubprocessError):
    model = platform.processor() or "?"
  load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
  return (f"{model}, {os.cpu_count()} logical CPUs, load average "
          f"{' '.join(f'{x:.2f}' for x in load)}")


def main() -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--steps", type=int, default=1000)
  ap.add_argument("--every", type=int, default=100, help="RSS sampling (= reid.log_every)")
  ap.add_argument("--checkpoint_every", type=int, default=100)
  ap.add_argument("--data_dir", default="/tmp/ce2l_bench_tfds")
  ap.add_argument("--workdir", default="/tmp/ce2l_bench_memory")
  ap.add_argument("--max_growth", type=float, default=0.10)
  ap.add_argument("--no_tensorboard", action="store_true", help="metrics.jsonl only")
  args = ap.parse_args()

  import jax
  from ce2l_jax import parallel, stages
  from ce2l_jax.metric_writer import MetricWriter
  from ce2l_jax.trainers import reid

  config = stages.load_config_file(os.path.join(ROOT, "configs", "smoke.py"))
  config.data.data_dir = args.data_dir
  config.cyclegan.enabled = False
  config.reid.update(dict(num_steps=args.steps, log_every=args.every,
                          checkpoint_every=args.checkpoint_every, progress=False))
  config = stages.prepare_config(config)
  stages.ensure_data(config)
  shutil.rmtree(args.workdir, ignore_errors=True)
  sdir = os.path.join(args.workdir, "reid")
  samples: list[tuple[int, float, float]] = []
  t0 = time.perf_counter()

  class RssWriter(MetricWriter):
    def write_scalars(self, step, scalars):
      super().write_scalars(step, scalars)
      if "loss" in scalars:
        samples.append((int(step), rss_mib(), time.perf_counter() - t0))
        print(f"step {step:5d}: RSS {samples[-1][1]:8.1f} MiB, loss {float(scalars['loss']):.4f}, "
              f"{samples[-1][2]:6.1f} s", flush=True)

  mesh = parallel.make_mesh(config.mesh.num_devices or None)
  pipe = reid.build_train_pipeline(config, mesh)
  writer = RssWriter(args.workdir, reid.STAGE, tensorboard=not args.no_tensorboard)
  rss_start = rss_mib()
  try:
    reid.train(config, sdir, pipe.iterator(), pipe.num_classes, mesh,
               steps_per_epoch=pipe.steps_per_epoch, writer=writer)
  finally:
    writer.close()
  total = time.perf_counter() - t0

  ref_step, ref, _ = next((x for x in samples if x[0] >= 100), samples[0])
  last_step, last, _ = samples[-1]
  growth = (last - ref) / ref
  print()
  print(f"machine: {machine()}")
  print(f"jax {jax.__version__}, backend {jax.default_backend()}, {jax.device_count()} device(s); "
        f"{args.steps} steps in {total:.0f} s, checkpoint every {args.checkpoint_every}, "
        f"TensorBoard {'off' if args.no_tensorboard else 'on'}")
  print(f"RSS before training: {rss_start:.1f} MiB")
  print(f"RSS at step {ref_step}: {ref:.1f} MiB; at step {last_step}: {last:.1f} MiB; growth "
        f"{100 * growth:+.2f}% (limit {100 * args.max_growth:.0f}%)")
  if len(samples) > 2:
    s2, r2, _ = samples[1]
    print(f"steady state (after the first sample's transient compile/checkpoint memory): step {s2} "
          f"{r2:.1f} MiB → step {last_step} {last:.1f} MiB, {100 * (last - r2) / r2:+.2f}%, "
          f"{(last - r2) * 1024 / max(last_step - s2, 1):.2f} KiB/step")
  print("| step | RSS (MiB) | elapsed (s) |\n| ---: | ---: | ---: |")
  for s, r, t in samples:
    print(f"| {s} | {r:.1f} | {t:.0f} |")
  return 0 if growth < args.max_growth else 1


if __name__ == "__main__":
  sys.exit(main())
