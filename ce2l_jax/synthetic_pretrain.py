"""Visible-only pretraining on synthetic people: ImageNet's part for the synthetic twins.

Real VI-ReID starts from ImageNet weights (BDTR, AGW, CE²L all do); a network started from
scratch on the synthetic twins learns the training identities but transfers poorly across
modalities to unseen ones (docs/notes/synthetic_benchmark.md). This module plays ImageNet's part:
it trains the re-ID backbone with identity cross-entropy only (no ranking losses) on the *visible*
images of `synthetic_vireid/pretrain` — 500 other people (generator seed 1000), none of whom is in
any twin — and writes the backbone as a torchvision-style state dict `.npz`, which the re-ID stage
loads through the same path as real ImageNet weights (`config.init`,
`ce2l_jax.models.pretrained.load_torchvision_resnet`: conv1/bn1 into both stems, layer1..4).

Both stems see visible images here (each slot of the P×K batch holds visible images of the same
identities, differently augmented), so the file has one conv1/bn1, as ImageNet weights do.

  python -m ce2l_jax.synthetic_pretrain --out=weights/resnet_tiny_synthetic.npz     # ~10 CPU min
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

DEFAULTS = dict(model="resnet_tiny", data="pretrain", size=(64, 32), steps=3000, p=16, k=2,
                lr=1e-3, weight_decay=5e-4, seed=0)


def visible_images(name: str, size: tuple[int, int]) -> dict:
  """The visible images of every split of a synthetic config, area-resized to `size`."""
  parts = []
  for split in synthetic.SPLITS:
    table = synthetic.specs(name, split)
    table = synthetic.take(table, table["modality"] == 0)
    if len(table["pid"]):
      parts.append((table, synthetic.render(name, table)))
  pid = np.concatenate([t["pid"] for t, _ in parts])
  img = np.concatenate([i for _, i in parts])
  fh, fw = img.shape[1] // size[0], img.shape[2] // size[1]
  if fh > 1 or fw > 1:
    img = img.reshape(len(img), size[0], fh, size[1], fw, 3).mean(axis=(2, 4))
    img = np.round(img).astype(np.uint8)
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


def pretrain(out: str, *, model: str, data: str, size, steps: int, p: int, k: int, lr: float,
             weight_decay: float, seed: int, log_every: int = 100) -> dict:
  """Trains and writes `out` (atomically); returns a summary (steps, seconds, final accuracy)."""
  from ce2l_jax.config_check import BASE_CONFIG, load_config_file
  from ce2l_jax.train_state import TrainState
  from ce2l_jax.trainers import reid as reid_trainer
  cfg = load_config_file(BASE_CONFIG).reid  # configs/base.py: the paper's re-ID section
  cfg.update(dict(model=model, optimizer="adam", lr=lr, weight_decay=weight_decay,
                  cross_weight=0.0, intra_weight=0.0, lsr_on="none"))
  vis = visible_images(data, tuple(size))
  pids = np.unique(vis["pid"])
  label = np.searchsorted(pids, vis["pid"]).astype(np.int32)
  rows = [np.flatnonzero(label == i) for i in range(len(pids))]
  net = reid_trainer.create_model(cfg, len(pids))
  tx, schedule = reid_trainer.make_optimizer(cfg, steps)
  step = jax.jit(reid_trainer.make_train_step(net, tx, schedule, cfg), donate_argnums=(0,))
  variables = reid_trainer.init_variables(net, tuple(size) + (3,), jax.random.PRNGKey(seed))
  state = TrainState.create(variables, tx, jax.random.PRNGKey(seed + 1))
  rng = np.random.default_rng(seed)
  t0, acc = time.time(), []
  for s in range(1, steps + 1):
    ids = rng.choice(len(pids), p, replace=False)
    slots = [np.concatenate([rng.choice(rows[i], k) for i in ids]) for _ in range(2)]
    batch = {"image": np.stack([_augment(vis["image"][r], rng) for r in slots]),
             "pid": np.stack([label[r] for r in slots]),
             "converted": np.zeros((2, p * k), bool)}
    state, m = step(state, {key: jnp.asarray(v) for key, v in batch.items()})
    acc.append(float(m["accuracy"]))
    if s % log_every == 0 or s == steps:
      print(json.dumps({"step": s, "seconds": round(time.time() - t0, 1), "ce": float(m["ce"]),
                        "accuracy": float(np.mean(acc[-log_every:]))}), flush=True)
  sd = export_torchvision({"params": state.params, "batch_stats": state.batch_stats})
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  tmp = out + ".tmp.npz"
  np.savez(tmp, **sd)
  os.replace(tmp, out)
  summary = {"out": out, "steps": steps, "seconds": time.time() - t0,
             "train_accuracy_last100": float(np.mean(acc[-100:])), "identities": int(len(pids)),
             "images": int(len(label)), "model": model, "data": data, "size": list(size)}
  print(json.dumps(summary))
  return summary


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--out", required=True, help="the .npz to write (torchvision key names)")
  for key, value in DEFAULTS.items():
    if key == "size":
      ap.add_argument("--size", type=int, nargs=2, default=value)
    else:
      ap.add_argument(f"--{key}", type=type(value), default=value)
  args = vars(ap.parse_args(argv))
  if args["model"] not in ("resnet_tiny", "resnet50_agw"):
    ap.error(f"--model={args['model']}: a ResNet model (resnet_tiny or resnet50_agw)")
  if args["data"] not in synthetic.CONFIGS:
    ap.error(f"--data={args['data']}: one of {sorted(synthetic.CONFIGS)}")
  pretrain(**args)


if __name__ == "__main__":
  main()
