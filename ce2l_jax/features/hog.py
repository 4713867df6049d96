"""HOG: histograms of oriented gradients (Dalal & Triggs, CVPR 2005), from scikit-image.

`skimage.feature.hog` with the paper's default detector settings (§6): 9 unsigned orientation
bins over 0–180°, 8×8-pixel cells, blocks of 2×2 cells with stride one cell, L2-Hys block
normalisation (clip at 0.2), no gamma compression; for colour images the gradient of the
channel with the largest magnitude at each pixel (§6.1; infrared images are grey repeated in
three channels, so theirs is the grey gradient). At 128×64: 15 × 7 blocks × 36 = 3,780 dims.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from skimage import feature


def hog(images: np.ndarray, *, orientations: int = 9, cell: Sequence[int] = (8, 8),
        block: Sequence[int] = (2, 2), block_norm: str = "L2-Hys") -> np.ndarray:
  """HOG descriptors of uint8 images (N, H, W, 3): (N, D) float32."""
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"hog: images must be (N, H, W, 3), got shape {images.shape}")
  out = [feature.hog(im.astype(np.float64) / 255.0, orientations=int(orientations),
                     pixels_per_cell=tuple(cell), cells_per_block=tuple(block),
                     block_norm=block_norm, feature_vector=True, channel_axis=-1)
         for im in images]
  return np.stack(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)
