"""benchmarks/bench_conv_rules.py: its candidate rules change `auto_form` only where they say
(the head / strided shapes) and leave every other choice to the committed rule."""

from benchmarks import bench_conv_rules as B
from ce2l_jax.models import conv as C

HEAD = (False, (4, 134, 70, 64), (7, 7, 64, 3), (1, 1), 1)         # the CycleGAN's 64 → 3 head
DEMO_HEAD = (False, (4, 70, 38, 8), (7, 7, 8, 3), (1, 1), 1)      # the demo's 8 → 3 head
DOWN = (False, (4, 128, 64, 64), (3, 3, 64, 128), (2, 2), 1)      # the CycleGAN's down0
STEM = (False, (4, 288, 144, 3), (7, 7, 3, 64), (2, 2), 1)        # an RGB stem, strided
BLOCK = (False, (4, 34, 18, 256), (3, 3, 256, 256), (1, 1), 1)    # a residual block
UP = (True, (4, 32, 16, 256), (3, 3, 128, 256), (2, 2), 1)        # transposed, strided


def test_candidate_rules_fire_only_where_they_say():
  narrow, strided = B._narrow_rule(C.auto_form), B._strided_rule(C.auto_form, 16)
  for case in (HEAD, DEMO_HEAD, DOWN, STEM, BLOCK, UP):
    base = C.auto_form(*case, backend="cpu")
    assert narrow(*case, backend="cpu") == ("mixed" if case is HEAD else base), case
    assert strided(*case, backend="cpu") == ("mixed" if case is DOWN else base), case
  assert C.auto_form(*HEAD, backend="cpu") == C.auto_form(*DOWN, backend="cpu") == "native"
  assert B._strided_rule(C.auto_form, 128)(*DOWN, backend="cpu") == "native"  # 64 inputs < 128


def test_wide_stem_and_dense_rules_fire_only_where_they_say():
  wide, stem, dense = (B._wide_rule(C.auto_form), B._stem_rule(C.auto_form),
                       B._dense_rule(C.auto_form))
  for case in (HEAD, DEMO_HEAD, DOWN, STEM, BLOCK, UP):
    base = C.auto_form(*case, backend="cpu")
    assert wide(*case, backend="cpu") == ("mixed" if case is BLOCK else base), case
    assert stem(*case, backend="cpu") == ("mixed" if case is STEM else base), case
    assert dense(*case, backend="cpu") == (base if case is UP else "mixed"), case
  assert C.auto_form(*BLOCK, backend="cpu") == C.auto_form(*STEM, backend="cpu") == "native"
  assert B._wide_rule(C.auto_form, 256 * 512)(*BLOCK, backend="cpu") == "native"
