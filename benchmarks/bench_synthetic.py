"""Synthetic dataset speed: rendering images/s at 64×32 and 128×64, PNG encoding, TFDS build.

Renders a random mix of a config's images (all six cameras) with `ce2l_jax.data.synthetic.render`
on one core (numpy, single-threaded) and reports the best of a few repeats, both per second of
wall time and per second of this process's CPU time (the two differ when other processes share
the CPU). Then times PIL PNG encoding and building `synthetic_vireid/small` (array_record) into a
temp folder.

    .venv/bin/python benchmarks/bench_synthetic.py            # ~30 s on 2 shared cores
    .venv/bin/python benchmarks/bench_synthetic.py --default  # also build synthetic_vireid/default

Results and the machine: docs/benchmarks.md (synthetic section).
"""

import argparse
import dataclasses
import os
import platform
import subprocess
import tempfile
import time

import numpy as np

from ce2l_jax.data import synthetic


def _timed(fn, repeats):
  """Best (wall, cpu) seconds of `repeats` calls."""
  best_wall = best_cpu = float("inf")
  for _ in range(repeats):
    w, c = time.perf_counter(), time.process_time()
    fn()
    best_wall = min(best_wall, time.perf_counter() - w)
    best_cpu = min(best_cpu, time.process_time() - c)
  return best_wall, best_cpu


def bench_render(height, width, num_images, repeats):
  cfg = dataclasses.replace(synthetic.CONFIGS["default"], height=height, width=width)
  table = synthetic.specs(cfg)
  ids = synthetic.identities(cfg)
  rows = np.random.default_rng(0).permutation(len(table["pid"]))[:num_images]
  out = {}
  for name, keep in (("mixed", np.ones(len(rows), bool)),
                     ("visible", table["modality"][rows] == 0),
                     ("infrared", table["modality"][rows] == 1)):
    part = synthetic.take(table, rows[keep])
    synthetic.render(cfg, synthetic.take(part, slice(0, 32)), ids)  # warm up (noise bank)
    wall, cpu = _timed(lambda: synthetic.render(cfg, part, ids), repeats)
    out[name] = (len(part["pid"]) / wall, len(part["pid"]) / cpu)
  images = synthetic.render(cfg, synthetic.take(table, rows[:256]), ids)
  wall, cpu = _timed(lambda: [synthetic.encode_png(im) for im in images], repeats)
  out["png encode"] = (len(images) / wall, len(images) / cpu)
  return out


def bench_build(config):
  # Imported here: the rendering benchmark needs no TFDS.
  from tfds_builders.synthetic_vireid import synthetic_vireid_dataset_builder as b
  with tempfile.TemporaryDirectory() as data_dir:
    w, c = time.perf_counter(), time.process_time()
    b.SyntheticVireid(config=config, data_dir=data_dir,
                      file_format="array_record").download_and_prepare()
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(data_dir) for f in fs)
  return wall, cpu, size


def machine():
  try:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                 if line.startswith("Model name"))
  except (OSError, subprocess.CalledProcessError, StopIteration):
    model = platform.processor() or "unknown"
  return (f"{model}, {os.cpu_count()} cores, numpy {np.__version__}, "
          f"Python {platform.python_version()}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--images", type=int, default=1024, help="images rendered per size")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--default", action="store_true", help="also build synthetic_vireid/default")
  args = parser.parse_args()
  print(f"machine: {machine()}; load average before: {os.getloadavg()[0]:.2f}")
  print("| size | images | images/s (wall) | images/s (CPU time) |")
  print("|------|--------|----------------:|--------------------:|")
  for h, w in ((64, 32), (128, 64)):
    for name, (per_wall, per_cpu) in bench_render(h, w, args.images, args.repeats).items():
      print(f"| {h}×{w} | {name} | {per_wall:,.0f} | {per_cpu:,.0f} |")
  print("\n| build (array_record, PNG) | wall s | CPU s | size |")
  print("|---------------------------|-------:|------:|-----:|")
  for config in ("small",) + (("default",) if args.default else ()):
    wall, cpu, size = bench_build(config)
    print(f"| synthetic_vireid/{config} | {wall:.1f} | {cpu:.1f} | {size / 2**20:.1f} MiB |")
  print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
  main()
