"""A small trained workdir for the search and export tests (run.py on configs/smoke.py).

`trained_workdir(tmp_path_factory)` runs `run.py --stages=reid` once per test process (no
CycleGAN, 2 steps of the one-block resnet_tiny on synthetic_vireid/tiny, ~20 s on 2 shared CPU
cores) and returns (workdir, data_dir); later calls in the same process reuse it.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CACHE = {}


def clean_env(**extra):
  """The environment of a user's shell: one real CPU device (no fake devices), this tree first."""
  e = dict(os.environ, JAX_PLATFORMS="cpu", **extra)
  e["XLA_FLAGS"] = " ".join(f for f in e.get("XLA_FLAGS", "").split()
                            if "xla_force_host_platform_device_count" not in f)
  e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
  return e


def trained_workdir(tmp_path_factory):
  if "w" not in _CACHE:
    base = tmp_path_factory.mktemp("trained")
    workdir, data_dir = str(base / "w"), str(base / "tfds")
    cmd = [sys.executable, os.path.join(ROOT, "run.py"), "--config=configs/smoke.py",
           f"--config.data.data_dir={data_dir}", "--config.cyclegan.enabled=false",
           "--config.reid.num_steps=2", "--stages=reid", f"--workdir={workdir}"]
    p = subprocess.run(cmd, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"training the test workdir failed:\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}"
    _CACHE["w"] = (workdir, data_dir)
  return _CACHE["w"]
