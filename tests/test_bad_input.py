"""The bad-input matrix: one test per row; each asserts the message the user gets and that
nothing partial was written.

Rows whose checks another test file already asserts delegate to it (the builders' own
`BAD_INPUTS` cases, run here by name), so every row is visible in this file:

  row                                        where the check lives
  missing manual dir                         tfds_builders.manual_check.find_root
  empty manual dir                           tfds_builders.manual_check.find_root
  missing split / index file                 the SYSU-MM01 and RegDB builders
  index line naming a missing file           the RegDB builder (SYSU-MM01 has no index lines)
  corrupt image                              tfds_builders.manual_check.check_images
  overlapping train/test identities          the SYSU-MM01 and RegDB builders
  config key typo (command line, file)       ce2l_jax.config_check, ce2l_jax.stages
  value of the wrong type                    ce2l_jax.config_check, ml_collections
  batch not divisible by the device count    ce2l_jax.parallel.check_divisible (pipelines, CycleGAN)
  P larger than the number of identities     ce2l_jax.data.sampler
  workdir from another config                ce2l_jax.config_check.check_workdir_config
  checkpoint from another model              ce2l_jax.checkpoint (CheckpointMismatchError)
  pretrained weights with the wrong shapes   ce2l_jax.models.pretrained

Through run.py every one of them is a single `error: ...` line and exit code 2 (UserError,
ConfigError, and the libraries' ValueError / FileNotFoundError; `-v 0` shows the traceback),
checked here on two rows; tests/test_run.py and tests/test_configs.py check others.
"""

import json
import os
import re
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from ce2l_jax import checkpoint, parallel, stages
from ce2l_jax.config_check import ConfigError, check_overrides
from ce2l_jax.data import pipeline
from ce2l_jax.trainers import reid
from tests import fixtures_real as fx
from tests import multihost_worker as mw
from tfds_builders.regdb import regdb_dataset_builder_test as regdb_t
from tfds_builders.sysu_mm01 import sysu_mm01_dataset_builder_test as sysu_t

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def builder_case(module, name, tmp_path):
  """Runs the builder test `module`'s BAD_INPUTS case `name` (message + nothing written)."""
  cases = {c[0]: c[1:] for c in module.BAD_INPUTS}
  module.test_bad_input_is_reported_before_anything_is_written(tmp_path, *cases[name])


def files(path) -> list[str]:
  return fx.files_under(path)


def run_py_error(*args, data_dir) -> str:
  """run.py with the smoke config (this process's 8 fake CPU devices): asserts exit code 2 and
  a one-line 'error: ...' on stderr; returns that line."""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  p = subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), "--config=configs/smoke.py",
                      f"--config.data.data_dir={data_dir}", "--config.cyclegan.enabled=false",
                      "--stages=reid", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                     timeout=300)
  lines = [ln for ln in p.stderr.splitlines() if ln.strip() and "Involuntary" not in ln]
  assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (
      f"rc {p.returncode}\n{p.stderr[-3000:]}")
  return lines[0]


# ------------------------------------------------------------------------------ datasets

def test_missing_manual_dir(tmp_path):
  builder_case(sysu_t, "missing", tmp_path / "sysu")
  builder_case(regdb_t, "missing", tmp_path / "regdb")


def test_empty_manual_dir(tmp_path):
  builder_case(sysu_t, "empty", tmp_path / "sysu")
  builder_case(regdb_t, "empty", tmp_path / "regdb")


def test_missing_split_or_index_file(tmp_path):
  builder_case(sysu_t, "no_exp", tmp_path / "sysu")        # exp/val_id.txt
  builder_case(regdb_t, "no_idx_file", tmp_path / "regdb")  # idx/test_thermal_1.txt


def test_index_line_naming_a_missing_file(tmp_path):
  builder_case(regdb_t, "missing_image", tmp_path)


def test_corrupt_image(tmp_path):
  builder_case(sysu_t, "truncated", tmp_path / "sysu")
  builder_case(sysu_t, "not_an_image", tmp_path / "sysu2")
  builder_case(regdb_t, "corrupt_image", tmp_path / "regdb")


def test_overlapping_train_test_identities(tmp_path):
  builder_case(sysu_t, "overlap", tmp_path / "sysu")
  builder_case(regdb_t, "overlap", tmp_path / "regdb")


# ------------------------------------------------------------------------------ config

@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  stages.ensure_data(stages.prepare_config(mw.smoke_config(data_dir)))
  return data_dir


def test_config_key_typo(tmp_path, smoke_data):
  """On the command line (checked before absl parses flags) and inside a config file, where
  ml_collections would silently add the key and keep the intended one at its default."""
  smoke = stages.load_config_file(os.path.join(ROOT, "configs", "smoke.py"))
  with pytest.raises(ConfigError, match=r"^unknown config key 'reid.lrr' \(did you mean 'reid.lr'\?\)$"):
    check_overrides(smoke, ["run.py", "--config=configs/smoke.py", "--config.reid.lrr=0.1"])
  config = mw.smoke_config(smoke_data)
  config.reid.update(dict(lrr=0.1))  # a derived config file's typo
  wd = tmp_path / "w"
  with pytest.raises(stages.UserError, match=r"unknown config key 'reid.lrr' \(did you mean 'reid.lr'\?\)"):
    stages.run(config, str(wd), ["reid"])
  assert files(wd) == []


def test_value_of_the_wrong_type():
  smoke = stages.load_config_file(os.path.join(ROOT, "configs", "smoke.py"))
  with pytest.raises(ConfigError, match=r"^config key 'reid.lr' is a float; got 'fast'$"):
    check_overrides(smoke, ["--config.reid.lr=fast"])
  with pytest.raises(ConfigError, match=r"^config key 'input.resize' is a tuple; got '32'"):
    check_overrides(smoke, ["--config.input.resize=32"])
  with pytest.raises(TypeError, match="'num_steps'.*cannot be casted to type <class 'int'>"):
    smoke.reid.num_steps = "4"  # in a config file: ml_collections refuses at once


def test_batch_not_divisible_by_the_device_count(tmp_path, smoke_data):
  """8 devices: a P×K batch of 6 per modality, a CycleGAN batch of 6, eval batches of 6; and
  the re-ID stage with such a config writes nothing but the run's config.json."""
  mesh = parallel.make_mesh(8)
  cfg = mw.input_config()
  cfg.p, cfg.k = 3, 2
  with pytest.raises(ValueError, match=r"^input.p\*input.k \(examples per modality in a batch\) 6 is not "
                     r"divisible by the number of devices \(8\); choose .* a multiple of 8 or set "
                     r"--config.mesh.num_devices$"):
    pipeline.build_reid_train_pipeline(mw.tiny_sources(), cfg, seed=0, num_devices=mesh)
  with pytest.raises(ValueError, match=r"^eval batch size \(input.eval_batch_size\) 6 is not divisible by "
                     r"the number of devices \(8\)"):
    pipeline.build_eval_batches(mw.tiny_sources().visible, batch_size=6, num_devices=mesh)
  from ce2l_jax.trainers import cyclegan
  from tests.conftest import cyclegan_iterator as fake_iterator
  from tests.conftest import tiny_cyclegan_cfg as tiny_cfg
  gan_dir = tmp_path / "gan" / "cyclegan"
  with pytest.raises(ValueError, match=r"^cyclegan.batch_size 6 is not divisible by the number of devices \(8\)"):
    cyclegan.train(tiny_cfg(batch_size=6), str(gan_dir), fake_iterator(6), mesh=mesh)
  assert not os.path.exists(gan_dir / "checkpoints") or files(gan_dir / "checkpoints") == []

  wd = tmp_path / "run"
  line = run_py_error("--config.input.p=3", f"--workdir={wd}", data_dir=smoke_data)
  assert line.startswith("error: input.p*input.k (examples per modality in a batch) 6 is not divisible "
                         "by the number of devices (8)"), line
  assert files(wd) == ["config.json"]


def test_p_larger_than_the_number_of_identities(tmp_path, smoke_data):
  config = mw.smoke_config(smoke_data)  # synthetic_vireid/tiny: 6 training identities
  config.input.p = 8
  wd = tmp_path / "run"
  message = (r"input.p=8 is larger than the number of training identities with images in both "
             r"modalities \(6 of 6\); lower input.p \(identities per batch\)")
  with pytest.raises(ValueError, match=f"^{message}$"):
    stages.run(config, str(wd), ["reid"])
  assert files(wd) == ["config.json"]
  # The same through run.py: one line, no traceback (-v shows it), nothing but config.json.
  wd = tmp_path / "run_py"
  line = run_py_error("--config.input.p=8", f"--workdir={wd}", data_dir=smoke_data)
  assert re.fullmatch(rf"error: {message} \(-v 0 shows the traceback\)", line), line
  assert files(wd) == ["config.json"]


def test_workdir_from_another_config(tmp_path, smoke_data):
  wd = tmp_path / "run"
  wd.mkdir()
  first = stages.prepare_config(mw.smoke_config(smoke_data))  # as a finished run wrote it
  (wd / "config.json").write_text(first.to_json_best_effort(indent=2, sort_keys=True) + "\n")
  saved = (wd / "config.json").read_text()
  other = mw.smoke_config(smoke_data)
  other.reid.lr = 0.5
  other.seed = 3
  with pytest.raises(stages.UserError, match=r"was made with another config; differing keys: .*reid.lr "
                     r"\([0-9.e-]+ → 0.5\).*seed \(0 → 3\).*--force"):
    stages.run(other, str(wd), ["reid"])
  assert (wd / "config.json").read_text() == saved and files(wd) == ["config.json"]


# ------------------------------------------------------------------------------ checkpoints, weights

def _zeros_state(model_name, image_hw, num_classes, mesh, **kw):
  cfg = mw.reid_config(2, 1, model=model_name)
  cfg.reid.model_kwargs = ml_collections.ConfigDict(kw)
  model = reid.create_model(cfg.reid, num_classes)
  tx, _ = reid.make_optimizer(cfg.reid, 1)
  shapes = reid.abstract_state(model, tx, (*image_hw, 3), mesh)
  return jax.tree.map(lambda s: jax.device_put(np.zeros(s.shape, s.dtype), s.sharding), shapes)


def test_checkpoint_from_another_model(tmp_path):
  """A resnet_tiny checkpoint given to an alexnet_tiny run (config.resume, or the run's own
  folder): CheckpointMismatchError naming the checkpoint, one line, nothing written; a re-ID
  stage folder of another model is refused by name before anything is restored."""
  mesh = parallel.make_mesh()
  other = tmp_path / "other_run" / "reid"
  ck = checkpoint.Checkpointer(str(other / "checkpoints"))
  ck.save(1, _zeros_state("resnet_tiny", (67, 67), 6, mesh, blocks=(1,), width=4))
  ck.close()
  (other / "model.json").write_text(json.dumps({"model": "resnet_tiny", "num_classes": 6,
                                                "image_size": [67, 67], "label_map": list(range(6))}))
  config = mw.reid_config(2, 1, model="alexnet_tiny")
  config.reid.model_kwargs = ml_collections.ConfigDict()
  config.resume = str(tmp_path / "other_run")

  def batches():
    from tests.conftest import reid_batch
    i = 0
    while True:
      b = reid_batch(i)
      b["image"] = np.zeros((2, 8, 67, 67, 3), np.uint8)
      i += 1
      yield b

  wd = tmp_path / "new" / "reid"
  message = (r"^checkpoint .*other_run/reid/checkpoints/1 does not match the model being restored "
             r"\(was it written by another model or config\?\): [^\n]*$")
  with pytest.raises(checkpoint.CheckpointMismatchError, match=message):
    reid.train(config, str(wd), batches(), 6, mesh)
  assert files(wd) == []
  config.resume = ""
  with pytest.raises(checkpoint.CheckpointMismatchError, match=message):
    reid.train(config, str(other), batches(), 6, mesh)
  assert sorted(os.listdir(other / "checkpoints")) == ["1"]
  with pytest.raises(ValueError, match=r"holds a 'resnet_tiny' model but reid.model='alexnet_tiny'"):
    reid.restore_variables(config, str(other), mesh)


def test_pretrained_weights_with_the_wrong_shapes(tmp_path):
  """config.init: a torchvision-style state dict made for a wider ResNet: ValueError naming the
  file, the layer and both shapes; no checkpoint, no metrics."""
  from ce2l_jax.models import create_reid_model, init_reid_variables, pretrained
  wide = jax.eval_shape(lambda: init_reid_variables(
      create_reid_model("resnet_tiny", 6, blocks=(1,), width=8), jax.random.key(0), 32, 16))
  sd = {}
  for key, targets in pretrained.torchvision_resnet_mapping(wide).items():
    coll, path, kind = targets[0]
    leaf = wide[coll]
    for p in path:
      leaf = leaf[p]
    shape = leaf.shape if kind == "copy" else (leaf.shape[3], leaf.shape[2], *leaf.shape[:2])
    sd[key] = np.ones(shape, np.float32)
  path = tmp_path / "resnet_wide.npz"
  np.savez(path, **sd)
  config = mw.reid_config(2, 1)
  config.init = str(path)
  wd = tmp_path / "run"
  with pytest.raises(ValueError, match=r"^/\S*/resnet_wide\.npz: layer layer1\.0\.bn1\.weight: expected "
                     r"shape \(4,\), found \(8,\)$"):
    mw.train_tiny_reid(str(wd), config, parallel.make_mesh(1))
  assert [f for f in files(wd) if not f.startswith("tensorboard")] == []
