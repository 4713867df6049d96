"""The synthetic pretraining's AlexNet export (`ce2l_jax.synthetic_pretrain`): the file it writes
is read back by the real-weights loader (`pretrained.load_bvlc_alexnet`, the path a
`bvlc_alexnet.npy` takes) into exactly the trained stream, and the exported Caffe-layout arrays are
Caffe's convention (checked against a loop convolution on BGR 0–255 minus the mean pixel); the
ResNet export round-trips through `load_torchvision_resnet` likewise.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ce2l_jax import synthetic_pretrain
from ce2l_jax.models import create_reid_model, pretrained
from tests.test_models import random_variables
from tests.test_pretrained import np_conv


@pytest.fixture(scope="module")
def trained():
  # 99×99 → pool5 2×2: fc6's (H, W, C) ↔ (C, H, W) reordering is exercised.
  model = create_reid_model("alexnet_tiny", 5)
  return model, random_variables(model, 99, 99, seed=3)


def test_alexnet_export_round_trips_through_the_bvlc_loader(tmp_path, trained):
  model, variables = trained
  path = str(tmp_path / "alexnet_tiny_synthetic.npy")
  synthetic_pretrain.write_weights(path, variables, "alexnet_tiny")
  # The loader's restricted unpickler reads it (no allow_pickle), in the Caffe layout.
  raw = pretrained.read_pickled_npy(path)
  assert sorted(raw) == sorted(pretrained.ALEXNET_LAYERS)
  assert raw["conv1"][0].shape == (16, 3, 11, 11) and raw["fc6"][0].shape == (256, 2 * 2 * 32)

  fresh = random_variables(model, 99, 99, seed=4)
  loaded = pretrained.load_bvlc_alexnet(path, fresh)  # layout auto → caffe, folded input
  for s in pretrained.STREAMS:  # both streams get the trained stream_v
    for layer in pretrained.ALEXNET_LAYERS:
      for leaf in ("kernel", "bias"):
        np.testing.assert_allclose(loaded["params"][s][layer][leaf],
                                   variables["params"]["stream_v"][layer][leaf],
                                   rtol=1e-5, atol=1e-6, err_msg=f"{s}/{layer}/{leaf}")
  # What the file does not hold (BN6, fc7, fc8) keeps the fresh initialisation, as with BVLC's.
  np.testing.assert_array_equal(loaded["params"]["fc7"]["kernel"], fresh["params"]["fc7"]["kernel"])
  np.testing.assert_array_equal(loaded["params"]["stream_v"]["bn6"]["scale"],
                                fresh["params"]["stream_v"]["bn6"]["scale"])
  # The visible stream computes what the trained one did.
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 99, 99, 3)), jnp.float32)
  fwd = jax.jit(lambda v, x: model.apply(v, x, modality=0)[1]["fc6"])
  np.testing.assert_allclose(fwd(loaded, x), fwd(variables, x), rtol=1e-4, atol=1e-4)


def test_alexnet_export_is_in_caffes_input_convention(tmp_path, trained):
  """conv1 in the file, applied (loop reference) to Caffe's input — BGR 0–255 minus the mean
  pixel — equals the trained conv1 on our input, RGB normalised with ImageNet mean/std."""
  _, variables = trained
  w, b = synthetic_pretrain.export_bvlc_alexnet(variables)["conv1"]
  u = np.random.default_rng(1).uniform(0, 1, size=(1, 15, 19, 3))  # RGB in [0, 1]
  x = (u - pretrained.IMAGENET_MEAN) / pretrained.IMAGENET_STD
  z = 255 * u[..., ::-1] - pretrained.CAFFE_MEAN_BGR
  conv1 = variables["params"]["stream_v"]["conv1"]
  ours = np_conv(x, np.asarray(conv1["kernel"]).transpose(3, 2, 0, 1), np.asarray(conv1["bias"]),
                 stride=4, pad=0)
  np.testing.assert_allclose(np_conv(z, w, b, stride=4, pad=0), ours, rtol=1e-4, atol=1e-4)


def test_alexnet_export_needs_a_square_pool5(tmp_path):
  model = create_reid_model("alexnet_tiny", 5)
  variables = random_variables(model, 131, 67)  # pool5 3×1
  with pytest.raises(ValueError, match="square"):
    synthetic_pretrain.write_weights(str(tmp_path / "x.npy"), variables, "alexnet_tiny")
  assert not (tmp_path / "x.npy").exists()


def test_resnet_export_round_trips_through_the_torchvision_loader(tmp_path):
  model = create_reid_model("resnet_tiny", 5)
  variables = random_variables(model, 64, 32, seed=5)
  path = str(tmp_path / "resnet_tiny_synthetic.npz")
  synthetic_pretrain.write_weights(path, variables, "resnet_tiny")
  loaded = pretrained.load_torchvision_resnet(path, random_variables(model, 64, 32, seed=6))
  for coll in ("params", "batch_stats"):
    for key, want in jax.tree_util.tree_leaves_with_path(variables[coll]):
      top = key[0].key
      if top.startswith(("stem_v", "layer")):  # both stems load stem_v's (one conv1/bn1)
        got = loaded[coll]
        for k in key:
          got = got[k.key]
        np.testing.assert_array_equal(got, want, err_msg=f"{coll}/{key}")


def test_synthetic_alexnet_config_is_the_demo_with_the_papers_network():
  """configs/synthetic_alexnet.py = configs/synthetic.py with the AlexNet, its input and its
  pretrained file; a square input (the BVLC layout's fc6 needs one) that AlexNet's strides take."""
  import json
  import os
  from ce2l_jax import config_check
  from tests.test_configs import ROOT, load
  base, c = load("synthetic"), load("synthetic_alexnet")
  diff = set(config_check.diff_configs(json.loads(base.to_json_best_effort()),
                                       json.loads(c.to_json_best_effort())))
  assert {k for k in diff if not k.startswith(("input.", "reid."))} == {
      "init", "eval.flip", "cyclegan.image_size"}
  assert c.reid.model == "alexnet_tiny" and c.init.endswith("alexnet_tiny_synthetic.npy")
  assert os.path.dirname(c.init) == os.path.join(ROOT, "weights")
  h, w = c.input.image_size
  assert h == w >= 67 and tuple(c.input.crop) == (h, w)
  assert load("synthetic_alexnet", "reduced").reid.num_steps == c.reid.num_steps // 2


def test_synthetic_alexnet_drops_its_lr_late_in_both_scales():
  """The AlexNet's re-ID lr falls tenfold at three quarters of its steps, full and `:reduced`
  (docs/notes/synthetic_alexnet.md, sixth session: +2.2 rank-1 over a constant lr, 5 seeds)."""
  from ce2l_jax.data import synthetic as synthetic_data
  from ce2l_jax.trainers import reid
  from tests.test_configs import load
  visible = int((synthetic_data.specs("sysu", "train")["modality"] == 0).sum())
  for name in ("", "reduced"):
    c = load("synthetic_alexnet", name)
    spe = -(-visible // (c.input.p * c.input.k))  # the sampler's steps per epoch
    lr = reid.make_schedule(c.reid, spe)
    n = c.reid.num_steps
    drop = next((s for s in range(n) if float(lr(s)) < c.reid.lr), n)
    assert 0.7 * n <= drop <= 0.8 * n, (name, drop, n)
    assert float(lr(0)) == pytest.approx(c.reid.lr)
    assert float(lr(n - 1)) == pytest.approx(0.1 * c.reid.lr)


def test_committed_alexnet_file_loads_into_the_configs_model():
  """weights/alexnet_tiny_synthetic.npy (configs/synthetic_alexnet.py's `init`) goes through the
  real-weights path (`pretrained_loader` → `load_bvlc_alexnet`, as run.py's `config.init`) into
  the config's model at the config's input size: both streams get conv1..fc6, and exporting them
  again gives the file back (so fc6's (C, H, W) order and conv1's input convention fit)."""
  import os
  from ce2l_jax.trainers import reid as reid_trainer
  from tests.test_configs import load
  c = load("synthetic_alexnet")
  assert os.path.exists(c.init), f"{c.init} missing: see docs/notes/synthetic_alexnet.md"
  model = reid_trainer.create_model(c.reid, 7)
  h, w = c.input.image_size
  fresh = random_variables(model, h, w, seed=8)
  loaded = pretrained.pretrained_loader(c.reid.model)(c.init, fresh)
  raw = pretrained.read_pickled_npy(c.init)
  again = synthetic_pretrain.export_bvlc_alexnet(loaded)
  for layer in pretrained.ALEXNET_LAYERS:
    for got, want in zip(again[layer], raw[layer]):
      np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max(),
                                 err_msg=layer)
    for leaf in ("kernel", "bias"):
      np.testing.assert_array_equal(loaded["params"]["stream_t"][layer][leaf],
                                    loaded["params"]["stream_v"][layer][leaf])
      assert not np.allclose(loaded["params"]["stream_v"][layer][leaf],
                             fresh["params"]["stream_v"][layer][leaf])
  # Each stream its own buffer: the training step donates its state (one buffer twice fails).
  step = jax.jit(lambda v: jax.tree.map(lambda x: x + 1, v), donate_argnums=(0,))
  step(loaded["params"])


@pytest.mark.parametrize("name", ["synthetic", "synthetic_regdb", "synthetic_regdb:res64"])
def test_committed_resnet_file_loads_into_the_configs_model(name):
  """Each ResNet twin config's `init` (weights/resnet_tiny_w16_synthetic.npz for the SYSU twin's
  width 16 and the RegDB twin's recipe, weights/resnet_tiny_synthetic.npz for width 8, the RegDB
  twin's `res64`) loads through the
  real-weights path into the config's own model: every conv/bn leaf of stem and layers is
  replaced, both stems get the file's conv1, and the head keeps its fresh values. A width that does
  not match its file fails here (the loader checks shapes), not minutes into `make demo`."""
  import os
  from ce2l_jax.trainers import reid as reid_trainer
  from tests.test_configs import load
  c = load(*name.split(":"))
  assert os.path.exists(c.init), f"{c.init} missing: see docs/notes/synthetic_benchmark.md"
  model = reid_trainer.create_model(c.reid, 7)
  h, w = c.input.image_size
  fresh = random_variables(model, h, w, seed=8)
  loaded = pretrained.pretrained_loader(c.reid.model)(c.init, fresh)
  replaced = 0
  for key, old in jax.tree_util.tree_leaves_with_path(fresh["params"]):
    got = loaded["params"]
    for k in key:
      got = got[k.key]
    if key[0].key.startswith(("stem_", "layer")):
      replaced += 1
      assert not np.allclose(got, old), key
    else:
      np.testing.assert_array_equal(got, old, err_msg=str(key))
  assert replaced >= 10
  stems = [k for k in loaded["params"] if k.startswith("stem_")]
  assert len(stems) == 2
  np.testing.assert_array_equal(*(jax.tree.leaves(loaded["params"][s])[0] for s in stems))


def test_spread_fc6_is_fc6_of_the_pool5_average():
  """A 1×1-pool5 file's fc6 spread over an h×w pool5 (Caffe's (C, H, W) flatten) computes fc6 of
  the map's per-channel average — what the smaller network computed on its 1×1 map."""
  rng = np.random.default_rng(0)
  w, b = rng.normal(size=(6, 4)), rng.normal(size=6)
  raw = {"conv5": [np.zeros((4, 2, 3, 3)), np.zeros(4)], "fc6": [w, b]}
  out = synthetic_pretrain.spread_fc6(raw, (2, 3))
  x = rng.normal(size=(4, 2, 3))  # (C, H, W)
  np.testing.assert_allclose(out["fc6"][0] @ x.reshape(-1), w @ x.mean(axis=(1, 2)), rtol=1e-12)
  assert out["fc6"][1] is b and out["conv5"] is raw["conv5"]


def test_a_67_file_starts_the_99_network(tmp_path, trained):
  """`--init` with a 67×67 file (pool5 1×1) for a 99×99 run (pool5 2×2): fc6 is spread and the
  file loads through the real-weights loader; a file of the right size is used as it is."""
  model, variables = trained
  small = random_variables(model, 67, 67, seed=5)
  path = str(tmp_path / "a67.npy")
  synthetic_pretrain.write_weights(path, small, "alexnet_tiny")
  spread = synthetic_pretrain._fc6_for_input(path, variables, str(tmp_path))
  assert spread != path and pretrained.read_pickled_npy(spread)["fc6"][0].shape == (256, 128)
  loaded = pretrained.load_bvlc_alexnet(spread, variables)
  np.testing.assert_allclose(loaded["params"]["stream_v"]["conv1"]["kernel"],
                             small["params"]["stream_v"]["conv1"]["kernel"], rtol=1e-5, atol=1e-6)
  same = str(tmp_path / "a99.npy")
  synthetic_pretrain.write_weights(same, variables, "alexnet_tiny")
  assert synthetic_pretrain._fc6_for_input(same, variables, str(tmp_path)) == same


def test_pretrain_from_a_67_file_at_99(tmp_path, trained):
  """`pretrain(init=<67×67 file>)` at 99×99 (the second stage's command) starts from the spread
  file: one step on `tiny`, and the written conv1 is the 67 file's moved by one Adam step."""
  model, _ = trained
  small = random_variables(model, 67, 67, seed=6)
  init = str(tmp_path / "a67.npy")
  synthetic_pretrain.write_weights(init, small, "alexnet_tiny")
  out = str(tmp_path / "a99.npy")
  synthetic_pretrain.pretrain(out, model="alexnet_tiny", data="tiny", size=(99, 99), steps=1, p=2,
                              k=2, lr=1e-6, weight_decay=0.0, seed=0, init=init, log_every=1,
                              model_kwargs='{"dropout": 0.0}')
  assert (tmp_path / "a67_fc6x2.npy").exists()
  got, want = (pretrained.read_pickled_npy(f) for f in (out, init))
  assert got["fc6"][0].shape == (256, 128)
  np.testing.assert_allclose(got["conv1"][0], want["conv1"][0], atol=1e-4)
