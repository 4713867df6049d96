r"""Two-stream network (Wu et al., ICCV 2017, Sec. 4.1, Fig. 4b): a modality-specific
sub-network at the bottom for each modality, the top shared; identity (softmax) loss only; no
conversion.

  python run.py --config=configs/two_stream.py:synthetic_sysu --workdir=workdirs/two_stream_sysu
  python run.py --config=configs/two_stream.py:synthetic_sysu,runlocal --workdir=/tmp/x     # dry run

Choices (the paper does not fix where the streams meet for our base network): the stem (conv1,
bn1, max-pool) and layer1 are modality-specific, layer2–layer4 and the classifier shared
(`ViReIDResNet(specific_stages=2)`); everything else as configs/one_stream.py (the same base
network, data, schedule and loss).
Paper figures (RegDB | SYSU all-search r1/mAP): 12.43/13.42 | 11.65/12.85.
"""

from configs.one_stream import wu_row


def get_config(arg=None):
  return wu_row(arg, "two_stream", "Two-stream")
