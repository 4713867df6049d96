"""Stage 2 of CE²L: translate every training image to the other modality with the CycleGAN.

Each training record `{"image", "pid", "camid", "modality", "file"}` becomes one converted
record: the image is resized to the generator's size (`cyclegan.image_size`), translated by
`gen_rgb2ir` (visible sources) or `gen_ir2rgb` (infrared sources) in fixed-size jitted batches
sharded over the local devices, and resized back to the source image's own size; `pid`,
`camid` and `file` are the source's, `modality` is the TARGET modality, `converted` is True.

Output, read like the original datasets (array_record, no TensorFlow):

  ds = tfds.data_source("ce2l_converted", data_dir=converted_data_dir(workdir), split="train")
  # or pipeline.reid_sources_from_tfds(name, data_dir, converted_name=DATASET_NAME,
  #                                    converted_data_dir=converted_data_dir(workdir))

Resumable and atomic. Under `<workdir>/convert/`:
  chunks/manifest.json   what the chunks were made from (source size, chunk size, generator
                         fingerprint); chunks from another generator or source are discarded;
  chunks/chunk_<k>.npz   records [k·chunk_size, (k+1)·chunk_size), written to a temp name and
                         renamed, so a killed run keeps every finished chunk and redoes one;
  tfds/                  the TFDS dataset, built from the chunks (`tfds_builders/ce2l_converted`)
                         into `tfds.tmp/`, its record count checked, then renamed: it exists
                         only complete (`is_complete`); a rerun without it rebuilds it from the
                         chunks. stages.py writes the stage's DONE after that.
The PNG encoding is lossless, so record i of the output is exactly the generator's uint8
output for record i of the source, resized.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import os
import shutil
import time
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh
from PIL import Image

from ce2l_jax import parallel, workdir as workdir_lib
from ce2l_jax.data import augment as aug_lib
from ce2l_jax.data import sources as src_lib
from ce2l_jax.models import cyclegan as cg

DATASET_NAME = "ce2l_converted"
STAGE = "convert"
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
             "lanczos": Image.Resampling.LANCZOS}


def default_config() -> ml_collections.ConfigDict:
  """The `convert` section."""
  c = ml_collections.ConfigDict()
  c.enabled = True
  c.split = "train"             # the split of config.data that is converted
  c.batch_size = 32             # images per jitted call (rounded up to the local device count)
  c.chunk_size = 512            # records per chunk file (the unit of resumption)
  c.resample = "bicubic"        # PIL filter for both resizes
  c.keep_chunks = False         # delete the chunk files once the dataset is complete
  c.checkpoint_step = ml_collections.config_dict.placeholder(int)  # None: the latest CycleGAN checkpoint
  return c


# --------------------------------------------------------------------------------- locations

def stage_dir(workdir: str) -> str:
  return workdir_lib.stage_dir(workdir, STAGE)


def converted_data_dir(workdir: str) -> str:
  """The TFDS `data_dir` holding the run's converted dataset (`DATASET_NAME`, split "train")."""
  return os.path.join(stage_dir(workdir), "tfds")


def chunks_dir(workdir: str) -> str:
  return os.path.join(stage_dir(workdir), "chunks")


def is_complete(workdir: str) -> bool:
  """The converted dataset is there, complete (its folder appears only by a final rename)."""
  return os.path.isdir(converted_data_dir(workdir))


def open_converted(workdir: str, split: str = "train", **kwargs) -> src_lib.TfdsSource:
  """The converted dataset as a pipeline source; refuses an incomplete conversion."""
  if not is_complete(workdir):
    raise FileNotFoundError(f"no complete conversion in {stage_dir(workdir)} (tfds/ is missing); "
                            "run the convert stage (it resumes where it stopped)")
  return src_lib.TfdsSource(DATASET_NAME, split, converted_data_dir(workdir), **kwargs)


# ------------------------------------------------------------------------------ translation

def make_convert_fn(cfg: Any, mesh: Mesh):
  """Jitted `convert(gen_params, images uint8 (B, H, W, 3)) -> uint8 (B, H, W, 3)`.

  One compiled function serves both directions (the generators share one architecture); the
  batch is sharded over `mesh`, the parameters replicated. Built once per shape and mesh.
  """
  return _convert_fn(int(cfg.ngf), int(cfg.n_blocks), mesh)


@functools.lru_cache(maxsize=8)
def _convert_fn(ngf: int, n_blocks: int, mesh: Mesh):
  from ce2l_jax.data.augment import from_unit_range, to_unit_range
  gen = cg.ResnetGenerator(ngf=ngf, n_blocks=n_blocks)

  def convert(gen_params, images):
    return from_unit_range(gen.apply({"params": gen_params}, to_unit_range(images)))

  data = parallel.batch_sharding(mesh)
  jitted = jax.jit(convert, in_shardings=(parallel.replicated(mesh), data), out_shardings=data)
  # Host images are placed on the (local) mesh first: with several processes, jit refuses numpy
  # inputs with a non-replicated sharding (it would read them as global arrays).
  return lambda gen_params, images: jitted(gen_params, jax.device_put(images, data))


def params_fingerprint(params: Any) -> str:
  """sha1 of every parameter's bytes (tells chunks of one generator from another's)."""
  h = hashlib.sha1()
  for path, leaf in jax.tree_util.tree_leaves_with_path(jax.device_get(params)):
    h.update(jax.tree_util.keystr(path).encode())
    h.update(np.ascontiguousarray(leaf).tobytes())
  return h.hexdigest()


def _encode_png(image: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="PNG", compress_level=1)
  return buf.getvalue()


def _to_str(x: Any) -> str:
  return x.decode() if isinstance(x, (bytes, bytearray)) else str(x)


def write_chunk(path: str, index, pid, camid, modality, files: Sequence[str], pngs: Sequence[bytes]) -> None:
  """One chunk file, atomically (temp name, then rename); format in the ce2l_converted builder."""
  offsets = np.concatenate([[0], np.cumsum([len(p) for p in pngs])]).astype(np.int64)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "wb") as f:
    np.savez(f, index=np.asarray(index, np.int64), pid=np.asarray(pid, np.int64),
             camid=np.asarray(camid, np.int64), modality=np.asarray(modality, np.int64),
             files=np.asarray(list(files), dtype=np.str_),
             png=np.frombuffer(b"".join(pngs), np.uint8), png_offsets=offsets)
  os.replace(tmp, path)


def _translate_group(convert, gen_params, images: list[np.ndarray], batch_size: int) -> list[np.ndarray]:
  """Runs `convert` over a list of same-size uint8 images in fixed-size (padded) batches."""
  out = []
  for s in range(0, len(images), batch_size):
    part = images[s:s + batch_size]
    batch = np.zeros((batch_size, *part[0].shape), np.uint8)
    batch[:len(part)] = np.stack(part)
    out.extend(np.asarray(jax.device_get(convert(gen_params, batch)))[:len(part)])
  return out


def convert_source(source: Any, gen_params: dict[str, Any], out_dir: str, *, cfg: Any,
                   batch_size: int = 32, chunk_size: int = 512, resample: str = "bicubic",
                   mesh: Mesh | None = None, progress: bool = True) -> dict[str, Any]:
  """Writes the chunk files of `source` (any random-access record source) into `out_dir`.

  `gen_params`: `{"gen_rgb2ir": ..., "gen_ir2rgb": ...}`; `cfg`: the `cyclegan` section (size and
  generator shape). Finished chunks of the same source and generator are kept; others are
  discarded first. Process p of P converts chunks k with k % P == p on its local devices.
  Returns counts and timing.
  """
  mesh = mesh or Mesh(np.asarray(jax.local_devices()), (parallel.DATA_AXIS,))
  ndev = mesh.devices.size
  batch_size = ndev * math.ceil(int(batch_size) / ndev)
  h, w = (int(s) for s in cfg.image_size)
  n = len(source)
  num_chunks = math.ceil(n / chunk_size)
  manifest = {"num_records": n, "chunk_size": int(chunk_size), "image_size": [h, w],
              "resample": resample, "source": repr(source),
              "generator": params_fingerprint({r: gen_params[r] for r in cg.ROLES[:2]})}
  mpath = os.path.join(out_dir, "manifest.json")
  # Process 0 alone clears what a killed or different run left; the others wait for it (a
  # process still cleaning could delete the chunk another one is writing).
  if jax.process_index() == 0:
    os.makedirs(out_dir, exist_ok=True)
    if os.path.exists(mpath):
      with open(mpath) as f:
        old = json.load(f)
      if old != manifest:
        changed = sorted(k for k in manifest if old.get(k) != manifest[k])
        print(f"convert: chunks in {out_dir} were made from another {'/'.join(changed)}; starting over")
        shutil.rmtree(out_dir)
        os.makedirs(out_dir)
    if not os.path.exists(mpath):
      with open(mpath + ".tmp", "w") as f:
        json.dump(manifest, f, indent=1)
      os.replace(mpath + ".tmp", mpath)
    for stale in os.listdir(out_dir):
      if ".tmp" in stale and stale.startswith("chunk_"):
        os.remove(os.path.join(out_dir, stale))
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices("ce2l_convert_manifest")

  convert = make_convert_fn(cfg, mesh)
  repl = parallel.replicated(mesh)
  # Via the host: restored parameters are replicated over the *global* mesh, and a multi-host
  # CPU backend cannot move them onto this process's local mesh directly.
  gens = {0: jax.device_put(jax.device_get(gen_params["gen_rgb2ir"]), repl),
          1: jax.device_put(jax.device_get(gen_params["gen_ir2rgb"]), repl)}
  filt = _RESAMPLE[resample]
  mine = [k for k in range(num_chunks) if k % jax.process_count() == jax.process_index()]
  todo = [k for k in mine if not os.path.exists(chunk_path(out_dir, k))]
  bar = None
  if progress and jax.process_index() == 0:
    from tqdm import tqdm
    size = lambda k: min(n, (k + 1) * chunk_size) - k * chunk_size
    bar = tqdm(total=sum(map(size, mine)), initial=sum(size(k) for k in mine if k not in todo),
               desc="convert", unit="img", dynamic_ncols=True)
  counts = {0: 0, 1: 0}
  t0 = time.perf_counter()
  try:
    for k in todo:
      index = np.arange(k * chunk_size, min(n, (k + 1) * chunk_size))
      recs = src_lib.get_records(source, index)
      modality = np.array([int(r["modality"]) for r in recs], np.int64)
      originals = [aug_lib.decode(r["image"]) for r in recs]
      small = [np.asarray(im.resize((w, h), filt)) if im.size != (w, h) else np.asarray(im) for im in originals]
      pngs: list[bytes | None] = [None] * len(recs)
      for m in (0, 1):
        sel = np.flatnonzero(modality == m)
        if not len(sel):
          continue
        fakes = _translate_group(convert, gens[m], [small[i] for i in sel], batch_size)
        for i, fake in zip(sel, fakes):
          im = Image.fromarray(fake)
          if im.size != originals[i].size:
            im = im.resize(originals[i].size, filt)
          pngs[i] = _encode_png(np.asarray(im))
        counts[m] += len(sel)
      write_chunk(chunk_path(out_dir, k), index, [int(r["pid"]) for r in recs],
                  [int(r["camid"]) for r in recs], 1 - modality, [_to_str(r["file"]) for r in recs], pngs)
      if bar is not None:
        bar.update(len(index))
  finally:
    if bar is not None:
      bar.close()
  dt = time.perf_counter() - t0
  done = counts[0] + counts[1]
  return {"num_records": n, "converted_now": done, "rgb2ir_now": counts[0], "ir2rgb_now": counts[1],
          "seconds": dt, "images_per_sec": done / dt if done else float("nan")}


def chunk_path(out_dir: str, k: int) -> str:
  return os.path.join(out_dir, f"chunk_{k:06d}.npz")


def build_dataset(chunk_dir: str, data_dir: str, num_records: int) -> str:
  """Builds `DATASET_NAME` from the chunks into `data_dir` (via `<data_dir>.tmp`, its record
  count checked against `num_records`, then renamed: `data_dir` appears only complete)."""
  import tensorflow_datasets as tfds
  from tfds_builders.ce2l_converted.ce2l_converted_dataset_builder import Ce2lConverted
  tmp = data_dir + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  builder = Ce2lConverted(data_dir=tmp, file_format="array_record")
  builder.download_and_prepare(
      download_dir=os.path.join(tmp, "_downloads"),
      download_config=tfds.download.DownloadConfig(manual_dir=chunk_dir))
  shutil.rmtree(os.path.join(tmp, "_downloads"), ignore_errors=True)
  built = len(tfds.data_source(DATASET_NAME, data_dir=tmp, split="train"))
  if built != num_records:
    raise RuntimeError(f"convert: built {built} records from {num_records} source records")
  shutil.rmtree(data_dir, ignore_errors=True)
  os.replace(tmp, data_dir)
  return data_dir


def convert_dataset(config: ml_collections.ConfigDict, workdir: str, gen_params: dict[str, Any],
                    source: Any = None, mesh: Mesh | None = None, progress: bool = True) -> dict[str, Any]:
  """The convert stage: every record of the training split → `converted_data_dir(workdir)`.

  `config`: the run config (`cyclegan` for the generator's shape and size, `convert` (optional,
  `default_config()`), `data.name` / `data.data_dir` when `source` is not given).
  `gen_params`: `{"gen_rgb2ir", "gen_ir2rgb"}` (stages.py restores them from the CycleGAN
  stage). A finished conversion converts nothing again (`converted_now` 0); an interrupted one
  resumes from its finished chunks. Returns counts and timing.
  """
  ccfg = config.convert if "convert" in config else default_config()
  if source is None:
    source = src_lib.TfdsSource(config.data.name, ccfg.split, config.data.get("data_dir"))
  if is_complete(workdir):
    return {"num_records": len(source), "converted_now": 0, "data_dir": converted_data_dir(workdir),
            "dataset": DATASET_NAME}
  cdir = chunks_dir(workdir)
  stats = convert_source(source, gen_params, cdir, cfg=config.cyclegan, batch_size=int(ccfg.batch_size),
                         chunk_size=int(ccfg.chunk_size), resample=str(ccfg.resample), mesh=mesh,
                         progress=progress)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices("ce2l_convert_chunks")
  summary = dict(stats, data_dir=converted_data_dir(workdir), dataset=DATASET_NAME)
  if jax.process_index() == 0:
    t = time.perf_counter()
    build_dataset(cdir, converted_data_dir(workdir), len(source))
    summary["build_seconds"] = time.perf_counter() - t
    if not ccfg.get("keep_chunks", False):
      shutil.rmtree(cdir, ignore_errors=True)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices("ce2l_convert_done")
  return summary
