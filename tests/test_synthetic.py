"""The procedural synthetic dataset (`ce2l_jax.data.synthetic`): pure numpy, no TFDS."""

import collections
import dataclasses
import re

import numpy as np
import pytest

from ce2l_jax.data import synthetic

TINY = synthetic.CONFIGS["tiny"]


@pytest.fixture(scope="module")
def tiny():
  return {split: synthetic.generate("tiny", split) for split in synthetic.SPLITS}


@pytest.fixture(scope="module")
def small_test():
  return synthetic.generate("small", "test")


def test_deterministic_from_seed(tiny):
  again = synthetic.generate("tiny", "test")
  for key in ("image", "pid", "camid", "modality", "file"):
    np.testing.assert_array_equal(again[key], tiny["test"][key])
  other = synthetic.generate(dataclasses.replace(TINY, seed=1), "test")
  same_len = min(len(other["image"]), len(tiny["test"]["image"]))
  assert not np.array_equal(other["image"][:same_len], tiny["test"]["image"][:same_len])


def test_an_image_does_not_depend_on_its_batch(tiny):
  table = synthetic.specs("tiny", "test")
  rows = [len(table["pid"]) - 1, 3, 0]
  np.testing.assert_array_equal(synthetic.render("tiny", synthetic.take(table, rows)),
                                tiny["test"]["image"][rows])
  chunks = list(synthetic.iter_chunks("tiny", "test", chunk_size=7))
  np.testing.assert_array_equal(np.concatenate([c["image"] for c in chunks]), tiny["test"]["image"])


def test_images(tiny):
  for data in tiny.values():
    images = data["image"]
    assert images.dtype == np.uint8 and images.shape[1:] == (TINY.height, TINY.width, 3)
    ir = data["modality"] == 1
    gray = (images[..., 0] == images[..., 1]).all(axis=(1, 2)) & \
           (images[..., 1] == images[..., 2]).all(axis=(1, 2))
    np.testing.assert_array_equal(gray, ir)  # infrared: one channel repeated; visible: colour
    assert images.std(axis=(1, 2, 3)).min() > 10  # not blank


def test_counts_cameras_and_ids(tiny):
  train, test = (set(tiny[s]["pid"].tolist()) for s in synthetic.SPLITS)
  assert train == set(range(1, TINY.num_train_ids + 1))
  assert test == set(range(TINY.num_train_ids + 1, TINY.num_ids + 1))
  for data in tiny.values():
    cams = data["camid"]
    assert set(cams.tolist()) <= set(synthetic.CAMERAS)
    np.testing.assert_array_equal(data["modality"], np.isin(cams, synthetic.INFRARED_CAMS))
    per_cam = collections.Counter(zip(data["pid"].tolist(), cams.tolist()))
    assert all(TINY.min_images <= n <= TINY.max_images for n in per_cam.values())
    for pid in set(data["pid"].tolist()):
      modalities = set(data["modality"][data["pid"] == pid].tolist())
      assert modalities == {0, 1}, f"pid {pid} lacks a modality"
    for f, p, c in zip(data["file"], data["pid"], cams):
      m = re.fullmatch(r"cam(\d)/(\d{4})/(\d{4})\.png", f)
      assert m and (int(m[1]), int(m[2])) == (c, p) and 1 <= int(m[3]) <= TINY.max_images
    assert len(set(data["file"].tolist())) == len(data["file"])


def test_some_identities_miss_some_cameras():
  table = synthetic.specs("small")
  seen = collections.Counter(table["pid"][np.unique(table["pid"] * 10 + table["camid"],
                                                    return_index=True)[1]].tolist())
  assert min(seen.values()) < 6 and max(seen.values()) == 6


# --- The thermal model (docs/notes/thermal_twin.md)

_LUM = np.array([0.299, 0.587, 0.114], np.float32)
_SUN = (15.0, 250.0, 12.0)  # outdoors, sunny: air °C, W/m², h
_SHADE = (15.0, 0.0, 12.0)
_INDOOR = (22.0, 0.0, 8.0, 22.0)  # surroundings at the air temperature


@pytest.fixture(scope="module")
def default_ids():
  return synthetic.identities("default")


def _temperatures(ids, condition):
  return {p: synthetic.thermal_surface_temperature(ids["thermal"], p, *condition)
          for p in synthetic._LOOK_KEYS}  # pylint: disable=protected-access


def test_thermal_surface_temperature_solves_the_energy_balance(default_ids):
  """Against a bisection on the balance (T_sk − T_s)/R + αE = h (T_s − T_air), then the camera's
  T_app⁴ = ε T_s⁴ + (1 − ε) T_refl⁴, one identity and part at a time."""
  th = default_ids["thermal"]
  for i, part in [(0, "upper1"), (7, "lower2"), (11, "backpack"), (23, "hair"), (5, "skin")]:
    t_sk, r = float(th["skin_temp"][i]), float(th["resistance"][part][i])
    a, eps = float(th["absorptance"][part][i]), float(th["emissivity"][part][i])
    for t_air, sun, h, t_refl in [(15.0, 250.0, 12.0, -5.0), (22.0, 0.0, 8.0, 22.0)]:
      lo, hi = -50.0, 80.0
      for _ in range(100):
        t_s = 0.5 * (lo + hi)
        if (t_sk - t_s) / r + a * sun - h * (t_s - t_air) > 0:
          lo = t_s
        else:
          hi = t_s
      want = (eps * (t_s + 273.15) ** 4 + (1 - eps) * (t_refl + 273.15) ** 4) ** 0.25 - 273.15
      rows = synthetic._thermal_rows(th, np.array([i]))  # pylint: disable=protected-access
      got = synthetic.thermal_surface_temperature(rows, part, t_air, sun, h, t_refl)[0]
      np.testing.assert_allclose(got, want, atol=2e-3, err_msg=f"{part} {i}")


def test_thermal_skin_is_hottest_and_insulation_follows_the_garment_kind(default_ids):
  ids = default_ids
  for condition in (_SHADE, _INDOOR):
    t = _temperatures(ids, condition)
    for part in ("upper1", "lower1", "hair", "shoes", "backpack", "bag", "hat"):
      assert (t["skin"] > t[part]).all(), (condition, part)
  # Thin garments show nearly skin temperature, thick ones nearly the air's.
  t = _temperatures(ids, _SHADE)
  short = ids["sleeve"] < 0.5
  assert t["upper1"][short].mean() > t["upper1"][~short].mean() + 2.0
  shorts, trousers = ids["lower_kind"] == 1, ids["lower_kind"] == 0
  assert t["lower1"][shorts].mean() > t["lower1"][trousers].mean() + 1.0
  r = ids["thermal"]["resistance"]["upper1"]
  assert np.corrcoef(r, t["upper1"] - t["skin"])[0, 1] < -0.7
  # Carried things are not body-heated: near the air, far from the skin.
  assert np.median(t["backpack"] - 15.0) < 0.3 * np.median(t["skin"] - 15.0)


def test_thermal_prints_are_nearly_invisible_but_show_in_the_sun(default_ids):
  """A print is two dyes on one fabric: by emission (no sun) its contrast is a fraction of a
  kelvin, far below the garments' spread between people, while in visible light the two colours
  differ by a quarter of the luminance range; in the sun the darker dye absorbs more."""
  ids = default_ids
  lum = {p: ids["rgb"][p] @ _LUM for p in ("upper1", "upper2")}
  vis = np.abs(lum["upper1"] - lum["upper2"])
  vis_spread = lum["upper1"].std()
  for condition in (_SHADE, _INDOOR):
    t = _temperatures(ids, condition)
    print_contrast = np.abs(t["upper1"] - t["upper2"])
    assert print_contrast.max() < 0.5, print_contrast.max()
    # Relative to the spread between people: far below the visible print's.
    assert np.median(print_contrast) / t["upper1"].std() < 0.1 * np.median(vis) / vis_spread
  sun = _temperatures(ids, _SUN)
  absorb = ids["thermal"]["absorptance"]
  r = np.corrcoef(absorb["upper1"] - absorb["upper2"], sun["upper1"] - sun["upper2"])[0, 1]
  assert r > 0.6, r


def test_thermal_brightness_is_partly_predictable_from_visible_luminance(default_ids):
  """Sunshine ties thermal brightness to visible luminance (dark garments warmer), partly:
  insulation, fit and the near-infrared reflectance of the dye leave much unexplained; without
  sun there is no tie."""
  ids = default_ids
  sun, shade = _temperatures(ids, _SUN), _temperatures(ids, _SHADE)
  for part in ("upper1", "lower1", "backpack"):
    lum = ids["rgb"][part] @ _LUM
    r = np.corrcoef(lum, sun[part])[0, 1]
    assert -0.97 < r < -0.3, (part, r)
    assert abs(np.corrcoef(lum, shade[part])[0, 1]) < 0.2, part
  lum = ids["rgb"]["upper1"] @ _LUM
  assert abs(np.corrcoef(lum, sun["upper1"])[0, 1]) < 0.9  # not exactly


def test_thermal_images_follow_the_weather():
  """The RegDB twin's thermal camera: the person is hotter than the air, the sky colder; the
  images of one identity differ with the weather (air temperature, sunshine) but are the same
  pose as the visible image (co-registered)."""
  cfg = synthetic.CONFIGS["regdb_small"]
  table = synthetic.specs(cfg, "test")
  ir = np.flatnonzero(table["modality"] == 1)[:24]
  part = synthetic.take(table, ir)
  images = synthetic.render(cfg, part)
  assert images.std(axis=(1, 2, 3)).min() > 10
  # The top rows (sky outdoors) are darker than the person's rows in the middle of the image.
  h, w = cfg.height, cfg.width
  sky = images[:, : h // 10, :, 0].mean(axis=(1, 2))
  middle = images[:, h // 3: h // 2, w // 2 - 2: w // 2 + 2, 0].mean(axis=(1, 2))
  assert (middle > sky).mean() > 0.9
  t_air, sun, _, _ = synthetic._thermal_conditions(6, part)  # pylint: disable=protected-access
  assert t_air.std() > 2 and (sun > 100).any() and (sun < 50).any()


def test_modality_gap_is_real_and_identities_are_distinguishable(small_test):
  """Raw pixels (grayscale, 32×16, L2-normalised): good within visible, chance across."""
  chance = 1 / synthetic.CONFIGS["small"].num_test_ids
  visible = synthetic.raw_pixel_rank1(small_test, 0, 0)
  cross = synthetic.raw_pixel_rank1(small_test, 1, 0)
  assert visible > 4 * chance, visible
  assert cross < 2 * chance, cross
  assert visible - cross > 0.2


def test_draw_grid(tmp_path):
  from PIL import Image
  path = tmp_path / "grid.png"
  synthetic.draw_grid("tiny", str(path), num_ids=2)
  assert Image.open(path).size[0] > 6 * TINY.width


def test_unknown_config():
  with pytest.raises(ValueError, match="unknown synthetic config"):
    synthetic.get_config("huge")


# --- The two twins: near-infrared SYSU-like, thermal RegDB-like (docs/notes/synthetic_benchmark.md)

def test_near_infrared_is_a_partly_predictable_many_to_one_function_of_the_dye():
  cfg = synthetic.CONFIGS["sysu"]
  ids = synthetic.identities(cfg)
  np.testing.assert_array_equal(ids["ir"]["upper1"], ids["nir"]["upper1"])
  thermal = synthetic.identities(dataclasses.replace(cfg, infrared="thermal"))  # only IR differs
  for key in ("height", "upper_pattern", "backpack"):
    np.testing.assert_array_equal(ids[key], thermal[key])
  np.testing.assert_array_equal(ids["rgb"]["upper1"], thermal["rgb"]["upper1"])
  lum = np.array([0.299, 0.587, 0.114], np.float32)
  nir = np.concatenate([ids["nir"][p][:, 0] for p in ("upper1", "upper2", "lower1", "lower2")])
  rgb = np.concatenate([ids["rgb"][p] for p in ("upper1", "upper2", "lower1", "lower2")])
  # Predictable from the colour (nearest palette dye, a function the network can learn)...
  palette = np.concatenate([synthetic._LOWER_RGB])  # pylint: disable=protected-access
  table = synthetic._LOWER_NIR  # pylint: disable=protected-access
  nearest = np.argmin(((rgb[:, None] - palette[None]) ** 2).sum(-1), axis=1)
  r_dye = np.corrcoef(table[nearest], nir)[0, 1]
  assert r_dye > 0.7, r_dye
  # ... but not luminance (dark dyes bright in NIR), and not exactly (the material factor).
  assert abs(np.corrcoef(rgb @ lum, nir)[0, 1]) < 0.6
  assert np.std(nir - table[nearest] * np.median(nir / table[nearest])) > 0.05


def test_near_infrared_images(small_nir_test):
  images, ir = small_nir_test["image"], small_nir_test["modality"] == 1
  gray = (images[..., 0] == images[..., 1]).all(axis=(1, 2)) & \
         (images[..., 1] == images[..., 2]).all(axis=(1, 2))
  np.testing.assert_array_equal(gray, ir)
  assert images[ir].std(axis=(1, 2, 3)).min() > 10
  thermal = synthetic.generate("small", "test")  # the same people and poses
  np.testing.assert_array_equal(thermal["image"][~ir], images[~ir])
  assert not np.array_equal(thermal["image"][ir], images[ir])


@pytest.fixture(scope="module")
def small_nir_test():
  return synthetic.generate("sysu_small", "test")


def test_regdb_layout():
  cfg = synthetic.CONFIGS["regdb_small"]
  splits = {s: synthetic.specs(cfg, s) for s in synthetic.SPLITS}
  train, test = (set(splits[s]["pid"].tolist()) for s in synthetic.SPLITS)
  assert len(train) == cfg.num_train_ids and len(test) == cfg.num_test_ids
  assert not train & test and train | test == set(range(1, cfg.num_ids + 1))
  for t in splits.values():
    np.testing.assert_array_equal(t["modality"], t["camid"] == 2)
    per_cam = collections.Counter(zip(t["pid"].tolist(), t["camid"].tolist()))
    assert set(per_cam.values()) == {cfg.min_images} and len(per_cam) == 2 * len(set(t["pid"]))
    # A dual-camera rig: thermal image i of an identity has the pose of visible image i.
    vis, ir = t["camid"] == 1, t["camid"] == 2
    for key in ("view", "scale", "stride", "horizon"):
      np.testing.assert_array_equal(t[key][vis], t[key][ir])
    assert not np.array_equal(t["light"][vis], t["light"][ir])
  other = dataclasses.replace(cfg, trial=2)
  assert set(synthetic.regdb_train_pids(other).tolist()) != train  # each trial its own split
  with pytest.raises(ValueError, match="trial"):
    synthetic.regdb_train_pids(dataclasses.replace(cfg, trial=11))


def test_bad_config_values():
  with pytest.raises(ValueError, match="infrared"):
    synthetic.SyntheticConfig(1, 1, infrared="uv")
  with pytest.raises(ValueError, match="layout"):
    synthetic.SyntheticConfig(1, 1, layout="market")


@pytest.mark.parametrize("name", ["sysu", "regdb_trial1"])
def test_difficulty_of_the_twins(name):
  """The issue's criteria on the default twins, raw pixels (no trained model sets them):
  cross-modality rank-1 ≤ 3× chance, visible→visible rank-1 ≤ 50 %."""
  cfg = synthetic.CONFIGS[name]
  data = synthetic.generate(cfg, "test")
  chance = 1 / cfg.num_test_ids
  other = cfg.layout == "sysu"
  for q, g in ((1, 0), (0, 1)):
    cross = synthetic.raw_pixel_rank1(data, q, g, other_camera=other)
    assert cross <= 3 * chance, (name, q, g, cross)
  visible = synthetic.raw_pixel_rank1(data, 0, 0, other_camera=other)
  assert visible <= 0.5, (name, visible)
  assert visible > 3 * chance, (name, visible)  # identities are still distinguishable


def test_only_the_current_data_version_counts_as_built(tmp_path):
  """Thermal configs moved to data version 1.2.0 (the physical thermal model); a 1.1.0 folder of
  one is rebuilt, not read. Near-infrared configs stay at 1.1.0 (their images did not change)."""
  from ce2l_jax import datasets
  assert synthetic.data_version("regdb_small") == "1.2.0"
  assert synthetic.data_version("sysu_small") == synthetic.data_version("pretrain") == "1.1.0"

  def make(config, version):
    folder = tmp_path / "synthetic_vireid" / config / version
    folder.mkdir(parents=True)
    (folder / "dataset_info.json").write_text("{}")

  make("regdb_small", "1.1.0")
  make("sysu_small", "1.1.0")
  assert not datasets.dataset_is_built("synthetic_vireid/regdb_small", str(tmp_path))
  assert datasets.dataset_is_built("synthetic_vireid/sysu_small", str(tmp_path))
  make("regdb_small", "1.2.0")
  assert datasets.dataset_is_built("synthetic_vireid/regdb_small", str(tmp_path))
