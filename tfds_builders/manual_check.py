"""Checks of a manually downloaded dataset folder, run before a TFDS build writes anything.

SYSU-MM01 and RegDB cannot be downloaded by code: their builders read a folder the user placed
(`--manual_dir`). Before TFDS creates any folder, a builder checks the whole of it (layout, index
files, every image opened and decoded with PIL) and raises `ManualDirError` on the first problem
found, with a message that names the path and says what was expected.
`python -m ce2l_jax.tfds_build` turns that error into a short message and exit code 2.

The API is small on purpose (builders of other manually downloaded datasets may use it):

- `ManualDirError`: the one error type for a bad manual folder (a `ValueError`).
- `find_root(manual_dir, folder, required, instructions=...)`: the dataset root, accepting either
  the folder that holds `folder/` or `folder/` itself.
- `require_file(path, expected)`: `path` if it is a file, else `ManualDirError`.
- `check_images(paths)`: opens and decodes every image; `{path: ImageInfo}`, or one
  `ManualDirError` listing every unreadable file.
- `feature_image(path, info, encoding)`: what to give `tfds.features.Image`: the path itself when
  the file is already a 3-channel image in `encoding`, else the image converted to RGB and
  re-encoded.
- `check_disjoint_ids(train, test, train_where, test_where)`: `ManualDirError` when an identity
  is in both splits; `log_split(...)`: the one log line per checked split.
- `ManualDirBuilder`: a mixin for `tfds.core.GeneratorBasedBuilder` (list it first) that writes
  `array_record` by default, calls the builder's `_check_manual_dir(manual_dir)` inside
  `download_and_prepare` before TFDS creates any folder, and hands the result back through
  `self.checked_manual_dir(dl_manager)` in `_split_generators`.
"""

import concurrent.futures
import io
import os
from typing import Any, Iterable, NamedTuple

from absl import logging
from etils import epath
from PIL import Image
import tensorflow_datasets as tfds

# How many offending entries an error message lists before "... and N more".
MAX_LISTED = 8


class ManualDirError(ValueError):
  """The manual download folder is missing, incomplete or holds bad data."""


class ImageInfo(NamedTuple):
  """What PIL reports for a readable image."""
  format: str  # PIL format name: "JPEG", "PNG", "BMP", ...
  mode: str  # PIL mode: "RGB", "L", "P", ...
  size: tuple[int, int]  # (width, height)


def listing(items: Iterable[str], limit: int = MAX_LISTED) -> str:
  """`items` one per indented line, cut after `limit` with a count of the rest."""
  items = list(items)
  lines = [f"  {x}" for x in items[:limit]]
  if len(items) > limit:
    lines.append(f"  ... and {len(items) - limit} more")
  return "\n".join(lines)


def find_root(manual_dir: os.PathLike | str, folder: str, required: Iterable[str], *,
              instructions: str) -> epath.Path:
  """The dataset root inside `manual_dir`: `manual_dir/folder` or `manual_dir` itself.

  Args:
    manual_dir: the folder given as `--manual_dir`.
    folder: the dataset's top folder as released (e.g. `SYSU-MM01`).
    required: entries (files or folders) the root must hold, relative to it (e.g. `exp`).
    instructions: the builder's download instructions and expected tree, appended to errors.

  Raises:
    ManualDirError: `manual_dir` is missing, empty, or neither it nor `manual_dir/folder` holds
      every `required` entry.
  """
  manual_dir = epath.Path(manual_dir)
  required = list(required)
  if not manual_dir.is_dir():
    raise ManualDirError(f"manual dir {manual_dir} does not exist; expected {folder}/ in it "
                         f"(or --manual_dir pointing at {folder}/ itself).\n{instructions}")
  if not any(manual_dir.iterdir()):
    raise ManualDirError(f"manual dir {manual_dir} is empty; expected {folder}/ in it.\n"
                         f"{instructions}")
  for root in (manual_dir / folder, manual_dir):
    if root.is_dir() and all((root / r).exists() for r in required):
      return root
  root = manual_dir / folder if (manual_dir / folder).is_dir() else manual_dir
  missing = [str(root / r) for r in required if not (root / r).exists()]
  found = sorted(p.name for p in root.iterdir())
  found = ", ".join(found[:MAX_LISTED] + (["..."] if len(found) > MAX_LISTED else []))
  raise ManualDirError(f"manual dir {manual_dir} does not hold the {folder} dataset; missing:\n"
                       f"{listing(missing)}\n(found in {root}: {found or 'nothing'})\n"
                       f"{instructions}")


def require_file(path: epath.Path, expected: str) -> epath.Path:
  """`path` if it is a file, else `ManualDirError` naming it and what it should hold."""
  if not path.is_file():
    raise ManualDirError(f"{path} is missing; expected {expected}.")
  return path


def _probe(path: epath.Path) -> ImageInfo | str:
  """ImageInfo of a decodable image, or why it is not one."""
  try:
    with Image.open(path) as im:
      im.load()  # Decodes the whole image: catches truncated and corrupt files.
      if im.width == 0 or im.height == 0:
        return "empty image"
      return ImageInfo(im.format, im.mode, im.size)
  except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ...
    return f"{type(e).__name__}: {str(e).replace(f' {os.fspath(path)!r}', '')}"


def check_images(paths: Iterable[os.PathLike | str], *, threads: int | None = None
                 ) -> dict[epath.Path, ImageInfo]:
  """Opens and decodes every image (threads: PIL decodes outside the GIL).

  Returns:
    `{path: ImageInfo}` in the order given.

  Raises:
    ManualDirError: listing every file PIL cannot read, with PIL's reason.
  """
  paths = [epath.Path(p) for p in paths]
  threads = threads or min(8, os.cpu_count() or 1)
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    results = list(pool.map(_probe, paths))
  bad = [f"{p}: {r}" for p, r in zip(paths, results) if isinstance(r, str)]
  if bad:
    raise ManualDirError(f"{len(bad)} unreadable image(s); expected every listed image to open "
                         f"and decode with PIL:\n{listing(bad)}")
  return dict(zip(paths, results))


def feature_image(path: epath.Path, info: ImageInfo, encoding: str) -> str | bytes:
  """What `tfds.features.Image(encoding_format=encoding)` should get for the image at `path`.

  The file's own bytes (as its path) when it is already RGB in `encoding` ("jpeg" or "png"),
  so nothing is re-compressed; otherwise the image converted to RGB (grayscale repeated to three
  channels, palettes expanded) and encoded: PNG losslessly, JPEG at quality 100 without chroma
  subsampling.
  """
  pil_format = {"jpeg": "JPEG", "png": "PNG"}[encoding]
  if info.format == pil_format and info.mode == "RGB":
    return os.fspath(path)
  with Image.open(path) as im:
    rgb = im.convert("RGB")
  buf = io.BytesIO()
  if pil_format == "JPEG":
    rgb.save(buf, format="JPEG", quality=100, subsampling=0)
  else:
    rgb.save(buf, format="PNG")
  return buf.getvalue()


def check_disjoint_ids(train: Iterable[int], test: Iterable[int], train_where: str,
                       test_where: str) -> None:
  """`ManualDirError` naming the identities (the first 20 and their count) that are in both the
  train and the test split, and where each split's identities come from (`*_where`)."""
  both = sorted(set(train) & set(test))
  if both:
    raise ManualDirError(f"identities {both[:20]} ({len(both)} in all) are in both train "
                         f"({train_where}) and test ({test_where}); expected disjoint splits.")


def log_split(where: str, n_ids: int, n_images: int, n_infrared: int,
              infrared: str = "infrared") -> None:
  """Logs `<where>: N identities, V visible + I infrared images.` for a checked split."""
  logging.info("%s: %d identities, %d visible + %d %s images.", where, n_ids,
               n_images - n_infrared, n_infrared, infrared)


class ManualDirBuilder:
  """Mixin for a `GeneratorBasedBuilder` whose data sits in a manual folder.

  Use as `class MyData(manual_check.ManualDirBuilder, tfds.core.GeneratorBasedBuilder)` and
  define `_check_manual_dir(self, manual_dir) -> Any`, which validates everything and raises
  `ManualDirError`. It runs inside `download_and_prepare` before TFDS creates any folder (TFDS
  itself only looks at the data inside `_split_generators`, after creating the dataset's folders),
  and only when a build will happen (not when the dataset exists and is reused). Its result is
  returned by `self.checked_manual_dir(dl_manager)`.

  Also: `file_format` defaults to `array_record` (writing TFRecord needs TensorFlow), and
  temporary folders left by an interrupted earlier build are reported after a build.
  """

  def __init__(self, *, file_format: str | None = None, **kwargs: Any):
    super().__init__(file_format=file_format or "array_record", **kwargs)
    self._manual_check: tuple[epath.Path, Any] | None = None

  def _check_manual_dir(self, manual_dir: epath.Path) -> Any:
    """Validates the manual folder; returns what `_split_generators` needs."""
    raise NotImplementedError

  def download_and_prepare(self, *, download_dir: Any = None,
                           download_config: tfds.download.DownloadConfig | None = None,
                           **kwargs: Any) -> None:
    """Checks the manual folder, then runs TFDS's `download_and_prepare`."""
    download_config = download_config or tfds.download.DownloadConfig()
    mode = download_config.download_mode
    builds = (mode != tfds.download.GenerateMode.UPDATE_DATASET_INFO
              and (mode.overwrite_dataset or not self.data_path.exists()))
    if builds:
      manual_dir = epath.Path(
          download_config.manual_dir
          or epath.Path(download_dir or self.data_dir_root / "downloads") / "manual")
      self._manual_check = (manual_dir, self._check_manual_dir(manual_dir))
    super().download_and_prepare(download_dir=download_dir, download_config=download_config,
                                 **kwargs)
    stale = sorted(self.data_path.parent.glob(f"incomplete.*_{self.data_path.name}"))
    if stale:
      logging.warning("Temporary folders of an interrupted earlier build of %s (unused; delete "
                      "them once no other build of it runs):\n%s", self.info.full_name,
                      listing(map(str, stale)))

  def checked_manual_dir(self, dl_manager: tfds.download.DownloadManager) -> Any:
    """The result of `_check_manual_dir`, from `download_and_prepare` (or computed now)."""
    if self._manual_check is None:
      try:
        manual_dir = dl_manager.manual_dir
      except AssertionError as e:  # TFDS's "does not exist or is empty".
        raise ManualDirError(str(e)) from None
      self._manual_check = (manual_dir, self._check_manual_dir(manual_dir))
    return self._manual_check[1]
