"""Stage 1 of CE²L: a CycleGAN that converts visible (RGB) ↔ infrared (IR) person images.

Objective (Zhu et al. 2017 with the least-squares GAN loss; names as logged):
  G = gen_rgb2ir, F = gen_ir2rgb, D_IR = disc_ir, D_RGB = disc_rgb, x ∈ RGB, y ∈ IR.
  generators   L_G = g_gan_rgb2ir  E[(D_IR(G(x)) − 1)²]
                   + g_gan_ir2rgb  E[(D_RGB(F(y)) − 1)²]
                   + cycle_rgb     λ_cycle ‖F(G(x)) − x‖₁
                   + cycle_ir      λ_cycle ‖G(F(y)) − y‖₁
                   + idt_rgb       λ_cycle λ_identity ‖F(x) − x‖₁
                   + idt_ir        λ_cycle λ_identity ‖G(y) − y‖₁
  discriminators   d_ir  = ½ (E[(D_IR(y) − 1)²] + E[D_IR(pool_ir(G(x)))²])
                   d_rgb = ½ (E[(D_RGB(x) − 1)²] + E[D_RGB(pool_rgb(F(y)))²])
λ_cycle = 10, λ_identity = 0.5, Adam(2e-4, β1 = 0.5), lr constant until `decay_start`, then
linear to zero at `num_steps`; history pools of 50 generated images per direction (Shrivastava
et al. 2017). CE²L's option of converting per camera pair is `rgb_cameras` / `ir_cameras`,
handed to the data stream.

One iteration (`train_step`, one jitted call, as the reference's `optimize_parameters`):
  1. forward: fake_ir = G(x), rec_rgb = F(fake_ir), fake_rgb = F(y), rec_ir = G(fake_rgb)
     (+ identity images G(y), F(x));
  2. generators: gradient of L_G w.r.t. G and F only, Adam step;
  3. pools: the fakes of step 1 (no gradient) go through the history pools;
  4. discriminators: gradient of d_ir + d_rgb w.r.t. D_IR and D_RGB, Adam step.

Data parallel: `jax.jit` over the `data` mesh, batch sharded on axis 0, state replicated;
instance norm is per image, so the sharded step equals the single-device one.

This module holds the maths, the optimisers and the state; `trainers/loop.py` runs it (jit,
non-finite gate and policy, checkpoints with the input position, resume, logs). Every number is
in the `cyclegan` section of configs/base.py. `train(cfg, workdir, train_iter, ...)` trains on
any iterator of `{"rgb": (N, H, W, 3) uint8, "ir": ...}` batches; stages.py hands it the run's.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator, NamedTuple

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from ce2l_jax import checkpoint, parallel, viz
from ce2l_jax.data.augment import to_unit_range
from ce2l_jax.losses import l1_loss, lsgan_discriminator_loss, lsgan_generator_loss
from ce2l_jax.metric_writer import MetricWriter
from ce2l_jax.models import cyclegan as cg
from ce2l_jax.trainers import loop

STAGE = "cyclegan"
GEN_ROLES = ("gen_rgb2ir", "gen_ir2rgb")
DISC_ROLES = ("disc_rgb", "disc_ir")
# Logged every step and checked by the non-finite gate (with the updated parameters).
LOSS_NAMES = ("g_gan_rgb2ir", "g_gan_ir2rgb", "cycle_rgb", "cycle_ir", "idt_rgb", "idt_ir",
              "g_total", "d_rgb", "d_ir", "d_rgb_real", "d_rgb_fake", "d_ir_real", "d_ir_fake",
              "g_grad_norm", "d_grad_norm")


# --------------------------------------------------------------------------------------------
# History pool (util/image_pool.py, made functional)
# --------------------------------------------------------------------------------------------


@flax.struct.dataclass
class ImagePool:
  """`images` (pool_size, H, W, 3) float32 and `num` (how many slots are filled)."""
  images: jax.Array
  num: jax.Array


def pool_init(pool_size: int, image_size: tuple[int, int]) -> ImagePool:
  return ImagePool(jnp.zeros((pool_size, *image_size, 3), jnp.float32), jnp.zeros((), jnp.int32))


def pool_query(pool: ImagePool, images: jax.Array, key: jax.Array) -> tuple[ImagePool, jax.Array]:
  """Returns (new pool, images for the discriminator), image by image in batch order.

  Until the pool is full each new image is stored and returned. Then, with probability ½, a
  uniformly chosen stored image is returned and replaced by the new one; otherwise the new
  image is returned and the pool is unchanged. `pool_size == 0` passes `images` through.
  """
  return pool_apply(pool, images, jax.random.uniform(key, (images.shape[0], 2)))


def pool_apply(pool: ImagePool, images: jax.Array, draws: jax.Array) -> tuple[ImagePool, jax.Array]:
  """`pool_query` with its random numbers given: `draws` (N, 2) uniform in [0, 1): column 0
  decides the swap (> ½), column 1 picks the slot (⌊u·pool_size⌋).

  All draws are made up front in one call: every random-number call inside a jitted step is
  compiled separately by XLA:CPU (seconds each on the project's shared machines).
  """
  size = pool.images.shape[0]
  if size == 0:
    return pool, images
  swap_draw = draws[:, 0] > 0.5
  slot_draw = jnp.minimum((draws[:, 1] * size).astype(jnp.int32), size - 1)

  def one(carry, xs):
    buf, num = carry
    image, swap, slot = xs
    full = num >= size
    swap = full & swap
    idx = jnp.where(full, slot, num)
    old = buf[idx]
    buf = buf.at[idx].set(jnp.where(full & ~swap, old, image))
    return (buf, jnp.minimum(num + 1, size)), jnp.where(swap, old, image)

  (buf, num), out = jax.lax.scan(one, (pool.images, pool.num), (images.astype(pool.images.dtype), swap_draw, slot_draw))
  return ImagePool(buf, num), out.astype(images.dtype)


# --------------------------------------------------------------------------------------------
# Train state and step
# --------------------------------------------------------------------------------------------


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: dict[str, Any]      # {gen_rgb2ir, gen_ir2rgb, disc_rgb, disc_ir}
  opt_state_g: Any
  opt_state_d: Any
  pool_rgb: ImagePool         # generated RGB images F(y), fed to disc_rgb
  pool_ir: ImagePool          # generated IR images G(x), fed to disc_ir
  rng: jax.Array              # raw uint32 key data; step keys are fold_in(rng, step)

  def gen_params(self):
    return {r: self.params[r] for r in GEN_ROLES}

  def disc_params(self):
    return {r: self.params[r] for r in DISC_ROLES}


def lr_schedule(cfg) -> optax.Schedule:
  """lr until `decay_start`, then linearly to 0 at `num_steps` (the reference's 'linear' policy)."""
  return optax.linear_schedule(cfg.lr, 0.0, max(int(cfg.num_steps) - int(cfg.decay_start), 1),
                               transition_begin=int(cfg.decay_start))


def make_optimizers(cfg) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
  """One Adam for both generators, one for both discriminators (as the reference)."""
  make = lambda: optax.adam(lr_schedule(cfg), b1=cfg.beta1, b2=cfg.beta2)
  return make(), make()


def check_config(cfg) -> None:
  h, w = (int(s) for s in cfg.image_size)
  if h % 4 or w % 4:
    raise ValueError(f"cyclegan.image_size={tuple(cfg.image_size)} must be multiples of 4 (two stride-2 stages)")
  cg.patch_shape((h, w), cfg.n_layers_d)
  if not 0 <= cfg.decay_start <= cfg.num_steps:
    raise ValueError(f"cyclegan.decay_start={cfg.decay_start} must lie in [0, num_steps={cfg.num_steps}]")
  if cfg.get("nan_policy", "stop") not in loop.NAN_POLICIES:
    raise ValueError(f"cyclegan.nan_policy={cfg.nan_policy!r}: stop or skip")


def create_train_state(cfg, params: dict[str, Any], tx_g, tx_d) -> TrainState:
  """A fresh state around `params` (`{role: params}`, e.g. `cg.init_params`); jittable."""
  image_size = tuple(int(s) for s in cfg.image_size)
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state_g=tx_g.init({r: params[r] for r in GEN_ROLES}),
      opt_state_d=tx_d.init({r: params[r] for r in DISC_ROLES}),
      pool_rgb=pool_init(cfg.pool_size, image_size),
      pool_ir=pool_init(cfg.pool_size, image_size),
      rng=jax.random.key_data(jax.random.fold_in(jax.random.key(cfg.seed), 1)),
  )


def abstract_train_state(cfg, models: dict, tx_g, tx_d, mesh: Mesh) -> TrainState:
  """The state's shapes with replicated shardings: the restore target of a checkpoint."""
  shapes = cg.param_shapes(models, tuple(int(s) for s in cfg.image_size))
  return loop.abstract_state(lambda p: create_train_state(cfg, p, tx_g, tx_d), mesh, shapes)


def init_train_state(cfg, models: dict, tx_g, tx_d, mesh: Mesh) -> TrainState:
  """A fresh state from `cfg.seed`, replicated over `mesh`."""
  params = cg.init_params(models, cfg.seed, tuple(int(s) for s in cfg.image_size), cfg.init_std)
  return jax.jit(lambda p: create_train_state(cfg, p, tx_g, tx_d),
                 out_shardings=parallel.replicated(mesh))(params)


def _paired(fn, a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(fn(a), fn(b)) from one call of `fn` on a batch that interleaves a and b example by example.

  Interleaving (not concatenating) keeps each device's examples on that device when the batch
  axis is sharded, so the merged call needs no communication. Exact for per-example networks.
  """
  n = a.shape[0]
  out = fn(jnp.stack([a, b], axis=1).reshape(2 * n, *a.shape[1:]))
  out = out.reshape(n, 2, *out.shape[1:])
  return out[:, 0], out[:, 1]


def make_train_step(cfg, models: dict, tx_g, tx_d):
  """The un-jitted `train_step(state, batch) -> (state, metrics)`; see the module docstring."""
  G, F = models["gen_rgb2ir"], models["gen_ir2rgb"]
  D_rgb, D_ir = models["disc_rgb"], models["disc_ir"]
  lam_cycle, lam_idt = float(cfg.lambda_cycle), float(cfg.lambda_identity)

  def generator_loss(g_params, d_params, x, y):
    g = lambda im: G.apply({"params": g_params["gen_rgb2ir"]}, im)
    f = lambda im: F.apply({"params": g_params["gen_ir2rgb"]}, im)
    # 1. forward. G(x) and G(y) (identity) share one call; instance norm is per image.
    if lam_idt > 0:
      fake_ir, idt_ir = _paired(g, x, y)
      fake_rgb, idt_rgb = _paired(f, y, x)
    else:
      fake_ir, fake_rgb = g(x), f(y)
    rec_rgb, rec_ir = f(fake_ir), g(fake_rgb)
    terms = {
        "g_gan_rgb2ir": lsgan_generator_loss(D_ir.apply({"params": d_params["disc_ir"]}, fake_ir)),
        "g_gan_ir2rgb": lsgan_generator_loss(D_rgb.apply({"params": d_params["disc_rgb"]}, fake_rgb)),
        "cycle_rgb": lam_cycle * l1_loss(rec_rgb, x),
        "cycle_ir": lam_cycle * l1_loss(rec_ir, y),
    }
    if lam_idt > 0:
      terms["idt_rgb"] = lam_cycle * lam_idt * l1_loss(idt_rgb, x)
      terms["idt_ir"] = lam_cycle * lam_idt * l1_loss(idt_ir, y)
    else:
      terms["idt_rgb"] = terms["idt_ir"] = jnp.zeros(())
    total = sum(terms.values())
    return total, (terms, fake_rgb, fake_ir)

  def discriminator_loss(d_params, x, y, pooled_rgb, pooled_ir):
    d_rgb_real = D_rgb.apply({"params": d_params["disc_rgb"]}, x)
    d_rgb_fake = D_rgb.apply({"params": d_params["disc_rgb"]}, pooled_rgb)
    d_ir_real = D_ir.apply({"params": d_params["disc_ir"]}, y)
    d_ir_fake = D_ir.apply({"params": d_params["disc_ir"]}, pooled_ir)
    terms = {
        "d_rgb": lsgan_discriminator_loss(d_rgb_real, d_rgb_fake),
        "d_ir": lsgan_discriminator_loss(d_ir_real, d_ir_fake),
        "d_rgb_real": jnp.mean(d_rgb_real), "d_rgb_fake": jnp.mean(d_rgb_fake),
        "d_ir_real": jnp.mean(d_ir_real), "d_ir_fake": jnp.mean(d_ir_fake),
    }
    return terms["d_rgb"] + terms["d_ir"], terms

  def train_step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array]]:
    x, y = to_unit_range(batch["rgb"]), to_unit_range(batch["ir"])
    g_params, d_params = state.gen_params(), state.disc_params()
    # 2. generators (discriminators fixed)
    (g_total, (g_terms, fake_rgb, fake_ir)), g_grads = jax.value_and_grad(generator_loss, has_aux=True)(
        g_params, d_params, x, y)
    g_updates, opt_state_g = tx_g.update(g_grads, state.opt_state_g, g_params)
    g_params = optax.apply_updates(g_params, g_updates)
    # 3. history pools on the step-1 fakes
    draws = jax.random.uniform(jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step),
                               (2, x.shape[0], 2))
    pool_rgb, pooled_rgb = pool_apply(state.pool_rgb, jax.lax.stop_gradient(fake_rgb), draws[0])
    pool_ir, pooled_ir = pool_apply(state.pool_ir, jax.lax.stop_gradient(fake_ir), draws[1])
    # 4. discriminators
    (_, d_terms), d_grads = jax.value_and_grad(discriminator_loss, has_aux=True)(
        d_params, x, y, pooled_rgb, pooled_ir)
    d_updates, opt_state_d = tx_d.update(d_grads, state.opt_state_d, d_params)
    d_params = optax.apply_updates(d_params, d_updates)
    metrics = {**g_terms, "g_total": g_total, **d_terms, "g_grad_norm": optax.global_norm(g_grads),
               "d_grad_norm": optax.global_norm(d_grads), "lr": lr_schedule(cfg)(state.step)}
    new_state = state.replace(step=state.step + 1, params={**g_params, **d_params},
                              opt_state_g=opt_state_g, opt_state_d=opt_state_d,
                              pool_rgb=pool_rgb, pool_ir=pool_ir)
    # A non-finite loss or updated parameter never reaches the state (a huge lr can overflow the
    # parameters while every loss of this step is finite): the whole update is dropped.
    new_state, flags = loop.gate(state, new_state, {k: metrics[k] for k in LOSS_NAMES},
                                 new_state.params)
    return new_state, {**metrics, **flags}

  return train_step


def make_translate_fn(models: dict):
  """Un-jitted `translate(params, rgb_uint8, ir_uint8) -> dict` of [-1, 1] images and cycle L1s."""
  G, F = models["gen_rgb2ir"], models["gen_ir2rgb"]

  def translate(params, rgb, ir):
    x, y = to_unit_range(rgb), to_unit_range(ir)
    fake_ir = G.apply({"params": params["gen_rgb2ir"]}, x)
    fake_rgb = F.apply({"params": params["gen_ir2rgb"]}, y)
    rec_rgb = F.apply({"params": params["gen_ir2rgb"]}, fake_ir)
    rec_ir = G.apply({"params": params["gen_rgb2ir"]}, fake_rgb)
    return {"real_rgb": x, "fake_ir": fake_ir, "rec_rgb": rec_rgb,
            "real_ir": y, "fake_rgb": fake_rgb, "rec_ir": rec_ir,
            "cycle_l1_rgb": jnp.mean(jnp.abs(rec_rgb - x), axis=(1, 2, 3)),
            "cycle_l1_ir": jnp.mean(jnp.abs(rec_ir - y), axis=(1, 2, 3))}

  return translate


class StepFunctions(NamedTuple):
  """What one CycleGAN config compiles (once per config and mesh, `loop.cached`)."""
  models: dict
  tx_g: optax.GradientTransformation
  tx_d: optax.GradientTransformation
  train_step: Callable    # jitted (state, batch) -> (state, metrics); state donated
  translate: Callable     # jitted make_translate_fn(models)


# XLA:CPU's scheduler for the CycleGAN step: "memory" saves it nothing and slows the demo's
# networks by 19–28 % (loop.CPU_SCHEDULERS).
CPU_SCHEDULER = "default"

# Fields of the section that never change the compiled step (besides loop.LOOP_FIELDS).
_NOT_IN_STEP = ("enabled", "seed", "init_std", "batch_size", "load_size", "flip", "rgb_cameras",
                "ir_cameras", "num_samples", "heldout_split", "num_heldout", "classifier_images",
                "classifier_steps")


def step_functions(cfg, mesh: Mesh) -> StepFunctions:
  """The models, optimisers, jitted train step and jitted translate of `cfg` on `mesh`; later
  `train` calls in the same process (a resume, a test) reuse the compiled executables."""

  def build():
    models = build_models_checked(cfg)
    tx_g, tx_d = make_optimizers(cfg)
    options = loop.fast_compile_options(cfg)
    return StepFunctions(models, tx_g, tx_d,
                         loop.jit_step(make_train_step(cfg, models, tx_g, tx_d), mesh,
                                       compiler_options=options, scheduler=CPU_SCHEDULER),
                         jax.jit(make_translate_fn(models), compiler_options=options))

  return loop.cached((STAGE, loop.config_key(cfg, ignore=_NOT_IN_STEP), mesh), build)


# --------------------------------------------------------------------------------------------
# Training and the final weights
# --------------------------------------------------------------------------------------------


def restore_params(cfg, ckpt_dir: str, mesh: Mesh | None = None, step: int | None = None) -> tuple[dict, int]:
  """(`{role: params}`, step) from a CycleGAN checkpoint folder (the latest step by default)."""
  mesh = mesh or parallel.make_mesh()
  models = build_models_checked(cfg)
  tx_g, tx_d = make_optimizers(cfg)
  try:
    state, step = loop.restore_latest(ckpt_dir, abstract_train_state(cfg, models, tx_g, tx_d, mesh), step)
  except FileNotFoundError:
    raise FileNotFoundError(f"no CycleGAN checkpoint in {ckpt_dir}; run the cyclegan stage first") from None
  return state.params, step


def build_models_checked(cfg) -> dict:
  check_config(cfg)
  return cg.build_models(cfg)


def save_samples(translate_fn, params, eval_batch, path: str, writer: MetricWriter | None, step: int) -> dict:
  """The sample grid of `eval_batch` at `path` (and TensorBoard); returns its cycle L1s."""
  out = jax.device_get(translate_fn(params, eval_batch["rgb"], eval_batch["ir"]))
  rows = viz.cyclegan_sample_rows(out["real_rgb"], out["fake_ir"], out["rec_rgb"],
                                  out["real_ir"], out["fake_rgb"], out["rec_ir"])
  grid = viz.save_grid(rows, path, col_labels=viz.CYCLEGAN_COLUMNS)
  if writer is not None:
    writer.write_image(step, "samples", grid)
  return {"eval_cycle_l1_rgb": float(np.mean(out["cycle_l1_rgb"])),
          "eval_cycle_l1_ir": float(np.mean(out["cycle_l1_ir"]))}


def train(cfg, workdir: str, train_iter: Iterator[dict[str, np.ndarray]], *, mesh: Mesh | None = None,
          eval_batch: dict[str, np.ndarray] | None = None,
          writer: MetricWriter | None = None) -> tuple[TrainState, dict[str, Any]]:
  """Trains from the latest checkpoint under `workdir` (or from scratch) up to `cfg.num_steps`.

  `workdir` is the stage folder: `checkpoints/` (state + iterator position) and `samples/`
  (grids every `eval_every` steps) go there; metrics to `writer` (default
  `<workdir>/metrics.jsonl`). `train_iter` yields this process's part of each batch,
  `{"rgb", "ir"}` uint8 at `cfg.image_size`; its position is saved with every checkpoint (it
  needs grain's get_state/set_state). `eval_batch` (the same keys, a few images) feeds the
  sample grid; default: the first training batch seen. Returns the final state and a dict of
  the last logged metrics, the eval numbers, `step` and `train_step_compiles`. A non-finite
  loss or update: `loop.NonFiniteError` ('stop') or a skipped step ('skip').
  """
  mesh = mesh or parallel.make_mesh()
  fns = step_functions(cfg, mesh)
  parallel.check_divisible(int(cfg.batch_size), mesh, "cyclegan.batch_size")
  want = (int(cfg.batch_size) // jax.process_count(), *(int(s) for s in cfg.image_size), 3)
  samples = {"batch": eval_batch}

  def prepare(batch):
    for k in ("rgb", "ir"):
      if tuple(batch[k].shape) != want or batch[k].dtype != np.uint8:
        raise ValueError(f"cyclegan batch '{k}' is {batch[k].dtype}{tuple(batch[k].shape)}, expected "
                         f"uint8{want} (cyclegan.batch_size / process count, cyclegan.image_size)")
    if samples["batch"] is None:
      samples["batch"] = {k: np.asarray(batch[k][:int(cfg.num_samples)]) for k in ("rgb", "ir")}
    return parallel.shard_batch({"rgb": batch["rgb"], "ir": batch["ir"]}, mesh)

  def evaluate(state, step):
    return save_samples(fns.translate, state.params, samples["batch"],
                        os.path.join(workdir, "samples", f"step_{step:07d}.png"), writer, step)

  own_writer = writer is None
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=cfg.max_to_keep)
  try:
    start = loop.restore_or_init(ckpt, abstract_train_state(cfg, fns.models, fns.tx_g, fns.tx_d, mesh),
                                 lambda _: init_train_state(cfg, fns.models, fns.tx_g, fns.tx_d, mesh),
                                 train_iter)
    writer = writer or MetricWriter(workdir, STAGE)
    out = loop.run(cfg, start.state, fns.train_step, train_iter, num_steps=int(cfg.num_steps),
                   ckpt=ckpt, writer=writer, name=STAGE, prepare=prepare, eval_fn=evaluate,
                   show=("g_total", "d_rgb", "d_ir"))
  finally:
    ckpt.close()
    if writer is not None:
      writer.close() if own_writer else writer.flush()
  result = {**out.logged, **out.evaluated, "step": int(out.state.step),
            "train_step_compiles": fns.train_step._cache_size()}
  return out.state, result


# --------------------------------------------------------------------------------------------
# The run's data
# --------------------------------------------------------------------------------------------


def build_train_iterator(config: ml_collections.ConfigDict, mesh: Mesh):
  """The unpaired `{"rgb", "ir"}` stream of the run's training split for the CycleGAN.

  Reads `config.data.name` / `config.data.data_dir` (TFDS, split `config.data.train_split`,
  default "train") through `ce2l_jax.data.pipeline.build_unpaired_iterator`, with
  `config.input.unpaired` (resize, crop, flip; defaults when `config.input` is absent) overridden
  by this section: batch size, images resized to `cyclegan.load_size` (default `image_size`)
  and randomly cropped to `image_size` when larger, cameras `rgb_cameras` / `ir_cameras`.
  """
  from ce2l_jax.data import pipeline, sources
  cfg = config.cyclegan
  input_cfg = (config.input if "input" in config else pipeline.default_input_config()).copy_and_resolve_references()
  image_size = tuple(int(s) for s in cfg.image_size)
  load_size = tuple(int(s) for s in (cfg.get("load_size") or image_size))
  with input_cfg.unlocked():
    input_cfg.num_steps = None
    u = input_cfg.unpaired
    u.batch_size = int(cfg.batch_size)
    u.resize = load_size
    u.crop = image_size if load_size != image_size else None
    u.flip = bool(cfg.get("flip", True))
    u.visible_cams = tuple(cfg.rgb_cameras) or None
    u.infrared_cams = tuple(cfg.ir_cameras) or None
  data = config.data
  src = sources.TfdsSource(data.name, data.get("train_split", "train"), data.get("data_dir"))
  visible, infrared = sources.split_by_modality(src)
  return pipeline.build_unpaired_iterator(visible, infrared, input_cfg, seed=int(cfg.seed), num_devices=mesh)
