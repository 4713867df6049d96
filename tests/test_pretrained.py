"""Pretrained loaders on generated weight files in the real formats (random arrays).

bvlc_alexnet.npy: pickled dict layer → [W, b] (Caffe or caffe-tensorflow layout); torchvision
ResNet state dict `.npz`. Shapes come from the tiny models; the full-size name/shape bookkeeping
is checked on `jax.eval_shape` variables.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ce2l_jax.models import create_reid_model, init_reid_variables
from ce2l_jax.models import pretrained
from ce2l_jax.models.layers import GroupedConv
from ce2l_jax.models.resnet import ResNetStem
from tests.test_models import random_variables


def np_conv(x, w, b, stride, pad, groups=1):
  """Reference convolution, NHWC input, Caffe/torch weight (out, in/groups, kh, kw), loops."""
  x = np.pad(np.asarray(x, np.float64), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  n, h, wd, c = x.shape
  o, ci, kh, kw = w.shape
  ho, wo = (h - kh) // stride + 1, (wd - kw) // stride + 1
  y = np.zeros((n, ho, wo, o))
  co = o // groups
  for i in range(ho):
    for j in range(wo):
      patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]  # (n, kh, kw, c)
      for g in range(groups):
        y[:, i, j, g * co:(g + 1) * co] = np.einsum(
            "nhwc,ochw->no", patch[..., g * ci:(g + 1) * ci], w[g * co:(g + 1) * co])
  return y + (0 if b is None else b)


# ---------------------------------------------------------------------------- AlexNet -------


def test_full_size_alexnet_expects_the_bvlc_shapes():
  v = jax.eval_shape(lambda: init_reid_variables(create_reid_model("bdtr_alexnet", 395),
                                                 jax.random.key(0), 227, 227))
  assert pretrained.bvlc_alexnet_file_shapes(v, "caffe") == {
      "conv1": (96, 3, 11, 11), "conv2": (256, 48, 5, 5), "conv3": (384, 256, 3, 3),
      "conv4": (384, 192, 3, 3), "conv5": (256, 192, 3, 3), "fc6": (4096, 9216)}
  assert pretrained.bvlc_alexnet_file_shapes(v, "tf")["conv2"] == (5, 5, 48, 256)


@pytest.fixture(scope="module")
def alexnet_tiny():
  # 99×99 input → pool5 2×2, so fc6's (C, H, W) → (H, W, C) reordering is exercised.
  model = create_reid_model("alexnet_tiny", 5)
  variables = random_variables(model, 99, 99)
  shapes = pretrained.bvlc_alexnet_file_shapes(variables, "caffe")
  rng = np.random.default_rng(0)
  caffe = {k: [rng.normal(size=s).astype(np.float32) * 0.05,
               rng.normal(size=s[0]).astype(np.float32)] for k, s in shapes.items()}
  caffe["fc7"] = [np.zeros((7, 256), np.float32), np.zeros(7, np.float32)]  # unused
  return model, variables, caffe


def _save(tmp_path, d, name="bvlc_alexnet.npy"):
  path = str(tmp_path / name)
  np.save(path, d, allow_pickle=True)
  return path


def test_alexnet_caffe_layout(tmp_path, alexnet_tiny):
  model, variables, caffe = alexnet_tiny
  path = _save(tmp_path, caffe)
  raw = pretrained.load_bvlc_alexnet(path, variables, input_convention="caffe")
  folded = pretrained.load_bvlc_alexnet(path, variables)
  np.testing.assert_array_equal(raw["params"]["stream_t"]["conv1"]["kernel"],
                                caffe["conv1"][0].transpose(2, 3, 1, 0))
  for s in ("stream_v", "stream_t"):
    np.testing.assert_array_equal(raw["params"][s]["conv2"]["kernel"],
                                  caffe["conv2"][0].transpose(2, 3, 1, 0))
  # Untouched leaves keep their values; the caller's variables are not modified.
  np.testing.assert_array_equal(raw["params"]["fc7"]["kernel"],
                                variables["params"]["fc7"]["kernel"])
  assert not np.array_equal(variables["params"]["stream_v"]["conv1"]["kernel"],
                            raw["params"]["stream_v"]["conv1"]["kernel"])

  rng = np.random.default_rng(1)
  # conv1 (raw): the model's layer on Caffe input (BGR 0–255 minus mean) = numpy reference.
  z = rng.uniform(-120, 130, size=(1, 19, 23, 3)).astype(np.float32)
  conv1 = GroupedConv(16, 11, 4, 0, groups=1)
  want = np_conv(z, *caffe["conv1"], stride=4, pad=0)
  np.testing.assert_allclose(conv1.apply({"params": raw["params"]["stream_t"]["conv1"]}, z), want,
                             rtol=1e-4, atol=1e-3)
  # conv1 (folded): the same numbers from RGB normalised with ImageNet mean/std.
  u = rng.uniform(0, 1, size=(1, 19, 23, 3))  # RGB in [0, 1]
  x = ((u - pretrained.IMAGENET_MEAN) / pretrained.IMAGENET_STD).astype(np.float32)
  z = (255 * u[..., ::-1] - pretrained.CAFFE_MEAN_BGR).astype(np.float32)
  np.testing.assert_allclose(conv1.apply({"params": folded["params"]["stream_v"]["conv1"]}, x),
                             np_conv(z, *caffe["conv1"], stride=4, pad=0), rtol=1e-4, atol=1e-3)
  # conv2 (groups 2): Caffe's grouping maps onto the model's grouped kernel.
  h = rng.normal(size=(1, 6, 5, 16)).astype(np.float32)
  conv2 = GroupedConv(32, 5, 1, 2, groups=2)
  np.testing.assert_allclose(conv2.apply({"params": raw["params"]["stream_v"]["conv2"]}, h),
                             np_conv(h, *caffe["conv2"], stride=1, pad=2, groups=2),
                             rtol=1e-4, atol=1e-4)
  # fc6: pool5 (H, W, C) flattened our way · loaded kernel = Caffe's (C, H, W) flatten · W^T.
  p5 = rng.normal(size=(2, 2, 2, 32)).astype(np.float32)
  fc6 = raw["params"]["stream_v"]["fc6"]
  ours = p5.reshape(2, -1) @ np.asarray(fc6["kernel"]) + np.asarray(fc6["bias"])
  want = p5.transpose(0, 3, 1, 2).reshape(2, -1) @ caffe["fc6"][0].T + caffe["fc6"][1]
  np.testing.assert_allclose(ours, want, rtol=1e-4, atol=1e-4)
  # And the loaded model runs end to end.
  emb, _ = jax.jit(lambda v, x: model.apply(v, x, modality=0))(
      folded, jnp.zeros((1, 99, 99, 3), jnp.float32))
  assert emb.shape == (1, 128) and np.all(np.isfinite(emb))


def test_alexnet_tf_layout_loads_the_same(tmp_path, alexnet_tiny):
  _, variables, caffe = alexnet_tiny
  tf = {}
  for k, (w, b) in caffe.items():
    if k.startswith("conv"):
      tf[k] = [w.transpose(2, 3, 1, 0), b]
    elif k == "fc6":  # caffe-tensorflow: rows in (H, W, C) order
      tf[k] = [w.reshape(-1, 32, 2, 2).transpose(2, 3, 1, 0).reshape(128, -1), b]
    else:
      tf[k] = [w.T, b]
  a = pretrained.load_bvlc_alexnet(_save(tmp_path, caffe, "c.npy"), variables)
  b = pretrained.load_bvlc_alexnet(_save(tmp_path, tf, "t.npy"), variables)
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_alexnet_errors(tmp_path, alexnet_tiny):
  _, variables, caffe = alexnet_tiny
  bad = dict(caffe)
  bad["conv3"] = [caffe["conv3"][0][:, :-1], caffe["conv3"][1]]
  path = _save(tmp_path, bad, "bad.npy")
  with pytest.raises(ValueError, match=r"bad\.npy: layer conv3: expected shape \(48, 32, 3, 3\), "
                     r"found \(48, 31, 3, 3\)"):
    pretrained.load_bvlc_alexnet(path, variables)
  missing = {k: v for k, v in caffe.items() if k != "conv4"}
  with pytest.raises(ValueError, match=r"missing\.npy: layer conv4 missing"):
    pretrained.load_bvlc_alexnet(_save(tmp_path, missing, "missing.npy"), variables)
  # A model whose fc6 input is not the file's (other input size) is refused.
  other = random_variables(create_reid_model("alexnet_tiny", 5), 67, 67)
  with pytest.raises(ValueError, match="layer fc6: expected shape"):
    pretrained.load_bvlc_alexnet(_save(tmp_path, caffe), other)


# ----------------------------------------------------------------------------- ResNet -------


def torchvision_keys(blocks):
  """The state-dict keys torchvision's ResNet (bottleneck) has, fc and counters excluded."""
  bn = lambda p: [f"{p}.{s}" for s in ("weight", "bias", "running_mean", "running_var")]
  keys = ["conv1.weight"] + bn("bn1")
  for s, n in enumerate(blocks, start=1):
    for j in range(n):
      p = f"layer{s}.{j}"
      for c in (1, 2, 3):
        keys += [f"{p}.conv{c}.weight"] + bn(f"{p}.bn{c}")
      if j == 0:
        keys += [f"{p}.downsample.0.weight"] + bn(f"{p}.downsample.1")
  return keys


def test_full_size_resnet_mapping_covers_torchvision_resnet50():
  for specific in (False, True):
    v = jax.eval_shape(lambda: init_reid_variables(
        create_reid_model("resnet50_agw", 4, specific_layer1=specific), jax.random.key(0), 64, 32))
    mapping = pretrained.torchvision_resnet_mapping(v)
    assert sorted(mapping) == sorted(torchvision_keys((3, 4, 6, 3)))
    assert len(mapping) == 53 + 53 * 4  # 53 convs, 53 BatchNorms
    # The stem goes to both stems; layer1 too when it is modality-specific.
    assert len(mapping["conv1.weight"]) == 2
    assert len(mapping["layer1.0.conv1.weight"]) == (2 if specific else 1)
    assert mapping["layer4.0.downsample.1.running_var"] == [
        ("batch_stats", ("layer4_0", "downsample_bn", "var"), "copy")]


@pytest.fixture(scope="module")
def resnet_tiny():
  model = create_reid_model("resnet_tiny", 5)
  variables = random_variables(model, 32, 16)
  mapping = pretrained.torchvision_resnet_mapping(variables)
  rng = np.random.default_rng(0)
  sd = {}
  for key, targets in mapping.items():
    coll, path, kind = targets[0]
    leaf = variables[coll]
    for p in path:
      leaf = leaf[p]
    s = leaf.shape if kind == "copy" else (leaf.shape[3], leaf.shape[2], *leaf.shape[:2])
    sd[key] = (rng.uniform(0.5, 1.5, size=s) if key.endswith("running_var")
               else rng.normal(size=s) * 0.2).astype(np.float32)
  sd["bn1.num_batches_tracked"] = np.array(7, np.int64)
  sd["fc.weight"], sd["fc.bias"] = np.zeros((1000, 256), np.float32), np.zeros(1000, np.float32)
  return model, variables, sd


def test_resnet_loads_torchvision_state_dict(tmp_path, resnet_tiny):
  model, variables, sd = resnet_tiny
  path = str(tmp_path / "resnet.npz")
  np.savez(path, **sd)
  v = pretrained.load_torchvision_resnet(path, variables)
  np.testing.assert_array_equal(v["params"]["layer3_0"]["conv2"]["kernel"],
                                sd["layer3.0.conv2.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(v["batch_stats"]["layer2_0"]["downsample_bn"]["mean"],
                                sd["layer2.0.downsample.1.running_mean"])
  np.testing.assert_array_equal(v["params"]["bnneck"]["scale"],
                                variables["params"]["bnneck"]["scale"])
  # The stem (conv1 7×7/2 pad 3 → BN (running stats) → ReLU → max-pool 3/2 pad 1), both stems,
  # against numpy.
  x = np.random.default_rng(1).normal(size=(1, 14, 10, 3)).astype(np.float32)
  y = np_conv(x, sd["conv1.weight"], None, stride=2, pad=3)
  y = (y - sd["bn1.running_mean"]) / np.sqrt(sd["bn1.running_var"] + 1e-5) * sd["bn1.weight"] \
      + sd["bn1.bias"]
  y = np.pad(np.maximum(y, 0), ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
  ho, wo = (y.shape[1] - 3) // 2 + 1, (y.shape[2] - 3) // 2 + 1
  want = np.array([[[y[0, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max((0, 1)) for j in range(wo)]
                    for i in range(ho)]])
  stem = ResNetStem(width=8)
  for s in ("stem_v", "stem_t"):
    got = stem.apply({"params": v["params"][s], "batch_stats": v["batch_stats"][s]}, x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_resnet_errors(tmp_path, resnet_tiny):
  _, variables, sd = resnet_tiny
  bad = dict(sd)
  bad["layer2.0.conv1.weight"] = sd["layer2.0.conv1.weight"][:, :-1]
  np.savez(tmp_path / "bad.npz", **bad)
  with pytest.raises(ValueError, match=r"bad\.npz: layer layer2\.0\.conv1\.weight: expected shape "
                     r"\(16, 32, 1, 1\), found \(16, 31, 1, 1\)"):
    pretrained.load_torchvision_resnet(str(tmp_path / "bad.npz"), variables)
  np.savez(tmp_path / "missing.npz", **{k: v for k, v in sd.items() if k != "layer4.0.bn3.bias"})
  with pytest.raises(ValueError, match=r"missing\.npz: layer layer4\.0\.bn3\.bias missing"):
    pretrained.load_torchvision_resnet(str(tmp_path / "missing.npz"), variables)
  np.savez(tmp_path / "extra.npz", **sd, **{"layer1.1.conv1.weight": np.zeros((8, 32, 1, 1))})
  with pytest.raises(ValueError, match=r"extra\.npz: layer layer1\.1\.conv1\.weight is not in"):
    pretrained.load_torchvision_resnet(str(tmp_path / "extra.npz"), variables)


# ------------------------------------------------------------------ restricted unpickling ----


class _CallsOnLoad:
  """Pickles as `func(*args)`: what a crafted weights file does to run code when unpickled."""

  def __init__(self, func, *args):
    self.func, self.args = func, args

  def __reduce__(self):
    return self.func, self.args


def _npy_of_pickle(path, payload: bytes):
  """A .npy file of a 0-d object array whose pickle is `payload` (as np.save writes one)."""
  with open(path, "wb") as f:
    np.lib.format.write_array_header_1_0(
        f, {"descr": "|O", "fortran_order": False, "shape": ()})
    f.write(payload)
  return str(path)


@pytest.mark.parametrize("func,args", [
    ("os.system", None), ("builtins.eval", ("1 + 1",)), ("numpy.load", ("x.npy",))])
def test_alexnet_pickle_calling_a_function_is_refused(tmp_path, alexnet_tiny, func, args):
  import importlib
  import os
  _, variables, caffe = alexnet_tiny
  marker = tmp_path / "pwned"
  module, name = func.rsplit(".", 1)
  fn = getattr(importlib.import_module(module), name)
  args = args or (f"touch {marker}",)
  evil = dict(caffe, conv1=[_CallsOnLoad(fn, *args), caffe["conv1"][1]])
  path = _save(tmp_path, evil, "evil.npy")
  with pytest.raises(ValueError) as e:
    pretrained.load_bvlc_alexnet(path, variables)
  msg = str(e.value)
  assert "\n" not in msg and msg.startswith(f"{path}: refused to unpickle "), msg
  assert name in msg, msg
  assert not marker.exists()
  # The function is refused before anything is called, also when it is not the first entry.
  evil = dict(caffe, fc7=_CallsOnLoad(os.system, f"touch {marker}"))
  with pytest.raises(ValueError, match="refused to unpickle"):
    pretrained.load_bvlc_alexnet(_save(tmp_path, evil, "evil2.npy"), variables)
  assert not marker.exists()


def test_alexnet_numpy1_protocol2_pickle_loads(tmp_path, alexnet_tiny):
  """The caffe-tensorflow `bvlc_alexnet.npy` was written by numpy 1.x with pickle protocol 2
  (globals `numpy.core.multiarray._reconstruct`, bytes through `_codecs.encode`): the
  restricted unpickler admits exactly that, and gives the same weights as np.save's pickle."""
  import pickle
  _, variables, caffe = alexnet_tiny
  obj = np.empty((), dtype=object)
  obj[()] = caffe
  payload = pickle.dumps(obj, protocol=2).replace(b"numpy._core.multiarray\n",
                                                  b"numpy.core.multiarray\n")
  assert b"numpy.core.multiarray\n_reconstruct" in payload and b"_codecs\nencode" in payload
  old = pretrained.load_bvlc_alexnet(_npy_of_pickle(tmp_path / "py2.npy", payload), variables)
  new = pretrained.load_bvlc_alexnet(_save(tmp_path, caffe, "np2.npy"), variables)
  jax.tree.map(np.testing.assert_array_equal, old, new)
  # Not a .npy at all: one line naming the file.
  (tmp_path / "junk.npy").write_bytes(b"PK\x03\x04 not numpy")
  with pytest.raises(ValueError, match=r"junk\.npy: not a \.npy file"):
    pretrained.load_bvlc_alexnet(str(tmp_path / "junk.npy"), variables)
