"""Faults: a killed process, a half-written checkpoint or dataset, a NaN — no lost work, no
silently changed number.

Real `kill -9`s of real processes (tests/multihost_worker.py), not exceptions: nothing runs after
the signal (no `finally`, no flush). Covered elsewhere and not repeated (docs/notes/scale_and_faults.md):
- tests/test_scale.py: a 2-process run SIGKILLed after its first checkpoint resumes (per-process
  data positions) and equals a 1-process run;
- tests/test_reid_trainer.py: 2 steps + resume 2 == 4 steps in one process; NaN stop/skip through
  a poisoned loss; tests/test_cyclegan.py: a KeyboardInterrupt after a checkpoint then resume;
  NaN stop through poisoned metrics; tests/test_run.py: run.py killed (`os._exit`) right after
  the re-ID stage's first checkpoint;
- tests/test_tfds_build.py: a stale `incomplete.*` build folder is never read, a build that fails
  while writing removes its temporary folder; tests/test_convert.py: a conversion interrupted
  (exception) after one chunk resumes, half-written chunk and dataset leftovers are not read.
"""

import glob
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ce2l_jax import checkpoint, parallel
from ce2l_jax.trainers.loop import NonFiniteError
from ce2l_jax.metric_writer import read_metrics
from tests import multihost_worker as mw
from tests.test_scale import ROOT, WORKER, load, worker_env

NUM_STEPS, EVERY = 6, 2


def start(args, devices=1, log=None):
  return subprocess.Popen([sys.executable, WORKER, *map(str, args)], cwd=ROOT,
                          env=worker_env(devices), stdout=log or subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(p, timeout=300) -> tuple[int, str]:
  try:
    out, _ = p.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    os.killpg(p.pid, signal.SIGKILL)
    out, _ = p.communicate()
    pytest.fail(f"worker timed out after {timeout} s:\n{(out or '')[-3000:]}")
  return p.returncode, out or ""


def run_worker(args, devices=1, timeout=300) -> tuple[int, str]:
  return finish(start(args, devices), timeout)


def steps_in(ckpt_dir) -> list[str]:
  return sorted(os.listdir(ckpt_dir)) if os.path.isdir(ckpt_dir) else []


# ------------------------------------------------------------------------------ re-ID

def read_variables(npz) -> dict[str, np.ndarray]:
  got = load(npz)
  assert int(got.pop("step")) == NUM_STEPS
  return got


def test_reid_kill9_while_training_and_inside_a_save_resumes_bit_identical(tmp_path):
  """1. SIGKILL from outside as soon as the checkpoint of step 2 appears (the run is slowed
  down after 2 batches so that it is still training); 2. the rerun is SIGKILLed inside orbax's
  save of the next checkpoint, after the arrays are written and before the commit (rename);
  3. the second rerun ends at step 6. Same params, BatchNorm statistics and logged metrics,
  bit for bit, as the uninterrupted run (a process of its own, running alongside: XLA:CPU's
  numbers depend on the process's device count, even for a 1-device mesh): state and data
  position were restored exactly, the half-written checkpoint was never read."""
  ref_dir = str(tmp_path / "ref")
  ref_proc = start(["reid", f"--workdir={ref_dir}", f"--num_steps={NUM_STEPS}",
                    f"--checkpoint_every={EVERY}", f"--out={tmp_path / 'ref.npz'}"])
  wd = str(tmp_path / "run")
  ckpts = os.path.join(wd, "checkpoints")
  base = ["reid", f"--workdir={wd}", f"--num_steps={NUM_STEPS}", f"--checkpoint_every={EVERY}"]

  p = start(base + ["--sleep_after=2", "--sleep=0.5"])
  deadline = time.monotonic() + 300
  while "2" not in steps_in(ckpts):
    if p.poll() is not None or time.monotonic() > deadline:
      os.killpg(p.pid, signal.SIGKILL)
      pytest.fail(f"no checkpoint 2 (rc {p.poll()}):\n{p.communicate()[0][-3000:]}")
    time.sleep(0.02)
  os.kill(p.pid, signal.SIGKILL)
  rc, _ = finish(p)
  assert rc == -signal.SIGKILL
  done = [int(s) for s in steps_in(ckpts) if s.isdigit()]
  assert 2 in done and NUM_STEPS not in done, done
  before = max(done)

  rc, out = run_worker(base + [f"--kill_in_save={before + EVERY}"])
  assert rc == -signal.SIGKILL, out[-3000:]
  leftovers = [s for s in steps_in(ckpts) if "tmp" in s]
  assert leftovers and leftovers[0].startswith(f"{before + EVERY}.orbax-checkpoint-tmp"), steps_in(ckpts)
  assert os.listdir(os.path.join(ckpts, leftovers[0], "state"))  # arrays were written
  ck = checkpoint.Checkpointer(ckpts)
  assert ck.latest_step() == before and before + EVERY not in ck.all_steps()
  ck.close()

  rc, out = run_worker(base + [f"--out={tmp_path / 'resumed.npz'}"])
  assert rc == 0, out[-3000:]
  assert f"step {NUM_STEPS}" in out
  rc, log = finish(ref_proc)
  assert rc == 0, log[-3000:]
  ref, got = read_variables(tmp_path / "ref.npz"), read_variables(tmp_path / "resumed.npz")
  assert sorted(got) == sorted(ref)
  for k in ref:
    np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
  # metrics.jsonl holds every step once after two killed runs (their rows after the checkpoint
  # they resumed from were dropped and redone), with the uninterrupted run's numbers.
  assert [r["step"] for r in read_metrics(wd, "reid")] == list(range(1, NUM_STEPS + 1))
  rows = {r["step"]: r for r in read_metrics(wd, "reid")}
  ref_rows = {r["step"]: r for r in read_metrics(ref_dir, "reid")}
  assert sorted(rows) == sorted(ref_rows) == list(range(1, NUM_STEPS + 1))
  for s, r in ref_rows.items():
    for k in ("loss", "ce", "cross", "intra", "accuracy", "grad_norm", "lr"):
      assert rows[s][k] == r[k], (s, k)
  assert [int(s) for s in steps_in(ckpts) if s.isdigit()][-1] == NUM_STEPS


def test_leftover_tmp_checkpoint_is_ignored_and_overwritten(tmp_path):
  """Simulated: the folders a kill leaves (`N.orbax-checkpoint-tmp*`, with or without arrays)
  are neither the latest step nor restorable by accident; saving that step again works."""
  repl = parallel.replicated(parallel.make_mesh())
  state = lambda v: jax.device_put({"w": np.full((4,), v, np.float32), "step": np.int32(v)}, repl)
  ck = checkpoint.Checkpointer(str(tmp_path), max_to_keep=None)
  ck.save(1, state(1.0))
  ck.save(2, state(2.0))
  ck.close()
  # A killed save of step 3: the arrays of step 2 copied in, no commit marker; and garbage.
  import shutil
  shutil.copytree(tmp_path / "2", tmp_path / "3.orbax-checkpoint-tmp-1234")
  (tmp_path / "3.orbax-checkpoint-tmp-1234" / "commit_success.txt").unlink(missing_ok=True)
  (tmp_path / "4.orbax-checkpoint-tmp").mkdir()
  (tmp_path / "4.orbax-checkpoint-tmp" / "state").write_bytes(b"half")
  ck = checkpoint.Checkpointer(str(tmp_path), max_to_keep=None)
  assert ck.latest_step() == 2 and ck.all_steps() == [1, 2]
  got = ck.restore(jax.eval_shape(lambda: state(0.0)))
  np.testing.assert_array_equal(got["w"], np.full((4,), 2.0))
  ck.save(3, state(3.0))
  ck.wait()
  assert ck.latest_step() == 3
  np.testing.assert_array_equal(ck.restore(jax.eval_shape(lambda: state(0.0)))["w"], np.full((4,), 3.0))
  ck.close()


# ------------------------------------------------------------------------------ NaN / Inf

def _restorable(wd, step, like):
  ck = checkpoint.Checkpointer(os.path.join(wd, "checkpoints"), max_to_keep=None)
  try:
    assert ck.latest_step() == step and ck.all_steps() == list(range(1, step + 1))
    restored = ck.restore(jax.eval_shape(lambda: like), step=step)
  finally:
    ck.close()
  leaves = jax.tree.leaves(jax.device_get(restored))
  assert all(np.all(np.isfinite(x)) for x in leaves if np.issubdtype(np.asarray(x).dtype, np.floating))
  return restored


def test_reid_nan_stop_names_step_and_terms_keeps_last_good_checkpoint(tmp_path):
  """A huge learning rate: step 1 is finite (and checkpointed), step 2's loss is NaN. The run
  stops naming step 2 and every non-finite term; checkpoint 1 is the latest, restorable and
  finite; nothing was saved for step 2. `nan_policy='skip'` goes on: every later update is
  dropped, so the final state is checkpoint 1's (the step counter excepted)."""
  mesh = parallel.make_mesh(1)
  cfg = mw.reid_config(4, 1, lr=1e30)
  with pytest.raises(NonFiniteError) as e:
    mw.train_tiny_reid(str(tmp_path / "stop"), cfg, mesh)
  msg = str(e.value)
  assert msg.startswith("reid step 2: non-finite ce, cross, grad_norm, intra, loss, update (ce=nan"), msg
  assert "Last good checkpoint: step 1 in" in msg and "reid.nan_policy='skip'" in msg
  ref = mw.train_tiny_reid(str(tmp_path / "ref"), mw.reid_config(1, 1, lr=1e30), mesh)
  s1 = _restorable(str(tmp_path / "stop"), 1, ref)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(s1.params), jax.device_get(ref.params))

  cfg.reid.nan_policy = "skip"
  final = mw.train_tiny_reid(str(tmp_path / "skip"), cfg, mesh)
  assert int(final.step) == 4
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(final.params), jax.device_get(ref.params))
  rows = read_metrics(str(tmp_path / "skip"), "reid")
  assert [r["skipped"] for r in rows] == [0, 1, 1, 1]


def test_reid_overflowing_update_is_not_checkpointed(tmp_path):
  """Loss and gradient finite, parameters overflowing (lr = inf): the update is refused at
  step 1, named, and no checkpoint holding Inf/NaN parameters is ever written."""
  with pytest.raises(NonFiniteError, match=r"reid step 1: non-finite update \(update_norm=(inf|nan)\).*"
                     r"Last good checkpoint: none"):
    mw.train_tiny_reid(str(tmp_path), mw.reid_config(4, 1, lr=float("inf")), parallel.make_mesh(1))
  assert steps_in(tmp_path / "checkpoints") == []


# ------------------------------------------------------------------------------ datasets

def test_tfds_build_kill9_midway_then_rerun(tmp_path):
  """`python -m ce2l_jax.tfds_build` SIGKILLed while TFDS writes the records: only TFDS's
  temporary folder is left (no readable split); the same command again builds everything."""
  import tensorflow_datasets as tfds
  from ce2l_jax import tfds_build
  from tests import fixtures_real as fx
  fixture = fx.make_sysu(tmp_path / "manual")
  data_dir = tmp_path / "data"
  rc, out = run_worker(["build", f"--manual_dir={fixture.manual_dir}", f"--data_dir={data_dir}",
                        "--kill_at_image=5"])
  assert rc == -signal.SIGKILL, out[-3000:]
  left = sorted(p.name for p in (data_dir / "sysu_mm01").iterdir())
  assert left and all(n.startswith("incomplete.") for n in left), left
  for split in ("train", "test"):
    with pytest.raises(Exception, match="has not been generated|not found|No such"):
      tfds.data_source("sysu_mm01", data_dir=str(data_dir), split=split, download=False)
  tfds_build.main(tfds_build.parse_flags([
      "ce2l-tfds-build", os.path.join(ROOT, "tfds_builders", "sysu_mm01"),
      f"--manual_dir={fixture.manual_dir}", f"--data_dir={data_dir}"]))
  for split in ("train", "test"):
    want = fixture.expected[split]
    records = fx.read_split("sysu_mm01", data_dir, split)
    assert len(records) == want["visible"] + want["infrared"]
    assert sorted({int(r["pid"]) for r in records}) == want["pids"]


def test_convert_kill9_in_a_chunk_and_in_the_build_then_rerun_equals_uninterrupted(tmp_path):
  """The convert stage SIGKILLed half-way through writing chunk 2's file, then (rerun) while
  the TFDS dataset is being built from the chunks; the third run finishes without converting
  anything again and gives exactly the records of an uninterrupted conversion. That reference
  runs in a worker process of its own, like the killed runs: XLA:CPU's converted pixels depend on
  the process's device count (pytest's process has 8 fake devices, the workers 1), and with
  jax 0.12 one image of the 40 differs by a grey level between the two."""
  from ce2l_jax import convert
  ref = str(tmp_path / "ref")
  ref_proc = start(["convert", f"--workdir={ref}"])
  wd = str(tmp_path / "run")
  rc, out = run_worker(["convert", f"--workdir={wd}", "--kill_at_chunk=2"])
  assert rc == -signal.SIGKILL, out[-3000:]
  chunks = sorted(os.listdir(convert.chunks_dir(wd)))
  assert chunks[:2] == ["chunk_000000.npz", "chunk_000001.npz"]
  assert len(chunks) == 4 and chunks[2].startswith("chunk_000002.npz.tmp"), chunks  # + manifest
  assert not convert.is_complete(wd)
  with pytest.raises(FileNotFoundError, match="tfds/ is missing"):
    convert.open_converted(wd)

  rc, out = run_worker(["convert", f"--workdir={wd}", "--kill_in_build"])
  assert rc == -signal.SIGKILL, out[-3000:]
  assert not convert.is_complete(wd) and not os.path.exists(convert.converted_data_dir(wd))
  assert len(glob.glob(os.path.join(convert.chunks_dir(wd), "chunk_*.npz"))) == 5
  with pytest.raises(FileNotFoundError, match="tfds/ is missing"):
    convert.open_converted(wd)

  config, source, gens = mw.convert_inputs()
  summary = convert.convert_dataset(config, wd, gen_params=gens, source=source, progress=False)
  assert summary["converted_now"] == 0  # every chunk survived the kills
  rc, out = finish(ref_proc)
  assert rc == 0, out[-3000:]
  got, want = convert.open_converted(wd), convert.open_converted(ref)
  assert len(got) == len(want) == len(source) == 40
  for i in range(len(want)):
    a, b = got[i], want[i]
    assert bytes(a["image"]) == bytes(b["image"]), i
    assert (a["pid"], a["camid"], a["modality"], a["file"]) == (b["pid"], b["camid"], b["modality"], b["file"])
  assert summary["num_records"] == 40


def test_cyclegan_nan_stop_names_step_and_term_keeps_last_good_checkpoint(tmp_path):
  """A huge learning rate: step 1 finite and checkpointed, step 2's losses NaN/Inf. Stops naming
  step 2 and the term; checkpoint 1 is the latest, finite and restorable (equal to one step of
  the same compiled step); nothing saved for step 2. `nan_policy='skip'`: every later update is
  dropped and counted, the final parameters are step 1's."""
  from ce2l_jax.trainers import cyclegan as T
  from tests.conftest import cyclegan_iterator as fake_iterator
  from tests.conftest import tiny_cyclegan_cfg as tiny_cfg
  cfg = tiny_cfg(lr=1e30, num_steps=4, checkpoint_every=1, log_every=1, eval_every=100)
  stage = tmp_path / "stop" / "cyclegan"
  with pytest.raises(NonFiniteError, match=r"^cyclegan step 2: non-finite [\w, ]+ \(\w+=(nan|inf|-inf).*"
                     r"the update was not applied.*Last good checkpoint: step 1 in .*nan_policy='skip'"):
    T.train(cfg, str(stage), fake_iterator())
  mesh = parallel.make_mesh()
  models, tx_g, tx_d, train_step, _ = T.step_functions(cfg, mesh)  # the run's compiled step
  ref, _ = train_step(T.init_train_state(cfg, models, tx_g, tx_d, mesh),
                      parallel.shard_batch(next(fake_iterator()), mesh))
  params, step = T.restore_params(cfg, str(stage / "checkpoints"), mesh)
  assert step == 1 and steps_in(stage / "checkpoints") == ["1"]
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(jax.device_get(params)))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(params), jax.device_get(ref.params))

  cfg.nan_policy = "skip"
  no_samples = lambda *a, **k: {}  # the end-of-run sample grid would compile `translate`
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(T, "save_samples", no_samples)
    final, _ = T.train(cfg, str(tmp_path / "skip" / "cyclegan"), fake_iterator())
  assert int(final.step) == 4
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(final.params), jax.device_get(ref.params))
  rows = [r for r in read_metrics(str(tmp_path / "skip" / "cyclegan"), T.STAGE) if "skipped" in r]
  assert [(r["step"], r["skipped"]) for r in rows] == [(1, 0), (2, 1), (3, 1), (4, 1)]


def test_cyclegan_overflowing_update_is_not_checkpointed(tmp_path, monkeypatch):
  """Step 1's losses are finite but the parameters it produces are not (the generators' Adam
  first moments are set to 1e38 before step 1: with lr 1e30 the update overflows float32). The update is refused, the run
  stops at step 1 naming it, and no checkpoint is written. (Same compiled step as the test
  above: only the state differs.)"""
  from ce2l_jax.trainers import cyclegan as T
  from tests.conftest import cyclegan_iterator as fake_iterator
  from tests.conftest import tiny_cyclegan_cfg as tiny_cfg
  cfg = tiny_cfg(lr=1e30, num_steps=4, checkpoint_every=1, log_every=1, eval_every=100)
  real = T.step_functions

  def diverging(cfg, mesh):
    models, tx_g, tx_d, step, translate = real(cfg, mesh)

    def first_step_overflows(state, batch):
      first = int(state.step) == 0
      if first:
        big = lambda path, x: jnp.full_like(x, 1e38) if ".mu" in jax.tree_util.keystr(path) else x
        state = state.replace(opt_state_g=jax.tree_util.tree_map_with_path(big, state.opt_state_g))
      new, metrics = step(state, batch)  # (donates `state`)
      assert not first or all(np.isfinite(float(metrics[k])) for k in T.LOSS_NAMES)
      return new, metrics
    return T.StepFunctions(models, tx_g, tx_d, first_step_overflows, translate)

  monkeypatch.setattr(T, "step_functions", diverging)
  stage = tmp_path / "cyclegan"
  with pytest.raises(NonFiniteError, match=r"^cyclegan step 1: non-finite update; the update was not "
                     r"applied.*Last good checkpoint: none"):
    T.train(cfg, str(stage), fake_iterator())
  assert steps_in(stage / "checkpoints") == []
