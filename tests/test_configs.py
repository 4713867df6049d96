"""Every config file loads, derives from its base only where intended, and rejects typos.

Config files are loaded as run.py does (`ce2l_jax.config_check.load_config_file`: the `configs`
package, imported by name); the typo check
runs run.py itself (its pre-check fails before any flag parsing or JAX work).
"""

import json
import os
import re
import subprocess
import sys

import pytest

from ce2l_jax import config_check, stages
from ce2l_jax.config_check import diff_configs, flatten

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = ("base", "sysu", "sysu_resnet", "regdb", "synthetic", "smoke")
RUNNABLE = CONFIGS[1:]


def load(name, arg=None):
  path = os.path.join(ROOT, "configs", f"{name}.py")
  return config_check.load_config_file(path + (f":{arg}" if arg else ""))


def as_json(config):
  return json.loads(config.to_json_best_effort())


def changed(a, b):
  return set(diff_configs(as_json(a), as_json(b)))


def under(keys, *prefixes):
  return {k for k in keys if not k.startswith(prefixes)}


@pytest.mark.parametrize("name", CONFIGS)
def test_loads_with_every_section(name):
  c = load(name)
  for section in ("data", "input", "cyclegan", "convert", "reid", "eval", "mesh"):
    assert section in c, section
  for key in ("seed", "resume", "init", "name"):
    assert key in c
  assert c.data.data_dir and os.path.isabs(c.data.data_dir)


@pytest.mark.parametrize("name", RUNNABLE)
def test_runnable_configs_pass_the_stage_checks(name):
  c = stages.prepare_config(load(name))
  assert c.data.name
  json.loads(c.to_json_best_effort())  # what config.json holds


@pytest.mark.parametrize("name", RUNNABLE)
def test_docstring_gives_command_time_and_target(name):
  import importlib.util
  spec = importlib.util.spec_from_file_location(f"cfg_{name}", os.path.join(ROOT, "configs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  doc = module.__doc__
  assert f"run.py --config=configs/{name}.py" in doc
  assert re.search(r"\d\s*(s|min|minutes|h)\b", doc)  # a time
  if name != "smoke":
    assert "%" in doc or "rank-1" in doc  # target numbers


def test_base_has_no_dataset_and_the_paper_method():
  c = load("base")
  assert c.data.name == ""
  with pytest.raises(config_check.UserError, match="data.name is empty"):
    config_check.check_config(c)
  assert c.reid.model == "bdtr_alexnet" and c.reid.optimizer == "sgd" and c.reid.lr == 1e-3
  assert (c.input.p, c.input.k) == (64, 1)
  assert tuple(c.input.resize) == (256, 256) and tuple(c.input.crop) == (227, 227)
  assert c.reid.lsr_on == "converted" and c.reid.cross_weight > 0 and c.reid.intra_weight > 0
  assert c.cyclegan.enabled and c.convert.enabled
  assert c.mesh.num_devices is None


def test_sysu_is_base_plus_the_dataset():
  assert changed(load("base"), load("sysu")) == {"data.name"}
  assert load("sysu").data.name == "sysu_mm01"


def test_sysu_resnet_changes_only_the_reid_part():
  sysu, res = load("sysu"), load("sysu_resnet")
  diff = changed(sysu, res)
  assert under(diff, "input.", "reid.") == {"eval.flip"}
  assert res.reid.model == "resnet50_agw" and tuple(res.input.image_size) == (288, 144)
  assert (res.input.p, res.input.k) == (8, 4)
  assert res.input.random_erasing.prob > 0 and res.input.channel_aug.mode != "none"
  assert res.reid.schedule == "warmup_step" and res.reid.lr == 0.1
  # the CycleGAN, the conversion and the losses are sysu.py's
  for key in ("reid.lsr_on", "reid.cross_weight", "reid.intra_weight", "reid.lsr_epsilon"):
    assert key not in diff


def test_regdb_changes_dataset_protocol_and_cyclegan_size():
  diff = changed(load("base"), load("regdb"))
  assert under(diff, "cyclegan.") == {"data.name", "data.protocol", "eval.protocol"}
  c = load("regdb")
  assert config_check.trials_of(c) == list(range(1, 11))
  assert config_check.trials_of(load("regdb", "trial=3")) == [3]
  c.data.trial = 7
  assert config_check.trials_of(c) == [7]
  assert stages.trial_config(c, 7).data.name == "regdb/trial7"


def test_synthetic_demo_sizes():
  """The demo must finish within 15 minutes on 2 CPU cores: small data, tiny models, few steps."""
  base, c = load("base"), load("synthetic")
  assert under(changed(base, c), "cyclegan.", "input.", "reid.") == {"data.name", "init",
                                                                     "eval.flip"}
  assert c.data.name.startswith("synthetic_vireid/")
  assert os.path.exists(c.init), c.init  # the synthetic pretrained weights, in the repo
  assert c.reid.model in ("alexnet_tiny", "resnet_tiny")
  # the twin's own 128×64 (docs/notes/synthetic_benchmark.md §3f); the CycleGAN stays at 64×32
  assert tuple(c.input.image_size) == tuple(c.input.crop) == tuple(c.input.resize) == (128, 64)
  assert 100 <= c.reid.num_steps <= 1500
  assert max(c.cyclegan.image_size) <= 64 and c.cyclegan.ngf <= 16 and c.cyclegan.num_steps <= 1000
  assert c.cyclegan.decay_start <= c.cyclegan.num_steps
  assert c.eval.num_trials == 10


def test_twin_configs_keep_what_was_measured():
  """The RegDB twin's recipe is the SYSU demo's plus CAJ's greyscale augmentation on the visible
  images (docs/notes/thermal_twin.md §10); `res64` keeps the width-8 64×32 recipe of the earlier
  tables (equal share, ρ2 0.6, no channel augmentation). The AlexNet keeps its own measured
  input."""
  from configs import synthetic, synthetic_regdb
  demo, regdb_twin, alexnet = (load(n) for n in ("synthetic", "synthetic_regdb", "synthetic_alexnet"))
  assert demo.input.converted_share == synthetic.CONVERTED_SHARE == 0.25
  assert demo.input.channel_aug.mode == "none"  # the greyscale augmentation is the RegDB twin's
  for name in ("", "reduced"):
    r = load("synthetic_regdb", name)
    assert tuple(r.input.image_size) == tuple(r.input.crop) == tuple(r.input.resize) == (128, 64)
    assert r.input.converted_share == 0.25 and r.reid.intra_margin == 0.65
    assert r.reid.model_kwargs.width == 16 and r.init == synthetic.PRETRAINED
    aug = r.input.channel_aug
    assert (aug.mode, aug.prob, tuple(aug.slots)) == ("adap_gray", 0.5, (0,))  # visible slot only
    old = load("synthetic_regdb", ",".join(o for o in (name, "res64") if o))
    assert tuple(old.input.image_size) == tuple(old.input.crop) == tuple(old.input.resize) == (64, 32)
    assert old.input.pad == 4 and old.input.converted_share == 0.5
    assert old.reid.intra_margin == synthetic_regdb.INTRA_MARGIN_W8 == 0.6
    assert old.init == synthetic.PRETRAINED_W8 and "width" not in old.reid.model_kwargs
    assert old.input.channel_aug.mode == "none"
    assert old.data.trials == r.data.trials
  assert regdb_twin.data.protocol == "regdb"
  with pytest.raises(ValueError, match="one of res128, res64"):
    load("synthetic_regdb", "res128,res64")
  # the AlexNet: 99×99 with the demo's share and a CycleGAN at the twin's 128×64 (measured so)
  assert tuple(alexnet.input.image_size) == (99, 99)
  assert alexnet.input.converted_share == synthetic.CONVERTED_SHARE
  assert tuple(alexnet.cyclegan.image_size) == (128, 64) != tuple(demo.cyclegan.image_size)


def test_smoke_is_synthetic_on_the_tiny_dataset():
  diff = changed(load("synthetic"), load("smoke"))
  assert under(diff, "cyclegan.", "input.", "reid.", "convert.") == {"data.name", "eval.num_trials",
                                                                     "init"}
  c = load("smoke")
  assert c.data.name == "synthetic_vireid/tiny"
  assert c.reid.num_steps <= 10 and c.cyclegan.num_steps <= 10
  assert c.reid.num_steps > c.reid.checkpoint_every  # the resume test kills after a checkpoint


@pytest.mark.parametrize("name", RUNNABLE)
def test_runlocal_shrinks_every_stage(name):
  c = load(name, "runlocal")
  assert c.cyclegan.num_steps <= 10 and c.reid.num_steps <= 10 and c.eval.num_trials == 1


@pytest.mark.parametrize("name", RUNNABLE)
def test_noconv_is_the_no_conversion_baseline(name):
  assert changed(load(name), load(name, "noconv")) == {"cyclegan.enabled"}


def test_unknown_get_config_argument_is_a_user_error():
  with pytest.raises(config_check.UserError, match="unknown config argument 'runlcal'"):
    load("sysu", "runlcal")


def test_configs_are_a_package_without_path_edits():
  """`configs.<name>` imports by name (what load_config_file does for the files of configs/), and
  no config file edits `sys.path`; library code holds no preset (the numbers are in configs/)."""
  import importlib
  for name in CONFIGS:
    source = open(os.path.join(ROOT, "configs", f"{name}.py")).read()
    assert "sys.path" not in source, name
    assert importlib.import_module(f"configs.{name}").get_config is not None
  from ce2l_jax.trainers import cyclegan, reid
  assert not hasattr(reid, "default_config") and not hasattr(cyclegan, "default_config")
  assert load("sysu").reid.lr == 1e-3 and load("sysu_resnet").reid.lr == 0.1
  import inspect
  from ce2l_jax.data import pipeline
  assert not inspect.signature(pipeline.default_input_config).parameters  # no input preset
  assert load("sysu").input.crop == (227, 227) and load("sysu_resnet").input.crop == (288, 144)


def test_references_follow_overrides():
  c = load("synthetic")
  c.seed = 5
  c.data.protocol = "regdb"
  assert c.cyclegan.seed == 5 and c.eval.protocol == "regdb"


def test_ignored_keys_exist():
  flat = flatten(load("synthetic"))
  for key in config_check.IGNORED_KEYS:
    assert any(k == key or k.startswith(key + ".") for k in flat), key


def test_choices_are_checked():
  c = load("synthetic")
  c.reid.lsr_on = "nonee"
  with pytest.raises(config_check.UserError, match=r"reid.lsr_on.*did you mean 'none'"):
    config_check.check_config(c)


def _run_py(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", RUNNABLE)
def test_typo_is_one_line_naming_the_key(name, tmp_path):
  p = _run_py(f"--config=configs/{name}.py", "--config.reid.lrr=0.1", f"--workdir={tmp_path}")
  assert p.returncode == 2
  lines = [s for s in p.stderr.splitlines() if s.strip()]
  assert lines == ["error: unknown config key 'reid.lrr' (did you mean 'reid.lr'?)"], p.stderr
  assert not os.listdir(tmp_path)  # nothing written


def test_a_typo_inside_a_config_file_is_one_line(tmp_path):
  bad = tmp_path / "bad.py"
  bad.write_text("from configs import synthetic\n\n\ndef get_config(arg=None):\n"
                 "  c = synthetic.get_config()\n  c.reid.lrr = 0.1\n  return c\n")
  with pytest.raises(config_check.UserError, match=r"unknown config key 'reid.lrr' \(did you mean 'reid.lr'\?\)"):
    config_check.load_config_file(str(bad))
  p = _run_py(f"--config={bad}", f"--workdir={tmp_path / 'w'}")
  assert p.returncode == 2
  assert [s for s in p.stderr.splitlines() if s.strip()] == [
      f"error: unknown config key 'reid.lrr' (did you mean 'reid.lr'?) in {bad}"], p.stderr


def test_regdb_res128_is_the_demos_recipe_on_the_regdb_twin():
  """`synthetic_regdb.py:reduced,res128` (docs/notes/thermal_twin.md §6c): the SYSU demo's
  model, init, input, share and ρ2 on the RegDB twin's data, protocol and trial."""
  demo, r = load("synthetic", "reduced"), load("synthetic_regdb", "reduced,res128,noconv")
  for key in ("init", "reid.model_kwargs", "input.image_size", "input.crop", "input.resize",
              "input.pad", "input.converted_share", "reid.intra_margin", "reid.num_steps"):
    a, b = demo, r
    for part in key.split("."):
      a, b = a[part], b[part]
    assert a == b, key
  assert r.data.name == "synthetic_vireid/regdb" and r.data.protocol == "regdb"
  assert tuple(r.data.trials) == (1,) and not r.cyclegan.enabled
  assert r.input.channel_aug.mode == "none"  # §6c's first runs: without the greyscale augmentation
