"""Visible-only pretraining on synthetic people: ImageNet's part for the synthetic twins.

Real VI-ReID starts from ImageNet weights (BDTR, AGW, CE²L all do); a network started from
scratch on the synthetic twins learns the training identities but transfers poorly across
modalities to unseen ones (docs/notes/synthetic_benchmark.md). This module plays ImageNet's part:
it trains the re-ID backbone with identity cross-entropy only (no ranking losses) on the *visible*
images of `synthetic_vireid/pretrain_large` — 3,000 other people (generator seed 1000), none of
whom is in any twin (`pretrain`: the earlier 500-person set) — and writes the backbone in the
format of the real ImageNet weights of that network, so that the re-ID stage loads it through the same path (`config.init`):
- ResNets (`resnet_tiny`, `resnet50_agw`): a torchvision-style state dict `.npz`, read by
  `ce2l_jax.models.pretrained.load_torchvision_resnet` (conv1/bn1 into both stems, layer1..4);
- AlexNets (`alexnet_tiny`, `bdtr_alexnet`): a `bvlc_alexnet.npy` in the Caffe layout (a pickled
  dict layer → [W, b], conv W (out, in/groups, kh, kw), fc6 W (out, in) over pool5 flattened in
  (C, H, W) order, conv1 for BGR 0–255 minus Caffe's mean pixel), read by
  `ce2l_jax.models.pretrained.load_bvlc_alexnet` (conv1..fc6 into both streams; input convention
  folded back into conv1). BN6, fc7 and fc8 are not in the file, as they are not in BVLC's.
  fc6's width depends on the input size (pool5 h×w×C5): the file fits runs at the same square
  input size only, as BVLC's fits 227×227 only.

Both streams/stems see visible images here (each slot of the P×K batch holds visible images of the
same identities, differently augmented), so the file has one set of weights, as ImageNet's has.

  python -m ce2l_jax.synthetic_pretrain --out=weights/resnet_tiny_synthetic.npz     # ~17 CPU min
  python -m ce2l_jax.synthetic_pretrain --model=alexnet_tiny --size 131 131 --pad=8 \
      --out=weights/alexnet_tiny_synthetic.npy    # docs/notes/synthetic_alexnet.md
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from ce2l_jax.data import synthetic

DEFAULTS = dict(model="resnet_tiny", data="pretrain_large", size=(64, 32), steps=6000, p=16, k=2,
                lr=1e-3, weight_decay=5e-4, seed=0, pad=4, model_kwargs="", cache="",
                save_every=0, init="")
MODELS = ("resnet_tiny", "resnet50_agw", "alexnet_tiny", "bdtr_alexnet")


def visible_images(name: str, size: tuple[int, int], cache: str = "") -> dict:
  """The visible images of every split of a synthetic config, area-resized to `size`. With
  `cache` (a folder), the rendered images are kept there at their native size
  (`<name>_visible_native.npy` + `_pid.npy`) and read back by later runs, at any size."""
  native = cache and os.path.join(cache, f"{name}_visible_native")
  if native and os.path.exists(native + "_pid.npy"):
    pid, img = np.load(native + "_pid.npy"), np.load(native + ".npy")
  else:
    parts = []
    for split in synthetic.SPLITS:
      table = synthetic.specs(name, split)
      table = synthetic.take(table, table["modality"] == 0)
      if len(table["pid"]):
        parts.append((table, synthetic.render(name, table)))
    pid = np.concatenate([t["pid"] for t, _ in parts])
    img = np.concatenate([i for _, i in parts])
    if native:
      os.makedirs(cache, exist_ok=True)
      np.save(native + ".tmp.npy", img)
      os.replace(native + ".tmp.npy", native + ".npy")
      np.save(native + "_pid.tmp.npy", pid)  # written last: marks the cache complete
      os.replace(native + "_pid.tmp.npy", native + "_pid.npy")
  h, w = img.shape[1:3]
  if (h, w) != tuple(size) and h % size[0] == 0 and w % size[1] == 0:  # area mean
    fh, fw = h // size[0], w // size[1]
    img = np.concatenate([  # in chunks: a float64 copy of 100,000 images would not fit
        np.round(c.reshape(len(c), size[0], fh, size[1], fw, 3).mean(axis=(2, 4))).astype(np.uint8)
        for c in np.array_split(img, max(1, len(img) // 4096))])
  elif (h, w) != tuple(size):  # any other size: the input pipeline's PIL bilinear resize
    from ce2l_jax.data import augment
    img = np.stack([augment.resize(x, tuple(size)) for x in img])
  return {"image": img, "pid": pid}


def _augment(img: np.ndarray, rng: np.random.Generator, pad: int = 4) -> np.ndarray:
  n, h, w, _ = img.shape
  img = np.where((rng.random(n) < 0.5)[:, None, None, None], img[:, :, ::-1], img)
  padded = np.pad(img, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  dy, dx = rng.integers(0, 2 * pad + 1, (2, n))
  return np.stack([padded[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def export_torchvision(variables: dict) -> dict[str, np.ndarray]:
  """The backbone of a `ResNetAGW`'s variables as a torchvision state dict (stem_v's conv1/bn1,
  the shared layers): the inverse of `pretrained.torchvision_resnet_mapping`."""
  from ce2l_jax.models import pretrained
  out = {}
  for key, targets in pretrained.torchvision_resnet_mapping(variables).items():
    coll, path, kind = next((t for t in targets if t[1][0] != "stem_t"), targets[0])
    value = np.asarray(pretrained._get(variables[coll], path), np.float32)  # pylint: disable=protected-access
    out[key] = value.transpose(3, 2, 0, 1) if kind == "conv" else value
  return out


def export_bvlc_alexnet(variables: dict) -> dict[str, list[np.ndarray]]:
  """stream_v's conv1..fc6 of a `BDTRAlexNet` as a `bvlc_alexnet.npy` dict in the Caffe layout:
  the inverse of `pretrained.load_bvlc_alexnet(layout='caffe', input_convention='imagenet')`.

  The loader folds Caffe's input (BGR, 255·u − μ_bgr) into conv1 for our RGB (u − mean)/std:
  W_ours[c] = 255·std_c · W_caffe[rgb c], b_ours = b_caffe + Σ W_caffe·(255·mean − μ). Here
  W_caffe = W_ours / (255·std) (channels back to BGR) and b_caffe = b_ours − Σ W_caffe·(255·mean − μ),
  in float64. fc6's rows go from our (H, W, C) flatten of pool5 to Caffe's (C, H, W).
  """
  from ce2l_jax.models import pretrained
  stream = variables["params"][pretrained.STREAMS[0]]
  c5 = stream["conv5"]["kernel"].shape[-1]
  out = {}
  for layer in pretrained.ALEXNET_LAYERS:
    w = np.asarray(stream[layer]["kernel"], np.float64)
    b = np.asarray(stream[layer]["bias"], np.float64)
    if layer == "conv1":
      mean = np.asarray(pretrained.IMAGENET_MEAN, np.float64)
      std = np.asarray(pretrained.IMAGENET_STD, np.float64)
      w = w / (255.0 * std)[None, None, :, None]            # RGB, Caffe's input scale
      offset = 255.0 * mean - np.asarray(pretrained.CAFFE_MEAN_BGR, np.float64)[::-1]
      b = b - np.einsum("hwco,c->o", w, offset)
      w = w[:, :, ::-1, :]                                  # RGB → BGR
    if layer.startswith("conv"):
      w = w.transpose(3, 2, 0, 1)                           # (kh, kw, in, out) → (out, in, kh, kw)
    else:
      n_in, n_out = w.shape
      hw = int(round(np.sqrt(n_in // c5)))
      if hw * hw * c5 != n_in:
        raise ValueError(f"fc6: {n_in} inputs are not a square pool5 of {c5} channels (the "
                         "BVLC layout needs a square input, e.g. --size 131 131)")
      w = w.reshape(hw, hw, c5, n_out).transpose(3, 2, 0, 1).reshape(n_out, n_in)
    out[layer] = [w.astype(np.float32), b.astype(np.float32)]
  return out


def write_weights(out: str, variables: dict, model: str) -> None:
  """The backbone of `variables` written atomically to `out` in the real weights' format of
  `model` (module docstring)."""
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  if "alexnet" in model:
    weights, tmp = export_bvlc_alexnet(variables), out + ".tmp"
    with open(tmp, "wb") as f:
      np.save(f, weights, allow_pickle=True)
  else:
    tmp = out + ".tmp.npz"
    np.savez(tmp, **export_torchvision(variables))
  os.replace(tmp, out)


def spread_fc6(weights: dict, pool5_hw: tuple[int, int]) -> dict:
  """A BVLC-layout AlexNet dict made at an input whose pool5 is 1×1, for a larger input whose
  pool5 is h×w: fc6's weight over each channel is spread evenly over the h·w positions (Caffe's
  (C, H, W) flatten), i.e. fc6 of the pool5 map's average, which is what the smaller network
  computed on a 1×1 map. Convolutions are size-independent and kept. (How the 99×99 file was
  started from the 67×67 one; docs/notes/synthetic_alexnet.md.)"""
  w, b = weights["fc6"]
  h, wd = pool5_hw
  out = dict(weights)
  out["fc6"] = [np.repeat(np.asarray(w)[:, :, None], h * wd, axis=2).reshape(w.shape[0], -1)
                / (h * wd), b]
  return out


def _fc6_for_input(path: str, variables, folder: str) -> str:
  """`path`, or a spread copy of it (`spread_fc6`, written next to `out`) when its fc6 reads a 1×1
  pool5 of the channels the model's pool5 has at a larger size."""
  from ce2l_jax.models import pretrained
  raw = pretrained.read_pickled_npy(path)
  want = pretrained.bvlc_alexnet_file_shapes(variables, "caffe")["fc6"]
  have = tuple(np.asarray(raw["fc6"][0]).shape)
  c5 = np.asarray(raw["conv5"][0]).shape[0]
  if have == tuple(want) or have[1] != c5 or want[1] % c5:
    return path  # the same size, or not a 1×1 file: the loader checks (and names the fix)
  hw = int(round((want[1] // c5) ** 0.5))
  spread = os.path.join(folder, os.path.basename(path).replace(".npy", f"_fc6x{hw}.npy"))
  tmp = spread + f".tmp{os.getpid()}.npy"
  np.save(tmp, spread_fc6(raw, (hw, hw)), allow_pickle=True)
  os.replace(tmp, spread)
  print(json.dumps({"init": path, "fc6_spread_to": [hw, hw], "file": spread}), flush=True)
  return spread


def pretrain(out: str, *, model: str, data: str, size, steps: int, p: int, k: int, lr: float,
             weight_decay: float, seed: int, pad: int = 4, model_kwargs: str = "",
             cache: str = "", save_every: int = 0, init: str = "", log_every: int = 100) -> dict:
  """Trains and writes `out` (atomically; also every `save_every` steps, so that a run stopped
  early leaves its latest weights); returns a summary (steps, seconds, final accuracy).

  `init`: start the backbone from an earlier file of the same format (e.g. the 500-person
  pretraining for the 3,000-person one: an AlexNet from scratch sits at chance on 3,000 classes
  for thousands of steps), loaded as the re-ID stage loads it; the classifier starts fresh."""
  from ce2l_jax.config_check import BASE_CONFIG, load_config_file
  from ce2l_jax.train_state import TrainState
  from ce2l_jax.trainers import loop, reid as reid_trainer
  cfg = load_config_file(BASE_CONFIG).reid  # configs/base.py: the paper's re-ID section
  cfg.update(dict(model=model, optimizer="adam", lr=lr, weight_decay=weight_decay,
                  cross_weight=0.0, intra_weight=0.0, lsr_on="none"))
  for key, value in json.loads(model_kwargs or "{}").items():  # lists → tuples (module fields)
    cfg.model_kwargs[key] = tuple(value) if isinstance(value, list) else value
  t_data = time.time()
  vis = visible_images(data, tuple(size), cache)
  print(json.dumps({"images": len(vis["pid"]), "data_seconds": round(time.time() - t_data, 1)}),
        flush=True)
  pids = np.unique(vis["pid"])
  label = np.searchsorted(pids, vis["pid"]).astype(np.int32)
  rows = [np.flatnonzero(label == i) for i in range(len(pids))]
  net = reid_trainer.create_model(cfg, len(pids))
  tx, schedule = reid_trainer.make_optimizer(cfg, steps)
  step = jax.jit(reid_trainer.make_train_step(net, tx, schedule, cfg), donate_argnums=(0,),
                 compiler_options=loop.cpu_compiler_options(reid_trainer.CPU_SCHEDULER) or None)
  variables = reid_trainer.init_variables(net, tuple(size) + (3,), jax.random.PRNGKey(seed))
  if init:
    from ce2l_jax.models import pretrained
    if "alexnet" in model:
      init = _fc6_for_input(init, variables, os.path.dirname(os.path.abspath(out)))
    variables = pretrained.pretrained_loader(model)(init, variables)
  state = TrainState.create(variables, tx, jax.random.PRNGKey(seed + 1))
  rng = np.random.default_rng(seed)
  t0, acc = time.time(), []
  for s in range(1, steps + 1):
    ids = rng.choice(len(pids), p, replace=False)
    slots = [np.concatenate([rng.choice(rows[i], k) for i in ids]) for _ in range(2)]
    batch = {"image": np.stack([_augment(vis["image"][r], rng, pad) for r in slots]),
             "pid": np.stack([label[r] for r in slots]),
             "converted": np.zeros((2, p * k), bool)}
    state, m = step(state, {key: jnp.asarray(v) for key, v in batch.items()})
    acc.append(float(m["accuracy"]))
    if s % log_every == 0 or s == steps:
      print(json.dumps({"step": s, "seconds": round(time.time() - t0, 1), "ce": float(m["ce"]),
                        "accuracy": float(np.mean(acc[-log_every:]))}), flush=True)
    if save_every and s % save_every == 0 and s < steps:
      write_weights(out, {"params": state.params, "batch_stats": state.batch_stats}, model)
  write_weights(out, {"params": state.params, "batch_stats": state.batch_stats}, model)
  summary = {"out": out, "steps": steps, "seconds": time.time() - t0,
             "train_accuracy_last100": float(np.mean(acc[-100:])), "identities": int(len(pids)),
             "images": int(len(label)), "model": model, "model_kwargs": model_kwargs, "data": data,
             "size": list(size), "pad": pad, "lr": lr, "seed": seed, "init": init}
  print(json.dumps(summary))
  return summary


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--out", required=True, help="the file to write: .npz (ResNets, torchvision "
                  "key names) or .npy (AlexNets, bvlc_alexnet.npy's Caffe layout)")
  for key, value in DEFAULTS.items():
    if key == "size":
      ap.add_argument("--size", type=int, nargs=2, default=value)
    else:
      ap.add_argument(f"--{key}", type=type(value), default=value)
  args = vars(ap.parse_args(argv))
  if args["model"] not in MODELS:
    ap.error(f"--model={args['model']}: one of {', '.join(MODELS)}")
  if "alexnet" in args["model"] and args["size"][0] != args["size"][1]:
    ap.error(f"--size {args['size'][0]} {args['size'][1]}: AlexNet weights in the BVLC layout "
             "need a square input (fc6 reads a square pool5), e.g. --size 131 131")
  try:
    json.loads(args["model_kwargs"] or "{}")
  except json.JSONDecodeError as e:
    ap.error(f"--model_kwargs={args['model_kwargs']!r}: not JSON ({e})")
  if args["data"] not in synthetic.CONFIGS:
    ap.error(f"--data={args['data']}: one of {sorted(synthetic.CONFIGS)}")
  pretrain(**args)


if __name__ == "__main__":
  main()
