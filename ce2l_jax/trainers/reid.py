"""The re-ID stage of CE²L: a two-stream network trained on real and converted images.

Objective of one step, on a P×K cross-modality batch with slot 0 visible and slot 1 infrared
(a converted RGB→IR image sits in slot 1 with `converted=True`):

    loss = λ_ce    · CE_LSR(logits of both slots, pid, ε)      ε on every image ('all'), only on
                                                              converted ones ('converted') or off
         + λ_cross · ℓ_cross(f_v, f_t; ρ1)                    bi-directional top-ranking loss
         + λ_intra · ℓ_intra(f_v, f_t; ρ2)                    intra-modality constraint

with `f` the model's `out['feat']` (L2-normalised when `reid.normalize_feats`). A term whose
weight is 0 is neither computed nor logged (the ablations "no ℓ_intra", "no ℓ_cross"); `lsr_on
= 'none'` gives the plain cross-entropy ("no LSR").

The step is one `jax.jit` over the `data` mesh: the state replicated, the batch sharded on its
axis 1, so BatchNorm and the ranking losses' hard mining see the global batch exactly as on one
device. The state is donated. A non-finite loss term or gradient never reaches the parameters
(the update is dropped inside the step with `jnp.where`); with `reid.nan_policy='stop'` the host
then raises naming the step and the term(s), with 'skip' training goes on.

Library use (run.py calls the first two; the stage writes under `<workdir>/reid/`):
  train_and_evaluate(config, workdir) -> results      opens the data, trains, runs the protocol
  evaluate(config, workdir) -> results                restores the final checkpoint, evaluates
  train(config, workdir, train_iterator, num_classes, mesh) -> TrainState   injected data
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
from typing import Any, Callable, Iterator, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from tqdm import tqdm

from ce2l_jax import checkpoint, losses, parallel
from ce2l_jax.metric_writer import MetricWriter
from ce2l_jax.train_state import TrainState

STAGE = "reid"


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


def default_config(preset: str = "paper") -> ml_collections.ConfigDict:
  """The `reid` section. `preset`: 'paper' (BDTR AlexNet, SGD 1e-3) or 'agw' (ResNet-50 AGW)."""
  c = ml_collections.ConfigDict()
  c.model = "bdtr_alexnet"       # bdtr_alexnet | alexnet_tiny | resnet50_agw | resnet_tiny
  c.embedding_dim = 0            # > 0: create_reid_model(embedding_dim=...) (AlexNet models)
  c.model_kwargs = ml_collections.ConfigDict()  # any other create_reid_model keyword

  # Optimiser. Schedules are in steps: epochs × steps_per_epoch.
  c.optimizer = "sgd"            # sgd | adam (coupled L2, as torch.optim.Adam) | adamw
  c.lr = 1e-3
  c.momentum = 0.9               # sgd; adam's b1 stays 0.9
  c.nesterov = False
  c.weight_decay = 5e-4
  c.backbone_lr_mult = 1.0       # lr multiplier of the parameters matching backbone_pattern
  # regex searched in the '/'-joined parameter path: the ImageNet-pretrained layers
  c.backbone_pattern = r"^(stream_[vt]|stem_[vt]|layer\d)"
  c.grad_clip_norm = 0.0         # > 0: clip the global gradient norm
  c.schedule = "constant"        # constant | warmup_step
  c.warmup_epochs = 0.0          # warmup_step: linear from warmup_factor × lr to lr
  c.warmup_factor = 0.01
  c.decay_epochs = ()            # warmup_step: lr × decay_factor at each of these epochs
  c.decay_factor = 0.1
  c.epochs = 60
  c.num_steps = 0                # > 0 overrides epochs × steps_per_epoch
  c.steps_per_epoch = 0          # 0: from the data (the sampler's epoch length)

  # Losses (defaults of the paper).
  c.ce_weight = 1.0
  c.lsr_on = "converted"         # all | converted | none
  c.lsr_epsilon = 0.1            # ε
  c.cross_weight = 1.0           # λ_cross; 0 disables ℓ_cross
  c.cross_margin = 0.5           # ρ1
  c.intra_weight = 0.1           # λ_intra; 0 disables ℓ_intra
  c.intra_margin = 0.1           # ρ2
  c.normalize_feats = True       # L2-normalise out['feat'] before the ranking losses
  c.ranking_reduction = "mean"

  # Loop.
  c.nan_policy = "stop"          # stop | skip
  c.log_every = 50
  c.eval_every = 0               # > 0: one-trial evaluation every this many steps
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3
  c.progress_bar = True
  c.fast_compile = False         # CPU smoke runs: skip XLA's LLVM optimisation (faster compiles)

  if preset == "agw":
    c.model = "resnet50_agw"
    c.lr = 0.1
    c.weight_decay = 5e-4
    c.schedule = "warmup_step"
    c.warmup_epochs = 10.0
    c.warmup_factor = 0.01
    c.decay_epochs = (40, 70)
    c.decay_factor = 0.1
    c.epochs = 80
  elif preset != "paper":
    raise ValueError(f"unknown reid preset {preset!r}: 'paper' or 'agw'")
  return c


def _validate(cfg: ml_collections.ConfigDict) -> None:
  checks = [
      (cfg.optimizer in ("sgd", "adam", "adamw"), f"reid.optimizer={cfg.optimizer!r}: sgd, adam or adamw"),
      (cfg.schedule in ("constant", "warmup_step"), f"reid.schedule={cfg.schedule!r}: constant or warmup_step"),
      (cfg.lsr_on in ("all", "converted", "none"), f"reid.lsr_on={cfg.lsr_on!r}: all, converted or none"),
      (cfg.nan_policy in ("stop", "skip"), f"reid.nan_policy={cfg.nan_policy!r}: stop or skip"),
      (cfg.ce_weight > 0 or cfg.cross_weight > 0 or cfg.intra_weight > 0,
       "every re-ID loss weight is 0: enable at least one of ce_weight, cross_weight, intra_weight"),
      (cfg.log_every > 0 and cfg.checkpoint_every > 0, "reid.log_every and reid.checkpoint_every must be > 0"),
  ]
  for ok, msg in checks:
    if not ok:
      raise ValueError(msg)


# --------------------------------------------------------------------------------------------
# Model, optimiser
# --------------------------------------------------------------------------------------------


def create_model(cfg: ml_collections.ConfigDict, num_classes: int):
  from ce2l_jax.models import create_reid_model
  kw = dict(cfg.model_kwargs.to_dict()) if cfg.get("model_kwargs") else {}
  if cfg.get("embedding_dim"):
    kw.setdefault("embedding_dim", cfg.embedding_dim)
  return create_reid_model(cfg.model, num_classes, **kw)


def make_schedule(cfg: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
  """The learning-rate schedule in steps (epoch boundaries × steps_per_epoch)."""
  if cfg.schedule == "constant":
    return optax.constant_schedule(cfg.lr)
  warm = int(round(cfg.warmup_epochs * steps_per_epoch))
  bounds = {int(round(e * steps_per_epoch)) - warm: cfg.decay_factor for e in cfg.decay_epochs}
  steps = optax.piecewise_constant_schedule(cfg.lr, {b: f for b, f in bounds.items() if b > 0})
  if warm <= 0:
    return steps
  warmup = optax.linear_schedule(cfg.warmup_factor * cfg.lr, cfg.lr, warm)
  return optax.join_schedules([warmup, steps], [warm])


def _param_labels(params: Any, pattern: str) -> Any:
  rx = re.compile(pattern)

  def label(path, _):
    name = "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
    return "backbone" if rx.search(name) else "head"

  return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(cfg: ml_collections.ConfigDict, steps_per_epoch: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """SGD / Adam with coupled weight decay (as torch), optional lower backbone lr and clipping."""
  schedule = make_schedule(cfg, steps_per_epoch)

  def one(sched):
    parts = []
    if cfg.weight_decay and cfg.optimizer != "adamw":
      parts.append(optax.add_decayed_weights(cfg.weight_decay))
    if cfg.optimizer == "sgd":
      parts.append(optax.sgd(sched, momentum=cfg.momentum or None, nesterov=cfg.nesterov))
    elif cfg.optimizer == "adam":
      parts.append(optax.adam(sched))
    else:
      parts.append(optax.adamw(sched, weight_decay=cfg.weight_decay))
    return optax.chain(*parts)

  if cfg.backbone_lr_mult != 1.0:
    mult = float(cfg.backbone_lr_mult)
    tx = optax.multi_transform(
        {"head": one(schedule), "backbone": one(lambda s: schedule(s) * mult)},
        lambda params: _param_labels(params, cfg.backbone_pattern))
  else:
    tx = one(schedule)
  if cfg.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), tx)
  return tx, schedule


# --------------------------------------------------------------------------------------------
# Loss and step
# --------------------------------------------------------------------------------------------


def reid_loss(out: Mapping[str, jax.Array], batch: Mapping[str, jax.Array],
              cfg: ml_collections.ConfigDict) -> tuple[jax.Array, dict[str, jax.Array], dict[str, jax.Array]]:
  """(total, terms, diagnostics) from the model's paired train output and the batch.

  `terms` holds every loss term by name (`ce`, `cross`, `intra`, `loss` = the total); a disabled
  term (weight 0) is absent. `diagnostics` are the ranking losses' statistics (not checked for
  finiteness, logged as is).
  """
  pids = batch["pid"]                                   # (2, N)
  terms: dict[str, jax.Array] = {}
  diag: dict[str, jax.Array] = {}
  total = jnp.zeros((), jnp.float32)
  if cfg.ce_weight > 0:
    logits = out["logits"]
    if cfg.lsr_on == "all":
      eps = cfg.lsr_epsilon
    elif cfg.lsr_on == "converted" and batch.get("converted") is not None:
      eps = jnp.where(batch["converted"], cfg.lsr_epsilon, 0.0).astype(jnp.float32)
    else:
      eps = 0.0
    terms["ce"] = losses.label_smoothing_cross_entropy(logits, pids, eps)
    total = total + cfg.ce_weight * terms["ce"]
  if cfg.cross_weight > 0 or cfg.intra_weight > 0:
    feat = out["feat"]
    kw = dict(reduction=cfg.ranking_reduction, normalize=bool(cfg.normalize_feats))
    if cfg.cross_weight > 0:
      terms["cross"], aux = losses.cross_modality_top_ranking(
          feat[0], feat[1], pids[0], pids[1], margin=cfg.cross_margin, **kw)
      diag.update(cross_active_frac=aux["active_frac"], rank_acc=aux["rank_acc"],
                  pos_dist=aux["pos_dist"], neg_dist=aux["neg_dist"])
      total = total + cfg.cross_weight * terms["cross"]
    if cfg.intra_weight > 0:
      terms["intra"], aux = losses.intra_modality(
          feat[0], feat[1], pids[0], pids[1], margin=cfg.intra_margin, **kw)
      diag["intra_active_frac"] = aux["active_frac"]
      total = total + cfg.intra_weight * terms["intra"]
  terms["loss"] = total
  return total, terms, diag


def make_train_step(model, tx: optax.GradientTransformation, schedule: optax.Schedule,
                    cfg: ml_collections.ConfigDict) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
  """The (un-jitted) step: state, batch (uint8 images) → new state, metrics (scalars)."""
  from ce2l_jax.data.augment import normalize_imagenet

  def step_fn(state: TrainState, batch: dict[str, jax.Array]):
    rng = jax.random.fold_in(state.rng, state.step)
    images = normalize_imagenet(batch["image"])

    def loss_fn(params):
      variables = {"params": params}
      if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
      (_, out), mutated = model.apply(variables, images, train=True, rngs={"dropout": rng},
                                      mutable=["batch_stats"])
      total, terms, diag = reid_loss(out, batch, cfg)
      return total, (terms, diag, mutated.get("batch_stats", {}), out["logits"])

    (_, (terms, diag, new_bs, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grad_norm = optax.global_norm(grads)
    updates, new_opt = tx.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)

    update_norm = optax.global_norm(updates)
    finite = {k: jnp.isfinite(v) for k, v in terms.items()}
    finite["grad"] = jnp.isfinite(grad_norm)
    # Finite loss and gradient can still overflow the parameters (a huge lr): never keep those.
    # (Elementwise: the norm of a finite update can overflow on its own.)
    finite["update"] = jnp.all(jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(new_params)]))
    ok = jnp.all(jnp.stack(list(finite.values())))
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
    new_state = state.replace(
        step=state.step + 1, params=keep(new_params, state.params),
        batch_stats=keep(new_bs, state.batch_stats) if state.batch_stats else state.batch_stats,
        opt_state=keep(new_opt, state.opt_state))

    accuracy = jnp.mean((jnp.argmax(logits, -1) == batch["pid"]).astype(jnp.float32))
    metrics = dict(terms, **diag, accuracy=accuracy, grad_norm=grad_norm, update_norm=update_norm,
                   lr=schedule(state.step), skipped=(~ok).astype(jnp.float32))
    metrics.update({f"finite/{k}": v for k, v in finite.items()})
    return new_state, metrics

  return step_fn


def jit_train_step(step_fn, mesh, compiler_options: Mapping[str, Any] | None = None) -> Callable:
  """`jax.jit` over the mesh: state replicated and donated, batch sharded on axis 1."""
  repl = parallel.replicated(mesh)
  return jax.jit(step_fn, in_shardings=(repl, parallel.batch_sharding(mesh, 1)),
                 out_shardings=(repl, repl), donate_argnums=(0,),
                 compiler_options=dict(compiler_options or {}) or None)


def compiler_options(cfg: ml_collections.ConfigDict) -> dict[str, Any] | None:
  """`reid.fast_compile` on CPU: no LLVM optimisation (compiles ~5× faster, runs slower)."""
  if cfg.get("fast_compile") and jax.default_backend() == "cpu":
    return {"xla_backend_optimization_level": 0}
  return None


# Fields of the `reid` config that only the host loop reads: changing them keeps the step.
_LOOP_FIELDS = ("nan_policy", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints",
                "progress_bar", "num_steps", "epochs")
_STEP_CACHE: dict[Any, tuple] = {}


def build_step(model, cfg: ml_collections.ConfigDict, steps_per_epoch: int, mesh):
  """(tx, schedule, jitted step) for this model/config/mesh, reused across `train` calls of one
  process (a resumed or repeated run in the same process compiles once)."""
  step_cfg = {k: v for k, v in cfg.to_dict().items() if k not in _LOOP_FIELDS}
  key = (model, json.dumps(step_cfg, sort_keys=True, default=str), int(steps_per_epoch), mesh,
         reid_loss, jax.default_backend())
  if key not in _STEP_CACHE:
    if len(_STEP_CACHE) >= 8:
      _STEP_CACHE.clear()
    tx, schedule = make_optimizer(cfg, steps_per_epoch)
    _STEP_CACHE[key] = (tx, schedule, jit_train_step(make_train_step(model, tx, schedule, cfg), mesh,
                                                     compiler_options(cfg)))
  return _STEP_CACHE[key]


def prepare_batch(batch: Mapping[str, Any], mesh) -> dict[str, jax.Array]:
  """Host batch → the step's global arrays (only the keys the step reads, fixed dtypes)."""
  image = np.asarray(batch["image"])
  if image.dtype != np.uint8:
    raise TypeError(f"train batch images must be uint8 (normalised on device), got {image.dtype}")
  pid = np.asarray(batch["pid"], np.int32)
  conv = batch.get("converted")
  conv = np.zeros(pid.shape, bool) if conv is None else np.asarray(conv, bool)
  return parallel.shard_batch({"image": image, "pid": pid, "converted": conv}, mesh, batch_axis=1)


# --------------------------------------------------------------------------------------------
# State creation / restoration
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _jitted_init(model, height: int, width: int, fast_compile: bool):
  from ce2l_jax.models import init_reid_variables
  options = {"xla_backend_optimization_level": 0} if fast_compile and jax.default_backend() == "cpu" else None
  return jax.jit(lambda r: init_reid_variables(model, r, height, width), compiler_options=options)


def init_variables(model, image_shape: tuple[int, ...], rng: jax.Array,
                   fast_compile: bool = False) -> dict[str, Any]:
  """Model variables for images of `image_shape` (H, W, 3), both streams initialised."""
  h, w, _ = image_shape
  variables = _jitted_init(model, int(h), int(w), bool(fast_compile))(rng)
  return {k: v for k, v in dict(variables).items() if k in ("params", "batch_stats")}


def abstract_state(model, tx, image_shape, mesh) -> TrainState:
  """Shapes, dtypes and (replicated) shardings of the state, without computing it."""
  from ce2l_jax.models import init_reid_variables
  h, w, _ = image_shape

  def create():
    variables = dict(init_reid_variables(model, jax.random.PRNGKey(0), h, w))
    variables = {k: v for k, v in variables.items() if k in ("params", "batch_stats")}
    return TrainState.create(variables, tx, jax.random.PRNGKey(0))

  shapes = jax.eval_shape(create)
  repl = parallel.replicated(mesh)
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl), shapes)


def _checkpoint_dir(path: str) -> str:
  """Accepts a run workdir, a re-ID stage folder or a checkpoints folder."""
  import orbax.checkpoint as ocp
  for cand in (os.path.join(path, STAGE, "checkpoints"), os.path.join(path, "checkpoints"), path):
    if os.path.isdir(cand) and ocp.utils.checkpoint_steps(cand):
      return cand
  raise FileNotFoundError(f"no re-ID checkpoint under {path!r} (looked in {STAGE}/checkpoints, "
                          "checkpoints and the folder itself)")


def _has_data_item(ckpt_dir: str, step: int) -> bool:
  return os.path.isdir(os.path.join(ckpt_dir, str(step), "data"))


def _load_init(path: str, model_name: str, variables: dict[str, Any]) -> dict[str, Any]:
  """Pretrained weights (`config.init`) into freshly initialised variables."""
  from ce2l_jax.models import pretrained
  return pretrained.pretrained_loader(model_name)(path, variables)


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


class NonFiniteError(FloatingPointError):
  """A loss term or the gradient of a re-ID step was NaN or infinite."""


def _steps(cfg, steps_per_epoch: int | None) -> tuple[int, int]:
  spe = int(cfg.steps_per_epoch or steps_per_epoch or 0)
  if cfg.num_steps:
    return int(cfg.num_steps), spe or int(cfg.num_steps)
  if not spe:
    raise ValueError("reid.num_steps is 0 and the number of steps per epoch is unknown: set "
                     "reid.num_steps or reid.steps_per_epoch")
  return int(math.ceil(cfg.epochs * spe)), spe


def _restore_or_init(config, model, tx, image_shape, mesh, ckpt, train_iterator):
  """(state, kind, path, iterator_restored) following `checkpoint.resolve_init`'s order."""
  cfg = config.reid
  target = abstract_state(model, tx, image_shape, mesh)
  kind, path = checkpoint.resolve_init(ckpt.directory, config.get("resume") or None,
                                       config.get("init") or None)
  if kind in ("workdir", "resume"):
    src = ckpt.directory if kind == "workdir" else _checkpoint_dir(path)
    source = ckpt if kind == "workdir" else checkpoint.Checkpointer(src, max_to_keep=None)
    it = (train_iterator if hasattr(train_iterator, "set_state")
          and _has_data_item(src, source.latest_step()) else None)
    state = source.restore(target, it)
    if source is not ckpt:
      source.close()
    return state, kind, src, it is not None
  init_rng, state_rng = jax.random.split(jax.random.PRNGKey(int(config.get("seed", 0) or 0)))
  variables = init_variables(model, image_shape, init_rng, cfg.get("fast_compile", False))
  if kind == "init":
    variables = _load_init(path, cfg.model, variables)
  return parallel.replicate(TrainState.create(variables, tx, state_rng), mesh), kind, path, False


def train(config: ml_collections.ConfigDict, workdir: str, train_iterator: Iterator[dict],
          num_classes: int, mesh=None, *, steps_per_epoch: int | None = None,
          eval_fn: Callable[[dict, int], Mapping[str, float]] | None = None, model=None,
          writer: MetricWriter | None = None) -> TrainState:
  """Trains the re-ID model up to its step count; returns the final (replicated) state.

  `config`: the run config (`reid` section; top-level `seed`, `resume`, `init`, `mesh`).
  `workdir`: the stage folder; checkpoints go to `<workdir>/checkpoints/` (state + iterator
  position), metrics to `writer` (default `MetricWriter(workdir, "reid")`).
  `train_iterator`: host batches with leading axes (2, P*K) (`image` uint8, `pid` int32
  relabelled, `converted`), infinite; with grain's `get_state`/`set_state` its position is
  checkpointed. `steps_per_epoch` (or the iterator's attribute, or `reid.steps_per_epoch`) turns
  epochs into steps. `eval_fn(variables, step) -> {name: float}` runs every `reid.eval_every`
  steps (logged as `eval/<name>`). Starts from the workdir's latest checkpoint (same step count,
  same data position), else `config.resume` (a run folder, a stage folder or a checkpoints
  folder), else `config.init` (pretrained weights, `models/pretrained.py`), else scratch.
  Raises `NonFiniteError` (policy 'stop') naming the step and the non-finite term(s); the
  checkpoints written before stay the latest.
  """
  cfg = config.reid
  _validate(cfg)
  if mesh is None:
    mesh = parallel.make_mesh((config.get("mesh") or {}).get("num_devices") or None)
  if model is None:
    model = create_model(cfg, num_classes)
  num_steps, spe = _steps(cfg, steps_per_epoch or getattr(train_iterator, "steps_per_epoch", None))
  tx, _, step_jit = build_step(model, cfg, spe, mesh)
  os.makedirs(workdir, exist_ok=True)

  # The first batch gives the image shape; it is trained on unless a restore moves the iterator.
  first = next(train_iterator)
  image_shape = tuple(np.shape(first["image"])[2:])
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=cfg.keep_checkpoints)
  state, kind, path, restored_iterator = _restore_or_init(config, model, tx, image_shape, mesh, ckpt,
                                                          train_iterator)
  if restored_iterator:
    first = None
  start = int(jax.device_get(state.step))
  logging.info("re-ID: %s, step %d of %d%s", kind, start, num_steps, f" ({path})" if path else "")

  own_writer = writer is None
  writer = writer or MetricWriter(workdir, STAGE)
  pbar = tqdm(total=num_steps, initial=start, desc="re-ID", unit="step", dynamic_ncols=True,
              disable=not cfg.progress_bar or jax.process_index() != 0)
  window: list[dict] = []
  pending: tuple[int, dict] | None = None
  skipped_total = 0

  def check(entry):
    """Host-side look at one step's finiteness flags (one step late, so dispatch runs ahead)."""
    nonlocal skipped_total
    step_no, m = entry
    flags = jax.device_get({k[len("finite/"):]: v for k, v in m.items() if k.startswith("finite/")})
    bad = [k for k, ok in flags.items() if not ok]
    if not bad:
      return
    if cfg.nan_policy == "stop":
      names = {k: {"grad": "grad_norm", "update": "update_norm"}.get(k, k) for k in bad}
      values = jax.device_get({names[k]: m[names[k]] for k in bad})
      last = ckpt.latest_step()
      raise NonFiniteError(
          f"re-ID step {step_no}: non-finite {', '.join(bad)} ("
          + ", ".join(f"{k}={float(v)}" for k, v in values.items())
          + "); the update was not applied and training stopped. Last good checkpoint: "
          + (f"step {last}" if last is not None else "none") + f" in {ckpt.directory}. Lower "
          "reid.lr or set reid.nan_policy='skip' to skip such updates.")
    skipped_total += 1
    logging.warning("re-ID step %d: non-finite %s, update skipped (%d so far)", step_no,
                    ", ".join(bad), skipped_total)

  def flush_window(step_no):
    nonlocal window
    rows = jax.device_get(window)
    window = []
    good = [r for r in rows if not r["skipped"]] or rows
    out = {}
    for k in rows[-1]:
      if k.startswith("finite/"):
        continue
      if k == "lr":
        out[k] = float(rows[-1][k])
      elif k == "skipped":
        if cfg.nan_policy == "skip":
          out[k] = float(sum(r[k] for r in rows))
      else:
        out[k] = float(np.mean([r[k] for r in good]))
    writer.write_scalars(step_no, out)
    pbar.set_postfix(loss=f"{out['loss']:.4f}", acc=f"{out['accuracy']:.3f}", refresh=False)

  try:
    for step_no in range(start + 1, num_steps + 1):
      if first is not None:
        batch, first = first, None
      else:
        try:
          batch = next(train_iterator)
        except StopIteration:
          raise RuntimeError(f"the re-ID train iterator ran out at step {step_no} of {num_steps}; "
                             "it must be endless (input.num_steps unset)") from None
      state, metrics = step_jit(state, prepare_batch(batch, mesh))
      if pending is not None:
        check(pending)
      pending = (step_no, metrics)
      window.append(metrics)
      last = step_no == num_steps
      if step_no % cfg.log_every == 0 or last:
        check(pending)
        pending = None
        flush_window(step_no)
      if step_no % cfg.checkpoint_every == 0 or last:
        if pending is not None:
          check(pending)
          pending = None
        ckpt.save(step_no, state, train_iterator if hasattr(train_iterator, "get_state") else None,
                  force=True)
      if eval_fn is not None and cfg.eval_every and step_no % cfg.eval_every == 0 and not last:
        scores = eval_fn(state.variables, step_no)
        writer.write_scalars(step_no, {f"eval/{k}": v for k, v in scores.items()})
      pbar.update(1)
    if pending is not None:
      check(pending)
  finally:
    pbar.close()
    ckpt.close()
    if own_writer:
      writer.close()
    else:
      writer.flush()
  return state


# --------------------------------------------------------------------------------------------
# Prediction and the stage entry points
# --------------------------------------------------------------------------------------------


def make_predict_fn(model) -> Callable[[dict, jax.Array, int], jax.Array]:
  """Un-jitted `predict(variables, images uint8 (N,H,W,3), modality) -> emb (N, D)`."""
  from ce2l_jax.data.augment import normalize_imagenet

  def predict(variables, images, modality):
    emb, _ = model.apply(variables, normalize_imagenet(images), modality=modality, train=False)
    return emb

  return predict


def stage_dir(workdir: str) -> str:
  return os.path.join(workdir, STAGE)


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(stage_dir(workdir), "checkpoints")


def _write_json(path: str, obj: Any) -> None:
  if jax.process_index() != 0:
    return
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1)
  os.replace(tmp, path)


def build_train_pipeline(config: ml_collections.ConfigDict, workdir: str, mesh):
  """The P×K stream of `config.data` (split `data.train_split`, default 'train') plus, when the
  CycleGAN stage is enabled, the run's converted dataset (`<workdir>/convert/`)."""
  from ce2l_jax import convert
  from ce2l_jax.data import pipeline
  data = config.data
  input_cfg = config.input if "input" in config else pipeline.default_input_config()
  conv = {}
  use_converted = bool((config.get("cyclegan") or {}).get("enabled", False)) and bool(
      (config.get("convert") or {}).get("enabled", True))
  if use_converted:
    if not convert.is_complete(workdir):
      raise FileNotFoundError(
          f"cyclegan.enabled but there is no finished conversion in {convert.stage_dir(workdir)}: run "
          "the cyclegan and convert stages first, or set cyclegan.enabled=False")
    conv = dict(converted_name=convert.DATASET_NAME,
                converted_data_dir=convert.converted_data_dir(workdir), converted_modality="target")
  sources = pipeline.reid_sources_from_tfds(data.name, data.get("data_dir"),
                                            split=data.get("train_split", "train"), **conv)
  return pipeline.build_reid_train_pipeline(sources, input_cfg, seed=int(config.get("seed", 0) or 0),
                                            num_devices=mesh)


def _mesh(config):
  return parallel.make_mesh((config.get("mesh") or {}).get("num_devices") or None)


def _final_evaluation(config, workdir, model, variables, step, mesh, writer=None) -> dict:
  """The full protocol on the final model (+ the raw-pixel baseline); writes the results."""
  from ce2l_jax import evaluate as ev
  from ce2l_jax import metrics as metrics_lib
  sdir = stage_dir(workdir)
  test_set = ev.open_test_set(config)
  evaluator = ev.make_evaluator(config, make_predict_fn(model), mesh, test_set)
  results = ev.results_dict(evaluator.run(variables))
  rows = {f"re-ID ({config.reid.model})": results}
  if config.eval.get("baseline", False):
    base = ev.make_evaluator(config, ev.raw_pixel_predict_fn(config.eval.baseline_size), mesh, test_set)
    baseline = ev.results_dict(base.run({}))
    _write_json(os.path.join(sdir, "baseline_results.json"), baseline)
    rows["raw pixels"] = baseline
  if writer is not None:
    writer.write_scalars(step, {f"test/{k}": v for k, v in ev.flat_means(results).items()})
  table = metrics_lib.format_table(rows)
  if jax.process_index() == 0:
    with open(os.path.join(sdir, "results.txt"), "w") as f:
      f.write(f"{config.data.name}, step {step}\n{table}")
    print(table)
  _write_json(os.path.join(sdir, "results.json"), {"step": int(step), "results": results})
  return results


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       final_eval: bool = True) -> dict | None:
  """The re-ID stage: trains on the run's data (+ converted images), then the full protocol.

  `config`: the run config (sections `data`, `input`, `reid`, `eval`, `mesh`, `cyclegan.enabled`,
  top-level `seed`, `resume`, `init`); `workdir`: the run's folder. Writes under
  `<workdir>/reid/`: `checkpoints/`, `model.json` (model name, num_classes, image size),
  `results.json` (`{"step", "results": {setting: {"mean", "std", ...}}}`), `results.txt` (the
  table), `baseline_results.json`; rows with stage 'reid' in `<workdir>/metrics.jsonl`.
  A finished stage (results.json of the final step) returns its results without training.
  Returns the results dict (`{setting: {"mean": {rank1, ..., mINP}, "std": {...}, ...}}`).
  """
  from ce2l_jax import evaluate as ev
  sdir = stage_dir(workdir)
  cfg = config.reid
  mesh = _mesh(config)
  pipe = build_train_pipeline(config, workdir, mesh)
  num_steps, _ = _steps(cfg, pipe.steps_per_epoch)
  done = os.path.join(sdir, "results.json")
  if final_eval and os.path.exists(done):
    with open(done) as f:
      prev = json.load(f)
    if prev.get("step") == num_steps:
      return prev["results"]
  _write_json(os.path.join(sdir, "model.json"), {
      "model": cfg.model, "num_classes": int(pipe.num_classes),
      "image_size": [int(s) for s in pipe.image_size], "label_map": [int(x) for x in pipe.label_map]})
  _write_json(os.path.join(sdir, "config.json"), json.loads(config.to_json_best_effort()))
  model = create_model(cfg, pipe.num_classes)
  writer = MetricWriter(workdir, STAGE)
  eval_fn = None
  if cfg.eval_every:
    evaluator = ev.make_evaluator(config, make_predict_fn(model), mesh)
    eval_fn = lambda variables, step: evaluator.run_periodic(variables)
  try:
    state = train(config, sdir, pipe.iterator(), pipe.num_classes, mesh,
                  steps_per_epoch=pipe.steps_per_epoch, eval_fn=eval_fn, model=model, writer=writer)
    if not final_eval:
      return None
    return _final_evaluation(config, workdir, model, state.variables, int(state.step), mesh, writer)
  finally:
    writer.close()


def restore_variables(config: ml_collections.ConfigDict, workdir: str, mesh=None,
                      step: int | None = None):
  """(model, variables, step) of the re-ID checkpoint of a run (the latest by default)."""
  sdir = stage_dir(workdir)
  meta_path = os.path.join(sdir, "model.json")
  if not os.path.exists(meta_path):
    raise FileNotFoundError(f"no re-ID stage in {sdir} (model.json is missing): run the reid stage")
  with open(meta_path) as f:
    meta = json.load(f)
  cfg = config.reid
  if meta["model"] != cfg.model:
    raise ValueError(f"{sdir} holds a {meta['model']!r} model but reid.model={cfg.model!r}")
  mesh = mesh or _mesh(config)
  model = create_model(cfg, int(meta["num_classes"]))
  tx, _ = make_optimizer(cfg, 1)  # the optimiser state's structure does not depend on the schedule
  target = abstract_state(model, tx, (*meta["image_size"], 3), mesh)
  ckpt = checkpoint.Checkpointer(checkpoint_dir(workdir), max_to_keep=None)
  try:
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no re-ID checkpoint in {ckpt.directory}")
    state = ckpt.restore(target, step=step)
  finally:
    ckpt.close()
  return model, state.variables, int(step)


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Restores the final re-ID checkpoint of the run in `workdir` and runs the full protocol.

  Writes `<workdir>/reid/results.json`, `results.txt`, `baseline_results.json` (as
  `train_and_evaluate`) and returns `{setting: {"mean": {...}, "std": {...}, ...}}`.
  """
  mesh = _mesh(config)
  model, variables, step = restore_variables(config, workdir, mesh)
  num_steps = int(config.reid.num_steps or 0)
  if num_steps and step != num_steps:
    logging.warning("re-ID: evaluating step %d, but reid.num_steps is %d (unfinished run?)", step,
                    num_steps)
  writer = MetricWriter(workdir, STAGE)
  try:
    return _final_evaluation(config, workdir, model, variables, step, mesh, writer)
  finally:
    writer.close()
