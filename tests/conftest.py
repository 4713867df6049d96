"""Test fixtures shared by the test files: the config sections of configs/base.py at tiny sizes,
fake batch streams for both trainers. (The 8 fake CPU devices are set by the repository's root
conftest.py, before JAX starts.)

Plain functions, importable (`from tests.conftest import tiny_cyclegan_cfg`), and the same as
pytest fixtures (`def test_x(cyclegan_cfg): cfg = cyclegan_cfg(lr=1.0)`).
"""

from __future__ import annotations

import grain
import ml_collections
import numpy as np
import pytest

# The re-ID test model: a one-stage ResNet-AGW (stems, one bottleneck, GeM, BN-neck), the real
# module at a tiny compile; fake batches are P×K at H×W with NUM_CLASSES identities.
TINY_RESNET = {"blocks": (1,), "width": 4}
P, K, H, W = 4, 2, 32, 16
NUM_CLASSES = 6


def base_config() -> ml_collections.ConfigDict:
  """configs/base.py's config (every section's numbers), loaded as run.py loads it."""
  from configs import base
  return base.get_config()


# ------------------------------------------------------------------------------------ CycleGAN

def tiny_cyclegan_cfg(**kw) -> ml_collections.ConfigDict:
  """The `cyclegan` section at 32×16, ngf/ndf 4, one block, batch 8, 4 steps, no progress bar."""
  cfg = base_config().cyclegan.copy_and_resolve_references()
  cfg.update(dict(image_size=(32, 16), ngf=4, ndf=4, n_blocks=1, n_layers_d=2, batch_size=8,
                  num_steps=4, decay_start=2, pool_size=4, log_every=1, eval_every=2,
                  checkpoint_every=2, num_samples=8, progress=False))
  cfg.update(kw)
  return cfg


def cyclegan_batch(i: int, n: int = 8, size=(32, 16)) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(i)
  return {"rgb": rng.integers(0, 256, (n, *size, 3), dtype=np.uint8),
          "ir": np.repeat(rng.integers(0, 256, (n, *size, 1), dtype=np.uint8), 3, axis=-1)}


def cyclegan_iterator(n: int = 8):
  """An endless-enough, checkpointable (grain) stream of unpaired `{"rgb", "ir"}` batches."""
  return iter(grain.MapDataset.range(1000).map(lambda i: cyclegan_batch(int(i), n)).to_iter_dataset())


# ------------------------------------------------------------------------------------ re-ID

def reid_run_config(**reid) -> ml_collections.ConfigDict:
  """A run config with the `reid` section of configs/base.py on the tiny ResNet, SGD lr 0.05,
  LSR on every image, 2 steps, logs every step, checkpoints every 2, fast compiles."""
  base = base_config()
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.resume = ""
  c.init = ""
  c.mesh = ml_collections.ConfigDict({"num_devices": 0})
  c.reid = base.reid
  c.reid.update(dict(model="resnet_tiny", lr=0.05, lsr_on="all", num_steps=2, log_every=1,
                     checkpoint_every=2, progress=False, fast_compile=True))
  c.reid.model_kwargs = ml_collections.ConfigDict(TINY_RESNET)
  c.reid.update(reid)
  return c


def reid_batch(i: int) -> dict[str, np.ndarray]:
  """Fake P×K cross-modality batch i (seeded): slot 0 visible, slot 1 infrared, half converted."""
  rng = np.random.default_rng(1000 + int(i))
  ids = rng.choice(NUM_CLASSES, P, replace=False)
  pid = np.repeat(ids, K).astype(np.int32)
  image = rng.integers(0, 256, (2, P * K, H, W, 3), dtype=np.uint8)
  converted = np.zeros((2, P * K), bool)
  converted[1, ::2] = True
  return {"image": image, "pid": np.stack([pid, pid]), "camid": np.ones((2, P * K), np.int32),
          "modality": np.stack([np.zeros(P * K, np.int32), np.ones(P * K, np.int32)]),
          "converted": converted}


def reid_iterator():
  """An endless, checkpointable (grain) iterator of `reid_batch`es."""
  return iter(grain.MapDataset.range(10**6).map(reid_batch).to_iter_dataset())


# ------------------------------------------------------------------------------------ fixtures

@pytest.fixture
def cyclegan_cfg():
  return tiny_cyclegan_cfg


@pytest.fixture
def reid_config():
  return reid_run_config
