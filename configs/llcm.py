r"""CE²L (Dai et al.) on LLCM, the low-light cross-modality benchmark (Zhang & Wang, CVPR 2023).

The paper's method (configs/sysu.py: CycleGAN conversion, BDTR two-stream AlexNet at 227×227,
P=64 K=1, ℓ_cross + 0.1·ℓ_intra + LSR, SGD lr 1e-3) on LLCM's 713 training identities;
evaluation by the authors' released protocol (ce2l_jax/metrics/protocols.py, from
github.com/ZYK100/LLCM `DEEN/test.py` and `data_manager.py`): both directions, `ir_to_vis` (every
infrared test image against one visible image per identity and camera) and `vis_to_ir` (the
released code's transposed scoring), 10 random galleries each (`random.seed(trial)`), the query's
own camera removed for its identity (`eval_llcm`). LLCM's images are low-light crops of varied
size; the CycleGAN works at the paper's 256×128.

  python -m ce2l_jax.tfds_build tfds_builders/llcm --manual_dir=/data/manual --data_dir=~/tensorflow_datasets
  python run.py --config=configs/llcm.py --config.init=/data/bvlc_alexnet.npy --workdir=workdirs/llcm
  python run.py --config=configs/llcm.py:runlocal --workdir=/tmp/llcm_dry    # a few steps per stage

No target figures: CE²L was not evaluated on LLCM by its authors, and no machine of this project
holds the dataset (compare with the LLCM paper's tables for other methods).

Time (estimated, not measured): as configs/sysu.py scaled by the training set (30,921 images,
~0.9× SYSU's 34,167): on one H100 roughly 2–3 h of CycleGAN and 20–40 min of re-ID.
"""

from configs import base


def get_config(arg=None):
  c = base.get_config()
  c.data.name = "llcm"
  c.data.protocol = "llcm"
  return base.apply_arg(c, arg)
