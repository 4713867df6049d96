"""A helper process for tests/test_scale.py and tests/test_faults.py (not a test module).

Every mode runs real project code in a fresh process, so a test can start several of them
(multi-host), or kill one with SIGKILL at a chosen point and rerun it. JAX reads
`XLA_FLAGS` (fake CPU devices), `JAX_PLATFORMS` and, for several processes,
`JAX_COORDINATOR_ADDRESS` / `JAX_NUM_PROCESSES` / `JAX_PROCESS_ID` from the environment
(`ce2l_jax.parallel.initialize_distributed`).

  python tests/multihost_worker.py stage --data_dir D --workdir W [--out P.npz] [--kill_at_batch N]
    `run.py --config=configs/smoke.py --config.cyclegan.enabled=false --stages=reid,evaluate`
    (the re-ID and evaluate stages on synthetic_vireid/tiny in D) run in this process through
    runpy, as on a host of a multi-host job; process 0 writes the final re-ID params to P.npz.

  python tests/multihost_worker.py cyclegan_stage --data_dir D --workdir W [--out P.npz] [--float64]
    `run.py --config=configs/smoke.py --stages=cyclegan` (the CycleGAN stage on
    synthetic_vireid/tiny in D) through runpy, as on a host of a multi-host job; with
    CE2L_KILL_AFTER_CHECKPOINT=cyclegan in the environment it exits after the first checkpoint
    (ce2l_jax.stages' test hook). Process 0 writes the final checkpoint's four networks to P.npz.
    --float64: the CycleGAN's parameters, optimiser state, images, history pools and compute
    dtype in float64 (`use_float64_cyclegan`, `--config.cyclegan.compute_dtype=float64`), so
    that runs on different device/process layouts can be compared tightly
    (docs/notes/scale_and_faults.md, "Two-host CycleGAN").

  python tests/multihost_worker.py float64_check
    Exits 1 when the float64 CycleGAN train step (the smoke config) makes any float32,
    bfloat16 or float16 array (`narrow_float_arrays`); prints `float64 check: ok` otherwise.

  python tests/multihost_worker.py reid --workdir W --out P.npz [--num_steps 4]
      [--checkpoint_every 2] [--sleep_after 2 --sleep 0.5] [--kill_at_batch N]
      [--kill_in_save N]
    The re-ID trainer (`trainers.reid.train`) with the real P×K grain pipeline on a tiny
    in-memory dataset (6 identities, 32×16 images) and a one-block ResNet; process 0 writes the
    final params and batch_stats to P.npz (keys = tree paths). Each process builds only its own
    columns of every batch (the pipeline's process_index/process_count) and the trainer
    assembles the global batch with `make_array_from_process_local_data`.
    --kill_at_batch N: SIGKILL this process when the trainer asks for its N-th batch (counted
    from this process's start). --kill_in_save N: SIGKILL inside orbax's save of step N, after
    the data is written and before the temporary folder is committed (renamed).
    --sleep_after/--sleep: slow every batch after the first few, so a parent can kill the run
    from outside while it trains.

  python tests/multihost_worker.py build --manual_dir M --data_dir D --kill_at_image N
    `python -m ce2l_jax.tfds_build tfds_builders/sysu_mm01 ...` in this process, SIGKILLed
    while TFDS writes the records (at the N-th image encoded).

  python tests/multihost_worker.py convert --workdir W [--kill_at_chunk N] [--kill_in_build]
    The convert stage on a tiny in-memory source (40 records, chunks of 8) with a fixed tiny
    generator (replicated over the global mesh, as restored from a checkpoint); process p of P
    converts chunks k ≡ p (mod P). SIGKILL half-way through writing chunk N's file, or while the
    TFDS dataset is being built from the finished chunks.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

P, K, H, W = 4, 2, 32, 16
NUM_IDS = 6
PER_ID = 3


def die() -> None:
  """kill -9 of this very process: no cleanup, no finally blocks, no flush."""
  sys.stdout.flush()
  os.kill(os.getpid(), signal.SIGKILL)


def announce_ready() -> None:
  """Prints the line the multi-host tests wait for, once `jax.distributed` is up with the
  expected number of processes (JAX_NUM_PROCESSES); exits non-zero otherwise, so a worker that
  runs alone because the initialisation was skipped cannot pass for a host of the job."""
  import jax
  want = int(os.environ.get("JAX_NUM_PROCESSES", "1"))
  if jax.process_count() != want:
    print(f"distributed: NOT ready: jax.process_count() = {jax.process_count()}, "
          f"JAX_NUM_PROCESSES = {want}", flush=True)
    sys.exit(3)
  print(f"distributed: ready, process {jax.process_index()} of {jax.process_count()}", flush=True)


# ------------------------------------------------------------------------------------ re-ID

def tiny_sources():
  """6 identities × (3 visible + 3 infrared) random 32×16 images, as a ReidSources."""
  from ce2l_jax.data import pipeline, sources
  rng = np.random.default_rng(0)
  cols = {"image": [], "pid": [], "camid": [], "modality": [], "file": []}
  for pid in range(1, NUM_IDS + 1):
    for modality, cam in ((0, 1), (1, 3)):
      for j in range(PER_ID):
        img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        if modality:
          img = np.repeat(img[..., :1], 3, axis=-1)
        cols["image"].append(img)
        cols["pid"].append(pid)
        cols["camid"].append(cam)
        cols["modality"].append(modality)
        cols["file"].append(f"cam{cam}/{pid:04d}/{j:04d}.png")
  src = sources.InMemorySource({k: (np.stack(v) if k == "image" else np.asarray(v))
                                for k, v in cols.items()})
  vis, ir = sources.split_by_modality(src)
  return pipeline.ReidSources(vis, ir)


def input_config():
  from ce2l_jax.data import pipeline
  c = pipeline.default_input_config()
  c.p, c.k = P, K
  c.resize = c.crop = c.image_size = (H, W)
  c.pad = 2                 # random crop, flip and erasing all draw from the example rng
  c.threads = 1
  c.prefetch = 2
  return c


def reid_config(num_steps: int, checkpoint_every: int, **reid):
  """tests/conftest.py's re-ID run config with the real input pipeline's section."""
  from tests.conftest import reid_run_config
  c = reid_run_config(num_steps=num_steps, checkpoint_every=checkpoint_every, **reid)
  c.input = input_config()
  return c


class Tap:
  """A pass-through map stage on the batch stream (grain keeps the iterator state): slows it
  down or kills the process when the trainer asks for a given batch."""

  def __init__(self, kill_at_batch: int = 0, sleep_after: int = 0, sleep: float = 0.0):
    self.kill_at_batch, self.sleep_after, self.sleep = kill_at_batch, sleep_after, sleep
    self.calls = 0

  def __call__(self, batch):
    self.calls += 1
    if self.kill_at_batch and self.calls == self.kill_at_batch:
      die()
    if self.sleep and self.calls > self.sleep_after:
      time.sleep(self.sleep)
    return batch


def kill_inside_save(step: int) -> None:
  """Makes orbax's commit of step `step` (the rename of its temporary folder) SIGKILL us."""
  from orbax.checkpoint._src.path import atomicity
  real = atomicity.AtomicRenameTemporaryPath.finalize

  async def finalize(self, *args, **kwargs):
    if self._final_path.name == str(step):
      die()
    return await real(self, *args, **kwargs)

  atomicity.AtomicRenameTemporaryPath.finalize = finalize


def flat_variables(variables) -> dict[str, np.ndarray]:
  """{tree path: host array} of params and batch_stats (replicated: this process's copy)."""
  import jax
  out = {}
  for name in ("params", "batch_stats"):
    tree = variables[name] if isinstance(variables, dict) else getattr(variables, name)
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
      out[name + jax.tree_util.keystr(path)] = np.asarray(leaf.addressable_shards[0].data)
  return out


def train_tiny_reid(workdir: str, config, mesh=None, tap: Tap | None = None):
  """`reid.train` with the real P×K pipeline over `tiny_sources()`; returns the final state."""
  from ce2l_jax import parallel
  from ce2l_jax.data import pipeline
  from ce2l_jax.trainers import reid
  mesh = mesh or parallel.make_mesh()
  pipe = pipeline.build_reid_train_pipeline(tiny_sources(), config.input, seed=config.seed,
                                            num_devices=mesh)
  it = iter(pipe.dataset.map(tap)) if tap is not None else pipe.iterator()
  return reid.train(config, workdir, it, pipe.num_classes, mesh, steps_per_epoch=pipe.steps_per_epoch)


def run_reid(args) -> None:
  import jax
  from ce2l_jax import parallel
  parallel.initialize_distributed()
  announce_ready()
  if args.kill_in_save:
    kill_inside_save(args.kill_in_save)
  config = reid_config(args.num_steps, args.checkpoint_every)
  state = train_tiny_reid(args.workdir, config, tap=Tap(args.kill_at_batch, args.sleep_after, args.sleep))
  flat = flat_variables(state)
  step = int(np.asarray(state.step.addressable_shards[0].data))
  if jax.process_index() == 0 and args.out:
    tmp = args.out + ".tmp.npz"
    np.savez(tmp, step=step, **flat)
    os.replace(tmp, args.out)
  print(f"worker {jax.process_index()}/{jax.process_count()}: {jax.device_count()} devices, step {step}",
        flush=True)


def smoke_config(data_dir: str, num_devices: int = 0):
  """configs/smoke.py (synthetic_vireid/tiny, resnet_tiny at 32×16, P=4 K=2, 4 steps,
  checkpoints every 2) without the CycleGAN: the re-ID and evaluate stages only."""
  from ce2l_jax import stages
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  c = stages.load_config_file(os.path.join(repo, "configs", "smoke.py"))
  c.data.data_dir = data_dir
  c.cyclegan.enabled = False
  c.mesh.num_devices = num_devices
  return c


def tap_train_pipeline(kill_at_batch: int, local: list):
  """Patches `reid.build_train_pipeline` (the stage's P×K stream): records this process's
  columns per batch in `local` and adds the `Tap`. Returns the undo function."""
  import dataclasses
  from ce2l_jax.trainers import reid
  real_build = reid.build_train_pipeline

  def build_train_pipeline(*args, **kwargs):
    pipe = real_build(*args, **kwargs)
    local.append(pipe.local_batch)
    return dataclasses.replace(pipe, dataset=pipe.dataset.map(Tap(kill_at_batch)))

  reid.build_train_pipeline = build_train_pipeline
  return lambda: setattr(reid, "build_train_pipeline", real_build)


def save_reid_variables(config, workdir: str, out: str) -> None:
  """The final re-ID checkpoint's params and batch_stats → `out` (process 0)."""
  import jax
  from ce2l_jax import stages
  from ce2l_jax.trainers import reid
  _, variables, step = reid.restore_variables(stages.prepare_config(config), os.path.join(workdir, "reid"))
  flat = flat_variables(variables)
  if jax.process_index() == 0:
    np.savez(out, step=step, **flat)


def run_smoke_stages(data_dir: str, workdir: str, *, num_devices: int = 0, out: str = "") -> int:
  """`stages.run(smoke config, workdir, ["reid", "evaluate"])` in this process (the reference
  of the multi-host test); writes the final re-ID params to `out`; returns this process's
  columns of a train batch."""
  from ce2l_jax import stages
  local: list[int] = []
  undo = tap_train_pipeline(0, local)
  try:
    config = smoke_config(data_dir, num_devices)
    stages.run(config, workdir, ["reid", "evaluate"])
    if out:
      save_reid_variables(config, workdir, out)
  finally:
    undo()
  return local[0] if local else 0


def run_run_py(flags: list[str]) -> None:
  """`python run.py --config=configs/smoke.py <flags>` in this process (runpy), as a user starts
  it on each host: run.py starts jax.distributed from the environment, and this process then
  prints `announce_ready`'s line. A non-zero exit is raised; 0 returns."""
  import runpy
  from ce2l_jax import parallel
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  real_init = parallel.initialize_distributed

  def initialize_distributed():
    real_init()
    announce_ready()

  parallel.initialize_distributed = initialize_distributed
  sys.argv = ["run.py", "--config=configs/smoke.py", *flags]
  os.chdir(repo)
  try:
    runpy.run_path(os.path.join(repo, "run.py"), run_name="__main__")
  except SystemExit as e:
    if e.code not in (0, None):
      raise


def run_stage(args) -> None:
  """`python run.py --config=configs/smoke.py --config.cyclegan.enabled=false --stages=reid,evaluate`
  as a user starts it on each host (run.py starts jax.distributed from the environment), with
  the Tap on the train stream."""
  import jax
  local: list[int] = []
  tap_train_pipeline(args.kill_at_batch, local)
  run_run_py([f"--config.data.data_dir={args.data_dir}", "--config.cyclegan.enabled=false",
              f"--workdir={args.workdir}", "--stages=reid,evaluate"])
  if args.out:
    save_reid_variables(smoke_config(args.data_dir), args.workdir, args.out)
  print(f"worker {jax.process_index()}/{jax.process_count()}: {jax.device_count()} devices, "
        f"local batch {local[0] if local else 0}", flush=True)


def smoke_cyclegan_config(data_dir: str, num_devices: int = 0):
  """configs/smoke.py's CycleGAN stage (ngf 4 at 32×16, batch 8, 4 steps, checkpoints every 2)
  on synthetic_vireid/tiny in `data_dir`."""
  c = smoke_config(data_dir, num_devices)
  c.cyclegan.enabled = True
  return c


def float64_cyclegan_config(config):
  """`config` with `cyclegan.compute_dtype = "float64"` (the networks compute in their
  parameters' float64 instead of casting to the default float32 compute dtype)."""
  config.cyclegan.compute_dtype = "float64"
  return config


def save_cyclegan_params(config, workdir: str, out: str) -> None:
  """The final CycleGAN checkpoint's four networks → `out` (process 0; keys = tree paths)."""
  import jax
  from ce2l_jax import parallel, stages
  from ce2l_jax import workdir as wd
  from ce2l_jax.trainers import cyclegan
  config = stages.prepare_config(config)
  params, step = cyclegan.restore_params(config.cyclegan, wd.checkpoint_dir(workdir, "cyclegan"),
                                         parallel.make_mesh(config.mesh.num_devices or None))
  flat = {"params" + jax.tree_util.keystr(path): np.asarray(leaf.addressable_shards[0].data)
          for path, leaf in jax.tree_util.tree_leaves_with_path(params)}
  if jax.process_index() == 0:
    tmp = out + ".tmp.npz"
    np.savez(tmp, step=step, **flat)
    os.replace(tmp, out)


def use_float64_cyclegan() -> None:
  """Makes the CycleGAN stage of this process compute in float64: x64 on, the initial
  parameters (hence the Adam moments) and the checkpoint restore targets float64, images
  scaled to [-1, 1] in float64, float64 history pools; with `float64_cyclegan_config` (the
  networks' compute dtype) every array of the train step is float64 (`narrow_float_arrays`
  checks it; tests/test_scale.py::test_float64_harness_computes_the_cyclegan_step_in_float64).
  The code path is the float32 one.

  Why: in float32 two layouts of the same computation (1 process × 4 devices, 2 processes × 2
  devices, even 1 process × 2 vs × 4 devices) differ by up to 1e-3 in parameters after a few
  steps, because Adam maps the rounding noise of near-zero gradients (conv biases right before
  an instance norm have a zero true gradient) to ±lr steps and XLA's float32 code differs per
  layout. In float64 the same runs agree to ~1e-16 (docs/notes/scale_and_faults.md), so a
  real difference (another batch, pool slot or key) stands out.
  """
  import jax
  import jax.numpy as jnp
  jax.config.update("jax_enable_x64", True)
  from ce2l_jax.models import cyclegan as cg
  from ce2l_jax.trainers import cyclegan as T
  real_init, real_shapes, real_pool = cg.init_params, cg.param_shapes, T.pool_init
  cg.init_params = lambda *a, **kw: jax.tree.map(lambda p: np.asarray(p, np.float64), real_init(*a, **kw))
  cg.param_shapes = lambda *a, **kw: jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(s.shape, jnp.float64), real_shapes(*a, **kw))
  T.to_unit_range = lambda x: jnp.asarray(x).astype(jnp.float64) / 127.5 - 1.0

  def pool_init(pool_size, image_size):
    pool = real_pool(pool_size, image_size)
    return pool.replace(images=pool.images.astype(jnp.float64))

  T.pool_init = pool_init


NARROW_FLOATS = ("float32", "bfloat16", "float16")


def narrow_float_arrays(config) -> list[str]:
  """Where the CycleGAN train step of `config` (traced with `use_float64_cyclegan` on) makes a
  float32 / bfloat16 / float16 array: `primitive shape dtype` per equation, nested jaxprs
  (scan, custom_vjp, jit) included; scalars are left out (optax's learning rate is a float32
  scalar by design, the same value on every layout). Empty when every array of the step is
  float64 — the premise of the float64 comparisons in tests/test_scale.py."""
  import jax
  import numpy as np
  from ce2l_jax.models import cyclegan as cg
  from ce2l_jax.trainers import cyclegan as T
  cfg = config.cyclegan
  models = T.build_models_checked(cfg)
  tx_g, tx_d = T.make_optimizers(cfg)
  shapes = cg.param_shapes(models, tuple(int(s) for s in cfg.image_size))
  state = jax.eval_shape(lambda p: T.create_train_state(cfg, p, tx_g, tx_d), shapes)
  n, (h, w) = int(cfg.batch_size), (int(s) for s in cfg.image_size)
  batch = {k: jax.ShapeDtypeStruct((n, h, w, 3), np.uint8) for k in ("rgb", "ir")}
  closed = jax.make_jaxpr(T.make_train_step(cfg, models, tx_g, tx_d))(state, batch)
  found: list[str] = []

  def sub_jaxprs(value):
    if hasattr(value, "eqns"):
      yield value
    elif hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
      yield value.jaxpr
    elif isinstance(value, (tuple, list)):
      for v in value:
        yield from sub_jaxprs(v)

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      for v in eqn.outvars:
        aval = getattr(v, "aval", None)
        if aval is not None and getattr(aval, "shape", ()) and str(aval.dtype) in NARROW_FLOATS:
          found.append(f"{eqn.primitive.name} {tuple(aval.shape)} {aval.dtype}")
      for value in eqn.params.values():
        for sub in sub_jaxprs(value):
          walk(sub)

  walk(closed.jaxpr)
  return found


def run_float64_check(args) -> None:
  """Exits 1 (listing the first offenders) when the float64 CycleGAN step makes a narrower
  float array anywhere (`narrow_float_arrays`); prints `float64 check: ok` otherwise."""
  use_float64_cyclegan()
  from ce2l_jax import stages
  found = narrow_float_arrays(stages.prepare_config(float64_cyclegan_config(smoke_cyclegan_config("unused"))))
  if found:
    print(f"float64 check: {len(found)} narrower float arrays in the step, e.g. " + "; ".join(found[:5]),
          flush=True)
    sys.exit(1)
  print("float64 check: ok", flush=True)


def run_cyclegan_stage(args) -> None:
  """`python run.py --config=configs/smoke.py --stages=cyclegan` as a user starts it on each
  host (run.py starts jax.distributed from the environment)."""
  import jax
  if args.float64:
    use_float64_cyclegan()
  run_run_py([f"--config.data.data_dir={args.data_dir}", f"--workdir={args.workdir}",
              "--stages=cyclegan"]
             + (["--config.cyclegan.compute_dtype=float64"] if args.float64 else []))
  if args.out:
    config = smoke_cyclegan_config(args.data_dir)
    save_cyclegan_params(float64_cyclegan_config(config) if args.float64 else config, args.workdir,
                         args.out)
  print(f"worker {jax.process_index()}/{jax.process_count()}: {jax.device_count()} devices, "
        "cyclegan done", flush=True)


# ------------------------------------------------------------------------------- TFDS build

def run_build(args) -> None:
  from ce2l_jax import tfds_build
  from tfds_builders import manual_check
  real = manual_check.feature_image
  calls = [0]

  def feature_image(*a, **kw):
    calls[0] += 1
    if calls[0] == args.kill_at_image:
      die()
    return real(*a, **kw)

  manual_check.feature_image = feature_image
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  tfds_build.main(tfds_build.parse_flags([
      "ce2l-tfds-build", os.path.join(repo, "tfds_builders", "sysu_mm01"),
      f"--manual_dir={args.manual_dir}", f"--data_dir={args.data_dir}"]))


# ---------------------------------------------------------------------------------- convert

class _NamedSource:
  """An in-memory source whose repr is the same in every process (as a TfdsSource's is: the
  convert stage's chunk manifest records `repr(source)`; an InMemorySource's default repr holds
  its address, so a rerun in a new process would start over, by design)."""

  def __init__(self, columns):
    from ce2l_jax.data import sources
    self._src = sources.InMemorySource(columns)

  def __len__(self):
    return len(self._src)

  def __getitem__(self, i):
    return self._src[i]

  def labels(self):
    return self._src.labels()

  def __repr__(self):
    return f"tiny_convert_source(n={len(self)})"


def convert_inputs():
  """(run config, in-memory source of 40 records, fixed tiny generator params)."""
  import ml_collections
  from ce2l_jax import convert
  from ce2l_jax.models import cyclegan as cg
  from tests.conftest import base_config
  rng = np.random.default_rng(1)
  n = 40
  modality = np.arange(n) % 3 == 2
  image = rng.integers(0, 256, (n, 48, 24, 3), dtype=np.uint8)
  image[modality] = image[modality][..., :1]
  source = _NamedSource({
      "image": image, "pid": np.arange(n) // 4 + 1, "camid": np.where(modality, 3, 1),
      "modality": modality.astype(np.int64), "file": np.array([f"f{i:03d}.png" for i in range(n)])})
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.cyclegan = base_config().cyclegan
  config.cyclegan.update(dict(image_size=(32, 16), ngf=4, ndf=4, n_blocks=1, n_layers_d=2))
  config.convert = convert.default_config()
  config.convert.update(dict(chunk_size=8, batch_size=8))
  params = cg.init_params(cg.build_models(config.cyclegan), 0, (32, 16))
  return config, source, {r: params[r] for r in cg.ROLES[:2]}


def run_convert(args) -> None:
  import jax
  from ce2l_jax import convert, parallel
  parallel.initialize_distributed()
  announce_ready()
  config, source, gens = convert_inputs()
  # As the stage gets them from the CycleGAN checkpoint: replicated over the global mesh.
  gens = parallel.replicate(gens, parallel.make_mesh())
  if args.kill_at_chunk is not None:
    real_savez = np.savez

    def savez(f, **arrays):
      name = getattr(f, "name", str(f))
      if f"chunk_{args.kill_at_chunk:06d}.npz.tmp" in name:
        real_savez(f, **{k: arrays[k] for k in list(arrays)[:3]})  # a part of the file, then
        f.flush()
        die()                                                        # kill -9
      return real_savez(f, **arrays)

    convert.np.savez = savez
  if args.kill_in_build:
    from tfds_builders.ce2l_converted import ce2l_converted_dataset_builder as b
    real_gen = b.Ce2lConverted._generate_examples

    def generate(self, *a, **kw):
      for i, ex in enumerate(real_gen(self, *a, **kw)):
        if i == 20:
          die()
        yield ex

    b.Ce2lConverted._generate_examples = generate
  summary = convert.convert_dataset(config, args.workdir, gen_params=gens, source=source,
                                    progress=False)
  print(f"worker {jax.process_index()}/{jax.process_count()}: convert: {summary['converted_now']} "
        "converted now", flush=True)


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument("mode", choices=("reid", "stage", "cyclegan_stage", "float64_check", "build", "convert"))
  ap.add_argument("--workdir")
  ap.add_argument("--out", default="")
  ap.add_argument("--num_steps", type=int, default=4)
  ap.add_argument("--checkpoint_every", type=int, default=2)
  ap.add_argument("--sleep_after", type=int, default=0)
  ap.add_argument("--sleep", type=float, default=0.0)
  ap.add_argument("--kill_at_batch", type=int, default=0)
  ap.add_argument("--kill_in_save", type=int, default=0)
  ap.add_argument("--manual_dir")
  ap.add_argument("--data_dir")
  ap.add_argument("--kill_at_image", type=int, default=0)
  ap.add_argument("--kill_at_chunk", type=int, default=-1)
  ap.add_argument("--kill_in_build", action="store_true")
  ap.add_argument("--float64", action="store_true")
  args = ap.parse_args()
  if args.mode == "reid":
    run_reid(args)
  elif args.mode == "stage":
    run_stage(args)
  elif args.mode == "cyclegan_stage":
    run_cyclegan_stage(args)
  elif args.mode == "float64_check":
    run_float64_check(args)
  elif args.mode == "build":
    run_build(args)
  else:
    if args.kill_at_chunk < 0:
      args.kill_at_chunk = None
    run_convert(args)


if __name__ == "__main__":
  main()
