"""The two input forms of every re-ID model (the call contract in `ce2l_jax.models.reid`).

- paired: images (2, N, H, W, C), slot 0 visible, slot 1 infrared, and no `modality`;
- one modality: images (N, H, W, C) with `modality` 0 (visible) or 1 (infrared), a Python int
  (static under `jit`: it selects modality-specific layers).
`split_input` checks the form and says which modality each part is; anything else is one
`ValueError` naming the expected shapes.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def split_input(images: jnp.ndarray, modality: Any) -> tuple[list[jnp.ndarray], list[int], bool]:
  """([images of each modality present], [their modalities], paired)."""
  if images.ndim == 5:
    if images.shape[0] != 2:
      raise ValueError(f"paired images must have shape (2, N, H, W, C), got {images.shape}")
    if modality is not None:
      raise ValueError("modality is only for the single-modality form (N, H, W, C)")
    return [images[0], images[1]], [0, 1], True
  if images.ndim == 4:
    try:
      m = int(modality)
    except (TypeError, jax.errors.ConcretizationTypeError) as e:
      raise ValueError("single-modality images (N, H, W, C) need modality=0 (visible) or 1 "
                       "(infrared) as a Python int (static under jit)") from e
    if m not in (0, 1):
      raise ValueError(f"modality must be 0 (visible) or 1 (infrared), got {modality}")
    return [images], [m], False
  raise ValueError(f"images must be (2, N, H, W, C) or (N, H, W, C), got shape {images.shape}")
