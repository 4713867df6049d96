"""Re-ID models: fast layer forms equal plain forms, output shapes, routing, BatchNorm semantics.

Full-size models are checked with `jax.eval_shape` only (shapes and parameter counts); tiny ones
run on 2 + 2 small images.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ce2l_jax.models import (DEFAULT_INPUT_SIZE, MODEL_NAMES, create_reid_model,
                             init_reid_variables)
from ce2l_jax.models.layers import GeM, GroupedConv, local_response_norm, max_pool


def random_variables(model, height, width, seed=0):
  """Variables with the model's shapes filled by numpy (no XLA init compile): kernels
  N(0, 1/fan_in), BatchNorm scale ≈ 1, small biases/means, variances in [0.5, 1.5]."""
  shapes = jax.eval_shape(lambda: init_reid_variables(model, jax.random.key(0), height, width))
  rng = np.random.default_rng(seed)

  def fill(path, s):
    name = path[-1].key
    if name == "kernel":
      return jnp.asarray(rng.normal(size=s.shape) / np.sqrt(np.prod(s.shape[:-1])), jnp.float32)
    if name == "scale":
      return jnp.asarray(1 + 0.1 * rng.normal(size=s.shape), jnp.float32)
    if name == "var":
      return jnp.asarray(rng.uniform(0.5, 1.5, size=s.shape), jnp.float32)
    if name == "p":
      return jnp.full(s.shape, 3.0, jnp.float32)
    return jnp.asarray(0.1 * rng.normal(size=s.shape), jnp.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def n_params(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


# ---------------------------------------------------------------------------- layers -------


@pytest.mark.parametrize("padding", [0, 1])
def test_sliced_max_pool_equals_reduce_window(padding):
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 9, 8, 3)), jnp.float32)
  f = lambda fast: lambda x: max_pool(x, 3, 2, padding, fast=fast)
  np.testing.assert_array_equal(f(True)(x), f(False)(x))
  weights = jnp.arange(f(True)(x).size, dtype=jnp.float32).reshape(f(True)(x).shape)
  g = lambda fast: jax.jit(jax.grad(lambda x: jnp.sum(f(fast)(x) * weights)))(x)
  np.testing.assert_allclose(g(True), g(False))


def test_grouped_conv_equals_feature_group_count():
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 7, 6, 4)), jnp.float32)
  fast = GroupedConv(6, 3, 1, 1, groups=2, fast=True)
  plain = GroupedConv(6, 3, 1, 1, groups=2, fast=False)
  v = fast.init(jax.random.key(0), x)
  assert v["params"]["kernel"].shape == (3, 3, 2, 6)
  ref = nn.Conv(6, (3, 3), padding=((1, 1), (1, 1)), feature_group_count=2).apply(v, x)
  np.testing.assert_allclose(jax.jit(fast.apply)(v, x), ref, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(jax.jit(plain.apply)(v, x), ref, rtol=1e-5, atol=1e-5)
  gf = jax.jit(jax.grad(lambda v: jnp.sum(fast.apply(v, x) ** 2)))(v)
  gp = jax.jit(jax.grad(lambda v: jnp.sum(plain.apply(v, x) ** 2)))(v)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), gf, gp)


def test_lrn_matches_caffe_formula():
  x = np.random.default_rng(2).normal(size=(1, 2, 3, 7)).astype(np.float32) * 10
  got = local_response_norm(jnp.asarray(x), 5, 1e-4, 0.75, 1.0)
  want = np.empty_like(x)
  for c in range(7):
    window = x[..., max(0, c - 2):min(7, c + 3)]
    want[..., c] = x[..., c] / (1.0 + 1e-4 / 5 * np.sum(window ** 2, -1)) ** 0.75
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert np.all(np.isfinite(jax.grad(lambda x: jnp.sum(local_response_norm(x)))(jnp.asarray(x))))


def test_gem():
  x = np.abs(np.random.default_rng(3).normal(size=(2, 3, 4, 5))).astype(np.float32)
  want = np.mean(np.maximum(x, 1e-6) ** 3, axis=(1, 2)) ** (1 / 3)
  np.testing.assert_allclose(GeM().apply({}, x), want, rtol=1e-5)
  v = GeM(learnable=True).init(jax.random.key(0), x)
  assert float(v["params"]["p"]) == 3.0
  np.testing.assert_allclose(GeM(learnable=True).apply(v, x), want, rtol=1e-5)
  np.testing.assert_allclose(GeM(p=1.0).apply({}, x), x.mean((1, 2)), rtol=1e-5)


# ---------------------------------------------------------------------- full-size shapes ----


def test_factory_names_and_errors():
  from ce2l_jax.models import baselines, d2rl
  assert set(MODEL_NAMES) == {"bdtr_alexnet", "alexnet_tiny", "resnet50_agw",
                              "resnet_tiny"} | set(baselines.FACTORIES) | set(d2rl.FACTORIES)
  assert create_reid_model("alexnet_tiny", 3, embedding_dim=16).embedding_dim == 16
  with pytest.raises(ValueError, match="unknown re-ID model"):
    create_reid_model("vgg", 3)


@pytest.mark.parametrize("name,emb_dim,feat_dim,count", [
    # 2 × (BVLC conv1..fc6 = 40,086,912 + BN6 8,192) + fc7 4096·1024+1024 + fc8 1024·395+395.
    ("bdtr_alexnet", 1024, 1024, 2 * (40_086_912 + 8_192) + 4_195_328 + 404_875),
    # torchvision ResNet-50 without fc (23,508,032) + a second stem (conv1 9,408 + bn1 128)
    # + BN-neck scale 2,048 + bias-free classifier 2048·395.
    ("resnet50_agw", 2048, 2048, 23_508_032 + 9_536 + 2_048 + 2048 * 395),
])
def test_full_size_shapes_and_parameter_counts(name, emb_dim, feat_dim, count):
  model = create_reid_model(name, 395)
  h, w = DEFAULT_INPUT_SIZE[name]
  v = jax.eval_shape(lambda: init_reid_variables(model, jax.random.key(0), h, w))
  assert n_params(v["params"]) == count
  (emb, out), _ = jax.eval_shape(lambda v, x: model.apply(
      v, x, train=True, rngs={"dropout": jax.random.key(0)}, mutable=["batch_stats"]),
      v, jax.ShapeDtypeStruct((2, 3, h, w, 3), jnp.float32))
  assert emb.shape == (2, 3, emb_dim)
  assert out["logits"].shape == (2, 3, 395) and out["feat"].shape == (2, 3, feat_dim)
  emb, out = jax.eval_shape(lambda v, x: model.apply(v, x, modality=1), v,
                            jax.ShapeDtypeStruct((5, h, w, 3), jnp.float32))
  assert emb.shape == (5, emb_dim) and out["logits"].shape == (5, 395)
  if name == "bdtr_alexnet":
    assert out["pool5"].shape == (5, 6, 6, 256)
    assert v["params"]["stream_v"]["fc6"]["kernel"].shape == (9216, 4096)


def test_resnet_variants():
  v = jax.eval_shape(lambda: init_reid_variables(
      create_reid_model("resnet50_agw", 10, specific_layer1=True, gem_learnable=True),
      jax.random.key(0), 64, 32))
  assert "layer1_0" in v["params"]["stem_t"] and "layer1_0" not in v["params"]
  assert v["params"]["gem"]["p"].shape == ()
  assert "bias" not in v["params"]["bnneck"] and "bias" not in v["params"]["classifier"]


# ------------------------------------------------------------------------- tiny models ------


def _tiny(name, h, w):
  model = create_reid_model(name, 6)
  variables = random_variables(model, h, w)
  x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 2, h, w, 3)), jnp.float32)
  return name, model, variables, x


@pytest.fixture(scope="module")
def tiny_alexnet():
  return _tiny("alexnet_tiny", 67, 67)


@pytest.fixture(scope="module")
def tiny_resnet():
  return _tiny("resnet_tiny", 32, 16)


@pytest.mark.parametrize("which", ["tiny_alexnet", "tiny_resnet"])
def test_tiny_train_and_test_forms(which, request):
  name, model, variables, x = request.getfixturevalue(which)
  dim = 128 if name == "alexnet_tiny" else 256
  train = jax.jit(lambda v, x, k: model.apply(v, x, train=True, rngs={"dropout": k},
                                              mutable=["batch_stats"]))
  (emb, out), state = train(variables, x, jax.random.key(0))
  assert emb.shape == (2, 2, dim) and out["logits"].shape == (2, 2, 6)
  assert out["feat"].shape[:2] == (2, 2) and np.all(np.isfinite(emb))
  assert jax.tree.structure(state["batch_stats"]) == jax.tree.structure(variables["batch_stats"])
  # Test time: the paired form and the single-modality form give the same embeddings, i.e.
  # modality m runs stream m, and nothing depends on the other slot.
  paired = jax.jit(lambda v, x: model.apply(v, x, train=False))
  single = jax.jit(lambda v, x: model.apply(v, x, modality=1, train=False))
  emb_p, _ = paired(variables, x)
  emb_1, out_1 = single(variables, x[1])
  assert emb_1.shape == (2, dim)
  np.testing.assert_allclose(emb_1, emb_p[1], rtol=1e-5, atol=1e-5)
  # The streams differ (separate parameters): visible images through the infrared stream differ.
  assert not np.allclose(single(variables, x[0])[0], emb_p[0], atol=1e-4)
  if name == "alexnet_tiny":  # dropout acts in train mode only, and is keyed
    (emb_b, _), _ = train(variables, x, jax.random.key(1))
    assert not np.allclose(emb, emb_b)


def test_shared_batchnorm_sees_both_modalities(tiny_resnet):
  """Shared BN (resnet layer1-4, BN-neck) normalises over the global 2N batch; stem BN over N."""
  _, model, variables, x = tiny_resnet
  step = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
  (_, out), state = step(variables, x)
  feat = np.asarray(out["feat"]).reshape(4, -1)  # (2N, D), visible first
  old = variables["batch_stats"]["bnneck"]["mean"]
  np.testing.assert_allclose(state["batch_stats"]["bnneck"]["mean"],
                             0.9 * old + 0.1 * feat.mean(0), rtol=1e-4, atol=1e-5)
  # BN-neck in train mode: its output is normalised over all 2N (mean ≈ 0 over both slots).
  np.testing.assert_allclose(np.asarray(out["feat_bn"]).reshape(4, -1).mean(0), 0, atol=1e-4)
  # Modality-specific stem BN: the visible stem's statistics ignore the infrared slot.
  x2 = x.at[1].set(x[1] * 3 + 1)
  _, state2 = step(variables, x2)
  np.testing.assert_array_equal(state["batch_stats"]["stem_v"]["bn1"]["mean"],
                                state2["batch_stats"]["stem_v"]["bn1"]["mean"])
  assert not np.allclose(state["batch_stats"]["stem_t"]["bn1"]["mean"],
                         state2["batch_stats"]["stem_t"]["bn1"]["mean"])


def test_fast_and_plain_models_agree():
  model = create_reid_model("alexnet_tiny", 4)
  plain = create_reid_model("alexnet_tiny", 4, fast=False)
  v = random_variables(model, 67, 67, seed=1)
  x = jnp.asarray(np.random.default_rng(5).normal(size=(2, 67, 67, 3)), jnp.float32)
  a, _ = jax.jit(lambda v, x: model.apply(v, x, modality=0))(v, x)
  b, _ = jax.jit(lambda v, x: plain.apply(v, x, modality=0))(v, x)
  np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_input_form_errors():
  model = create_reid_model("resnet_tiny", 3)
  v = jax.eval_shape(lambda: init_reid_variables(model, jax.random.key(0), 32, 16))
  x4 = jax.ShapeDtypeStruct((2, 32, 16, 3), jnp.float32)
  with pytest.raises(ValueError, match="modality"):
    jax.eval_shape(lambda v, x: model.apply(v, x), v, x4)
  with pytest.raises(ValueError, match="modality must be 0"):
    jax.eval_shape(lambda v, x: model.apply(v, x, modality=2), v, x4)
  with pytest.raises(ValueError, match="only for the single-modality"):
    jax.eval_shape(lambda v, x: model.apply(v, x, modality=0), v,
                   jax.ShapeDtypeStruct((2, 2, 32, 16, 3), jnp.float32))


def test_batch_norm_train_custom_vjp_matches_autodiff():
  """`norm.batch_norm_train` (hand-written backward) against autodiff of the formula: y, μ, σ²
  and the gradients wrt x, scale, bias, with cotangents on all three outputs (μ and σ² feed
  the running statistics)."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from ce2l_jax.models.norm import batch_norm_train

  def formula(x, s, b):
    axes = tuple(range(x.ndim - 1))
    m = jnp.mean(x, axes)
    v = jnp.mean(jnp.square(x - m), axes)
    return (x - m) / jnp.sqrt(v + 1e-5) * s + b, m, v

  rng = np.random.default_rng(0)
  for shape in [(4, 6, 5, 8), (3, 16), (2, 36, 18, 64)]:
    x, ct = (jnp.asarray(rng.normal(size=shape) * 2 + 1, jnp.float32) for _ in range(2))
    s, b, cm, cv = (jnp.asarray(rng.normal(size=shape[-1:]), jnp.float32) for _ in range(4))
    outs = [f(x, s, b) for f in (lambda x, s, b: batch_norm_train(x, s, b, 1e-5), formula)]
    for a, r in zip(*outs):
      np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-5)
    loss = lambda f: (lambda x, s, b: jnp.vdot(f(x, s, b)[0], ct) + jnp.vdot(f(x, s, b)[1], cm)
                      + jnp.vdot(f(x, s, b)[2], cv))
    g = jax.grad(loss(lambda x, s, b: batch_norm_train(x, s, b, 1e-5)), (0, 1, 2))(x, s, b)
    g_ref = jax.grad(loss(formula), (0, 1, 2))(x, s, b)
    for a, r in zip(g, g_ref):
      scale = float(jnp.max(jnp.abs(r)))
      np.testing.assert_allclose(a / scale, r / scale, rtol=1e-5, atol=1e-5)
