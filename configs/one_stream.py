r"""One-stream network (Wu et al., ICCV 2017, "RGB-Infrared Cross-Modality Person
Re-Identification", Sec. 4.1, Fig. 4a): one network, every parameter shared by the two
modalities, trained with the identity (softmax) loss only; no conversion.

  python run.py --config=configs/one_stream.py:synthetic_sysu --workdir=workdirs/one_stream_sysu
  python run.py --config=configs/one_stream.py:synthetic_sysu,runlocal --workdir=/tmp/x     # dry run
  python run.py --config=configs/one_stream.py:sysu_mm01 --workdir=workdirs/one_stream_sysu_mm01

Choices where the paper leaves freedom (Sec. 4.1 does not fix them for our setting):
- base network: this project's ResNet (`ce2l_jax/models/baselines.py`), ResNet-50 widths on the
  real datasets (`one_stream`, 288×144, the AGW pipeline of configs/sysu_resnet.py: P=8 × K=4,
  SGD 0.1 with warm-up) and the `resnet_tiny` widths on the synthetic twins (`one_stream_tiny`,
  configs/synthetic.py's 64×32, P=16 × K=2, Adam 1e-3, 1,500 steps), the same for every Wu row so
  they differ only in what the paper varies;
- input: the three-channel images as stored (infrared is stored as three equal channels);
- embedding: global average pool of the last stage, Euclidean distance on L2-normalised features;
- plain cross-entropy, no label smoothing; trained from scratch (no ImageNet loader exists for
  these layouts here).
Paper figures (ResNet-6 from scratch in the original; RegDB | SYSU all-search r1/mAP):
13.11/14.02 | 12.04/13.67.
"""

from configs import rows


def wu_row(arg, model: str, name: str):
  """A Wu et al. row: `model` (+ '_tiny' on the twins), identity loss only, no conversion."""
  dataset, rest = rows.split_arg(arg)
  c = rows.dataset_config(dataset)
  c.cyclegan.enabled = False
  if rows.is_synthetic(c):
    c.reid.model = f"{model}_tiny"
  else:
    rows.modern_reid(c)
    c.reid.model = model
  c.reid.update(dict(ce_weight=1.0, lsr_on="none", cross_weight=0.0, intra_weight=0.0))
  return rows.finish(c, name, rest)


def get_config(arg=None):
  return wu_row(arg, "one_stream", "One-stream")
