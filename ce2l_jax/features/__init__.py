"""Hand-crafted person descriptors of the paper's comparison table (pure numpy / scikit-image).

  lomo   LOMO, Liao et al. CVPR 2015 (written from the paper: `features.lomo`)
  mlbp   multi-scale block LBP histograms, Liao et al. ICB 2007 (`features.lbp`)
  hog    HOG, Dalal & Triggs CVPR 2005 (scikit-image: `features.hog`)

`extract(name, images, **kwargs)`: uint8 images (N, H, W, 3) → float32 (N, D). No JAX, no model
code: the hand-crafted trainer (`ce2l_jax.trainers.handcrafted`) feeds them the eval stream's
images and learns the cross-modality metrics (`ce2l_jax.metric_learning`) on top.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable

import numpy as np

from ce2l_jax.features import hog, lbp, lomo

# Bumped whenever a descriptor's numbers change (it keys the descriptor cache of
# `ce2l_jax.trainers.handcrafted`).
VERSION = 2
FEATURES: dict[str, Callable[..., np.ndarray]] = {"lomo": lomo.lomo, "mlbp": lbp.mlbp,
                                                  "hog": hog.hog}


def extract(name: str, images: np.ndarray, **kwargs: Any) -> np.ndarray:
  """`FEATURES[name](images, **kwargs)`; a ValueError naming the known features otherwise."""
  if name not in FEATURES:
    close = difflib.get_close_matches(name, FEATURES, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown hand-crafted feature {name!r}{hint}; known: {', '.join(FEATURES)}")
  return FEATURES[name](images, **kwargs)


__all__ = ["FEATURES", "extract", "hog", "lbp", "lomo"]
