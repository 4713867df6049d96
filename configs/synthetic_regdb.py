r"""The RegDB twin: CE²L on `synthetic_vireid/regdb_trial<N>`, RegDB's protocol, on a CPU.

One visible and one thermal camera (a co-registered dual-camera rig, as RegDB's), 10 + 10 images
of each of 412 synthetic identities, split 206 / 206 by each of RegDB's ten trials (one TFDS
builder config per trial, built on first use). Thermal is long-wave infrared from a physical
model (data version 1.2.0, `ce2l_jax.data.synthetic`, docs/notes/thermal_twin.md): each surface
shows its temperature — skin hottest, a garment between skin and air by its insulation (drawn with
its kind: sleeves, jacket, shorts, skirt), warmed by the sun in proportion to its absorptance (dark
garments warmer) —, fabric emissivity ~0.9 whatever the dye (prints nearly invisible), weather per
pass, a microbolometer camera with plateau-equalization gain. So thermal shares the silhouette and
the garment kind with the visible image, and garment luminance only partly (in the sun), not
colour. Evaluated both directions (visible→thermal, thermal→visible), every trial in turn,
pooled.

The recipe (docs/notes/thermal_twin.md §6c, §10): configs/synthetic.py's (pretrained width-16
`resnet_tiny` at 128×64, small CycleGAN, a quarter of the draws converted, ρ2 0.65, flip-averaged
test features) plus CAJ's greyscale augmentation (`ChannelAdapGray`, Ye et al. ICCV 2021): half
of the visible training images become one of their channels or their grey image, so the visible
features cannot rest on colour alone, the cue the thermal camera does not share.

  python run.py --config=configs/synthetic_regdb.py --workdir=workdirs/regdb_twin           # 10 trials
  python run.py --config=configs/synthetic_regdb.py:reduced --workdir=workdirs/regdb_twin1  # trial 1, shorter
  python run.py --config=configs/synthetic_regdb.py:reduced,res128,noconv --workdir=...     # §6c's runs

Options: `res128` = the recipe without the greyscale augmentation (§6c's first runs); `res64` =
the recipe of the tables measured until 2026-12-03 (width-8 `resnet_tiny` from its file at
64×32, an equal share of real and converted draws, ρ2 0.6; §6a–§6b).

Measured (2026-12-03, trial 1, 750 re-ID steps, no conversion, seeds 0–2; rank-1 / mAP %,
visible→thermal; chance 0.49 %): `res64` (1,500 steps, harness) 2.17 ± 0.29 / 2.91, `res128`
2.90 ± 0.64 / 3.84 ± 0.40, the recipe **4.68 ± 0.84 / 5.26 ± 0.65** (thermal→visible 3.54 ±
1.04 / 5.01 ± 0.76); with conversion (CE²L, the default) 3.83 ± 0.07 / 4.05 ± 0.16. Greyscale on every visible image (prob 1.0) 1.46, plus random erasing 0.5
4.56, P=8 × K=4 4.27 (seed 0; the recipe's seed 0: 5.34). It learns, barely: while the same
network retrieves visible→visible 99.7 % and thermal→thermal 71 % of the unseen people, what the
thermal image shares with the visible one (silhouette, garment kind; garment luminance only in
the sun) is weak (§6a: the closed-set control, test people seen in training, reaches 9–14 %).
The ablation tables: docs/results/synthetic_tables_regdb.md (`benchmarks/synthetic_tables.py
--twins=regdb --reduced`, the script `make tables` runs).
"""

import ml_collections

from configs import base
from configs import synthetic


# ℓ_intra's margin of the width-8 recipe (`res64`): D(positive, hardest cross negative) within a
# modality rises to 0.57–0.61 over training on this twin (0.50–0.54 on the SYSU twin), so width 8's
# ρ2 = 0.45 left ℓ_intra active on only 4 % of anchors by step 1,500 (0.46 → 0.04); ρ2 = 0.6 keeps
# it acting (0.55 → 0.18), rank-1 no different (thermal_twin.md §7). The width-16 recipe takes
# configs/synthetic.py's 0.65, set the same way for its distances.
INTRA_MARGIN_W8 = 0.6
# CAJ's ChannelAdapGray on half of the visible images (slot 0).
CHANNEL_AUG = dict(mode="adap_gray", prob=0.5, slots=(0,))
OPTIONS = ("res128", "res64")


def get_config(arg=None):
  reduced, rest = synthetic.split_arg(arg)
  opts = [o for o in rest.split(",") if o]
  chosen = [o for o in opts if o in OPTIONS]
  if len(chosen) > 1:
    raise ValueError(f"one of {', '.join(OPTIONS)} at most, got {', '.join(chosen)}")
  rest = ",".join(o for o in opts if o not in OPTIONS)
  c = synthetic.get_config("reduced" if reduced else None)  # the demo's recipe
  c.data.name = "synthetic_vireid/regdb"
  c.data.protocol = "regdb"
  if reduced:
    c.data.trials = (1,)
  if "res64" in chosen:  # the width-8, 64×32 recipe of the tables until 2026-12-03
    c.init = synthetic.PRETRAINED_W8
    c.reid.model_kwargs = ml_collections.ConfigDict()
    c.input.update(synthetic.INPUT_64)
    c.input.converted_share = synthetic.EQUAL_SHARE
    c.reid.intra_margin = INTRA_MARGIN_W8
  elif not chosen:
    c.input.channel_aug.update(CHANNEL_AUG)
  return base.apply_arg(c, rest)
