r"""Seconds-long end-to-end run for tests: configs/synthetic.py on `synthetic_vireid/tiny`.

Every stage runs for a few steps on the tiny synthetic dataset (6 training identities, 40
images; 4 test identities, 30 images) with the smallest models (CycleGAN ngf 4 at 32×16, a
one-block `resnet_tiny` at 32×16, XLA's fast-compile mode); two galleries per setting. The
numbers mean nothing; the test suite (tests/test_run.py) checks the plumbing with it.

  python run.py --config=configs/smoke.py --workdir=/tmp/smoke      # ~1 min on 2 shared CPU cores
"""

import ml_collections

from configs import base, synthetic


def get_config(arg=None):
  c = synthetic.get_config()
  c.data.name = "synthetic_vireid/tiny"
  c.init = ""  # the synthetic pretrained weights fit the demo's resnet_tiny, not this smaller one
  c.cyclegan.update(dict(
      image_size=(32, 16), ngf=4, ndf=4, n_blocks=1, n_layers_d=2, batch_size=8, num_steps=4,
      decay_start=2, pool_size=4, log_every=2, eval_every=4, checkpoint_every=2, num_heldout=8,
      classifier_images=16, classifier_steps=10, num_samples=4, fast_compile=True))
  c.convert.batch_size = 8
  c.input.update(dict(p=4, k=2, resize=(32, 16), crop=(32, 16), image_size=(32, 16),
                      eval_batch_size=8, threads=1, prefetch=1))
  c.reid.update(dict(model="resnet_tiny", num_steps=4, log_every=2, checkpoint_every=2,
                     fast_compile=True))
  c.reid.model_kwargs = ml_collections.ConfigDict({"blocks": (1,), "width": 4})
  c.eval.num_trials = 2
  return base.apply_arg(c, arg)
