"""`benchmarks/profile_step.py`: per-operation time of a train step from XLA:CPU's trace."""

import json
import os

import jax
import jax.numpy as jnp

from benchmarks import profile_step as p


def test_categories_and_passes_from_the_optimised_hlo():
  """Each instruction of a compiled gradient gets the category of what it (or its fusion) does,
  and the pass from JAX's op_name (`transpose(` = the gradient)."""
  def f(x, w):
    y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y = jax.lax.reduce_window(y, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return jnp.sum(jnp.tanh(y) ** 2)

  x, w = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
  hlo = p.parse_hlo(jax.jit(jax.grad(f)).lower(x, w).compile().as_text())
  entry = [n for n, i in hlo["instrs"].items() if i["computation"] == hlo["entry"]]
  cats = {n: p.category(hlo, n) for n in entry}
  convs = [n for n, c in cats.items() if c == "convolution"]
  assert len(convs) >= 2, cats  # the forward conv and the weight gradient's
  assert any(p.is_backward(hlo["instrs"][n]["op_name"]) for n in convs)
  assert any(not p.is_backward(hlo["instrs"][n]["op_name"]) for n in convs)
  assert "reduce-window" in cats.values() or "select-and-scatter" in cats.values(), cats
  assert "elementwise" in cats.values()  # tanh and its derivative, fused
  # a fusion is categorised by what it calls (by its opcode alone it would be a `copy`)
  fusions = [n for n in entry if hlo["instrs"][n]["opcode"] == "fusion"]
  assert any(cats[n] == "elementwise" for n in fusions), {n: cats[n] for n in fusions}


def test_profile_of_the_tiny_reid_step(tmp_path, capsys, monkeypatch):
  # main() adds the trace flag to XLA_FLAGS: restored after the test, for later subprocesses
  monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
  out = tmp_path / "prof.json"
  p.main(["--net", "resnet", "--tiny", "--batch", "2", "--steps", "1", "--top", "5",
          f"--json={out}"])
  r = json.load(open(out))
  cat = r["by_category_ms"]
  assert cat.get("convolution/forward", 0) > 0 and cat.get("convolution/backward", 0) > 0
  assert sum(cat.values()) > 0 and len(r["by_instruction_ms"]) > 20
  assert 0 < r["covered_ms"] <= r["executor_ms"] + 1e-6
  text = capsys.readouterr().out
  assert "| convolution |" in text and "Heaviest 5 instructions" in text
