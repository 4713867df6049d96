"""D²RL's joint training (Wang et al., CVPR 2019, Sec. 3.3): the image-level generators and the
feature-level network learn together, the generators starting from this project's CycleGAN.

The network is `ce2l_jax.models.d2rl.D2RLNet` (generators G: visible→infrared, F: infrared→visible,
unified four-channel images, one shared ResNet). One step on a P×K cross-modality batch
(slot 0 visible x_v, slot 1 infrared x_i, same identities slot by slot):

  generators + feature network, one update of
      L = L_feat + λ_img · (L_adv + λ_cyc · L_cyc)
      L_feat = the re-ID loss of `trainers/reid.reid_loss` on the unified images' outputs:
               identity cross-entropy + λ_tri · batch-hard triplet (D²RL's Sec. 3.2 pair of
               losses; `reid.ce_weight`, `reid.triplet_weight`, `reid.triplet_margin`)
      L_adv  = LSGAN generator terms E[(D_IR(G(x_v)) − 1)²] + E[(D_RGB(F(x_i)) − 1)²]
      L_cyc  = ‖F(G(x_v)) − x_v‖₁ + ‖G(F(x_i)) − x_i‖₁
  discriminators, one update of
      ½ E[(D_IR(x_i) − 1)²] + ½ E[D_IR(G(x_v))²] + the same for D_RGB with x_v and F(x_i)
  (the generated images of this step, no image pool).
The feature loss reaches the generators (the paper's "cascaded, trained jointly"). Optimisers:
the `reid` section's for the feature network (`trainers/reid.make_optimizer`), Adam(d2rl.gen_lr,
β1 = d2rl.beta1) for the generators and for the discriminators (CycleGAN's).

Starting point (Sec. 3.3 pre-trains the image-level sub-network, then trains jointly): with
`d2rl.from_cyclegan` the generators and discriminators are the CycleGAN stage's final weights
(`<run>/cyclegan/checkpoints`, the same `ngf`, `n_blocks`, `ndf`, `n_layers_d`); the feature
network starts from scratch. Reductions against the paper (stated in configs/d2rl.py): CycleGAN
generators instead of the paper's VAE-based translators (no KL / reconstruction terms), no image
pool, no identity-mapping term.

The loop, the non-finite gate, checkpoints and resume are `trainers/loop.py`'s; the stage wiring
(`stages.py` picks this module when `reid.trainer = 'd2rl'`) uses the same functions as the re-ID
trainer: `build_train_pipeline`, `model_info`, `create_model`, `make_predict_fn` (re-exported),
`train`, `restore_variables`.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Callable, Iterator, Mapping

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ce2l_jax import checkpoint, losses, parallel
from ce2l_jax import workdir as wd
from ce2l_jax.metric_writer import MetricWriter
from ce2l_jax.trainers import loop, reid
from ce2l_jax.trainers.reid import (MODEL_INFO, STAGE, build_train_pipeline, create_model,  # noqa: F401
                                    make_predict_fn, model_info)

GEN_ROLES = ("gen_rgb2ir", "gen_ir2rgb")
DISC_ROLES = ("disc_rgb", "disc_ir")


@flax.struct.dataclass
class D2RLState:
  step: jax.Array
  params: Any              # D2RLNet: gen_rgb2ir, gen_ir2rgb, reid
  batch_stats: Any
  opt_state: Any
  disc_params: Any         # {disc_rgb, disc_ir}
  disc_opt_state: Any
  rng: jax.Array

  @property
  def variables(self) -> dict[str, Any]:
    return {"params": self.params, "batch_stats": self.batch_stats}


def check_config(config: ml_collections.ConfigDict) -> None:
  reid.check_config(config.reid)
  d = config.d2rl
  if not config.reid.model.startswith("d2rl"):
    raise ValueError(f"reid.trainer='d2rl' needs a D²RL network (reid.model d2rl or d2rl_tiny); "
                     f"got {config.reid.model!r}")
  kw = config.reid.get("model_kwargs") or {}
  for key in ("ngf", "n_blocks"):
    if d.from_cyclegan and key in kw and kw[key] != config.cyclegan[key]:
      raise ValueError(f"reid.model_kwargs.{key}={kw[key]} but cyclegan.{key}="
                       f"{config.cyclegan[key]}: the generators start from the CycleGAN stage")


def _discriminator(config: ml_collections.ConfigDict):
  from ce2l_jax.models.cyclegan import PatchDiscriminator
  return PatchDiscriminator(ndf=int(config.cyclegan.ndf), n_layers=int(config.cyclegan.n_layers_d),
                            init_std=float(config.cyclegan.get("init_std", 0.02)))


def make_optimizers(config: ml_collections.ConfigDict, steps_per_epoch: int):
  """(tx for the D2RLNet parameters, tx for the discriminators, the feature lr schedule)."""
  d = config.d2rl
  tx_feat, schedule = reid.make_optimizer(config.reid, steps_per_epoch)
  gen = optax.adam(float(d.gen_lr), b1=float(d.beta1)) if d.train_generators else optax.set_to_zero()
  tx = optax.multi_transform({"gen": gen, "feat": tx_feat},
                             lambda params: {k: ("gen" if k in GEN_ROLES else "feat") for k in params})
  return tx, optax.adam(float(d.gen_lr), b1=float(d.beta1)), schedule


def make_train_step(model, disc, tx, tx_d, schedule, config: ml_collections.ConfigDict) -> Callable:
  """The (un-jitted) joint step of the module docstring: state, batch → new state, metrics."""
  from ce2l_jax.data.augment import normalize_imagenet
  cfg, d = config.reid, config.d2rl
  lam_img, lam_cyc = float(d.image_weight), float(d.lambda_cycle)

  def step_fn(state: D2RLState, batch: dict[str, jax.Array]):
    rng = jax.random.fold_in(state.rng, state.step)
    images = normalize_imagenet(batch["image"])
    dp = state.disc_params

    def net_loss(params):
      (_, out), mutated = model.apply({"params": params, "batch_stats": state.batch_stats}, images,
                                      train=True, rngs={"dropout": rng}, mutable=["batch_stats"])
      total, terms, diag = reid.reid_loss(out, batch, cfg)
      fake_ir, fake_rgb = out["fake"][0], out["fake"][1]
      adv = (losses.lsgan_generator_loss(disc.apply({"params": dp["disc_ir"]}, fake_ir))
             + losses.lsgan_generator_loss(disc.apply({"params": dp["disc_rgb"]}, fake_rgb)))
      cyc = losses.l1_loss(out["rec"][0], out["real"][0]) + losses.l1_loss(out["rec"][1], out["real"][1])
      terms.update(feature=total, gan_g=adv, cycle=cyc)
      total = total + lam_img * (adv + lam_cyc * cyc)
      terms["loss"] = total
      fakes = jax.lax.stop_gradient(out["fake"])
      return total, (terms, diag, mutated["batch_stats"], out["logits"], fakes, out["real"])

    (_, (terms, diag, new_bs, logits, fakes, real)), grads = jax.value_and_grad(
        net_loss, has_aux=True)(state.params)
    updates, new_opt = tx.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)

    def disc_loss(dparams):
      d_ir = lambda x: disc.apply({"params": dparams["disc_ir"]}, x)
      d_rgb = lambda x: disc.apply({"params": dparams["disc_rgb"]}, x)
      return (losses.lsgan_discriminator_loss(d_ir(real[1]), d_ir(fakes[0]))
              + losses.lsgan_discriminator_loss(d_rgb(real[0]), d_rgb(fakes[1])))

    loss_d, grads_d = jax.value_and_grad(disc_loss)(dp)
    updates_d, new_opt_d = tx_d.update(grads_d, state.disc_opt_state, dp)
    new_dp = optax.apply_updates(dp, updates_d)

    grad_norm, grad_norm_d = optax.global_norm(grads), optax.global_norm(grads_d)
    new_state = state.replace(step=state.step + 1, params=new_params, batch_stats=new_bs,
                              opt_state=new_opt, disc_params=new_dp, disc_opt_state=new_opt_d)
    new_state, flags = loop.gate(state, new_state, {**terms, "disc": loss_d, "grad_norm": grad_norm,
                                                    "disc_grad_norm": grad_norm_d},
                                 {"net": new_params, "disc": new_dp})
    accuracy = jnp.mean((jnp.argmax(logits, -1) == batch["pid"]).astype(jnp.float32))
    metrics = dict(terms, **diag, disc=loss_d, accuracy=accuracy, grad_norm=grad_norm,
                   disc_grad_norm=grad_norm_d, lr=schedule(state.step), **flags)
    return new_state, metrics

  return step_fn


def build_step(model, config: ml_collections.ConfigDict, steps_per_epoch: int, mesh):
  """(tx, tx_d, jitted step), compiled once per process for this model/config/mesh."""
  key = ("d2rl", model, loop.config_key(config.reid, ignore=("num_steps", "epochs")),
         json.dumps(config.d2rl.to_dict(), sort_keys=True), int(config.cyclegan.ndf),
         int(config.cyclegan.n_layers_d), int(steps_per_epoch), mesh, jax.default_backend())

  def build():
    tx, tx_d, schedule = make_optimizers(config, steps_per_epoch)
    step = make_train_step(model, _discriminator(config), tx, tx_d, schedule, config)
    return tx, tx_d, loop.jit_step(step, mesh, batch_axis=1,
                                   compiler_options=reid.compiler_options(config.reid),
                                   scheduler=reid.CPU_SCHEDULER)

  return loop.cached(key, build)


def _create_state(model, disc, tx, tx_d, image_shape, rng) -> D2RLState:
  from ce2l_jax.models import init_reid_variables
  h, w = int(image_shape[0]), int(image_shape[1])
  k_net, k_ir, k_rgb, k_state = jax.random.split(rng, 4)
  variables = dict(init_reid_variables(model, k_net, h, w))
  x = jnp.zeros((1, h, w, 3), jnp.float32)
  dp = {"disc_ir": disc.init(k_ir, x)["params"], "disc_rgb": disc.init(k_rgb, x)["params"]}
  params = variables["params"]
  return D2RLState(step=jnp.zeros((), jnp.int32), params=params,
                   batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
                   disc_params=dp, disc_opt_state=tx_d.init(dp),
                   rng=jnp.asarray(k_state, jnp.uint32))


def abstract_state(model, disc, tx, tx_d, image_shape, mesh) -> D2RLState:
  return loop.abstract_state(
      lambda: _create_state(model, disc, tx, tx_d, image_shape, jax.random.PRNGKey(0)), mesh)


def _with_cyclegan(state: D2RLState, config: ml_collections.ConfigDict, cyclegan_dir: str,
                   tx, tx_d, mesh) -> D2RLState:
  """The state with the CycleGAN stage's generators and discriminators (fresh optimiser states)."""
  from ce2l_jax.trainers import cyclegan
  if not os.path.isdir(cyclegan_dir):
    raise FileNotFoundError(
        f"d2rl.from_cyclegan but there is no CycleGAN checkpoint in {cyclegan_dir}: run the "
        "cyclegan stage first (--stages=cyclegan,reid,evaluate) or set d2rl.from_cyclegan=false")
  gan, step = cyclegan.restore_params(config.cyclegan, cyclegan_dir, mesh)
  gan = jax.device_get(gan)
  params = dict(jax.device_get(state.params))
  for role in GEN_ROLES:
    params[role] = gan[role]
  dp = {role: gan[role] for role in DISC_ROLES}
  logging.info("D²RL: generators and discriminators from the CycleGAN checkpoint of step %d", step)
  return state.replace(params=params, opt_state=tx.init(params), disc_params=dp,
                       disc_opt_state=tx_d.init(dp))


def train(config: ml_collections.ConfigDict, workdir: str, train_iter: Iterator[dict],
          num_classes: int, mesh=None, *, steps_per_epoch: int | None = None,
          eval_fn: Callable[[dict, int], Mapping[str, float]] | None = None, model=None,
          writer: MetricWriter | None = None) -> D2RLState:
  """`trainers/reid.train`'s contract for D²RL: trains up to the step count, returns the state.

  `workdir` is the stage folder (`<run>/reid`); the CycleGAN checkpoint is read from the run
  folder above it (`<run>/cyclegan/checkpoints`) when `d2rl.from_cyclegan`.
  """
  check_config(config)
  cfg = config.reid
  mesh = mesh or parallel.make_mesh((config.get("mesh") or {}).get("num_devices") or None)
  model = model or create_model(cfg, num_classes)
  total, spe = reid.num_steps(cfg, steps_per_epoch or getattr(train_iter, "steps_per_epoch", None))
  tx, tx_d, step_fn = build_step(model, config, spe, mesh)
  disc = _discriminator(config)
  first = next(train_iter)
  image_shape = tuple(np.shape(first["image"])[2:])
  cyclegan_dir = wd.checkpoint_dir(os.path.dirname(os.path.abspath(workdir)), "cyclegan")

  def init(path: str | None) -> D2RLState:
    if path:
      raise ValueError("config.init (pretrained weights) is not supported by the D²RL trainer; "
                       "use config.resume or leave it empty")
    state = _create_state(model, disc, tx, tx_d, image_shape,
                          jax.random.PRNGKey(int(config.get("seed", 0) or 0)))
    if config.d2rl.from_cyclegan:
      state = _with_cyclegan(state, config, cyclegan_dir, tx, tx_d, mesh)
    return parallel.replicate(state, mesh)

  own_writer = writer is None
  writer = writer or MetricWriter(workdir, STAGE)
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=cfg.max_to_keep)
  try:
    start = loop.restore_or_init(ckpt, abstract_state(model, disc, tx, tx_d, image_shape, mesh), init,
                                 train_iter, resume=config.get("resume") or None, init_path=None,
                                 resume_dir=reid.resume_dir)
    logging.info("D²RL: %s, step %d of %d", start.kind, int(start.state.step), total)
    evaluate = None
    if eval_fn is not None:
      evaluate = lambda state, step: {f"eval/{k}": v for k, v in eval_fn(state.variables, step).items()}
    out = loop.run(cfg, start.state, step_fn, train_iter, num_steps=total, ckpt=ckpt, writer=writer,
                   name=STAGE, prepare=lambda b: reid.prepare_batch(b, mesh),
                   first_batch=None if start.data_restored else first, eval_fn=evaluate,
                   show=("loss", "accuracy", "disc"))
  finally:
    ckpt.close()
    writer.close() if own_writer else writer.flush()
  return out.state


def restore_variables(config: ml_collections.ConfigDict, workdir: str, mesh=None,
                      step: int | None = None):
  """(model, variables, step) of the D²RL checkpoint in the stage folder `workdir`."""
  meta_path = os.path.join(workdir, MODEL_INFO)
  if not os.path.exists(meta_path):
    raise FileNotFoundError(f"no re-ID stage in {workdir} ({MODEL_INFO} is missing): run the reid stage")
  with open(meta_path) as f:
    meta = json.load(f)
  mesh = mesh or parallel.make_mesh((config.get("mesh") or {}).get("num_devices") or None)
  model = create_model(config.reid, int(meta["num_classes"]))
  tx, tx_d, _ = make_optimizers(config, 1)
  target = abstract_state(model, _discriminator(config), tx, tx_d, (*meta["image_size"], 3), mesh)
  state, step = loop.restore_latest(os.path.join(workdir, "checkpoints"), target, step, "D²RL")
  return model, state.variables, step
