"""Tiny SYSU-MM01 and RegDB folders in their released layouts, for the builder and CLI tests.

`make_sysu(parent)` and `make_regdb(parent)` write a few small images per identity (some
identities missing from some cameras, an empty identity folder, infrared/thermal images stored
single-channel) and return what a correct build must contain. Pixel values encode the camera, so
a test can tell a converted grayscale image from a visible one.
"""

import dataclasses
import pathlib

import numpy as np
from PIL import Image
import scipy.io
import tensorflow_datasets as tfds

# SYSU-MM01: {(camid, pid): number of images}. Cameras 3 and 6 are infrared.
SYSU_IMAGES = {
    (1, 1): 2, (2, 1): 1, (3, 1): 2, (6, 1): 1,  # train_id
    (4, 2): 2, (3, 2): 1,                        # train_id; cam2/0002 is an empty folder
    (5, 4): 1, (6, 4): 2,                        # val_id
    (1, 5): 2, (4, 5): 1, (3, 5): 2, (6, 5): 1,  # test_id
    (2, 7): 1, (5, 7): 2, (6, 7): 2,             # test_id
    (1, 9): 1,                                   # in no list: left out
}
SYSU_LISTS = {"train_id": [1, 2], "val_id": [4], "test_id": [5, 7]}
SYSU_EMPTY_FOLDERS = [(2, 2)]
# RegDB: identity folders; trial t's train identities (the others are test; trials other than
# 2 split like trial 1).
REGDB_IDS = (1, 2, 3, 4)
REGDB_TRAIN = {1: (2, 3), 2: (1, 4)}
REGDB_PER_ID = 3


@dataclasses.dataclass(frozen=True)
class Fixture:
  """A written manual folder and what its build must give."""
  manual_dir: pathlib.Path  # The folder holding SYSU-MM01/ or RegDB/.
  root: pathlib.Path  # SYSU-MM01/ or RegDB/ itself.
  # {split: {"visible": n, "infrared": n, "pids": sorted identities}}; RegDB: of trial 1.
  expected: dict[str, dict]


def _save(path: pathlib.Path, value: int, infrared: bool, fmt: str, size=(6, 12)) -> None:
  """A small image whose pixels are `value` (grayscale) or (value, 255 - value, 40) (visible)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  w, h = size
  if infrared:
    im = Image.fromarray(np.full((h, w), value, np.uint8), "L")
  else:
    im = Image.fromarray(np.broadcast_to(np.array([value, 255 - value, 40], np.uint8),
                                         (h, w, 3)).copy(), "RGB")
  im.save(path, format=fmt)


def _rand_perm_cam(counts: dict[tuple[int, int], int], seed: int = 0) -> np.ndarray:
  """A 6x1 cell like the official one: cell {cam}{pid} = 10 x n random 1-based indices."""
  rng = np.random.default_rng(seed)
  max_pid = max(pid for _, pid in counts)
  cells = np.empty((6, 1), dtype=object)
  for cam in range(1, 7):
    cell = np.empty((max_pid, 1), dtype=object)
    for pid in range(1, max_pid + 1):
      n = counts.get((cam, pid), 0)
      cell[pid - 1, 0] = np.stack([rng.permutation(n) + 1 for _ in range(10)]).astype(np.uint8)
    cells[cam - 1, 0] = cell
  return cells


def make_sysu(parent: pathlib.Path, *, rand_perm_cam: bool = True) -> Fixture:
  """`parent/SYSU-MM01/` as released (visible RGB jpgs, infrared grayscale jpgs)."""
  root = parent / "SYSU-MM01"
  for (cam, pid), n in SYSU_IMAGES.items():
    for k in range(1, n + 1):
      _save(root / f"cam{cam}" / f"{pid:04d}" / f"{k:04d}.jpg", 30 * cam, cam in (3, 6), "JPEG",
            size=(6 + k, 12))
  for cam in range(1, 7):
    (root / f"cam{cam}").mkdir(parents=True, exist_ok=True)
  for cam, pid in SYSU_EMPTY_FOLDERS:
    (root / f"cam{cam}" / f"{pid:04d}").mkdir(parents=True, exist_ok=True)
  (root / "exp").mkdir(parents=True, exist_ok=True)
  for name, ids in SYSU_LISTS.items():
    (root / "exp" / f"{name}.txt").write_text(",".join(map(str, ids)) + "\n")
  if rand_perm_cam:
    scipy.io.savemat(root / "exp" / "rand_perm_cam.mat",
                     {"rand_perm_cam": _rand_perm_cam(SYSU_IMAGES)})
  expected = {}
  for split, lists in (("train", ("train_id", "val_id")), ("test", ("test_id",))):
    pids = sorted(p for name in lists for p in SYSU_LISTS[name])
    n_ir = sum(n for (cam, pid), n in SYSU_IMAGES.items() if pid in pids and cam in (3, 6))
    n_all = sum(n for (cam, pid), n in SYSU_IMAGES.items() if pid in pids)
    expected[split] = {"visible": n_all - n_ir, "infrared": n_ir, "pids": pids}
  return Fixture(parent, root, expected)


def regdb_name(pid: int, k: int, thermal: bool) -> str:
  """A file name in RegDB's style, e.g. female_front_v_00003_1.bmp."""
  return f"{('female', 'male')[pid % 2]}_front_{'tv'[not thermal]}_{pid:05d}_{k}.bmp"


def make_regdb(parent: pathlib.Path, *, trials=(1, 2)) -> Fixture:
  """`parent/RegDB/` as released: Visible/ (RGB bmp), Thermal/ (grayscale bmp), idx/.

  Trial 2's index files are written with Windows separators and a `./` prefix, as some copies
  are.
  """
  root = parent / "RegDB"
  for pid in REGDB_IDS:
    for k in range(1, REGDB_PER_ID + 1):
      _save(root / "Visible" / str(pid) / regdb_name(pid, k, False), 40 * pid, False, "BMP")
      _save(root / "Thermal" / str(pid) / regdb_name(pid, k, True), 40 * pid, True, "BMP")
  (root / "idx").mkdir(parents=True, exist_ok=True)
  for t in trials:
    for split in ("train", "test"):
      train = REGDB_TRAIN.get(t, REGDB_TRAIN[1])
      pids = [p for p in REGDB_IDS if (p in train) == (split == "train")]
      for kind, folder in (("visible", "Visible"), ("thermal", "Thermal")):
        lines = []
        for label, pid in enumerate(pids):
          for k in range(1, REGDB_PER_ID + 1):
            path = f"{folder}/{pid}/{regdb_name(pid, k, kind == 'thermal')}"
            if t == 2:
              path = "./" + path.replace("/", "\\")
            lines.append(f"{path} {label}")
        (root / "idx" / f"{split}_{kind}_{t}.txt").write_text("\n".join(lines) + "\n")
  expected = {}
  for split in ("train", "test"):
    pids = sorted(p for p in REGDB_IDS if (p in REGDB_TRAIN[1]) == (split == "train"))
    n = len(pids) * REGDB_PER_ID
    expected[split] = {"visible": n, "infrared": n, "pids": pids}
  return Fixture(parent, root, expected)


def build(builder_cls, manual_dir: pathlib.Path, data_dir: pathlib.Path, **kwargs):
  """Builds `builder_cls` (kwargs e.g. `config="trial2"`) from `manual_dir` into `data_dir`."""
  tfds.disable_progress_bar()
  builder = builder_cls(data_dir=str(data_dir), **kwargs)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


def read_split(name: str, data_dir: pathlib.Path, split: str) -> list[dict]:
  """Every record of a built split, read back with `tfds.data_source` (no builder class)."""
  source = tfds.data_source(name, data_dir=str(data_dir), split=split)
  return [source[i] for i in range(len(source))]


def files_under(path: pathlib.Path) -> list[str]:
  """Every file below `path` (empty when it does not exist), relative to it."""
  return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
