"""Random-access record sources and their labels (pid, camid, modality), read without images.

A *source* is any object with `__len__`, `__getitem__(i) -> record` and `labels() -> Labels`
(optionally `__getitems__(indices)` for batched reads). Records are the dicts of
`docs/architecture.md`: `{"image", "pid", "camid", "modality", "file"}`, plus `"converted"` for
converted datasets. `image` is either a uint8 H×W×3 array or the *encoded* bytes (PNG/JPEG):
`TfdsSource` skips TFDS's image decoding by default and `augment.decode` opens the bytes itself,
so the decoded image goes straight into PIL's resize without a detour through numpy.

- `TfdsSource(name, split, data_dir)`: `tfds.data_source` (array_record, no TensorFlow).
  `labels()` reads every record once with `decoders={"image": tfds.decode.SkipDecoding()}`
  (verified: `tfds.data_source` honours `decoders` and hands back the encoded bytes), so no image
  is decoded; the result is cached per process (and on disk with `label_cache_dir`).
- `InMemorySource(records)`: a list of record dicts (or a dict of equally long columns); tests.
- `SubsetSource(source, indices)`, `select(source, modality=..., cameras=...)`,
  `split_by_modality(source)`: views by label, e.g. the visible and infrared parts of a split.
- `ConcatSource(parts)`: one global index over several sources (real visible, real infrared,
  converted→visible, converted→infrared), so one grain `MapDataset` fetches from all of them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np


@dataclasses.dataclass(frozen=True)
class Labels:
  """The integer labels of every record of a source, aligned with its indices."""
  pid: np.ndarray       # int64 (n,), the dataset's own identity numbers
  camid: np.ndarray     # int64 (n,)
  modality: np.ndarray  # int64 (n,), 0 visible / 1 infrared, as stored in the records

  def __post_init__(self):
    for f in ("pid", "camid", "modality"):
      object.__setattr__(self, f, np.asarray(getattr(self, f), dtype=np.int64).reshape(-1))
    if not len(self.pid) == len(self.camid) == len(self.modality):
      raise ValueError("Labels: pid, camid and modality must have the same length")

  def __len__(self) -> int:
    return len(self.pid)

  def take(self, indices: np.ndarray) -> Labels:
    return Labels(self.pid[indices], self.camid[indices], self.modality[indices])

  @staticmethod
  def concat(parts: Sequence[Labels]) -> Labels:
    if not parts:
      return Labels(np.zeros(0), np.zeros(0), np.zeros(0))
    return Labels(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("pid", "camid", "modality")))


class Source(Protocol):
  """What the pipeline reads from."""

  def __len__(self) -> int: ...

  def __getitem__(self, index: int) -> dict[str, Any]: ...

  def labels(self) -> Labels: ...


def get_records(source: Source, indices: Sequence[int]) -> list[dict[str, Any]]:
  """Reads several records, in one batched call when the source offers `__getitems__`."""
  indices = [int(i) for i in indices]
  getitems = getattr(source, "__getitems__", None)
  if getitems is not None:
    return list(getitems(indices))
  return [source[i] for i in indices]


# ------------------------------------------------------------------------------------- TFDS

_LABEL_CACHE: dict[tuple[str, ...], Labels] = {}


def pinned_version(name: str) -> str:
  """A synthetic config's name with its current data version (`synthetic.data_version`) unless a
  version is given. Without it `tfds.data_source` reads the newest version folder on disk, which
  need not be the one this code renders and `datasets.dataset_is_built` checked (a data dir that
  also holds another checkout's newer data was read in its place)."""
  base, colon, _ = name.partition(":")
  builder, _, config = base.partition("/")
  if colon or builder != "synthetic_vireid":
    return name
  from ce2l_jax.data import synthetic  # light (numpy only)
  if config not in synthetic.CONFIGS:
    return name
  return f"{base}:{synthetic.data_version(config)}"


class TfdsSource:
  """A built TFDS dataset split read with `tfds.data_source` (random access, no TensorFlow).

  `name` may carry a config and version (`"sysu_mm01/all:1.0.0"`). With `decode_images=False`
  (default) `image` is the encoded bytes; `True` gives TFDS's decoded uint8 array (slower: an
  extra copy, and no JPEG draft mode). Picklable, so grain worker processes can use it.
  """

  def __init__(self, name: str, split: str, data_dir: str | None = None, decode_images: bool = False,
               label_cache_dir: str | None = None):
    import tensorflow_datasets as tfds  # heavy; only where a TFDS source is used
    name = pinned_version(name)
    self.name, self.split, self.data_dir = name, split, data_dir
    self.decode_images = decode_images
    self.label_cache_dir = label_cache_dir
    decoders = None if decode_images else {"image": tfds.decode.SkipDecoding()}
    try:
      self._ds = tfds.data_source(name, split=split, data_dir=data_dir, decoders=decoders, download=False)
    except Exception as e:  # tfds raises several types for "not built"
      raise FileNotFoundError(
          f"cannot open TFDS dataset {name!r} split {split!r} in data_dir={data_dir!r}: "
          f"{str(e).splitlines()[0][:300]} (build it first: python -m ce2l_jax.tfds_build ...)") from None
    self._labels: Labels | None = None

  def __len__(self) -> int:
    return len(self._ds)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return self._ds[int(index)]

  def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
    return list(self._ds.__getitems__([int(i) for i in indices]))

  def __repr__(self) -> str:
    return f"TfdsSource({self.name!r}, split={self.split!r}, n={len(self)})"

  def _cache_key(self) -> tuple[str, ...]:
    version_dir = str(getattr(self._ds.dataset_info, "data_dir", ""))
    return (self.name, str(os.path.abspath(self.data_dir or "")), version_dir, str(self.split), str(len(self)))

  def labels(self) -> Labels:
    """pid/camid/modality of every record, read once without decoding an image."""
    if self._labels is not None:
      return self._labels
    key = self._cache_key()
    if key in _LABEL_CACHE:
      self._labels = _LABEL_CACHE[key]
      return self._labels
    path = None
    if self.label_cache_dir:
      digest = hashlib.sha1(repr(key).encode()).hexdigest()[:16]
      path = os.path.join(self.label_cache_dir, f"labels-{digest}.npz")
      if os.path.exists(path):
        with np.load(path) as z:
          self._labels = Labels(z["pid"], z["camid"], z["modality"])
    if self._labels is None:
      self._labels = _read_labels(self._label_reader())
      if path:
        os.makedirs(self.label_cache_dir, exist_ok=True)
        tmp = path + f".tmp{os.getpid()}.npz"
        np.savez(tmp, pid=self._labels.pid, camid=self._labels.camid, modality=self._labels.modality)
        os.replace(tmp, path)
    _LABEL_CACHE[key] = self._labels
    return self._labels

  def _label_reader(self):
    if not self.decode_images:
      return self._ds
    import tensorflow_datasets as tfds
    return tfds.data_source(self.name, split=self.split, data_dir=self.data_dir,
                            decoders={"image": tfds.decode.SkipDecoding()}, download=False)


def _read_labels(ds: Any, chunk: int = 1024) -> Labels:
  n = len(ds)
  pid, camid, modality = (np.empty(n, np.int64) for _ in range(3))
  for start in range(0, n, chunk):
    idx = list(range(start, min(n, start + chunk)))
    recs = ds.__getitems__(idx) if hasattr(ds, "__getitems__") else [ds[i] for i in idx]
    for j, r in zip(idx, recs):
      pid[j], camid[j], modality[j] = int(r["pid"]), int(r["camid"]), int(r["modality"])
  return Labels(pid, camid, modality)


# ------------------------------------------------------------------------------- in memory

class InMemorySource:
  """Records held in memory: a list of record dicts, or a dict of equally long columns."""

  def __init__(self, records: Sequence[dict[str, Any]] | dict[str, Sequence[Any]]):
    if isinstance(records, dict):
      n = {len(v) for v in records.values()}
      if len(n) != 1:
        raise ValueError("InMemorySource: all columns must have the same length")
      self._columns = {k: v for k, v in records.items()}
      self._n = n.pop()
      self._records = None
    else:
      self._records = list(records)
      self._columns = None
      self._n = len(self._records)
    self._labels: Labels | None = None

  def __len__(self) -> int:
    return self._n

  def __getitem__(self, index: int) -> dict[str, Any]:
    index = int(index)
    if not -self._n <= index < self._n:
      raise IndexError(f"index {index} out of range for a source of {self._n} records")
    if self._records is not None:
      return self._records[index]
    return {k: v[index] for k, v in self._columns.items()}

  def labels(self) -> Labels:
    if self._labels is None:
      if self._columns is not None:
        self._labels = Labels(self._columns["pid"], self._columns["camid"], self._columns["modality"])
      else:
        self._labels = Labels(*(np.array([int(r[f]) for r in self._records], np.int64)
                                for f in ("pid", "camid", "modality")))
    return self._labels


# ------------------------------------------------------------------------------------ views

class SubsetSource:
  """The records `indices` of `source`, re-indexed 0..len(indices)-1."""

  def __init__(self, source: Source, indices: Sequence[int]):
    self.source = source
    self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= len(source)):
      raise IndexError("SubsetSource: indices out of range")

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return self.source[int(self.indices[int(index)])]

  def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
    return get_records(self.source, self.indices[np.asarray(indices, dtype=np.int64)])

  def labels(self) -> Labels:
    return self.source.labels().take(self.indices)

  def __repr__(self) -> str:
    return f"SubsetSource({self.source!r}, n={len(self)})"


def select(source: Source, modality: int | None = None, cameras: Sequence[int] | None = None,
           pids: Sequence[int] | None = None) -> SubsetSource:
  """The records of `source` with the given modality, camera ids and identities (None: any)."""
  lab = source.labels()
  keep = np.ones(len(lab), bool)
  if modality is not None:
    keep &= lab.modality == int(modality)
  if cameras is not None:
    keep &= np.isin(lab.camid, np.asarray(list(cameras), np.int64))
  if pids is not None:
    keep &= np.isin(lab.pid, np.asarray(list(pids), np.int64))
  return SubsetSource(source, np.flatnonzero(keep))


def split_by_modality(source: Source) -> tuple[SubsetSource, SubsetSource]:
  """(visible, infrared) views of a source by its records' `modality` label."""
  return select(source, modality=0), select(source, modality=1)


class ConcatSource:
  """Several sources behind one global index: part `j` holds `offsets[j]:offsets[j+1]`."""

  def __init__(self, parts: Sequence[Source]):
    self.parts = list(parts)
    sizes = [len(p) for p in self.parts]
    self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    self._labels: Labels | None = None

  def __len__(self) -> int:
    return int(self.offsets[-1])

  def locate(self, index: int) -> tuple[int, int]:
    """(part, index within the part) of a global index."""
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(f"index {index} out of range for a ConcatSource of {len(self)} records")
    part = int(np.searchsorted(self.offsets, index, side="right") - 1)
    return part, index - int(self.offsets[part])

  def part_of(self, indices: np.ndarray) -> np.ndarray:
    return np.searchsorted(self.offsets, np.asarray(indices), side="right") - 1

  def __getitem__(self, index: int) -> dict[str, Any]:
    part, local = self.locate(index)
    return self.parts[part][local]

  def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(indices) and (indices.min() < 0 or indices.max() >= len(self)):
      raise IndexError(f"index out of range for a ConcatSource of {len(self)} records")
    out: list[Any] = [None] * len(indices)
    parts = self.part_of(indices)
    for j in np.unique(parts):
      where = np.flatnonzero(parts == j)
      for w, r in zip(where, get_records(self.parts[j], indices[where] - self.offsets[j])):
        out[w] = r
    return out

  def labels(self) -> Labels:
    if self._labels is None:
      self._labels = Labels.concat([p.labels() for p in self.parts])
    return self._labels
