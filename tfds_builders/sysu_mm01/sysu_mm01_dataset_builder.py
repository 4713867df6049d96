"""SYSU-MM01 as a TFDS dataset (array_record, readable with `tfds.data_source`, no TensorFlow).

Build (the data must be requested from the authors, see `MANUAL_DOWNLOAD_INSTRUCTIONS`):

  python -m ce2l_jax.tfds_build tfds_builders/sysu_mm01 --manual_dir=/data/manual --data_dir=/data/tfds

Read: `tfds.data_source("sysu_mm01", data_dir="/data/tfds", split="train")`.
"""

import dataclasses

from absl import logging
from etils import epath
import numpy as np
import scipy.io
import tensorflow_datasets as tfds

from tfds_builders import features, manual_check

ROOT_FOLDER = "SYSU-MM01"
CAMERAS = (1, 2, 3, 4, 5, 6)
# Which `exp/*.txt` identity lists make each split.
SPLIT_LISTS = {"train": ("train_id", "val_id"), "test": ("test_id",)}
# The official gallery draws; copied next to the records when `exp/` has it.
RAND_PERM_CAM = "rand_perm_cam.mat"

_IDS_EXPECTED = "one line of comma-separated identity numbers (e.g. 1,2,4,5)"
_TREE = f"""\
Expected tree (--manual_dir may also point at {ROOT_FOLDER}/ itself):
  <manual_dir>/{ROOT_FOLDER}/
    cam1/ ... cam6/         cameras 1, 2, 4, 5 visible; 3, 6 infrared
      0001/0001.jpg ...     cam<c>/<identity:04d>/<n:04d>.jpg (missing or empty identity
                            folders are normal)
    exp/
      train_id.txt          {_IDS_EXPECTED}
      val_id.txt            same
      test_id.txt           same
      rand_perm_cam.mat     optional: the official gallery draws, from the authors' evaluation
                            code (github.com/wuancong/SYSU-MM01, evaluation/data_split/)
"""


@dataclasses.dataclass(frozen=True)
class _Image:
  file: str  # Relative to SYSU-MM01/: cam<c>/<identity folder>/<name>.jpg
  pid: int
  camid: int
  info: manual_check.ImageInfo


@dataclasses.dataclass(frozen=True)
class _Checked:
  """What `_check_manual_dir` found: everything the build needs."""
  root: epath.Path
  splits: dict[str, list[_Image]]
  rand_perm_cam: epath.Path | None


def _read_ids(path: epath.Path) -> list[int]:
  """The identities of one `exp/*_id.txt` file."""
  manual_check.require_file(path, _IDS_EXPECTED)
  text = path.read_text().strip()
  tokens = [t.strip() for t in text.replace("\n", ",").split(",") if t.strip()]
  if not tokens or not all(t.isdigit() for t in tokens):
    raise manual_check.ManualDirError(f"{path}: expected {_IDS_EXPECTED}; got {text[:80]!r}")
  return [int(t) for t in tokens]


def _scan_cameras(root: epath.Path) -> dict[tuple[int, int], list[str]]:
  """`{(camid, pid): [file relative to root, sorted by name]}` for every `*.jpg` on disk."""
  found = {}
  for cam in CAMERAS:
    cam_dir = root / f"cam{cam}"
    if not cam_dir.is_dir():
      raise manual_check.ManualDirError(
          f"{cam_dir} is missing; expected camera folder cam{cam}/ holding <identity:04d>/*.jpg.")
    for pid_dir in cam_dir.iterdir():
      if pid_dir.name.isdigit() and pid_dir.is_dir():
        names = sorted(p.name for p in pid_dir.iterdir() if p.suffix.lower() == ".jpg")
        if names:
          found[(cam, int(pid_dir.name))] = [f"cam{cam}/{pid_dir.name}/{n}" for n in names]
  return found


def _check_rand_perm_cam(path: epath.Path, test_ids: list[int],
                         on_disk: dict[tuple[int, int], list[str]]) -> None:
  """The official draws must index exactly the test identities' images found on disk."""
  try:
    cells = scipy.io.loadmat(path)["rand_perm_cam"]
    assert cells.shape == (len(CAMERAS), 1), cells.shape
  except Exception as e:  # scipy raises several types on a bad file.
    raise manual_check.ManualDirError(
        f"{path}: unreadable ({type(e).__name__}: {e}); expected the SYSU-MM01 evaluation "
        "code's MATLAB file with a 6x1 cell 'rand_perm_cam', or no file.") from None
  bad = []
  for cam in CAMERAS:
    cell = cells[cam - 1, 0]
    for pid in test_ids:
      drawn = cell[pid - 1, 0] if pid <= cell.shape[0] else np.zeros((0, 0))
      n_mat = drawn.shape[1] if drawn.size else 0
      n_disk = len(on_disk.get((cam, pid), []))
      if n_mat != n_disk:
        bad.append(f"cam{cam}/{pid:04d}: {n_disk} image(s) on disk, {n_mat} in {path.name}")
  if bad:
    raise manual_check.ManualDirError(
        f"{path} does not match the images on disk (its draws index each test identity's images "
        f"in a camera sorted by file name, so the counts must agree):\n"
        f"{manual_check.listing(bad)}")


class SysuMm01(manual_check.ManualDirBuilder, tfds.core.GeneratorBasedBuilder):
  """SYSU-MM01 RGB–infrared person re-ID (Wu et al., ICCV 2017), from the released layout.

  Records: `image` (uint8 H×W×3 JPEG; infrared stored as 1 channel is repeated to 3), `pid`
  (the identity folder's number), `camid` (1–6: 1, 2, 4, 5 visible, 3, 6 infrared), `modality`
  (0 visible, 1 infrared), `file` (`cam<c>/<identity:04d>/<n:04d>.jpg`, relative to SYSU-MM01/).

  Splits: `train` = every image of the identities in `exp/train_id.txt` + `exp/val_id.txt`,
  `test` = every image of those in `exp/test_id.txt`. Images of identities in no list are left
  out.

  Statistics of the real set (from the official `rand_perm_cam.mat`, which counts every image):

  | split | identities | visible (cams 1,2,4,5) | infrared (cams 3,6) | total  |
  |-------|-----------:|-----------------------:|--------------------:|-------:|
  | train | 395 (296 train + 99 val) | 22,258   | 11,909              | 34,167 |
  | test  | 96         | 6,775                  | 3,803               | 10,578 |

  On disk: 30,071 visible + 15,792 infrared images of 513 identities; the 22 identities seen
  in one modality only (1,038 visible + 80 infrared images) are in no list. Test: 3,803
  infrared queries (cams 3, 6); the official single-shot gallery holds 301 (all-search, cams
  1, 2, 4, 5) or 112 (indoor-search, cams 1, 2) images per trial.

  Official gallery: when `exp/rand_perm_cam.mat` is present it is checked against the test
  images and copied to `<data_dir>/sysu_mm01/<version>/rand_perm_cam.mat` (next to
  `dataset_info.json`; metadata key `rand_perm_cam` names it). Its cell `{cam}{pid}` row `t`
  holds 1-based indices into that identity's images in that camera sorted by file name, which
  is sorting the records of one (`camid`, `pid`) by `file`.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Released layout; train = train + val identities; JPEG images."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
SYSU-MM01 is not downloadable by script. Request it from its authors (Ancong Wu, Wei-Shi Zheng et
al., "RGB-Infrared Cross-Modality Person Re-Identification", ICCV 2017, Sun Yat-sen University;
the request form is linked from https://github.com/wuancong/SYSU-MM01), extract the archive and
pass the folder holding SYSU-MM01/ as --manual_dir.
{_TREE}"""

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="SYSU-MM01 visible/infrared person re-identification (6 cameras).",
        features=features.features("jpeg"),
        homepage="https://github.com/wuancong/SYSU-MM01",
        citation="""@inproceedings{wu2017rgb,
  title={RGB-Infrared Cross-Modality Person Re-Identification},
  author={Wu, Ancong and Zheng, Wei-Shi and Yu, Hong-Xing and Gong, Shaogang and Lai, Jianhuang},
  booktitle={ICCV}, year={2017}}""",
        metadata=tfds.core.MetadataDict(rand_perm_cam=None),
    )

  def _check_manual_dir(self, manual_dir: epath.Path) -> _Checked:
    """Checks the layout, the identity lists and every image; nothing is written."""
    root = manual_check.find_root(manual_dir, ROOT_FOLDER, ["exp"],
                                  instructions=self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    lists = {name: _read_ids(root / "exp" / f"{name}.txt")
             for names in SPLIT_LISTS.values() for name in names}
    split_ids = {split: sorted({i for name in names for i in lists[name]})
                 for split, names in SPLIT_LISTS.items()}
    manual_check.check_disjoint_ids(split_ids["train"], split_ids["test"],
                                    f"{root / 'exp'}/train_id.txt, val_id.txt",
                                    f"{root / 'exp'}/test_id.txt")
    on_disk = _scan_cameras(root)
    rand_perm_cam = root / "exp" / RAND_PERM_CAM
    if rand_perm_cam.exists():
      _check_rand_perm_cam(rand_perm_cam, split_ids["test"], on_disk)
    else:
      rand_perm_cam = None
    splits = {}
    for split, ids in split_ids.items():
      keys = [(cam, pid) for pid in ids for cam in CAMERAS if (cam, pid) in on_disk]
      files = [(f, pid, cam) for cam, pid in keys for f in on_disk[(cam, pid)]]
      infos = manual_check.check_images(root / f for f, _, _ in files)
      splits[split] = [_Image(f, pid, cam, info) for (f, pid, cam), info
                       in zip(files, infos.values())]
      empty = sorted(set(ids) - {pid for _, pid in keys})
      if empty:
        logging.warning("%s: %d %s identities have no image in any camera: %s", root,
                        len(empty), split, empty[:20])
      manual_check.log_split(f"{root} {split}", len(ids), len(files),
                             sum(c in features.SYSU_INFRARED_CAMS for _, _, c in files))
    listed = set(split_ids["train"]) | set(split_ids["test"])
    unlisted = sum(len(v) for (_, pid), v in on_disk.items() if pid not in listed)
    if unlisted:
      logging.info("%s: %d images of identities in no exp/*_id.txt list are left out.", root,
                   unlisted)
    return _Checked(root, splits, rand_perm_cam)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    checked = self.checked_manual_dir(dl_manager)
    if checked.rand_perm_cam is not None:
      # `self.data_dir` is TFDS's temporary folder here: the copy appears with the records.
      (epath.Path(self.data_dir) / RAND_PERM_CAM).write_bytes(checked.rand_perm_cam.read_bytes())
      self.info.metadata["rand_perm_cam"] = RAND_PERM_CAM
    return {split: self._generate_examples(checked.root, images)
            for split, images in checked.splits.items()}

  def _generate_examples(self, root: epath.Path, images: list[_Image]):
    for im in images:
      yield im.file, features.example(manual_check.feature_image(root / im.file, im.info, "jpeg"),
                                      im.pid, im.camid, im.camid in features.SYSU_INFRARED_CAMS,
                                      im.file)
