"""Where a train step's time goes, per XLA operation (issue 15, point 2: "each only where the
profile says it pays").

  .venv/bin/python benchmarks/profile_step.py --net resnet --batch 4          # AGW ResNet-50, 4+4
  .venv/bin/python benchmarks/profile_step.py --net alexnet --batch 16 --form native
  .venv/bin/python benchmarks/profile_step.py --net cyclegan --batch 2 --json /tmp/cg.json

Runs one of `bench_steps.py`'s three train steps (same builders, same shapes) compiled once, then
`--steps` more under `jax.profiler.trace`, and reads the per-operation events XLA:CPU's thunk
executor records (`vm.trace.json.gz`; `XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true` is set
here). Each event is an instruction of the step's optimised HLO (`compiled.as_text()`), which
gives it
* a **category**: a convolution (XLA's own, or the `dot`s of `ce2l_jax.models.conv`'s matmul
  forms: `dot`), max-pool's backward (`select-and-scatter`), a pooling window
  (`reduce-window`), a reduction (`reduce`: batch / instance norm statistics, the losses), a
  `pad`, `elementwise` (arithmetic), a `transpose` or `copy` (layout changes only); a fusion
  takes the category of the heaviest operation it contains, in that order;
* a **pass**: backward when its `op_name` metadata holds `transpose(` (JAX's transpose of the
  forward's linearisation, i.e. the gradient), else forward (the optimiser update counts as
  forward here: it is a few element-wise fusions).
Printed: milliseconds per step and share by category × pass, then the heaviest instructions
with their source op. Times are the executor's busy time per operation: on 2 threads two
independent operations may overlap, so the sum can exceed the step's wall time; the step's wall
time (measured without the profiler), the executor's time under it and the part of that inside
some operation are printed too (what no operation covers is the executor's own scheduling).
Like every CPU figure here it depends on the load (printed).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ce2l_jax import workdir  # noqa: E402

# The heaviest kind of work first: a fusion containing a dot and a reduce is a dot.
CATEGORIES = ("convolution", "dot", "select-and-scatter", "reduce-window", "scatter", "gather",
              "reduce", "pad", "transpose", "copy", "elementwise")
_ELEMENTWISE_SKIP = {"parameter", "constant", "tuple", "get-tuple-element", "bitcast", "broadcast",
                     "reshape", "iota", "slice", "concatenate", "dynamic-slice",
                     "dynamic-update-slice"}
_COMP = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$")
_INSTR = re.compile(r"^\s+(?:ROOT )?%?([\w.\-]+) = (.+?) ([a-z][\w\-]*)\((.*)$")
_CALLS = re.compile(r"calls=%?([\w.\-]+)")
_OPNAME = re.compile(r'op_name="([^"]*)"')


def parse_hlo(text: str) -> dict:
  """{'instrs': {instruction: {'opcode', 'calls', 'op_name', 'computation'}}, 'comps':
  {computation: [opcodes]}, 'callees': {computation: {computations its instructions call}},
  'entry': the ENTRY computation's name} of an optimised HLO module's text."""
  instrs, current, entry = {}, None, None
  comps, callees = collections.defaultdict(list), collections.defaultdict(set)
  for line in text.splitlines():
    m = _COMP.match(line)
    if m and not line.startswith(" "):
      current = m.group(1)
      entry = current if line.startswith("ENTRY") else entry
      continue
    m = _INSTR.match(line)
    if not m:
      continue
    name, opcode, rest = m.group(1), m.group(3), m.group(4)
    calls = _CALLS.search(rest)
    op_name = _OPNAME.search(rest)
    instrs[name] = {"opcode": opcode, "calls": calls.group(1) if calls else None,
                    "op_name": op_name.group(1) if op_name else "", "computation": current}
    comps[current].append(opcode)
    if calls:
      callees[current].add(calls.group(1))
  return {"instrs": instrs, "comps": comps, "callees": callees, "entry": entry}


def category(hlo: dict, name: str) -> str:
  """The category (CATEGORIES) of instruction `name`, looking into the computations it calls."""
  ins = hlo["instrs"][name]
  ops = _called_opcodes(hlo, ins["calls"], set()) | {ins["opcode"]}
  if ins["opcode"] == "custom-call" and "conv" in ins["op_name"]:
    return "convolution"
  for cat in CATEGORIES[:8]:  # convolution … pad
    if cat in ops:
      return cat
  if ops - _ELEMENTWISE_SKIP - {"fusion", "call", "custom-call", "transpose", "copy"}:
    return "elementwise"  # arithmetic, possibly with a layout change fused in
  return "transpose" if "transpose" in ops else "copy"


def _called_opcodes(hlo: dict, comp: str | None, seen: set) -> set:
  """Every opcode of computation `comp` and of the computations it calls, transitively."""
  if not comp or comp in seen:
    return set()
  seen.add(comp)
  ops = set(hlo["comps"].get(comp, ()))
  for callee in hlo["callees"].get(comp, ()):
    ops |= _called_opcodes(hlo, callee, seen)
  return ops


def is_backward(op_name: str) -> bool:
  return "transpose(" in op_name


def aggregate(events: list[dict], hlo: dict, steps: int) -> dict:
  """Per-step milliseconds by (category, pass) and by instruction, from trace events."""
  by_cat = collections.Counter()
  by_instr = collections.Counter()
  cats, spans, executor = {}, [], 0.0
  for e in events:
    name = e.get("name")
    if e.get("ph") == "X" and name == "ThunkExecutor::Execute":
      executor += e["dur"]
    if e.get("ph") != "X" or name not in hlo["instrs"]:
      continue
    spans.append((e["ts"], e["ts"] + e["dur"]))
    if name not in cats:
      cats[name] = category(hlo, name)
    ms = e["dur"] / 1e3 / steps
    passname = "backward" if is_backward(hlo["instrs"][name]["op_name"]) else "forward"
    by_cat[(cats[name], passname)] += ms
    by_instr[name] += ms
  covered, end = 0.0, float("-inf")  # the union of the operations' intervals
  for a, b in sorted(spans):
    covered += max(0.0, b - max(a, end))
    end = max(end, b)
  return {"by_category": by_cat, "by_instruction": by_instr, "categories": cats,
          "covered_ms": covered / 1e3 / steps, "executor_ms": executor / 1e3 / steps}


def profile(net: str, batch: int, steps: int, tiny: bool) -> dict:
  import jax

  from benchmarks.bench_steps import cyclegan_step, reid_step
  if net == "cyclegan":
    kw = dict(size=(64, 32), ngf=8, n_blocks=1) if tiny else {}
    step, _, state, data, n_img = cyclegan_step(batch, **kw)
  else:
    step, _, state, data, n_img = reid_step(net, batch, fast=True, tiny=tiny)
  from benchmarks.bench_steps import step_options
  compiled = jax.jit(step, donate_argnums=0).lower(state, data).compile(
      compiler_options=step_options(net))  # as the trainers compile it
  state, loss = compiled(state, data)  # warm-up
  jax.block_until_ready(loss)
  t0 = time.perf_counter()  # the step's wall time without the profiler
  for _ in range(steps):
    state, loss = compiled(state, data)
    jax.block_until_ready(loss)
  wall = (time.perf_counter() - t0) / steps
  out = tempfile.mkdtemp(prefix="profile_step_")
  try:
    opts = jax.profiler.ProfileOptions()
    opts.host_tracer_level = 3
    with jax.profiler.trace(out, profiler_options=opts):
      for _ in range(steps):
        state, loss = compiled(state, data)
        jax.block_until_ready(loss)
    files = glob.glob(os.path.join(out, "**", "*.trace.json.gz"), recursive=True)
    if not files:
      sys.exit(f"profile_step: jax.profiler wrote no *.trace.json.gz under {out}; this jaxlib's "
               "profiler may not record XLA:CPU operations")
    with gzip.open(files[0]) as f:
      events = json.load(f)["traceEvents"]
  finally:
    shutil.rmtree(out, ignore_errors=True)
  hlo = parse_hlo(compiled.as_text())
  agg = aggregate(events, hlo, steps)
  if not agg["by_instruction"]:
    sys.exit("profile_step: the trace holds no event named after an HLO instruction (is "
             "XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true honoured by this jaxlib?)")
  return {"net": net, "batch": batch, "tiny": tiny, "steps": steps, "images_per_step": n_img,
          "step_wall_ms": wall * 1e3, "load": os.getloadavg()[0],
          "form": os.environ.get("CE2L_CONV_IMPL", "auto"), "hlo": hlo, **agg}


def report(r: dict, top: int) -> str:
  total = sum(r["by_category"].values())
  lines = [f"{r['net']} batch {r['batch']}+{r['batch']}{' (tiny)' if r['tiny'] else ''}, conv "
           f"form {r['form']}: step {r['step_wall_ms']:.1f} ms wall, operations' busy time "
           f"{total:.1f} ms per step (mean of {r['steps']}); under the profiler the executor ran "
           f"{r['executor_ms']:.1f} ms per step, {r['covered_ms']:.1f} ms of it inside at least "
           f"one operation; load {r['load']:.1f}", "",
           "| category | forward ms | backward ms | total ms | share |",
           "| --- | ---: | ---: | ---: | ---: |"]
  cats = sorted({c for c, _ in r["by_category"]},
                key=lambda c: -(r["by_category"][(c, "forward")] + r["by_category"][(c, "backward")]))
  for c in cats:
    f, b = r["by_category"][(c, "forward")], r["by_category"][(c, "backward")]
    lines.append(f"| {c} | {f:.1f} | {b:.1f} | {f + b:.1f} | {100 * (f + b) / total:.1f} % |")
  fwd = sum(v for (c, p), v in r["by_category"].items() if p == "forward")
  lines.append(f"| **all** | {fwd:.1f} | {total - fwd:.1f} | {total:.1f} | 100 % |")
  lines += ["", f"Heaviest {top} instructions:", "",
            "| instruction | category | pass | ms per step | share | source op |",
            "| --- | --- | --- | ---: | ---: | --- |"]
  for name, ms in r["by_instruction"].most_common(top):
    ins = r["hlo"]["instrs"][name]
    src = ins["op_name"]
    src = src if len(src) <= 90 else "…" + src[-89:]
    lines.append(f"| {name} | {r['categories'][name]} | "
                 f"{'backward' if is_backward(ins['op_name']) else 'forward'} | {ms:.1f} | "
                 f"{100 * ms / total:.1f} % | `{src}` |")
  return "\n".join(lines)


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--net", choices=("alexnet", "resnet", "cyclegan"), default="resnet")
  ap.add_argument("--batch", type=int, default=4, help="images per modality (domain)")
  ap.add_argument("--steps", type=int, default=2, help="profiled steps after one warm-up")
  ap.add_argument("--form", default="", help="CE2L_CONV_IMPL for this run (default: as set, auto)")
  ap.add_argument("--tiny", action="store_true", help="the demo's tiny networks (tests)")
  ap.add_argument("--top", type=int, default=15)
  ap.add_argument("--json", default="", help="also write the per-category and per-instruction ms")
  args = ap.parse_args(argv)
  if args.form:
    os.environ["CE2L_CONV_IMPL"] = args.form
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_cpu_enable_xprof_traceme" not in flags:
    os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_enable_xprof_traceme=true").strip()
  r = profile(args.net, args.batch, args.steps, args.tiny)
  print(report(r, args.top))
  if args.json:
    out = {k: r[k] for k in ("net", "batch", "tiny", "steps", "step_wall_ms", "covered_ms",
                             "executor_ms", "load", "form")}
    out["by_category_ms"] = {f"{c}/{p}": v for (c, p), v in r["by_category"].items()}
    out["by_instruction_ms"] = dict(r["by_instruction"].most_common())
    workdir.write_json(args.json, out)


if __name__ == "__main__":
  main()
