"""ImageNet initialisation of the re-ID models from user-supplied weight files (no downloads).

Both loaders take the model's variables (from `init_reid_variables`) and return new variables
with the pretrained arrays in place; every other leaf (BatchNorm after fc6, fc7/fc8, the BN-neck,
the classifier) keeps its initialisation. Both modality streams get the same pretrained weights.
A missing layer or a shape that does not match raises ValueError naming the file, the layer and the
expected vs found shape.

AlexNet — `bvlc_alexnet.npy`, the Caffe BVLC AlexNet that BDTR loads: a pickled dict
layer name → [W, b] for conv1..conv5, fc6, fc7, fc8. A pickle can call any function when it is
loaded, so the file is not given to `np.load(allow_pickle=True)`: `read_pickled_npy` unpickles it
with a restricted unpickler that admits only numpy arrays (and their dtypes), dicts, lists, tuples,
strings and numbers, and refuses any other global with one line naming the file.
Two layouts exist and are detected from conv1's shape:
- "caffe": W conv (out, in/groups, kh, kw), fc (out, in); fc6's 9216 inputs are pool5 flattened
  in Caffe's (C, H, W) order → reordered to our (H, W, C) flatten;
- "tf": the widely shared caffe-tensorflow conversion (the file BDTR's TensorFlow code reads):
  W conv (kh, kw, in/groups, out), fc (in, out), fc6's rows already in (H, W, C) order.
conv1..fc6 are loaded; fc7/fc8 (ImageNet's 4096 → 1000 head) are not used (BDTR's fc7 is a new
4096 → 1024 layer). fc6 needs a 227×227 input (pool5 6×6×256).
Caffe's conv1 expects BGR pixels in 0–255 minus the ImageNet mean image (per channel
B 104.0, G 116.7, R 122.7). Our pipeline feeds RGB normalised with ImageNet mean/std
(`ce2l_jax.data.augment.normalize_imagenet`). With input_convention="imagenet" (default) the
loader folds that difference into conv1, exactly (conv1 has no padding): input channels are
reversed to RGB, kernel channel c is scaled by 255·std_c and the bias absorbs
Σ W_c·(255·mean_c − caffe_mean_c). input_convention="caffe" loads the raw weights (then feed BGR
0–255 minus the Caffe mean).

ResNet-50 — a torchvision state dict saved as `.npz` (the model's own `fc` is not used):
    import torch, torchvision, numpy as np
    sd = torchvision.models.resnet50(weights='IMAGENET1K_V1').state_dict()
    np.savez('resnet50.npz', **{k: v.numpy() for k, v in sd.items()})
torch conv (out, in, kh, kw) → (kh, kw, in, out); BatchNorm weight/bias → params scale/bias,
running_mean/var → batch_stats mean/var. Both stems get the torch stem (and layer1 when it is
modality-specific). torchvision expects exactly our input (RGB, ImageNet mean/std): no folding.
"""

from __future__ import annotations

import codecs
import importlib
import os
import pickle
from typing import Any, Mapping

import jax.numpy as jnp
import numpy as np

# ImageNet RGB mean/std of torchvision and `ce2l_jax.data.augment.normalize_imagenet`.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Caffe's ilsvrc_2012_mean.npy averaged over pixels, BGR order.
CAFFE_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)

ALEXNET_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6")
STREAMS = ("stream_v", "stream_t")
STEMS = ("stem_v", "stem_t")


def _copy(tree: Any) -> Any:
  """A copy of the nested dicts (leaves shared), so the caller's variables are not modified."""
  return {k: _copy(v) for k, v in tree.items()} if isinstance(tree, Mapping) else tree


def _check(path: str, layer: str, expected: tuple, found: tuple, what: str = "") -> None:
  if tuple(expected) != tuple(found):
    raise ValueError(f"{path}: layer {layer}{what}: expected shape {tuple(expected)}, "
                     f"found {tuple(found)}")


# ------------------------------------------------------------------------------ AlexNet ----


def _numpy_global(module: str, name: str):
  return getattr(importlib.import_module(module), name)


# The globals a pickled dict of numpy arrays needs (`np.save(allow_pickle=True)` of numpy 1.x
# (Python 2 and 3) and 2.x, pickle protocols 2–5), and nothing else. `_reconstruct` builds an
# empty array of the class given (only `ndarray` resolves); `_frombuffer` (protocol 5) wraps raw
# bytes; `_codecs.encode` is how protocol 2 spells a bytes literal.
_SAFE_GLOBALS = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy.core.multiarray", "_reconstruct"):
        lambda: _numpy_global("numpy._core.multiarray" if hasattr(np, "_core")
                              else "numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"):
        lambda: _numpy_global("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"):
        lambda: _numpy_global("numpy._core.numeric" if hasattr(np, "_core")
                              else "numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"):
        lambda: _numpy_global("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"): lambda: codecs.encode,
}


class _ArraysOnlyUnpickler(pickle.Unpickler):
  """Unpickles numpy arrays, dicts, lists, tuples, strings and numbers; any other global (a
  function or class the pickle would call) raises `pickle.UnpicklingError`."""

  def find_class(self, module: str, name: str):
    make = _SAFE_GLOBALS.get((module, name))
    if make is None:
      raise pickle.UnpicklingError(f"{module}.{name}")
    return make()

  def persistent_load(self, pid):
    raise pickle.UnpicklingError(f"persistent id {pid!r}")


def read_pickled_npy(path: str) -> Any:
  """The object stored in a `.npy` file, unpickled by the restricted unpickler when the array
  holds Python objects (a 0-d object array is returned as its item). Refuses a pickle that
  names any global other than numpy's array-building ones with a one-line ValueError."""
  with open(path, "rb") as f:
    try:
      version = np.lib.format.read_magic(f)
      header = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0}.get(version)
      if header is None:
        raise ValueError(f"npy format version {version}")
      shape, fortran, dtype = header(f)
    except ValueError as e:
      raise ValueError(f"{path}: not a .npy file ({e}); expected bvlc_alexnet.npy, a pickled "
                       "dict layer → [W, b]") from None
    if not dtype.hasobject:
      f.seek(0)
      return np.load(f, allow_pickle=False)
    try:
      raw = _ArraysOnlyUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as e:
      raise ValueError(f"{path}: refused to unpickle {e}: a weights file may hold only numpy "
                       "arrays, dicts, lists, tuples and strings (is it from a source you "
                       "trust?)") from None
    except Exception as e:  # truncated or corrupt pickle
      raise ValueError(f"{path}: cannot read the pickled weights ({type(e).__name__}: {e})") \
          from None
  if isinstance(raw, np.ndarray) and raw.dtype == object and raw.shape == ():
    raw = raw.item()
  return raw


def _read_alexnet(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  if not os.path.exists(path):
    raise ValueError(f"{path}: AlexNet weight file not found")
  raw = read_pickled_npy(path)
  if not isinstance(raw, Mapping):
    raise ValueError(f"{path}: expected a pickled dict layer → [W, b] (bvlc_alexnet.npy), "
                     f"found {type(raw).__name__}")
  weights = {}
  for key, value in raw.items():
    name = key.decode() if isinstance(key, bytes) else str(key)
    if isinstance(value, Mapping):  # {'weights': W, 'biases': b} variant
      get = lambda k: value.get(k, value.get(k.encode()))
      value = [get("weights"), get("biases")]
    weights[name] = value
  for layer in ALEXNET_LAYERS:
    if layer not in weights:
      raise ValueError(f"{path}: layer {layer} missing (file has {sorted(weights)})")
    if len(weights[layer]) != 2:
      raise ValueError(f"{path}: layer {layer}: expected [W, b], "
                       f"found {len(weights[layer])} arrays")
  return {k: (np.asarray(v[0], np.float32), np.asarray(v[1], np.float32))
          for k, v in weights.items() if k in ALEXNET_LAYERS}


def _detect_layout(path: str, w_conv1: np.ndarray) -> str:
  if w_conv1.ndim == 4 and w_conv1.shape[1] == 3:
    return "caffe"
  if w_conv1.ndim == 4 and w_conv1.shape[2] == 3:
    return "tf"
  raise ValueError(f"{path}: layer conv1: cannot tell the layout from shape {w_conv1.shape} "
                   "(expected (96, 3, 11, 11) Caffe or (11, 11, 3, 96) TensorFlow)")


def bvlc_alexnet_file_shapes(variables: Mapping, layout: str = "caffe") -> dict[str, tuple]:
  """The W shapes a weight file must have, in `layout`, to fit these AlexNet variables.

  Works on `jax.eval_shape` output. For BDTR's 227×227 AlexNet in Caffe layout: conv1
  (96, 3, 11, 11), conv2 (256, 48, 5, 5), conv3 (384, 256, 3, 3), conv4 (384, 192, 3, 3),
  conv5 (256, 192, 3, 3), fc6 (4096, 9216).
  """
  stream = variables["params"][STREAMS[0]]
  shapes = {}
  for layer in ALEXNET_LAYERS:
    s = tuple(stream[layer]["kernel"].shape)
    if layout == "tf":
      shapes[layer] = s
    elif layer.startswith("conv"):
      shapes[layer] = (s[3], s[2], s[0], s[1])
    else:
      shapes[layer] = (s[1], s[0])
  return shapes


def _fold_imagenet_input(w: np.ndarray, b: np.ndarray, mean, std, caffe_mean_bgr):
  """conv1 for BGR 0–255 minus caffe_mean → conv1 for RGB (x − mean)/std; w (kh, kw, 3, out).

  Caffe's input z_c = 255·u_c − μ_c with u the [0, 1] pixel and our x_c = (u_c − mean_c)/std_c,
  so z_c = 255·std_c·x_c + (255·mean_c − μ_c); conv1 has no padding, so the constant goes into b.
  """
  w_rgb = w[:, :, ::-1, :]
  mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
  offset = 255.0 * mean - np.asarray(caffe_mean_bgr, np.float64)[::-1]
  b_new = b.astype(np.float64) + np.einsum("hwco,c->o", w_rgb.astype(np.float64), offset)
  w_new = w_rgb.astype(np.float64) * (255.0 * std)[None, None, :, None]
  return w_new.astype(np.float32), b_new.astype(np.float32)


def load_bvlc_alexnet(path: str, variables: Mapping, *, layout: str = "auto",
                      input_convention: str = "imagenet", mean=IMAGENET_MEAN, std=IMAGENET_STD,
                      caffe_mean_bgr=CAFFE_MEAN_BGR) -> dict:
  """Variables of a BDTR AlexNet (`bdtr_alexnet`) with conv1..fc6 of both streams from `path`.

  layout: "auto" (from conv1's shape), "caffe" or "tf"; input_convention: "imagenet" (fold the
  BGR/0–255/mean convention into conv1 so the model takes `normalize_imagenet` RGB) or "caffe"
  (raw weights). See the module docstring for the file format.
  """
  if input_convention not in ("imagenet", "caffe"):
    raise ValueError(f"input_convention must be 'imagenet' or 'caffe', got {input_convention!r}")
  params = variables.get("params", {})
  if not all(s in params and all(l in params[s] for l in ALEXNET_LAYERS) for s in STREAMS):
    raise ValueError(f"{path}: the model has no AlexNet streams {STREAMS} with {ALEXNET_LAYERS}")
  weights = _read_alexnet(path)
  if layout == "auto":
    layout = _detect_layout(path, weights["conv1"][0])
  if layout not in ("caffe", "tf"):
    raise ValueError(f"layout must be 'auto', 'caffe' or 'tf', got {layout!r}")
  want = bvlc_alexnet_file_shapes(variables, layout)
  stream = params[STREAMS[0]]
  new = {}
  for layer in ALEXNET_LAYERS:
    w, b = weights[layer]
    if layer == "fc6" and w.shape != want[layer]:
      raise ValueError(f"{path}: layer fc6: expected shape {want[layer]}, found {w.shape} (fc6 "
                       "needs pool5 6×6×256, i.e. a 227×227 input and BVLC widths)")
    _check(path, layer, want[layer], w.shape)
    _check(path, layer, stream[layer]["bias"].shape, b.shape, " bias")
    if layout == "caffe" and layer.startswith("conv"):
      w = w.transpose(2, 3, 1, 0)
    elif layout == "caffe":
      n_in, n_out = w.shape[1], w.shape[0]
      c5 = stream["conv5"]["kernel"].shape[-1]
      hw = int(round(np.sqrt(n_in // c5)))
      if hw * hw * c5 != n_in:
        raise ValueError(f"{path}: layer fc6: {n_in} inputs are not a square pool5 "
                         f"of {c5} channels")
      w = w.reshape(n_out, c5, hw, hw).transpose(2, 3, 1, 0).reshape(n_in, n_out)
    if layer == "conv1" and input_convention == "imagenet":
      w, b = _fold_imagenet_input(w, b, mean, std, caffe_mean_bgr)
    new[layer] = {"kernel": jnp.asarray(w), "bias": jnp.asarray(b)}
  out = _copy(variables)
  for s in STREAMS:  # a copy per stream: one buffer in two places cannot be donated to a jit
    for layer, leaves in new.items():
      out["params"][s][layer] = {k: jnp.array(v, copy=True) for k, v in leaves.items()}
  return out


# ------------------------------------------------------------------------------- ResNet ----


_TORCH_NAMES = {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}


def torchvision_resnet_mapping(variables: Mapping) -> dict[str, tuple[str, tuple[str, ...], str]]:
  """torch state-dict key → (collection, path in the variables, kind) for a `ResNetAGW`.

  kind: "conv" (torch (out, in, kh, kw) → (kh, kw, in, out)) or "copy". Every stem (`stem_v`,
  `stem_t`) maps to the same torch keys. Works on `jax.eval_shape` output.
  """
  params = variables["params"]
  if not all(s in params for s in STEMS):
    raise ValueError(f"the model has no ResNet stems {STEMS}")
  mapping: dict[str, list] = {}

  def add(torch_prefix, path, module):
    if "kernel" in module:
      mapping.setdefault(f"{torch_prefix}.weight", []).append(
          ("params", path + ("kernel",), "conv"))
    else:  # BatchNorm
      for tk, coll, leaf in (("weight", "params", "scale"), ("bias", "params", "bias"),
                             ("running_mean", "batch_stats", "mean"),
                             ("running_var", "batch_stats", "var")):
        mapping.setdefault(f"{torch_prefix}.{tk}", []).append((coll, path + (leaf,), "copy"))

  def block(prefix, path, module):
    for name, sub in module.items():
      torch_name = _TORCH_NAMES.get(name, name)
      add(f"{prefix}.{torch_name}", path + (name,), sub)

  for top, module in params.items():
    if top in STEMS:
      for name, sub in module.items():
        if name.startswith("layer"):
          block(name.replace("_", "."), (top, name), sub)
        else:
          add(name, (top, name), sub)
    elif top.startswith("layer"):
      block(top.replace("_", "."), (top,), module)
  return mapping


def _get(tree, path):
  for p in path:
    tree = tree[p]
  return tree


def load_torchvision_resnet(path: str, variables: Mapping) -> dict:
  """Variables of a ResNet AGW model with its backbone from a torchvision state dict `.npz`.

  Loads conv1/bn1 into both stems and layer1..layer4 (shared or, for layer1, per stem). Keys the
  model does not use raise, except `fc.*` and `num_batches_tracked`, so a ResNet-101 file cannot
  silently half-load into a ResNet-50.
  """
  if not os.path.exists(path):
    raise ValueError(f"{path}: ResNet weight file not found")
  with np.load(path, allow_pickle=False) as f:
    sd = {k: f[k] for k in f.files}
  mapping = torchvision_resnet_mapping(variables)
  missing = [k for k in mapping if k not in sd]
  if missing:
    raise ValueError(f"{path}: layer {missing[0]} missing ({len(missing)} keys missing in all)")
  unused = [k for k in sd if k not in mapping and not k.startswith("fc.")
            and not k.endswith("num_batches_tracked")]
  if unused:
    raise ValueError(f"{path}: layer {unused[0]} is not in the model ({len(unused)} unexpected "
                     "keys; is it a ResNet-50 state dict?)")
  out = _copy(variables)
  for key, targets in mapping.items():
    value = np.asarray(sd[key], np.float32)
    for coll, tpath, kind in targets:
      s = tuple(_get(variables[coll], tpath).shape)
      if kind == "conv":
        _check(path, key, (s[3], s[2], s[0], s[1]), value.shape)
        arr = value.transpose(2, 3, 1, 0)
      else:
        _check(path, key, s, value.shape)
        arr = value
      parent = _get(out[coll], tpath[:-1])
      parent[tpath[-1]] = jnp.asarray(arr)
  return out


def pretrained_loader(name: str):
  """The loader for a `create_reid_model` name: AlexNet ones → `load_bvlc_alexnet`, ResNet ones →
  `load_torchvision_resnet`."""
  return load_bvlc_alexnet if "alexnet" in name else load_torchvision_resnet
