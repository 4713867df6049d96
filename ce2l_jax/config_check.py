"""Config overrides checked before anything runs: a typo or a wrong type is one line.

`ml_collections.config_flags` reports an unknown key as a long traceback ending in "Did you
mean ..."; users deserve `error: unknown config key 'reid.lrr' (did you mean 'reid.lr'?)`.
`check_overrides(config, argv)` validates every `--config.a.b=value` in `argv` against the
loaded config before absl parses flags; `diff_configs` names the keys that differ between a
workdir's saved `config.json` and the current run.
"""

from __future__ import annotations

import ast
import difflib
import json
from typing import Any, Iterable

import ml_collections


class ConfigError(ValueError):
  """A config problem, with a message meant to be shown on one line."""


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
  """Flat {'a.b': value} view of a ConfigDict / dict (lists and tuples are leaves)."""
  out = {}
  items = cfg.items() if hasattr(cfg, "items") else []
  for k, v in items:
    key = f"{prefix}{k}"
    if isinstance(v, (ml_collections.ConfigDict, dict)):
      sub = flatten(v, key + ".")
      if sub:
        out.update(sub)
      else:
        out[key] = {}
    else:
      out[key] = v
  return out


def _suggest(key: str, known: Iterable[str]) -> str:
  known = list(known)
  close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
  if not close:  # try the last component against siblings
    parent, _, leaf = key.rpartition(".")
    siblings = [k for k in known if k.rpartition(".")[0] == parent]
    leaf_close = difflib.get_close_matches(leaf, [s.rpartition(".")[2] for s in siblings], n=1, cutoff=0.5)
    close = [f"{parent}.{leaf_close[0]}" if parent else leaf_close[0]] if leaf_close else []
  return f" (did you mean '{close[0]}'?)" if close else ""


def _check_type(key: str, current: Any, raw: str) -> None:
  if current is None:
    return
  if isinstance(current, bool):
    if raw.lower() not in ("true", "false", "1", "0"):
      raise ConfigError(f"config key '{key}' is a bool; got {raw!r} (use true or false)")
    return
  if isinstance(current, int):
    try:
      int(raw)
    except ValueError:
      raise ConfigError(f"config key '{key}' is an int; got {raw!r}") from None
    return
  if isinstance(current, float):
    try:
      float(raw)
    except ValueError:
      raise ConfigError(f"config key '{key}' is a float; got {raw!r}") from None
    return
  if isinstance(current, (tuple, list)):
    try:
      v = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      raise ConfigError(f"config key '{key}' is a {type(current).__name__}; got {raw!r} "
                        f"(write it like {tuple(current)!r})") from None
    if not isinstance(v, (tuple, list)):
      raise ConfigError(f"config key '{key}' is a {type(current).__name__}; got {raw!r}")


def check_overrides(config: ml_collections.ConfigDict, argv: list[str], flag: str = "config") -> None:
  """Raises ConfigError for an unknown key or a value of the wrong type in `--config.x=...`."""
  flat = flatten(config)
  prefix = f"--{flag}."
  for arg in argv:
    if not arg.startswith(prefix):
      continue
    body = arg[len(prefix):]
    key, eq, raw = body.partition("=")
    if key not in flat:
      # a whole sub-dict being replaced is not supported from the command line either
      raise ConfigError(f"unknown config key '{key}'{_suggest(key, flat)}")
    if eq:
      _check_type(key, flat[key], raw)


def check_known_keys(config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict,
                     free: Iterable[str] = (), where: str = "") -> None:
  """Raises ConfigError for a key of `config` that `reference` (the full schema, e.g. the
  composed defaults of configs/base.py) does not have: a typo in a config *file*
  (`c.reid.lrr = 0.1`, `c.reid.update(dict(lrr=0.1))`) adds a key silently and leaves the
  intended one at its default. Keys under a `free` prefix (e.g. 'reid.model_kwargs') may be
  anything. `where` (e.g. ' in configs/x.py') ends the message."""
  known = flatten(reference)
  free = tuple(f.rstrip(".") + "." for f in free)
  for key in flatten(config):
    if key not in known and not key.startswith(free) and key.rstrip(".") + "." not in free:
      raise ConfigError(f"unknown config key '{key}'{_suggest(key, known)}{where}")


def diff_configs(saved: dict[str, Any], current: dict[str, Any],
                 ignore: Iterable[str] = ()) -> list[str]:
  """Keys (dotted) whose values differ between two config dicts (as JSON would store them)."""
  a = flatten(json.loads(json.dumps(saved, default=str)))
  b = flatten(json.loads(json.dumps(current, default=str)))
  ignore = tuple(ignore)
  keys = sorted(set(a) | set(b))
  return [k for k in keys if a.get(k, "<missing>") != b.get(k, "<missing>") and not k.startswith(ignore)]
