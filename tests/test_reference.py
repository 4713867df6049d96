"""The networks against fixtures written by the reference implementations themselves.

`tests/reference/make_fixtures.py` (run by hand where PyTorch is installed; versions in its
docstring and in each fixture's `meta`) wrote, with random weights at tiny widths:
- torchvision's own ResNet/Bottleneck (AGW's last stride 1): every stage in eval and train mode,
  and the running statistics after the train-mode forward;
- the CycleGAN authors' ResnetGenerator and NLayerDiscriminator (their `models/networks.py`):
  every conv, residual block and network output;
- Caffe's BVLC AlexNet conv1 … fc6 from its definition (LRN across channels with α/n, grouped
  convs, ceil-mode pooling) on Caffe's BGR/0–255/mean-subtracted input.
Each fixture is loaded into the project's model — through the weight loaders of
`ce2l_jax.models.pretrained` for ResNet and AlexNet, through the torch → flax mapping below for
the CycleGAN (the project has no CycleGAN weight loader) — and every stage must agree to 1e-5 of
the stage's largest magnitude (at least 1e-5 absolute). docs/notes/reference_fixtures.md lists the
mutations (SAME padding, no LRN, BatchNorm ε 1e-3, kernel height/width swapped, zero instead of
reflection padding, biased running variance) each of these tests catches.
"""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ce2l_jax.models import create_reid_model, pretrained
from ce2l_jax.models import cyclegan as cg
from tests.test_models import random_variables

REF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference")
TOL = 1e-5


def fixture(name: str) -> tuple[dict, dict[str, np.ndarray]]:
  with np.load(os.path.join(REF, name)) as z:
    arrays = {k: z[k] for k in z.files}
  return json.loads(str(arrays.pop("meta"))), arrays


def assert_close(got, want, what: str) -> None:
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  assert got.shape == want.shape, f"{what}: shape {got.shape}, reference {want.shape}"
  err, scale = float(np.max(np.abs(got - want))), max(1.0, float(np.max(np.abs(want))))
  assert err <= TOL * scale, f"{what}: max |ours - reference| = {err:.3g} > {TOL:g} x {scale:.3g}"


def captured(intermediates: dict, *path: str) -> np.ndarray:
  node = intermediates
  for p in path:
    node = node[p]
  return node["__call__"][0]


# ------------------------------------------------------------------------------- ResNet ----


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
  meta, a = fixture("resnet_torchvision.npz")
  model = create_reid_model("resnet_tiny", 3, width=meta["width"], blocks=tuple(meta["blocks"]),
                            last_stride=meta["last_stride"])
  h, w = a["input"].shape[1:3]
  path = str(tmp_path_factory.mktemp("resnet") / "resnet_tiny_torchvision.npz")
  np.savez(path, **{k[3:]: v for k, v in a.items() if k.startswith("sd/")})
  variables = pretrained.load_torchvision_resnet(path, random_variables(model, h, w))
  return meta, a, model, variables


def resnet_stages(model, variables, x, train: bool, blocks):
  mutable = ["intermediates"] + (["batch_stats"] if train else [])
  _, state = jax.jit(lambda v, x: model.apply(v, x, modality=0, train=train, mutable=mutable,
                                              capture_intermediates=True))(variables, x)
  inter = state["intermediates"]
  stages = {"stem": captured(inter, "stem_v")}
  for s, n in enumerate(blocks, start=1):
    stages[f"layer{s}"] = captured(inter, f"layer{s}_{n - 1}")
  return stages, state.get("batch_stats")


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_resnet_stages_equal_torchvision(resnet, mode):
  """conv1/bn1/max-pool and the four bottleneck stages (stride-2 3×3 convs, downsample
  branches, BatchNorm with running statistics in eval mode, batch statistics in train mode)."""
  meta, a, model, variables = resnet
  stages, _ = resnet_stages(model, variables, a["input"], mode == "train", meta["blocks"])
  for name in meta["stages"]:
    assert_close(stages[name], a[f"{mode}/{name}"], f"{mode} {name}")


def test_resnet_running_statistics_follow_pytorch(resnet):
  """After one train-mode forward every BatchNorm's running mean and (unbiased) running variance
  equal PyTorch's: momentum 0.1 and var · m/(m − 1), m values per channel (16 in layer4)."""
  meta, a, model, variables = resnet
  _, stats = resnet_stages(model, variables, a["input"], True, meta["blocks"])
  checked = 0
  for key, targets in pretrained.torchvision_resnet_mapping(variables).items():
    if not key.endswith(("running_mean", "running_var")):
      continue
    for coll, path, _ in targets:
      if path[0] == "stem_t":  # the infrared stem did not run (visible images only)
        continue
      node = stats
      for p in path:
        node = node[p]
      assert_close(node, a[f"train_sd/{key}"], f"running statistics {key}")
      checked += 1
  assert checked == 2 * (1 + 4 * 4)  # mean and var of bn1 and of 4 BNs in each of 4 stages


# ----------------------------------------------------------------------------- CycleGAN ----


def cyclegan_torch_mapping(meta: dict) -> dict[str, tuple[str, tuple[str, ...], str]]:
  """torch state-dict key → (network, flax path, kind) for the authors' Sequential layouts.

  Generator `model.i`: 1 stem, 4 and 7 the downsamplings, 10 + b residual block b (its
  `conv_block.1` and `.5` are the two convs), then 10 + B and 13 + B the transposed convs and
  17 + B the head (B blocks). PatchGAN `model.i`: 0 the first conv, 2 + 3(n − 1) conv n, and
  2 + 3·n_layers the output conv.
  """
  B, L = meta["n_blocks"], meta["n_layers"]
  g = {"model.1": ("stem",), "model.4": ("down0",), "model.7": ("down1",),
       f"model.{10 + B}": ("up0",), f"model.{13 + B}": ("up1",), f"model.{17 + B}": ("head",)}
  for b in range(B):
    g[f"model.{10 + b}.conv_block.1"] = (f"block{b}", "Conv_0")
    g[f"model.{10 + b}.conv_block.5"] = (f"block{b}", "Conv_1")
  d = {"model.0": ("conv0",), f"model.{2 + 3 * L}": ("out",)}
  d.update({f"model.{2 + 3 * (n - 1)}": (f"conv{n}",) for n in range(1, L + 1)})
  out = {}
  for net, layers in (("G", g), ("D", d)):
    for prefix, path in layers.items():
      kind = "transpose" if path[0] in ("up0", "up1") else "conv"
      out[f"{net}/{prefix}.weight"] = (net, path + ("kernel",), kind)
      out[f"{net}/{prefix}.bias"] = (net, path + ("bias",), "copy")
  return out


@pytest.fixture(scope="module")
def cyclegan():
  meta, a = fixture("cyclegan_reference.npz")
  cfg = ml_collections.ConfigDict(dict(ngf=meta["ngf"], n_blocks=meta["n_blocks"],
                                       ndf=meta["ndf"], n_layers_d=meta["n_layers"]))
  models = cg.build_models(cfg)
  nets = {"G": models["gen_rgb2ir"], "D": models["disc_ir"]}
  params = {}
  for net, module in nets.items():
    x = jax.ShapeDtypeStruct(a[f"{net}_input"].shape, jnp.float32)
    params[net] = jax.tree.map(lambda s: None, jax.eval_shape(
        lambda x, m=module: m.init(jax.random.key(0), x)["params"], x))
  mapping = cyclegan_torch_mapping(meta)
  assert sorted(mapping) == sorted(k for k in a if k.startswith(("G/", "D/")))
  for key, (net, path, kind) in mapping.items():
    w = a[key]
    # torch conv (out, in, kh, kw) → (kh, kw, in, out); torch transposed conv (in, out, kh, kw)
    # → flax ConvTranspose(transpose_kernel=True) (kh, kw, out, in): the same transposition.
    value = w.transpose(2, 3, 1, 0) if kind in ("conv", "transpose") else w
    node = params[net]
    for p in path[:-1]:
      node = node[p]
    assert path[-1] in node, (key, path)
    node[path[-1]] = jnp.asarray(value)
  assert all(leaf is not None for leaf in jax.tree.leaves(params, is_leaf=lambda x: x is None))
  return meta, a, nets, params


def test_cyclegan_generator_equals_the_authors(cyclegan):
  """Reflection padding, 7×7 stem, stride-2 downsamplings, residual blocks, transposed-conv
  upsampling (output_padding 1), instance norm without affine, tanh: every conv and block."""
  meta, a, nets, params = cyclegan
  out, state = jax.jit(lambda p, x: nets["G"].apply({"params": p}, x, capture_intermediates=True,
                                                    mutable=["intermediates"]))(
      params["G"], a["G_input"])
  inter = state["intermediates"]
  names = [k[len("G_out/"):] for k in a if k.startswith("G_out/") and k != "G_out/output"]
  assert len(names) == 6 + 3 * meta["n_blocks"]
  for name in names:
    assert_close(captured(inter, *name.split("/")), a[f"G_out/{name}"], f"generator {name}")
  assert_close(out, a["G_out/output"], "generator output")


def test_cyclegan_patchgan_equals_the_authors(cyclegan):
  """4×4 convs stride 2, 2, 2, then 1, 1 with padding 1, instance norm from the second conv,
  leaky ReLU 0.2: every conv's output, the last being the patch map."""
  meta, a, nets, params = cyclegan
  out, state = jax.jit(lambda p, x: nets["D"].apply({"params": p}, x, capture_intermediates=True,
                                                    mutable=["intermediates"]))(
      params["D"], a["D_input"])
  inter = state["intermediates"]
  for n in range(meta["n_layers"] + 1):
    assert_close(captured(inter, f"conv{n}"), a[f"D_out/conv{n}"], f"PatchGAN conv{n}")
  assert_close(out, a["D_out/out"], "PatchGAN output")
  assert out.shape[1:3] == cg.patch_shape(a["D_input"].shape[1:3], meta["n_layers"])


# ------------------------------------------------------------------------------ AlexNet ----


@pytest.fixture(scope="module")
def alexnet(tmp_path_factory):
  meta, a = fixture("alexnet_caffe.npz")
  model = create_reid_model("alexnet_tiny", 3, widths=tuple(meta["widths"]), fc6_dim=meta["fc6"])
  h, w = meta["input_hw"]
  path = str(tmp_path_factory.mktemp("alexnet") / "bvlc_alexnet.npy")
  np.save(path, {l: [a[f"{l}_W"], a[f"{l}_b"]] for l in pretrained.ALEXNET_LAYERS},
          allow_pickle=True)
  variables = random_variables(model, h, w)
  return meta, a, model, path, variables


@pytest.mark.parametrize("convention", ["imagenet", "caffe"])
def test_alexnet_stages_equal_caffe(alexnet, convention):
  """conv1 … conv5 (pre-ReLU), pool5 and fc6 of both streams, weights through
  `load_bvlc_alexnet`: with the ImageNet input convention folded into conv1 the model takes RGB
  normalised by mean/std; with the raw weights, Caffe's BGR 0–255 mean-subtracted input."""
  meta, a, model, path, variables = alexnet
  v = pretrained.load_bvlc_alexnet(path, variables, input_convention=convention)
  u = a["input_uint8"].astype(np.float64) / 255.0
  if convention == "imagenet":
    x = (u - pretrained.IMAGENET_MEAN) / pretrained.IMAGENET_STD
  else:
    x = 255.0 * u[..., ::-1] - np.asarray(pretrained.CAFFE_MEAN_BGR)
  x = jnp.asarray(x, jnp.float32)
  for modality, stream in enumerate(pretrained.STREAMS):
    (_, out), state = jax.jit(lambda v, x: model.apply(
        v, x, modality=modality, train=False, capture_intermediates=True,
        mutable=["intermediates"]))(v, x)
    inter = state["intermediates"]
    for i in range(1, 6):
      assert_close(captured(inter, stream, f"conv{i}"), a[f"out/conv{i}"], f"{stream} conv{i}")
    assert_close(out["pool5"], a["out/pool5"], f"{stream} pool5")
    assert_close(out["fc6"], a["out/fc6"], f"{stream} fc6")
