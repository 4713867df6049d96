"""CE²L's method, dataset-agnostic: every section of a run config with the modules' defaults.

Not run directly: `configs/sysu.py`, `regdb.py` and `synthetic.py` add a dataset and derive from
this file (and `sysu_resnet.py`, `smoke.py` from those), overriding only what differs.

Sections (docs/architecture.md):
  data      name (TFDS name), data_dir, protocol 'sysu' | 'regdb', trial / trials (RegDB),
            train_split
  input     the paper's values (256 → crop 227, P=64 K=1) over `pipeline.default_input_config()`
  cyclegan  the reference CycleGAN at 256×128 (`enabled=False`: no-conversion baseline)
  convert   `ce2l_jax.convert.default_config()`
  reid      BDTR two-stream AlexNet, SGD lr 1e-3,
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

  # The paper's input (CE²L §4 / BDTR): P=64 identities × K=1 image per modality, resize 256×256
  # → random crop 227×227, no flip, no erasing; test images resized to 227×227.
  c.input = pipeline.default_input_config()
  c.input.update(dict(p=64, k=1, resize=(256, 256), pad=0, crop=(227, 227), flip=False,
                      image_size=(227, 227)))
  c.input.random_erasing.prob = 0.0

  # The CycleGAN (Zhu et al. 2017, the reference implementation's defaults) at 256×128.
  c.cyclegan = ml_collections.ConfigDict()
  c.cyclegan.enabled = True
  c.cyclegan.image_size = (256, 128)   # (H, W), multiples of 4; the generator's working size
  c.cyclegan.ngf = 64
  c.cyclegan.ndf = 64
  c.cyclegan.n_blocks = 9              # 9 at 256 px, 6 at 128 px (the reference's resnet_9/6blocks)
  c.cyclegan.n_layers_d = 3            # 3 → 70×70 PatchGAN
  c.cyclegan.init_std = 0.02           # N(0, 0.02) weights, zero biases
  c.cyclegan.compute_dtype = "float32"  # float32 | bfloat16 (GPU mixed precision) | float64 (x64 only)
  c.cyclegan.batch_size = 1            # global batch per modality (reference: 1); multiple of the mesh size
  c.cyclegan.num_steps = 200_000
  c.cyclegan.decay_start = 100_000     # lr constant before, linear to zero at num_steps
  c.cyclegan.lr = 2e-4
  c.cyclegan.beta1 = 0.5
  c.cyclegan.beta2 = 0.999
  c.cyclegan.lambda_cycle = 10.0
  c.cyclegan.lambda_identity = 0.5     # × lambda_cycle
  c.cyclegan.pool_size = 50            # generated images kept per direction; 0 = no pool
  c.cyclegan.load_size = ()            # () = image_size; larger (H, W) = resize then random crop (reference: 286 → 256)
  c.cyclegan.flip = True
  c.cyclegan.rgb_cameras = ()          # () = every visible camera; e.g. (1,) with ir_cameras=(3,) for a pair
  c.cyclegan.ir_cameras = ()
  c.cyclegan.log_every = 100
  c.cyclegan.eval_every = 5000         # sample grid + held-out cycle L1
  c.cyclegan.checkpoint_every = 5000
  c.cyclegan.max_to_keep = 3
  c.cyclegan.progress = True           # tqdm bar (process 0)
  c.cyclegan.nan_policy = "stop"       # a NaN/Inf loss or updated parameter: stop (name step, term) | skip
  c.cyclegan.num_samples = 8           # rows of the sample grid
  c.cyclegan.heldout_split = "test"    # held-out images for the end-of-stage quality numbers
  c.cyclegan.num_heldout = 256         # per modality
  c.cyclegan.classifier_images = 2000  # real training images per modality for the modality classifier
  c.cyclegan.classifier_steps = 300
  c.cyclegan.fast_compile = False      # CPU smoke runs: skip XLA's LLVM optimisation (faster compiles)
  c.cyclegan.seed = c.get_ref("seed")

  c.convert = convert.default_config()

  # Re-ID: the paper's BDTR two-stream AlexNet with SGD; the CE²L losses.
  c.reid = ml_collections.ConfigDict()
  # What the reid stage trains: 'reid' (a re-ID network, below), 'handcrafted' (no network:
  # the cross-modality metric of the `handcrafted` section; configs/lomo.py) or 'd2rl' (D²RL's
  # generators + feature network jointly, trainers/d2rl.py; configs/d2rl.py).
  c.reid.trainer = "reid"
  c.reid.model = "bdtr_alexnet"       # bdtr_alexnet | alexnet_tiny | resnet50_agw | resnet_tiny
  c.reid.embedding_dim = 0            # > 0: create_reid_model(embedding_dim=...) (AlexNet models)
  c.reid.model_kwargs = ml_collections.ConfigDict()  # any other create_reid_model keyword
  c.reid.compute_dtype = "float32"    # float32 | bfloat16 (GPU mixed precision: f32 weights, losses)

  # Optimiser. Schedules are in steps: epochs × steps_per_epoch.
  c.reid.optimizer = "sgd"            # sgd | adam (coupled L2, as torch.optim.Adam) | adamw
  c.reid.lr = 1e-3
  c.reid.momentum = 0.9               # sgd; adam's b1 stays 0.9
  c.reid.nesterov = False
  c.reid.weight_decay = 5e-4
  c.reid.backbone_lr_mult = 1.0       # lr multiplier of the parameters matching backbone_pattern
  # regex searched in the '/'-joined parameter path: the ImageNet-pretrained layers
  c.reid.backbone_pattern = r"^(stream_[vt]|stem_[vt]|layer\d)"
  c.reid.grad_clip_norm = 0.0         # > 0: clip the global gradient norm
  c.reid.schedule = "constant"        # constant | warmup_step
  c.reid.warmup_epochs = 0.0          # warmup_step: linear from warmup_factor × lr to lr
  c.reid.warmup_factor = 0.01
  c.reid.decay_epochs = ()            # warmup_step: lr × decay_factor at each of these epochs
  c.reid.decay_factor = 0.1
  c.reid.epochs = 60
  c.reid.num_steps = 0                # > 0 overrides epochs × steps_per_epoch
  c.reid.steps_per_epoch = 0          # 0: from the data (the sampler's epoch length)

  # Losses (defaults of the paper).
  c.reid.ce_weight = 1.0
  c.reid.lsr_on = "converted"         # all | converted | none
  c.reid.lsr_epsilon = 0.1            # ε
  c.reid.cross_weight = 1.0           # λ_cross; 0 disables ℓ_cross
  c.reid.cross_margin = 0.5           # ρ1
  c.reid.intra_weight = 0.1           # λ_intra; 0 disables ℓ_intra
  c.reid.intra_margin = 0.1           # ρ2
  c.reid.normalize_feats = True       # L2-normalise out['feat'] before the ranking losses
  c.reid.ranking_reduction = "mean"
  # Terms of the comparison table's baselines, off by default (configs/tone.py, configs/d2rl.py).
  c.reid.contrastive_weight = 0.0     # TONE: cross-modality contrastive loss (baseline_losses)
  c.reid.contrastive_margin = 1.0
  c.reid.triplet_weight = 0.0         # D²RL: batch-hard triplet over both modalities' features
  c.reid.triplet_margin = 0.3

  # Loop.
  c.reid.nan_policy = "stop"          # stop | skip
  c.reid.log_every = 50
  c.reid.eval_every = 0               # > 0: one-trial evaluation every this many steps
  c.reid.checkpoint_every = 1000
  c.reid.max_to_keep = 3
  c.reid.progress = True              # tqdm bar (process 0)
  c.reid.fast_compile = False         # CPU smoke runs: skip XLA's LLVM optimisation (faster compiles)

  # Hand-crafted rows of the paper's table (reid.trainer = 'handcrafted'; configs/lomo.py, mlbp.py,
  # hog.py, gsm.py; ce2l_jax/trainers/handcrafted.py): a descriptor, then a distance per row.
  c.handcrafted = ml_collections.ConfigDict()
  c.handcrafted.feature = "lomo"      # lomo | mlbp | hog (ce2l_jax.features)
  c.handcrafted.feature_kwargs = ml_collections.ConfigDict()  # the descriptor's keywords
  c.handcrafted.metrics = ("euclidean", "xqda")  # one row each: euclidean | xqda | gsm
  c.handcrafted.max_train_images = 0  # > 0: a seeded subset per modality for the learned metrics
  c.handcrafted.cache_dir = ""        # '' or a folder keeping descriptors for later runs
  c.handcrafted.xqda = ml_collections.ConfigDict(dict(lam=1e-3, dims=0, pca_dims=0))  # Liao et al. 2015
  c.handcrafted.gsm = ml_collections.ConfigDict(dict(  # Lin et al. 2017; our optimiser's values
      pca_dims=128, rank=0, lam=1e-4, lr=1e-3, steps=2000, batch=512))

  c.eval = evaluate.default_config()
  c.eval.protocol = c.data.get_ref("protocol")
  c.eval.metric_learning = "none"     # none | hcml: a metric fitted on training features (configs/hcml.py)
  c.eval.hcml_dim = 0                 # 0: #identities − 1
  c.eval.hcml_reg = 1e-3

  # D²RL's joint training (configs/d2rl.py; read only when reid.trainer = 'd2rl').
  c.d2rl = ml_collections.ConfigDict()
  c.d2rl.from_cyclegan = True         # generators and discriminators start from the cyclegan stage
  c.d2rl.train_generators = True      # False: the generators stay fixed
  c.d2rl.image_weight = 1.0           # λ_img: image-level (adversarial + cycle) against feature loss
  c.d2rl.lambda_cycle = 10.0
  c.d2rl.gen_lr = 2e-4                # Adam for the generators and the discriminators
  c.d2rl.beta1 = 0.5
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
