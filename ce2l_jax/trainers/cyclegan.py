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

`train(cfg, workdir, train_iter, ...)` is the testable loop over any iterator of
`{"rgb": (N, H, W, 3) uint8, "ir": ...}` batches with grain's get_state/set_state;
`train_and_evaluate(config, workdir)` is the stage `run.py` calls with the whole run config.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any, Iterator

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

STAGE = "cyclegan"
GEN_ROLES = ("gen_rgb2ir", "gen_ir2rgb")
DISC_ROLES = ("disc_rgb", "disc_ir")
# Logged every step; a non-finite value stops training, naming the bad terms in this order.
# The gradient norms guard the checkpoints: finite losses with finite gradients give finite
# parameters, so a state is only saved after its own step has been checked.
LOSS_NAMES = ("g_gan_rgb2ir", "g_gan_ir2rgb", "cycle_rgb", "cycle_ir", "idt_rgb", "idt_ir",
              "g_total", "d_rgb", "d_ir", "d_rgb_real", "d_rgb_fake", "d_ir_real", "d_ir_fake",
              "g_grad_norm", "d_grad_norm")


def default_config() -> ml_collections.ConfigDict:
  """The `cyclegan` section: the reference CycleGAN at 256×128 (re-ID aspect ratio)."""
  c = ml_collections.ConfigDict()
  c.enabled = True
  c.image_size = (256, 128)   # (H, W), multiples of 4; the generator's working size
  c.ngf = 64
  c.ndf = 64
  c.n_blocks = 9              # 9 at 256 px, 6 at 128 px (the reference's resnet_9/6blocks)
  c.n_layers_d = 3            # 3 → 70×70 PatchGAN
  c.init_std = 0.02           # N(0, 0.02) weights, zero biases
  c.batch_size = 1            # global batch per modality (reference: 1); multiple of the mesh size
  c.num_steps = 200_000
  c.decay_start = 100_000     # lr constant before, linear to zero at num_steps
  c.lr = 2e-4
  c.beta1 = 0.5
  c.beta2 = 0.999
  c.lambda_cycle = 10.0
  c.lambda_identity = 0.5     # × lambda_cycle
  c.pool_size = 50            # generated images kept per direction; 0 = no pool
  c.load_size = ()            # () = image_size; larger (H, W) = resize then random crop (reference: 286 → 256)
  c.flip = True
  c.rgb_cameras = ()          # () = every visible camera; e.g. (1,) with ir_cameras=(3,) for a pair
  c.ir_cameras = ()
  c.log_every = 100
  c.eval_every = 5000         # sample grid + held-out cycle L1
  c.checkpoint_every = 5000
  c.max_to_keep = 3
  c.nan_policy = "stop"       # a NaN/Inf loss or updated parameter: stop (name step, term) | skip
  c.num_samples = 8           # rows of the sample grid
  c.heldout_split = "test"    # held-out images for the end-of-stage quality numbers
  c.num_heldout = 256         # per modality
  c.classifier_images = 2000  # real training images per modality for the modality classifier
  c.classifier_steps = 300
  c.seed = 0
  return c


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

  (buf, num), out = jax.lax.scan(one, (pool.images, pool.num), (images.astype(jnp.float32), swap_draw, slot_draw))
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
  if cfg.get("nan_policy", "stop") not in ("stop", "skip"):
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
  repl = parallel.replicated(mesh)
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl),
                      jax.eval_shape(lambda p: create_train_state(cfg, p, tx_g, tx_d), shapes))


def init_train_state(cfg, models: dict, tx_g, tx_d, mesh: Mesh) -> TrainState:
  """A fresh state from `cfg.seed`, replicated over `mesh`."""
  params = cg.init_params(models, cfg.seed, tuple(int(s) for s in cfg.image_size), cfg.init_std)
  return jax.jit(lambda p: create_train_state(cfg, p, tx_g, tx_d),
                 out_shardings=parallel.replicated(mesh))(params)


def from_unit_range(images: jax.Array) -> jax.Array:
  """float [-1, 1] → uint8 [0, 255], rounded."""
  return jnp.clip(jnp.round((images + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


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
    # A non-finite loss or updated parameter never reaches the state (a huge lr can overflow the
    # parameters while every loss of this step is finite): the whole update is dropped.
    params = {**g_params, **d_params}
    params_ok = jnp.all(jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(params)]))
    ok = params_ok & jnp.all(jnp.stack([jnp.isfinite(metrics[k]) for k in LOSS_NAMES]))
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
    metrics["params_finite"] = params_ok.astype(jnp.float32)
    metrics["skipped"] = (~ok).astype(jnp.float32)
    new_state = state.replace(step=state.step + 1, params=keep(params, state.params),
                              opt_state_g=keep(opt_state_g, state.opt_state_g),
                              opt_state_d=keep(opt_state_d, state.opt_state_d),
                              pool_rgb=keep(pool_rgb, state.pool_rgb), pool_ir=keep(pool_ir, state.pool_ir))
    return new_state, metrics

  return train_step


def jit_train_step(train_step, mesh: Mesh):
  """`jax.jit` with the state replicated and the batch sharded over `data`; state donated."""
  repl, data = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  return jax.jit(train_step, in_shardings=(repl, data), out_shardings=(repl, repl), donate_argnums=0)


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


# Fields that change the compiled step; the others (logging, seeds, ...) do not recompile it.
_STEP_FIELDS = ("image_size", "ngf", "ndf", "n_blocks", "n_layers_d", "lr", "beta1", "beta2",
                "num_steps", "decay_start", "lambda_cycle", "lambda_identity", "pool_size")


@functools.lru_cache(maxsize=8)
def _step_functions(key: str, mesh: Mesh):
  cfg = ml_collections.ConfigDict(json.loads(key))
  models = build_models_checked(cfg)
  tx_g, tx_d = make_optimizers(cfg)
  return (models, tx_g, tx_d, jit_train_step(make_train_step(cfg, models, tx_g, tx_d), mesh),
          jax.jit(make_translate_fn(models)))


def step_functions(cfg, mesh: Mesh):
  """(models, tx_g, tx_d, jitted train_step, jitted translate), built once per config and mesh.

  Later `train` calls in the same process (a resume, a test) reuse the compiled executables.
  """
  key = {k: (list(cfg[k]) if isinstance(cfg[k], (tuple, list)) else cfg[k]) for k in _STEP_FIELDS}
  return _step_functions(json.dumps(key, sort_keys=True), mesh)


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


class NonFiniteLossError(FloatingPointError):
  """A loss became NaN/Inf; the message names the step and the term."""


def restore_params(cfg, ckpt_dir: str, mesh: Mesh | None = None, step: int | None = None) -> tuple[dict, int]:
  """(`{role: params}`, step) from a CycleGAN checkpoint folder (the latest step by default)."""
  mesh = mesh or parallel.make_mesh()
  models = build_models_checked(cfg)
  tx_g, tx_d = make_optimizers(cfg)
  ckpt = checkpoint.Checkpointer(ckpt_dir, max_to_keep=None)
  step = ckpt.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"no CycleGAN checkpoint in {ckpt_dir}; run the cyclegan stage first")
  state = ckpt.restore(abstract_train_state(cfg, models, tx_g, tx_d, mesh), step=step)
  ckpt.close()
  return state.params, int(step)


def build_models_checked(cfg) -> dict:
  check_config(cfg)
  return cg.build_models(cfg)


def _save_samples(translate_fn, params, eval_batch, path: str, writer: MetricWriter | None, step: int) -> dict:
  out = jax.device_get(translate_fn(params, eval_batch["rgb"], eval_batch["ir"]))
  rows = viz.cyclegan_sample_rows(out["real_rgb"], out["fake_ir"], out["rec_rgb"],
                                  out["real_ir"], out["fake_rgb"], out["rec_ir"])
  grid = viz.save_grid(rows, path, col_labels=viz.CYCLEGAN_COLUMNS)
  if writer is not None:
    writer.write_image(step, "samples", grid)
  return {"eval_cycle_l1_rgb": float(np.mean(out["cycle_l1_rgb"])),
          "eval_cycle_l1_ir": float(np.mean(out["cycle_l1_ir"]))}


def train(cfg, workdir: str, train_iter: Iterator[dict[str, np.ndarray]], *, mesh: Mesh | None = None,
          eval_batch: dict[str, np.ndarray] | None = None, writer: MetricWriter | None = None,
          progress: bool = True) -> tuple[TrainState, dict[str, Any]]:
  """Trains from the latest checkpoint under `workdir` (or from scratch) up to `cfg.num_steps`.

  `workdir` is the stage folder: `checkpoints/` (state + iterator position) and `samples/`
  (grids) go there. `train_iter` yields this process's part of each batch, `{"rgb", "ir"}`
  uint8 at `cfg.image_size`; its position is saved with every checkpoint (it needs grain's
  get_state/set_state). `eval_batch` (the same keys, a few images) feeds the sample grid;
  default: the first training batch seen. Returns the final state and a dict of the last
  logged metrics, the eval numbers and `train_step_compiles`.

  Raises `NonFiniteLossError` naming the step and loss term when a loss (or an updated
  parameter) turns NaN/Inf; such an update never reaches the state, and the checkpoints written
  before that step are untouched, so a rerun resumes from the last good one. With
  `cyclegan.nan_policy='skip'` the step is dropped and training goes on (`skipped` is logged).
  """
  mesh = mesh or parallel.make_mesh()
  models, tx_g, tx_d, train_step, translate = step_functions(cfg, mesh)
  parallel.check_divisible(int(cfg.batch_size), mesh, "cyclegan.batch_size")
  own_writer = writer is None
  writer = writer or MetricWriter(os.path.dirname(os.path.abspath(workdir)), STAGE)
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=cfg.max_to_keep)
  if ckpt.latest_step() is not None:
    state = ckpt.restore(abstract_train_state(cfg, models, tx_g, tx_d, mesh), data_iterator=train_iter)
    start = int(state.step)
    print(f"cyclegan: resuming from {ckpt.directory} step {start}")
  else:
    state = init_train_state(cfg, models, tx_g, tx_d, mesh)
    start = 0
  num_steps = int(cfg.num_steps)
  image_size = tuple(int(s) for s in cfg.image_size)
  local_batch = int(cfg.batch_size) // jax.process_count()

  window: dict[str, list[float]] = {}
  last_logged: dict[str, Any] = {}
  eval_numbers: dict[str, float] = {}
  pending = None   # (step, device metrics) of the newest step, fetched one step late
  t_window = time.perf_counter()
  n_window = 0

  def settle(pending):
    """Fetches one step's metrics, stops on NaN/Inf (or counts a skipped step), adds them to the
    log window."""
    step, metrics = pending
    host = {k: float(v) for k, v in jax.device_get(metrics).items()}
    bad = [f"{k}={host[k]}" for k in LOSS_NAMES if not np.isfinite(host[k])]
    if not host.get("params_finite", 1.0):
      bad.append("updated parameters=non-finite")
    if bad and cfg.get("nan_policy", "stop") == "skip":
      print(f"cyclegan: step {step} skipped (non-finite {', '.join(bad)})")
      window.setdefault("skipped", []).append(1.0)
      return
    if bad:
      raise NonFiniteLossError(
          f"cyclegan: non-finite {'loss' if '=non-finite' not in bad[0] else 'update'} at step {step}: "
          + ", ".join(bad) + f". The update was not applied; stopped without saving; the last good "
          f"checkpoint is step {ckpt.latest_step()} in {ckpt.directory} (a rerun resumes from it; "
          "consider a lower cyclegan.lr, or cyclegan.nan_policy='skip')")
    for k, v in host.items():
      window.setdefault(k, []).append(v)

  bar = None
  if progress and jax.process_index() == 0:
    from tqdm import tqdm
    bar = tqdm(total=num_steps, initial=start, desc="cyclegan", dynamic_ncols=True)
  try:
    for step in range(start, num_steps):
      batch = next(train_iter)
      if step == start:
        for k in ("rgb", "ir"):
          want = (local_batch, *image_size, 3)
          if tuple(batch[k].shape) != want or batch[k].dtype != np.uint8:
            raise ValueError(f"cyclegan batch '{k}' is {batch[k].dtype}{tuple(batch[k].shape)}, expected "
                             f"uint8{want} (cyclegan.batch_size / process count, cyclegan.image_size)")
        if eval_batch is None:
          n = int(cfg.num_samples)
          eval_batch = {k: np.asarray(batch[k][:n]) for k in ("rgb", "ir")}
      state, metrics = train_step(state, parallel.shard_batch({"rgb": batch["rgb"], "ir": batch["ir"]}, mesh))
      if pending is not None:
        settle(pending)
      pending = (step + 1, metrics)
      n_window += 1
      done = step + 1
      if bar is not None:
        bar.update(1)
      if done % cfg.log_every == 0 or done == num_steps:
        settle(pending)
        pending = None
        dt = time.perf_counter() - t_window
        last_logged = {k: float(np.mean(v)) for k, v in window.items()}
        if "skipped" in window:
          last_logged["skipped"] = float(np.sum(window["skipped"]))  # count in the window
        last_logged["steps_per_sec"] = n_window / dt
        last_logged["images_per_sec"] = n_window * 2 * int(cfg.batch_size) / dt
        writer.write_scalars(done, last_logged)
        if bar is not None and "g_total" in last_logged:
          bar.set_postfix(g=f"{last_logged['g_total']:.3f}", d_rgb=f"{last_logged['d_rgb']:.3f}",
                          d_ir=f"{last_logged['d_ir']:.3f}")
        window.clear()
        t_window, n_window = time.perf_counter(), 0
      if done % cfg.eval_every == 0 or done == num_steps:
        eval_numbers = _save_samples(translate, state.params, eval_batch,
                                     os.path.join(workdir, "samples", f"step_{done:07d}.png"), writer, done)
        writer.write_scalars(done, eval_numbers)
      if done % cfg.checkpoint_every == 0 or done == num_steps:
        if pending is not None:
          settle(pending)
          pending = None
        # Host copies: orbax would otherwise compile a slice per array shape and device.
        ckpt.save(done, jax.device_get(state), train_iter, force=True)
    if pending is not None:
      settle(pending)
  finally:
    if bar is not None:
      bar.close()
    ckpt.close()
    writer.close() if own_writer else writer.flush()
  result = {**last_logged, **eval_numbers, "step": int(state.step),
            "train_step_compiles": train_step._cache_size()}
  return state, result


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


def stage_dir(workdir: str) -> str:
  return os.path.join(workdir, STAGE)


def checkpoint_dir(workdir: str) -> str:
  """Where the CycleGAN checkpoints of a run live (`convert` reads the generators from here)."""
  return os.path.join(stage_dir(workdir), "checkpoints")


def is_done(workdir: str) -> bool:
  return os.path.exists(os.path.join(stage_dir(workdir), "DONE"))


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


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any] | None:
  """The CycleGAN stage of `run.py`: trains on the run's training split, then measures conversion.

  `config` is the whole run config: sections `data` (`name`, `data_dir`, optional
  `train_split`), `cyclegan` (`default_config()`), optional `input` and `mesh.num_devices`;
  `workdir` is the run's folder. Writes `<workdir>/cyclegan/{checkpoints,samples,DONE}` and rows
  with stage "cyclegan" to `<workdir>/metrics.jsonl`. A finished stage (DONE present) returns
  its recorded numbers without training; an interrupted one resumes from its latest checkpoint.
  At the end: the conversion-quality numbers of `ce2l_jax.conversion_quality` on
  `cyclegan.heldout_split`. Returns the final metrics (None when `cyclegan.enabled` is False).
  """
  from ce2l_jax import conversion_quality

  cfg = config.cyclegan
  if not cfg.enabled:
    return None
  done_path = os.path.join(stage_dir(workdir), "DONE")
  if os.path.exists(done_path):
    with open(done_path) as f:
      return json.load(f)
  mesh = parallel.make_mesh((config.get("mesh") or {}).get("num_devices"))
  image_size = tuple(int(s) for s in cfg.image_size)
  writer = MetricWriter(workdir, STAGE)
  train_iter = build_train_iterator(config, mesh)
  heldout = conversion_quality.load_images(config, cfg.heldout_split, int(cfg.num_heldout), image_size)
  n = int(cfg.num_samples)
  eval_batch = {"rgb": heldout["rgb"][:n], "ir": heldout["ir"][:n]}
  state, result = train(cfg, stage_dir(workdir), train_iter, mesh=mesh, eval_batch=eval_batch, writer=writer)

  real = conversion_quality.load_images(config, config.data.get("train_split", "train"),
                                        int(cfg.classifier_images), image_size)
  quality = conversion_quality.evaluate(step_functions(cfg, mesh)[4], state.params, heldout, real,
                                        steps=int(cfg.classifier_steps), seed=int(cfg.seed),
                                        batch_size=int(cfg.num_samples))  # the sample grid's compiled shape
  writer.write_scalars(int(state.step), quality)
  writer.close()
  result.update(quality)
  tmp = done_path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(result, f, indent=1)
  os.replace(tmp, done_path)
  print("cyclegan: " + ", ".join(f"{k}={v:.4g}" for k, v in quality.items()))
  return result
