"""LOMO: Local Maximal Occurrence features (Liao, Hu, Zhu, Li, "Person Re-identification by Local
Maximal Occurrence Representation and Metric Learning", CVPR 2015, §4).

Written from the paper: no kept library (scikit-image, OpenCV, torchreid) ships LOMO.

For an image (H, W) (the paper uses 128×48; the hand-crafted configs use the eval size):
1. **Retinex** (§4.1): multi-scale Retinex on each colour channel,
   R = mean_σ [log(I + 1) − log(G_σ ∗ (I + 1))], σ ∈ {5, 20}, then a per-image linear stretch to
   [0, 1] clipping the lowest and highest 1 % (the "simplest colour balance"). The colour
   restoration step of MSRCR is left out (choice: the paper only states that Retinex gives
   consistent colour; §4.1).
2. **Joint HSV histogram** of the Retinex image: each of H, S, V quantised into 8 bins → one of
   8·8·8 = 512 joint bins per pixel (§4.1).
3. **SILTP** (Scale Invariant Local Ternary Pattern, Liao et al. CVPR 2010) of the grey image of
   the *original* image (SILTP is invariant to intensity scale itself; choice): for a pixel of
   intensity I_c and its N = 4 neighbours I_k at distance R (right, up, left, down),
   s_k = 1 if I_k > (1 + τ) I_c, 2 if I_k < (1 − τ) I_c, else 0; code = Σ_k s_k 3^k ∈ [0, 81).
   τ = 0.3, two scales R ∈ {3, 5} (SILTP^{0.3}_{4,3}, SILTP^{0.3}_{4,5}). Borders replicate the
   edge pixels so every scale has the image's size (the paper's 26,960 dimensions at 128×48
   imply equal-size maps).
4. **Local maximal occurrence** (§4.2): 10×10 windows with step 5; in each window the histogram
   of every pattern (512 HSV bins, 81 + 81 SILTP bins); for every horizontal strip of windows
   (one row of window positions) the maximum of each bin over the windows of the strip.
5. **Three-scale pyramid** (§4.2): the image is average-pooled 2×2 twice (128×48 → 64×24 →
   32×12) and steps 2–4 are repeated on each; the strips of all scales are concatenated.
6. **Log transform and normalisation** (§4.2): f ← log(f + 1), then f / ‖f‖₂ (the whole vector).

At 128×48: (24 + 11 + 5) strips × (512 + 2·81) = 26,960 dimensions, the paper's figure.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage
from skimage import color

HSV_BINS = 8
SILTP_POINTS = 4


def retinex(images: np.ndarray, sigmas: Sequence[float] = (5.0, 20.0),
            clip: float = 0.01) -> np.ndarray:
  """Multi-scale Retinex with a per-image 1 %/99 % linear stretch: (N, H, W, 3) → [0, 1] float32."""
  img = np.asarray(images, np.float32)
  x = np.log1p(img)
  out = np.zeros_like(x)
  for s in sigmas:  # Gaussians truncated at 3σ, edges replicated (choice)
    out += x - np.log1p(ndimage.gaussian_filter(img, sigma=(0, s, s, 0), mode="nearest",
                                                truncate=3.0))
  out /= len(sigmas)
  lo = np.quantile(out.reshape(len(out), -1), clip, axis=1)[:, None, None, None]
  hi = np.quantile(out.reshape(len(out), -1), 1 - clip, axis=1)[:, None, None, None]
  return np.clip((out - lo) / np.maximum(hi - lo, 1e-12), 0.0, 1.0)


def rgb_to_hsv(rgb01: np.ndarray) -> np.ndarray:
  """HSV in [0, 1] (hexcone model, as `colorsys.rgb_to_hsv`), vectorised: (..., 3) → (..., 3)."""
  x = np.asarray(rgb01, np.float32)
  r, g, b = x[..., 0], x[..., 1], x[..., 2]
  v = x.max(axis=-1)
  delta = v - x.min(axis=-1)
  safe = np.where(delta > 0, delta, 1)
  s = np.where(v > 0, delta / np.where(v > 0, v, 1), 0)
  h = np.where(v == r, ((g - b) / safe) % 6, np.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4))
  h = np.where(delta > 0, h / 6, 0)
  return np.stack([h, s, v], axis=-1)


def hsv_codes(rgb01: np.ndarray, bins: int = HSV_BINS) -> np.ndarray:
  """Joint HSV bin of every pixel: (N, H, W, 3) in [0, 1] → (N, H, W) ints in [0, bins³)."""
  q = np.minimum((rgb_to_hsv(rgb01) * bins).astype(np.int64), bins - 1)
  return (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]


def siltp_codes(gray: np.ndarray, radius: int, tau: float = 0.3) -> np.ndarray:
  """SILTP^τ_{4,R} code of every pixel (edges replicated): (N, H, W) → (N, H, W) in [0, 81)."""
  g = np.asarray(gray, np.float32)
  r = int(radius)
  p = np.pad(g, ((0, 0), (r, r), (r, r)), mode="edge")
  h, w = g.shape[1:]
  # Neighbour k at offsets (dy, dx): right, up, left, down; weight 3^k.
  offsets = ((0, r), (-r, 0), (0, -r), (r, 0))
  code = np.zeros(g.shape, np.int64)
  for k, (dy, dx) in enumerate(offsets):
    nb = p[:, r + dy:r + dy + h, r + dx:r + dx + w]
    s = np.where(nb > (1 + tau) * g, 1, np.where(nb < (1 - tau) * g, 2, 0))
    code += s * 3 ** k
  return code


def window_starts(size: int, window: int, step: int) -> np.ndarray:
  """Start positions of the sliding windows along one axis (windows fully inside)."""
  if size < window:
    return np.zeros(0, np.int64)
  return np.arange(0, size - window + 1, step)


def max_occurrence(codes: np.ndarray, num_bins: int, window: int = 10, step: int = 5) -> np.ndarray:
  """Local maximal occurrence: (N, H, W) codes → (N, strips, num_bins).

  Histogram of the codes in every window×window window (stride `step`), then for each row of
  windows (a horizontal strip) the maximum of every bin over its windows.
  """
  n, h, w = codes.shape
  rows, cols = window_starts(h, window, step), window_starts(w, window, step)
  if rows.size == 0 or cols.size == 0:
    return np.zeros((n, 0, num_bins), np.float64)
  dy, dx = np.meshgrid(np.arange(window), np.arange(window), indexing="ij")
  # Pixel (flat) indices of every window: (rows, cols, window²).
  pix = ((rows[:, None, None] + dy.reshape(1, 1, -1)) * w
         + cols[None, :, None] + dx.reshape(1, 1, -1))
  nwin = rows.size * cols.size
  flat = codes.reshape(n, -1)[:, pix.reshape(nwin, -1)]               # (n, nwin, window²)
  offset = (np.arange(n)[:, None, None] * nwin + np.arange(nwin)[None, :, None]) * num_bins
  hist = np.bincount((flat + offset).ravel(), minlength=n * nwin * num_bins)
  hist = hist.reshape(n, rows.size, cols.size, num_bins)
  return hist.max(axis=2).astype(np.float64)


def average_pool2(x: np.ndarray) -> np.ndarray:
  """2×2 average pooling of (N, H, W, ...) (odd trailing rows/columns dropped)."""
  n, h, w = x.shape[:3]
  x = x[:, :h // 2 * 2, :w // 2 * 2]
  return x.reshape(n, h // 2, 2, w // 2, 2, *x.shape[3:]).mean(axis=(2, 4))


def lomo(images: np.ndarray, *, levels: int = 3, window: int = 10, step: int = 5,
         tau: float = 0.3, radii: Sequence[int] = (3, 5), use_retinex: bool = True,
         chunk: int = 64) -> np.ndarray:
  """LOMO descriptors of uint8 images (N, H, W, 3): (N, D) float32, rows L2-normalised."""
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"lomo: images must be (N, H, W, 3), got shape {images.shape}")
  out = []
  for start in range(0, len(images), chunk):
    batch = images[start:start + chunk]
    rgb = retinex(batch) if use_retinex else batch.astype(np.float32) / 255.0
    gray = color.rgb2gray(batch.astype(np.float32) / 255.0)
    parts = []
    for level in range(levels):
      if level:
        rgb, gray = average_pool2(rgb), average_pool2(gray)
      parts.append(max_occurrence(hsv_codes(rgb), HSV_BINS ** 3, window, step))
      for r in radii:
        parts.append(max_occurrence(siltp_codes(gray, r, tau), 3 ** SILTP_POINTS, window, step))
    # Per scale: [HSV strips | SILTP R=3 strips | SILTP R=5 strips], flattened and concatenated.
    f = np.concatenate([p.reshape(len(batch), -1) for p in parts], axis=1)
    f = np.log1p(f)
    f /= np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    out.append(f.astype(np.float32))
  return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
