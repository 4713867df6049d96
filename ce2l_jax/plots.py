"""The evaluate stage's pictures, drawn with PIL only: CMC curves and ranking examples.

- `draw_cmc(curves, path)`: CMC curves (rank 1..20, matching rate in %), one line per curve,
  with axes, grid, ticks and a legend. `curves` maps a label to a `Curve` (values as fractions,
  colour, dashed or not).
- `ranking_rows(...)` / `save_ranking_examples(...)`: a few queries, each followed by its top-k
  gallery images, framed green (same identity) or red (another identity), on
  `ce2l_jax.viz.save_grid`.
Pure functions of arrays; the stage (`ce2l_jax.stages`) picks the data.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ce2l_jax import viz

# Distinguishable colours (Okabe–Ito), one per setting.
PALETTE = ((0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0),
           (86, 180, 233), (0, 0, 0), (240, 228, 66))
BLACK, GREY, LIGHT = (0, 0, 0), (110, 110, 110), (225, 225, 225)


_ASCII = str.maketrans({"²": "2", "ℓ": "l", "→": "->", "±": "+-", "–": "-"})


def font(size: int = 13):
  """(font, text filter): DejaVu Sans when installed (it has ², ℓ, →), else PIL's default with
  those characters spelt in ASCII."""
  for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
    try:
      return ImageFont.truetype(name, size), lambda s: s
    except OSError:
      continue
  try:
    return ImageFont.load_default(size=size), lambda s: s.translate(_ASCII)
  except TypeError:  # Pillow < 10.1
    return ImageFont.load_default(), lambda s: s.translate(_ASCII)


@dataclasses.dataclass
class Curve:
  """A CMC curve: `values[r-1]` = matching rate (fraction) at rank r."""
  values: Sequence[float]
  color: tuple[int, int, int] = PALETTE[0]
  dashed: bool = False
  width: int = 2


def _dashed_line(draw: ImageDraw.ImageDraw, p0, p1, color, width, dash=7, gap=5) -> None:
  (x0, y0), (x1, y1) = p0, p1
  length = float(np.hypot(x1 - x0, y1 - y0))
  if length == 0:
    return
  t = 0.0
  while t < length:
    t1 = min(t + dash, length)
    a, b = t / length, t1 / length
    draw.line([(x0 + a * (x1 - x0), y0 + a * (y1 - y0)), (x0 + b * (x1 - x0), y0 + b * (y1 - y0))],
              fill=color, width=width)
    t = t1 + gap


def cmc_image(curves: Mapping[str, Curve], *, max_rank: int = 20, title: str = "CMC",
              size: tuple[int, int] = (720, 520)) -> np.ndarray:
  """The CMC figure as a uint8 H×W×3 array (y axis 0–100 %, x axis rank 1..max_rank)."""
  W, H = size
  legend_h = 16 * len(curves) + 10
  left, right, top, bottom = 56, 20, 34, 44 + legend_h
  canvas = Image.new("RGB", (W, H + legend_h), (255, 255, 255))
  d = ImageDraw.Draw(canvas)
  f, txt = font(13)
  x_of = lambda r: left + (r - 1) / max(max_rank - 1, 1) * (W - left - right)
  y_of = lambda v: top + (1.0 - v) * (H + legend_h - top - bottom)
  # grid, ticks
  for v in np.linspace(0, 1, 11):
    y = y_of(v)
    d.line([(left, y), (W - right, y)], fill=LIGHT, width=1)
    d.text((left - 8, y), f"{100 * v:.0f}", fill=BLACK, font=f, anchor="rm")
  ticks = sorted({1, *range(5, max_rank + 1, 5), max_rank})
  for r in ticks:
    x = x_of(r)
    d.line([(x, top), (x, y_of(0))], fill=LIGHT, width=1)
    d.text((x, y_of(0) + 6), str(r), fill=BLACK, font=f, anchor="mt")
  d.rectangle([left, top, W - right, y_of(0)], outline=BLACK, width=1)
  mid = left + (W - left - right) // 2
  d.text((mid, 8), txt(title), fill=BLACK, font=f, anchor="mt")
  d.text((mid, y_of(0) + 24), "rank", fill=BLACK, font=f, anchor="mt")
  d.text((6, top - 20), "matching rate (%)", fill=BLACK, font=f)
  # curves
  for label, c in curves.items():
    vals = np.asarray(c.values, np.float64)[:max_rank]
    if vals.size < max_rank:  # a short curve (small gallery) stays at its last value
      vals = np.concatenate([vals, np.full(max_rank - vals.size, vals[-1] if vals.size else 0.0)])
    pts = [(x_of(r + 1), y_of(float(np.clip(v, 0, 1)))) for r, v in enumerate(vals)]
    for p0, p1 in zip(pts[:-1], pts[1:]):
      if c.dashed:
        _dashed_line(d, p0, p1, c.color, c.width)
      else:
        d.line([p0, p1], fill=c.color, width=c.width)
    for x, y in pts:
      d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=c.color)
  # legend, below the plot
  y = y_of(0) + 40
  for label, c in curves.items():
    p0, p1 = (left, y + 6), (left + 34, y + 6)
    if c.dashed:
      _dashed_line(d, p0, p1, c.color, c.width)
    else:
      d.line([p0, p1], fill=c.color, width=c.width)
    d.text((left + 42, y + 6), txt(f"{label}  (rank-1 {100 * float(np.asarray(c.values)[0]):.1f}%)"),
           fill=BLACK, font=f, anchor="lm")
    y += 16
  return np.asarray(canvas)


def draw_cmc(curves: Mapping[str, Curve], path: str, **kwargs) -> str:
  """`cmc_image(curves, **kwargs)` written as PNG to `path` (atomically)."""
  return viz.save_image(cmc_image(curves, **kwargs), path)


def fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """uint8 H×W×3 resized to `size` (H, W) with bilinear filtering."""
  im = Image.fromarray(viz.to_uint8(image))
  if (im.height, im.width) != tuple(size):
    im = im.resize((int(size[1]), int(size[0])), Image.Resampling.BILINEAR)
  return np.asarray(im)


def ranking_rows(queries: Sequence[np.ndarray], galleries: Sequence[Sequence[np.ndarray]],
                 matches: Sequence[Sequence[bool]], *, size: tuple[int, int] = (128, 64),
                 frame: int = 3) -> list[list[np.ndarray]]:
  """One row per query: the query (black frame), then its ranked gallery images framed green
  (true match) or red (wrong identity)."""
  rows = []
  for q, gal, ok in zip(queries, galleries, matches):
    row = [viz.border(fit(q, size), BLACK, frame)]
    row += [viz.border(fit(g, size), viz.GREEN if m else viz.RED, frame) for g, m in zip(gal, ok)]
    rows.append(row)
  return rows


def save_ranking_examples(queries, galleries, matches, path: str, *, row_labels=None,
                          size: tuple[int, int] = (128, 64)) -> np.ndarray:
  """`ranking_rows` tiled and written to `path`; columns 'query', 1, 2, ..., k."""
  rows = ranking_rows(queries, galleries, matches, size=size)
  k = max((len(r) for r in rows), default=1) - 1
  return viz.save_grid(rows, path, pad=4, row_labels=row_labels,
                       col_labels=["query"] + [str(i) for i in range(1, k + 1)])


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
  """Nearest-neighbour enlargement by an integer factor (keeps the pixels visible as they are)."""
  x = viz.to_uint8(image)
  return x if factor <= 1 else np.repeat(np.repeat(x, factor, axis=0), factor, axis=1)


def save_conversion_samples(translated: Mapping[str, np.ndarray], path: str,
                            min_height: int = 128) -> np.ndarray:
  """The CycleGAN figure: one row per example, real RGB → fake IR → reconstructed RGB, real IR →
  fake RGB → reconstructed IR; `translated` is `trainers.cyclegan.make_translate_fn`'s output
  (images in [-1, 1]); small images are enlarged to at least `min_height` pixels."""
  rows = viz.cyclegan_sample_rows(*(translated[k] for k in ("real_rgb", "fake_ir", "rec_rgb",
                                                           "real_ir", "fake_rgb", "rec_ir")))
  h = np.asarray(translated["real_rgb"]).shape[1]
  factor = max(1, -(-min_height // h))
  rows = [[upscale(im, factor) for im in r] for r in rows]
  return viz.save_grid(rows, path, pad=4, col_labels=viz.CYCLEGAN_COLUMNS)
