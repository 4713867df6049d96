r"""Deep zero-padding (Wu et al., ICCV 2017, Sec. 4.2, Fig. 4d): the one-stream network fed a
two-channel image — a visible image as [its grey level, 0], an infrared image as [0, its
intensity] — so the first layers can evolve modality-specific nodes; identity loss only; no
conversion.

  python run.py --config=configs/zero_padding.py:synthetic_sysu --workdir=workdirs/zero_padding_sysu
  python run.py --config=configs/zero_padding.py:synthetic_sysu,runlocal --workdir=/tmp/x   # dry run

Choices: grey level = BT.601 luma of the (normalised) RGB channels, infrared intensity = the mean
of its three stored channels (`ce2l_jax.models.baselines.zero_pad_input`); the first convolution
has two input channels and no pretrained weights for them; everything else as
configs/one_stream.py.
Paper figures (RegDB | SYSU all-search r1/mAP): 17.75/18.90 | 14.80/15.95.
"""

from configs.one_stream import wu_row


def get_config(arg=None):
  return wu_row(arg, "zero_padding", "Zero-Padding")
