"""LLCM as a TFDS dataset (array_record, readable with `tfds.data_source`, no TensorFlow).

LLCM, the low-light cross-modality benchmark (Zhang & Wang, "Diverse Embedding Expansion Network
and Low-Light Cross-Modality Benchmark for Visible-Infrared Person Re-identification", CVPR 2023):
46,767 images of 1,064 identities from 9 cameras, each camera filming in visible (VIS) light by
day and near infrared (NIR) in low light; 713 training identities (the authors' code trains a
713-way classifier), the other 351 for testing.

Build (the data must be requested from the authors, see `MANUAL_DOWNLOAD_INSTRUCTIONS`):

  python -m ce2l_jax.tfds_build tfds_builders/llcm --manual_dir=/data/manual --data_dir=/data/tfds

The layout is the one the authors' released code reads (github.com/ZYK100/LLCM,
`DEEN/data_manager.py` and `DEEN/data_loader.py`): `idx/train_vis.txt` / `idx/train_nir.txt`
list the training images (`<path relative to LLCM/> <label>`), `idx/test_id.txt` the test
identities, and the test images sit in `test_vis/cam<c>/<identity:04d>/` and
`test_nir/cam<c>/<identity:04d>/`.
"""

import dataclasses
import re

from etils import epath
import tensorflow_datasets as tfds

from tfds_builders import features, manual_check

ROOT_FOLDER = "LLCM"
MODALITY_FOLDERS = {"vis": 0, "nir": 1}  # folder suffix -> modality (0 visible, 1 infrared)
CAMERAS = tuple(range(1, 10))
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# The release (paper abstract; 713 training identities in the authors' code).
RELEASE_IDENTITIES = {"train": 713, "test": 351}
RELEASE_IMAGES = 46_767

_IDS_EXPECTED = "one line of comma-separated identity numbers (e.g. 4,5,6)"
_LINE_EXPECTED = "'<split>_<vis|nir>/cam<c>/<identity:04d>/<name> <label>'"
_TREE = f"""\
Expected tree (--manual_dir may also point at {ROOT_FOLDER}/ itself):
  <manual_dir>/{ROOT_FOLDER}/
    idx/
      train_vis.txt         one line per training image: train_vis/cam<c>/<identity:04d>/<name> <label>
      train_nir.txt         same for train_nir/
      test_id.txt           {_IDS_EXPECTED}
    train_vis/cam1/ ... cam9/<identity:04d>/*.jpg
    train_nir/cam<c>/<identity:04d>/*.jpg
    test_vis/cam<c>/<identity:04d>/*.jpg     every image of the test identities (visible)
    test_nir/cam<c>/<identity:04d>/*.jpg     same, near infrared
"""
_PATH = re.compile(r"^(train|test)_(vis|nir)/cam([1-9])/(\d+)/([^/]+)$")


@dataclasses.dataclass(frozen=True)
class _Image:
  file: str  # Relative to LLCM/: <split>_<vis|nir>/cam<c>/<identity>/<name>
  pid: int
  camid: int
  modality: int
  info: manual_check.ImageInfo | None = None


@dataclasses.dataclass(frozen=True)
class _Checked:
  root: epath.Path
  splits: dict[str, list[_Image]]


def _parse(file: str) -> tuple[str, int, int, int] | None:
  """(split, modality, camid, pid) of a path relative to LLCM/, None if it does not fit."""
  m = _PATH.match(file)
  if not m:
    return None
  return m.group(1), MODALITY_FOLDERS[m.group(2)], int(m.group(3)), int(m.group(4))


def _read_test_ids(path: epath.Path) -> list[int]:
  manual_check.require_file(path, _IDS_EXPECTED)
  text = path.read_text().strip()
  tokens = [t.strip() for t in text.replace("\n", ",").split(",") if t.strip()]
  if not tokens or not all(t.isdigit() for t in tokens):
    raise manual_check.ManualDirError(f"{path}: expected {_IDS_EXPECTED}; got {text[:80]!r}")
  ids = [int(t) for t in tokens]
  if len(set(ids)) != len(ids):
    raise manual_check.ManualDirError(f"{path}: identities listed twice; expected {_IDS_EXPECTED}")
  return sorted(ids)


def _read_train_list(idx: epath.Path, root: epath.Path, modality: str) -> list[_Image]:
  """The images `idx/train_<modality>.txt` lists, every line checked."""
  manual_check.require_file(idx, f"one line per image, {_LINE_EXPECTED}")
  images, bad, seen = [], [], set()
  for n, line in enumerate(idx.read_text().splitlines(), 1):
    if not line.strip():
      continue
    parts = line.split()
    file = parts[0].replace("\\", "/").removeprefix("./").removeprefix(f"{ROOT_FOLDER}/")
    parsed = _parse(file)
    if (len(parts) != 2 or not parts[1].lstrip("-").isdigit() or parsed is None
        or parsed[0] != "train" or parsed[1] != MODALITY_FOLDERS[modality]):
      bad.append(f"line {n}: {line.strip()!r} is not "
                 f"{_LINE_EXPECTED.replace('<split>_<vis|nir>', f'train_{modality}')}")
    elif file in seen:
      bad.append(f"line {n}: {file} is listed twice")
    elif not (root / file).is_file():
      bad.append(f"line {n}: {root / file} does not exist")
    else:
      seen.add(file)
      _, mod, cam, pid = parsed
      images.append(_Image(file, pid, cam, mod))
  if bad:
    raise manual_check.ManualDirError(
        f"{idx}: {len(bad)} bad line(s); expected {_LINE_EXPECTED} naming an image under "
        f"{root}:\n{manual_check.listing(bad)}")
  if not images:
    raise manual_check.ManualDirError(f"{idx} lists no image; expected {_LINE_EXPECTED} lines.")
  return images


def _scan_test(root: epath.Path, test_ids: list[int]) -> list[_Image]:
  """Every image of the test identities in test_vis/ and test_nir/, in (modality, camera,
  identity, name) order; a test identity without images in one modality is an error."""
  wanted = set(test_ids)
  images, found = [], {0: set(), 1: set()}
  for suffix, mod in MODALITY_FOLDERS.items():
    folder = root / f"test_{suffix}"
    if not folder.is_dir():
      raise manual_check.ManualDirError(f"{folder} is missing; expected cam<c>/<identity:04d>/*.jpg "
                                        "holding the test identities' images.")
    for cam in CAMERAS:
      cam_dir = folder / f"cam{cam}"
      if not cam_dir.is_dir():
        continue
      for pid_dir in sorted(cam_dir.iterdir(), key=lambda p: p.name):
        if not (pid_dir.is_dir() and pid_dir.name.isdigit() and int(pid_dir.name) in wanted):
          continue
        names = sorted(p.name for p in pid_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for name in names:
          images.append(_Image(f"test_{suffix}/cam{cam}/{pid_dir.name}/{name}",
                               int(pid_dir.name), cam, mod))
        if names:
          found[mod].add(int(pid_dir.name))
  missing = [f"identity {pid:04d}: no image in " + " or ".join(
      str(root / f"test_{s}") for s, m in MODALITY_FOLDERS.items() if pid not in found[m])
             for pid in test_ids if pid not in found[0] or pid not in found[1]]
  if missing:
    raise manual_check.ManualDirError(
        f"{len(missing)} test identities of {root / 'idx' / 'test_id.txt'} lack the images of a "
        f"modality (the protocol needs both):\n{manual_check.listing(missing)}")
  return images


class Llcm(manual_check.ManualDirBuilder, tfds.core.GeneratorBasedBuilder):
  """LLCM visible–near-infrared person re-ID (Zhang & Wang, CVPR 2023), from the released layout.

  Records: `image` (uint8 H×W×3 JPEG; single-channel images repeated to 3), `pid` (the identity
  folder's number), `camid` (1–9, the camera; the same number in both modalities is the same
  camera), `modality` (0 visible, 1 near infrared), `file` (relative to LLCM/).

  Splits: `train` = the images `idx/train_vis.txt` and `idx/train_nir.txt` list (their label
  column is not used: `pid` is the identity folder's number, as for the test split); `test` =
  every image of the identities in `idx/test_id.txt` under `test_vis/` and `test_nir/`.

  Checks before anything is written: the layout and the index files (every line names an
  existing image in the right folder), an identity in both splits, a test identity without
  images of one modality, every image decoded; and, when the identity lists are the release's
  (713 + 351), the total image count against the release's 46,767 (a partly extracted archive).
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Released layout (authors' idx/ files and test folders); JPEG."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
LLCM is not downloadable by script. Request it from its authors by sending the signed dataset
release agreement (linked from https://github.com/ZYK100/LLCM) to the address given there,
extract the archive and pass the folder holding {ROOT_FOLDER}/ as --manual_dir.
{_TREE}"""

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="LLCM low-light visible/near-infrared person re-identification (9 cameras).",
        features=features.features("jpeg"),
        homepage="https://github.com/ZYK100/LLCM",
        citation="""@inproceedings{zhang2023diverse,
  title={Diverse Embedding Expansion Network and Low-Light Cross-Modality Benchmark for
         Visible-Infrared Person Re-identification},
  author={Zhang, Yukang and Wang, Hanzi}, booktitle={CVPR}, year={2023}}""",
    )

  def _check_manual_dir(self, manual_dir: epath.Path) -> _Checked:
    """Checks the layout, the index files, the identity lists and every image."""
    root = manual_check.find_root(manual_dir, ROOT_FOLDER, ["idx", "test_vis", "test_nir"],
                                  instructions=self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    test_ids = _read_test_ids(root / "idx" / "test_id.txt")
    train = (_read_train_list(root / "idx" / "train_vis.txt", root, "vis")
             + _read_train_list(root / "idx" / "train_nir.txt", root, "nir"))
    train_ids = sorted({im.pid for im in train})
    manual_check.check_disjoint_ids(train_ids, test_ids, "idx/train_vis.txt, idx/train_nir.txt",
                                    str(root / "idx" / "test_id.txt"))
    test = _scan_test(root, test_ids)
    n_ids = {"train": len(train_ids), "test": len(test_ids)}
    if n_ids == RELEASE_IDENTITIES and len(train) + len(test) != RELEASE_IMAGES:
      raise manual_check.ManualDirError(
          f"{root} has the release's {sum(n_ids.values())} identities but {len(train)} training "
          f"+ {len(test)} test images = {len(train) + len(test)}; the release has "
          f"{RELEASE_IMAGES:,}: an incompletely extracted archive?")
    splits = {}
    for split, images in (("train", train), ("test", test)):
      infos = manual_check.check_images(root / im.file for im in images)
      splits[split] = [dataclasses.replace(im, info=info) for im, info in zip(images, infos.values())]
      manual_check.log_split(f"{root} {split}", n_ids[split], len(images),
                             sum(im.modality for im in images))
    return _Checked(root, splits)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    checked = self.checked_manual_dir(dl_manager)
    return {split: self._generate_examples(checked.root, images)
            for split, images in checked.splits.items()}

  def _generate_examples(self, root: epath.Path, images: list[_Image]):
    for im in images:
      yield im.file, features.example(manual_check.feature_image(root / im.file, im.info, "jpeg"),
                                      im.pid, im.camid, im.modality, im.file)
