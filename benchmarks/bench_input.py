"""Input pipeline throughput: array_record → decode → augment → P×K batches, images per second.

Builds a small TFDS dataset (array_record, JPEG, SYSU-like image sizes) in a temp folder, then
reads the P×K train stream with `ce2l_jax.data.pipeline` at the paper setting (256×256 → random
crop 227×227, P=64, K=1) and the modern one (288×144, pad + crop, flip, random erasing; P=8,
K=4), with 0 worker processes (reader threads in the main process) and with 2 workers; then the
same sampled images through a naive single-threaded loop (TFDS's own decoding into numpy, PIL
resize, numpy crop). Finally a per-stage profile of one image.

    .venv/bin/python benchmarks/bench_input.py            # ~1 min on 2 cores
    .venv/bin/python benchmarks/bench_input.py --quick    # fewer images, fewer batches

Results and the machine: docs/benchmarks.md (input section).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import tempfile
import time

import numpy as np
from PIL import Image


def input_config(preset):
  """'paper': configs/base.py's input section; 'modern': the library defaults (AGW)."""
  from ce2l_jax import config_check
  from ce2l_jax.data import pipeline
  if preset == "paper":
    return config_check.load_config_file(config_check.BASE_CONFIG, check_keys=False).input
  return pipeline.default_input_config()


def build_dataset(data_dir: str, num_ids: int, per_id: int, seed: int = 0) -> str:
  """A TFDS array_record dataset of JPEGs with SYSU-like sizes; returns its name."""
  import tensorflow_datasets as tfds

  rng = np.random.default_rng(seed)

  def jpeg(h, w):
    # Smooth colour field + noise: compresses like a photo (~10-25 KB), unlike pure noise.
    small = rng.integers(0, 256, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC), np.int16)
    img = np.clip(img + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()

  class Ce2lBenchInput(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      from tfds_builders import features as shared_features
      return tfds.core.DatasetInfo(builder=self, features=shared_features.features("jpeg"))

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples()}

    def _generate_examples(self):
      key = 0
      for pid in range(num_ids):
        for j in range(per_id):
          cam = (1, 2, 3, 4, 5, 6)[j % 6]
          ir = cam in (3, 6)
          h = int(rng.integers(240, 480)) if not ir else 288  # SYSU visible crops vary; IR ~288×144
          w = int(h / rng.uniform(2.0, 2.8)) if not ir else 144
          yield key, {"image": jpeg(h, w), "pid": pid, "camid": cam, "modality": int(ir),
                      "file": f"cam{cam}/{pid:04d}/{j:04d}.jpg"}
          key += 1

  b = Ce2lBenchInput(data_dir=data_dir, file_format="array_record")
  b.download_and_prepare()
  return b.name


def cpu_seconds() -> float:
  """CPU time of this process (all threads) and its live children (grain workers), Linux."""
  total = time.process_time()
  tick = os.sysconf("SC_CLK_TCK")
  children = set()
  for task in os.listdir("/proc/self/task"):
    try:
      with open(f"/proc/self/task/{task}/children") as f:
        children.update(f.read().split())
    except OSError:
      pass
  for pid in children:
    try:
      with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
      total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    except (OSError, IndexError, ValueError):
      pass
  return total


def time_stream(it, num_batches: int) -> tuple[float, float, int]:
  """(images per wall second, images per CPU second, images per batch), start-up excluded.

  The stream is drained for `num_batches` after the first batch; the prefetch buffers are
  full at both ends, so the counts match the work done up to one buffer.
  """
  b = next(it)
  per = b["image"].shape[0] * b["image"].shape[1]
  time.sleep(0.5)  # let the buffers fill so the window measures steady state
  t, c = time.perf_counter(), cpu_seconds()
  for _ in range(num_batches):
    next(it)
  dt, dc = time.perf_counter() - t, cpu_seconds() - c
  return per * num_batches / dt, per * num_batches / dc, per


def naive_loop(name: str, data_dir: str, record_index: np.ndarray, sampler, augment, seed: int,
               num_batches: int) -> tuple[float, float]:
  """The same sampled images, one at a time: TFDS decode → PIL resize → numpy crop/flip."""
  import tensorflow_datasets as tfds
  from ce2l_jax.data import augment as A
  ds = tfds.data_source(name, split="train", data_dir=data_dir)  # TFDS decodes the JPEG (PIL)
  n = 0
  t, c = time.perf_counter(), time.process_time()
  for step in range(1, num_batches + 1):
    b = sampler.batch(seed, step)
    for s in (0, 1):
      for i, g in enumerate(b.index[s]):
        x = ds[int(record_index[g])]["image"]
        img = Image.fromarray(x).resize(augment.resize[::-1], Image.Resampling.BILINEAR)
        rng = A.example_rng(seed, A.STREAM_TRAIN, i)
        y = np.asarray(img)
        if augment.crop is not None:
          y = A.pad_crop(y, rng, augment.crop, augment.pad)
        if augment.flip:
          y = A.random_flip(y, rng)
        if augment.erase_prob:
          y = A.random_erasing(y, rng, augment.erase_prob)
        n += 1
  return n / (time.perf_counter() - t), n / (time.process_time() - c)


def profile_one(src, augment, reps: int = 200) -> dict[str, float]:
  """Milliseconds per image of each stage, on the first visible records."""
  from ce2l_jax.data import augment as A
  n = min(reps, len(src))
  out = {}
  t = time.process_time()
  recs = [src[i]["image"] for i in range(n)]
  out["read record (array_record + proto parse)"] = (time.process_time() - t) / n * 1e3
  t = time.process_time()
  imgs = [A.decode(r) for r in recs]
  for im in imgs:
    im.load()
  out["JPEG decode (PIL)"] = (time.process_time() - t) / len(recs) * 1e3
  t = time.process_time()
  arrs = [A.resize(im, augment.resize, augment.resample) for im in imgs]
  out[f"resize to {augment.resize} (PIL bilinear)"] = (time.process_time() - t) / len(recs) * 1e3
  rng = np.random.default_rng(0)
  t = time.process_time()
  for a in arrs:
    y = A.pad_crop(a, rng, augment.crop or augment.resize, augment.pad) if augment.crop else a
    y = A.random_flip(y, rng) if augment.flip else y
    y = A.random_erasing(y, rng, augment.erase_prob) if augment.erase_prob else y
    np.ascontiguousarray(y)
  out["crop/flip/erase (numpy)"] = (time.process_time() - t) / len(recs) * 1e3
  t = time.process_time()
  for i in range(len(recs)):
    A.example_rng(0, 1, i)
  out["per-example seeded rng"] = (time.process_time() - t) / len(recs) * 1e3
  return out


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--quick", action="store_true")
  ap.add_argument("--batches", type=int, default=None)
  ap.add_argument("--jpeg_draft", action="store_true", help="also time input.jpeg_draft=True")
  args = ap.parse_args()
  from ce2l_jax.data import pipeline, sources
  num_ids, per_id = (70, 6) if args.quick else (150, 10)
  nb = args.batches or (6 if args.quick else 20)
  print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"load average {os.getloadavg()[0]:.2f} (other processes share the cores)")
  with tempfile.TemporaryDirectory() as tmp:
    t = time.perf_counter()
    name = build_dataset(tmp, num_ids, per_id)
    print(f"built {num_ids * per_id} JPEG records in {time.perf_counter() - t:.1f}s")
    srcs = pipeline.reid_sources_from_tfds(name, tmp)
    record_index = np.concatenate([srcs.visible.indices, srcs.infrared.indices])
    settings = [("paper 256²→227²", "paper"), ("modern 288×144", "modern")]
    for label, preset in settings:
      for workers, threads in ((0, 2), (2, 1)):
        for draft in ((False, True) if args.jpeg_draft else (False,)):
          cfg = input_config(preset)
          cfg.workers, cfg.threads, cfg.jpeg_draft = workers, threads, draft
          pipe = pipeline.build_reid_train_pipeline(srcs, cfg, seed=0, process_index=0, process_count=1)
          it = pipe.iterator()
          ips, ipc, per = time_stream(it, nb)
          if workers:
            it.close()
          what = f"grain, {workers} workers × {threads} threads" + (", jpeg_draft" if draft else "")
          print(f"{label:18s} {what:36s} {ips:7.0f} images/s wall, {ipc:7.0f} images/CPU-s ({per}/batch)")
      pipe = pipeline.build_reid_train_pipeline(srcs, input_config(preset), seed=0,
                                                process_index=0, process_count=1)
      ips, ipc = naive_loop(name, tmp, record_index, pipe.sampler, pipe.augment, 0, max(2, nb // 4))
      print(f"{label:18s} {'naive PIL loop, 1 thread':36s} {ips:7.0f} images/s wall, {ipc:7.0f} images/CPU-s")
    for preset in ("paper", "modern"):
      cfg = input_config(preset)
      from ce2l_jax.data.augment import TrainAugment
      prof = profile_one(srcs.visible, TrainAugment.from_config(cfg))
      print(f"profile ({preset}, visible images, ms/image): " +
            ", ".join(f"{k} {v:.3f}" for k, v in prof.items()))
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
  main()
