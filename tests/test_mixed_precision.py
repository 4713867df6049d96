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


IMAGES = np.random.default_rng(0).normal(size=(2, 2, 64, 32, 3)).astype(np.float32)


def _reid_grad_fn(cfg):
  """(variables, jitted images ↦ (loss, out, parameter gradients)) of resnet_tiny in train mode."""
  model = reid_trainer.create_model(cfg, 5)
  v = init_reid_variables(model, jax.random.key(0), 64, 32)

  def loss(params, images):
    (_, out), _ = model.apply({"params": params, "batch_stats": v["batch_stats"]}, images,
                              train=True, mutable=["batch_stats"])
    return jnp.mean(out["logits"] ** 2) + jnp.mean(out["feat"]), out
  fn = jax.jit(jax.value_and_grad(loss, has_aux=True))

  def run(images):
    (l, out), g = fn(v["params"], jnp.asarray(images))
    return l, out, g
  return v, run


def _rel_errors(ref, other) -> dict[str, float]:
  """Per parameter ‖other − ref‖ / ‖ref‖."""
  return {jax.tree_util.keystr(p): float(jnp.linalg.norm(b - a) / jnp.linalg.norm(a))
          for (p, a), b in zip(jax.tree_util.tree_leaves_with_path(ref), jax.tree.leaves(other))}


# bfloat16 keeps 8 significant bits (unit roundoff u = 2⁻⁸), so what it costs a gradient is u times
# the network's sensitivity on the batch, not u alone. On this batch (noise images, 2 per modality,
# train-mode BatchNorm, ReLU and max-pool switches) that sensitivity is large: rounding only the
# *input* to bfloat16, everything else float32, already moves the float32 gradient by 0.2–21 % per
# parameter (rms 9 %). That response, e_in = ‖g32(bf16(x)) − g32(x)‖ / ‖g32(x)‖, is measured here
# as the scale of one bfloat16 rounding. The bfloat16 model rounds the input and then the output of
# each layer on its deepest path — resnet_tiny: stem conv + BN, 4 bottlenecks × (3 convs + 3 BNs +
# the residual add), the classifier: L = 31 roundings; as independent perturbations of that size
# they add to about √(L + 1)·e_in. Asserted: the rms over parameters of the bfloat16 error e16 is
# ≤ √(L + 1)·rms(e_in), and each parameter's e16 ≤ √(L + 1)·max(e_in, rms(e_in)) (one parameter's
# e_in is a single draw; the rms is the network's scale). Measured (2026-11-30): rms e16 / rms e_in
# = 3.0, per parameter 1.5–6.3 × its own e_in. A statistic, BN normalisation, log-sum-exp or loss
# computed in bfloat16 would show as errors far outside this; one-rounding accuracy of the
# convolutions themselves is checked tightly in tests/test_conv.py.
RESNET_TINY_ROUNDINGS = 2 + 4 * 7 + 1


def test_reid_float32_switch_is_the_default_model_and_bfloat16_is_close():
  _, run0 = _reid_grad_fn(_reid_cfg())
  l0, out0, g0 = run0(IMAGES)
  _, run1 = _reid_grad_fn(_reid_cfg(compute_dtype="float32"))
  l1, out1, g1 = run1(IMAGES)
  assert float(l0) == float(l1)
  jax.tree.map(np.testing.assert_array_equal, g0, g1)
  v2, run2 = _reid_grad_fn(_reid_cfg(compute_dtype="bfloat16"))
  l2, out2, g2 = run2(IMAGES)
  for tree in (v2["params"], g2):  # master weights and their gradients stay float32
    assert {x.dtype for x in jax.tree.leaves(tree)} == {jnp.dtype("float32")}
  assert l2.dtype == out2["logits"].dtype == out2["feat"].dtype == jnp.float32
  np.testing.assert_allclose(l2, l0, rtol=5e-2)
  np.testing.assert_allclose(out2["feat"], out0["feat"], rtol=5e-2, atol=5e-2)
  _, _, g_in = run0(IMAGES.astype(jnp.bfloat16).astype(np.float32))
  e_in, e16 = _rel_errors(g0, g_in), _rel_errors(g0, g2)
  rms_in = float(np.sqrt(np.mean(np.square(list(e_in.values())))))
  rms16 = float(np.sqrt(np.mean(np.square(list(e16.values())))))
  k = np.sqrt(RESNET_TINY_ROUNDINGS + 1)
  assert 0 < rms16 <= k * rms_in, (rms16, rms_in)
  bad = {n: (e16[n], e_in[n]) for n in e16 if e16[n] > k * max(e_in[n], rms_in)}
  assert not bad, bad


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
