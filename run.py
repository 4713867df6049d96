"""CE²L end to end: CycleGAN → conversion → re-ID training → evaluation.

  python run.py --config=configs/sysu.py --workdir=workdirs/sysu
  python run.py --config=configs/synthetic.py --workdir=/tmp/demo --stages=reid,evaluate
  python run.py --config=configs/regdb.py --config.data.trial=3 --workdir=workdirs/regdb3
  python run.py --config=configs/sysu.py --config.cyclegan.enabled=false --workdir=workdirs/sysu_noconv

Each stage writes under `<workdir>/<stage>/`, is skipped when finished and resumes from its last
checkpoint when interrupted. `<workdir>/config.json` is written at start; resuming a workdir with
a different config is refused (names the differing keys) unless `--force`. The stages are in
`ce2l_jax/stages.py`; the results table goes to `<workdir>/results.md` and `results.json`.
Config files are modules of the `configs` package (this file's folder is on `sys.path` when it
runs, so `from configs import base` inside them just works).
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

DEFAULT_CONFIG = "configs/synthetic.py"
_CONFIG = config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "Config file (see configs/).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and results go.")
_STAGES = flags.DEFINE_list("stages", ["cyclegan", "convert", "reid", "evaluate"],
                            "Stages to run, in order: cyclegan, convert, reid, evaluate.")
_FORCE = flags.DEFINE_bool("force", False, "Run even if the workdir was made with another config.")


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]} (flags are --config, --config.<key>=..., --workdir, "
          "--stages, --force)")
  if not flags.FLAGS["verbosity"].present:  # library INFO logs (orbax, TFDS) only on request: -v 0
    logging.set_verbosity(logging.WARNING)
  from ce2l_jax import parallel, stages
  # Multi-host: one process per host, with JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
  # JAX_PROCESS_ID set (README, "Multi-host"); nothing happens without them.
  parallel.initialize_distributed()
  _report_devices(_CONFIG.value, _STAGES.value)
  try:
    stages.run(_CONFIG.value, _WORKDIR.value, _STAGES.value, force=_FORCE.value)
  except stages.UserError as e:
    _fail(str(e))
  except (ValueError, FileNotFoundError) as e:
    # Bad input the libraries found (batch vs device count, P vs identities, a checkpoint of
    # another model, pretrained weights of the wrong shapes, ...): their message, no traceback.
    if flags.FLAGS["verbosity"].present:
      raise
    _fail(f"{e} (-v 0 shows the traceback)")


# Models and widths whose training takes days on a CPU (docs/benchmarks.md, "Train steps").
_PAPER_SCALE_REID = ("bdtr_alexnet", "resnet50_agw")


def _report_devices(config, stages) -> None:
  """Prints the backend and devices in use; warns when a paper-scale config trains on a CPU."""
  import jax
  if jax.process_index() != 0:
    return
  devices = jax.devices()
  print(f"jax {jax.__version__} on {jax.default_backend()}: {len(devices)} device(s), "
        f"{devices[0].device_kind}" + (f", {jax.process_count()} processes"
                                       if jax.process_count() > 1 else ""), flush=True)
  if jax.default_backend() != "cpu":
    return
  big = []
  if "reid" in stages and config.reid.get("model") in _PAPER_SCALE_REID:
    big.append(f"reid.model={config.reid.model}")
  if "cyclegan" in stages and config.cyclegan.get("enabled") and config.cyclegan.get("ngf", 0) >= 64:
    big.append(f"cyclegan.ngf={config.cyclegan.ngf}")
  if big:
    print(f"warning: paper-scale settings ({', '.join(big)}) are about to train on a CPU (days "
          "per run); "
          "on an NVIDIA GPU install jax's CUDA build: pip install -e '.[cuda]' (or make venv "
          "CUDA=1)", flush=True)  # stdout: stderr is kept for the one-line errors


def _config_path(argv) -> str:
  for i, a in enumerate(argv):
    if a.startswith("--config="):
      return a.split("=", 1)[1]
    if a == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return DEFAULT_CONFIG


def _precheck(argv):
  """One-line errors for config typos/types before absl prints a traceback."""
  from ce2l_jax.config_check import UserError, check_overrides, load_config_file
  try:
    check_overrides(load_config_file(_config_path(argv)), argv)
  except UserError as e:
    _fail(str(e))


if __name__ == "__main__":
  _precheck(sys.argv)
  flags.mark_flag_as_required("workdir")
  try:
    app.run(main)
  except KeyboardInterrupt:
    print("interrupted: rerun the same command to resume from the last checkpoint", file=sys.stderr)
    sys.exit(130)
