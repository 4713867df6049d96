"""The matmul-form convolutions (`ce2l_jax.models.conv`) against `lax.conv_general_dilated` /
`lax.conv_transpose` and their autodiff gradients: values, input and weight gradients, to 1e-5,
over strides, paddings (int, pairs, asymmetric, SAME, VALID), groups and transposed convolutions
(the CycleGAN decoder's PyTorch-style k3 s2 p1 output_padding 1 among them)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from ce2l_jax.models import conv as C

DN = ("NHWC", "HWIO", "NHWC")


def _data(shape_x, shape_k, seed=0):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.normal(size=shape_x), jnp.float32),
          jnp.asarray(rng.normal(size=shape_k) / np.sqrt(np.prod(shape_k[:3])), jnp.float32))


def _check(f_fast, f_ref, x, k):
  """Values and both gradients (of a random linear functional) agree to 1e-5."""
  y_ref = f_ref(x, k)
  y = f_fast(x, k)
  assert y.shape == y_ref.shape
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  ct = jnp.asarray(np.random.default_rng(1).normal(size=y_ref.shape), jnp.float32)
  g_ref = jax.grad(lambda x, k: jnp.sum(f_ref(x, k) * ct), argnums=(0, 1))(x, k)
  g = jax.jit(jax.grad(lambda x, k: jnp.sum(f_fast(x, k) * ct), argnums=(0, 1)))(x, k)
  for a, b in zip(g, g_ref):
    scale = max(1.0, float(jnp.max(jnp.abs(b))))
    np.testing.assert_allclose(a / scale, b / scale, rtol=1e-5, atol=1e-5)


CONV_CASES = [
    # (N, H, W, C), (kh, kw, C/g, F), strides, padding, groups
    ((2, 9, 8, 3), (3, 3, 3, 4), 1, 1, 1),
    ((2, 9, 8, 3), (3, 3, 3, 4), 2, ((1, 1), (1, 1)), 1),
    ((2, 23, 23, 3), (11, 11, 3, 5), 4, 0, 1),              # AlexNet conv1
    ((2, 9, 9, 4), (5, 5, 2, 6), 1, 2, 2),                  # AlexNet conv2 (groups 2)
    ((1, 7, 7, 6), (3, 3, 2, 6), 1, 1, 3),
    ((2, 13, 10, 3), (7, 7, 3, 4), 2, 3, 1),                # ResNet stem
    ((2, 8, 6, 5), (1, 1, 5, 7), 1, 0, 1),                  # 1×1
    ((2, 8, 6, 5), (1, 1, 5, 7), 2, 0, 1),                  # 1×1 stride 2 (downsample)
    ((2, 10, 8, 3), (4, 4, 3, 4), 2, 1, 1),                 # PatchGAN
    ((2, 5, 6, 3), (4, 4, 3, 2), 1, 1, 1),                  # PatchGAN, stride 1, even kernel
    ((2, 9, 8, 3), (3, 3, 3, 4), (2, 1), ((0, 2), (1, 0)), 1),  # asymmetric
    ((2, 9, 8, 3), (3, 3, 3, 4), 2, "SAME", 1),
    ((2, 9, 8, 3), (3, 3, 3, 4), 1, "VALID", 1),
    ((2, 14, 10, 8), (7, 7, 8, 3), 1, 0, 1),                # CycleGAN head (reflection-padded)
    ((2, 11, 9, 6), (4, 4, 6, 1), (2, 1), ((1, 2), (0, 1)), 1),  # one output, strided, asymmetric
]
# The mixed form sends convolutions with ≤ _NARROW_MAX_OUT outputs to its output-side branch
# (`_conv_narrow`); the tests run each mixed case with that branch on and off.
NARROW = {"narrow": C._NARROW_MAX_OUT, "wide": 0}


@pytest.mark.parametrize("impl", ["mixed", "mixed-wide", "matmul"])
@pytest.mark.parametrize("xs,ks,s,p,g", CONV_CASES)
def test_conv2d_matches_lax(xs, ks, s, p, g, impl, monkeypatch):
  if impl == "mixed-wide":
    monkeypatch.setattr(C, "_NARROW_MAX_OUT", 0)
    impl = "mixed"
  x, k = _data(xs, ks)
  pads = C.normalize_padding(p, xs[1:3], ks[:2], C._pair(s))
  ref = lambda x, k: lax.conv_general_dilated(x, k, C._pair(s), pads, dimension_numbers=DN,
                                              feature_group_count=g)
  _check(lambda x, k: C.conv2d(x, k, s, p, g, impl=impl), ref, x, k)
  # the native form is the reference itself
  np.testing.assert_array_equal(C.conv2d(x, k, s, p, g, impl="native"), ref(x, k))


@pytest.mark.parametrize("xs,ks,s,p,g", [CONV_CASES[i] for i in (0, 1, 3, 5, 9, 10)])
def test_conv2d_mixed_other_branches(xs, ks, s, p, g, monkeypatch):
  """The mixed form's per-tap forward (wide layers) and patch-matrix weight gradient (narrow
  inputs), forced on small shapes."""
  monkeypatch.setattr(C, "_TAPS_MIN_CHANNEL_PRODUCT", 1)
  monkeypatch.setattr(C, "_PATCHES_MAX_CHANNELS", 10 ** 6)
  monkeypatch.setattr(C, "_NARROW_MAX_OUT", 0)
  x, k = _data(xs, ks)
  pads = C.normalize_padding(p, xs[1:3], ks[:2], C._pair(s))
  ref = lambda x, k: lax.conv_general_dilated(x, k, C._pair(s), pads, dimension_numbers=DN,
                                              feature_group_count=g)
  _check(lambda x, k: C.conv2d(x, k, s, p, g, impl="mixed"), ref, x, k)


BF16_U = 2.0 ** -8  # bfloat16's unit roundoff (8 significant bits; eps = 2⁻⁷)


@pytest.mark.parametrize("narrow", NARROW)
@pytest.mark.parametrize("taps", [False, True])
@pytest.mark.parametrize("case", [CONV_CASES[i] for i in (0, 1, 3, 13)] + [((2, 4, 3, 4), (3, 3, 4, 6), 2, ((1, 2), (1, 2)), 1)])
def test_mixed_float64_stays_float64(case, taps, narrow, monkeypatch):
  """Float64 inputs (64-bit JAX): the mixed form accumulates in float64, not float32 (its
  bfloat16 rule is "never narrower than float32"), so it equals XLA's float64 convolution and
  its gradients to 1e-12 (a float32 accumulation would be ~1e-7 off; before the fix it raised)."""
  xs, ks, s, p, g = case
  monkeypatch.setattr(C, "_NARROW_MAX_OUT", NARROW[narrow])
  if taps:
    monkeypatch.setattr(C, "_TAPS_MIN_CHANNEL_PRODUCT", 1)
  with jax.enable_x64(True):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=xs), jnp.float64)
    k = jnp.asarray(rng.normal(size=ks) / np.sqrt(np.prod(ks[:3])), jnp.float64)
    fast = lambda x, k: C.conv2d(x, k, s, p, g, impl="mixed")
    ref = lambda x, k: C.conv2d(x, k, s, p, g, impl="native")
    y, y_ref = fast(x, k), ref(x, k)
    assert y.dtype == jnp.float64
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    ct = jnp.asarray(rng.normal(size=y_ref.shape), jnp.float64)
    grad = lambda f: jax.grad(lambda x, k: jnp.sum(f(x, k) * ct), argnums=(0, 1))(x, k)
    for a, b in zip(grad(fast), grad(ref)):
      assert a.dtype == jnp.float64
      np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def _assert_rounded_once(got, exact, magnitude):
  """`got` (bfloat16) is `exact` rounded once: |got − exact| ≤ u·|exact|, plus float32
  summation-order slack 2⁻¹⁸·Σ|terms| (`magnitude`: the same map applied to absolute values)."""
  assert got.dtype == jnp.bfloat16
  excess = jnp.abs(got.astype(jnp.float32) - exact) - BF16_U * jnp.abs(exact) - 2.0 ** -18 * magnitude
  assert float(jnp.max(excess)) <= 0, float(jnp.max(excess))


@pytest.mark.parametrize("narrow", NARROW)
@pytest.mark.parametrize("taps", [False, True])
@pytest.mark.parametrize("case", [CONV_CASES[i] for i in (0, 1, 3, 5, 7, 13, 14)] + [((2, 4, 3, 6), (3, 3, 4, 6), 2, ((1, 2), (1, 2)))])
def test_mixed_bfloat16_rounds_once(case, taps, narrow, monkeypatch):
  """Mixed precision: with bfloat16 inputs, the mixed form's output, ∂x and ∂K are the exact
  results for those inputs rounded once to bfloat16 — products and sums (per-tap dots, col2im)
  accumulated in float32, as cuDNN does. A sum rounded per tap in bfloat16 fails this."""
  monkeypatch.setattr(C, "_NARROW_MAX_OUT", NARROW[narrow])
  if taps:  # the per-tap forward and the patch-matrix weight gradient
    monkeypatch.setattr(C, "_TAPS_MIN_CHANNEL_PRODUCT", 1)
    monkeypatch.setattr(C, "_PATCHES_MAX_CHANNELS", 10 ** 6)
  if len(case) == 5:
    xs, ks, s, p, g = case
    pads = C.normalize_padding(p, xs[1:3], ks[:2], C._pair(s))
    fast = lambda x, k: C.conv2d(x, k, s, p, g, impl="mixed")
    ref = lambda x, k: lax.conv_general_dilated(x, k, C._pair(s), pads, dimension_numbers=DN,
                                                feature_group_count=g)
  else:
    xs, ks, s, p = case
    fast = lambda x, k: C.conv_transpose2d(x, k, s, p, impl="mixed")
    ref = lambda x, k: lax.conv_transpose(x, k, C._pair(s), p, dimension_numbers=DN,
                                          transpose_kernel=True)
  x, k = (a.astype(jnp.bfloat16) for a in _data(xs, ks))
  y, vjp = jax.vjp(fast, x, k)
  ct = jnp.asarray(np.random.default_rng(1).normal(size=y.shape), jnp.bfloat16)
  f32 = lambda *a: tuple(b.astype(jnp.float32) for b in a)
  y_ref, vjp_ref = jax.vjp(ref, *f32(x, k))
  y_abs, vjp_abs = jax.vjp(ref, *f32(jnp.abs(x), jnp.abs(k)))
  for got, exact, mag in zip((y, *vjp(ct)), (y_ref, *vjp_ref(*f32(ct))),
                             (y_abs, *vjp_abs(*f32(jnp.abs(ct))))):
    _assert_rounded_once(got, exact, mag)


TRANSPOSE_CASES = [
    # (N, H, W, C), (kh, kw, F, C), strides, padding
    ((2, 4, 3, 6), (3, 3, 4, 6), 2, ((1, 2), (1, 2))),     # torch k3 s2 p1 op1 (CycleGAN up)
    ((2, 4, 3, 6), (3, 3, 4, 6), 2, "SAME"),
    ((2, 4, 3, 6), (3, 3, 4, 6), 2, "VALID"),
    ((2, 4, 5, 3), (4, 4, 2, 3), 2, ((2, 2), (2, 2))),     # torch k4 s2 p1
    ((1, 5, 4, 3), (3, 3, 2, 3), 1, ((1, 1), (1, 1))),
    ((1, 5, 4, 3), (3, 3, 2, 3), 2, ((0, 0), (3, 1))),     # crops (lo, hi outside [0, k−1])
    ((1, 5, 4, 3), (3, 3, 2, 3), 3, ((4, -1), (2, 2))),
]


@pytest.mark.parametrize("impl", ["mixed", "matmul"])
@pytest.mark.parametrize("xs,ks,s,p", TRANSPOSE_CASES)
def test_conv_transpose2d_matches_lax(xs, ks, s, p, impl):
  x, k = _data(xs, ks)
  ref = lambda x, k: lax.conv_transpose(x, k, C._pair(s), p, dimension_numbers=DN,
                                        transpose_kernel=True)
  _check(lambda x, k: C.conv_transpose2d(x, k, s, p, impl=impl), ref, x, k)


def test_im2col_col2im_are_transposes():
  """⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 7, 6, 3)), jnp.float32)
  args = ((3, 3), (2, 2), ((1, 0), (1, 1)))
  cols = C.im2col(x, *args)
  c = jnp.asarray(rng.normal(size=cols.shape), jnp.float32)
  np.testing.assert_allclose(jnp.vdot(cols, c), jnp.vdot(x, C.col2im(c, x.shape, *args)),
                             rtol=1e-5)
  # JAX's gradient of im2col is col2im (and forward mode works through both)
  np.testing.assert_allclose(jax.vjp(lambda x: C.im2col(x, *args), x)[1](c)[0],
                             C.col2im(c, x.shape, *args), rtol=1e-6, atol=1e-6)
  jax.jvp(lambda x: C.conv2d(x, jnp.ones((3, 3, 3, 2)), 2, 1, impl="matmul"), (x,), (x,))


@pytest.mark.parametrize("impl", ["matmul", "native"])
def test_modules_are_drop_ins(impl):
  """Same parameter tree as flax's Conv / ConvTranspose(transpose_kernel=True), same outputs."""
  x, _ = _data((2, 8, 6, 4), (1, 1, 1, 1))
  pairs = [
      (nn.Conv(6, (3, 3), (2, 2), padding=((1, 1), (1, 1))),
       C.Conv(6, (3, 3), (2, 2), padding=((1, 1), (1, 1)), impl=impl)),
      (nn.Conv(6, (5, 5), padding=2, feature_group_count=2, use_bias=False),
       C.Conv(6, 5, padding=2, feature_group_count=2, use_bias=False, impl=impl)),
      (nn.Conv(6, (3, 3), padding="VALID"), C.Conv(6, (3, 3), padding="VALID", impl=impl)),
      (nn.ConvTranspose(5, (3, 3), (2, 2), padding=((1, 2), (1, 2)), transpose_kernel=True),
       C.ConvTranspose(5, (3, 3), (2, 2), padding=((1, 2), (1, 2)), impl=impl)),
  ]
  for ref, fast in pairs:
    v = ref.init(jax.random.key(0), x)
    v2 = fast.init(jax.random.key(0), x)
    assert jax.tree.map(jnp.shape, v) == jax.tree.map(jnp.shape, v2)
    np.testing.assert_allclose(fast.apply(v, x), ref.apply(v, x), rtol=1e-5, atol=1e-5)


def test_bad_impl_is_one_line():
  assert C.resolve_impl("auto") == "auto"
  with pytest.raises(ValueError, match="impl must be one of"):
    C.resolve_impl("fast")


@pytest.mark.parametrize("transposed,xs,ks,s,g,want", [
    # (the shapes of bench_conv_choice.py's tables: AlexNet, ResNet-50, CycleGAN, the demo's)
    (False, (8, 27, 27, 96), (5, 5, 48, 256), (1, 1), 2, "mixed"),       # AlexNet conv2, grouped
    (False, (8, 13, 13, 384), (3, 3, 192, 384), (1, 1), 2, "mixed"),     # AlexNet conv4
    (False, (32, 7, 7, 16), (5, 5, 8, 32), (1, 1), 2, "mixed"),          # alexnet_tiny conv2
    (True, (2, 32, 16, 256), (3, 3, 128, 256), (2, 2), 1, "mixed"),      # CycleGAN up, T3×3/2
    (True, (4, 16, 8, 32), (3, 3, 16, 32), (2, 2), 1, "mixed"),          # the demo's up-sampling
    (True, (2, 16, 8, 32), (3, 3, 16, 32), (1, 1), 1, "native"),         # transposed, stride 1
    (False, (8, 72, 36, 256), (1, 1, 256, 64), (1, 1), 1, "mixed"),      # ResNet 1×1
    (False, (8, 72, 36, 256), (1, 1, 256, 512), (2, 2), 1, "mixed"),     # 1×1/2 downsample
    (False, (64, 16, 8, 8), (1, 1, 8, 32), (1, 1), 1, "mixed"),          # resnet_tiny 1×1
    (False, (8, 227, 227, 3), (11, 11, 3, 96), (4, 4), 1, "native"),     # AlexNet conv1
    (False, (4, 288, 144, 3), (7, 7, 3, 64), (2, 2), 1, "native"),       # ResNet stem
    (False, (8, 72, 36, 64), (3, 3, 64, 64), (1, 1), 1, "native"),       # ResNet layer1 3×3
    (False, (8, 72, 36, 128), (3, 3, 128, 128), (2, 2), 1, "native"),    # ResNet 3×3/2
    (False, (8, 18, 9, 512), (3, 3, 512, 512), (1, 1), 1, "native"),     # ResNet layer4 3×3
    (False, (2, 34, 18, 256), (3, 3, 256, 256), (1, 1), 1, "native"),    # CycleGAN block
    (False, (2, 134, 70, 64), (7, 7, 64, 3), (1, 1), 1, "native"),       # CycleGAN head
    (False, (4, 15, 7, 512), (4, 4, 512, 1), (1, 1), 1, "native"),       # PatchGAN output
    (False, (4, 70, 38, 8), (7, 7, 8, 3), (1, 1), 1, "native"),          # the demo's head, 8 → 3
    (False, (2, 64, 32, 64), (4, 4, 64, 128), (2, 2), 1, "native"),      # PatchGAN 4×4/2
])
def test_auto_form_per_layer(transposed, xs, ks, s, g, want):
  """`auto_form`'s choices on the shapes it was measured on (CPU), native everywhere on GPU, and
  conv2d / conv_transpose2d follow it under impl="auto"."""
  assert C.auto_form(transposed, xs, ks, s, g, backend="cpu") == want
  assert C.auto_form(transposed, xs, ks, s, g, backend="gpu") == "native"
  if jax.default_backend() == "cpu":
    assert C._form("auto", transposed, xs, ks, s, g) == want
    assert C._form("native", transposed, xs, ks, s, g) == "native"
    assert C._form("mixed", transposed, xs, ks, s, g) == "mixed"


def test_auto_traces_the_chosen_form():
  """Under impl="auto" a 1×1 convolution's gradient has no convolution in it (mixed: dots), a
  3×3 one is XLA's convolution (native); under impl="mixed" a 64 → 3 head's has none (its
  output-side branch)."""
  x, k1 = _data((2, 6, 5, 8), (1, 1, 8, 4))
  _, k3 = _data((2, 6, 5, 8), (3, 3, 8, 4))
  hlo = lambda k: jax.jit(jax.grad(lambda x, k: jnp.sum(C.conv2d(x, k, 1, "SAME", impl="auto")),
                                   argnums=(0, 1))).lower(x, k).as_text()
  if jax.default_backend() == "cpu":
    assert "convolution" not in hlo(k1)
  assert "convolution" in hlo(k3)
  x64, head = _data((1, 12, 10, 64), (7, 7, 64, 3))  # a generator's head under "mixed": dots only
  head_hlo = jax.jit(jax.grad(lambda x, k: jnp.sum(C.conv2d(x, k, 1, 3, impl="mixed")),
                              argnums=(0, 1))).lower(x64, head).as_text()
  assert "convolution" not in head_hlo and "dot" in head_hlo


def _grads_under(impl, fn, params):
  with C.use_impl(impl):  # traced (and jitted) afresh under each form
    return jax.jit(jax.value_and_grad(fn, has_aux=True))(params)


# Whole models: the layers agree to 1e-5 (above); through 5–50 layers, BatchNorm over 2 images
# included, float32 summation-order differences grow to ~1e-5 relative, so the models are
# compared at 2e-4 (relative to each array's largest entry, at least 1): 1e-4 failed on main on
# 2026-12-01 for resnet_tiny, mixed vs native, on one of 16,384 entries of the
# layer4_0/conv3 kernel gradient (1.09e-4; the same before and after the per-layer `auto`).
MODEL_TOL = 2e-4


def _keys(path) -> list[str]:
  return [str(getattr(k, "key", getattr(k, "idx", ""))) for k in path]


# Biases right before a normalisation have a gradient that is 0 in exact arithmetic; both forms
# return float32 round-off (~1e-4) there, which is checked small, not equal.
_REID_ZERO = lambda keys: keys[-1] == "bias" and "fc6" in keys          # fc6 → bn6
_CYCLEGAN_ZERO = lambda keys: keys[-1] == "bias" and (                 # conv → instance norm
    (keys[0] == "0" and keys[-2] != "head") or (keys[0] == "1" and keys[-2] in ("conv1", "conv2",
                                                                               "conv3")))


def _assert_trees_close(a, b, tol=MODEL_TOL, zero=lambda keys: False):
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
    if zero(_keys(path)):
      assert float(jnp.max(jnp.abs(x))) < 1e-2 and float(jnp.max(jnp.abs(y))) < 1e-2, path
      continue
    scale = max(1.0, float(jnp.max(jnp.abs(y))))
    np.testing.assert_allclose(x / scale, y / scale, rtol=tol, atol=tol,
                               err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("impl", ["mixed", "auto"])
@pytest.mark.parametrize("name,hw", [("alexnet_tiny", (67, 67)), ("resnet_tiny", (64, 32))])
def test_reid_models_equal_native_forms(name, hw, impl):
  """Train-mode outputs and parameter gradients of the re-ID models, mixed (all layers) or auto
  (the per-layer choice: on CPU mixed for alexnet_tiny's grouped and resnet_tiny's 1×1
  convolutions) vs native convolutions."""
  from ce2l_jax.models import create_reid_model, init_reid_variables
  model = create_reid_model(name, 7)
  v = init_reid_variables(model, jax.random.key(0), *hw)
  images = jnp.asarray(np.random.default_rng(0).normal(size=(2, 2, *hw, 3)), jnp.float32)

  def fn(params):
    (emb, out), _ = model.apply({"params": params, "batch_stats": v["batch_stats"]}, images,
                                train=True, rngs={"dropout": jax.random.key(1)},
                                mutable=["batch_stats"])
    return jnp.sum(out["logits"] ** 2) + jnp.sum(jnp.sin(emb)), out["logits"]

  (l_m, y_m), g_m = _grads_under(impl, fn, v["params"])
  (l_n, y_n), g_n = _grads_under("native", fn, v["params"])
  _assert_trees_close((y_m, l_m), (y_n, l_n))
  _assert_trees_close(g_m, g_n, zero=_REID_ZERO)


@pytest.mark.parametrize("impl", ["mixed", "auto"])
def test_cyclegan_models_equal_native_forms(impl):
  """Generator and PatchGAN outputs and gradients (parameters and input), mixed or auto (on CPU:
  mixed for the transposed up-sampling convolutions) vs native."""
  from ce2l_jax.models import cyclegan as cg
  gen, disc = cg.ResnetGenerator(ngf=4, n_blocks=1), cg.PatchDiscriminator(ndf=4, n_layers=3)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 16, 3)), jnp.float32)
  xd = jnp.asarray(np.random.default_rng(1).normal(size=(1, 64, 32, 3)), jnp.float32)
  pg = gen.init(jax.random.key(0), x)["params"]
  pd = disc.init(jax.random.key(1), xd)["params"]

  def fn(p):
    y, d = gen.apply({"params": p[0]}, p[2]), disc.apply({"params": p[1]}, xd)
    return jnp.sum(jnp.sin(3 * y)) + jnp.sum(d ** 2), (y, d)

  (l_m, out_m), g_m = _grads_under(impl, fn, (pg, pd, x))
  (l_n, out_n), g_n = _grads_under("native", fn, (pg, pd, x))
  _assert_trees_close(out_m, out_n)
  _assert_trees_close(g_m, g_n, zero=_CYCLEGAN_ZERO)
