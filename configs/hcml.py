r"""HCML (Ye et al., AAAI 2018, Sec. "Hierarchical Cross-modality Metric Learning"): TONE's
network and training (configs/tone.py), then a two-level cross-modality metric learned on its
features of the training split: modality-specific maps into a common space, then a shared metric
there (`ce2l_jax/hcml.py`); the test features are scored with that metric.

  python run.py --config=configs/hcml.py:synthetic_sysu --workdir=workdirs/hcml_sysu
  python run.py --config=configs/hcml.py:synthetic_sysu,runlocal --workdir=/tmp/x     # dry run

Choices (the paper optimises both levels jointly by alternating updates; we solve each in
closed form, `ce2l_jax/hcml.py`): level 1 = Fisher's discriminant of the identities on the
modality-augmented features [x_v; 0] / [0; x_t] (one linear map per modality), level 2 = XQDA
(`ce2l_jax.metric_learning.fit_xqda`) on the cross-modality pairs; the features are TONE's
L2-normalised embeddings of every training image (no flip); regulariser 1e-3.
The HCML run trains its own TONE (same seed and config as configs/tone.py, so the same network).
Paper figures (RegDB | SYSU all-search r1/mAP): 24.44/20.80 | 14.32/16.16.
"""

from configs import rows
from configs.tone import tone


def get_config(arg=None):
  c, rest, _ = tone(arg)
  c.eval.metric_learning = "hcml"
  c.eval.hcml_dim = 0          # 0: #identities − 1 (level 1), XQDA's own choice (level 2)
  c.eval.hcml_reg = 1e-3
  c.eval.normalize_features = False   # the metric's embedding is scored as it is (Euclidean)
  return rows.finish(c, "HCML", rest)
