"""Augmentations: shapes, dtypes, ranges, determinism under a seed, and the normalisations."""

import io

import numpy as np
import pytest
from PIL import Image

from ce2l_jax.data import augment as A
from ce2l_jax.data.pipeline import default_input_config
from configs import base as base_config


def input_config(preset):
  """'paper': configs/base.py's input section; 'modern': the library defaults (AGW)."""
  return base_config.get_config().input if preset == "paper" else default_input_config()


def _img(h=40, w=20, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png(x):
  b = io.BytesIO()
  Image.fromarray(x).save(b, format="PNG")
  return b.getvalue()


@pytest.mark.parametrize("preset,out", [("paper", (227, 227)), ("modern", (288, 144))])
def test_presets_shapes_dtypes(preset, out):
  cfg = input_config(preset)
  if preset == "modern":
    cfg.channel_aug.mode = "adap_gray"
  t = A.TrainAugment.from_config(cfg)
  assert t.output_size == out == tuple(cfg.image_size)
  for seed in range(3):
    for slot in (0, 1):
      y = t(_img(seed=seed), A.example_rng(seed, A.STREAM_TRAIN, 7), slot=slot)
      assert y.shape == out + (3,) and y.dtype == np.uint8 and y.flags.c_contiguous
  e = A.EvalAugment(tuple(cfg.image_size))(_png(_img()))
  assert e.shape == tuple(cfg.image_size) + (3,) and e.dtype == np.uint8


def test_deterministic_under_seed():
  cfg = default_input_config()
  cfg.resize, cfg.crop, cfg.image_size, cfg.pad = (32, 16), (32, 16), (32, 16), 4
  cfg.random_erasing.prob = 1.0
  cfg.channel_aug.mode = "exchange"
  t = A.TrainAugment.from_config(cfg)
  x = _png(_img())
  a = t(x, A.example_rng(3, A.STREAM_TRAIN, 11))
  np.testing.assert_array_equal(a, t(x, A.example_rng(3, A.STREAM_TRAIN, 11)))
  outs = {t(x, A.example_rng(3, A.STREAM_TRAIN, p)).tobytes() for p in range(8)}
  assert len(outs) > 4  # positions get different crops/flips/erasures


def test_pad_crop_matches_padded_reference():
  x = _img(12, 8)
  ref = np.pad(x, ((3, 3), (3, 3), (0, 0)))
  for seed in range(20):
    r1, r2 = np.random.default_rng(seed), np.random.default_rng(seed)
    y = A.pad_crop(x, r1, (12, 8), pad=3)
    oy, ox = int(r2.integers(0, 7)), int(r2.integers(0, 7))
    np.testing.assert_array_equal(y, ref[oy:oy + 12, ox:ox + 8])
  with pytest.raises(ValueError, match="input.crop"):
    A.pad_crop(x, np.random.default_rng(0), (20, 8), pad=3)


@pytest.mark.parametrize("size,crop,pad", [((64, 64), (57, 57), 0), ((90, 38), (90, 38), 4),
                                           ((45, 19), (40, 15), 2), ((36, 18), (36, 18), 5),
                                           ((30, 40), (20, 30), 3), ((45, 19), (45, 19), 3)])
def test_resize_crop_equals_resize_then_crop(size, crop, pad):
  """The fused window resample (enlarging) and the fallback (shrinking) match the reference."""
  img = A.decode(_png(_img(45, 19, seed=1)))
  full = A.resize(img, size)
  for seed in range(15):
    fast = A.resize_crop(img, np.random.default_rng(seed), size, crop, pad)
    ref = A.pad_crop(full, np.random.default_rng(seed), crop, pad)
    assert fast.shape == crop + (3,) and fast.dtype == np.uint8
    np.testing.assert_array_equal(fast, ref)


def test_flip_and_erasing():
  x = _img(30, 20)
  flips = [A.random_flip(x, np.random.default_rng(s)) for s in range(10)]
  assert any(np.array_equal(f, x[:, ::-1]) for f in flips) and any(f is x for f in flips)
  assert A.random_erasing(x, np.random.default_rng(0), prob=0.0) is x
  fill = np.array(A.AGW_ERASE_FILL, np.uint8)
  assert tuple(fill) == (152, 144, 129)
  for s in range(10):
    y = A.random_erasing(x, np.random.default_rng(s), prob=1.0)
    changed = (y != x).any(-1)
    rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
    assert changed.sum() > 0 and y.dtype == np.uint8
    box = y[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    assert (box == fill).all()                                  # one filled rectangle
    assert 0.02 * 600 * 0.5 <= box.shape[0] * box.shape[1] <= 0.4 * 600 * 1.5
    np.testing.assert_array_equal(x, _img(30, 20))              # input untouched


def test_channel_augment():
  x = _img(8, 8)
  for s in range(12):
    y = A.channel_augment(x, np.random.default_rng(s), "exchange", prob=1.0)
    assert any(np.array_equal(y, np.repeat(x[..., c:c + 1], 3, -1)) for c in range(3))
  seen = set()
  for s in range(60):
    y = A.channel_augment(x, np.random.default_rng(s), "adap_gray", prob=0.5)
    assert (y[..., 0] == y[..., 1]).all() or y is x
    seen.add("same" if y is x else next((c for c in range(3) if np.array_equal(y[..., 0], x[..., c])), "gray"))
  assert seen == {0, 1, 2, "gray", "same"}
  g = A.channel_augment(x, np.random.default_rng(0), "gray", prob=1.0)
  np.testing.assert_allclose(g[..., 0], x.astype(float) @ [0.299, 0.587, 0.114], atol=0.51)
  assert A.channel_augment(x, np.random.default_rng(0), "none") is x
  with pytest.raises(ValueError, match="channel_aug.mode"):
    A.channel_augment(x, np.random.default_rng(0), "swap")


def test_decode_bytes_equals_array():
  x = _img(10, 6)
  np.testing.assert_array_equal(np.asarray(A.decode(_png(x))), x)
  g = np.asarray(A.decode(x[..., :1]))
  assert g.shape == (10, 6, 3)
  with pytest.raises(TypeError, match="uint8"):
    A.decode(x.astype(np.float32))


def test_normalisations_match_numpy_twins():
  x = np.array([[0, 128, 255], [10, 20, 30]], np.uint8)
  n = np.asarray(A.normalize_imagenet(x))
  assert n.dtype == np.float32
  np.testing.assert_allclose(n, A.normalize_imagenet_np(x), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(n[0], (np.array([0, 128, 255]) / 255 - A.IMAGENET_MEAN) / A.IMAGENET_STD, atol=1e-5)
  u = np.asarray(A.to_unit_range(np.array([0, 255], np.uint8)))
  np.testing.assert_allclose(u, [-1.0, 1.0])
  np.testing.assert_allclose(u, A.to_unit_range_np(np.array([0, 255], np.uint8)))
