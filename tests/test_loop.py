"""The training loop (`ce2l_jax/trainers/loop.py`) on a toy step: least squares on a sharded batch.

Written once here for every trainer: resume equals an uninterrupted run (state and input
position), `metrics.jsonl` holds each step once after any number of resumes and killed runs,
the non-finite gate and its two policies, an overflowing update, a resume on another device
count (works: the state is resharded, the input position kept) and on another process count
(refused, one line naming both counts). The trainers' own tests check only their maths.
"""

import os
import shutil

import flax
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ce2l_jax import checkpoint, parallel
from ce2l_jax.metric_writer import MetricWriter, read_metrics
from ce2l_jax.trainers import loop

DIM, BATCH = 4, 8
TRUE_W = np.arange(1, DIM + 1, dtype=np.float32)


@flax.struct.dataclass
class ToyState:
  step: jax.Array
  w: jax.Array
  momentum: jax.Array


def toy_batch(i: int) -> dict:
  """Batch i: x, y = x·TRUE_W; `poison` 1.0 on the batches `toy_iter(poison=...)` marks."""
  rng = np.random.default_rng(int(i))
  x = rng.normal(size=(BATCH, DIM)).astype(np.float32)
  return {"x": x, "y": x @ TRUE_W, "poison": np.zeros((BATCH,), np.float32), "i": np.full((BATCH,), i, np.float32)}


def toy_iter(poison: tuple[int, ...] = ()):
  """Endless, checkpointable; batch i (0-based) carries NaN poison when i is in `poison`."""
  def make(i):
    b = toy_batch(int(i))
    if int(i) in poison:
      b["poison"][:] = np.nan
    return b
  return iter(grain.MapDataset.range(10**6).map(make).to_iter_dataset())


def toy_step(lr: float):
  def step(state: ToyState, batch):
    def loss_fn(w):
      return jnp.mean((batch["x"] @ w - batch["y"]) ** 2) + jnp.mean(batch["poison"])
    loss, grad = jax.value_and_grad(loss_fn)(state.w)
    momentum = 0.9 * state.momentum + grad
    w = state.w - lr * momentum
    new = state.replace(step=state.step + 1, w=w, momentum=momentum)
    new, flags = loop.gate(state, new, {"loss": loss, "grad_norm": jnp.linalg.norm(grad)}, w)
    return new, {"loss": loss, "grad_norm": jnp.linalg.norm(grad), "lr": jnp.float32(lr),
                 "batch": jnp.mean(batch["i"]), **flags}
  return step


def section(**kw) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict(dict(log_every=1, checkpoint_every=2, eval_every=0, max_to_keep=None,
                                     nan_policy="stop", progress=False, lr=0.05))
  c.update(kw)
  return c


def init_state(mesh) -> ToyState:
  return parallel.replicate(ToyState(jnp.zeros((), jnp.int32), jnp.zeros((DIM,), jnp.float32),
                                     jnp.zeros((DIM,), jnp.float32)), mesh)


def train(workdir, num_steps, *, devices=8, poison=(), **kw) -> loop.Outcome:
  """The whole trainer side of a toy run: what a real trainer's `train` does."""
  cfg = section(**kw)
  mesh = parallel.make_mesh(devices)
  step = loop.cached(("toy", cfg.lr, mesh), lambda: loop.jit_step(toy_step(cfg.lr), mesh))
  it = toy_iter(poison)
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=cfg.max_to_keep)
  writer = MetricWriter(workdir, "toy", tensorboard=False)
  try:
    start = loop.restore_or_init(ckpt, loop.abstract_state(lambda: init_state(mesh), mesh),
                                 lambda _: init_state(mesh), it)
    return loop.run(cfg, start.state, step, it, num_steps=num_steps, ckpt=ckpt, writer=writer,
                    name="toy", prepare=lambda b: parallel.shard_batch(b, mesh))
  finally:
    ckpt.close()
    writer.close()


def host(state):
  return jax.tree.map(np.asarray, jax.device_get(state))


def assert_same(a, b):
  jax.tree.map(np.testing.assert_array_equal, host(a), host(b))


def test_itstime():
  assert [s for s in range(1, 11) if loop.itstime(s, 3, 10)] == [3, 6, 9, 10]
  assert [s for s in range(1, 11) if loop.itstime(s, 0, 10)] == [10]
  assert not any(loop.itstime(s, 0) for s in range(1, 11))


def test_resume_equals_uninterrupted_and_metrics_hold_each_step_once(tmp_path):
  full = train(str(tmp_path / "full"), 6)
  part = str(tmp_path / "part")
  first = train(part, 3)            # checkpoints 2 and 3; logs steps 1..3
  assert int(first.state.step) == 3
  # A killed run: it trained and logged steps 4 and 5 after checkpoint 3, then died unsaved.
  writer = MetricWriter(part, "toy", tensorboard=False)
  for s in (4, 5):
    writer.write_scalars(s, {"loss": -1.0})
  writer.close()
  resumed = train(part, 6)          # from checkpoint 3, input at batch 3
  assert_same(full.state, resumed.state)
  for _ in range(2):                # resuming a finished run changes nothing
    again = train(part, 6)
    assert_same(full.state, again.state)
  rows, ref = read_metrics(part, "toy"), read_metrics(str(tmp_path / "full"), "toy")
  assert [r["step"] for r in rows] == [r["step"] for r in ref] == [1, 2, 3, 4, 5, 6]
  assert [r["loss"] for r in rows] == [r["loss"] for r in ref]
  assert [r["batch"] for r in rows] == [0, 1, 2, 3, 4, 5]   # the input position was kept
  assert checkpoint.Checkpointer(str(tmp_path / "part" / "checkpoints")).all_steps() == [2, 3, 4, 6]


def test_nan_stop_names_step_and_terms_and_keeps_last_good_checkpoint(tmp_path):
  with pytest.raises(loop.NonFiniteError) as e:
    train(str(tmp_path), 6, poison=(2,), checkpoint_every=1)   # batch 2 = step 3
  msg = str(e.value)
  assert msg.startswith("toy step 3: non-finite loss (loss=nan); the update was not applied"), msg
  assert f"Last good checkpoint: step 2 in {tmp_path / 'checkpoints'}" in msg
  assert "toy.nan_policy='skip'" in msg and "\n" not in msg
  assert checkpoint.Checkpointer(str(tmp_path / "checkpoints")).all_steps() == [1, 2]
  assert [r["step"] for r in read_metrics(str(tmp_path), "toy")] == [1, 2]


def test_nan_skip_keeps_the_state_and_counts(tmp_path):
  ref = train(str(tmp_path / "ref"), 2, checkpoint_every=1)
  out = train(str(tmp_path / "skip"), 4, poison=(2, 3), nan_policy="skip", checkpoint_every=1,
              log_every=2)
  assert int(out.state.step) == 4
  jax.tree.map(np.testing.assert_array_equal, host(out.state.w), host(ref.state.w))
  rows = read_metrics(str(tmp_path / "skip"), "toy")
  assert [(r["step"], r["skipped"]) for r in rows] == [(2, 0), (4, 2)]
  assert rows[1]["loss"] == "nan"   # every step of that window was skipped: their mean


def test_overflowing_update_is_refused_before_any_checkpoint(tmp_path):
  with pytest.raises(loop.NonFiniteError, match=r"^toy step 1: non-finite update; .*Last good checkpoint: none"):
    train(str(tmp_path), 4, lr=3e38)
  assert checkpoint.Checkpointer(str(tmp_path / "checkpoints")).all_steps() == []


def test_resume_on_another_device_count_reshards_and_keeps_the_input_position(tmp_path):
  full = train(str(tmp_path / "full"), 6, devices=8)
  wd = str(tmp_path / "run")
  train(wd, 2, devices=8)
  train(wd, 4, devices=1)
  out = train(wd, 6, devices=2)
  assert out.state.w.sharding.mesh.devices.size == 2
  np.testing.assert_allclose(host(out.state.w), host(full.state.w), rtol=1e-5)
  assert [r["batch"] for r in read_metrics(wd, "toy")] == [0, 1, 2, 3, 4, 5]


def test_resume_with_another_process_count_is_one_line_naming_both(tmp_path):
  train(str(tmp_path), 2)
  data = tmp_path / "checkpoints" / "2" / "data"
  saved = [f for f in os.listdir(data) if f.startswith("process_")]
  assert saved == ["process_0-of-1.json"], os.listdir(data)
  shutil.move(data / saved[0], data / "process_0-of-2.json")   # as a 2-process run leaves it
  with pytest.raises(checkpoint.ProcessCountError) as e:
    train(str(tmp_path), 4)
  msg = str(e.value)
  assert "saved by 2 process(es) but this run has 1" in msg and "\n" not in msg


def test_step_cache_compiles_once(tmp_path):
  train(str(tmp_path / "a"), 2)
  train(str(tmp_path / "b"), 3)
  mesh = parallel.make_mesh(8)
  assert loop.cached(("toy", 0.05, mesh), lambda: None)._cache_size() == 1


def _imports(path: str) -> set[str]:
  """The ce2l_jax modules a file imports, anywhere in it (function-local imports included)."""
  import ast
  out = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.Import):
      out.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      out.update([node.module] + [f"{node.module}.{a.name}" for a in node.names])
  return {m for m in out if m.startswith("ce2l_jax")}


def test_imports_point_one_way_and_only_stages_writes_done():
  """docs/architecture.md's arrows that matter most: trainers and convert never import each
  other, nothing below stages imports it, data and models never import trainers, metrics are
  pure; `workdir.write_done` is called from stages.py alone."""
  root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ce2l_jax")
  files = {}
  for folder, _, names in os.walk(root):
    for n in names:
      if n.endswith(".py"):
        rel = os.path.relpath(os.path.join(folder, n), os.path.dirname(root))
        files[rel[:-3].replace(os.sep, ".").removesuffix(".__init__")] = os.path.join(folder, n)
  imports = {m: _imports(p) for m, p in files.items()}
  hits = lambda m, prefix: sorted(i for i in imports[m] if i == prefix or i.startswith(prefix + "."))
  for m in files:
    if m.startswith("ce2l_jax.trainers"):
      assert not hits(m, "ce2l_jax.convert"), m
    if m != "ce2l_jax.stages":
      assert not hits(m, "ce2l_jax.stages"), m
    if m.startswith(("ce2l_jax.data", "ce2l_jax.models", "ce2l_jax.metrics")):
      assert not hits(m, "ce2l_jax.trainers"), m
    if m.startswith("ce2l_jax.data"):
      assert not hits(m, "ce2l_jax.models"), m
    if m.startswith("ce2l_jax.metrics"):
      constants = lambda i: i == "ce2l_jax" or i.split(".")[1].isupper()  # ce2l_jax.VISIBLE
      assert all(i.startswith("ce2l_jax.metrics") or constants(i) for i in imports[m]), m
    if m != "ce2l_jax.stages":
      assert "write_done(" not in open(files[m]).read() or m == "ce2l_jax.workdir", m
  assert not hits("ce2l_jax.convert", "ce2l_jax.trainers")


def test_cpu_compiler_options_name_the_scheduler_and_refuse_unknown_ones(monkeypatch):
  monkeypatch.delenv(loop.CPU_SCHEDULER_ENV, raising=False)
  opt = lambda *a, **k: loop.cpu_compiler_options(*a, **k).get("xla_cpu_scheduler_type")
  assert opt("memory", backend="cpu") == "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"
  assert opt(backend="cpu") == "CPU_SCHEDULER_TYPE_DEFAULT"
  assert loop.cpu_compiler_options("memory", backend="gpu") == {}
  monkeypatch.setenv(loop.CPU_SCHEDULER_ENV, "concurrency")  # one choice for the whole run
  assert opt("memory", backend="cpu") == "CPU_SCHEDULER_TYPE_CONCURRENCY_OPTIMIZED"
  monkeypatch.setenv(loop.CPU_SCHEDULER_ENV, "fast")
  with pytest.raises(ValueError, match="CE2L_CPU_SCHEDULER='fast': use one of memory, default"):
    loop.cpu_compiler_options("memory")
  with pytest.raises(ValueError, match="'quick'"):
    loop.cpu_compiler_options("quick")
  # every name is one this jaxlib accepts
  monkeypatch.delenv(loop.CPU_SCHEDULER_ENV)
  for name in loop.CPU_SCHEDULERS:
    f = jax.jit(lambda x: x * 2, compiler_options=loop.cpu_compiler_options(name) or None)
    assert float(f(1.0)) == 2.0
