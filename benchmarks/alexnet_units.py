"""What the tiny AlexNet's layers do while it trains on a synthetic twin (docs/notes/synthetic_alexnet.md).

Trains `alexnet_tiny` with the paper's objective (ℓ_cross + 0.1 ℓ_intra + CE, Adam, coupled weight
decay, the project's own `make_train_step`) on in-memory data of benchmarks/diagnose_synthetic.py,
and reports at step 0 and every `--every` steps:
* per conv layer / fc6 of the visible stream: rms(weight), rms(gradient) and rms(λ·weight) — does
  coupled L2 swamp the gradient of the un-normalised conv layers under Adam?
* dead ReLU channels (zero on every pixel of `--images` visible test images) and the active
  fraction per conv layer;
* the effective rank (exp of the entropy of the normalised covariance eigenvalues) of pool5 and of
  the embedding: how many independent numbers per image reach fc6.

  python benchmarks/alexnet_units.py --data=sysu --size 67 67 --steps=400 --every=400
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import diagnose_synthetic as harness  # noqa: E402
from ce2l_jax.config_check import BASE_CONFIG, load_config_file  # noqa: E402
from ce2l_jax.data.augment import normalize_imagenet  # noqa: E402
from ce2l_jax.train_state import TrainState  # noqa: E402
from ce2l_jax.trainers import reid as reid_trainer  # noqa: E402

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6")


def effective_rank(x: np.ndarray) -> float:
  ev = np.clip(np.linalg.eigvalsh(np.cov(x.T)), 0, None)
  p = ev / ev.sum()
  return float(np.exp(-(p[p > 0] * np.log(p[p > 0])).sum()))


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--data", default="sysu")
  ap.add_argument("--size", type=int, nargs=2, default=(67, 67))
  ap.add_argument("--cache", default="/tmp/diag_cache")
  ap.add_argument("--model_kwargs", default="", help="JSON create_reid_model keywords")
  ap.add_argument("--lr", type=float, default=1e-3)
  ap.add_argument("--wd", type=float, default=5e-4)
  ap.add_argument("--steps", type=int, default=400)
  ap.add_argument("--every", type=int, default=400)
  ap.add_argument("--images", type=int, default=512)
  ap.add_argument("--seed", type=int, default=0)
  args = ap.parse_args(argv)
  size = tuple(args.size)
  data = harness.load(args.data, size, args.cache)
  x = jnp.asarray(data["test"]["image"][data["test"]["modality"] == 0][:args.images])
  cfg = load_config_file(BASE_CONFIG).reid
  cfg.update(dict(model="alexnet_tiny", optimizer="adam", lr=args.lr, weight_decay=args.wd,
                  lsr_on="none"))
  for k, v in json.loads(args.model_kwargs or "{}").items():
    cfg.model_kwargs[k] = tuple(v) if isinstance(v, list) else v
  model = reid_trainer.create_model(cfg, len(np.unique(data["train"]["pid"])))
  tx, schedule = reid_trainer.make_optimizer(cfg, max(args.steps, 1))
  step = jax.jit(reid_trainer.make_train_step(model, tx, schedule, cfg))
  state = TrainState.create(reid_trainer.init_variables(model, size + (3,),
                                                        jax.random.PRNGKey(args.seed)),
                            tx, jax.random.PRNGKey(args.seed + 1))
  sampler = harness.Sampler(data["train"], 16, 2, 4, args.seed)

  def loss(params, stats, batch, rng):
    (_, out), _ = model.apply({"params": params, "batch_stats": stats},
                              normalize_imagenet(batch["image"]), train=True,
                              rngs={"dropout": rng}, mutable=["batch_stats"])
    return reid_trainer.reid_loss(out, batch, cfg)[0]

  grad = jax.jit(jax.grad(loss))
  fwd = jax.jit(lambda v, x: model.apply(v, normalize_imagenet(x), modality=0, train=False,
                                         capture_intermediates=True, mutable=["intermediates"]))

  def report(t):
    batch = {k: jnp.asarray(v) for k, v in sampler().items()}
    g = grad(state.params, state.batch_stats, batch, jax.random.PRNGKey(2))
    (_, out), inter = fwd({"params": state.params, "batch_stats": state.batch_stats}, x)
    row = {"step": t}
    for layer in LAYERS:
      w = np.asarray(state.params["stream_v"][layer]["kernel"])
      gw = np.asarray(g["stream_v"][layer]["kernel"])
      rms = lambda a: float(np.sqrt(np.mean(a ** 2)))  # noqa: E731
      row[layer] = {"rms_w": rms(w), "rms_grad": rms(gw), "rms_wd": args.wd * rms(w),
                    "grad_over_wd": rms(gw) / max(args.wd * rms(w), 1e-30)}
      if layer.startswith("conv"):
        y = np.maximum(np.asarray(inter["intermediates"]["stream_v"][layer]["__call__"][0]), 0)
        y = y.reshape(-1, y.shape[-1])
        row[layer].update(dead=int((y.max(0) <= 0).sum()), channels=int(y.shape[1]),
                          active_frac=float((y > 0).mean()))
    for key in ("pool5", "emb"):
      f = np.asarray(out[key]).reshape(len(x), -1)
      row[key] = {"dims": int(f.shape[1]), "effective_rank": effective_rank(f)}
    print(json.dumps(row), flush=True)

  report(0)
  for s in range(1, args.steps + 1):
    state, _ = step(state, {k: jnp.asarray(v) for k, v in sampler().items()})
    if s % args.every == 0:
      report(s)


if __name__ == "__main__":
  main()
