r"""The embedded default: CE²L end to end on the synthetic dataset, on a CPU, in minutes.

`make demo` runs it. Everything is the method of configs/base.py, scaled down: the dataset is
`synthetic_vireid/small` (40 training identities, 557 images; 20 test identities, 263 images;
64×32; built automatically into `data.data_dir` on first use), a small CycleGAN at 64×32,
and the tiny two-stream AlexNet (`alexnet_tiny`) at 67×67 (resize 76×76, random crop, as the
paper's 256 → 227) with the CE²L losses; evaluation: SYSU's protocol (the synthetic set has
SYSU's cameras), 10 random galleries per setting.

  make demo                                         # = the command below, WORKDIR=workdirs/demo
  python run.py --config=configs/synthetic.py --workdir=workdirs/demo
  python run.py --config=configs/synthetic.py --config.cyclegan.enabled=false --workdir=workdirs/demo_noconv

Expected: about 10 min on 2 CPU cores (to be measured; docs/notes/issue7.md).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import base  # noqa: E402


def get_config(arg=None):
  c = base.get_config()
  c.data.name = "synthetic_vireid/small"

  c.cyclegan.update(dict(
      image_size=(64, 32), ngf=16, ndf=16, n_blocks=3, n_layers_d=2, batch_size=4,
      num_steps=400, decay_start=200, pool_size=20, log_every=20, eval_every=100,
      checkpoint_every=100, num_heldout=64, classifier_images=300, classifier_steps=200))

  c.input.update(dict(p=16, k=2, resize=(76, 76), crop=(67, 67), image_size=(67, 67),
                      eval_batch_size=64))
  c.reid.update(dict(model="alexnet_tiny", num_steps=600, lr=0.01, log_every=20,
                     checkpoint_every=200, fast_compile=False))
  return base.apply_arg(c, arg)
