"""Convolutions whose forward and gradients run as matrix products (im2col / col2im + `dot`).

A 2-D convolution of an NHWC image x with an HWIO kernel W (kh, kw, C/G, F), strides (sh, sw)
and zero padding is, for every output position (n, p, q) and output channel f,
  y[n, p, q, f] = Σ_{i, j, c} xpad[n, sh·p + i, sw·q + j, c] · W[i, j, c, f].
Gathering the kh·kw shifted, strided views of xpad side by side ("im2col") gives a matrix
P (N·Ho·Wo, kh·kw·C) with y = P · W.reshape(kh·kw·C, F). The two gradients are then
  ∂L/∂W = Pᵀ · dY                                  (one `dot`),
  ∂L/∂x = col2im(dY · Wᵀ)                          (one `dot`, then the transpose of im2col:
                                                    every column block added back at its shift).
Groups (Caffe/AlexNet `group`) run one such product per channel group. The transposed
convolution (PyTorch `ConvTranspose2d`, flax `ConvTranspose(transpose_kernel=True)`) is the
input-gradient map of a strided convolution, so its forward is `col2im(x · Wᵀ)` and its
gradients are the convolution forward and a weight product (Dumoulin & Visin 2016, "A guide to
convolution arithmetic", §4). This is the classic Caffe lowering (Jia et al. 2014;
Chellapilla et al. 2006), written here because XLA:CPU lowers `conv` (and especially its
gradients) to loops far below its `dot` rate, while `dot` runs at the machine's roofline
(docs/notes/fast_convolution.md has the per-layer measurements).

`im2col` (zero `pad` + kh·kw strided `slice`s + `concatenate`) and `col2im` (kh·kw interior
`pad`s + adds) are each other's linear transposes, and JAX transposes `slice` into `pad` and back,
so `conv2d` / `conv_transpose2d` are plain compositions of them with `dot` whose gradients
(`jax.grad`, and forward mode too) are again im2col/col2im and `dot`s.
`conv2d` and `conv_transpose2d` additionally rematerialise the patches in the backward pass
(`jax.checkpoint`), so a layer keeps its input, not the kh·kw times larger patch matrix, for the
weight gradient.

Measured on XLA:CPU (docs/notes/fast_convolution.md): the *forward* convolution is fast (its
Eigen kernel does its own packing, faster than an XLA-assembled patch matrix), while the
gradients are slow — the weight gradient and the input gradient of strided convolutions
(XLA dilates ∂y) run 3–10× below the `dot` rate, and `feature_group_count` costs as much as
a dense convolution. Hence the forms `impl` chooses from:
- "mixed" (a `jax.custom_vjp`): forward = per group, XLA's convolution,
  or for wide-channel layers (C·F ≥ 256·512) one `dot` per kernel tap (Σ_ij view_ij(x)·K[i, j]),
  1×1: one `dot`; ∂x = for stride 1 the same forward form applied to ∂y with the flipped,
  transposed kernel, for strides > 1 col2im of one `dot` per kernel tap; ∂K[i, j] =
  view_ij(x)ᵀ · ∂y, one `dot` per kernel tap (the im2col product split by tap, no patch matrix;
  for < 16 input channels one patch-matrix `dot`). The transposed convolution is wired the other way round (forward = the ∂x map,
  ∂x = the forward convolution). A convolution with ≤ 4 outputs (an image head) takes the
  output-side branch instead: one `dot` to all taps' outputs on the input grid, summed at their
  shifts; its ∂K and ∂x are one `dot` each (`_conv_narrow`). Forward-mode differentiation (`jax.jvp`) is not defined for it.
- "matmul": everything through the patch matrix (forward included), built from `pad`, strided
  `slice`s and `concatenate` — linear maps JAX transposes itself, so forward mode works too;
  the patches are rematerialised in the backward pass (`jax.checkpoint`).
- "native": `lax.conv_general_dilated` / `lax.conv_transpose` and JAX's own gradients.
- "auto" (the default): per convolution, `auto_form` picks "mixed" or "native" from the static
  shape — on CPU "mixed" for grouped, strided transposed and 1×1 convolutions (where XLA:CPU's
  gradients are 2–30× slower than dots), "native" for the dense k×k ones (where they are not);
  on GPU/TPU "native" everywhere (cuDNN). Its docstring has the measured basis;
  `CE2L_CONV_IMPL=mixed|matmul|native` selects one form for a whole run.
The modules' `impl=None` means the process default: "auto", or the environment variable
`CE2L_CONV_IMPL`, or what `use_impl(...)` sets while a function is traced (a function already
compiled by `jax.jit` keeps the form it was traced with).
The Flax modules `Conv`, `ConvTranspose` keep the parameter names and shapes of
`flax.linen.Conv` / `ConvTranspose(transpose_kernel=True)` (`kernel` (kh, kw, C/G, F), `bias`
(F,)), so checkpoints and the pretrained loaders work unchanged.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import contextlib
import functools
import os
from typing import Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Array = jnp.ndarray
Initializer = Callable[..., Array]
Pads = tuple[tuple[int, int], tuple[int, int]]
IMPLS = ("auto", "mixed", "matmul", "native")
_DN = ("NHWC", "HWIO", "NHWC")


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
  return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def normalize_padding(padding: Any, in_hw: Sequence[int], kernel_hw: Sequence[int],
                      strides: Sequence[int]) -> Pads:
  """Explicit ((top, bottom), (left, right)) from an int, (ph, pw), ((t, b), (l, r)), "VALID" or
  "SAME" (XLA/flax SAME: the extra row/column, if any, at the bottom/right)."""
  if isinstance(padding, str):
    pads = lax.padtype_to_pads(tuple(in_hw), tuple(kernel_hw), tuple(strides), padding.upper())
    return tuple((int(a), int(b)) for a, b in pads)  # type: ignore[return-value]
  if isinstance(padding, int):
    return ((padding, padding), (padding, padding))
  padding = tuple(padding)
  if len(padding) == 2 and all(isinstance(p, int) for p in padding):
    return ((padding[0], padding[0]), (padding[1], padding[1]))
  if len(padding) == 2 and all(len(p) == 2 for p in padding):
    return tuple((int(a), int(b)) for a, b in padding)  # type: ignore[return-value]
  raise ValueError(f"padding must be an int, (ph, pw), ((top, bottom), (left, right)), 'SAME' or "
                   f"'VALID'; got {padding!r}")


_default_impl = [os.environ.get("CE2L_CONV_IMPL", "auto")]


@contextlib.contextmanager
def use_impl(impl: str) -> Iterator[None]:
  """Within the block, `impl=None` convolutions trace in the form `impl`."""
  resolve_impl(impl)
  _default_impl.append(impl)
  try:
    yield
  finally:
    _default_impl.pop()


def resolve_impl(impl: str | None) -> str:
  """None → the process default (`CE2L_CONV_IMPL`, `use_impl`, else "auto"), checked; "auto" stays
  "auto" (per layer, `auto_form` picks the form from the layer's static shape)."""
  if impl is None:
    impl = _default_impl[-1]
    if impl not in IMPLS:
      raise ValueError(f"CE2L_CONV_IMPL={impl!r}: use one of {IMPLS}")
  if impl not in IMPLS:
    raise ValueError(f"conv impl must be one of {IMPLS}, got {impl!r}")
  return impl


def auto_form(transposed: bool, x_shape: Sequence[int], kernel_shape: Sequence[int],
              strides: Sequence[int], groups: int = 1, backend: str | None = None) -> str:
  """The form "auto" gives one convolution, "native" or "mixed", from its static shape.

  GPU/TPU: "native" (cuDNN's convolutions and gradients are the fast path). CPU: "mixed" for
  - grouped convolutions (`groups > 1`): XLA:CPU runs `feature_group_count` (forward and
    gradients) as slowly as a dense convolution; mixed is one convolution per group forward and
    dots backward. AlexNet conv2/4/5 (batch 8): 0.556 / 0.223 / 0.187 CPU s native, 0.104 /
    0.044 / 0.024 mixed; alexnet_tiny conv2 0.018 vs 0.002;
  - strided transposed convolutions: XLA's gradient of `conv_transpose` is 15–30× slower than
    dots (CycleGAN up-sampling, batch 2: 0.347 / 0.364 native, 0.011 / 0.024 mixed);
  - 1×1 convolutions (any stride): forward and gradients are single dots, 2–3× faster than
    XLA's convolution (ResNet-50's 1×1s at batch 4+4: 0.024–0.207 native, 0.010–0.077 mixed;
    the 1×1/2 downsample 0.058 vs 0.027);
  and "native" for every other (k×k, dense) convolution, strided or not, narrow or wide: there
  XLA's convolution and gradients were as fast or faster — ResNet 3×3/1 64→64 at 72×36 0.031
  native vs 0.073 mixed, 3×3/2 128→128 0.036 vs 0.070, 3×3/1 512→512 at 18×9 0.153 vs 0.140,
  CycleGAN blocks 256→256 0.026 vs 0.023, the RGB stems
  (AlexNet 11×11/4 0.029 vs 0.083, ResNet 7×7/2 0.018 vs 0.040), which is also why the channel
  count and the image size (`x_shape`) do not enter the rule. The CycleGAN's 7×7 64→3 head
  stays native too: alone, mixed's output-side branch runs its forward and gradients 2.6× faster
  (batch 4: 0.081 against 0.212 CPU s, 2026-12-03), but inside the whole step no gain resolved
  (`benchmarks/bench_conv_rules.py`, round-robin in one process, four runs: −4 %, +1 %, +4 %,
  −6 % wall).
  Measured 2026-12-01 with
  `benchmarks/bench_conv_choice.py` (forward + weight gradient + input gradient of each distinct
  convolution of a network, median CPU s, shared 2-core EPYC; tables in
  docs/notes/fast_convolution.md).
  """
  del x_shape  # measured not to change the choice (see above)
  if (backend or jax.default_backend()) != "cpu":
    return "native"
  kh, kw = kernel_shape[:2]
  if groups > 1:
    return "mixed"
  if transposed:
    return "mixed" if max(strides) > 1 else "native"
  if kh == kw == 1:
    return "mixed"
  return "native"


def _form(impl: str | None, transposed: bool, x_shape, kernel_shape, strides, groups=1) -> str:
  form = resolve_impl(impl)
  return auto_form(transposed, x_shape, kernel_shape, strides, groups) if form == "auto" else form


def _out_size(size: int, k: int, s: int, lo: int, hi: int) -> int:
  return (size + lo + hi - k) // s + 1


# --------------------------------------------------------------------------- im2col/col2im --


def _pad_input(x: Array, pads: Pads) -> Array:
  """x zero-padded by pads ((top, bottom), (left, right)) in H and W."""
  (pt, pb), (pl, pr) = pads
  if not (pt or pb or pl or pr):
    return x
  return lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (pt, pb, 0), (pl, pr, 0), (0, 0, 0)))


def _at_tap(a: Array, i: int, j: int, strides: tuple[int, int], hp: int, wp: int) -> Array:
  """a (N, Ho, Wo, C) placed where tap (i, j) of a (strides) convolution reads it on the
  (Hp, Wp) padded input grid, zeros elsewhere: the transpose of that tap's strided view."""
  (sh, sw), (ho, wo) = strides, a.shape[1:3]
  return lax.pad(a, jnp.zeros((), a.dtype),
                 ((0, 0, 0), (i, hp - (i + sh * (ho - 1) + 1), sh - 1),
                  (j, wp - (j + sw * (wo - 1) + 1), sw - 1), (0, 0, 0)))


def _im2col(x: Array, kernel_hw: tuple[int, int], strides: tuple[int, int], pads: Pads) -> Array:
  """(N, H, W, C) → patches (N, Ho, Wo, kh·kw·C), column order (i, j, c) like an HWIO kernel.

  Separable: the kw column shifts first ((N, Hp, Wo, kw·C)), then the kh row shifts of that, so
  each `concatenate` has k operands, not k² (121 for an 11×11 kernel).
  """
  (kh, kw), (sh, sw) = kernel_hw, strides
  x = _pad_input(x, pads)
  n, h, w, c = x.shape
  ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
  if ho < 1 or wo < 1:
    raise ValueError(f"convolution input {h}x{w} (padded) is smaller than the {kh}x{kw} kernel")
  cat = lambda xs: xs[0] if len(xs) == 1 else jnp.concatenate(xs, axis=-1)
  x = cat([lax.slice(x, (0, 0, j, 0), (n, h, j + sw * (wo - 1) + 1, c), (1, 1, sw, 1))
           for j in range(kw)])
  return cat([lax.slice(x, (0, i, 0, 0), (n, i + sh * (ho - 1) + 1, wo, kw * c), (1, sh, 1, 1))
              for i in range(kh)])


def _col2im(cols: Array, in_shape: tuple[int, ...], kernel_hw: tuple[int, int],
            strides: tuple[int, int], pads: Pads) -> Array:
  """The linear transpose of `_im2col`: adds every column block back at its shift (rows, then
  columns)."""
  (kh, kw), (sh, sw), ((pt, pb), (pl, pr)) = kernel_hw, strides, pads
  n, h, w, c = in_shape
  hp, wp = h + pt + pb, w + pl + pr
  ho, wo = cols.shape[1], cols.shape[2]
  zero = jnp.zeros((), cols.dtype)

  def add_shifted(blocks, axis, size, stride, n_out):
    out = None
    for i, blk in enumerate(blocks):
      cfg = [(0, 0, 0)] * 4
      cfg[axis] = (i, size - (i + stride * (n_out - 1) + 1), stride - 1)
      part = lax.pad(blk, zero, cfg)
      out = part if out is None else out + part
    return out

  split = lambda a, k: [a] if k == 1 else [a[..., i * (a.shape[-1] // k):(i + 1) * (a.shape[-1] // k)]
                                           for i in range(k)]
  x = add_shifted(split(cols, kh), 1, hp, sh, ho)        # (N, Hp, Wo, kw·C)
  x = add_shifted(split(x, kw), 2, wp, sw, wo)           # (N, Hp, Wp, C)
  if pt or pb or pl or pr:
    x = lax.slice(x, (0, pt, pl, 0), (n, pt + h, pl + w, c))
  return x


def im2col(x: Array, kernel_hw: tuple[int, int], strides: tuple[int, int], pads: Pads) -> Array:
  """Patches (N, Ho, Wo, kh·kw·C) of NHWC `x`. Built from `pad` and strided `slice`s, whose
  transposes are `slice` and `pad`: JAX's gradient of `im2col` is `col2im`, and forward-mode
  differentiation works too."""
  return _im2col(x, kernel_hw, strides, pads)


def col2im(cols: Array, in_shape: tuple[int, ...], kernel_hw: tuple[int, int],
           strides: tuple[int, int], pads: Pads) -> Array:
  """Image (in_shape) from patches: the linear transpose of `im2col` (its gradient is `im2col`)."""
  return _col2im(cols, in_shape, kernel_hw, strides, pads)


# ------------------------------------------------------------------------- convolutions ----


# Accumulation: every product and every sum of products (per-tap dots, col2im) is accumulated in
# float32 (float64 for float64 inputs: never narrower than the input) and rounded to the compute
# dtype once, at the end of a primitive — as cuDNN / cuBLAS do for bfloat16. For float32 inputs
# this is the plain float32 computation (bit for bit).
_ACC = jnp.float32


def _acc(dtype: Any) -> Any:
  """The accumulation dtype for inputs of `dtype`: float32, or the input's when wider."""
  return jnp.promote_types(dtype, _ACC)


def _matmul(a: Array, b: Array) -> Array:
  """(..., K) · (K, F) → (..., F) as one `dot` over the flattened leading axes, accumulated (and
  returned) in float32."""
  lead = a.shape[:-1]
  return jnp.dot(a.reshape(-1, a.shape[-1]), b,
                 preferred_element_type=_acc(a.dtype)).reshape(*lead, b.shape[-1])


def _conv_matmul(x: Array, kernel: Array, strides: tuple[int, int], pads: Pads,
                 groups: int) -> Array:
  kh, kw, ci, f = kernel.shape
  co = f // groups
  outs = []
  for g in range(groups):
    xg = x if groups == 1 else x[..., g * ci:(g + 1) * ci]
    kg = kernel if groups == 1 else kernel[..., g * co:(g + 1) * co]
    outs.append(_matmul(im2col(xg, (kh, kw), strides, pads), kg.reshape(kh * kw * ci, co)))
  return (outs[0] if groups == 1 else jnp.concatenate(outs, axis=-1)).astype(x.dtype)


# The "mixed" form: three primitives, each in the form that is fast on XLA:CPU, and a custom VJP
# that wires them. For a convolution y = F(x, K):  ∂x = B(∂y, K), ∂K = W(x, ∂y); for the
# transposed convolution y = B(x, K):  ∂x = F(∂y, K), ∂K = W(∂y, x).

def _groups(a: Array, g: int, n: int) -> list[Array]:
  """The g channel groups of `a` (last axis), each n wide."""
  return [a] if g == 1 else [a[..., i * n:(i + 1) * n] for i in range(g)]


def _cat(xs: list[Array]) -> Array:
  return xs[0] if len(xs) == 1 else jnp.concatenate(xs, axis=-1)


def _is_pointwise(kernel_hw, pads) -> bool:
  return tuple(kernel_hw) == (1, 1) and not any(p for pp in pads for p in pp)


# Measured per layer (docs/notes/fast_convolution.md): XLA:CPU's forward convolution runs near
# the dot rate for the wide-image, narrow-channel layers, but 2–3× below it for the narrow-image,
# wide-channel ones (ResNet layer4: 512 → 512 at 18×9), where one dot per tap wins.
_TAPS_MIN_CHANNEL_PRODUCT = 256 * 512
# The weight gradient of a layer with few input channels (an RGB stem) as one patch-matrix dot:
# its per-tap dots would be (3 × N·Ho·Wo)·(N·Ho·Wo × F) slivers, 121 of them for 11×11.
_PATCHES_MAX_CHANNELS = 16


def _conv_taps(x: Array, kernel: Array, strides: tuple[int, int], pads: Pads) -> Array:
  """Σ_ij view_ij(x) · K[i, j]: one dot per kernel tap (no patch matrix), summed in float32."""
  kh, kw = kernel.shape[:2]
  out = None
  for idx, v in enumerate(_shifted_views(x, (kh, kw), strides, pads)):
    t = _matmul(v, kernel[idx // kw, idx % kw])
    out = t if out is None else out + t
  return out.astype(x.dtype)


def _conv_one(x: Array, kernel: Array, strides: tuple[int, int], pads: Pads) -> Array:
  """One group's forward convolution in its fastest form: 1×1 → a dot; wide channels → one dot
  per tap; otherwise XLA's convolution."""
  kh, kw, ci, co = kernel.shape
  if _is_pointwise((kh, kw), pads):
    return _matmul(x[:, ::strides[0], ::strides[1]], kernel.reshape(ci, co)).astype(x.dtype)
  if ci * co >= _TAPS_MIN_CHANNEL_PRODUCT:
    return _conv_taps(x, kernel, strides, pads)
  return lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=_DN,
                                  preferred_element_type=_acc(x.dtype)).astype(x.dtype)


def _fwd_prim(x: Array, kernel: Array, strides: tuple[int, int], pads: Pads,
              groups: int) -> Array:
  """F: the forward convolution, one `_conv_one` per group (XLA's `feature_group_count` form
  costs as much as a dense convolution with G× the FLOPs)."""
  ci, co = kernel.shape[2], kernel.shape[3] // groups
  return _cat([_conv_one(xg, kg, strides, pads)
               for xg, kg in zip(_groups(x, groups, ci), _groups(kernel, groups, co))])


def _bwd_prim(dy: Array, kernel: Array, x_shape: tuple[int, ...], strides: tuple[int, int],
              pads: Pads, groups: int) -> Array:
  """B: ∂x of F for output cotangent ∂y. Stride 1: the forward convolution (`_conv_one`) of ∂y
  with the flipped, transposed kernel; strided: col2im(∂y · Kᵀ), one dot per tap (XLA's own
  form dilates ∂y, which XLA:CPU runs slowly)."""
  kh, kw, ci, f = kernel.shape
  co = f // groups
  (pt, pb), (pl, pr) = pads
  outs = []
  for dyg, kg in zip(_groups(dy, groups, co), _groups(kernel, groups, co)):
    if strides == (1, 1) and max(pt, pb) <= kh - 1 and max(pl, pr) <= kw - 1:
      kt = jnp.flip(kg, (0, 1)).transpose(0, 1, 3, 2)
      outs.append(_conv_one(dyg, kt, (1, 1),
                            ((kh - 1 - pt, kh - 1 - pb), (kw - 1 - pl, kw - 1 - pr))))
    else:  # col2im: ∂x = Σ_ij shift_ij(∂y · K[i, j]ᵀ), one `dot` per tap, added in one pass
      n, h, w = x_shape[:3]
      hp, wp = h + pt + pb, w + pl + pr
      acc = None
      for i in range(kh):
        for j in range(kw):
          part = _at_tap(_matmul(dyg, kg[i, j].T), i, j, strides, hp, wp)
          acc = part if acc is None else acc + part
      outs.append(lax.slice(acc, (0, pt, pl, 0), (n, pt + h, pl + w, ci)).astype(dy.dtype))
  return _cat(outs)


def _shifted_views(x: Array, kernel_hw: tuple[int, int], strides: tuple[int, int],
                   pads: Pads) -> list[Array]:
  """The kh·kw views xpad[:, i::sh, j::sw][:Ho, :Wo] (each a contiguous (N, Ho, Wo, C) copy)."""
  (kh, kw), (sh, sw) = kernel_hw, strides
  x = _pad_input(x, pads)
  n, h, w, c = x.shape
  ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
  return [lax.slice(x, (0, i, j, 0), (n, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c),
                    (1, sh, sw, 1)) for i in range(kh) for j in range(kw)]


def _wgrad_prim(x: Array, dy: Array, kernel_shape: tuple[int, ...], strides: tuple[int, int],
                pads: Pads, groups: int) -> Array:
  """W: ∂K of F. ∂K[i, j] = view_ij(x)ᵀ · ∂y: kh·kw `dot`s contracting N·Ho·Wo, per group (the
  im2col product split by kernel tap, so no patch matrix is assembled)."""
  kh, kw, ci, f = kernel_shape
  co = f // groups
  outs = []
  for xg, dyg in zip(_groups(x, groups, ci), _groups(dy, groups, co)):
    contract = lambda v: lax.dot_general(v, dyg, (((0, 1, 2), (0, 1, 2)), ((), ())),
                                         preferred_element_type=_acc(x.dtype))
    if ci < _PATCHES_MAX_CHANNELS and kh * kw > 1:
      outs.append(contract(_im2col(xg, (kh, kw), strides, pads)).reshape(kh, kw, ci, co))
    else:
      taps = [contract(v) for v in _shifted_views(xg, (kh, kw), strides, pads)]
      outs.append(jnp.stack(taps).reshape(kh, kw, ci, co))
  return _cat(outs)


# Narrow outputs (an image generator's 7×7 64 → 3 head): XLA's convolution and the per-tap dots
# are both (…, C)·(C, 3) slivers, 3–30× below the dot rate (docs/notes/fast_convolution.md). The
# output-side form makes it one wide product: Z = xpad · K_(C, kh·kw·F) on the padded input grid,
# then y = Σ_ij view_ij(Z's columns of tap (i, j)) — the transposed convolution's col2im read
# the other way. Its VJP: ∂Z = the kh·kw shifted (strided) copies of ∂y side by side,
# ∂K = xpadᵀ · ∂Z and ∂xpad = ∂Z · Kᵀ, two more wide dots.
_NARROW_MAX_OUT = 4


def _is_narrow_out(kernel_shape, groups: int) -> bool:
  kh, kw, _, f = kernel_shape
  return groups == 1 and f <= _NARROW_MAX_OUT and kh * kw > 1


def _narrow_kernel(kernel: Array) -> Array:
  """(kh, kw, C, F) → (C, kh·kw·F), columns ordered (i, j, f)."""
  kh, kw, ci, f = kernel.shape
  return kernel.transpose(2, 0, 1, 3).reshape(ci, kh * kw * f)


def _narrow_fwd_prim(x: Array, kernel: Array, strides: tuple[int, int], pads: Pads) -> Array:
  kh, kw, _, f = kernel.shape
  (sh, sw) = strides
  xp = _pad_input(x, pads)
  n, hp, wp, _ = xp.shape
  ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
  z = _matmul(xp, _narrow_kernel(kernel))  # (N, Hp, Wp, kh·kw·F), accumulated in float32
  y = None
  for i in range(kh):
    for j in range(kw):
      t = i * kw + j
      v = lax.slice(z, (0, i, j, t * f), (n, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, (t + 1) * f),
                    (1, sh, sw, 1))
      y = v if y is None else y + v
  return y.astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_narrow(x, kernel, strides, pads):
  return _narrow_fwd_prim(x, kernel, strides, pads)


def _conv_narrow_fwd(x, kernel, strides, pads):
  return _narrow_fwd_prim(x, kernel, strides, pads), (x, kernel)


def _conv_narrow_bwd(strides, pads, res, dy):
  x, kernel = res
  kh, kw, ci, f = kernel.shape
  (pt, _), (pl, _) = pads
  xp = _pad_input(x, pads)
  n, hp, wp, _ = xp.shape
  dz = jnp.concatenate([_at_tap(dy, i, j, strides, hp, wp)  # transpose of the forward's views
                        for i in range(kh) for j in range(kw)], axis=-1)
  dk = lax.dot_general(xp, dz, (((0, 1, 2), (0, 1, 2)), ((), ())),
                       preferred_element_type=_acc(x.dtype))  # (C, kh·kw·F)
  dk = dk.reshape(ci, kh, kw, f).transpose(1, 2, 0, 3)
  dxp = _matmul(dz, _narrow_kernel(kernel).T)
  dx = lax.slice(dxp, (0, pt, pl, 0), (n, pt + x.shape[1], pl + x.shape[2], ci))
  return dx.astype(x.dtype), dk.astype(kernel.dtype)


_conv_narrow.defvjp(_conv_narrow_fwd, _conv_narrow_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_mixed(x, kernel, strides, pads, groups):
  return _fwd_prim(x, kernel, strides, pads, groups)


def _conv_mixed_fwd(x, kernel, strides, pads, groups):
  return _fwd_prim(x, kernel, strides, pads, groups), (x, kernel)


def _conv_mixed_bwd(strides, pads, groups, res, dy):
  x, kernel = res
  return (_bwd_prim(dy, kernel, x.shape, strides, pads, groups).astype(x.dtype),
          _wgrad_prim(x, dy, kernel.shape, strides, pads, groups).astype(kernel.dtype))


_conv_mixed.defvjp(_conv_mixed_fwd, _conv_mixed_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_transpose_mixed(x, kernel, strides, pads, y_shape):
  # flax/lax `transpose_kernel=True`, kernel K (kh, kw, F, C): y = B(x, K) for F: (…, F) → (…, C)
  return _bwd_prim(x, kernel, y_shape, strides, pads, 1)


def _conv_transpose_mixed_fwd(x, kernel, strides, pads, y_shape):
  return _bwd_prim(x, kernel, y_shape, strides, pads, 1), (x, kernel)


def _conv_transpose_mixed_bwd(strides, pads, y_shape, res, dy):
  x, kernel = res
  return (_fwd_prim(dy, kernel, strides, pads, 1).astype(x.dtype),
          _wgrad_prim(dy, x, kernel.shape, strides, pads, 1).astype(kernel.dtype))


_conv_transpose_mixed.defvjp(_conv_transpose_mixed_fwd, _conv_transpose_mixed_bwd)


def conv2d(x: Array, kernel: Array, strides: int | Sequence[int] = 1, padding: Any = 0,
           groups: int = 1, impl: str | None = None) -> Array:
  """`lax.conv_general_dilated(x, kernel, strides, padding, ("NHWC", "HWIO", "NHWC"),
  feature_group_count=groups)` in the form `impl` selects (see the module docstring).

  x (N, H, W, C), kernel (kh, kw, C/groups, F); padding as in `normalize_padding`.
  """
  kh, kw, ci, f = kernel.shape
  strides = _pair(strides)
  pads = normalize_padding(padding, x.shape[1:3], (kh, kw), strides)
  if x.shape[-1] != ci * groups or f % groups:
    raise ValueError(f"conv2d: input channels {x.shape[-1]} / kernel {kernel.shape} do not match "
                     f"groups={groups}")
  form = _form(impl, False, x.shape, kernel.shape, strides, groups)
  if form == "native":
    return lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=_DN,
                                    feature_group_count=groups)
  if form == "mixed":
    if _is_narrow_out(kernel.shape, groups):
      return _conv_narrow(x, kernel, strides, pads)
    return _conv_mixed(x, kernel, strides, pads, groups)
  if kh == kw == 1 and not any(p for pp in pads for p in pp):
    return _conv_matmul(x, kernel, strides, pads, groups)  # no patches to rematerialise
  return jax.checkpoint(_conv_matmul, static_argnums=(2, 3, 4))(x, kernel, strides, pads, groups)


def _conv_transpose_matmul(x: Array, kernel: Array, strides: tuple[int, int], pads: Pads,
                           out_hw: tuple[int, int]) -> Array:
  # flax/lax `transpose_kernel=True` with kernel K (kh, kw, F, C) is the input-gradient map of the
  # forward convolution z (…, F) ↦ conv(z, K, strides, pads) (…, C): y = col2im(x · K_flatᵀ).
  kh, kw, f, c = kernel.shape
  cols = _matmul(x, kernel.reshape(kh * kw * f, c).T)
  return col2im(cols, (x.shape[0], *out_hw, f), (kh, kw), strides, pads).astype(x.dtype)


def conv_transpose2d(x: Array, kernel: Array, strides: int | Sequence[int] = 1,
                     padding: Any = "SAME", impl: str | None = None) -> Array:
  """`lax.conv_transpose(x, kernel, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
  transpose_kernel=True)` — flax `ConvTranspose(transpose_kernel=True)`, PyTorch
  `ConvTranspose2d` — in the form `impl` selects.

  kernel (kh, kw, F, C) with C = x's channels; explicit padding ((lo, hi), …) means, as in
  `lax.conv_transpose`, the padding of the stride-dilated input: PyTorch's
  `ConvTranspose2d(k, s, p, output_padding=op)` is ((k−1−p, k−1−p+op), …).
  """
  kh, kw, f, c = kernel.shape
  strides = _pair(strides)
  if x.shape[-1] != c:
    raise ValueError(f"conv_transpose2d: input channels {x.shape[-1]} != kernel {kernel.shape}[3]")
  form = _form(impl, True, x.shape, kernel.shape, strides)
  if form == "native":
    return lax.conv_transpose(x, kernel, strides, padding, dimension_numbers=_DN,
                              transpose_kernel=True)
  pads_t = _transpose_pads(padding, x.shape[1:3], (kh, kw), strides)
  # Output size out = (n−1)·s + 1 + lo + hi − k + 1; the forward conv it transposes pads its
  # input (size out) by (k−1−lo, k−1−hi). A negative forward pad crops rows that the forward
  # conv never reads: those outputs get no contribution (zeros), added back after col2im.
  core_hw, fwd_pads, crop = [], [], []
  for d, (k, s, (lo, hi)) in enumerate(zip((kh, kw), strides, pads_t)):
    out = (x.shape[1 + d] - 1) * s + 1 + lo + hi - k + 1
    plo, phi = k - 1 - lo, k - 1 - hi
    core_hw.append(out + min(plo, 0) + min(phi, 0))
    fwd_pads.append((max(plo, 0), max(phi, 0)))
    crop.append((-min(plo, 0), -min(phi, 0), 0))
  if form == "mixed":
    y = _conv_transpose_mixed(x, kernel, strides, tuple(fwd_pads), (x.shape[0], *core_hw, f))
  else:
    fn = lambda x, k: _conv_transpose_matmul(x, k, strides, tuple(fwd_pads), tuple(core_hw))
    y = jax.checkpoint(fn)(x, kernel)
  if any(v for p in crop for v in p):
    y = lax.pad(y, jnp.zeros((), y.dtype), ((0, 0, 0), crop[0], crop[1], (0, 0, 0)))
  return y


def _transpose_pads(padding: Any, in_hw: Sequence[int], kernel_hw: Sequence[int],
                    strides: Sequence[int]) -> Pads:
  """Explicit pads of the dilated input, as `lax.conv_transpose` computes them from a string."""
  if not isinstance(padding, str):
    return normalize_padding(padding, in_hw, kernel_hw, strides)
  pads = []
  for k, s in zip(kernel_hw, strides):
    if padding.upper() == "SAME":
      total, lo = k + s - 2, (k - 1 if s > k - 1 else -(-(k + s - 2) // 2))
    elif padding.upper() == "VALID":
      total, lo = k + s - 2 + max(k - s, 0), k - 1
    else:
      raise ValueError(f"padding must be 'SAME', 'VALID' or explicit pairs, got {padding!r}")
    pads.append((lo, total - lo))
  return tuple(pads)  # type: ignore[return-value]


# ------------------------------------------------------------------------- flax modules ----


class Conv(nn.Module):
  """Drop-in for `flax.linen.Conv` (NHWC, no dilation) with the convolution form `impl`.

  Parameters: `kernel` (kh, kw, C/groups, features), `bias` (features,) — the names, shapes and
  layout of `nn.Conv(feature_group_count=groups)`. `padding`: an int or (ph, pw) (symmetric,
  PyTorch/Caffe `pad`), ((t, b), (l, r)), "SAME" or "VALID".
  """
  features: int
  kernel_size: int | Sequence[int]
  strides: int | Sequence[int] = 1
  padding: Any = "SAME"
  feature_group_count: int = 1
  use_bias: bool = True
  impl: str | None = None
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kh, kw = _pair(self.kernel_size)
    g = self.feature_group_count
    cin = x.shape[-1]
    if cin % g or self.features % g:
      raise ValueError(f"Conv: channels {cin}->{self.features} not divisible by groups={g}")
    kernel = self.param("kernel", self.kernel_init, (kh, kw, cin // g, self.features),
                        self.param_dtype)
    bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias else None)
    dtype = self.dtype or jnp.result_type(x, kernel)
    y = conv2d(x.astype(dtype), kernel.astype(dtype), self.strides, self.padding, g, self.impl)
    if bias is not None:
      y = y + bias.astype(dtype)
    return y


class ConvTranspose(nn.Module):
  """Drop-in for `flax.linen.ConvTranspose(..., transpose_kernel=True)` (PyTorch
  `ConvTranspose2d` semantics) with the form `impl`; parameters `kernel` (kh, kw, features, C),
  `bias` (features,)."""
  features: int
  kernel_size: int | Sequence[int]
  strides: int | Sequence[int] = 1
  padding: Any = "SAME"
  use_bias: bool = True
  impl: str | None = None
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kh, kw = _pair(self.kernel_size)
    kernel = self.param("kernel", self.kernel_init, (kh, kw, self.features, x.shape[-1]),
                        self.param_dtype)
    bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias else None)
    dtype = self.dtype or jnp.result_type(x, kernel)
    y = conv_transpose2d(x.astype(dtype), kernel.astype(dtype), self.strides, self.padding,
                         self.impl)
    if bias is not None:
      y = y + bias.astype(dtype)
    return y
