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

This module holds the step's maths, the optimiser and the state; `trainers/loop.py` runs it
(jit over the `data` mesh with the batch sharded on its axis 1, so BatchNorm and the ranking
losses' hard mining see the global batch; the non-finite gate and policy; checkpoints; resume).
The `reid` section of a config (configs/base.py) holds every number.

Library use (stages.py hands it the pipeline, the mesh, the writer and the stage folder):
  train(config, workdir, train_iter, num_classes, mesh) -> TrainState
  restore_variables(config, workdir) -> (model, variables, step)    the final weights
  make_predict_fn(model)                                            for ce2l_jax.evaluate
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from typing import Any, Callable, Iterator, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ce2l_jax import baseline_losses, checkpoint, losses, parallel
from ce2l_jax.metric_writer import MetricWriter
from ce2l_jax.train_state import TrainState
from ce2l_jax.trainers import loop

STAGE = "reid"
MODEL_INFO = "model.json"   # in the stage folder: what `restore_variables` rebuilds the model from


def check_config(cfg: ml_collections.ConfigDict) -> None:
  """ValueError (one line) for a `reid` section that cannot train."""
  checks = [
      (cfg.optimizer in ("sgd", "adam", "adamw"), f"reid.optimizer={cfg.optimizer!r}: sgd, adam or adamw"),
      (cfg.schedule in ("constant", "warmup_step"), f"reid.schedule={cfg.schedule!r}: constant or warmup_step"),
      (cfg.lsr_on in ("all", "converted", "none"), f"reid.lsr_on={cfg.lsr_on!r}: all, converted or none"),
      (cfg.nan_policy in loop.NAN_POLICIES, f"reid.nan_policy={cfg.nan_policy!r}: stop or skip"),
      (cfg.ce_weight > 0 or cfg.cross_weight > 0 or cfg.intra_weight > 0
       or cfg.get("contrastive_weight", 0) > 0 or cfg.get("triplet_weight", 0) > 0,
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
  if cfg.get("compute_dtype", "float32") != "float32":  # mixed precision: parameters stay float32
    from ce2l_jax.models.layers import compute_dtype
    kw.setdefault("dtype", compute_dtype(cfg.compute_dtype, "reid.compute_dtype"))
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
  # The comparison table's baselines (configs/tone.py, configs/d2rl.py); absent from CE²L's runs.
  if cfg.get("contrastive_weight", 0) > 0:   # TONE: every (visible, infrared) pair
    feat = out["feat"]
    terms["contrastive"], aux = baseline_losses.cross_modality_contrastive(
        feat[0], feat[1], pids[0], pids[1], margin=cfg.contrastive_margin,
        normalize=bool(cfg.normalize_feats))
    diag["contrastive_neg_active_frac"] = aux["neg_active_frac"]
    total = total + cfg.contrastive_weight * terms["contrastive"]
  if cfg.get("triplet_weight", 0) > 0:       # D²RL: batch-hard over both slots pooled
    feat = out["feat"]
    terms["triplet"], aux = baseline_losses.batch_hard_triplet(
        feat.reshape(-1, feat.shape[-1]), pids.reshape(-1), margin=cfg.triplet_margin)
    diag["triplet_active_frac"] = aux["active_frac"]
    total = total + cfg.triplet_weight * terms["triplet"]
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
    new_state = state.replace(step=state.step + 1, params=new_params, opt_state=new_opt,
                              batch_stats=new_bs if state.batch_stats else state.batch_stats)
    new_state, flags = loop.gate(state, new_state, {**terms, "grad_norm": grad_norm}, new_params)

    accuracy = jnp.mean((jnp.argmax(logits, -1) == batch["pid"]).astype(jnp.float32))
    metrics = dict(terms, **diag, accuracy=accuracy, grad_norm=grad_norm,
                   update_norm=optax.global_norm(updates), lr=schedule(state.step), **flags)
    return new_state, metrics

  return step_fn


# XLA:CPU's scheduler for the re-ID steps: half the temp memory and faster (loop.CPU_SCHEDULERS).
CPU_SCHEDULER = "memory"


def compiler_options(cfg: ml_collections.ConfigDict) -> dict[str, Any] | None:
  """`reid.fast_compile` on CPU: no LLVM optimisation (compiles ~5× faster, runs slower)."""
  return loop.fast_compile_options(cfg)


class StepFunctions(NamedTuple):
  """What one re-ID model/config/mesh compiles (once per process, `loop.cached`)."""
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  train_step: Callable    # jitted (state, batch) -> (state, metrics); state donated


def build_step(model, cfg: ml_collections.ConfigDict, steps_per_epoch: int, mesh) -> StepFunctions:
  """The optimiser, schedule and jitted step for this model/config/mesh."""
  key = (STAGE, model, loop.config_key(cfg, ignore=("num_steps", "epochs")), int(steps_per_epoch),
         mesh, reid_loss, jax.default_backend())

  def build():
    tx, schedule = make_optimizer(cfg, steps_per_epoch)
    step = make_train_step(model, tx, schedule, cfg)
    return StepFunctions(tx, schedule, loop.jit_step(step, mesh, batch_axis=1,
                                                     compiler_options=compiler_options(cfg),
                                                     scheduler=CPU_SCHEDULER))

  return loop.cached(key, build)


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
# State
# --------------------------------------------------------------------------------------------


def init_variables(model, image_shape: tuple[int, ...], rng: jax.Array,
                   fast_compile: bool = False) -> dict[str, Any]:
  """Model variables for images of `image_shape` (H, W, 3), both streams initialised."""
  from ce2l_jax.models import init_reid_variables
  h, w, _ = (int(s) for s in image_shape)
  options = {"xla_backend_optimization_level": 0} if fast_compile and jax.default_backend() == "cpu" else None
  init = loop.cached(("reid_init", model, h, w, options is not None), lambda: jax.jit(
      lambda r: init_reid_variables(model, r, h, w), compiler_options=options))
  return {k: v for k, v in dict(init(rng)).items() if k in ("params", "batch_stats")}


def abstract_state(model, tx, image_shape, mesh) -> TrainState:
  """Shapes, dtypes and (replicated) shardings of the state, without computing it."""
  from ce2l_jax.models import init_reid_variables
  h, w, _ = image_shape

  def create():
    variables = dict(init_reid_variables(model, jax.random.PRNGKey(0), h, w))
    variables = {k: v for k, v in variables.items() if k in ("params", "batch_stats")}
    return TrainState.create(variables, tx, jax.random.PRNGKey(0))

  return loop.abstract_state(create, mesh)


def resume_dir(path: str) -> str:
  """The checkpoint folder of `config.resume`: a run workdir, a re-ID stage folder or a
  checkpoints folder."""
  import orbax.checkpoint as ocp
  for cand in (os.path.join(path, STAGE, "checkpoints"), os.path.join(path, "checkpoints"), path):
    if os.path.isdir(cand) and ocp.utils.checkpoint_steps(cand):
      return cand
  raise FileNotFoundError(f"no re-ID checkpoint under {path!r} (looked in {STAGE}/checkpoints, "
                          "checkpoints and the folder itself)")


def num_steps(cfg, steps_per_epoch: int | None) -> tuple[int, int]:
  """(steps to train, steps per epoch): `reid.num_steps`, else `epochs` × steps per epoch."""
  spe = int(cfg.steps_per_epoch or steps_per_epoch or 0)
  if cfg.num_steps:
    return int(cfg.num_steps), spe or int(cfg.num_steps)
  if not spe:
    raise ValueError("reid.num_steps is 0 and the number of steps per epoch is unknown: set "
                     "reid.num_steps or reid.steps_per_epoch")
  return int(math.ceil(cfg.epochs * spe)), spe


# --------------------------------------------------------------------------------------------
# Training, the final weights, prediction
# --------------------------------------------------------------------------------------------


def train(config: ml_collections.ConfigDict, workdir: str, train_iter: Iterator[dict],
          num_classes: int, mesh=None, *, steps_per_epoch: int | None = None,
          eval_fn: Callable[[dict, int], Mapping[str, float]] | None = None, model=None,
          writer: MetricWriter | None = None) -> TrainState:
  """Trains the re-ID model up to its step count; returns the final (replicated) state.

  `config`: the run config (`reid` section; top-level `seed`, `resume`, `init`, `mesh`).
  `workdir`: the stage folder (`checkpoints/` there); metrics go to `writer` (default
  `<workdir>/metrics.jsonl`). `train_iter`: host batches with leading axes (2, P*K) (`image`
  uint8, `pid` int32 relabelled, `converted`), endless; with grain's `get_state`/`set_state`
  its position is checkpointed. `steps_per_epoch` (or the iterator's attribute, or
  `reid.steps_per_epoch`) turns epochs into steps. `eval_fn(variables, step) -> {name: float}`
  runs every `reid.eval_every` steps and at the end (logged as `eval/<name>`). Starts as
  `loop.restore_or_init` says (`config.init`: pretrained weights, `models/pretrained.py`).
  Raises `loop.NonFiniteError` (policy 'stop') naming the step and the non-finite term(s).
  """
  cfg = config.reid
  check_config(cfg)
  mesh = mesh or parallel.make_mesh((config.get("mesh") or {}).get("num_devices") or None)
  model = model or create_model(cfg, num_classes)
  total, spe = num_steps(cfg, steps_per_epoch or getattr(train_iter, "steps_per_epoch", None))
  tx, _, step_fn = build_step(model, cfg, spe, mesh)
  # The first batch gives the image shape; it is trained on unless a restore moves the iterator.
  first = next(train_iter)
  image_shape = tuple(np.shape(first["image"])[2:])

  def init(path: str | None) -> TrainState:
    init_rng, state_rng = jax.random.split(jax.random.PRNGKey(int(config.get("seed", 0) or 0)))
    variables = init_variables(model, image_shape, init_rng, cfg.get("fast_compile", False))
    if path:
      from ce2l_jax.models import pretrained
      variables = pretrained.pretrained_loader(cfg.model)(path, variables)
    return parallel.replicate(TrainState.create(variables, tx, state_rng), mesh)

  own_writer = writer is None
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=cfg.max_to_keep)
  try:
    start = loop.restore_or_init(ckpt, abstract_state(model, tx, image_shape, mesh), init, train_iter,
                                 resume=config.get("resume") or None,
                                 init_path=config.get("init") or None, resume_dir=resume_dir)
    writer = writer or MetricWriter(workdir, STAGE)
    logging.info("re-ID: %s, step %d of %d%s", start.kind, int(start.state.step), total,
                 f" ({start.path})" if start.path else "")
    evaluate = None
    if eval_fn is not None:
      evaluate = lambda state, step: {f"eval/{k}": v for k, v in eval_fn(state.variables, step).items()}
    out = loop.run(cfg, start.state, step_fn, train_iter, num_steps=total, ckpt=ckpt, writer=writer,
                   name=STAGE, prepare=lambda b: prepare_batch(b, mesh),
                   first_batch=None if start.data_restored else first, eval_fn=evaluate,
                   show=("loss", "accuracy"))
  finally:
    ckpt.close()
    if writer is not None:
      writer.close() if own_writer else writer.flush()
  return out.state


def model_info(cfg: ml_collections.ConfigDict, pipe) -> dict[str, Any]:
  """What `restore_variables` rebuilds the model from (the stage writes it as MODEL_INFO)."""
  return {"model": cfg.model, "num_classes": int(pipe.num_classes),
          "image_size": [int(s) for s in pipe.image_size], "label_map": [int(x) for x in pipe.label_map]}


def restore_variables(config: ml_collections.ConfigDict, workdir: str, mesh=None,
                      step: int | None = None):
  """(model, variables, step) of the re-ID checkpoint in the stage folder `workdir` (latest by
  default)."""
  meta_path = os.path.join(workdir, MODEL_INFO)
  if not os.path.exists(meta_path):
    raise FileNotFoundError(f"no re-ID stage in {workdir} ({MODEL_INFO} is missing): run the reid stage")
  with open(meta_path) as f:
    meta = json.load(f)
  cfg = config.reid
  if meta["model"] != cfg.model:
    raise ValueError(f"{workdir} holds a {meta['model']!r} model but reid.model={cfg.model!r}")
  mesh = mesh or parallel.make_mesh((config.get("mesh") or {}).get("num_devices") or None)
  model = create_model(cfg, int(meta["num_classes"]))
  tx, _ = make_optimizer(cfg, 1)  # the optimiser state's structure does not depend on the schedule
  target = abstract_state(model, tx, (*meta["image_size"], 3), mesh)
  state, step = loop.restore_latest(os.path.join(workdir, "checkpoints"), target, step, "re-ID")
  return model, state.variables, step


def make_predict_fn(model) -> Callable[[dict, jax.Array, int], jax.Array]:
  """Un-jitted `predict(variables, images uint8 (N,H,W,3), modality) -> emb (N, D)`."""
  from ce2l_jax.data.augment import normalize_imagenet

  def predict(variables, images, modality):
    emb, _ = model.apply(variables, normalize_imagenet(images), modality=modality, train=False)
    return emb

  return predict


def build_train_pipeline(config: ml_collections.ConfigDict, mesh, converted_data_dir: str | None = None,
                         converted_name: str | None = None):
  """The P×K stream of `config.data` (split `data.train_split`, default 'train') plus, when
  given, the converted dataset `converted_name` in `converted_data_dir` (the convert stage's)."""
  from ce2l_jax.data import pipeline
  data = config.data
  input_cfg = config.input if "input" in config else pipeline.default_input_config()
  conv = {}
  if converted_data_dir:
    conv = dict(converted_name=converted_name, converted_data_dir=converted_data_dir,
                converted_modality="target")
  sources = pipeline.reid_sources_from_tfds(data.name, data.get("data_dir"),
                                            split=data.get("train_split", "train"), **conv)
  return pipeline.build_reid_train_pipeline(sources, input_cfg, seed=int(config.get("seed", 0) or 0),
                                            num_devices=mesh)
