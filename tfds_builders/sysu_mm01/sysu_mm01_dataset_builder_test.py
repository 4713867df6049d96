"""SYSU-MM01 builder on a tiny folder in the released layout (tests/fixtures_real.py)."""

import collections
import pathlib

import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds

from tests import fixtures_real as fx
from tfds_builders import features
from tfds_builders.manual_check import ManualDirError
from tfds_builders.sysu_mm01.sysu_mm01_dataset_builder import SysuMm01


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """The fixture folder and the dataset built from it."""
  tmp = tmp_path_factory.mktemp("sysu")
  fixture = fx.make_sysu(tmp / "manual")
  fx.build(SysuMm01, fixture.manual_dir, tmp / "data")
  return fixture, tmp / "data"


@pytest.mark.parametrize("split", ["train", "test"])
def test_splits_and_records(built, split):
  fixture, data_dir = built
  records = fx.read_split("sysu_mm01", data_dir, split)
  expected = fixture.expected[split]
  by_modality = collections.Counter(int(r["modality"]) for r in records)
  assert by_modality == {0: expected["visible"], 1: expected["infrared"]}
  assert sorted({int(r["pid"]) for r in records}) == expected["pids"]  # Unlisted id 9 left out.
  for r in records:
    file, camid, pid = r["file"].decode(), int(r["camid"]), int(r["pid"])
    assert file.startswith(f"cam{camid}/{pid:04d}/") and (fixture.root / file).is_file()
    assert int(r["modality"]) == (camid in features.SYSU_INFRARED_CAMS)
    image = r["image"]
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    if r["modality"] == 1:  # Grayscale jpg on disk: three equal channels.
      assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
  # Every image of a listed identity, each once.
  n = sum(n for (cam, pid), n in fx.SYSU_IMAGES.items() if pid in expected["pids"])
  assert len({r["file"] for r in records}) == len(records) == n


def test_rand_perm_cam_kept_with_the_records(built):
  fixture, data_dir = built
  info = tfds.data_source("sysu_mm01", data_dir=str(data_dir), split="test").dataset_info
  assert info.metadata["rand_perm_cam"] == "rand_perm_cam.mat"
  copied = pathlib.Path(info.data_dir) / "rand_perm_cam.mat"
  assert copied.read_bytes() == (fixture.root / "exp" / "rand_perm_cam.mat").read_bytes()
  # The draws index each (camera, identity)'s records sorted by `file`.
  cells = scipy.io.loadmat(copied)["rand_perm_cam"]
  records = fx.read_split("sysu_mm01", data_dir, "test")
  files = collections.defaultdict(list)
  for r in records:
    files[(int(r["camid"]), int(r["pid"]))].append(r["file"].decode())
  for (cam, pid), names in files.items():
    assert cells[cam - 1, 0][pid - 1, 0].shape == (10, len(names))


def test_manual_dir_may_be_the_dataset_folder_and_mat_is_optional(tmp_path):
  fixture = fx.make_sysu(tmp_path / "manual", rand_perm_cam=False)
  builder = fx.build(SysuMm01, fixture.root, tmp_path / "data")
  assert builder.info.metadata["rand_perm_cam"] is None
  assert not (pathlib.Path(builder.data_dir) / "rand_perm_cam.mat").exists()
  train = fixture.expected["train"]
  assert builder.info.splits["train"].num_examples == train["visible"] + train["infrared"]


def _break_ids_overlap(root):
  (root / "exp" / "val_id.txt").write_text("4,5\n")


def _break_truncated_image(root):
  path = root / "cam3" / "0005" / "0002.jpg"
  path.write_bytes(path.read_bytes()[:40])


def _break_not_an_image(root):
  (root / "cam1" / "0001" / "0002.jpg").write_text("not a jpeg")


def _break_id_list(root):
  (root / "exp" / "test_id.txt").write_text("5;7\n")


def _break_rand_perm_count(root):
  (root / "cam6" / "0007" / "0002.jpg").unlink()


def _break_rand_perm_file(root):
  (root / "exp" / "rand_perm_cam.mat").write_bytes(b"MATLAB?")


BAD_INPUTS = [  # (case, how to break the fixture, --manual_dir, expected message)
    ("missing", None, "nothere", r"manual dir .*nothere does not exist.*Request it from its "
     r"authors.*Expected tree"),
    ("empty", None, "empty", r"manual dir .*empty is empty.*Sun Yat-sen University"),
    ("no_exp", lambda r: (r / "exp" / "val_id.txt").unlink(), "manual",
     r"SYSU-MM01/exp/val_id.txt is missing; expected one line of comma-separated"),
    ("bad_list", _break_id_list, "manual", r"test_id.txt: expected one line of comma-separated"),
    ("overlap", _break_ids_overlap, "manual",
     r"identities \[5\] \(1 in all\) are in both train .* and test"),
    ("truncated", _break_truncated_image, "manual",
     r"1 unreadable image.*cam3/0005/0002.jpg: OSError"),
    ("not_an_image", _break_not_an_image, "manual", r"cam1/0001/0002.jpg: UnidentifiedImageError"),
    ("perm_count", _break_rand_perm_count, "manual",
     r"rand_perm_cam.mat does not match.*cam6/0007: 1 image\(s\) on disk, 2 in rand_perm_cam"),
    ("perm_file", _break_rand_perm_file, "manual", r"rand_perm_cam.mat: unreadable"),
]


@pytest.mark.parametrize("break_fn,manual,message", [c[1:] for c in BAD_INPUTS],
                         ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_reported_before_anything_is_written(tmp_path, break_fn, manual, message):
  fixture = fx.make_sysu(tmp_path / "manual")
  (tmp_path / "empty").mkdir()
  if break_fn:
    break_fn(fixture.root)
  with pytest.raises(ManualDirError, match=f"(?s){message}"):
    fx.build(SysuMm01, tmp_path / manual, tmp_path / "data")
  assert fx.files_under(tmp_path / "data") == []
