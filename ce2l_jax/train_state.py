"""The re-ID train state: a `flax.struct` pytree of arrays only, so orbax saves it as is.

The model and the optimiser are not part of the state (they are static: the trainer closes over
them in its jitted step), so a checkpoint is nothing but arrays and restoring needs no pickling.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
  step: jax.Array          # int32 scalar: number of updates applied (or skipped) so far
  params: Any
  batch_stats: Any         # {} for a model without BatchNorm
  opt_state: Any
  rng: jax.Array           # raw uint32[2] key; step `s` uses fold_in(rng, s)

  @property
  def variables(self) -> dict[str, Any]:
    """The `variables` argument of `model.apply`."""
    if self.batch_stats:
      return {"params": self.params, "batch_stats": self.batch_stats}
    return {"params": self.params}

  @classmethod
  def create(cls, variables: dict[str, Any], tx: Any, rng: jax.Array) -> "TrainState":
    params = variables["params"]
    return cls(step=jnp.zeros((), jnp.int32), params=params,
               batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
               rng=jnp.asarray(rng, jnp.uint32))
