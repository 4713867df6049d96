"""`ce2l_jax.models.layers.materialize`: the residual blocks' outputs are written once on CPU, so
XLA:CPU does not recompute a stage's chain of residual additions inside every later fusion
(docs/benchmarks.md, "Where a train step's time goes": AGW ResNet-50's step 2.10 → 1.30 s)."""

import re

import jax
import jax.numpy as jnp
import numpy as np

from ce2l_jax.models import create_reid_model, init_reid_variables, layers


def _widest_residual_fusion(compiled_text: str) -> int:
  """The most operands of any fusion of the step's optimised HLO whose source op is a block's
  ReLU: with the chain fused in, a block's fusion reads the convolutions and BatchNorm factors of
  every earlier block of its stage (5 per block), without it those of its own block only."""
  widths = []
  for line in compiled_text.splitlines():
    m = re.search(r" fusion\(([^)]*)\), kind=.*op_name=\"([^\"]*)\"", line)
    if m and "relu" in m.group(2):
      widths.append(m.group(1).count("%"))
  assert widths, "no ReLU fusion found: has the HLO text's format changed?"
  return max(widths)


def test_identity_in_value_and_gradient():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 4, 5)), jnp.float32)
  f = lambda x: jnp.sum(jnp.sin(layers.materialize(x * 2.0)) ** 2)
  g = lambda x: jnp.sum(jnp.sin(x * 2.0) ** 2)
  np.testing.assert_array_equal(jax.jit(f)(x), jax.jit(g)(x))
  np.testing.assert_allclose(jax.grad(f)(x), jax.grad(g)(x), rtol=1e-6, atol=1e-7)


def test_the_resnet_step_does_not_recompute_residual_chains():
  """A stage of three blocks (resnet_tiny's width, 3-1-1-1 blocks), forward and gradient."""
  model = create_reid_model("resnet_tiny", 4, blocks=(3, 1, 1, 1))
  v = init_reid_variables(model, jax.random.key(0), 64, 32)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 2, 64, 32, 3)), jnp.float32)

  def loss(params):
    (_, out), _ = model.apply({"params": params, "batch_stats": v["batch_stats"]}, x,
                              train=True, mutable=["batch_stats"])
    return jnp.sum(out["feat"] ** 2)

  text = jax.jit(jax.grad(loss)).lower(v["params"]).compile().as_text()
  # a block's own: its BatchNorms' (and the downsample's) factors and convolution outputs
  assert _widest_residual_fusion(text) <= 10, "a ReLU fusion reads several blocks' tensors"
