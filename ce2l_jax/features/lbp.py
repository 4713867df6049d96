"""MLBP: multi-scale block local binary pattern histograms over a grid of cells.

Which MLBP. The VI-ReID tables that carry an "MLBP" row (Ye et al., AAAI 2018, "Hierarchical
discriminative learning for visible thermal person re-identification", and the tables copied
from it, CE²L's included) cite Liao, Zhu, Lei, Zhang, Li, "Learning Multi-scale Block Local
Binary Patterns for Face Recognition" (ICB 2007): **multi-scale block LBP (MB-LBP)**, not
multi-radius LBP. (From the papers' reference lists as recalled; the search tool did not return
the table's page, see docs/notes/paper_table.md.) MB-LBP at scale s compares the *mean* of
each of the 8 neighbouring s×s blocks of a 3s×3s patch with the mean of its central block:
bit k is 1 when neighbour k ≥ centre. s = 1 is the ordinary 3×3 LBP.

Definition used here (choices marked):
- grey image: ITU-R 601 luminance (`skimage.color.rgb2gray`);
- codes at every patch position, bit order and ≥ as `skimage.feature.multiblock_lbp` (bit 0 the
  left block, then counter-clockwise: bottom-left, bottom, bottom-right, right, top-right, top,
  top-left), so the codes equal scikit-image's (the tests check it); computed here with an
  integral image over all positions at once (skimage's function takes one position per call);
- scales s ∈ {1, 2, 3} (choice; the ICB paper uses several, learns "statistically effective"
  patterns by boosting; we use the fixed **uniform (u2) mapping** instead, choice): the 58
  patterns with at most two circular 0/1 transitions get a bin each, all others share one —
  59 bins;
- cells: the code map of each scale is cut into a `grid` of gy × gx cells (default 8 × 4, choice),
  a 59-bin histogram per cell, L1-normalised (cells differ in size across scales);
- the descriptor: all cells of all scales concatenated; (N, scales·gy·gx·59).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from skimage import color

# (dy, dx) of the neighbouring block that sets bit k, in blocks (skimage's order).
NEIGHBOURS = ((0, -1), (1, -1), (1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1))


def _transitions(code: int) -> int:
  bits = [(code >> k) & 1 for k in range(8)]
  return sum(bits[k] != bits[(k + 1) % 8] for k in range(8))


def uniform_mapping() -> np.ndarray:
  """(256,) code → bin: the 58 uniform patterns (≤ 2 circular transitions) in increasing code
  order get bins 0..57, every other code bin 58."""
  table = np.full(256, 58, np.int64)
  uniform = [c for c in range(256) if _transitions(c) <= 2]
  table[uniform] = np.arange(len(uniform))
  return table


UNIFORM = uniform_mapping()
NUM_BINS = 59


def mb_lbp_codes(gray: np.ndarray, scale: int) -> np.ndarray:
  """MB-LBP codes of every 3s×3s patch: (N, H, W) → (N, H − 3s + 1, W − 3s + 1) in [0, 256).

  Entry (i, j) is the code of the patch whose top-left pixel is (i, j) (as
  `multiblock_lbp(integral, i, j, s, s)`).
  """
  g = np.asarray(gray, np.float64)
  n, h, w = g.shape
  s = int(scale)
  if h < 3 * s or w < 3 * s:
    raise ValueError(f"mb_lbp_codes: image {h}×{w} is smaller than a 3·{s} patch")
  ii = np.zeros((n, h + 1, w + 1))
  ii[:, 1:, 1:] = g.cumsum(1).cumsum(2)
  # Sum of the s×s block with top-left (i, j), for all i ≤ h − s, j ≤ w − s.
  blocks = ii[:, s:, s:] - ii[:, :-s, s:] - ii[:, s:, :-s] + ii[:, :-s, :-s]
  oh, ow = h - 3 * s + 1, w - 3 * s + 1
  centre = blocks[:, s:s + oh, s:s + ow]
  code = np.zeros((n, oh, ow), np.int64)
  for k, (dy, dx) in enumerate(NEIGHBOURS):
    nb = blocks[:, s + dy * s:s + dy * s + oh, s + dx * s:s + dx * s + ow]
    code |= (nb >= centre).astype(np.int64) << k
  return code


def cell_edges(size: int, cells: int) -> np.ndarray:
  """Boundaries of `cells` near-equal cells along an axis of `size` (as np.array_split)."""
  return np.linspace(0, size, cells + 1).round().astype(np.int64)


def cell_histograms(bins: np.ndarray, grid: Sequence[int], num_bins: int = NUM_BINS) -> np.ndarray:
  """(N, h, w) bin indices → (N, gy·gx·num_bins): L1-normalised histogram per grid cell."""
  n, h, w = bins.shape
  gy, gx = (int(g) for g in grid)
  ey, ex = cell_edges(h, gy), cell_edges(w, gx)
  cell_y = np.searchsorted(ey, np.arange(h), side="right") - 1
  cell_x = np.searchsorted(ex, np.arange(w), side="right") - 1
  cell = (cell_y[:, None] * gx + cell_x[None, :]).ravel()               # (h·w,)
  idx = (np.arange(n)[:, None] * (gy * gx) + cell[None, :]) * num_bins + bins.reshape(n, -1)
  hist = np.bincount(idx.ravel(), minlength=n * gy * gx * num_bins).reshape(n, gy * gx, num_bins)
  hist = hist / np.maximum(hist.sum(axis=2, keepdims=True), 1)
  return hist.reshape(n, -1)


def mlbp(images: np.ndarray, *, scales: Sequence[int] = (1, 2, 3),
         grid: Sequence[int] = (8, 4)) -> np.ndarray:
  """MLBP descriptors of uint8 images (N, H, W, 3): (N, len(scales)·gy·gx·59) float32."""
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"mlbp: images must be (N, H, W, 3), got shape {images.shape}")
  gray = color.rgb2gray(images.astype(np.float64) / 255.0)
  parts = [cell_histograms(UNIFORM[mb_lbp_codes(gray, s)], grid) for s in scales]
  return np.concatenate(parts, axis=1).astype(np.float32)
