"""Procedural visible–infrared person re-ID data in SYSU-MM01's layout.

The embedded default dataset: no download, pure numpy, deterministic from `SyntheticConfig.seed`,
importable without TFDS. `tfds_builders/synthetic_vireid` wraps it as a TFDS builder.

Layout (as SYSU-MM01): cameras 1, 2, 4, 5 are visible (1, 2 indoor; 4, 5 outdoor), 3 and 6 are
infrared (3 indoor, 6 outdoor). Identities `1..num_train_ids` form the `train` split and the next
`num_test_ids` the `test` split. Each identity appears in a random subset of the cameras (each
camera is absent with probability `absent_prob`), but always in at least one visible and one
infrared camera, with `min_images..max_images` images in each camera where it appears. Each
image has a virtual path `cam{c}/{pid:04d}/{index:04d}.png`.

Each identity is a rendered person with its own attributes:
  body: height, shoulder and hip width, head size, limb thickness, skin tone, hair colour and
    length;
  clothing: upper and lower garment, each with two colours and a pattern (solid, horizontal or
    vertical stripes, checks, blocky noise) at its own frequency; sleeves short or long; trousers,
    shorts or a skirt; shoes;
  accessories: backpack, shoulder bag, hat, each with its colour;
  near infrared (SYSU-like): each dye's NIR reflectance times a per-garment material factor;
  thermal (RegDB-like): skin temperature and, per garment, an insulation drawn with the garment's
    kind and fit, a solar absorptance from its visible and NIR reflectance, and a fabric
    emissivity (see "The thermal model" below).
Each image draws a viewpoint (front, back, or side facing left or right: it decides mirroring,
whether the face or the back of the head shows, and how a backpack or bag shows), scale,
position, stride and arm swing, and a background in its camera's style (indoor walls and tiles,
a corridor with doors, a building facade, a park; thermal rooms with warm radiators, a cold sky)
with per-image clutter, lighting gain and tint, and sensor noise. Infrared images are grayscale
repeated to 3 channels: colour is lost, body shape and accessories survive. So an infrared image
is not a fixed function of a visible one, and matching across modalities by raw pixels is near
chance while matching within the visible modality is not (see `raw_pixel_rank1` and
docs/notes/synthetic_dataset.md).

The thermal model (8–14 µm, an uncooled microbolometer camera; docs/notes/thermal_twin.md). A
pixel shows a surface's apparent temperature: its own emission at its surface temperature T_s,
with emissivity ε, plus the surroundings it reflects, T_app⁴ = ε T_s⁴ + (1 − ε) T_refl⁴.
  - Emissivity: human skin 0.97–0.99 whatever its colour (0.98 the accepted value; Sanchez-Marin
    et al. 2009, J. Biomed. Opt. 14(2):024006: skin is nearly a blackbody at 10.6 µm);
    textiles 0.82–0.93 in 8–12 µm with no dependence on the dye (nylon 0.87, cotton 0.88,
    polyester 0.88, acrylic 0.82: NIJ, "Study of the mid-infrared emissivity of dried blood on
    fabrics", nij.ojp.gov; knitted wool, cotton and polyester absorb 75–93 % of mid infrared
    whatever their colour: Bauer, Gresser & Mark 2021, "Effect of structure, color and finish on
    the MIR emission and NIR absorption of knitted textiles", J. Textile Sci. Fashion Technol.).
    So a print (two dyes on one fabric) differs by ~0.01 in ε: nearly invisible by emission.
  - Surface temperature: the regulated skin temperature (31.5–35 °C at the face) reaches a
    garment's surface through its insulation R (1 clo = 0.155 m²K/W, the clothing-insulation unit
    of ASHRAE 55 and ISO 9920, whose garment tables run from ~0.06 clo (T-shirt, shorts) to ~1.3
    (a thick jacket); plus up to 0.3 clo of air gap for a loose fit), and leaves it by convection
    and radiation, h ≈ 8–12
    W/(m²K) (h_r ≈ 4εσT³ ≈ 5 plus convection): T_s = T_air + (T_sk − T_air + α E R) / (1 + R h)
    (the layer's steady state, the clothing-surface balance of Fanger's model in ISO 7730). A thin
    shirt shows nearly skin temperature, a thick jacket nearly air temperature.
  - Sunshine E (outdoors) is absorbed with the solar absorptance α: sunlight is ~42–50 % visible,
    ~50–55 % near infrared (AMS Glossary of Meteorology, "solar radiation"), so α = 1 − (ρ_vis +
    ρ_nir)/2 with ρ_vis the colour's luminance and ρ_nir `_nir_reflectance`'s value (fabrics'
    near-infrared absorption varies 10–96 % with construction and dye: Bauer et al. 2021). Dark
    garments run warmer in the sun: thermal brightness is partly, not exactly, predictable from
    visible luminance, and a print shows in the sun in proportion to its absorptance contrast.
  - Hair, shoes, hats: a share of the skin's warmth; bags and backpacks are warmed only where
    they touch, so carried things sit near the air temperature (plus sunshine).
  - Scene: clear sky at Swinbank's (1963, Q. J. R. Meteorol. Soc. 89:339) T_sky = 0.0552 T_air^1.5
    (K), sun-warmed pavement, warm radiators, screens and cars.
  - Camera: optics blur, a bolometer array at half the visible camera's resolution, residual
    fixed-pattern non-uniformity after the camera's correction (per-pixel, per-column, a smooth
    centre-to-edge offset), temporal noise at an NETD of 50–80 mK, and a histogram automatic
    gain, plateau equalization with tail rejection and a gain cap (the first of the AGC
    algorithms of FLIR's Tau 2 cores: FLIR application note 102-PS242-100-01, "FLIR camera
    adjustments", 2014). RegDB itself: Nguyen et al. 2017, Sensors 17(3):605 (a dual
    visible–thermal rig).

Rendering is vectorized over batches: every body part is a soft mask (signed distance to
ellipses, capsules and boxes on a coordinate grid), composited back to front, each on the band
of rows where it can appear. ~1,000 images/s per core at 64×32, ~500 at 128×64
(docs/benchmarks.md (synthetic section)).

    data = generate("small", "test")     # dict of arrays: image (N, H, W, 3) uint8, pid, ...
    python -m ce2l_jax.data.synthetic --grid docs/images/synthetic_samples.png
"""

import argparse
import dataclasses
import functools
import io
from typing import Iterator

import numpy as np

VISIBLE_CAMS = (1, 2, 4, 5)
INFRARED_CAMS = (3, 6)
CAMERAS = (1, 2, 3, 4, 5, 6)
REGDB_CAMERAS = (1, 2)  # visible, thermal (the camids of tfds_builders/regdb)
_REGDB_STYLE = {1: 4, 2: 6}  # RegDB is filmed outdoors: camera styles of SYSU's 4 and 6
SPLITS = ("train", "test")
PATTERNS = ("solid", "hstripes", "vstripes", "checks", "noise")
VIEWS = ("front", "back", "side")  # `specs(...)["view"]` codes


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """Size and seed of a synthetic dataset.

  Attributes:
    num_train_ids: identities of the `train` split (pids 1..num_train_ids).
    num_test_ids: identities of the `test` split (the next pids).
    height, width: image size in pixels.
    min_images, max_images: images per identity per camera where the identity appears.
    absent_prob: probability that an identity is missing from a camera (at least one visible
      and one infrared camera are always kept).
    seed: everything is a deterministic function of this config.
    infrared: "thermal" (far infrared: body heat and emissivity, RegDB-like) or "nir" (near
      infrared under the camera's illuminator: reflectance, SYSU-MM01-like).
    layout: "sysu" (cameras 1–6 as SYSU-MM01) or "regdb" (one visible camera 1, one infrared
      camera 2, every identity in both; the identities are split into train and test halves by
      `trial` as RegDB's ten random splits; `absent_prob` is ignored).
    trial: the RegDB split (1..10), layout "regdb" only.
  """
  num_train_ids: int
  num_test_ids: int
  height: int = 128
  width: int = 64
  min_images: int = 2
  max_images: int = 4
  absent_prob: float = 0.25
  seed: int = 0
  infrared: str = "thermal"
  layout: str = "sysu"
  trial: int = 1

  @property
  def num_ids(self) -> int:
    return self.num_train_ids + self.num_test_ids

  @property
  def cameras(self) -> tuple[int, ...]:
    return CAMERAS if self.layout == "sysu" else REGDB_CAMERAS

  @property
  def splits(self) -> tuple[str, ...]:
    """The splits that hold identities (the pretraining sets have no `test`)."""
    counts = {"train": self.num_train_ids, "test": self.num_test_ids}
    return tuple(s for s in SPLITS if counts[s] > 0)

  @property
  def infrared_cameras(self) -> tuple[int, ...]:
    return INFRARED_CAMS if self.layout == "sysu" else (REGDB_CAMERAS[1],)

  def __post_init__(self):
    if self.infrared not in ("thermal", "nir"):
      raise ValueError(f"SyntheticConfig.infrared={self.infrared!r}: 'thermal' or 'nir'")
    if self.layout not in ("sysu", "regdb"):
      raise ValueError(f"SyntheticConfig.layout={self.layout!r}: 'sysu' or 'regdb'")


CONFIGS = {
    # Unit tests: a few hundred ms to generate.
    "tiny": SyntheticConfig(num_train_ids=6, num_test_ids=4, height=64, width=32,
                            min_images=1, max_images=2, seed=0),
    # Tests and the demo: builds in seconds on 2 CPU cores.
    "small": SyntheticConfig(num_train_ids=40, num_test_ids=20, height=64, width=32,
                             min_images=2, max_images=4, seed=0),
    # The larger default: 300 identities at 128×64.
    "default": SyntheticConfig(num_train_ids=200, num_test_ids=100, height=128, width=64,
                               min_images=3, max_images=6, seed=0),
    # The SYSU-MM01 twin: near-infrared cameras 3 and 6, SYSU's camera layout and protocol.
    "sysu": SyntheticConfig(num_train_ids=300, num_test_ids=100, height=128, width=64,
                            min_images=3, max_images=6, seed=0, infrared="nir"),
    "sysu_small": SyntheticConfig(num_train_ids=40, num_test_ids=20, height=64, width=32,
                                  min_images=2, max_images=4, seed=0, infrared="nir"),
}
# Visible pretraining (ImageNet's part): other people (another seed) than every twin's; only its
# visible cameras are used.
CONFIGS["pretrain"] = SyntheticConfig(num_train_ids=500, num_test_ids=0, height=128, width=64,
                                      min_images=3, max_images=6, seed=1000, infrared="nir")
# A larger pretraining set, 3,000 other people (the same generator seed): the demo's weights.
# Pretraining on more people transfers better across modalities (500 → 3,000: +4.6 rank-1 on the
# SYSU twin over seeds; docs/notes/synthetic_benchmark.md §3c).
CONFIGS["pretrain_large"] = SyntheticConfig(num_train_ids=3000, num_test_ids=0, height=128,
                                            width=64, min_images=3, max_images=6, seed=1000,
                                            infrared="nir")
# 8,000 other people (the same generator seed as `pretrain_large`): rendered
# in memory by `ce2l_jax.synthetic_pretrain` (no TFDS build needed; ~108,000 visible images).
CONFIGS["pretrain_xl"] = SyntheticConfig(num_train_ids=8000, num_test_ids=0, height=128,
                                         width=64, min_images=3, max_images=6, seed=1000,
                                         infrared="nir")
# The RegDB twin: one visible and one thermal camera, 10 + 10 images of each of 412 identities,
# split into 206 training and 206 test identities by each of the ten trials.
CONFIGS.update({
    f"regdb_trial{t}": SyntheticConfig(num_train_ids=206, num_test_ids=206, height=128, width=64,
                                       min_images=10, max_images=10, seed=0, infrared="thermal",
                                       layout="regdb", trial=t) for t in range(1, 11)})
CONFIGS["regdb_small"] = SyntheticConfig(num_train_ids=20, num_test_ids=20, height=64, width=32,
                                         min_images=4, max_images=4, seed=0, infrared="thermal",
                                         layout="regdb", trial=1)


def data_version(config: "str | SyntheticConfig") -> str:
  """The version of a config's data (the TFDS version of `tfds_builders/synthetic_vireid`):
  "1.2.0" for thermal configs (the physical thermal model, docs/notes/thermal_twin.md), "1.1.0"
  for near-infrared ones, whose images have not changed since."""
  return "1.2.0" if get_config(config).infrared == "thermal" else "1.1.0"


def get_config(config: "str | SyntheticConfig") -> SyntheticConfig:
  """Returns `CONFIGS[config]` for a name, or the config itself."""
  if isinstance(config, SyntheticConfig):
    return config
  if config not in CONFIGS:
    raise ValueError(f"unknown synthetic config {config!r}; known: {sorted(CONFIGS)}")
  return CONFIGS[config]


# ---------------------------------------------------------------------------------------------
# Identities.

_GARMENT_RGB = np.array([
    (0.78, 0.12, 0.12), (0.45, 0.06, 0.10), (0.92, 0.48, 0.10), (0.92, 0.82, 0.18),
    (0.20, 0.60, 0.22), (0.08, 0.30, 0.15), (0.10, 0.55, 0.58), (0.15, 0.35, 0.80),
    (0.08, 0.12, 0.35), (0.45, 0.20, 0.60), (0.92, 0.55, 0.70), (0.93, 0.93, 0.90),
    (0.70, 0.70, 0.70), (0.40, 0.40, 0.42), (0.10, 0.10, 0.11), (0.45, 0.28, 0.15),
    (0.82, 0.72, 0.55)], np.float32)
_LOWER_RGB = np.concatenate([_GARMENT_RGB, np.array([
    (0.18, 0.25, 0.45), (0.40, 0.52, 0.70), (0.08, 0.08, 0.09), (0.30, 0.30, 0.32),
    (0.68, 0.58, 0.40), (0.35, 0.24, 0.15)], np.float32)])
_SKIN_RGB = np.array([(0.96, 0.80, 0.69), (0.87, 0.67, 0.52), (0.71, 0.50, 0.36),
                      (0.45, 0.30, 0.20)], np.float32)
_HAIR_RGB = np.array([(0.07, 0.06, 0.05), (0.22, 0.13, 0.07), (0.40, 0.26, 0.12),
                      (0.78, 0.62, 0.35), (0.60, 0.60, 0.60)], np.float32)
_ACCESSORY_RGB = np.array([(0.08, 0.08, 0.09), (0.92, 0.92, 0.90), (0.55, 0.35, 0.18),
                           (0.15, 0.30, 0.70), (0.75, 0.12, 0.12), (0.30, 0.45, 0.25),
                           (0.55, 0.55, 0.58), (0.90, 0.75, 0.20)], np.float32)
_LOOK_KEYS = ("skin", "hair", "upper1", "upper2", "lower1", "lower2", "shoes", "backpack",
              "bag", "hat")


def identities(config: "str | SyntheticConfig") -> dict:
  """Per-identity attributes: arrays indexed by pid - 1.

  Body and clothing kinds as arrays (`height`, `shoulder`, `upper_pattern` (index into
  `PATTERNS`), `lower_kind` (trousers, shorts, skirt), `backpack`, ...); `rgb` maps each part
  (`skin`, `hair`, `upper1`, `upper2`, `lower1`, ...) to colours (N, 3); `nir` the same parts to
  near-infrared reflectances (N, 1); `thermal` holds the thermal properties
  (`_thermal_properties`). `ir` is the camera's regime: `nir`, or (thermal) each part's apparent
  temperature (°C, (N, 1)) at `_THERMAL_REFERENCE`'s outdoor conditions (images use each
  image's own weather).
  """
  cfg = get_config(config)
  n = cfg.num_ids
  rng = np.random.default_rng([cfg.seed, 0])
  f32 = np.float32

  def uniform(lo, hi, size=n):
    return rng.uniform(lo, hi, size).astype(f32)

  dye = {}  # part -> palette index (the dye), for the near-infrared reflectance

  def pick(palette, jitter=0.05, index=None, part=None):
    index = rng.integers(len(palette), size=n) if index is None else index
    dye[part] = index
    return np.clip(palette[index] + rng.uniform(-jitter, jitter, (n, 3)), 0, 1).astype(f32)

  def two_colours(palette, part):
    first = rng.integers(len(palette), size=n)
    second = (first + rng.integers(1, len(palette), size=n)) % len(palette)
    return (pick(palette, index=first, part=part + "1"),
            pick(palette, index=second, part=part + "2"))

  def two_emissivities():
    """Pattern emissivities: independent of colour, different enough that texture shows."""
    e1 = uniform(0.08, 0.92)
    delta = uniform(0.22, 0.45) * np.where(rng.random(n) < 0.5, -1, 1).astype(f32)
    e2 = e1 + delta
    e2 = np.where((e2 < 0.03) | (e2 > 0.97), e1 - delta, e2)
    return e1, np.clip(e2, 0.03, 0.97)

  ids = {}
  ids["height"] = uniform(0.86, 1.0)
  ids["shoulder"] = uniform(0.09, 0.15)
  ids["hip"] = ids["shoulder"] * uniform(0.68, 0.98)
  ids["head"] = uniform(0.054, 0.075)
  ids["leg"] = uniform(0.032, 0.054)
  ids["arm"] = uniform(0.022, 0.031)
  ids["long_hair"] = rng.random(n) < 0.35
  ids["upper_pattern"] = rng.choice(5, n, p=[0.3, 0.2, 0.15, 0.15, 0.2])
  ids["upper_freq"] = uniform(9.0, 20.0)
  ids["sleeve"] = np.where(rng.random(n) < 0.5, 0.88, 0.40).astype(f32)
  ids["lower_pattern"] = rng.choice(5, n, p=[0.55, 0.1, 0.1, 0.1, 0.15])
  ids["lower_freq"] = uniform(9.0, 20.0)
  ids["lower_kind"] = rng.choice(3, n, p=[0.66, 0.18, 0.16])  # trousers, shorts, skirt
  ids["backpack"] = rng.random(n) < 0.3
  ids["bag"] = ~ids["backpack"] & (rng.random(n) < 0.35)
  ids["hat"] = rng.random(n) < 0.22
  ids["noise"] = (rng.random((n, 2, 6, 6)) < 0.5).astype(f32)  # upper, lower texture grids

  rgb = {"skin": pick(_SKIN_RGB, 0.03, part="skin"), "hair": pick(_HAIR_RGB, 0.03, part="hair")}
  rgb["upper1"], rgb["upper2"] = two_colours(_GARMENT_RGB, "upper")
  rgb["lower1"], rgb["lower2"] = two_colours(_LOWER_RGB, "lower")
  for key in ("shoes", "backpack", "bag", "hat"):
    rgb[key] = pick(_ACCESSORY_RGB, part=key)
  ids["rgb"] = rgb

  # Thermal draws of this stream (kept in place: the NIR reflectances drawn after them must not
  # change). Skin temperature and the share of the skin's warmth that reaches the surface of
  # hair, shoes and carried things come from here; the garments' properties from the thermal
  # model's own stream (`_thermal_properties`). The two garment-emissivity draws of the former
  # model (v1.1.0: emissivities U(0.08, 0.92), independent of colour) are discarded.
  heat = uniform(0.80, 1.0)
  uniform(0.93, 1.0)  # discarded
  through = {"hair": uniform(0.45, 0.7)}
  for _ in ("upper", "lower"):
    two_emissivities()  # discarded
  through["shoes"] = uniform(0.15, 0.45)
  for key in ("backpack", "bag", "hat"):
    through[key] = uniform(0.05, 0.45)
  # Near infrared, drawn last so that every other attribute is the same in both regimes.
  ids["nir"] = _nir_reflectance(rng, dye, rgb)
  ids["thermal"] = _thermal_properties(cfg, ids, heat, through)
  ids["ir"] = ids["nir"] if cfg.infrared == "nir" else {
      part: thermal_surface_temperature(ids["thermal"], part, *_THERMAL_REFERENCE)[:, None]
      for part in _LOOK_KEYS}
  return ids


# Near-infrared (~850 nm) reflectance of each palette entry's dye. Hand-set from the behaviour of
# textile dyes under NIR illumination (many dyes, dark ones included, are transparent in the NIR
# and the fibre reflects; carbon-black pigments absorb; indigo is half-way): a partly
# predictable, many-to-one function of the visible colour. Two blacks (garment 14, carbon; lower
# 19, disperse-dyed polyester) look alike in RGB and differ in NIR; red, pink, white and navy look
# different in RGB and alike in NIR.
_GARMENT_NIR = np.array([0.78, 0.62, 0.82, 0.80, 0.55, 0.40, 0.35, 0.30, 0.58, 0.66, 0.85,
                         0.88, 0.62, 0.30, 0.07, 0.58, 0.80], np.float32)
_LOWER_NIR = np.concatenate([_GARMENT_NIR, np.array([0.45, 0.62, 0.60, 0.22, 0.75, 0.50],
                                                    np.float32)])
_ACCESSORY_NIR = np.array([0.08, 0.85, 0.55, 0.35, 0.75, 0.45, 0.50, 0.80], np.float32)
# Skin reflects strongly in the NIR whatever its visible tone (melanin absorbs little there);
# hair by its melanin: dark hair is mid-grey in NIR, fair hair bright.
_SKIN_NIR = np.array([0.62, 0.60, 0.56, 0.50], np.float32)
_HAIR_NIR = np.array([0.22, 0.30, 0.40, 0.58, 0.52], np.float32)
_NIR_TABLES = {"skin": _SKIN_NIR, "hair": _HAIR_NIR, "upper": _GARMENT_NIR, "lower": _LOWER_NIR,
               "shoes": _ACCESSORY_NIR, "backpack": _ACCESSORY_NIR, "bag": _ACCESSORY_NIR,
               "hat": _ACCESSORY_NIR}


def _nir_reflectance(rng: np.random.Generator, dye: dict, rgb: dict) -> dict:
  """Per-part NIR reflectance (N, 1): the dye's reflectance (`_*_NIR`), nudged by the colour's
  own jitter (a lighter shade of a dye reflects a little more), times a per-garment material
  factor (fibre, weave, finish: the same dye on cotton and on polyester differs)."""
  out = {}
  lum_w = np.array([0.299, 0.587, 0.114], np.float32)
  for part in _LOOK_KEYS:
    table = _NIR_TABLES[part.rstrip("12")]
    palette = {"skin": _SKIN_RGB, "hair": _HAIR_RGB, "upper": _GARMENT_RGB,
               "lower": _LOWER_RGB}.get(part.rstrip("12"), _ACCESSORY_RGB)
    shade = (rgb[part] - palette[dye[part]]) @ lum_w  # the jitter's luminance, ±0.05
    material = rng.uniform(0.92, 1.08, len(shade)) if part in ("skin", "hair") else \
        rng.uniform(0.72, 1.22, len(shade))
    out[part] = np.clip((table[dye[part]] + 1.5 * shade) * material, 0.03, 0.97)[:, None]
  return {k: v.astype(np.float32) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------
# Thermal (far, long-wave infrared, 8–14 µm): what a microbolometer sees is each surface's own
# emission. Constants and their sources are in the module docstring ("The thermal model").

_LUMINANCE = np.array([0.299, 0.587, 0.114], np.float32)
_CLO = 0.155  # m²·K/W per clo (the unit of clothing insulation)
_SKIN_TISSUE_R = 0.015  # m²·K/W between the regulated skin temperature and the skin's surface
_H_REFERENCE = 10.0  # W/(m²·K): the surface coefficient `through` fractions are defined at
# Garment insulation (clo) by kind, before the air gap of a loose fit (0..0.3 clo on top).
_UPPER_CLO = {"short sleeves": (0.06, 0.15), "long sleeves": (0.15, 0.35), "jacket": (0.45, 1.3)}
_LOWER_CLO = {"trousers": (0.15, 0.35), "shorts": (0.06, 0.12), "skirt": (0.10, 0.25)}
# The reference condition of `identities(...)["ir"]` (thermal): outdoors at 15 °C in 250 W/m² of
# sunshine, a light wind (surface coefficient 12 W/(m²·K)).
_THERMAL_REFERENCE = (15.0, 250.0, 12.0)


def _thermal_properties(cfg: SyntheticConfig, ids: dict, heat: np.ndarray,
                        through: dict) -> dict:
  """Per-identity thermal properties: `skin_temp` (°C, (N,)) and per part (`_LOOK_KEYS`)
  `resistance` (m²·K/W between the skin and the surface), `absorptance` (solar) and `emissivity`
  (8–14 µm), each (N,). Drawn from the thermal model's own stream: the other attributes and the
  near-infrared reflectances do not depend on it."""
  n = cfg.num_ids
  rng = np.random.default_rng([cfg.seed, 5])
  f32 = np.float32

  def uniform(lo, hi, size=n):
    return rng.uniform(lo, hi, size).astype(f32)

  def clo(ranges, kind):
    """Insulation of each garment: uniform in its kind's range, plus a loose fit's air gap."""
    lo = np.array([r[0] for r in ranges.values()], f32)[kind]
    hi = np.array([r[1] for r in ranges.values()], f32)[kind]
    return (lo + (hi - lo) * uniform(0, 1) + uniform(0.0, 0.3)) * _CLO

  long_sleeves = ids["sleeve"] > 0.5
  upper_kind = np.where(long_sleeves, np.where(rng.random(n) < 0.45, 2, 1), 0)
  resistance = {"upper": clo(_UPPER_CLO, upper_kind), "lower": clo(_LOWER_CLO, ids["lower_kind"])}
  # Hair, shoes, carried things: `through` is the share of the skin's warmth above the air that
  # reaches their surface at `_H_REFERENCE`; a backpack or bag is warmed only where it touches.
  through = dict(through, backpack=0.4 * through["backpack"], bag=0.4 * through["bag"])
  for part, share in through.items():
    resistance[part] = (1.0 / share - 1.0) / _H_REFERENCE
  resistance["skin"] = np.full(n, _SKIN_TISSUE_R, f32)
  emissivity = {"skin": uniform(0.97, 0.99), "hair": uniform(0.90, 0.95),
                "shoes": uniform(0.90, 0.96), "backpack": uniform(0.85, 0.95),
                "bag": uniform(0.85, 0.95), "hat": uniform(0.85, 0.93)}
  for garment in ("upper", "lower"):
    fabric = uniform(0.84, 0.93)  # the fibre's, whatever the dye
    emissivity[garment + "1"] = fabric
    emissivity[garment + "2"] = np.clip(fabric + uniform(-0.01, 0.01), 0.8, 0.95)  # the print's
    resistance[garment + "1"] = resistance[garment + "2"] = resistance.pop(garment)
  # Solar absorptance: sunlight is about half visible, half near infrared; what a surface does
  # not reflect in either band it absorbs (the visible reflectance is the colour's luminance, the
  # near-infrared one the dye's and fibre's reflectance of `_nir_reflectance`).
  absorptance = {part: 0.5 * (1.0 - ids["rgb"][part] @ _LUMINANCE) + 0.5 * (1.0 - ids["nir"][part][:, 0])
                 for part in _LOOK_KEYS}
  def f(d):
    return {k: np.asarray(v, f32) for k, v in d.items()}
  return {"skin_temp": (31.5 + 3.5 * (heat - 0.8) / 0.2).astype(f32), "resistance": f(resistance),
          "absorptance": f(absorptance), "emissivity": f(emissivity)}


def _sky_temperature(t_air):
  """Effective temperature (°C) of a clear sky (Swinbank 1963: T_sky = 0.0552 T_air^1.5, K)."""
  return 0.0552 * (np.asarray(t_air, np.float32) + 273.15) ** 1.5 - 273.15


def _outdoor_reflected(t_air):
  """What a vertical surface outdoors reflects (°C): half sky, half ground at air temperature
  (radiance-weighted)."""
  k = 273.15
  return ((0.5 * (_sky_temperature(t_air) + k) ** 4 + 0.5 * (np.asarray(t_air) + k) ** 4) ** 0.25
          - k).astype(np.float32)


def thermal_surface_temperature(thermal: dict, part: str, t_air, sun, h,
                                t_reflected=None) -> np.ndarray:
  """Apparent temperature (°C) of a part as a thermal camera sees it (`thermal` =
  `identities(...)["thermal"]`, or its rows).

  Steady state of the layer between the skin (temperature T_sk) and the surface: the heat
  conducted through the resistance R plus the absorbed sunshine α·E leaves the surface by
  convection and radiation, h·(T_s − T_air):
      T_s = T_air + (T_sk − T_air + α·E·R) / (1 + R·h).
  A thin shirt (small R) shows nearly the skin's temperature, a thick jacket nearly the air's;
  sunshine warms dark (absorbing) surfaces more, the more so the better insulated. The camera
  sees emission plus reflection: T_app⁴ = ε·T_s⁴ + (1 − ε)·T_reflected⁴ (kelvin; the
  surroundings at `t_reflected`, by default outdoors: `_outdoor_reflected`).
  `t_air`, `sun` (W/m² on the surface), `h` (W/(m²·K)) broadcast against the identities.
  """
  r = thermal["resistance"][part]
  alpha = thermal["absorptance"][part]
  eps = thermal["emissivity"][part]
  t_air = np.asarray(t_air, np.float32)
  t_s = t_air + (thermal["skin_temp"] - t_air + alpha * np.asarray(sun, np.float32) * r) / (1.0 + r * h)
  t_reflected = _outdoor_reflected(t_air) if t_reflected is None else t_reflected
  k = np.float32(273.15)
  return ((eps * (t_s + k) ** 4 + (1 - eps) * (t_reflected + k) ** 4) ** 0.25 - k).astype(np.float32)


def _thermal_rows(thermal: dict, k: np.ndarray) -> dict:
  """The thermal properties of identities `k` (0-based)."""
  return {name: value[k] if name == "skin_temp" else {p: v[k] for p, v in value.items()}
          for name, value in thermal.items()}


# ---------------------------------------------------------------------------------------------
# Which images exist, and how each is taken.

def specs(config: "str | SyntheticConfig", split: "str | None" = None) -> dict:
  """The table of images (no pixels): one row per image, in (split, camid, pid, index) order.

  Keys: `gid` (row in the whole dataset), `pid`, `camid`, `modality`, `index` (1-based, per
  identity and camera), `split` (0 train, 1 test) and the per-image rendering parameters.
  """
  cfg = get_config(config)
  n = cfg.num_ids
  rng = np.random.default_rng([cfg.seed, 1])
  pids = np.arange(1, n + 1)
  if cfg.layout == "sysu":
    present = rng.random((n, 6)) >= cfg.absent_prob
    for cols in ([0, 1, 3, 4], [2, 5]):  # keep one visible and one infrared camera per identity
      missing = ~present[:, cols].any(axis=1)
      keep = np.asarray(cols)[rng.integers(len(cols), size=n)]
      present[np.flatnonzero(missing), keep[missing]] = True
    train = pids <= cfg.num_train_ids
  else:  # RegDB: every identity in both cameras; trial t splits the identities at random
    present = np.ones((n, 2), bool)
    train = np.isin(pids, regdb_train_pids(cfg))
  counts = rng.integers(cfg.min_images, cfg.max_images + 1, size=present.shape) * present
  rows = {"pid": [], "camid": [], "index": [], "split": []}
  for s, in_split in enumerate((train, ~train)):
    for c, cam in enumerate(cfg.cameras):
      reps = counts[in_split, c]
      rows["pid"].append(np.repeat(pids[in_split], reps))
      rows["camid"].append(np.full(reps.sum(), cam))
      rows["index"].append(np.concatenate([np.arange(1, r + 1) for r in reps] + [[]]))
      rows["split"].append(np.full(reps.sum(), s))
  table = {k: np.concatenate(v).astype(np.int64) for k, v in rows.items()}
  m = len(table["pid"])
  table["gid"] = np.arange(m)
  table["modality"] = np.isin(table["camid"], cfg.infrared_cameras).astype(np.int64)
  table.update(_image_params(cfg, table, np.random.default_rng([cfg.seed, 2])))
  if cfg.layout == "regdb":
    _coregister(table)
  if split is not None:
    table = take(table, table["split"] == SPLITS.index(split))
  return table


# What a dual-camera rig shares between its two simultaneous images: the person's pose and
# place, and the scene. Lighting, sensor noise and the camera's own artefacts stay per camera.
_SHARED_PARAMS = ("view", "flip", "scale", "cx", "feet", "stride", "spread", "swing", "horizon",
                  "prop", "prop_x", "prop_w", "prop_h", "phase", "air", "insolation", "sunny")


def _coregister(table: dict) -> None:
  """RegDB's rig films each moment with both cameras: the thermal image with index i of an
  identity shows the pose of the visible image i (shifted by a small parallax)."""
  vis = np.flatnonzero(table["camid"] == REGDB_CAMERAS[0])
  key = {(int(p), int(i)): r for r, p, i in zip(vis, table["pid"][vis], table["index"][vis])}
  ir = np.flatnonzero(table["camid"] == REGDB_CAMERAS[1])
  src = np.array([key[int(p), int(i)] for p, i in zip(table["pid"][ir], table["index"][ir])],
                 np.int64)
  for name in _SHARED_PARAMS:
    table[name][ir] = table[name][src]
  table["cx"][ir] += np.float32(0.02)  # parallax between the two lenses


def regdb_train_pids(config: "str | SyntheticConfig") -> np.ndarray:
  """The training identities of a RegDB-layout config's trial: `num_train_ids` of the pids
  1..num_ids drawn at random (seeded by the config's seed and trial), ascending."""
  cfg = get_config(config)
  if not 1 <= cfg.trial <= 10:
    raise ValueError(f"SyntheticConfig.trial={cfg.trial}: RegDB trials are 1..10")
  perm = np.random.default_rng([cfg.seed, 4, cfg.trial]).permutation(cfg.num_ids) + 1
  return np.sort(perm[:cfg.num_train_ids])


def take(table: dict, rows) -> dict:
  """The rows (mask or indices) of a table of equal-length arrays."""
  return {k: v[rows] for k, v in table.items()}


def _image_params(cfg: SyntheticConfig, table: dict, rng: np.random.Generator) -> dict:
  m = len(table["pid"])
  f32 = np.float32

  def uniform(lo, hi, size=m):
    return rng.uniform(lo, hi, size).astype(f32)

  p = {}
  p["view"] = rng.choice(3, m, p=[0.36, 0.36, 0.28])
  facing = np.where(rng.random(m) < 0.5, -1, 1)
  p["flip"] = np.where(p["view"] == 0, 1, np.where(p["view"] == 1, -1, facing)).astype(f32)
  height = identities(cfg)["height"][table["pid"] - 1]
  p["scale"] = uniform(0.82, 0.90) * height
  p["cx"] = uniform(0.40, 0.60)
  p["feet"] = uniform(0.955, 0.99)
  p["stride"] = uniform(0.0, 0.11)
  p["spread"] = uniform(0.0, 0.03)
  p["swing"] = uniform(-0.10, 0.10)
  p["light"] = uniform(0.82, 1.15)
  p["horizon"] = uniform(0.48, 0.66)
  p["prop"] = rng.random(m) < 0.6
  p["prop_x"] = uniform(0.0, 1.0)
  p["prop_w"] = uniform(0.15, 0.4)
  p["prop_h"] = uniform(0.1, 0.3)
  p["prop_rgb"] = rng.uniform(0.1, 0.9, (m, 3)).astype(f32)
  p["prop_ir"] = uniform(0.45, 0.85)
  p["bg_noise"] = rng.random((m, 5, 5)).astype(f32)
  p["phase"] = uniform(0.0, 1.0)
  p["agc"] = uniform(-0.06, 0.06)
  # The weather of thermal images, from a stream of its own (every draw above is unchanged).
  # A person passes a camera once (RegDB records each person in one pass, 10 frames): air
  # temperature and sun are drawn per identity and camera, the insolation varying a little
  # between the frames of a pass. `air` and `insolation` are quantiles that each camera maps to
  # its range (`_thermal_conditions`), `sunny` whether the sun is out (outdoors).
  weather = np.random.default_rng([cfg.seed, 6])
  session = (table["pid"] - 1, table["camid"])
  shape = (cfg.num_ids, max(CAMERAS) + 1)
  p["air"] = weather.uniform(0.0, 1.0, shape).astype(f32)[session]
  insolation = weather.uniform(0.0, 1.0, shape).astype(f32)[session]
  p["sunny"] = (weather.random(shape) < 0.6)[session]
  p["insolation"] = np.clip(insolation + weather.uniform(-0.1, 0.1, m), 0, 1).astype(f32)
  return p


# ---------------------------------------------------------------------------------------------
# Rendering.

# Per-camera styles of the visible cameras: gain, tint, horizontal light gradient.
_VISIBLE_LIGHT = {
    1: (0.95, (1.06, 0.98, 0.84), 0.15),   # indoor lobby, warm light
    2: (0.78, (0.90, 1.00, 1.08), -0.25),  # corridor, dim fluorescent
    4: (1.10, (1.00, 1.00, 1.04), 0.35),   # outdoor, sunny facade
    5: (0.85, (0.94, 1.02, 0.92), -0.1),   # outdoor, park in shade
}


def _col(a: np.ndarray) -> np.ndarray:
  """(N,) -> (N, 1, 1) for broadcasting against (N, H, W)."""
  return np.asarray(a, np.float32)[:, None, None]


def _alpha(d: np.ndarray, scale: np.ndarray) -> np.ndarray:
  """Soft coverage of a signed distance `d` (person units) with `scale` pixels per unit."""
  return np.clip(0.5 - d * scale, 0.0, 1.0)


def _ellipse(u, v, cu, cv, ru, rv):
  """Approximate signed distance to an axis-aligned ellipse (params (N, 1, 1))."""
  k = np.sqrt(((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2)
  return (k - 1.0) * np.minimum(ru, rv)


def _box(u, v, cu, cv, hu, hv):
  """Signed (Chebyshev) distance to an axis-aligned box with half sizes hu, hv."""
  return np.maximum(np.abs(u - cu) - hu, np.abs(v - cv) - hv)


def _capsule(u, v, u0, v0, u1, v1, r):
  """Signed distance to a thick segment, and the position t in [0, 1] along it."""
  du, dv = u1 - u0, v1 - v0
  pu, pv = u - u0, v - v0
  t = np.clip((pu * du + pv * dv) * (1.0 / (du * du + dv * dv + 1e-6)), 0.0, 1.0)
  d = np.sqrt((pu - t * du) ** 2 + (pv - t * dv) ** 2) - r
  return d, t


def _pattern(kind, freq, grid, u, v, phase):
  """Texture in [0, 1] (0: first colour, 1: second) for per-image pattern kinds."""
  out = np.zeros(np.broadcast_shapes(u.shape, v.shape), np.float32)
  kinds = set(np.unique(kind).tolist())
  f = _col(freq) * (2 * np.pi)
  ph = _col(phase) * (2 * np.pi)
  if 1 in kinds or 3 in kinds:
    sv = np.sin(v * f + ph)
  if 2 in kinds or 3 in kinds:
    su = np.sin(u * f)
  for k in kinds - {0}:
    if k == 1:
      p = np.clip(sv * 2.5 + 0.5, 0, 1)
    elif k == 2:
      p = np.clip(su * 2.5 + 0.5, 0, 1)
    elif k == 3:
      p = np.clip(sv * su * 4.0 + 0.5, 0, 1)
    else:
      iy = np.floor(v * _col(freq * 0.8)).astype(np.int32) % grid.shape[1]
      ix = np.floor((u + 1.0) * _col(freq * 0.8)).astype(np.int32) % grid.shape[2]
      p = grid[np.arange(len(kind))[:, None, None], iy, ix]
    out = np.where(_col(kind == k) > 0, p, out)
  return out


class _Canvas:
  """Back-to-front `over` compositing of soft layers, premultiplied, channels first.

  Colours are (C, N, H, W) or (C, N, 1, 1) (channels first keeps numpy's inner loops long).
  Each layer is computed and painted only on the band of rows where it can appear.
  """

  def __init__(self, u, v, scale, channels):
    self.u, self.v, self.scale = u, v, scale  # (N, 1, W), (N, H, 1), (N, 1, 1)
    n, h, w = len(v), v.shape[1], u.shape[2]
    self.color = np.zeros((channels, n, h, w), np.float32)
    self.alpha = np.zeros((n, h, w), np.float32)
    self._margin = 1.5 / float(scale.min())  # a pixel and a half, in person units

  def rows(self, lo, hi) -> slice:
    """The band of rows where some image has lo <= v <= hi (scalars or (N, 1, 1))."""
    inside = ((self.v >= lo - self._margin) & (self.v <= hi + self._margin)).any(axis=(0, 2))
    idx = np.flatnonzero(inside)
    return slice(int(idx[0]), int(idx[-1]) + 1) if len(idx) else slice(0, 0)

  def band(self, lo, hi):
    """`rows(lo, hi)` with the v coordinates of that band."""
    r = self.rows(lo, hi)
    return r, self.v[:, r]

  def paint(self, rows, d, value, gate=None):
    """Paints `value` over the band `rows` with the coverage of signed distance `d`."""
    alpha = _alpha(d, self.scale)
    if gate is not None:
      alpha *= gate
    color = self.color[:, :, rows]
    color += (value - color) * alpha
    acc = self.alpha[:, rows]
    acc += alpha * (1.0 - acc)


def _mix(a, b, t):
  """a + (b - a) t with t (N, H, W) and colours (C, N, 1, 1) or (C, N, H, W)."""
  return a + (b - a) * t


def _rows(x, rows):
  """The band `rows` of an (..., N, H, W) array, or x itself if it has no image axes."""
  return x[..., rows, :] if x.shape[-2] > 1 else x


def _render_person(ids, sp, u, v, scale, infrared, nir=False, values=None):
  """Renders the people of a batch: premultiplied colour (C, N, H, W) and coverage (N, H, W).
  `values` (part -> (N,), one channel) replaces the identities' per-part values (thermal:
  each image's temperatures)."""
  k = sp["pid"] - 1
  if values is None:
    look = ids["ir" if infrared else "rgb"]
    val = {key: look[key][k].T[:, :, None, None] for key in _LOOK_KEYS}
  else:
    val = {key: np.asarray(values[key], np.float32)[None, :, None, None] for key in _LOOK_KEYS}
  g = {key: _col(ids[key][k]) for key in ("shoulder", "hip", "head", "leg", "arm", "sleeve")}
  cv = _Canvas(u, v, scale, 1 if infrared else 3)
  view = sp["view"]
  side = _col(view == 2)
  front, back = _col(view == 0), _col(view == 1)
  depth = 1.0 - 0.38 * side  # side views are narrower
  sw, hw = g["shoulder"] * depth, g["hip"] * depth
  rh = g["head"]
  head_v = 1.0 - rh
  shoulder_v = head_v - rh - 0.045
  hip_v, waist_v = np.float32(0.47), np.float32(0.52)
  swing = _col(sp["swing"])
  wrist_v = hip_v - 0.01 + 0.5 * np.abs(swing)
  kind = ids["lower_kind"][k]

  # Garment textures, computed on the bands where garments can be.
  upper = np.zeros(cv.color.shape, np.float32)
  r, vb = cv.band(wrist_v - 0.04, shoulder_v + 0.02)
  upper[:, :, r] = _mix(val["upper1"], val["upper2"], _pattern(
      ids["upper_pattern"][k], ids["upper_freq"][k], ids["noise"][k, 0], u, vb, sp["phase"]))
  lower = np.zeros(cv.color.shape, np.float32)
  r, vb = cv.band(0.0, waist_v + 0.04)
  lower[:, :, r] = _mix(val["lower1"], val["lower2"], _pattern(
      ids["lower_pattern"][k], ids["lower_freq"][k], ids["noise"][k, 1], u, vb, sp["phase"]))

  # Long hair behind the head (front and side views).
  long_hair = _col(ids["long_hair"][k]) * (1 - back)
  if long_hair.any():
    r, vb = cv.band(head_v - 2.1 * rh, head_v + 0.3 * rh)
    cv.paint(r, _box(u, vb, 0.25 * rh * side, head_v - 0.9 * rh, 0.95 * rh, 1.2 * rh),
             val["hair"], long_hair)

  # Legs: front/back views stand with feet apart; side views stride. Shorts show bare legs.
  stride, spread = _col(sp["stride"]), _col(sp["spread"])
  hip_u = 0.5 * hw * (1 - side)
  ankle_u = (0.5 * hw + spread) * (1 - side) + stride * side
  ankle_v = 0.05 + 0.02 * side
  r, vb = cv.band(ankle_v - g["leg"], hip_v + g["leg"])
  d1, t1 = _capsule(u, vb, hip_u, hip_v, ankle_u, ankle_v, g["leg"])
  d2, t2 = _capsule(u, vb, -hip_u, hip_v, -ankle_u, ankle_v, g["leg"])
  cover = _col(np.where(kind == 0, 0.97, np.where(kind == 1, 0.42, 0.0)))
  bare = np.clip((np.where(d1 < d2, t1, t2) - cover) * 25.0 + 0.5, 0, 1)
  cv.paint(r, np.minimum(d1, d2), _mix(_rows(lower, r), val["skin"], bare))
  # Shoes at the ankles (pointing forward, i.e. to -u, in side views).
  toe = -0.03 * side
  r, vb = cv.band(0.0, 0.06)
  ru = g["leg"] + 0.01 + 0.02 * side
  d = np.minimum(_ellipse(u, vb, ankle_u + toe, 0.028, ru, 0.03),
                 _ellipse(u, vb, -ankle_u + toe, 0.028, ru, 0.03))
  cv.paint(r, d, val["shoes"])

  # Arms: in side views the far arm is behind the torso; sleeves, then bare skin.
  sh_u = (sw - 0.5 * g["arm"]) * (1 - side)
  sh_v = shoulder_v - 0.015
  wrist_u = (sw + 0.015 + 0.3 * np.abs(swing)) * (1 - side) + swing * side
  r_arm, vb = cv.band(wrist_v - g["arm"], sh_v + g["arm"])
  da1, ta1 = _capsule(u, vb, sh_u, sh_v, wrist_u, wrist_v, g["arm"])
  da2, ta2 = _capsule(u, vb, -sh_u, sh_v, -wrist_u, wrist_v, g["arm"])
  arm_upper = _rows(upper, r_arm)
  arm_bare = lambda t: np.clip((t - g["sleeve"]) * 25.0 + 0.5, 0, 1)  # noqa: E731
  if side.any():
    cv.paint(r_arm, da2, _mix(arm_upper, val["skin"], arm_bare(ta2)), side)

  # Skirt, neck, torso (the lower garment shows below the waist).
  skirt = _col(kind == 2)
  if skirt.any():
    top, bottom = waist_v + 0.02, np.float32(0.29)
    r, vb = cv.band(bottom, top)
    w = hw + 0.005 + (0.25 * hw + 0.03) * (top - vb) / (top - bottom)
    cv.paint(r, np.maximum(np.abs(u) - w, np.maximum(vb - top, bottom - vb)), _rows(lower, r),
             skirt)
  r, vb = cv.band(shoulder_v - 0.03, shoulder_v + 0.07)
  cv.paint(r, _box(u, vb, 0.0, shoulder_v + 0.02, 0.022, 0.05), val["skin"])
  r, vb = cv.band(hip_v - 0.01, shoulder_v)
  w = hw + (sw - hw) * np.clip((vb - hip_v) / (shoulder_v - hip_v), 0, 1)
  w = w - 0.25 * np.clip(vb - shoulder_v + 0.03, 0, None)  # rounded shoulders
  d = np.maximum(np.abs(u) - w, np.maximum(vb - shoulder_v, hip_v - 0.01 - vb))
  below_waist = np.clip((waist_v - vb) * scale + 0.5, 0, 1)
  cv.paint(r, d, _mix(_rows(upper, r), _rows(lower, r), below_waist))

  # Backpack: the pack in back views, sticking out behind in side views, straps in front views.
  pack = _col(ids["backpack"][k])
  if pack.any():
    r, vb = cv.band(shoulder_v - 0.25, shoulder_v + 0.01)
    d_back = _box(u, vb, 0.0, shoulder_v - 0.13, 0.08, 0.12)
    d_side = _box(u, vb, sw + 0.035, shoulder_v - 0.13, 0.045, 0.115)
    d_straps = _box(np.abs(u), vb, 0.065, shoulder_v - 0.09, 0.012, 0.1)
    d = np.where(back > 0, d_back, np.where(side > 0, d_side, d_straps))
    cv.paint(r, d, val["backpack"], pack)

  # The near arm (side views) or both arms (front and back views).
  d = np.where(side > 0, da1, np.minimum(da1, da2))
  ta = np.where((side > 0) | (da1 < da2), ta1, ta2)
  cv.paint(r_arm, d, _mix(arm_upper, val["skin"], arm_bare(ta)))

  # Shoulder bag on the person's right, strap across the chest.
  bag = _col(ids["bag"][k])
  if bag.any():
    r, vb = cv.band(hip_v - 0.02, shoulder_v + 0.02)
    d_bag = _box(u, vb, (sw + 0.05) * (1 - side), hip_v + 0.04, 0.045 + 0.01 * side, 0.055)
    d_strap, _ = _capsule(u, vb, -0.7 * sw * (1 - side), shoulder_v,
                          (sw + 0.04) * (1 - side), hip_v + 0.08, 0.011)
    cv.paint(r, np.minimum(d_bag, d_strap), val["bag"], bag)

  # Head: face and hair depend on the view; hats on top.
  head_u = -0.012 * side
  r, vb = cv.band(head_v - rh, head_v + 1.3 * rh)
  cv.paint(r, _ellipse(u, vb, head_u, head_v, 0.8 * rh, rh), val["skin"])
  d_hair = _ellipse(u, vb, head_u, head_v + 0.06 * rh, 0.86 * rh, 1.02 * rh)
  cap = np.clip((vb - head_v - 0.35 * rh) * scale + 0.5, 0, 1)
  nape = np.clip((u - head_u + 0.15 * rh) * scale + 0.5, 0, 1)
  cv.paint(r, d_hair, val["hair"], front * cap + back + side * np.maximum(cap, nape))
  hat = _col(ids["hat"][k])
  if hat.any():
    d_crown = np.maximum(_ellipse(u, vb, head_u, head_v + 0.25 * rh, 0.9 * rh, 0.85 * rh),
                         head_v + 0.3 * rh - vb)
    d_brim = _box(u, vb, head_u - 0.5 * rh * side, head_v + 0.33 * rh,
                  rh * (1.0 + 0.2 * side), 0.012)
    cv.paint(r, np.minimum(d_crown, d_brim), val["hat"], hat)

  # Shading: a cylinder lit from the front and above (weaker in infrared).
  # (Near infrared: lit by the camera's own illuminator, so from the viewing direction.)
  strength = 0.25 if nir else 0.12 if infrared else 0.35
  shade = 1.0 - strength * np.clip((u / (sw + 0.03)) ** 2, 0, 1) + (0.0 if infrared else 0.08) * v
  return cv.color * shade, cv.alpha


def _lowfreq(grid, height, width):
  """Bilinear upsampling of per-image grids (N, gh, gw) to (N, H, W)."""
  def interp(n_out, n_in):
    pos = (np.arange(n_out) + 0.5) * (n_in - 1) / n_out
    lo = np.minimum(np.floor(pos).astype(int), n_in - 2)
    w = (pos - lo).astype(np.float32)
    m = np.zeros((n_out, n_in), np.float32)
    m[np.arange(n_out), lo] = 1 - w
    m[np.arange(n_out), lo + 1] = w
    return m
  return interp(height, grid.shape[1]) @ grid @ interp(width, grid.shape[2]).T


def _background(cam, sp, h, w):
  """Camera-styled background of a visible camera: (3, N, H, W) reflectance."""
  n = len(sp["pid"])
  y = ((np.arange(h, dtype=np.float32) + 0.5) / h)[None, :, None]
  x = ((np.arange(w, dtype=np.float32) + 0.5) / w)[None, None, :]
  hz = _col(sp["horizon"])
  ph = _col(sp["phase"])
  noise = _lowfreq(sp["bg_noise"], h, w) - 0.5
  floor = np.clip((y - hz) * h + 0.5, 0, 1)  # 1 below the horizon
  prop = ((np.abs(x - _col(sp["prop_x"])) < _col(sp["prop_w"]) / 2) &
          (y < hz + 0.02) & (y > hz - _col(sp["prop_h"])) & (_col(sp["prop"]) > 0))

  def rgb(c):
    return np.asarray(c, np.float32)[:, None, None, None]

  two_pi = np.float32(2 * np.pi)
  if cam == 1:  # lobby: panelled wall, tiled floor
    panels = (np.sin((x * 3 + ph) * two_pi) > 0.9).astype(np.float32)
    wall = rgb((0.80, 0.73, 0.60)) - 0.12 * panels
    tiles = np.sign(np.sin(x * 8 * two_pi) * np.sin((y * 14 + ph) * two_pi)).astype(np.float32)
    ground = rgb((0.58, 0.47, 0.36)) + 0.05 * tiles
  elif cam == 2:  # corridor: doors, grey floor with a gradient
    door = ((np.abs(((x + ph) % 0.5) - 0.25) < 0.09) & (y > hz - 0.42)).astype(np.float32)
    wall = _mix(rgb((0.62, 0.66, 0.70)), rgb((0.38, 0.30, 0.26)), door)
    ground = rgb((0.45, 0.46, 0.50)) + 0.2 * (y - hz)
  elif cam == 4:  # facade with a grid of windows, pavement
    windows = ((np.sin((x * 5 + ph) * two_pi) > 0.2) &
               (np.sin(y * 9 * two_pi) > 0.1)).astype(np.float32)
    wall = _mix(rgb((0.75, 0.70, 0.62)), rgb((0.25, 0.32, 0.42)), windows)
    ground = rgb((0.55, 0.55, 0.55)) + 0.15 * noise
  elif cam == 5:  # park: sky, foliage, a sandy path
    sky = np.clip((0.18 + 0.1 * noise - y) * h, 0, 1)
    foliage = rgb((0.22, 0.42, 0.18)) + noise * rgb((0.21, 0.35, 0.18))
    wall = _mix(foliage, rgb((0.78, 0.86, 0.95)), sky)
    ground = rgb((0.62, 0.56, 0.44)) + 0.12 * noise
  else:
    raise ValueError(f"camera {cam} is not a visible camera")
  bg = _mix(wall, ground, np.broadcast_to(floor, (n, h, w)))
  bg = np.where(prop, sp["prop_rgb"].T[:, :, None, None], bg) + 0.06 * noise
  return bg.astype(np.float32)


def _background_nir(cam, sp, h, w):
  """NIR reflectance of the scene behind the person (1, N, H, W): painted walls and floors
  reflect moderately, foliage brightly (the red edge of chlorophyll), the sky not at all (the
  illuminator does not reach it; the sun's NIR is filtered at night)."""
  y = ((np.arange(h, dtype=np.float32) + 0.5) / h)[None, :, None]
  x = ((np.arange(w, dtype=np.float32) + 0.5) / w)[None, None, :]
  hz = _col(sp["horizon"])
  noise = _lowfreq(sp["bg_noise"], h, w) - 0.5
  floor = np.clip((y - hz) * h + 0.5, 0, 1)
  prop = ((np.abs(x - _col(sp["prop_x"])) < _col(sp["prop_w"]) / 2) &
          (y < hz + 0.02) & (y > hz - _col(sp["prop_h"])) & (_col(sp["prop"]) > 0))
  if cam == 3:  # indoor room: painted wall, tiled floor, furniture
    wall = 0.55 + 0.08 * noise
    ground = 0.40 + 0.06 * noise + 0.0 * x
  else:  # cam 6, outdoor: dark sky, bright foliage, pavement
    sky = np.clip((0.22 + 0.12 * noise - y) * h, 0, 1)
    wall = _mix(0.62 + 0.2 * noise, np.float32(0.02), sky)
    ground = 0.33 + 0.1 * noise + 0.0 * x
  bg = _mix(wall, ground, floor)
  bg = np.where(prop, _col(sp["prop_ir"]) - 0.3, bg)  # props: reflectance 0.15..0.55
  return bg[None].astype(np.float32)


# NIR cameras: illuminator reach (the background's irradiance relative to a person at the
# reference distance), vignetting, blur sigma (pixels at 128 rows), read noise.
_NIR_SENSOR = {
    3: (0.55, 0.30, 0.9, 0.025),  # indoor: walls close behind the person
    6: (0.30, 0.40, 1.2, 0.035),  # outdoor: the background is far, dimmer, noisier
}


def _nir_sensor(cam, sp, person, alpha, noise, h, w):
  """Near-infrared image formation: (reflectance × irradiance of the camera's illuminator) →
  blur → automatic gain → shot and read noise → gamma. The irradiance falls off with distance
  (inverse square: a person nearer the camera, i.e. larger, is brighter; the background is
  further), and towards the image corners (the illuminator's cone, vignetting)."""
  reach, vignette, sigma, read_noise = _NIR_SENSOR[cam]
  y = ((np.arange(h, dtype=np.float32) + 0.5) / h - 0.5)[None, :, None]
  x = ((np.arange(w, dtype=np.float32) + 0.5) / w - 0.5)[None, None, :]
  cone = 1.0 - vignette * (4 * x * x + 2.5 * y * y)
  near = (_col(sp["scale"]) / 0.78) ** 2  # inverse square law: size ∝ 1 / distance
  # The floor in front of the person is nearer than the wall behind: brighter towards the bottom.
  depth = reach * (1.0 + 0.8 * np.clip(y + 0.5 - _col(sp["horizon"]), 0, None))
  img = (_background_nir(cam, sp, h, w)[0] * (1.0 - alpha) * depth + person[0] * near) * cone
  img = _blur(img, sigma * h / 128)
  # Automatic gain: exposure set on the central region, where the person is, partly corrected.
  centre = img[:, h // 4: 3 * h // 4, w // 4: 3 * w // 4].mean(axis=(1, 2))
  img = img * _col(0.45 / (0.5 * centre + 0.5 * 0.45)) * _col(1.0 + sp["agc"])
  img = img + np.sqrt(np.clip(img, 0, None)) * 0.03 * noise[0] + read_noise * noise[0, :, ::-1]
  img = np.clip(img, 0, 1) ** 0.8
  img = (img * 255 + 0.5).astype(np.uint8)
  return np.broadcast_to(img[None], (3,) + img.shape).transpose(1, 2, 3, 0)


# Thermal cameras. Scene: air temperature range (°C), insolation on a vertical surface when sunny
# and in shade (W/m², upper ends), surface coefficient h (W/(m²·K): convection + radiation, still
# air indoors, a breeze outdoors). Sensor: optics blur sigma (pixels at 128 rows), NETD (K, the
# temporal noise), residual fixed-pattern non-uniformity after the camera's correction (K).
_THERMAL_SCENE = {
    3: dict(air=(19.0, 25.0), sun=(0.0, 0.0), h=8.0),  # indoor
    6: dict(air=(5.0, 25.0), sun=(450.0, 50.0), h=12.0),  # outdoor
}
_THERMAL_SENSOR = {3: (1.0, 0.05, 0.12), 6: (1.3, 0.08, 0.15)}
_AGC_MIN_SPAN = 6.0  # K: the automatic gain's cap (a flatter scene is not stretched further)


def _thermal_conditions(cam, sp):
  """Per image: air temperature (°C), insolation (W/m²), h, reflected temperature (°C)."""
  scene = _THERMAL_SCENE[cam]
  lo, hi = scene["air"]
  t_air = (lo + (hi - lo) * sp["air"]).astype(np.float32)
  sunny, shade = scene["sun"]
  sun = np.where(sp["sunny"], sunny * (0.33 + 0.67 * sp["insolation"]),
                 shade * sp["insolation"]).astype(np.float32)
  t_reflected = t_air if cam == 3 else _outdoor_reflected(t_air)
  return t_air, sun, scene["h"], t_reflected


def _background_thermal(cam, sp, h, w, t_air, sun):
  """Apparent temperature (°C) of the scene behind the person (N, H, W). Indoors: walls at
  about the air temperature, the floor a little cooler, warm radiators, screens and lamps.
  Outdoors: the clear sky far colder than the air (`_sky_temperature`), facades near the air
  temperature, sun-warmed pavement, warm cars and vents."""
  y = ((np.arange(h, dtype=np.float32) + 0.5) / h)[None, :, None]
  x = ((np.arange(w, dtype=np.float32) + 0.5) / w)[None, None, :]
  hz = _col(sp["horizon"])
  noise = _lowfreq(sp["bg_noise"], h, w) - 0.5
  floor = np.clip((y - hz) * h + 0.5, 0, 1)
  prop = ((np.abs(x - _col(sp["prop_x"])) < _col(sp["prop_w"]) / 2) &
          (y < hz + 0.02) & (y > hz - _col(sp["prop_h"])) & (_col(sp["prop"]) > 0))
  t, s = _col(t_air), _col(sun)
  if cam == 3:
    wall = t - 0.5 + 1.5 * noise
    ground = t - 1.5 + 1.0 * noise + 0.0 * x
    warm = t + 5.0 + 40.0 * (_col(sp["prop_ir"]) - 0.45)  # 5..21 K above the air
  else:
    sky = np.clip((0.25 + 0.15 * noise - y) * h, 0, 1)
    wall = _mix(t + 0.01 * s + 3.0 * noise, _col(_sky_temperature(t_air)), sky)
    ground = t + 0.02 * s * (1.0 + noise) + 1.5 * (y - hz) + 0.0 * x  # horizontal: more sun
    warm = t + 3.0 + 30.0 * (_col(sp["prop_ir"]) - 0.45)  # 3..15 K above the air
  bg = _mix(wall, ground, floor)
  return np.where(prop, warm, bg).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _fixed_pattern(seed, cam, h, w):
  """A camera's residual non-uniformity after its correction (H, W), unit scale: per-pixel
  offsets, column offsets (the read-out), and a smooth centre-to-edge offset (the optics'
  and housing's own radiation)."""
  rng = np.random.default_rng([seed, 7, cam])
  y = ((np.arange(h) + 0.5) / h - 0.5)[:, None]
  x = ((np.arange(w) + 0.5) / w - 0.5)[None, :]
  radial = 1.5 * (0.5 - (4 * x * x + 2 * y * y))
  return (rng.standard_normal((h, w)) + 0.7 * rng.standard_normal((1, w)) + radial).astype(np.float32)


def _plateau_equalization(img, agc):
  """The automatic gain of thermal cores (FLIR Tau 2's default, "plateau equalization"): a
  histogram equalization whose bins are clipped at a plateau, so that large uniform regions
  (sky, pavement) get fewer grey levels and the person more; the tails (`_AGC_TAIL`) are
  rejected, and the gain is capped (a scene spanning less than `_AGC_MIN_SPAN` kelvin is not
  stretched further). `img` (N, H, W) in °C; returns [0, 1]; `agc` (N,) shifts the level."""
  out = np.empty_like(img)
  for i, frame in enumerate(img):
    lo, hi = np.quantile(frame, (_AGC_TAIL, 1.0 - _AGC_TAIL))
    pad = 0.5 * max(_AGC_MIN_SPAN - (hi - lo), 0.0)
    lo, hi = lo - pad, hi + pad
    counts, edges = np.histogram(frame, bins=_AGC_BINS, range=(lo, hi))
    counts = np.minimum(counts, _AGC_PLATEAU * frame.size / _AGC_BINS) + 1e-6
    cdf = np.concatenate([[0.0], np.cumsum(counts)]) / counts.sum()
    out[i] = np.interp(frame, edges, cdf) - agc[i]
  return np.clip(out, 0, 1)


_AGC_BINS, _AGC_PLATEAU, _AGC_TAIL = 64, 3.0, 0.005


def _thermal_sensor(seed, cam, sp, img, noise, h, w):
  """Thermal image formation from the scene's apparent temperature (N, H, W), °C: the optics'
  blur, a bolometer array of half the visible camera's resolution (2×2 blocks, interpolated for
  display), fixed-pattern non-uniformity and temporal noise (NETD), then the automatic gain
  (`_plateau_equalization`: the frame's absolute temperatures are lost)."""
  sigma, netd, fpn = _THERMAL_SENSOR[cam]
  n = len(img)
  img = _blur(img, sigma * h / 128)
  if h % 2 == 0 and w % 2 == 0:
    img = img.reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
    img = _blur(np.repeat(np.repeat(img, 2, axis=1), 2, axis=2), 0.6 * h / 128)
  img = img + fpn * _fixed_pattern(seed, cam, h, w) + netd * noise
  img = _plateau_equalization(img, sp["agc"])
  img = (img * 255 + 0.5).astype(np.uint8)
  return np.broadcast_to(img[None], (3,) + img.shape).transpose(1, 2, 3, 0)


def _thermal_camera(cfg, ids, sp, u, v, hp, cam):
  """Renders a batch of a thermal camera: uint8 (N, H, W, 3). Each part's apparent temperature
  under the image's weather (`thermal_surface_temperature`), rendered as its excess over the air
  (the cylinder shading of `_render_person` then lowers it towards the limbs: emissivity falls at
  grazing angles), over the scene's temperatures, through `_thermal_sensor`."""
  h, w = cfg.height, cfg.width
  t_air, sun, h_surface, t_reflected = _thermal_conditions(cam, sp)
  rows = _thermal_rows(ids["thermal"], sp["pid"] - 1)
  excess = {part: thermal_surface_temperature(rows, part, t_air, sun, h_surface, t_reflected) - t_air
            for part in _LOOK_KEYS}
  person, alpha = _render_person(ids, sp, u, v, hp, True, values=excess)
  img = _background_thermal(cam, sp, h, w, t_air, sun) * (1.0 - alpha) + _col(t_air) * alpha + person[0]
  noise = _noise_bank(cfg.seed, cam, 1, h, w)[0, sp["gid"] % _NOISE_BANK]
  return _thermal_sensor(cfg.seed, cam, sp, img, noise, h, w)


def _blur(img, sigma):
  """Separable Gaussian blur over the last two axes, edge padded."""
  r = max(1, int(np.ceil(2 * sigma)))
  k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2).astype(np.float32)
  k /= k.sum()
  p = np.pad(img, [(0, 0)] * (img.ndim - 2) + [(r, r), (0, 0)], mode="edge")
  size = img.shape[-2]
  img = sum(k[i] * p[..., i:i + size, :] for i in range(2 * r + 1))
  p = np.pad(img, [(0, 0)] * (img.ndim - 1) + [(r, r)], mode="edge")
  size = img.shape[-1]
  return sum(k[i] * p[..., i:i + size] for i in range(2 * r + 1))


def render(config: "str | SyntheticConfig", table: dict, ids: "dict | None" = None) -> np.ndarray:
  """Renders the images of `table` (rows of `specs(config)`): uint8 (N, H, W, 3).

  Each image depends only on the config and its own row, not on which rows are rendered
  together. `ids` (`identities(config)`) may be passed to save recomputing them.
  """
  cfg = get_config(config)
  ids = identities(cfg) if ids is None else ids
  h, w = cfg.height, cfg.width
  out = np.empty((len(table["pid"]), h, w, 3), np.uint8)
  for cam in np.unique(table["camid"]).tolist():
    rows = np.flatnonzero(table["camid"] == cam)
    rows = rows[np.argsort(table["scale"][rows], kind="stable")]  # similar sizes: tight bands
    style = cam if cfg.layout == "sysu" else _REGDB_STYLE[cam]
    for start in range(0, len(rows), _BATCH):
      sel = rows[start:start + _BATCH]
      out[sel] = _render_camera(cfg, ids, take(table, sel), style)
  return out


_BATCH = 32  # images rendered together: small enough for the arrays to stay in cache
_NOISE_BANK = 61  # sensor-noise fields per camera; image gid uses field gid % 61


@functools.lru_cache(maxsize=8)
def _noise_bank(seed, cam, channels, h, w):
  """Standard normal sensor-noise fields (C, K, H, W) of a camera (drawn once, then reused)."""
  rng = np.random.default_rng([seed, 3, cam])
  return rng.standard_normal((channels, _NOISE_BANK, h, w), dtype=np.float32)


def _render_camera(cfg, ids, sp, cam):
  """Renders a batch of one camera: uint8 (N, H, W, 3)."""
  h, w = cfg.height, cfg.width
  infrared = cam in INFRARED_CAMS
  hp = _col(sp["scale"] * h)  # pixels per person height
  x = (np.arange(w, dtype=np.float32) + 0.5)[None, None, :]
  y = (np.arange(h, dtype=np.float32) + 0.5)[None, :, None]
  u = (x - _col(sp["cx"] * w)) / hp * _col(sp["flip"])
  v = (_col(sp["feet"] * h) - y) / hp
  nir = infrared and cfg.infrared == "nir"
  if infrared and not nir:
    return _thermal_camera(cfg, ids, sp, u, v, hp, cam)
  person, alpha = _render_person(ids, sp, u, v, hp, infrared, nir)
  channels = 1 if infrared else 3
  noise = _noise_bank(cfg.seed, cam, channels, h, w)[:, sp["gid"] % _NOISE_BANK]
  if nir:
    return _nir_sensor(cam, sp, person, alpha, noise, h, w)
  img = _background(cam, sp, h, w) * (1.0 - alpha) + person
  gain, tint, gradient = _VISIBLE_LIGHT[cam]
  light = (gain * _col(sp["light"]) * (1 + gradient * (x / w - 0.5)))
  img = img * light * np.asarray(tint, np.float32)[:, None, None, None] + 0.015 * noise
  img = np.clip(img, 0, 1)
  img = (img * 255 + 0.5).astype(np.uint8)
  return np.broadcast_to(img, (3,) + img.shape[1:]).transpose(1, 2, 3, 0)


# ---------------------------------------------------------------------------------------------
# Whole splits.

def _records(cfg, table, images):
  files = np.array([f"cam{c}/{p:04d}/{i:04d}.png"
                    for c, p, i in zip(table["camid"], table["pid"], table["index"])], dtype=object)
  return {"image": images, "pid": table["pid"], "camid": table["camid"],
          "modality": table["modality"], "file": files}


def generate(config: "str | SyntheticConfig", split: str) -> dict:
  """All images of a split: `image` uint8 (N, H, W, 3), `pid`, `camid`, `modality` int64,
  `file` (object array of str), in (camid, pid, index) order."""
  cfg = get_config(config)
  table = specs(cfg, split)
  return _records(cfg, table, render(cfg, table))


def iter_chunks(config: "str | SyntheticConfig", split: str,
                chunk_size: int = 256) -> Iterator[dict]:
  """`generate` in chunks of at most `chunk_size` images (same records, bounded memory)."""
  cfg = get_config(config)
  table = specs(cfg, split)
  ids = identities(cfg)
  for start in range(0, len(table["pid"]), chunk_size):
    part = take(table, slice(start, start + chunk_size))
    yield _records(cfg, part, render(cfg, part, ids))


def encode_png(image: np.ndarray) -> bytes:
  """PNG bytes of a uint8 image (PIL; lossless)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="PNG")
  return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Diagnostics.

def raw_pixel_features(images: np.ndarray, size=(32, 16), edges: bool = False) -> np.ndarray:
  """Grayscale, area-resized to `size`, mean-removed, flattened, L2-normalised: (N, h*w).

  With `edges`, the grayscale image is first replaced by its gradient magnitude (|dx| + |dy|),
  which ignores which side of an edge is brighter: a crude contrast-invariant feature.
  """
  gray = images.astype(np.float32).mean(axis=-1)
  if edges:
    grad = np.zeros_like(gray)
    grad[:, :-1, :] += np.abs(np.diff(gray, axis=1))
    grad[:, :, :-1] += np.abs(np.diff(gray, axis=2))
    gray = grad
  n, h, w = gray.shape
  th, tw = size
  if h % th or w % tw:
    raise ValueError(f"image size {(h, w)} is not a multiple of {size}")
  small = gray.reshape(n, th, h // th, tw, w // tw).mean(axis=(2, 4)).reshape(n, -1)
  small -= small.mean(axis=1, keepdims=True)
  return small / (np.linalg.norm(small, axis=1, keepdims=True) + 1e-6)


def raw_pixel_rank1(data: dict, query_modality: int, gallery_modality: int,
                    size=(32, 16), edges: bool = False, other_camera: bool = True) -> float:
  """Rank-1 of matching raw pixels: each query against the gallery images of other cameras.

  Queries are the images of `query_modality`, the gallery the images of `gallery_modality`
  (all of them: multi-shot), Euclidean distance between `raw_pixel_features`. Queries whose
  identity has no gallery image in another camera are skipped. `other_camera=False` (RegDB's
  one camera per modality) only removes the query image itself from the gallery.
  """
  feats = raw_pixel_features(data["image"], size, edges)
  q = np.flatnonzero(data["modality"] == query_modality)
  g = np.flatnonzero(data["modality"] == gallery_modality)
  dist = 2.0 - 2.0 * feats[q] @ feats[g].T  # squared Euclidean of unit vectors
  if other_camera:
    dist[data["camid"][q][:, None] == data["camid"][g][None, :]] = np.inf
  else:
    dist[q[:, None] == g[None, :]] = np.inf
  valid = ((data["pid"][q][:, None] == data["pid"][g][None, :]) & np.isfinite(dist)).any(1)
  best = g[np.argmin(dist, axis=1)]
  return float((data["pid"][best] == data["pid"][q])[valid].mean())


def draw_grid(config: "str | SyntheticConfig", path: str, num_ids: int = 6, split: str = "test",
              zoom: int = 0) -> None:
  """Draws `num_ids` identities (rows) with one image per camera (columns: visible cameras
  1, 2, 4, 5, then infrared 3, 6) as a PNG at `path`; missing cameras are left blank."""
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top
  cfg = get_config(config)
  table = specs(cfg, split)
  pids = np.unique(table["pid"])[:num_ids]
  cams = tuple(c for c in cfg.cameras if c not in cfg.infrared_cameras) + cfg.infrared_cameras
  zoom = zoom or max(1, 192 // cfg.height)
  h, w = cfg.height * zoom, cfg.width * zoom
  pad, top, left = 4, 18, 40
  sheet = Image.new("RGB", (left + len(cams) * (w + pad), top + len(pids) * (h + pad)), "white")
  draw = ImageDraw.Draw(sheet)
  for j, cam in enumerate(cams):
    label = f"cam{cam} {'IR' if cam in cfg.infrared_cameras else 'RGB'}"
    draw.text((left + j * (w + pad) + 2, 3), label, fill="black")
  ids = identities(cfg)
  for i, pid in enumerate(pids.tolist()):
    draw.text((4, top + i * (h + pad) + h // 2 - 6), f"{pid:04d}", fill="black")
    for j, cam in enumerate(cams):
      rows = np.flatnonzero((table["pid"] == pid) & (table["camid"] == cam))
      if len(rows) == 0:
        continue
      img = render(cfg, take(table, rows[:1]), ids)[0]
      tile = Image.fromarray(img).resize((w, h), Image.NEAREST)
      sheet.paste(tile, (left + j * (w + pad), top + i * (h + pad)))
  sheet.save(path)


def main(argv=None) -> None:
  """`python -m ce2l_jax.data.synthetic --grid PATH` and/or `--stats`."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
  parser.add_argument("--grid", help="write a sample sheet PNG here")
  parser.add_argument("--config", default="default", choices=sorted(CONFIGS))
  parser.add_argument("--split", default="test", choices=SPLITS)
  parser.add_argument("--num_ids", type=int, default=6)
  parser.add_argument("--stats", action="store_true", help="print counts and raw-pixel rank-1")
  args = parser.parse_args(argv)
  if not (args.grid or args.stats):
    parser.print_help()
  if args.grid:
    draw_grid(args.config, args.grid, args.num_ids, args.split)
    print(f"wrote {args.grid}")
  if args.stats:
    for split in SPLITS:
      t = specs(args.config, split)
      per_cam = {c: int((t["camid"] == c).sum()) for c in get_config(args.config).cameras}
      print(f"{split}: {len(t['pid'])} images, {len(np.unique(t['pid']))} ids, "
            f"per camera {per_cam}")
    data = generate(args.config, "test")
    print(f"rank-1 on test, chance ~{1 / get_config(args.config).num_test_ids:.3f} "
          "(query->gallery: raw pixels / edges)")
    for name, q, g in (("visible->visible", 0, 0), ("infrared->infrared", 1, 1),
                       ("infrared->visible", 1, 0), ("visible->infrared", 0, 1)):
      other = get_config(args.config).layout == "sysu"
      print(f"  {name:18s} {raw_pixel_rank1(data, q, g, other_camera=other):.3f} / "
            f"{raw_pixel_rank1(data, q, g, edges=True, other_camera=other):.3f}")


if __name__ == "__main__":
  main()
