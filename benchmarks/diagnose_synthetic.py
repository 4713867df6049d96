"""Diagnosis of re-ID learning on the synthetic benchmark (docs/notes/synthetic_benchmark.md).

A small, self-contained training loop on in-memory synthetic data that uses the project's own
model factory and train step (`ce2l_jax.trainers.reid.make_train_step`, so the same objective:
CE(+LSR) + λ_cross ℓ_cross + λ_intra ℓ_intra) and logs what the stage does not:

* over training, on a fixed P×K training batch: positive and hardest-negative cross-modality
  distances (ℓ_cross's two sides), ℓ_cross / ℓ_intra active fractions, the norm of `out['feat']`
  before L2 normalisation;
* on the test identities: the spread of the normalised embedding (mean cosine between random
  pairs, effective rank = exp(entropy of the normalised eigenvalues)), positive vs negative
  cross-modality distances, and retrieval visible→visible, infrared→infrared, infrared→visible
  (all images as gallery, other cameras only: rank-1, mAP) plus SYSU all-search single-shot
  (10 random galleries, `ce2l_jax.metrics.protocols`);
* `--probe`: which generator attributes a linear classifier recovers from infrared raw pixels and
  from the learned infrared features (train identities → test identities).

  python benchmarks/diagnose_synthetic.py --data=default --steps=1500 --out=/tmp/diag.json
  python benchmarks/diagnose_synthetic.py --data=sysu --steps=1500 --probe --out=/tmp/d.json

No TFDS and no CycleGAN: the question is what the re-ID network learns from real images.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from ce2l_jax import losses  # noqa: E402
from ce2l_jax.data import synthetic  # noqa: E402
from ce2l_jax.metrics import protocols  # noqa: E402
from ce2l_jax.config_check import BASE_CONFIG, load_config_file  # noqa: E402
from ce2l_jax.models import pretrained  # noqa: E402
from ce2l_jax.trainers import reid as reid_trainer  # noqa: E402


def resize_images(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Images (N, H, W, 3) uint8 at `size` (H, W): an area mean for integer down-scaling factors
  (as before), otherwise PIL bilinear (antialiased when shrinking), the resize `run.py`'s input
  pipeline applies (`ce2l_jax.data.augment.resize`), e.g. 128×64 → 67×67 for `alexnet_tiny`."""
  h, w = img.shape[1:3]
  if (h, w) == tuple(size):
    return img
  if h % size[0] == 0 and w % size[1] == 0:
    fh, fw = h // size[0], w // size[1]
    return img.reshape(len(img), size[0], fh, size[1], fw, 3).mean(axis=(2, 4)).round().astype(np.uint8)
  from ce2l_jax.data import augment
  return np.stack([augment.resize(x, tuple(size)) for x in img])


def load(name: str, size: tuple[int, int], cache: str | None) -> dict:
  """{split: records} of a synthetic config, area-resized to `size` (cached as .npz)."""
  out = {}
  for split in synthetic.SPLITS:
    path = cache and os.path.join(cache, f"{name}_{split}_{size[0]}x{size[1]}.npz")
    if path and os.path.exists(path):
      with np.load(path, allow_pickle=True) as z:
        out[split] = {k: z[k] for k in z.files}
      continue
    native = cache and os.path.join(cache, f"{name}_{split}_native.npz")
    if native and os.path.exists(native):  # rendered once, resized to each size asked for
      with np.load(native, allow_pickle=True) as z:
        d = {k: z[k] for k in z.files}
    else:
      d = synthetic.generate(name, split)
      if native:
        os.makedirs(cache, exist_ok=True)
        np.savez(native, **{k: v for k, v in d.items() if k != "file"})
    d["image"] = resize_images(d["image"], size)
    out[split] = d
    if path:
      os.makedirs(cache, exist_ok=True)
      np.savez(path, **{k: v for k, v in d.items() if k != "file"})
  return out


class Sampler:
  """P identities × K images per modality, flip + pad-crop; pids relabelled 0..C-1."""

  def __init__(self, data: dict, p: int, k: int, pad: int, seed: int, channel: str = "none",
               channel_prob: float = 0.5, erase: float = 0.0):
    self.data, self.p, self.k, self.pad = data, p, k, pad
    self.channel, self.channel_prob, self.erase = channel, channel_prob, erase
    self.rng = np.random.default_rng(seed)
    self.pids = np.unique(data["pid"])
    self.label = {int(q): i for i, q in enumerate(self.pids)}
    self.rows = {(int(q), m): np.flatnonzero((data["pid"] == q) & (data["modality"] == m))
                 for q in self.pids for m in (0, 1)}

  def _aug(self, img, m):
    from ce2l_jax.data import augment
    n, h, w, _ = img.shape
    flip = self.rng.random(n) < 0.5
    img = np.where(flip[:, None, None, None], img[:, :, ::-1], img)
    if self.pad:
      p = self.pad
      padded = np.pad(img, ((0, 0), (p, p), (p, p), (0, 0)))
      dy, dx = self.rng.integers(0, 2 * p + 1, (2, n))
      img = np.stack([padded[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    if self.erase:
      img = np.stack([augment.random_erasing(x, self.rng, self.erase) for x in img])
    if self.channel != "none" and m == 0:  # CAJ channel augmentation of visible images
      img = np.stack([augment.channel_augment(x, self.rng, self.channel, self.channel_prob)
                      for x in img])
    return img

  def __call__(self) -> dict:
    pids = self.rng.choice(self.pids, self.p, replace=False)
    images, labels = [], []
    for m in (0, 1):
      idx = np.concatenate([self.rng.choice(self.rows[int(q), m], self.k) for q in pids])
      images.append(self._aug(self.data["image"][idx], m))
      labels.append(np.repeat([self.label[int(q)] for q in pids], self.k))
    return {"image": np.stack(images), "pid": np.stack(labels).astype(np.int32),
            "converted": np.zeros((2, self.p * self.k), bool)}


def features(model, variables, data: dict, key: str = "emb", batch: int = 256,
             flip: bool = False) -> np.ndarray:
  """Test-time features (`out[key]`) of every image, each through its modality's stream; with
  `flip`, the mean with the horizontally flipped image's (as the evaluator's `eval.flip`)."""
  from ce2l_jax.data.augment import normalize_imagenet

  def fn(v, x, m):
    f = model.apply(v, normalize_imagenet(x), modality=m, train=False)[1][key]
    if flip:
      f = (f + model.apply(v, normalize_imagenet(x[:, :, ::-1]), modality=m,
                           train=False)[1][key]) / 2
    return f
  fns = {m: jax.jit(lambda v, x, m=m: fn(v, x, m)) for m in (0, 1)}
  out = None
  for m in (0, 1):
    rows = np.flatnonzero(data["modality"] == m)
    for s in range(0, len(rows), batch):
      r = rows[s:s + batch]
      f = np.asarray(fns[m](variables, data["image"][r]))
      if out is None:
        out = np.zeros((len(data["pid"]), f.shape[1]), np.float32)
      out[r] = f
  return out


def l2n(x):
  return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)


def retrieval(feat: np.ndarray, data: dict, qm: int, gm: int) -> dict:
  """Rank-1 and mAP, queries of modality qm against every gallery image of modality gm in
  another camera (multi-shot), Euclidean distance of L2-normalised features."""
  f = l2n(feat)
  q = np.flatnonzero(data["modality"] == qm)
  g = np.flatnonzero(data["modality"] == gm)
  d = 2 - 2 * f[q] @ f[g].T
  if len(np.unique(data["camid"])) > 2:  # SYSU: other cameras only
    d[data["camid"][q][:, None] == data["camid"][g][None]] = np.inf
  else:  # RegDB: one camera per modality; only the query itself is removed
    d[q[:, None] == g[None]] = np.inf
  match = data["pid"][q][:, None] == data["pid"][g][None]
  match &= np.isfinite(d)
  ok = match.any(1)
  order = np.argsort(d, axis=1, kind="stable")
  m = np.take_along_axis(match, order, 1)[ok]
  r1 = float(m[:, 0].mean())
  cum = np.cumsum(m, 1)
  prec = cum / np.arange(1, m.shape[1] + 1)
  ap = (prec * m).sum(1) / m.sum(1)
  return {"rank1": r1, "mAP": float(ap.mean())}


def sysu_all_single(feat: np.ndarray, data: dict, trials: int = 10) -> dict:
  t = protocols.sysu_trials(data["pid"], data["camid"], mode="all", shot="single",
                            num_trials=trials, seed=0)
  res = protocols.evaluate(l2n(feat), data["pid"], data["camid"], t, protocol="sysu")
  return {k: float(res.mean[k]) for k in ("rank1", "mAP")}


def regdb_both(feat: np.ndarray, data: dict) -> dict:
  out = {}
  for direction in ("visible_to_thermal", "thermal_to_visible"):
    t = protocols.regdb_trial(data["modality"], direction)
    res = protocols.evaluate(l2n(feat), data["pid"], None, [t], protocol="regdb")
    out[direction] = {k: float(res.mean[k]) for k in ("rank1", "mAP")}
  return out


def spread(feat: np.ndarray, data: dict, rng) -> dict:
  f = l2n(feat)
  i, j = rng.integers(len(f), size=(2, 4000))
  cos = (f[i] * f[j]).sum(1)
  c = np.cov(f.T)
  ev = np.clip(np.linalg.eigvalsh(c), 0, None)
  pev = ev / ev.sum()
  erank = float(np.exp(-(pev[pev > 0] * np.log(pev[pev > 0])).sum()))
  v, t = data["modality"] == 0, data["modality"] == 1
  d = np.sqrt(np.clip(2 - 2 * f[v] @ f[t].T, 0, None))
  same = data["pid"][v][:, None] == data["pid"][t][None]
  hard_neg = np.where(same, np.inf, d).min(1)
  pos = np.where(same, d, np.nan)
  return {"mean_cos": float(cos.mean()), "effective_rank": erank, "dim": int(f.shape[1]),
          "test_cross_pos": float(np.nanmean(pos)), "test_cross_neg": float(d[~same].mean()),
          "test_cross_hardneg": float(hard_neg.mean()),
          "raw_norm": float(np.linalg.norm(feat, axis=1).mean())}


ATTRS = ("height", "shoulder", "leg", "sleeve", "lower_kind", "upper_pattern", "lower_pattern",
         "backpack", "bag", "hat", "long_hair")


def probe(x_train, pid_train, x_test, pid_test, ids: dict) -> dict:
  """Linear probe (ridge, closed form) of identity attributes: R² (continuous) or accuracy
  (categorical, one-vs-rest argmax), fitted on train identities, scored on test identities;
  'base' is the majority class (categorical) or 0 (R²)."""
  def std(a, mu, sd):
    return (a - mu) / sd
  mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
  xa, xb = std(x_train, mu, sd), std(x_test, mu, sd)
  xa = np.concatenate([xa, np.ones((len(xa), 1))], 1)
  xb = np.concatenate([xb, np.ones((len(xb), 1))], 1)
  lam = 10.0 * xa.shape[1]
  w_solve = np.linalg.solve(xa.T @ xa + lam * np.eye(xa.shape[1]), xa.T)
  out = {}
  for name in ATTRS:
    y = np.asarray(ids[name])
    ya, yb = y[pid_train - 1], y[pid_test - 1]
    if y.dtype == bool or np.issubdtype(y.dtype, np.integer) or len(np.unique(y)) <= 5:
      classes = np.unique(ya)
      oh = (ya[:, None] == classes[None]).astype(np.float64)
      pred = classes[np.argmax(xb @ (w_solve @ oh), 1)]
      base = float(np.mean(yb == classes[np.argmax(oh.sum(0))]))
      out[name] = {"acc": float(np.mean(pred == yb)), "base": base}
    else:
      pred = xb @ (w_solve @ (ya - ya.mean())) + ya.mean()
      r2 = 1 - np.mean((pred - yb) ** 2) / np.var(yb)
      out[name] = {"r2": float(r2)}
  return out


class _RankOn:
  """A model whose out['feat'] (the ranking losses' input) is another of its outputs."""

  def __init__(self, model, key: str):
    self.model, self.key = model, key

  def apply(self, *a, **kw):
    res = self.model.apply(*a, **kw)
    (emb, out), rest = (res[0], res[1]) if isinstance(res[0], tuple) else (res, None)
    out = dict(out, feat=out[self.key])
    return ((emb, out), rest) if rest is not None else (emb, out)

  def __hash__(self):
    return hash((self.model, self.key))


def model_args(cfg, args) -> None:
  """`--width` (ResNet width) and `--model_kwargs` (JSON; lists become tuples) into
  `cfg.model_kwargs`, e.g. --model_kwargs='{"widths": [32, 64, 96, 96, 64], "fc6_dim": 512}'."""
  if args.width:
    cfg.model_kwargs.width = args.width
  for k, v in json.loads(args.model_kwargs or "{}").items():
    cfg.model_kwargs[k] = tuple(v) if isinstance(v, list) else v


def pretrain(args, size, variables) -> dict:
  """ImageNet's part: CE on the *visible* images of a disjoint synthetic identity set, fed to
  both stems; returns `variables` with the backbone (stems, layer1..4) replaced."""
  from ce2l_jax.train_state import TrainState
  data = load(args.pretrain_data, size, args.cache)
  vis = {k: np.concatenate([data[s][k] for s in synthetic.SPLITS]) for k in data["train"]}
  vis = {k: v[vis["modality"] == 0] for k, v in vis.items()}
  both = dict(vis, modality=np.concatenate([np.zeros(len(vis["pid"]), np.int64)]))
  twin = {k: np.concatenate([v, v]) for k, v in both.items()}
  twin["modality"] = np.repeat([0, 1], len(vis["pid"]))  # the same images in both slots
  cfg = load_config_file(BASE_CONFIG).reid  # configs/base.py: the paper's re-ID section
  cfg.update(dict(model=args.model, optimizer="adam", lr=args.lr, cross_weight=0.0,
                  intra_weight=0.0, lsr_on="none", weight_decay=args.wd))
  model_args(cfg, args)
  n_cls = len(np.unique(vis["pid"]))
  model = reid_trainer.create_model(cfg, n_cls)
  tx, schedule = reid_trainer.make_optimizer(cfg, args.pretrain_steps)
  step = jax.jit(reid_trainer.make_train_step(model, tx, schedule, cfg), donate_argnums=(0,))
  v0 = reid_trainer.init_variables(model, size + (3,), jax.random.PRNGKey(args.seed + 7))
  state = TrainState.create(v0, tx, jax.random.PRNGKey(args.seed + 8))
  sampler = Sampler(twin, args.p, args.k, args.pad, args.seed + 9, args.channel,
                    args.channel_prob, args.erase)
  t0 = time.time()
  for s in range(1, args.pretrain_steps + 1):
    state, m = step(state, {k: jnp.asarray(v) for k, v in sampler().items()})
    if s % args.log_every == 0:
      print(json.dumps({"pretrain_step": s, "time": time.time() - t0, "ce": float(m["ce"]),
                        "accuracy": float(m["accuracy"])}), flush=True)
  backbone = lambda name: name.startswith(("stem_", "layer", "stream_"))  # noqa: E731
  params = dict(variables["params"])
  stats = dict(variables["batch_stats"])
  for k in params:
    if backbone(k):
      params[k] = state.params[k]
  for k in stats:
    if backbone(k):
      stats[k] = state.batch_stats[k]
  return {"params": params, "batch_stats": stats}


def closed_set(tr: dict, te: dict) -> tuple[dict, dict]:
  """The closed-set control: every second image of each test identity and camera (by index)
  joins the training set, the rest stays for testing. Test identities are then *seen* in both
  modalities, so cross-modality retrieval on the held-out images measures how much of an
  identity a single image carries across modalities, free of generalising to new people."""
  move = np.zeros(len(te["pid"]), bool)
  for q in np.unique(te["pid"]):
    for c in np.unique(te["camid"]):
      rows = np.flatnonzero((te["pid"] == q) & (te["camid"] == c))
      move[rows[1::2]] = True
  add = synthetic.take(te, move)
  tr = {k: np.concatenate([tr[k], add[k]]) for k in tr}
  return tr, synthetic.take(te, ~move)


def train(args) -> dict:
  size = tuple(args.size)
  data = load(args.data, size, args.cache)
  tr, te = data["train"], data["test"]
  if args.train_ids:
    tr = synthetic.take(tr, np.isin(tr["pid"], np.unique(tr["pid"])[:args.train_ids]))
  if args.closed_set:
    tr, te = closed_set(tr, te)
  cfg = load_config_file(BASE_CONFIG).reid  # configs/base.py: the paper's re-ID section
  cfg.update(dict(model=args.model, optimizer=args.optimizer, lr=args.lr, num_steps=args.steps,
                  weight_decay=args.wd, cross_margin=args.rho1, intra_margin=args.rho2,
                  intra_weight=args.intra, cross_weight=args.cross, lsr_on=args.lsr,
                  schedule=args.schedule, warmup_epochs=args.warmup / max(args.steps, 1),
                  decay_epochs=tuple(d / max(args.steps, 1) for d in args.decay),
                  steps_per_epoch=max(args.steps, 1)))  # --steps=0: the start point's figures
  model_args(cfg, args)
  if args.specific_layer1:
    cfg.model_kwargs.specific_layer1 = True
  for kv in args.set or []:
    k, v = kv.split("=", 1)
    cfg[k] = type(cfg[k])(json.loads(v)) if not isinstance(cfg[k], str) else v
  num_classes = len(np.unique(tr["pid"]))
  model = reid_trainer.create_model(cfg, num_classes)
  step_model = model
  if args.rank_on:  # experiment: the ranking losses on another output than out['feat']
    step_model = _RankOn(model, args.rank_on)
  tx, schedule = reid_trainer.make_optimizer(cfg, args.steps)
  step = jax.jit(reid_trainer.make_train_step(step_model, tx, schedule, cfg), donate_argnums=(0,))
  from ce2l_jax.train_state import TrainState
  rng = jax.random.PRNGKey(args.seed)
  variables = reid_trainer.init_variables(model, size + (3,), rng)
  if args.init:
    variables = pretrained.pretrained_loader(cfg.model)(args.init, variables)
  if args.pretrain_data:
    variables = pretrain(args, size, variables)
  state = TrainState.create(variables, tx, jax.random.PRNGKey(args.seed + 1))
  sampler = Sampler(tr, args.p, args.k, args.pad, args.seed, args.channel, args.channel_prob,
                    args.erase)
  fixed = Sampler(tr, args.p, args.k, 0, 12345)()

  def diag_fixed(state):
    v = {"params": state.params, "batch_stats": state.batch_stats}
    from ce2l_jax.data.augment import normalize_imagenet
    _, out = step_model.apply(v, normalize_imagenet(jnp.asarray(fixed["image"])), train=False)
    _, terms, d = reid_trainer.reid_loss(out, {k: jnp.asarray(x) for k, x in fixed.items()}, cfg)
    d = {k: float(x) for k, x in d.items()}
    d["feat_norm"] = float(jnp.linalg.norm(out["feat"], axis=-1).mean())
    # ℓ_intra's distance D(positive, hardest cross negative) within a modality, and the mean
    # distance between different identities of the batch (the scale ρ2 must be set against).
    _, aux = losses.intra_modality(out["feat"][0], out["feat"][1], fixed["pid"][0],
                                   fixed["pid"][1], margin=cfg.intra_margin, normalize=True)
    d["intra_pos_hard_dist"] = float(aux["pos_hard_dist"])
    f = out["feat"] / jnp.linalg.norm(out["feat"], axis=-1, keepdims=True)
    dist = jnp.sqrt(jnp.clip(2 - 2 * f[0] @ f[1].T, 0))
    other = fixed["pid"][0][:, None] != fixed["pid"][1][None]
    d["cross_neg_mean"] = float(jnp.sum(dist * other) / jnp.sum(other))
    d["mean_cos_feat"] = float(jnp.mean(f[0] @ f[1].T))
    return d

  history = []
  t0 = time.time()
  log = []
  eval_rng = np.random.default_rng(0)
  for s in range(1, args.steps + 1):
    state, m = step(state, {k: jnp.asarray(v) for k, v in sampler().items()})
    log.append({k: float(v) for k, v in m.items() if not k.startswith("finite")})
    if s % args.log_every == 0 or s == args.steps:
      row = {"step": s, "time": time.time() - t0}
      row.update({f"train/{k}": float(np.mean([x[k] for x in log if k in x])) for k in log[-1]})
      log = []
      row.update({f"fixed/{k}": v for k, v in diag_fixed(state).items()})
      if args.eval_every and (s % args.eval_every == 0 or s == args.steps):
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        f = features(model, variables, te)
        row.update({f"test/{k}": v for k, v in spread(f, te, eval_rng).items()})
        row["test/ir_to_vis"] = retrieval(f, te, 1, 0)
        if args.protocol == "sysu":
          row["test/sysu_all_single"] = sysu_all_single(f, te)
      history.append(row)
      print(json.dumps(row), flush=True)
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  f = features(model, variables, te)
  final = {"vis_to_vis": retrieval(f, te, 0, 0), "ir_to_ir": retrieval(f, te, 1, 1),
           "ir_to_vis": retrieval(f, te, 1, 0), "vis_to_ir": retrieval(f, te, 0, 1)}
  if args.protocol == "sysu":
    final["sysu_all_single"] = sysu_all_single(f, te)
    final["sysu_all_single_flip"] = sysu_all_single(features(model, variables, te, flip=True), te)
  else:
    final["regdb"] = regdb_both(f, te)
    final["regdb_flip"] = regdb_both(features(model, variables, te, flip=True), te)
  # Is a per-modality offset of the embedding what separates the modalities? The same features,
  # each modality centred (and scaled) by the statistics of its *training* images' features.
  ftr_emb = features(model, variables, tr)
  for name, scale in (("centred", False), ("standardised", True)):
    g = f.copy()
    for m in (0, 1):
      ref = ftr_emb[tr["modality"] == m]
      g[te["modality"] == m] = (f[te["modality"] == m] - ref.mean(0)) / (ref.std(0) + 1e-6 if scale else 1.0)
    final[f"modality_{name}"] = sysu_all_single(g, te) if args.protocol == "sysu" else regdb_both(g, te)
  final.update(spread(f, te, eval_rng))
  result = {"args": vars(args), "history": history, "final": final,
            "train_seconds": time.time() - t0}
  if args.probe:
    ftr = features(model, variables, tr, key="feat")
    fte = features(model, variables, te, key="feat")
    ids = synthetic.identities(args.data)
    res = {}
    for name, (a, b) in {"ir_raw": (tr, te), "vis_raw": (tr, te)}.items():
      m = 1 if name.startswith("ir") else 0
      ia, ib = a["modality"] == m, b["modality"] == m
      xa = synthetic.raw_pixel_features(a["image"][ia], size=(size[0] // 2, size[1] // 2))
      xb = synthetic.raw_pixel_features(b["image"][ib], size=(size[0] // 2, size[1] // 2))
      res[name] = probe(xa, a["pid"][ia], xb, b["pid"][ib], ids)
    for name, m in (("ir_learned", 1), ("vis_learned", 0)):
      ia, ib = tr["modality"] == m, te["modality"] == m
      res[name] = probe(ftr[ia], tr["pid"][ia], fte[ib], te["pid"][ib], ids)
    result["probe"] = res
  print(json.dumps({"final": final}, indent=1))
  return result


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--data", default="default")
  ap.add_argument("--protocol", default="sysu", choices=("sysu", "regdb"))
  ap.add_argument("--size", type=int, nargs=2, default=(64, 32))
  ap.add_argument("--cache", default="/tmp/diag_cache")
  ap.add_argument("--model", default="resnet_tiny")
  ap.add_argument("--init", default="")
  ap.add_argument("--width", type=int, default=0, help="resnet width (resnet_tiny: 8)")
  ap.add_argument("--model_kwargs", default="", help="JSON create_reid_model keywords")
  ap.add_argument("--rank_on", default="", help="e.g. feat_bn: ranking losses on that output")
  ap.add_argument("--pretrain_data", default="", help="synthetic config for visible pretraining")
  ap.add_argument("--pretrain_steps", type=int, default=1000)
  ap.add_argument("--specific_layer1", action="store_true", help="layer1 per modality")
  ap.add_argument("--optimizer", default="adam")
  ap.add_argument("--lr", type=float, default=1e-3)
  ap.add_argument("--wd", type=float, default=5e-4)
  ap.add_argument("--schedule", default="constant")
  ap.add_argument("--warmup", type=int, default=0, help="warm-up steps (schedule warmup_step)")
  ap.add_argument("--decay", type=int, nargs="*", default=(), help="steps where lr ×0.1")
  ap.add_argument("--steps", type=int, default=1500, help="0: evaluate the start point only")
  ap.add_argument("--p", type=int, default=16)
  ap.add_argument("--k", type=int, default=2)
  ap.add_argument("--pad", type=int, default=4)
  ap.add_argument("--channel", default="adap_gray", help="CAJ channel augmentation mode")
  ap.add_argument("--channel_prob", type=float, default=0.5)
  ap.add_argument("--erase", type=float, default=0.0, help="random erasing probability")
  ap.add_argument("--rho1", type=float, default=0.5)
  ap.add_argument("--rho2", type=float, default=0.1)
  ap.add_argument("--cross", type=float, default=1.0)
  ap.add_argument("--intra", type=float, default=0.1)
  ap.add_argument("--lsr", default="none")
  ap.add_argument("--set", nargs="*", help="reid config key=json value")
  ap.add_argument("--train_ids", type=int, default=0, help="use only the first N training ids")
  ap.add_argument("--closed_set", action="store_true",
                  help="control: half of each test identity's images join training")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--log_every", type=int, default=100)
  ap.add_argument("--eval_every", type=int, default=500)
  ap.add_argument("--probe", action="store_true")
  ap.add_argument("--out", default="")
  args = ap.parse_args(argv)
  result = train(args)
  if args.out:
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
      json.dump(result, f, indent=1)
    os.replace(tmp, args.out)


if __name__ == "__main__":
  main()
