"""`python -m ce2l_jax.tfds_build`: flags of `tfds build`, exit code 2 on bad input, safe reruns."""

import os
import pathlib
import subprocess
import sys

import pytest
import tensorflow_datasets as tfds

from ce2l_jax import tfds_build
from tests import fixtures_real as fx
from tfds_builders import manual_check
from tfds_builders.sysu_mm01.sysu_mm01_dataset_builder import SysuMm01

REPO = pathlib.Path(__file__).resolve().parents[1]


def _main(*argv):
  """Runs the command in this process; its exit code (0 when it returns)."""
  try:
    tfds_build.main(tfds_build.parse_flags(["ce2l-tfds-build", *map(str, argv)]))
  except SystemExit as e:
    return e.code
  return 0


def test_command_builds_a_trial_as_a_subprocess(tmp_path):
  fixture = fx.make_regdb(tmp_path / "manual", trials=(3,))
  done = subprocess.run(
      [sys.executable, "-m", "ce2l_jax.tfds_build", "tfds_builders/regdb", "--config=trial3",
       f"--manual_dir={fixture.manual_dir}", f"--data_dir={tmp_path / 'data'}"],
      cwd=REPO, capture_output=True, text=True, timeout=120, env=os.environ)
  assert done.returncode == 0, done.stderr[-2000:]
  assert sorted(p.name for p in (tmp_path / "data" / "regdb").iterdir()) == [".config", "trial3"]
  source = tfds.data_source("regdb/trial3", data_dir=str(tmp_path / "data"), split="train")
  assert len(source) == 2 * len(fx.REGDB_TRAIN[1]) * fx.REGDB_PER_ID
  shards = (tmp_path / "data" / "regdb" / "trial3" / "1.0.0").glob("regdb-*.array_record-*")
  assert len(list(shards)) == 2  # train and test, array_record by default.


def test_bad_manual_dir_is_a_short_error_and_exit_2(tmp_path, capsys):
  code = _main(REPO / "tfds_builders" / "sysu_mm01", f"--manual_dir={tmp_path / 'nothere'}",
               f"--data_dir={tmp_path / 'data'}")
  err = capsys.readouterr().err
  assert code == 2
  assert f"ce2l-tfds-build: error: manual dir {tmp_path / 'nothere'} does not exist" in err
  assert "Expected tree" in err and "Traceback" not in err
  assert fx.files_under(tmp_path / "data") == []


def test_unknown_config_and_missing_builder_exit_2(tmp_path, capsys):
  assert _main(REPO / "tfds_builders" / "regdb", "--config=trial11",
               f"--data_dir={tmp_path}") == 2
  assert "regdb has no config 'trial11'; expected one of trial1, trial2" in capsys.readouterr().err
  assert _main(tmp_path / "no_builder", f"--data_dir={tmp_path}") == 2
  assert "no_builder does not exist; expected a builder folder" in capsys.readouterr().err


def test_overwrite_with_bad_input_keeps_the_old_dataset(tmp_path, capsys):
  fixture = fx.make_sysu(tmp_path / "manual")
  args = [REPO / "tfds_builders" / "sysu_mm01", f"--manual_dir={fixture.manual_dir}",
          f"--data_dir={tmp_path / 'data'}"]
  assert _main(*args) == 0
  (fixture.root / "cam3" / "0001" / "0001.jpg").write_bytes(b"\xff\xd8broken")
  assert _main(*args, "--overwrite") == 2
  assert "1 unreadable image(s)" in capsys.readouterr().err
  n_test = sum(fixture.expected["test"][m] for m in ("visible", "infrared"))
  assert len(tfds.data_source("sysu_mm01", data_dir=str(tmp_path / "data"), split="test")) == n_test


def test_interrupted_build_leaves_nothing_readable_and_a_rerun_succeeds(tmp_path, monkeypatch):
  fixture = fx.make_sysu(tmp_path / "manual")
  data_dir = tmp_path / "data"
  # A build killed by a signal leaves TFDS's temporary folder behind: readers ignore it.
  stale = data_dir / "sysu_mm01" / "incomplete.KILLED_1.0.0"
  stale.mkdir(parents=True)
  (stale / "sysu_mm01-train.array_record-00000-of-00001").write_bytes(b"half")
  with pytest.raises(KeyError, match="has not been generated"):
    tfds.data_source("sysu_mm01", data_dir=str(data_dir), split="train", download=False)
  # A build that fails while writing removes its own temporary folder.
  calls = []
  real = manual_check.feature_image

  def failing(*args):
    calls.append(1)
    if len(calls) == 3:
      raise RuntimeError("disk full")
    return real(*args)

  monkeypatch.setattr(manual_check, "feature_image", failing)
  with pytest.raises(RuntimeError, match="disk full"):
    fx.build(SysuMm01, fixture.manual_dir, data_dir)
  assert sorted(p.name for p in (data_dir / "sysu_mm01").iterdir()) == [stale.name]
  monkeypatch.setattr(manual_check, "feature_image", real)
  fx.build(SysuMm01, fixture.manual_dir, data_dir)  # The rerun: same call, it just works.
  train = fixture.expected["train"]
  assert len(fx.read_split("sysu_mm01", data_dir, "train")) == train["visible"] + train["infrared"]
