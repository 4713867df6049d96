"""`benchmarks/oracle_conversion.py`: the converted images a perfect converter would give.

The oracle must render the *same* image (person, pose, place, light, noise) in a camera of the
other modality; the diagnosis in docs/notes/synthetic_benchmark.md §4d rests on that.
"""

import importlib.util
import os

import numpy as np
import pytest

from ce2l_jax.data import synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _oracle():
  spec = importlib.util.spec_from_file_location(
      "oracle_conversion", os.path.join(ROOT, "benchmarks", "oracle_conversion.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


@pytest.fixture(scope="module")
def records():
  data = synthetic.generate("tiny", "train")
  rows = np.concatenate([np.flatnonzero(data["modality"] == m)[:5] for m in (0, 1)])
  return [{k: v[i] for k, v in data.items()} for i in rows]


def test_oracle_moves_each_image_to_the_other_modality_and_keeps_everything_else(records):
  oc = _oracle()
  cfg = synthetic.get_config("tiny")
  rows = oc.oracle_rows("tiny", records, seed=0)
  src_cam = np.array([r["camid"] for r in records])
  src_ir = np.isin(src_cam, cfg.infrared_cameras)
  assert src_ir.any() and (~src_ir).any()
  assert np.array_equal(np.isin(rows["camid"], cfg.infrared_cameras), ~src_ir)
  np.testing.assert_array_equal(rows["modality"], (~src_ir).astype(np.int64))
  np.testing.assert_array_equal(rows["pid"], [r["pid"] for r in records])
  # Put back in its own camera, the oracle's row renders the source image itself.
  back = synthetic.render("tiny", dict(rows, camid=src_cam))
  np.testing.assert_array_equal(back, np.stack([r["image"] for r in records]))
  fakes = oc.oracle_images("tiny", records, seed=0)
  assert fakes.shape == back.shape and fakes.dtype == np.uint8
  ir = fakes[~src_ir]  # rendered infrared: one channel repeated
  np.testing.assert_array_equal(ir[..., 0], ir[..., 1])
  assert not np.array_equal(fakes, back)


def test_oracle_refuses_a_file_name_it_cannot_place(records):
  oc = _oracle()
  bad = [dict(records[0], file="someone/else.png")]
  with pytest.raises(ValueError, match="not a synthetic_vireid file name"):
    oc.oracle_rows("tiny", bad, seed=0)


def test_compare_scores_the_oracle_zero_and_an_unchanged_image_by_its_distance(records):
  oc = _oracle()
  perfect = list(oc.oracle_images("tiny", records, seed=3))
  res = oc.compare("tiny", records, perfect, seed=0)  # another camera draw: best-of-cameras finds it
  assert set(res) == {"rgb2ir", "ir2rgb"}
  for d in res.values():
    assert d["n"] == 5 and d["fake_l1"] == 0.0 and d["unchanged_l1"] > 0.02
  same = oc.compare("tiny", records, [r["image"] for r in records], seed=0)
  for name, d in same.items():
    assert d["fake_l1"] == d["unchanged_l1"] == res[name]["unchanged_l1"]
  masks = oc.person_masks("tiny", oc.oracle_rows("tiny", records, seed=0))
  assert 0.05 < masks.mean() < 0.6  # a person, not the whole frame nor nothing
