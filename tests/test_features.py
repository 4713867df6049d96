"""Hand-crafted descriptors against slow loop references of their definitions (tiny images)."""

import colorsys

import numpy as np
import pytest
from skimage import color
from skimage import feature as skfeature
from skimage.transform import integral_image

from ce2l_jax import features
from ce2l_jax.features import lbp, lomo


def _rng(seed=0):
  return np.random.default_rng(seed)


# ---------------------------------------------------------------------------------- LOMO


def _siltp_loop(gray, r, tau):
  h, w = gray.shape
  out = np.zeros((h, w), np.int64)
  for i in range(h):
    for j in range(w):
      c = gray[i, j]
      code = 0
      for k, (dy, dx) in enumerate(((0, r), (-r, 0), (0, -r), (r, 0))):
        nb = gray[min(max(i + dy, 0), h - 1), min(max(j + dx, 0), w - 1)]
        s = 1 if nb > (1 + tau) * c else (2 if nb < (1 - tau) * c else 0)
        code += s * 3 ** k
      out[i, j] = code
  return out


def test_siltp_matches_loop_definition():
  gray = _rng().uniform(0.05, 1, (2, 9, 7)).astype(np.float32)
  gray[0, 2:5, 1:4] = 0.5  # flat patch: neighbours within ±τ → code 0
  for r in (1, 3):
    got = lomo.siltp_codes(gray, r, tau=0.3)
    for n in range(2):
      np.testing.assert_array_equal(got[n], _siltp_loop(gray[n], r, 0.3))
  assert lomo.siltp_codes(gray, 1)[0, 3, 2] == 0
  assert lomo.siltp_codes(gray, 3).max() < 81


def _max_occurrence_loop(codes, bins, window, step):
  h, w = codes.shape
  rows = list(range(0, h - window + 1, step))
  cols = list(range(0, w - window + 1, step))
  out = np.zeros((len(rows), bins))
  for a, i in enumerate(rows):
    for j in cols:
      hist = np.zeros(bins)
      for y in range(i, i + window):
        for x in range(j, j + window):
          hist[codes[y, x]] += 1
      out[a] = np.maximum(out[a], hist)
  return out


def test_max_occurrence_matches_loop_definition():
  codes = _rng(1).integers(0, 7, (3, 23, 17))
  got = lomo.max_occurrence(codes, 7, window=10, step=5)
  assert got.shape == (3, 3, 7)
  for n in range(3):
    np.testing.assert_array_equal(got[n], _max_occurrence_loop(codes[n], 7, 10, 5))
  # A pattern that fills one window of a strip: the strip's maximum is the window's count.
  codes = np.zeros((1, 10, 20), np.int64)
  codes[0, :, 10:] = 3
  assert lomo.max_occurrence(codes, 4, 10, 5)[0, 0, 3] == 100


def test_hsv_codes_match_colorsys():
  rgb = _rng(2).uniform(0, 1, (1, 5, 6, 3))
  got = lomo.hsv_codes(rgb)
  for i in range(5):
    for j in range(6):
      h, s, v = colorsys.rgb_to_hsv(*rgb[0, i, j])
      q = [min(int(t * 8), 7) for t in (h, s, v)]
      assert got[0, i, j] == q[0] * 64 + q[1] * 8 + q[2]


def _lomo_loop(image, window, step, levels, radii, tau):
  """LOMO without Retinex, from its definition with loops (pyramid by explicit 2×2 means)."""
  rgb = image.astype(np.float64) / 255.0
  gray = color.rgb2gray(image.astype(np.float64) / 255.0)
  feats = []
  for level in range(levels):
    if level:
      h, w = gray.shape
      rgb = np.array([[rgb[2 * i:2 * i + 2, 2 * j:2 * j + 2].mean(axis=(0, 1))
                       for j in range(w // 2)] for i in range(h // 2)])
      gray = np.array([[gray[2 * i:2 * i + 2, 2 * j:2 * j + 2].mean() for j in range(w // 2)]
                       for i in range(h // 2)])
    hsv_code = np.zeros(gray.shape, np.int64)
    for i in range(gray.shape[0]):
      for j in range(gray.shape[1]):
        q = [min(int(t * 8), 7) for t in colorsys.rgb_to_hsv(*rgb[i, j])]
        hsv_code[i, j] = q[0] * 64 + q[1] * 8 + q[2]
    feats.append(_max_occurrence_loop(hsv_code, 512, window, step).ravel())
    for r in radii:
      feats.append(_max_occurrence_loop(_siltp_loop(gray, r, tau), 81, window, step).ravel())
  f = np.log(np.concatenate(feats) + 1)
  return f / np.linalg.norm(f)


def test_lomo_matches_loop_definition():
  image = _rng(3).integers(0, 256, (1, 24, 16, 3)).astype(np.uint8)
  image[0, :12] //= 4  # a dark half: SILTP and HSV differ across strips
  got = lomo.lomo(image, window=6, step=3, levels=2, use_retinex=False)
  want = _lomo_loop(image[0], 6, 3, 2, (3, 5), 0.3)
  np.testing.assert_allclose(got[0], want, rtol=2e-5, atol=1e-6)


def test_lomo_paper_dimension_and_retinex():
  images = _rng(4).integers(0, 256, (2, 128, 48, 3)).astype(np.uint8)
  f = lomo.lomo(images)
  assert f.shape == (2, 26960)  # the paper's figure at 128×48
  np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1, rtol=1e-5)
  r = lomo.retinex(images[:1])
  assert r.shape == (1, 128, 48, 3) and 0 <= r.min() and r.max() <= 1
  # Retinex removes a global illumination gain (bright enough image: the +1 is negligible).
  base = _rng(5).integers(60, 120, (1, 32, 16, 3)).astype(np.uint8)
  assert np.abs(lomo.retinex(base) - lomo.retinex(base * 2)).mean() < 0.02


# ---------------------------------------------------------------------------------- MLBP


def test_mb_lbp_codes_equal_scikit_image():
  gray = _rng(6).integers(0, 5, (2, 13, 11)).astype(np.float64)  # ties exercise ≥
  for s in (1, 2, 3):
    got = lbp.mb_lbp_codes(gray, s)
    assert got.shape == (2, 13 - 3 * s + 1, 11 - 3 * s + 1)
    for n in range(2):
      ii = integral_image(gray[n])
      want = [[skfeature.multiblock_lbp(ii, i, j, s, s) for j in range(got.shape[2])]
              for i in range(got.shape[1])]
      np.testing.assert_array_equal(got[n], want)


def test_uniform_mapping():
  table = lbp.uniform_mapping()
  assert table.max() == 58 and len(np.unique(table)) == lbp.NUM_BINS
  assert table[0] == 0 and table[255] == 57             # all-0 and all-1 are uniform
  assert table[0b01010101] == 58                        # 8 transitions
  assert table[0b00011100] != 58 and table[0b10000001] != 58  # one run, also circular


def test_cell_histograms_match_loop():
  bins = _rng(7).integers(0, 59, (2, 10, 7))
  got = lbp.cell_histograms(bins, (3, 2))
  ey, ex = lbp.cell_edges(10, 3), lbp.cell_edges(7, 2)
  for n in range(2):
    want = []
    for cy in range(3):
      for cx in range(2):
        cell = bins[n, ey[cy]:ey[cy + 1], ex[cx]:ex[cx + 1]].ravel()
        want.append(np.bincount(cell, minlength=59) / cell.size)
    np.testing.assert_allclose(got[n], np.concatenate(want))


def test_mlbp_descriptor():
  images = _rng(8).integers(0, 256, (3, 32, 16, 3)).astype(np.uint8)
  f = lbp.mlbp(images, scales=(1, 2), grid=(4, 2))
  assert f.shape == (3, 2 * 4 * 2 * 59)
  np.testing.assert_allclose(f.reshape(3, -1, 59).sum(-1), 1, rtol=1e-6)
  gray = color.rgb2gray(images[:1].astype(np.float64) / 255)
  first = lbp.cell_histograms(lbp.UNIFORM[lbp.mb_lbp_codes(gray, 1)], (4, 2))
  np.testing.assert_allclose(f[0, :first.shape[1]], first[0], rtol=1e-6)


# ---------------------------------------------------------------------------------- HOG


def test_hog_equals_scikit_image_and_a_known_edge():
  images = _rng(9).integers(0, 256, (2, 32, 16, 3)).astype(np.uint8)
  f = features.extract("hog", images)
  want = skfeature.hog(images[1] / 255.0, orientations=9, pixels_per_cell=(8, 8),
                       cells_per_block=(2, 2), block_norm="L2-Hys", channel_axis=-1)
  np.testing.assert_allclose(f[1], want, rtol=1e-5, atol=1e-6)
  assert f.shape == (2, 3 * 1 * 36)
  # A vertical step edge: every gradient is horizontal, so only orientation bin 0 (0°) is lit.
  edge = np.zeros((1, 32, 16, 3), np.uint8)
  edge[0, :, 8:] = 200
  h = features.extract("hog", edge).reshape(-1, 9)
  assert h[:, 0].sum() > 0 and np.allclose(h[:, 1:], 0)


def test_extract_unknown_feature_names_the_known_ones():
  with pytest.raises(ValueError, match="did you mean 'lomo'"):
    features.extract("lomoo", np.zeros((1, 8, 8, 3), np.uint8))
