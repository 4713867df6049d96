"""RegDB builder on a tiny folder in the released layout (tests/fixtures_real.py)."""

import collections

import numpy as np
import pytest

from tests import fixtures_real as fx
from tfds_builders.manual_check import ManualDirError
from tfds_builders.regdb.regdb_dataset_builder import Regdb


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """The fixture folder and trials 1 and 2 built from it."""
  tmp = tmp_path_factory.mktemp("regdb")
  fixture = fx.make_regdb(tmp / "manual")
  for trial in ("trial1", "trial2"):
    fx.build(Regdb, fixture.manual_dir, tmp / "data", config=trial)
  return fixture, tmp / "data"


@pytest.mark.parametrize("split", ["train", "test"])
def test_trial1_records(built, split):
  fixture, data_dir = built
  records = fx.read_split("regdb/trial1", data_dir, split)
  expected = fixture.expected[split]
  assert collections.Counter(int(r["modality"]) for r in records) == {
      0: expected["visible"], 1: expected["infrared"]}
  assert sorted({int(r["pid"]) for r in records}) == expected["pids"]
  for r in records:
    file, pid, camid = r["file"].decode(), int(r["pid"]), int(r["camid"])
    thermal = int(r["modality"]) == 1
    assert camid == (2 if thermal else 1)
    assert file.startswith(f"{'Thermal' if thermal else 'Visible'}/{pid}/")
    assert (fixture.root / file).is_file()
    image = r["image"]
    assert image.dtype == np.uint8 and image.shape == (12, 6, 3)
    # PNG is lossless: the fixture's exact pixels, grayscale repeated for thermal.
    value = 40 * pid
    want = [value] * 3 if thermal else [value, 255 - value, 40]
    np.testing.assert_array_equal(image, np.broadcast_to(np.array(want, np.uint8), image.shape))


def test_trials_are_configs_with_their_own_split(built):
  fixture, data_dir = built
  for trial in (1, 2):
    pids = {int(r["pid"]) for r in fx.read_split(f"regdb/trial{trial}", data_dir, "train")}
    assert pids == set(fx.REGDB_TRAIN[trial])  # Trial 2's index uses `.\Visible\1\...` paths.
  assert fx.read_split("regdb", data_dir, "test")[0]["pid"] in fixture.expected["test"]["pids"]


def _replace_line(path, n, text):
  lines = path.read_text().splitlines()
  lines[n] = text
  path.write_text("\n".join(lines) + "\n")


BAD_INPUTS = [  # (case, how to break the fixture, --manual_dir, expected message)
    ("missing", None, "nothere", r"manual dir .*nothere does not exist.*Dongguk.*Expected tree"),
    ("empty", None, "empty", r"manual dir .*empty is empty.*Dongguk University"),
    ("no_idx_file", lambda r: (r / "idx" / "test_thermal_1.txt").unlink(), "manual",
     r"RegDB/idx/test_thermal_1.txt is missing; expected one line per image"),
    ("no_thermal_dir", lambda r: (r / "Thermal").rename(r / "T"), "manual",
     r"RegDB/Thermal is missing; expected the folder of thermal images"),
    ("missing_image", lambda r: (r / "Visible" / "2" / fx.regdb_name(2, 3, False)).unlink(),
     "manual", r"train_visible_1.txt: 1 bad line.*line 3: .*Visible/2/female_front_v_00002_3.bmp "
     r"does not exist"),
    ("bad_line", lambda r: _replace_line(r / "idx" / "test_thermal_1.txt", 0,
                                         "Visible/1/male_front_v_00001_1.bmp 0"),
     "manual", r"test_thermal_1.txt: 1 bad line.*line 1: 'Visible/1/.*' is not 'Thermal/<identity"),
    ("non_numeric_identity", lambda r: _replace_line(r / "idx" / "train_visible_1.txt", 0,
                                                     "Visible/female/front_1.bmp 0"),
     "manual", r"line 1: 'Visible/female/front_1.bmp 0' is not 'Visible/<identity number>"),
    ("listed_twice", lambda r: _replace_line(r / "idx" / "train_visible_1.txt", 1,
                                             f"Visible/2/{fx.regdb_name(2, 1, False)} 0"),
     "manual", r"line 2: Visible/2/female_front_v_00002_1.bmp is listed twice"),
    ("overlap", lambda r: _replace_line(r / "idx" / "test_visible_1.txt", 0,
                                        f"Visible/2/{fx.regdb_name(2, 1, False)} 0"),
     "manual", r"identities \[2\] \(1 in all\) are in both train .* and test"),
    ("corrupt_image", lambda r: (r / "Thermal" / "4" / fx.regdb_name(4, 2, True)).write_bytes(
        b"BM" + bytes(30)), "manual", r"1 unreadable image.*Thermal/4/female_front_t_00004_2.bmp"),
]


@pytest.mark.parametrize("break_fn,manual,message", [c[1:] for c in BAD_INPUTS],
                         ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_reported_before_anything_is_written(tmp_path, break_fn, manual, message):
  fixture = fx.make_regdb(tmp_path / "manual", trials=(1,))
  (tmp_path / "empty").mkdir()
  if break_fn:
    break_fn(fixture.root)
  with pytest.raises(ManualDirError, match=f"(?s){message}"):
    fx.build(Regdb, tmp_path / manual, tmp_path / "data", config="trial1")
  assert fx.files_under(tmp_path / "data") == []
