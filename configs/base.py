"""CE²L's method, dataset-agnostic: every section of a run config with the modules' defaults.

Not run directly: `configs/sysu.py`, `regdb.py` and `synthetic.py` add a dataset and derive from
this file (and `sysu_resnet.py`, `smoke.py` from those), overriding only what differs.

Sections (docs/architecture.md):
  data      name (TFDS name), data_dir, protocol 'sysu' | 'regdb', trial / trials (RegDB),
            train_split
  input     `ce2l_jax.data.pipeline.default_input_config("paper")`: 256 → crop 227, P=64 K=1
  cyclegan  `ce2l_jax.trainers.cyclegan.default_config()` (`enabled=False`: no-conversion baseline)
  convert   `ce2l_jax.convert.default_config()`
  reid      `ce2l_jax.trainers.reid.default_config("paper")`: BDTR AlexNet, SGD lr 1e-3,
            ℓ_cross + 0.1 ℓ_intra + LSR on converted images
  eval      `ce2l_jax.evaluate.default_config()`: SYSU all/indoor × single/multi, 10 trials,
            RegDB both directions; raw-pixel baseline row
  mesh      num_devices (unset: every device)
  seed, resume, init, name (the results table's row name; '' = derived from the config)

`get_config(arg)` takes big_vision-style options, comma-separated: `runlocal` shrinks every
stage to a few steps (a dry run of the whole pipeline on the configured dataset, minutes on a
CPU), `trial=N` sets `data.trial`, `noconv` gives the no-conversion baseline
(`cyclegan.enabled=False`). Example:
  python run.py --config=configs/sysu.py:runlocal --workdir=/tmp/sysu_dry
  python run.py --config=configs/sysu.py:noconv --workdir=workdirs/sysu_noconv
"""

from __future__ import annotations

import os

import ml_collections

from ce2l_jax import convert
from ce2l_jax import evaluate
from ce2l_jax.data import pipeline
from ce2l_jax.trainers import cyclegan
from ce2l_jax.trainers import reid

REGDB_TRIALS = tuple(range(1, 11))


def default_data_dir() -> str:
  """`$TFDS_DATA_DIR`, else `~/tensorflow_datasets` (expanded)."""
  return os.path.expanduser(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")


def parse_arg(arg: str | None) -> ml_collections.ConfigDict:
  """'runlocal,trial=3' → {runlocal: True, trial: 3} (big_vision's `parse_arg`, simplified)."""
  out = ml_collections.ConfigDict({"runlocal": False, "trial": 0, "noconv": False})
  for item in filter(None, (s.strip() for s in (arg or "").split(","))):
    key, eq, value = item.partition("=")
    if key not in out:
      raise ValueError(f"unknown config argument {key!r} in {arg!r}; known: {', '.join(out)}")
    if isinstance(out[key], bool):
      out[key] = value.lower() in ("1", "true", "yes") if eq else True
    else:
      out[key] = type(out[key])(value)
  return out


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The composed defaults (CE²L paper method, no dataset chosen: `data.name` is '')."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.resume = ""                  # another run's folder: start the re-ID model from its checkpoint
  c.init = ""                    # pretrained weights file (ce2l_jax.models.pretrained)
  c.name = ""                    # row name in the results table; '' = derived from the config

  c.data = ml_collections.ConfigDict()
  c.data.name = ""               # TFDS name: sysu_mm01 | regdb | synthetic_vireid/<config>
  c.data.data_dir = default_data_dir()
  c.data.protocol = "sysu"       # sysu | regdb
  c.data.trial = 0               # RegDB: 1..10 = that trial only; 0 = every trial in `trials`
  c.data.trials = REGDB_TRIALS   # RegDB trials run in turn when trial = 0
  c.data.train_split = "train"

  c.input = pipeline.default_input_config("paper")
  c.cyclegan = cyclegan.default_config()
  c.cyclegan.seed = c.get_ref("seed")
  c.convert = convert.default_config()
  c.reid = reid.default_config("paper")
  c.eval = evaluate.default_config()
  c.eval.protocol = c.data.get_ref("protocol")
  c.mesh = ml_collections.ConfigDict()
  c.mesh.num_devices = ml_collections.config_dict.placeholder(int)  # None: every device
  return apply_arg(c, arg)


def apply_arg(c: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
  """The `get_config` argument's options; derived configs call it last, after their overrides."""
  args = parse_arg(arg)
  if args.trial:
    c.data.trial = args.trial
  if args.noconv:  # the no-conversion baseline (= --config.cyclegan.enabled=false)
    c.cyclegan.enabled = False
  if args.runlocal:
    runlocal(c)
  return c


def runlocal(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks every stage to a few steps: checks the whole pipeline, numbers are meaningless."""
  c.cyclegan.update(dict(num_steps=4, decay_start=2, log_every=1, eval_every=4,
                         checkpoint_every=2, num_heldout=8, classifier_images=32,
                         classifier_steps=10, num_samples=4))
  c.input.p = 4
  c.reid.update(dict(num_steps=4, log_every=1, checkpoint_every=2))
  c.eval.num_trials = 1
  c.data.trials = c.data.trials[:2]
  return c
