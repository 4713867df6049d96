"""The smoke CycleGAN on several process × device layouts: do they compute the same thing?

  .venv/bin/python benchmarks/cyclegan_layouts.py [--steps 4] [--workdir /tmp/ce2l_cg_layouts]
      [--layouts 1x4 1x2 2x2] [--dtypes float32 float64]

configs/smoke.py's CycleGAN (ngf 4 at 32×16, batch 8, pool 4, Adam lr 2e-4 with β1 0.5) on
synthetic_vireid/tiny, `--steps` train steps through the stage's own stream
(`cyclegan.build_train_iterator`) and compiled step (`cyclegan.step_functions`), in a fresh
process per layout: `PxD` is P processes (jax.distributed over 127.0.0.1) × D CPU devices each,
every layout a mesh of all its P·D devices. Each run saves the local batches, every step's
logged terms and the parameters after every step; the script then compares every layout with
the first one: the global batches (equal or not), the largest relative difference of the
losses (`*_grad_norm` apart), of the gradient norms, and the largest absolute difference of
the parameters, the conv biases right before an instance norm apart (their true gradient is 0).
float64 runs go through tests/multihost_worker.use_float64_cyclegan.

Result and its reading: docs/notes/scale_and_faults.md ("Two-host CycleGAN").
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def cancelled(key: str) -> bool:
  """A conv bias right before an instance norm (not the PatchGAN's first conv, not the output)."""
  names = re.findall(r"\['([^']+)'\]", key)
  return bool(names) and names[-1] == "bias" and names[-2] not in ("head", "out", "conv0")


def run_layout(data_dir: str, out: str, steps: int, float64: bool) -> None:
  """One process of a layout (called in the child)."""
  if float64:
    from tests import multihost_worker as mw
    mw.use_float64_cyclegan()
  import jax
  from ce2l_jax import parallel, stages
  from ce2l_jax.trainers import cyclegan as T
  from tests import multihost_worker as mw
  parallel.initialize_distributed()
  config = stages.prepare_config(mw.smoke_cyclegan_config(data_dir))
  mesh = parallel.make_mesh()
  cfg = config.cyclegan
  it = T.build_train_iterator(config, mesh)
  fns = T.step_functions(cfg, mesh)
  state = T.init_train_state(cfg, fns.models, fns.tx_g, fns.tx_d, mesh)
  host = lambda a: np.asarray(a.addressable_shards[0].data)
  rec = {}
  for i in range(1, steps + 1):
    batch = next(it)
    rec[f"rgb{i}"], rec[f"ir{i}"] = batch["rgb"], batch["ir"]
    state, m = fns.train_step(state, parallel.shard_batch(batch, mesh))
    for k in T.LOSS_NAMES:
      rec[f"m{i}_{k}"] = host(m[k])
    for path, leaf in jax.tree_util.tree_leaves_with_path(state.params):
      rec[f"s{i}params" + jax.tree_util.keystr(path)] = host(leaf)
  np.savez(f"{out}.p{jax.process_index()}.npz", **rec)


def launch(layout: str, data_dir: str, out: str, steps: int, dtype: str) -> None:
  procs, devices = (int(v) for v in layout.split("x"))
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  children = []
  for pid in range(procs):
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT,
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    for k in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
      env.pop(k, None)
    if procs > 1:
      env.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES=str(procs),
                 JAX_PROCESS_ID=str(pid))
    cmd = [sys.executable, __file__, "--child", out, "--data_dir", data_dir, "--steps", str(steps),
           "--dtypes", dtype]
    children.append(subprocess.Popen(cmd, env=env))
  for c in children:
    if c.wait(timeout=1800):
      sys.exit(f"{layout} {dtype}: a process exited with {c.returncode}")


def load(out: str, procs: int) -> dict[str, np.ndarray]:
  parts = [dict(np.load(f"{out}.p{p}.npz")) for p in range(procs)]
  rec = dict(parts[0])
  for k in rec:
    if re.fullmatch(r"(rgb|ir)\d+", k):
      rec[k] = np.concatenate([p[k] for p in parts])
  return rec


def compare(ref: dict, other: dict, steps: int) -> list[str]:
  rows = []
  for i in range(1, steps + 1):
    same = all(np.array_equal(ref[f"{k}{i}"], other[f"{k}{i}"]) for k in ("rgb", "ir"))
    rel = {k[len(f"m{i}_"):]: float(abs(other[k] - ref[k]) / max(abs(ref[k]), 1e-30))
           for k in ref if k.startswith(f"m{i}_")}
    losses = max(v for k, v in rel.items() if "grad_norm" not in k)
    norms = max(v for k, v in rel.items() if "grad_norm" in k)
    keys = [k for k in ref if k.startswith(f"s{i}params")]
    p = max(float(np.max(np.abs(other[k] - ref[k]))) for k in keys if not cancelled(k))
    c = max(float(np.max(np.abs(other[k] - ref[k]))) for k in keys if cancelled(k))
    rows.append(f"| {i} | {'equal' if same else 'DIFFERENT'} | {losses:.2g} | {norms:.2g} | {p:.2g} | {c:.2g} |")
  return rows


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument("--steps", type=int, default=4)
  ap.add_argument("--workdir", default="/tmp/ce2l_cg_layouts")
  ap.add_argument("--data_dir", default="")
  ap.add_argument("--layouts", nargs="+", default=["1x4", "1x2", "2x2"])
  ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
  ap.add_argument("--child", default="")
  args = ap.parse_args()
  data_dir = args.data_dir or os.path.join(args.workdir, "tfds")
  if args.child:
    run_layout(data_dir, args.child, args.steps, args.dtypes == ["float64"])
    return
  os.makedirs(args.workdir, exist_ok=True)
  from ce2l_jax import stages
  from tests import multihost_worker as mw
  stages.ensure_data(stages.prepare_config(mw.smoke_cyclegan_config(data_dir)))
  for dtype in args.dtypes:
    runs = {}
    for layout in args.layouts:
      out = os.path.join(args.workdir, f"{dtype}_{layout}")
      launch(layout, data_dir, out, args.steps, dtype)
      runs[layout] = load(out, int(layout.split("x")[0]))
    ref = args.layouts[0]
    for layout in args.layouts[1:]:
      print(f"\n{dtype}: {layout} vs {ref}\n\n| step | global batch | losses (rel.) | grad norms (rel.) "
            "| params (abs.) | biases before IN (abs.) |\n| --- | --- | --- | --- | --- | --- |")
      print("\n".join(compare(runs[ref], runs[layout], args.steps)))


if __name__ == "__main__":
  main()
