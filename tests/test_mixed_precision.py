"""The mixed-precision switch (`reid.compute_dtype`, `cyclegan.compute_dtype`): float32 is the
models as before, bit for bit; bfloat16 computes in bfloat16 with float32 parameters, outputs and
gradients, close to the float32 answer."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ce2l_jax.models import cyclegan as cg
from ce2l_jax.models import init_reid_variables
from ce2l_jax.models.layers import compute_dtype
from ce2l_jax.trainers import reid as reid_trainer


def _reid_cfg(**kw):
  return ml_collections.ConfigDict(dict(model="resnet_tiny", embedding_dim=0,
                                        model_kwargs=ml_collections.ConfigDict(), **kw))


def _reid_run(cfg):
  model = reid_trainer.create_model(cfg, 5)
  v = init_reid_variables(model, jax.random.key(0), 64, 32)
  images = jnp.asarray(np.random.default_rng(0).normal(size=(2, 2, 64, 32, 3)), jnp.float32)

  def loss(params):
    (_, out), _ = model.apply({"params": params, "batch_stats": v["batch_stats"]}, images,
                              train=True, mutable=["batch_stats"])
    return jnp.mean(out["logits"] ** 2) + jnp.mean(out["feat"]), out
  (l, out), g = jax.jit(jax.value_and_grad(loss, has_aux=True))(v["params"])
  return v, l, out, g


def test_reid_float32_switch_is_the_default_model_and_bfloat16_is_close():
  v0, l0, out0, g0 = _reid_run(_reid_cfg())
  v1, l1, out1, g1 = _reid_run(_reid_cfg(compute_dtype="float32"))
  assert float(l0) == float(l1)
  jax.tree.map(np.testing.assert_array_equal, g0, g1)
  v2, l2, out2, g2 = _reid_run(_reid_cfg(compute_dtype="bfloat16"))
  for tree in (v2["params"], g2):  # master weights and their gradients stay float32
    assert {x.dtype for x in jax.tree.leaves(tree)} == {jnp.dtype("float32")}
  assert l2.dtype == out2["logits"].dtype == out2["feat"].dtype == jnp.float32
  np.testing.assert_allclose(l2, l0, rtol=5e-2)
  np.testing.assert_allclose(out2["feat"], out0["feat"], rtol=5e-2, atol=5e-2)
  flat0, flat2 = jax.tree.leaves(g0), jax.tree.leaves(g2)
  # per-parameter gradient directions; leaves whose float32 gradient is round-off (biases before
  # BatchNorm, exactly 0 in exact arithmetic) are left out
  top = max(float(jnp.linalg.norm(a)) for a in flat0)
  cos = [float(jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b) + 1e-12))
         for a, b in zip(flat0, flat2) if float(jnp.linalg.norm(a)) > 1e-3 * top]
  assert min(cos) > 0.95, cos


def test_cyclegan_compute_dtype():
  base = dict(ngf=4, ndf=4, n_blocks=1, n_layers_d=3)
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (1, 64, 32, 3)), jnp.float32)
  outs = {}
  for dt in ("", "float32", "bfloat16"):
    cfg = ml_collections.ConfigDict({**base, **({"compute_dtype": dt} if dt else {})})
    models = cg.build_models(cfg)
    params = cg.init_params(models, 0, (64, 32))
    assert {p.dtype for p in jax.tree.leaves(params)} == {jnp.dtype("float32")}
    g = models["gen_rgb2ir"].apply({"params": params["gen_rgb2ir"]}, x)
    d = models["disc_ir"].apply({"params": params["disc_ir"]}, g)
    assert g.dtype == d.dtype == jnp.float32
    outs[dt] = (g, d)
  np.testing.assert_array_equal(outs[""][0], outs["float32"][0])
  np.testing.assert_array_equal(outs[""][1], outs["float32"][1])
  np.testing.assert_allclose(outs["bfloat16"][0], outs[""][0], atol=5e-2)


def test_bad_compute_dtype_is_one_line():
  with pytest.raises(ValueError, match=r"reid.compute_dtype='fp16': use one of"):
    compute_dtype("fp16", "reid.compute_dtype")
