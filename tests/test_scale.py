"""Scale: more devices or more hosts must not change a number.

Covered elsewhere, not repeated here (docs/notes/scale_and_faults.md):
- tests/test_reid_trainer.py::test_step_changes_params_no_recompile_and_sharded_equals_unsharded:
  the re-ID step on 8 fake devices equals 1 device over 3 steps (losses, params, BatchNorm
  running statistics);
- tests/test_cyclegan.py::test_sharded_step_equals_unsharded: one CycleGAN step, 8 vs 1 devices
  (losses, params, the RGB history pool while it fills).
Here: the CycleGAN over several steps once its history pools are full (the swap path draws
random slots per image: the sharded step must draw the same ones), both pools and both
optimiser states; run.py's re-ID + evaluate stages and its CycleGAN stage on 2 processes × 2 CPU
devices (`jax.distributed` over 127.0.0.1, killed after the first checkpoint and resumed)
against one process with 4 devices; the convert stage on 2 processes against 1.

A multi-host test fails when a worker exits with an unexpected code, times out, or never prints
`distributed: ready, process i of N` (jax.distributed up with all N processes). It skips only
when this machine has no loopback TCP, checked before any worker starts.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from ce2l_jax import parallel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "multihost_worker.py")


# ------------------------------------------------------------------------------ CycleGAN

def test_cyclegan_steps_with_full_pools_sharded_equal_unsharded():
  """3 steps with a pool of 4 and batches of 8: from step 2 on the pools swap images at random
  slots. 8 devices vs 1: losses, both pools, every parameter and Adam moment, the four
  networks' outputs.

  Conv biases right before an instance norm (generators and PatchGAN middle layers) have a zero
  true gradient; Adam turns their rounding noise into ±lr steps, so those are compared only
  through the outputs (which they cannot change), as in tests/test_cyclegan.py.
  """
  from ce2l_jax.models import cyclegan as cg
  from ce2l_jax.trainers import cyclegan as T
  from tests.test_cyclegan import fake_batch, tiny_cfg
  cfg = tiny_cfg()
  runs = {}
  for n in (8, 1):
    mesh = parallel.make_mesh(n)
    models, tx_g, tx_d, step, _ = T.step_functions(cfg, mesh)
    state = T.init_train_state(cfg, models, tx_g, tx_d, mesh)
    history = []
    for i in range(3):
      state, m = step(state, parallel.shard_batch(fake_batch(10 + i), mesh))
      history.append(jax.device_get(m))
    runs[n] = (jax.device_get(state), history)
  (s8, h8), (s1, h1) = runs[8], runs[1]
  for a, b in zip(h8, h1):
    for k in T.LOSS_NAMES:
      np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5, err_msg=k)
  assert int(s8.pool_rgb.num) == int(s8.pool_ir.num) == cfg.pool_size
  for pool in ("pool_rgb", "pool_ir"):
    np.testing.assert_allclose(getattr(s8, pool).images, getattr(s1, pool).images, atol=2e-5,
                               err_msg=pool)
  def cancelled(path):  # a conv bias followed by an instance norm
    names = [getattr(p, "key", "") for p in path]
    return names[-1] == "bias" and names[-2] not in ("head", "out", "conv0")

  for tree8, tree1 in ((s8.params, s1.params), (s8.opt_state_g, s1.opt_state_g),
                       (s8.opt_state_d, s1.opt_state_d)):
    leaves1 = jax.tree.leaves(tree1)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(tree8), leaves1, strict=True):
      if not cancelled(path):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5, err_msg=jax.tree_util.keystr(path))
  models = cg.build_models(cfg)
  x = T.to_unit_range(np.asarray(fake_batch(99)["rgb"]))
  for role in T.ROLES if hasattr(T, "ROLES") else (*T.GEN_ROLES, *T.DISC_ROLES):
    out = lambda p: models[role].apply({"params": p[role]}, x)
    np.testing.assert_allclose(out(s8.params), out(s1.params), atol=1e-4, err_msg=role)
  assert int(s8.step) == int(s1.step) == 3


# ------------------------------------------------------------------------------ multi-host

def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def worker_env(devices: int, **extra) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", **extra)
  flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
  env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"])
  for k in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    env.pop(k, None)
  env.update(extra)
  return env


class Job:
  """Workers of one `jax.distributed` job started by `start`; `finish` waits for them."""

  def __init__(self, procs, logs, tag: str, deadline: float, timeout: float):
    self.procs, self.logs, self.tag, self.deadline, self.timeout = procs, logs, tag, deadline, timeout


def start(args: list[str], num_processes: int, devices_per_process: int, tmp_path, tag: str,
          timeout: float = 400, env: dict | None = None) -> Job:
  """Starts `num_processes` workers of one `jax.distributed` job on 127.0.0.1 (returns at
  once); `num_processes=0`: one plain process, without jax.distributed (no coordinator, no
  port: it cannot meet another job's workers). Skips (before starting anything) only when this
  machine has no loopback TCP."""
  require_loopback_tcp()
  port = free_port()
  procs, logs = [], []
  for pid in range(max(num_processes, 1)):
    log = open(tmp_path / f"{tag}_{pid}.log", "w+")
    job = dict(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES=str(num_processes),
               JAX_PROCESS_ID=str(pid)) if num_processes else {}
    penv = worker_env(devices_per_process, **job, **(env or {}))
    procs.append(subprocess.Popen([sys.executable, WORKER, *args], cwd=ROOT, env=penv, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True))
    logs.append(log)
  return Job(procs, logs, tag, time.monotonic() + timeout, timeout)


def finish(job: Job) -> list[tuple[int, str]]:
  """Waits for the job's workers; returns [(exit code, log)] per process. On a timeout every
  process is killed (no orphan holds the port) and the test fails with their logs."""
  try:
    for p in job.procs:
      p.wait(timeout=max(1.0, job.deadline - time.monotonic()))
  except subprocess.TimeoutExpired:
    pass
  finally:
    timed_out = [p for p in job.procs if p.poll() is None]
    for p in timed_out:
      os.killpg(p.pid, signal.SIGKILL)
      p.wait()
  out = []
  for p, log in zip(job.procs, job.logs):
    log.seek(0)
    out.append((p.returncode, log.read()))
    log.close()
  if timed_out:
    pytest.fail(f"{job.tag}: worker(s) timed out after {job.timeout:.0f} s\n" + tail(out))
  return out


def launch(args: list[str], num_processes: int, devices_per_process: int, tmp_path, tag: str,
           timeout: float = 400, env: dict | None = None) -> list[tuple[int, str]]:
  """`start` then `finish`: runs one job to its end."""
  return finish(start(args, num_processes, devices_per_process, tmp_path, tag, timeout, env))


def tail(results, n=3000) -> str:
  return "\n".join(f"--- process {i} (rc {rc})\n{log[-n:]}" for i, (rc, log) in enumerate(results))


def require_loopback_tcp() -> None:
  """The one environment condition under which the multi-host tests skip, checked before any
  worker starts: `jax.distributed` talks over TCP on 127.0.0.1, so a sandbox without loopback
  networking cannot run them. Anything that goes wrong after this check is a failure."""
  try:
    with socket.socket() as server:
      server.bind(("127.0.0.1", 0))
      server.listen(1)
      with socket.create_connection(server.getsockname(), timeout=5):
        pass
  except OSError as e:
    pytest.skip(f"no loopback TCP on 127.0.0.1 ({e}): jax.distributed cannot start here")


def assert_all_ready(results, num_processes: int) -> None:
  """Every worker printed `distributed: ready, process i of N` (multihost_worker.announce_ready:
  jax.distributed started and sees all N processes); fails with the workers' logs otherwise."""
  for i, (rc, log) in enumerate(results):
    line = f"distributed: ready, process {i} of {num_processes}"
    assert line in log, f"worker {i} never became ready (rc {rc}; no '{line}')\n" + tail(results)


def load(path) -> dict[str, np.ndarray]:
  with np.load(path) as z:
    return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
  """synthetic_vireid/tiny (the smoke config's dataset), built once (under a second)."""
  from ce2l_jax import stages
  from tests import multihost_worker as mw
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  stages.ensure_data(stages.prepare_config(mw.smoke_config(data_dir)))
  return data_dir


def test_two_hosts_killed_and_resumed_equal_one_host(tmp_path, smoke_data):
  """`run.py --config=configs/smoke.py --config.cyclegan.enabled=false --stages=reid,evaluate`
  on 2 processes × 2 CPU devices (the README's multi-host launch: run.py starts
  jax.distributed from JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID): both are
  SIGKILLed at their 4th batch (after the checkpoint of step 2), rerun (resume: state from the
  shared checkpoint, each process's own data position), trained to step 4 and evaluated. Same
  parameters, BatchNorm statistics, logged losses and test numbers as one process with 4
  devices (`stages.run` here), within float tolerance (cross-process sums run in another
  order)."""
  from tests import multihost_worker as mw
  multi = str(tmp_path / "multi")
  args = ["stage", f"--data_dir={smoke_data}", f"--workdir={multi}"]
  killed = launch(args + ["--kill_at_batch=4"], 2, 2, tmp_path, "killed")
  assert_all_ready(killed, 2)
  assert all(rc == -signal.SIGKILL for rc, _ in killed), tail(killed)
  assert sorted(os.listdir(os.path.join(multi, "reid", "checkpoints"))) == ["2"]
  # One checkpoint, written by both processes: the state once, each one's data position.
  assert sorted(os.listdir(os.path.join(multi, "reid", "checkpoints", "2", "data"))) == [
      "commit_success.txt", "process_0-of-2.json", "process_1-of-2.json"]

  out = str(tmp_path / "multi.npz")
  resumed = launch(args + [f"--out={out}"], 2, 2, tmp_path, "resumed")
  assert_all_ready(resumed, 2)
  assert all(rc == 0 for rc, _ in resumed), tail(resumed)
  for i, (_, log) in enumerate(resumed):
    # Each process built only its half of every batch (P×K = 8 per modality, 4 per process).
    assert f"worker {i}/2: 4 devices, local batch 4" in log, log[-2000:]
  assert "resuming from the checkpoint of step 2" in resumed[0][1]

  single = str(tmp_path / "single")
  local = mw.run_smoke_stages(smoke_data, single, num_devices=4, out=str(tmp_path / "single.npz"))
  assert local == 8

  a, b = load(tmp_path / "single.npz"), load(out)
  assert sorted(a) == sorted(b) and int(a["step"]) == int(b["step"]) == 4
  assert any(k.startswith("batch_stats") for k in a)
  for k in a:
    np.testing.assert_allclose(b[k], a[k], rtol=1e-4, atol=1e-5, err_msg=k)

  def losses(workdir):
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    return {r["step"]: (r["loss"], r["ce"], r["cross"], r["intra"]) for r in rows
            if r["stage"] == "reid" and "loss" in r}

  la, lb = losses(single), losses(multi)
  assert sorted(la) == sorted(lb) == [2, 4]
  for s in la:
    np.testing.assert_allclose(lb[s], la[s], rtol=1e-4, err_msg=f"step {s}")

  ra = json.load(open(os.path.join(single, "results.json")))
  rb = json.load(open(os.path.join(multi, "results.json")))
  assert ra.keys() == rb.keys()
  for row in ra:
    for setting in ra[row]:
      for key, v in ra[row][setting]["mean"].items():
        assert rb[row][setting]["mean"][key] == pytest.approx(v, abs=1e-6), (row, setting, key)


def test_float64_harness_computes_the_cyclegan_step_in_float64():
  """The premise of the float64 comparison below: with `multihost_worker.use_float64_cyclegan`
  and `cyclegan.compute_dtype=float64`, the traced CycleGAN train step makes no float32,
  bfloat16 or float16 array anywhere (`multihost_worker.narrow_float_arrays`; scalars aside).
  It broke silently once: the models' compute dtype (float32 by default) cast the float64
  parameters and images back to float32, and the two-host test then compared float32 runs of
  two device layouts at 1e-9 (docs/notes/scale_and_faults.md, "Two-host CycleGAN: the
  cause"). A fresh process: x64 and the harness's patches stay out of this one."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  res = subprocess.run([sys.executable, WORKER, "float64_check"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
  assert res.returncode == 0 and "float64 check: ok" in res.stdout, (res.stdout + res.stderr)[-3000:]


def test_two_hosts_cyclegan_killed_and_resumed_equal_one_host(tmp_path, smoke_data):
  """`run.py --config=configs/smoke.py --stages=cyclegan` on 2 processes × 2 CPU devices: both
  exit right after the checkpoint of step 2 (stages' CE2L_KILL_AFTER_CHECKPOINT hook), rerun
  (resume: state and history pools from the shared checkpoint, each process's own data
  position), trained to step 4 (the pools of 4 are full from step 1 on, so steps 2-4 swap
  images at random slots). The four networks and every logged loss equal those of one
  uninterrupted process with 4 devices.

  All three runs compute in float64 (multihost_worker.use_float64_cyclegan with
  `cyclegan.compute_dtype=float64`; test_float64_harness_computes_the_cyclegan_step_in_float64
  checks that no array of the step is narrower): in float32 the same
  computation on two device layouts differs by up to 1e-3 in parameters after 4 steps even
  within one process (1 × 2 vs 1 × 4 devices; 2 × 2 agrees with 1 × 2 to 1e-7), because
  Adam turns rounding noise of near-zero gradients (conv biases before an instance norm) into
  ±lr steps and XLA's float32 code differs per layout. In float64 the 2-process and 1-process
  runs agree to ~1e-16 in losses and parameters, and ~3e-11 in those biases (Adam: lr × noise
  / eps = 2e-4 × 1e-15 / 1e-8); measured in docs/notes/scale_and_faults.md. So the bounds
  below (1e-9) hold with a margin of 30× and any real difference (another batch, pool slot,
  key or lost position) shows by orders of magnitude."""
  from ce2l_jax import stages
  from ce2l_jax.trainers import cyclegan as T
  args = ["cyclegan_stage", f"--data_dir={smoke_data}", "--float64"]
  single, multi = str(tmp_path / "single"), str(tmp_path / "multi")
  # The reference (one plain process, no jax.distributed) runs alongside the killed run.
  reference = start(args + [f"--workdir={single}", f"--out={tmp_path / 'single.npz'}"], 0, 4,
                    tmp_path, "cg_single", timeout=900)
  killed = launch(args + [f"--workdir={multi}"], 2, 2, tmp_path, "cg_killed", timeout=900,
                  env={stages.KILL_ENV: "cyclegan"})
  assert_all_ready(killed, 2)
  # Process 0 (the coordinator) exits right after the checkpoint; process 1 exits the same way
  # or, while it is still in orbax's closing barrier, aborts when the coordinator is gone.
  assert killed[0][0] == stages.KILLED_EXIT_CODE and killed[1][0] != 0, tail(killed)
  ckpts = os.path.join(multi, "cyclegan", "checkpoints")
  assert sorted(os.listdir(ckpts)) == ["2"]
  assert "commit_success.txt" in os.listdir(os.path.join(ckpts, "2"))
  assert sorted(os.listdir(os.path.join(ckpts, "2", "data"))) == [
      "commit_success.txt", "process_0-of-2.json", "process_1-of-2.json"]

  out = str(tmp_path / "multi.npz")
  resumed = launch(args + [f"--workdir={multi}", f"--out={out}"], 2, 2, tmp_path, "cg_resumed",
                   timeout=900)
  assert_all_ready(resumed, 2)
  assert all(rc == 0 for rc, _ in resumed), tail(resumed)
  assert "resuming from the checkpoint of step 2" in resumed[0][1], resumed[0][1][-2000:]
  ref = finish(reference)
  assert_all_ready(ref, 1)
  assert ref[0][0] == 0, tail(ref)

  def losses(workdir):
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    return {r["step"]: np.array([r[n] for n in T.LOSS_NAMES]) for r in rows
            if r["stage"] == "cyclegan" and all(n in r for n in T.LOSS_NAMES)}

  # The window means of steps 1-2 (logged by the killed run before its checkpoint) first, so a
  # failure says whether the runs parted before the kill or after the resume; then steps 3-4.
  la, lb = losses(single), losses(multi)
  assert sorted(la) == [2, 4] and sorted(lb) == [2, 4], (la, lb)
  for s in la:  # gradient norms included
    when = "before the kill (steps 1-2)" if s == 2 else "after the resume (steps 3-4)"
    np.testing.assert_allclose(lb[s], la[s], rtol=1e-9, atol=1e-12, err_msg=f"step {s}: {when}")

  a, b = load(tmp_path / "single.npz"), load(out)
  assert sorted(a) == sorted(b) and int(a["step"]) == int(b["step"]) == 4
  assert all(a[k].dtype == np.float64 for k in a if k != "step")
  for k in a:  # every parameter, the biases before an instance norm included
    np.testing.assert_allclose(b[k], a[k], rtol=1e-9, atol=1e-9, err_msg=k)


def test_two_hosts_convert_equals_one_host(tmp_path):
  """The convert stage on 2 processes × 2 devices (each converts every other chunk on its own
  devices, process 0 builds the dataset): the same records as one process (labels and files
  exactly; pixels within 1 grey level: the generator runs on another device layout)."""
  from ce2l_jax import convert
  from tests import multihost_worker as mw
  multi = str(tmp_path / "multi")
  res = launch(["convert", f"--workdir={multi}"], 2, 2, tmp_path, "convert")
  assert_all_ready(res, 2)
  assert all(rc == 0 for rc, _ in res), tail(res)
  assert "worker 0/2: convert: 24 converted now" in res[0][1]  # chunks 0, 2, 4 (8 + 8 + 8)
  assert "worker 1/2: convert: 16 converted now" in res[1][1]  # chunks 1, 3
  config, source, gens = mw.convert_inputs()
  single = str(tmp_path / "single")
  convert.convert_dataset(config, single, gen_params=gens, source=source, progress=False)
  a, b = convert.open_converted(single), convert.open_converted(multi)
  assert len(a) == len(b) == len(source)
  for i in range(len(a)):
    ra, rb = a[i], b[i]
    assert (ra["pid"], ra["camid"], ra["modality"], ra["file"]) == (rb["pid"], rb["camid"], rb["modality"], rb["file"])
    ia = np.asarray(convert.aug_lib.decode(ra["image"]), np.int16)
    ib = np.asarray(convert.aug_lib.decode(rb["image"]), np.int16)
    assert ia.shape == ib.shape and np.abs(ia - ib).max() <= 1, i
