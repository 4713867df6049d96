r"""TONE (Ye et al., AAAI 2018, "Hierarchical Discriminative Learning for Visible Thermal Person
Re-Identification", Sec. "Two-stream CNN network"): a two-stream CNN — modality-specific feature
extraction layers, shared embedding layers — trained with the identity loss plus a contrastive
loss on cross-modality pairs; no conversion.

  python run.py --config=configs/tone.py:synthetic_sysu --workdir=workdirs/tone_sysu
  python run.py --config=configs/tone.py:synthetic_sysu,runlocal --workdir=/tmp/x     # dry run
  python run.py --config=configs/tone.py:sysu_mm01 --config.init=/data/bvlc_alexnet.npy --workdir=...

Network: on the real datasets BDTR's two-stream AlexNet (`bdtr_alexnet`: modality-specific
conv1–fc6, shared fc7 embedding and classifier; BDTR (IJCAI 2018) is built on TONE's network)
with configs/sysu.py's / regdb.py's input and SGD; on the synthetic twins the two-stream
`resnet_tiny` (modality-specific stems, shared rest: configs/synthetic.py's scale, where the tiny
AlexNet does not learn in a CPU budget, docs/notes/issue7.md).
Loss (choices, the paper's section gives the terms, not these numbers): identity cross-entropy
(no label smoothing) + 1.0 × the contrastive loss over every (visible, infrared) pair of the
batch on L2-normalised embeddings, margin 1.0 (`ce2l_jax.baseline_losses.cross_modality_contrastive`).
Paper figures (RegDB | SYSU all-search r1/mAP): 16.87/14.92 | 12.52/14.42.
"""

from configs import rows


def tone(arg, name: str = "TONE"):
  dataset, rest = rows.split_arg(arg)
  c = rows.dataset_config(dataset)
  c.cyclegan.enabled = False
  c.reid.update(dict(ce_weight=1.0, lsr_on="none", cross_weight=0.0, intra_weight=0.0,
                     contrastive_weight=1.0, contrastive_margin=1.0))
  return c, rest, name


def get_config(arg=None):
  c, rest, name = tone(arg)
  return rows.finish(c, name, rest)
