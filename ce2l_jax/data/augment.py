"""Host-side augmentation on uint8 images (numpy + PIL), and the on-device normalisations.

Every choice comes from the `input` config (`pipeline.default_input_config`), turned once into a
small picklable `TrainAugment` / `EvalAugment`. A train image goes, in this order, through:

1. decode (PIL; encoded bytes or a uint8 array), optionally in JPEG draft mode (`jpeg_draft`:
   DCT-domain downscaling by 1/2, 1/4 or 1/8 when the image is at least twice the target);
2. resize to `resize` (H, W) with PIL (`resample`, default bilinear, antialiased when shrinking,
   as torchvision's PIL path);
3. random crop of `crop` (H, W) from the image zero-padded by `pad` pixels on every side
   (torchvision `Pad(pad)` + `RandomCrop(crop)`; offsets uniform over all positions). Steps 2
   and 3 are fused (`resize_crop`): where PIL enlarges, it resamples only the crop window, with
   the same pixels as resizing everything and slicing; the padding is never materialised;
4. horizontal flip with probability 1/2 (`flip`);
5. random erasing (`random_erasing`, Zhong et al. 2020 as used by AGW: with probability
   `prob`, up to 100 tries of an area fraction U(area) and aspect U(min_aspect, 1/min_aspect);
   the first rectangle that fits is filled with `fill`). AGW erases after normalisation with
   the value (0.4914, 0.4822, 0.4465); since we normalise on device, `fill` is the uint8 pixel
   that normalises to that value: round((v * std + mean) * 255) = (152, 144, 129);
6. channel augmentation (`channel_aug`, after CAJ, Ye et al. ICCV 2021), for the slots in
   `channel_aug.slots` (default visible only):
   - `"exchange"` — CAJ's `ChannelExchange(gray=2)`: with probability `prob`, all three channels
     are replaced by one channel drawn uniformly from R, G, B;
   - `"adap_gray"` — CAJ's `ChannelAdapGray(probability=prob)`: one of four cases with
     probability 1/4 each: R, G or B copied into all channels, or (case 4) the grayscale
     0.2989 R + 0.5870 G + 0.1140 B with probability `prob`, else the image unchanged;
   - `"gray"` — torchvision `RandomGrayscale(prob)` (weights 0.299, 0.587, 0.114).
   CAJ applies these to normalised tensors and doubles the visible batch (one plain and one
   channel-exchanged copy of every visible image); here they act on uint8 pixels before
   normalisation and replace the visible image in place (the batch shape is the contract), so
   `prob` sets the fraction of visible images that are changed.

Eval images are only resized to `image_size`.

Randomness: each example gets `np.random.default_rng(SeedSequence([seed, stream, position]))`
with `position` its place in the global stream, so results depend neither on the number of
workers nor on the order in which workers run.

Normalisation happens on device (contract): `normalize_imagenet` (ImageNet mean/std) and
`to_unit_range` ([-1, 1], CycleGAN) are jnp functions; `*_np` are their numpy twins.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from ce2l_jax.data.sampler import seeded_rng

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# AGW / CAJ erase value (0.4914, 0.4822, 0.4465) in normalised space, as uint8 pixels.
AGW_ERASE_FILL = tuple(int(round((v * s + m) * 255))
                       for v, m, s in zip((0.4914, 0.4822, 0.4465), IMAGENET_MEAN, IMAGENET_STD))

STREAM_TRAIN, STREAM_UNPAIRED_RGB, STREAM_UNPAIRED_IR = 1, 2, 3
CHANNEL_MODES = ("none", "exchange", "adap_gray", "gray")
_RESAMPLE = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
             "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS,
             "box": Image.Resampling.BOX}


def example_rng(seed: int, stream: int, position: int) -> np.random.Generator:
  """The generator of one example: a pure function of (seed, stream, global position)."""
  return seeded_rng(seed, stream, position)


# ----------------------------------------------------------------------------- primitives

def _hw(size: Any) -> tuple[int, int] | None:
  if size is None:
    return None
  if isinstance(size, int):
    return (size, size)
  h, w = size
  return int(h), int(w)


def decode(image: Any, draft_size: tuple[int, int] | None = None) -> Image.Image:
  """An RGB PIL image from encoded bytes or a uint8 array (grayscale repeated to 3 channels).

  `draft_size` (H, W): let the JPEG decoder downscale by a power of two while staying at least
  that large (no effect on other formats or smaller images).
  """
  if isinstance(image, (bytes, bytearray, memoryview)):
    img = Image.open(io.BytesIO(bytes(image)))
    if draft_size is not None and img.format == "JPEG":
      img.draft("RGB", (draft_size[1], draft_size[0]))
  else:
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
      raise TypeError(f"images must be uint8, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[-1] == 1:
      arr = arr[..., 0]
    img = Image.fromarray(arr)
  if img.mode != "RGB":
    img = img.convert("RGB")
  return img


def resize(image: Any, size: tuple[int, int], resample: str = "bilinear") -> np.ndarray:
  """uint8 (H, W, 3) resized to `size` (H, W) with PIL."""
  img = image if isinstance(image, Image.Image) else decode(image)
  h, w = size
  if img.size != (w, h):
    img = img.resize((w, h), _RESAMPLE[resample])
  return np.asarray(img)


def pad_crop(x: np.ndarray, rng: np.random.Generator, crop: tuple[int, int], pad: int = 0) -> np.ndarray:
  """Random `crop` (H, W) of `x` zero-padded by `pad` on every side, by slicing."""
  h, w = x.shape[:2]
  ch, cw = crop
  if h + 2 * pad < ch or w + 2 * pad < cw:
    raise ValueError(f"input.crop={crop} is larger than the resized image ({h}, {w}) plus "
                     f"input.pad={pad}; lower input.crop or raise input.resize")
  y0 = int(rng.integers(0, h + 2 * pad - ch + 1)) - pad
  x0 = int(rng.integers(0, w + 2 * pad - cw + 1)) - pad
  if y0 >= 0 and x0 >= 0 and y0 + ch <= h and x0 + cw <= w:
    return x[y0:y0 + ch, x0:x0 + cw]
  out = np.zeros((ch, cw) + x.shape[2:], x.dtype)
  sy0, sy1, sx0, sx1 = max(0, y0), min(h, y0 + ch), max(0, x0), min(w, x0 + cw)
  out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = x[sy0:sy1, sx0:sx1]
  return out


def resize_crop(img: Image.Image, rng: np.random.Generator, size: tuple[int, int], crop: tuple[int, int],
                pad: int = 0, resample: str = "bilinear") -> np.ndarray:
  """`pad_crop(resize(img, size), rng, crop, pad)` with the same draws and the same pixels.

  Where PIL enlarges the image in both axes, it resamples only the crop window
  (`resize(box=...)` at the full resize's scale), which gives exactly the pixels of resizing
  everything and slicing (227² outputs instead of 256²). Where it shrinks an axis, the windowed
  resample differs by 1 on some pixels (PIL's antialiasing weights), so the whole image is
  resized and sliced instead. Both paths are checked against the reference in the tests.
  """
  h, w = size
  iw, ih = img.size
  if iw > w or ih > h or (iw, ih) == (w, h):  # shrinking, or nothing to resize
    return pad_crop(resize(img, size, resample), rng, crop, pad)
  ch, cw = crop
  if h + 2 * pad < ch or w + 2 * pad < cw:
    raise ValueError(f"input.crop={crop} is larger than input.resize={size} plus input.pad={pad}")
  y0 = int(rng.integers(0, h + 2 * pad - ch + 1)) - pad
  x0 = int(rng.integers(0, w + 2 * pad - cw + 1)) - pad
  sy0, sy1, sx0, sx1 = max(0, y0), min(h, y0 + ch), max(0, x0), min(w, x0 + cw)
  fx, fy = iw / w, ih / h
  part = np.asarray(img.resize((sx1 - sx0, sy1 - sy0), _RESAMPLE[resample],
                               box=(sx0 * fx, sy0 * fy, sx1 * fx, sy1 * fy)))
  if (sy0, sy1, sx0, sx1) == (y0, y0 + ch, x0, x0 + cw):
    return part
  out = np.zeros((ch, cw, 3), np.uint8)
  out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = part
  return out


def random_flip(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Horizontal flip with probability 1/2."""
  return x[:, ::-1] if rng.random() < 0.5 else x


def random_erasing(x: np.ndarray, rng: np.random.Generator, prob: float = 0.5,
                   area: Sequence[float] = (0.02, 0.4), min_aspect: float = 0.3,
                   fill: Sequence[int] = AGW_ERASE_FILL) -> np.ndarray:
  """Random erasing (Zhong et al.; AGW's parameters by default); returns a new array if erased."""
  if prob <= 0 or rng.random() >= prob:
    return x
  h, w = x.shape[:2]
  for _ in range(100):
    target = rng.uniform(area[0], area[1]) * h * w
    aspect = rng.uniform(min_aspect, 1.0 / min_aspect)
    eh = int(round(math.sqrt(target * aspect)))
    ew = int(round(math.sqrt(target / aspect)))
    if ew < w and eh < h:
      y0 = int(rng.integers(0, h - eh + 1))
      x0 = int(rng.integers(0, w - ew + 1))
      x = np.array(x, copy=True)
      x[y0:y0 + eh, x0:x0 + ew] = np.asarray(fill, np.uint8)
      return x
  return x


def _gray(x: np.ndarray, weights: Sequence[float]) -> np.ndarray:
  g = x.astype(np.float32) @ np.asarray(weights, np.float32)
  g = np.clip(np.rint(g), 0, 255).astype(np.uint8)
  return np.repeat(g[..., None], 3, axis=-1)


def channel_augment(x: np.ndarray, rng: np.random.Generator, mode: str = "none", prob: float = 1.0) -> np.ndarray:
  """CAJ-style channel augmentation of a uint8 RGB image (see the module docstring)."""
  if mode == "none":
    return x
  if mode == "exchange":
    if rng.random() >= prob:
      return x
    c = int(rng.integers(0, 3))
    return np.repeat(x[..., c:c + 1], 3, axis=-1)
  if mode == "adap_gray":
    case = int(rng.integers(0, 4))
    if case < 3:
      return np.repeat(x[..., case:case + 1], 3, axis=-1)
    return _gray(x, (0.2989, 0.5870, 0.1140)) if rng.random() < prob else x
  if mode == "gray":
    return _gray(x, (0.299, 0.587, 0.114)) if rng.random() < prob else x
  raise ValueError(f"input.channel_aug.mode={mode!r} is not one of {CHANNEL_MODES}")


# ------------------------------------------------------------------------------ pipelines

@dataclasses.dataclass(frozen=True)
class TrainAugment:
  """The train-time transform of one image, with every choice fixed (picklable)."""
  resize: tuple[int, int]
  crop: tuple[int, int] | None = None
  pad: int = 0
  flip: bool = False
  erase_prob: float = 0.0
  erase_area: tuple[float, float] = (0.02, 0.4)
  erase_min_aspect: float = 0.3
  erase_fill: tuple[int, int, int] = AGW_ERASE_FILL
  channel_mode: str = "none"
  channel_prob: float = 1.0
  channel_slots: tuple[int, ...] = (0,)
  resample: str = "bilinear"
  jpeg_draft: bool = False

  def __post_init__(self):
    if self.channel_mode not in CHANNEL_MODES:
      raise ValueError(f"input.channel_aug.mode={self.channel_mode!r} is not one of {CHANNEL_MODES}")
    if self.resample not in _RESAMPLE:
      raise ValueError(f"input.resample={self.resample!r} is not one of {sorted(_RESAMPLE)}")
    if self.crop is not None:
      ch, cw = self.crop
      if self.resize[0] + 2 * self.pad < ch or self.resize[1] + 2 * self.pad < cw:
        raise ValueError(f"input.crop={self.crop} does not fit input.resize={self.resize} with "
                         f"input.pad={self.pad}")

  @classmethod
  def from_config(cls, cfg: Any) -> TrainAugment:
    """From the `input` config (`pipeline.default_input_config`)."""
    er, ca = cfg.random_erasing, cfg.channel_aug
    return cls(resize=_hw(cfg.resize), crop=_hw(cfg.crop), pad=int(cfg.pad), flip=bool(cfg.flip),
               erase_prob=float(er.prob), erase_area=tuple(float(a) for a in er.area),
               erase_min_aspect=float(er.min_aspect), erase_fill=tuple(int(v) for v in er.fill),
               channel_mode=str(ca.mode), channel_prob=float(ca.prob),
               channel_slots=tuple(int(s) for s in ca.slots), resample=str(cfg.resample),
               jpeg_draft=bool(cfg.jpeg_draft))

  @property
  def output_size(self) -> tuple[int, int]:
    return self.crop or self.resize

  def __call__(self, image: Any, rng: np.random.Generator, slot: int = 0) -> np.ndarray:
    img = decode(image, self.resize if self.jpeg_draft else None)
    if self.crop is not None:
      x = resize_crop(img, rng, self.resize, self.crop, self.pad, self.resample)
    else:
      x = resize(img, self.resize, self.resample)
    if self.flip:
      x = random_flip(x, rng)
    if self.erase_prob > 0:
      x = random_erasing(x, rng, self.erase_prob, self.erase_area, self.erase_min_aspect, self.erase_fill)
    if self.channel_mode != "none" and slot in self.channel_slots:
      x = channel_augment(x, rng, self.channel_mode, self.channel_prob)
    return np.ascontiguousarray(x)


@dataclasses.dataclass(frozen=True)
class EvalAugment:
  """Test-time transform: resize to `size` (H, W)."""
  size: tuple[int, int]
  resample: str = "bilinear"
  jpeg_draft: bool = False

  def __call__(self, image: Any) -> np.ndarray:
    img = decode(image, self.size if self.jpeg_draft else None)
    return np.ascontiguousarray(resize(img, self.size, self.resample))


# -------------------------------------------------------------------- on-device normalisation

def normalize_imagenet(x: Any) -> Any:
  """uint8 (..., 3) → float32 normalised with the ImageNet mean and std (jnp, jit-able)."""
  import jax.numpy as jnp  # data workers never import jax
  mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
  std = jnp.asarray(IMAGENET_STD, jnp.float32)
  return (jnp.asarray(x).astype(jnp.float32) / 255.0 - mean) / std


def to_unit_range(x: Any) -> Any:
  """uint8 → float32 in [-1, 1] (jnp, jit-able); the CycleGAN's input range."""
  import jax.numpy as jnp
  return jnp.asarray(x).astype(jnp.float32) / 127.5 - 1.0


def from_unit_range(x: Any) -> Any:
  """The inverse of `to_unit_range`: float [-1, 1] → uint8 [0, 255], rounded (jnp, jit-able)."""
  import jax.numpy as jnp
  return jnp.clip(jnp.round((x + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


def normalize_imagenet_np(x: np.ndarray) -> np.ndarray:
  """The numpy twin of `normalize_imagenet`."""
  mean = np.asarray(IMAGENET_MEAN, np.float32)
  std = np.asarray(IMAGENET_STD, np.float32)
  return (np.asarray(x).astype(np.float32) / np.float32(255.0) - mean) / std


def to_unit_range_np(x: np.ndarray) -> np.ndarray:
  """The numpy twin of `to_unit_range`."""
  return np.asarray(x).astype(np.float32) / np.float32(127.5) - np.float32(1.0)
