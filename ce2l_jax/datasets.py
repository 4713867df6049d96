"""The datasets a run reads: built, or built now (synthetic), or a one-line error with the build
command (real). The `data` step of `stages.run`.

  ensure_data(config)       every dataset of the config (each RegDB trial's) is built in
                            `config.data.data_dir`; process 0 builds first, the others wait
"""

from __future__ import annotations

import glob
import os
import time

import jax
import ml_collections

from ce2l_jax.config_check import UserError, trial_config, trials_of
from ce2l_jax.data import synthetic


def dataset_is_built(name: str, data_dir: str) -> bool:
  """True when `<data_dir>/<name>/<version>/dataset_info.json` exists (no TFDS import). For a
  synthetic config, only its current data version counts (`synthetic.data_version`): an older
  folder is rebuilt, not read."""
  base = name.split(":")[0]
  version = "*"
  builder, _, config = base.partition("/")
  if builder == "synthetic_vireid" and config in synthetic.CONFIGS:
    version = synthetic.data_version(config)
  return bool(glob.glob(os.path.join(data_dir, base, version, "dataset_info.json")))


def _build_hint(name: str, data_dir: str) -> str:
  base, _, config = name.partition("/")
  folder = os.path.join("tfds_builders", base)
  return (f"python -m ce2l_jax.tfds_build {folder}" + (f" --config={config}" if config else "")
          + f" --manual_dir=<folder holding the released dataset> --data_dir={data_dir}")


def ensure_data(config: ml_collections.ConfigDict) -> None:
  """The `data` step: builds a missing synthetic dataset; a missing real one is a UserError.

  Several processes: process 0 builds first, the others wait for it (a shared disk then holds
  the dataset; two concurrent builds into one folder collide) and build only what they still
  miss (hosts with their own disks).
  """
  data_dir = config.data.data_dir
  synthetic = []
  for t in trials_of(config):
    name = trial_config(config, t).data.name
    if dataset_is_built(name, data_dir):
      continue
    base, _, cfg_name = name.partition("/")
    if base == "synthetic_vireid":
      synthetic.append((name, cfg_name or "small"))
      continue
    raise UserError(f"dataset {name!r} is not built in {data_dir}: build it with `"
                    f"{_build_hint(name, data_dir)}` (docs/notes/real_datasets.md), or set "
                    "--config.data.data_dir")
  multi = jax.process_count() > 1
  if multi:
    from jax.experimental import multihost_utils
  if multi and jax.process_index() != 0:
    multihost_utils.sync_global_devices("ce2l_ensure_data")
  for name, cfg_name in synthetic:
    if not dataset_is_built(name, data_dir):
      build_synthetic(cfg_name, data_dir)
  if multi and jax.process_index() == 0:
    multihost_utils.sync_global_devices("ce2l_ensure_data")


def build_synthetic(config_name: str, data_dir: str) -> None:
  """Builds `synthetic_vireid/<config_name>` into `data_dir` (seconds; array_record, no TF)."""
  from tfds_builders.synthetic_vireid.synthetic_vireid_dataset_builder import SyntheticVireid
  names = [c.name for c in SyntheticVireid.BUILDER_CONFIGS]
  if config_name not in names:
    raise UserError(f"synthetic_vireid has no config {config_name!r}; configs: {', '.join(names)}")
  print(f"data: building synthetic_vireid/{config_name} into {data_dir} (first run only)", flush=True)
  t = time.perf_counter()
  SyntheticVireid(config=config_name, data_dir=data_dir, file_format="array_record").download_and_prepare()
  print(f"data: built in {time.perf_counter() - t:.1f} s", flush=True)
