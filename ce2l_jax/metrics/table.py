"""Result tables in the seed paper's layout, as text or markdown, and the same results as JSON.

`rows` is `{row name (method or run): {group name (dataset / setting): result}}`, where a result
is a `TrialResults`, its `to_dict()` form (e.g. read back from `results_to_json`), or a plain
`{key: fraction}` mapping (no std). Groups are shown in order of first appearance; per group the
columns are r=1, r=10, r=20, mAP, mINP; a cell is `mean ± std` in percent with 2 decimals, `–`
where a row has no result for the group.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np

from ce2l_jax.metrics.protocols import TrialResults

TABLE_KEYS = ("rank1", "rank10", "rank20", "mAP", "mINP")
LABELS = {"rank1": "r=1", "rank5": "r=5", "rank10": "r=10", "rank20": "r=20", "mAP": "mAP",
          "mINP": "mINP"}
MISSING = "–"


def _mean_std(result: Any):
  if isinstance(result, TrialResults):
    return result.mean, result.std
  if isinstance(result, Mapping) and "mean" in result:
    return result["mean"], result.get("std")
  if isinstance(result, Mapping):
    return result, None
  raise ValueError(f"a result must be TrialResults or a mapping, got {type(result).__name__}")


def _cell(result, key) -> str:
  if result is None:
    return MISSING
  mean, std = _mean_std(result)
  if key not in mean:
    return MISSING
  text = f"{100 * float(mean[key]):.2f}"
  if std is not None and key in std:
    text += f" ± {100 * float(std[key]):.2f}"
  return text


def _groups(rows: Mapping[str, Mapping[str, Any]]) -> list[str]:
  if not rows:
    raise ValueError("rows is empty")
  groups = []
  for name, by_group in rows.items():
    if not isinstance(by_group, Mapping):
      raise ValueError(f"row {name!r} must map group names to results, got "
                       f"{type(by_group).__name__}")
    groups += [g for g in by_group if g not in groups]
  return groups


def format_table(rows: Mapping[str, Mapping[str, Any]], *, style: str = "text",
                 keys=TABLE_KEYS, row_header: str = "Method") -> str:
  """The table as a string: `style="text"` (aligned, two header lines) or `"markdown"`."""
  groups = _groups(rows)
  cells = {(r, g, k): _cell(by_group.get(g), k)
           for r, by_group in rows.items() for g in groups for k in keys}
  if style == "markdown":
    head = [row_header] + [f"{g}: {LABELS.get(k, k)}" for g in groups for k in keys]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join([" --- "] + [" ---: "] * (len(head) - 1)) + "|"]
    for r in rows:
      lines.append("| " + " | ".join([str(r)] + [cells[r, g, k] for g in groups for k in keys])
                   + " |")
    return "\n".join(lines) + "\n"
  if style != "text":
    raise ValueError(f"style must be 'text' or 'markdown', got {style!r}")
  width = {(g, k): max([len(LABELS.get(k, k))] + [len(cells[r, g, k]) for r in rows])
           for g in groups for k in keys}
  group_w = {g: max(len(g), sum(width[g, k] for k in keys) + 2 * (len(keys) - 1))
             for g in groups}
  first_w = max([len(row_header)] + [len(str(r)) for r in rows])

  def line(first, per_group):
    return " | ".join([first.ljust(first_w)] + [per_group(g).ljust(group_w[g]) for g in groups])

  lines = [line("", lambda g: g),
           line(row_header, lambda g: "  ".join(LABELS.get(k, k).rjust(width[g, k])
                                                for k in keys)),
           "-+-".join(["-" * first_w] + ["-" * group_w[g] for g in groups])]
  for r in rows:
    lines.append(line(str(r), lambda g: "  ".join(cells[r, g, k].rjust(width[g, k])
                                                  for k in keys)))
  return "\n".join(s.rstrip() for s in lines) + "\n"


def _jsonable(result: Any) -> Any:
  if isinstance(result, TrialResults):
    return result.to_dict()
  if isinstance(result, Mapping):
    return {str(k): _jsonable(v) for k, v in result.items()}
  if isinstance(result, (np.ndarray, list, tuple)):
    return [_jsonable(v) for v in result]
  if isinstance(result, (np.floating, np.integer)):
    return result.item()
  return result


def results_to_json(rows: Mapping[str, Mapping[str, Any]], *, indent: int | None = 2) -> str:
  """`rows` as JSON: `{row: {group: {"mean", "std", "per_trial", "cmc", "num_trials"}}}`.

  Values are fractions, as in `TrialResults`; `json.loads` of it is accepted by `format_table`.
  """
  _groups(rows)
  return json.dumps({str(r): {str(g): _jsonable(res) for g, res in by_group.items()}
                     for r, by_group in rows.items()}, indent=indent, ensure_ascii=False)
