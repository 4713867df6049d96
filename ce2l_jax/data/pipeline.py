"""grain pipelines: P×K re-ID train batches, unpaired CycleGAN batches, padded eval batches.

Public API
----------
- `default_input_config() -> ConfigDict`: every field of `config.input` (AGW-style values).
- `ReidSources(visible, infrared, converted_visible=None, converted_infrared=None)`; built from
  TFDS by `reid_sources_from_tfds(name, data_dir, split="train", converted_name=None, ...)`.
- `build_reid_train_pipeline(sources, input_cfg, seed, num_devices=None, process_index=None,
  process_count=None) -> ReidTrainPipeline` (`.iterator()`, `.num_classes`, `.label_map`,
  `.steps_per_epoch`, `.sampler`); `build_reid_train_iterator(...)` = `.iterator()` of it.
- `build_unpaired_pipeline(visible, infrared, input_cfg, seed, num_devices=None, ...)` ->
  `UnpairedPipeline`; `build_unpaired_iterator(...)`.
- `build_eval_batches(source, indices=None, batch_size=64, image_size=(288, 144), ...) ->
  EvalBatches` (an iterable with `len`).
The iterators are grain `DatasetIterator`s: `get_state`/`set_state`, and
`ce2l_jax.checkpoint.Checkpointer.save(step, state, iterator)` stores their position.

Batches (host numpy; see docs/architecture.md)
-----------------------------------------------
- re-ID train: `image` (2, L, H, W, 3) uint8, `pid` (2, L) int32 relabelled 0..N-1, `camid`
  (2, L) int32, `modality` (2, L) int32 (= the slot: 0 visible, 1 infrared, also for converted
  images), `converted` (2, L) bool, `_index` (2, L) int64 (global source index; host only).
  L = P*K / process_count: each process builds only its contiguous part
  (`parallel.process_slice`) of axis 1; the trainer calls `shard_batch(batch, mesh, batch_axis=1)`.
- unpaired: `rgb`, `ir` (N / process_count, H, W, 3) uint8.
- eval: `image` (B, H, W, 3) uint8, `pid`, `camid`, `modality`, `index` (B,) int32 (position in
  the source; -1 on padding), `_mask` (B,) bool; `image_flipped` with `emit_flipped=True`
  (else flip on device: `image[:, :, ::-1]`). Every example appears exactly once; the last
  batch is padded with zeros.

Determinism and resume
----------------------
Batch `t` is a pure function of (seed, t): the sampler draws from `seeded_rng(seed, t, ...)` and
every image from `example_rng(seed, stream, global position)`. The grain `MapDataset` is indexed
by step, so worker processes (`input.workers`, `mp_prefetch`) and threads (`input.threads`)
each build whole batches and the stream is the same for any number of them; grain's iterator
state (the next step) is what a checkpoint stores. A stream restored with `set_state` continues
at exactly the batch an uninterrupted run would have produced. Resuming with another
`input.workers` than the one saved is not supported by grain's state format.

Workers: grain's worker processes read absl flags; when the program did not parse them (tests,
notebooks) they are marked parsed with their defaults. Workers are spawned: scripts need the
`if __name__ == "__main__":` guard, and everything given to a pipeline must be picklable
(all sources here are).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import ml_collections
import numpy as np

from ce2l_jax.data import augment as aug_lib
from ce2l_jax.data import sources as src_lib
from ce2l_jax.data.sampler import INFRARED_SLOT, VISIBLE_SLOT, CrossModalitySampler, Part, seeded_rng

ENDLESS = sys.maxsize // 4  # number of steps of a stream without input.num_steps
_TAG_UNPAIRED = 0x554E


# ------------------------------------------------------------------------------------ config

def default_input_config() -> ml_collections.ConfigDict:
  """`config.input` with every field, at AGW/CAJ-style values (P=8, K=4, resize 288×144, pad 10
  + random crop 288×144, flip, random erasing p=0.5). The paper's (CE²L/BDTR) values are set as
  plain values in `configs/base.py`; library code holds no preset."""
  c = ml_collections.ConfigDict()
  c.p = 8                           # identities per batch
  c.k = 4                           # images per identity and modality
  c.converted_share = 0.5           # P(a draw is converted) when an identity has both kinds
  c.converted_slots = "both"        # both | infrared (only RGB→IR images) | visible (only IR→RGB)
  c.num_steps = ml_collections.config_dict.placeholder(int)  # stream length; None: endless
  c.resize = (288, 144)             # (H, W) before cropping
  c.pad = 10
  c.crop = (288, 144)               # random crop (H, W); None: no crop
  c.flip = True
  c.image_size = (288, 144)         # network input; eval images resized to it
  c.resample = "bilinear"
  c.jpeg_draft = False              # JPEG DCT downscaling while decoding (faster, not bit-equal)
  c.random_erasing = ml_collections.ConfigDict(dict(
      prob=0.5, area=(0.02, 0.4), min_aspect=0.3, fill=aug_lib.AGW_ERASE_FILL))
  c.channel_aug = ml_collections.ConfigDict(dict(mode="none", prob=1.0, slots=(VISIBLE_SLOT,)))
  c.workers = 0                     # grain worker processes (0: in the training process)
  c.threads = 2                     # grain reader threads per process, each builds whole batches
  c.prefetch = 4                    # batches buffered per process
  c.worker_buffer = 2               # batches buffered per worker process
  c.eval_batch_size = 64
  c.unpaired = ml_collections.ConfigDict(dict(
      batch_size=1, resize=(256, 256), crop=ml_collections.config_dict.placeholder(tuple),
      flip=True, visible_cams=ml_collections.config_dict.placeholder(tuple),
      infrared_cams=ml_collections.config_dict.placeholder(tuple)))
  return c


# ----------------------------------------------------------------------------------- sources

@dataclasses.dataclass
class ReidSources:
  """The four parts of a re-ID training set: real and converted images per slot.

  `converted_visible`: fake visible images (IR→RGB), drawn into slot 0; `converted_infrared`:
  fake infrared images (RGB→IR), drawn into slot 1. Their `pid` is the source image's identity.
  """
  visible: src_lib.Source
  infrared: src_lib.Source
  converted_visible: src_lib.Source | None = None
  converted_infrared: src_lib.Source | None = None

  def parts(self) -> list[tuple[src_lib.Source, int, bool]]:
    out = [(self.visible, VISIBLE_SLOT, False), (self.infrared, INFRARED_SLOT, False)]
    if self.converted_visible is not None and len(self.converted_visible):
      out.append((self.converted_visible, VISIBLE_SLOT, True))
    if self.converted_infrared is not None and len(self.converted_infrared):
      out.append((self.converted_infrared, INFRARED_SLOT, True))
    return out


def reid_sources_from_tfds(name: str, data_dir: str | None = None, split: str = "train",
                           converted_name: str | None = None, converted_data_dir: str | None = None,
                           converted_split: str = "train", converted_modality: str = "target",
                           label_cache_dir: str | None = None) -> ReidSources:
  """Real visible/infrared from one TFDS split (by `modality`), converted ones from another.

  `converted_modality` says what a converted record's `modality` holds: "target" (the modality
  the image was converted to: an RGB→IR image has 1) or "source" (the modality of the image it
  was made from: an RGB→IR image has 0).
  """
  real = src_lib.TfdsSource(name, split, data_dir, label_cache_dir=label_cache_dir)
  vis, ir = src_lib.split_by_modality(real)
  cvis = cir = None
  if converted_name:
    conv = src_lib.TfdsSource(converted_name, converted_split, converted_data_dir or data_dir,
                              label_cache_dir=label_cache_dir)
    a, b = src_lib.split_by_modality(conv)
    if converted_modality == "target":
      cvis, cir = a, b
    elif converted_modality == "source":
      cvis, cir = b, a
    else:
      raise ValueError(f"converted_modality={converted_modality!r} is neither 'target' nor 'source'")
  return ReidSources(vis, ir, cvis, cir)


# ----------------------------------------------------------------------------------- helpers

def _process(process_index: int | None, process_count: int | None) -> tuple[int, int]:
  if process_index is None or process_count is None:
    import jax  # only here: grain workers never need it
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} is not in [0, {process_count})")
  return int(process_index), int(process_count)


def _local_slice(global_size: int, process_index: int, process_count: int, what: str) -> slice:
  """This process's contiguous part of a global batch axis (as `parallel.process_slice`)."""
  if global_size % process_count:
    raise ValueError(f"{what} = {global_size} is not divisible by the process count "
                     f"({process_count}); choose a multiple of {process_count}")
  per = global_size // process_count
  return slice(process_index * per, (process_index + 1) * per)


_CONVERTED_SLOTS = {"both": (VISIBLE_SLOT, INFRARED_SLOT), "infrared": (INFRARED_SLOT,),
                    "visible": (VISIBLE_SLOT,)}


def _converted_slots(parts, which: str):
  """`input.converted_slots`: the converted parts kept (the real ones always are)."""
  if which not in _CONVERTED_SLOTS:
    raise ValueError(f"input.converted_slots={which!r}: choose both, infrared (fake infrared "
                     "images only) or visible (fake visible images only)")
  return [p for p in parts if not p[2] or p[1] in _CONVERTED_SLOTS[which]]


class _DeviceCount:
  """Stands in for a mesh in `parallel.check_divisible` when only the device count is known."""

  def __init__(self, n: int):
    self.devices = np.empty((int(n),), object)


def _check_devices(global_batch: int, num_devices: Any, what: str) -> None:
  if num_devices is None:
    return
  from ce2l_jax import parallel  # imports jax; only in the training process
  mesh = num_devices if hasattr(num_devices, "devices") else _DeviceCount(num_devices)
  parallel.check_divisible(global_batch, mesh, what)


def _ensure_absl_flags() -> None:
  from absl import flags
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def _to_iter(ds: grain.MapDataset, threads: int, prefetch: int, workers: int,
             worker_buffer: int) -> grain.IterDataset:
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=int(threads), prefetch_buffer_size=int(prefetch)))
  if workers > 0:
    _ensure_absl_flags()
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=int(workers),
                                                     per_worker_buffer_size=int(worker_buffer)))
  return it


def _num_steps(cfg: Any) -> int:
  n = cfg.get("num_steps", None) if hasattr(cfg, "get") else getattr(cfg, "num_steps", None)
  return ENDLESS if n is None else int(n)


# --------------------------------------------------------------------------- re-ID training

class _ReidBatch:
  """Builds the local part of P×K batch `step` (picklable, read-only, thread-safe)."""

  def __init__(self, source: src_lib.ConcatSource, sampler: CrossModalitySampler,
               augment: aug_lib.TrainAugment, seed: int, cols: slice):
    self.source, self.sampler, self.augment = source, sampler, augment
    self.seed, self.cols = int(seed), cols
    self.camid = source.labels().camid.astype(np.int32)

  def __call__(self, step: int) -> dict[str, np.ndarray]:
    step = int(step)
    b = self.sampler.batch(self.seed, step)
    pk = self.sampler.batch_size
    index = b.index[:, self.cols]
    n = index.shape[1]
    h, w = self.augment.output_size
    images = np.empty((2, n, h, w, 3), np.uint8)
    records = src_lib.get_records(self.source, index.reshape(-1))
    for s in (0, 1):
      for i in range(n):
        pos = (2 * step + s) * pk + self.cols.start + i  # global position of the example
        rng = aug_lib.example_rng(self.seed, aug_lib.STREAM_TRAIN, pos)
        images[s, i] = self.augment(records[s * n + i]["image"], rng, slot=s)
    return {
        "image": images,
        "pid": b.label[:, self.cols].copy(),
        "camid": self.camid[index],
        "modality": np.repeat(np.array([[VISIBLE_SLOT], [INFRARED_SLOT]], np.int32), n, axis=1),
        "converted": b.converted[:, self.cols].copy(),
        "_index": index.copy(),
    }


@dataclasses.dataclass
class ReidTrainPipeline:
  """A P×K train stream and what the trainer needs to know about it."""
  dataset: grain.IterDataset
  sampler: CrossModalitySampler
  source: src_lib.ConcatSource
  augment: aug_lib.TrainAugment
  local_batch: int  # examples per slot built by this process

  def iterator(self) -> grain.DatasetIterator:
    return iter(self.dataset)

  @property
  def num_classes(self) -> int:
    return self.sampler.num_classes

  @property
  def label_map(self) -> np.ndarray:
    """label → dataset pid (training identities sorted by pid)."""
    return self.sampler.label_map

  @property
  def steps_per_epoch(self) -> int:
    return self.sampler.steps_per_epoch

  @property
  def image_size(self) -> tuple[int, int]:
    return self.augment.output_size


def build_reid_train_pipeline(sources: ReidSources, input_cfg: Any, seed: int, num_devices: Any = None,
                              process_index: int | None = None,
                              process_count: int | None = None) -> ReidTrainPipeline:
  """The P×K cross-modality stream (see the module docstring for the batch format).

  `num_devices`: an int or a mesh; P*K must be divisible by it (each slot is sharded over the
  devices). `process_index`/`process_count` default to JAX's.
  """
  cfg = input_cfg
  process_index, process_count = _process(process_index, process_count)
  parts = _converted_slots(sources.parts(), cfg.get("converted_slots", "both"))
  sampler = CrossModalitySampler([Part(s.labels(), slot, conv) for s, slot, conv in parts],
                                 p=int(cfg.p), k=int(cfg.k), converted_share=float(cfg.converted_share))
  pk = sampler.batch_size
  _check_devices(pk, num_devices, "input.p*input.k (examples per modality in a batch)")
  cols = _local_slice(pk, process_index, process_count, "input.p*input.k")
  augment = aug_lib.TrainAugment.from_config(cfg)
  if tuple(augment.output_size) != tuple(aug_lib._hw(cfg.image_size)):
    raise ValueError(f"the train images come out {augment.output_size} (input.crop or input.resize) "
                     f"but input.image_size={tuple(cfg.image_size)}; make them agree")
  source = src_lib.ConcatSource([s for s, _, _ in parts])
  make = _ReidBatch(source, sampler, augment, seed, cols)
  ds = grain.MapDataset.range(_num_steps(cfg)).map(make)
  it = _to_iter(ds, cfg.threads, cfg.prefetch, cfg.workers, cfg.worker_buffer)
  return ReidTrainPipeline(dataset=it, sampler=sampler, source=source, augment=augment,
                           local_batch=cols.stop - cols.start)


def build_reid_train_iterator(sources: ReidSources, input_cfg: Any, seed: int, num_devices: Any = None,
                              process_index: int | None = None,
                              process_count: int | None = None) -> grain.DatasetIterator:
  """`build_reid_train_pipeline(...).iterator()`."""
  return build_reid_train_pipeline(sources, input_cfg, seed, num_devices, process_index,
                                   process_count).iterator()


# --------------------------------------------------------------------------- unpaired (GAN)

class _Permutations:
  """Position q of an endless stream over n items: item perm_c[q % n], c = q // n (pure)."""

  def __init__(self, n: int, seed: int, domain: int):
    self.n, self.seed, self.domain = int(n), int(seed), int(domain)
    self._cache: dict[int, np.ndarray] = {}
    self._lock = threading.Lock()

  def __getstate__(self):
    return {"n": self.n, "seed": self.seed, "domain": self.domain}

  def __setstate__(self, d):
    self.__init__(d["n"], d["seed"], d["domain"])

  def _perm(self, cycle: int) -> np.ndarray:
    with self._lock:
      p = self._cache.get(cycle)
      if p is None:
        p = seeded_rng(self.seed, _TAG_UNPAIRED, self.domain, cycle).permutation(self.n)
        if len(self._cache) >= 4:
          self._cache.pop(next(iter(self._cache)))
        self._cache[cycle] = p
      return p

  def __call__(self, positions: np.ndarray) -> np.ndarray:
    out = np.empty(len(positions), np.int64)
    for j, q in enumerate(positions):
      out[j] = self._perm(int(q) // self.n)[int(q) % self.n]
    return out


class _UnpairedBatch:
  """The local part of unpaired batch `step`: independent shuffled visible and infrared streams."""

  def __init__(self, rgb: src_lib.Source, ir: src_lib.Source, augment: aug_lib.TrainAugment,
               seed: int, batch_size: int, cols: slice):
    self.rgb, self.ir, self.augment = rgb, ir, augment
    self.seed, self.batch_size, self.cols = int(seed), int(batch_size), cols
    self.order = (_Permutations(len(rgb), seed, 0), _Permutations(len(ir), seed, 1))

  def __call__(self, step: int) -> dict[str, np.ndarray]:
    positions = int(step) * self.batch_size + np.arange(self.cols.start, self.cols.stop)
    out = {}
    for key, src, order, stream in (("rgb", self.rgb, self.order[0], aug_lib.STREAM_UNPAIRED_RGB),
                                    ("ir", self.ir, self.order[1], aug_lib.STREAM_UNPAIRED_IR)):
      records = src_lib.get_records(src, order(positions))
      out[key] = np.stack([self.augment(r["image"], aug_lib.example_rng(self.seed, stream, int(q)))
                           for r, q in zip(records, positions)])
    return out


@dataclasses.dataclass
class UnpairedPipeline:
  dataset: grain.IterDataset
  steps_per_epoch: int  # ceil(max(#visible, #infrared) / batch_size)
  local_batch: int

  def iterator(self) -> grain.DatasetIterator:
    return iter(self.dataset)


def build_unpaired_pipeline(visible: src_lib.Source, infrared: src_lib.Source, input_cfg: Any, seed: int,
                            num_devices: Any = None, process_index: int | None = None,
                            process_count: int | None = None) -> UnpairedPipeline:
  """Unpaired `{"rgb", "ir"}` batches for the CycleGAN stage (`input_cfg.unpaired`).

  Each domain is an endless sequence of seeded permutations of its images (optionally only the
  cameras `unpaired.visible_cams` / `unpaired.infrared_cams`), read `batch_size` at a time;
  images are resized to `unpaired.resize`, optionally randomly cropped to `unpaired.crop`, and
  flipped at random with `unpaired.flip`.
  """
  u = input_cfg.unpaired
  process_index, process_count = _process(process_index, process_count)
  if u.visible_cams is not None:
    visible = src_lib.select(visible, cameras=u.visible_cams)
  if u.infrared_cams is not None:
    infrared = src_lib.select(infrared, cameras=u.infrared_cams)
  if not len(visible) or not len(infrared):
    raise ValueError(f"unpaired stream: {len(visible)} visible and {len(infrared)} infrared images "
                     "(check input.unpaired.visible_cams / infrared_cams)")
  n = int(u.batch_size)
  _check_devices(n, num_devices, "input.unpaired.batch_size")
  cols = _local_slice(n, process_index, process_count, "input.unpaired.batch_size")
  augment = aug_lib.TrainAugment(resize=aug_lib._hw(u.resize), crop=aug_lib._hw(u.crop), flip=bool(u.flip),
                                 resample=str(input_cfg.resample), jpeg_draft=bool(input_cfg.jpeg_draft))
  make = _UnpairedBatch(visible, infrared, augment, seed, n, cols)
  ds = grain.MapDataset.range(_num_steps(input_cfg)).map(make)
  it = _to_iter(ds, input_cfg.threads, input_cfg.prefetch, input_cfg.workers, input_cfg.worker_buffer)
  return UnpairedPipeline(dataset=it, steps_per_epoch=math.ceil(max(len(visible), len(infrared)) / n),
                          local_batch=cols.stop - cols.start)


def build_unpaired_iterator(visible: src_lib.Source, infrared: src_lib.Source, input_cfg: Any, seed: int,
                            num_devices: Any = None, process_index: int | None = None,
                            process_count: int | None = None) -> grain.DatasetIterator:
  """`build_unpaired_pipeline(...).iterator()`."""
  return build_unpaired_pipeline(visible, infrared, input_cfg, seed, num_devices, process_index,
                                 process_count).iterator()


# ------------------------------------------------------------------------------------- eval

class _EvalBatch:

  def __init__(self, source: src_lib.Source, indices: np.ndarray, batch_size: int, cols: slice,
               augment: aug_lib.EvalAugment, emit_flipped: bool):
    self.source, self.indices, self.batch_size, self.cols = source, indices, batch_size, cols
    self.augment, self.emit_flipped = augment, emit_flipped

  def __call__(self, b: int) -> dict[str, np.ndarray]:
    pos = int(b) * self.batch_size + np.arange(self.cols.start, self.cols.stop)
    mask = pos < len(self.indices)
    n = len(pos)
    h, w = self.augment.size
    out = {"image": np.zeros((n, h, w, 3), np.uint8), "pid": np.full(n, -1, np.int32),
           "camid": np.full(n, -1, np.int32), "modality": np.full(n, -1, np.int32),
           "index": np.full(n, -1, np.int32), "_mask": mask}
    valid = np.flatnonzero(mask)
    idx = self.indices[pos[valid]]
    for j, r in zip(valid, src_lib.get_records(self.source, idx)):
      out["image"][j] = self.augment(r["image"])
      out["pid"][j], out["camid"][j], out["modality"][j] = int(r["pid"]), int(r["camid"]), int(r["modality"])
    out["index"][valid] = idx
    if self.emit_flipped:
      out["image_flipped"] = np.ascontiguousarray(out["image"][:, :, ::-1])
    return out


class EvalBatches:
  """Fixed-size eval batches over `indices` of a source, in order; iterate it again at will."""

  def __init__(self, dataset: grain.IterDataset, num_batches: int, num_examples: int):
    self.dataset, self.num_batches, self.num_examples = dataset, num_batches, num_examples

  def __len__(self) -> int:
    return self.num_batches

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return iter(self.dataset)


def build_eval_batches(source: src_lib.Source, indices: Sequence[int] | None = None, batch_size: int = 64,
                       image_size: Sequence[int] = (288, 144), resample: str = "bilinear",
                       emit_flipped: bool = False, threads: int = 2, jpeg_draft: bool = False,
                       num_devices: Any = None, process_index: int | None = None,
                       process_count: int | None = None) -> EvalBatches:
  """Deterministic padded eval batches (see the module docstring); `indices`: default all.

  With several processes each one gets its contiguous part of every batch (`batch_size` must
  divide by the process count), ready for `shard_batch(batch, mesh)`.
  """
  indices = np.arange(len(source), dtype=np.int64) if indices is None else np.asarray(indices, np.int64)
  process_index, process_count = _process(process_index, process_count)
  _check_devices(int(batch_size), num_devices, "eval batch size (input.eval_batch_size)")
  cols = _local_slice(int(batch_size), process_index, process_count, "eval batch size")
  augment = aug_lib.EvalAugment(size=aug_lib._hw(tuple(image_size)), resample=resample, jpeg_draft=jpeg_draft)
  nb = math.ceil(len(indices) / int(batch_size))
  make = _EvalBatch(source, indices, int(batch_size), cols, augment, emit_flipped)
  ds = grain.MapDataset.range(nb).map(make).to_iter_dataset(
      grain.ReadOptions(num_threads=int(threads), prefetch_buffer_size=max(1, 2 * int(threads))))
  return EvalBatches(ds, nb, len(indices))
