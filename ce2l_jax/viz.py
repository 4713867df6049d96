"""Figures as PNG files, with PIL and numpy only (no matplotlib).

`save_grid(rows, path)` is the general piece: a list of rows, each a list of images (uint8 or
float in [-1, 1] / [0, 1], HxW or HxWx{1,3}, any sizes), tiled row by row on a white canvas with
optional row and column labels. Stages build their figures on it: the CycleGAN sample sheet
(`cyclegan_sample_rows`: real → fake → reconstructed, both directions), and later re-ID ranking
examples (query | top-k gallery with coloured borders via `border`).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

WHITE = (255, 255, 255)
GREEN = (0, 170, 0)
RED = (210, 0, 0)


def to_uint8(image: np.ndarray) -> np.ndarray:
  """HxWx3 uint8 from uint8, from float in [-1, 1] (if any value < 0) or [0, 1], or from HxW / HxWx1."""
  x = np.asarray(image)
  if x.ndim == 2:
    x = x[..., None]
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  if x.dtype == np.uint8:
    return x
  x = x.astype(np.float32)
  if x.min() < 0:
    x = (x + 1.0) / 2.0
  return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def border(image: np.ndarray, color: tuple[int, int, int], width: int = 2) -> np.ndarray:
  """The image with a coloured frame drawn inside its edge (e.g. green = correct match)."""
  x = to_uint8(image).copy()
  x[:width], x[-width:], x[:, :width], x[:, -width:] = color, color, color, color
  return x


def grid_image(rows: Sequence[Sequence[np.ndarray | None]], pad: int = 2,
               row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None,
               label_width: int = 0) -> np.ndarray:
  """Tiles `rows` into one uint8 HxWx3 array; `None` leaves a cell blank.

  Every cell of column j is as wide as the widest image in that column (or its label), every
  row as tall as its tallest image; images are centred in their cell.
  """
  rows = [[None if im is None else to_uint8(im) for im in r] for r in rows]
  ncol = max((len(r) for r in rows), default=0)
  col_w = [max((r[j].shape[1] for r in rows if j < len(r) and r[j] is not None), default=0)
           for j in range(ncol)]
  if col_labels:
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    col_w = [max(w, int(measure.textlength(str(s))) + 2) for w, s in zip(col_w, col_labels)] + col_w[len(col_labels):]
  row_h = [max((im.shape[0] for im in r if im is not None), default=0) for r in rows]
  top = 12 if col_labels else 0
  left = label_width or (8 * max((len(s) for s in row_labels), default=0) + 4 if row_labels else 0)
  H = top + sum(row_h) + pad * (len(rows) + 1)
  W = left + sum(col_w) + pad * (ncol + 1)
  canvas = Image.new("RGB", (max(W, 1), max(H, 1)), WHITE)
  draw = ImageDraw.Draw(canvas)
  y = top + pad
  for i, r in enumerate(rows):
    x = left + pad
    for j in range(ncol):
      im = r[j] if j < len(r) else None
      if im is not None:
        canvas.paste(Image.fromarray(im), (x + (col_w[j] - im.shape[1]) // 2, y + (row_h[i] - im.shape[0]) // 2))
      x += col_w[j] + pad
    if row_labels:
      draw.text((2, y + row_h[i] // 2 - 5), str(row_labels[i]), fill=(0, 0, 0))
    y += row_h[i] + pad
  if col_labels:
    x = left + pad
    for j, s in enumerate(col_labels[:ncol]):
      draw.text((x + (col_w[j] - int(draw.textlength(str(s)))) // 2, 0), str(s), fill=(0, 0, 0))
      x += col_w[j] + pad
  return np.asarray(canvas)


def save_image(image: np.ndarray, path: str) -> str:
  """Writes one image as PNG (folders created, written to a temp name then renamed)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"  # per process: every host of a multi-host run writes it
  Image.fromarray(to_uint8(image)).save(tmp, format="PNG")
  os.replace(tmp, path)
  return path


def save_grid(rows: Sequence[Sequence[np.ndarray | None]], path: str, **kwargs) -> np.ndarray:
  """`grid_image(rows, **kwargs)` written to `path` as PNG; returns the grid array."""
  grid = grid_image(rows, **kwargs)
  save_image(grid, path)
  return grid


CYCLEGAN_COLUMNS = ("real RGB", "fake IR", "rec RGB", "real IR", "fake RGB", "rec IR")


def cyclegan_sample_rows(real_rgb, fake_ir, rec_rgb, real_ir, fake_rgb, rec_ir) -> list[list[np.ndarray]]:
  """One row per example: real RGB → G(rgb) → F(G(rgb)), real IR → F(ir) → G(F(ir))."""
  arrays = [np.asarray(a) for a in (real_rgb, fake_ir, rec_rgb, real_ir, fake_rgb, rec_ir)]
  n = min(len(a) for a in arrays)
  return [[a[i] for a in arrays] for i in range(n)]
