r"""The RegDB twin: CE²L on `synthetic_vireid/regdb_trial<N>`, RegDB's protocol, on a CPU.

One visible and one thermal camera (a co-registered dual-camera rig, as RegDB's), 10 + 10 images
of each of 412 synthetic identities, split 206 / 206 by each of RegDB's ten trials (one TFDS
builder config per trial, built on first use); thermal infrared is body heat and per-garment
emissivity, independent of colour (`ce2l_jax.data.synthetic`). Evaluated both directions
(visible→thermal, thermal→visible), every trial in turn, pooled. Everything else is
configs/synthetic.py's recipe (pretrained `resnet_tiny` at 64×32, small CycleGAN).

  python run.py --config=configs/synthetic_regdb.py --workdir=workdirs/regdb_twin           # 10 trials
  python run.py --config=configs/synthetic_regdb.py:reduced --workdir=workdirs/regdb_twin1  # trial 1, shorter

Measured (docs/notes/synthetic_benchmark.md): the thermal twin is much harder than the
near-infrared one; the recipe learns it only a little (a few times chance).
"""

from configs import base
from configs import synthetic


def get_config(arg=None):
  reduced, rest = synthetic.split_arg(arg)
  c = synthetic.get_config("reduced" if reduced else None)
  c.data.name = "synthetic_vireid/regdb"
  c.data.protocol = "regdb"
  if reduced:
    c.data.trials = (1,)
  return base.apply_arg(c, rest)
