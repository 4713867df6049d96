"""Config files loaded and checked before anything runs: a typo or a wrong value is one line.

`ml_collections.config_flags` reports an unknown key as a long traceback ending in "Did you
mean ..."; users deserve `error: unknown config key 'reid.lrr' (did you mean 'reid.lr'?)`.

  load_config_file('configs/x.py[:arg]')   `get_config(arg)` of a config module (the `configs`
                                           package, imported by name), keys checked against
                                           configs/base.py
  check_overrides(config, argv)            every `--config.a.b=value` before absl parses flags
  prepare_config(config)                   resolved copy; schema, choices and dataset checked
  check_workdir_config(workdir, config)    a workdir's `config.json` against this run's
"""

from __future__ import annotations

import ast
import difflib
import glob
import importlib
import importlib.util
import json
import os
import re
import sys
from typing import Any, Iterable

import ml_collections

from ce2l_jax import workdir as workdir_lib

# Keys that change how a run is watched or stored, never its numbers: a workdir may be resumed
# with other values. Prefixes of dotted keys.
IGNORED_KEYS = (
    "name",                                   # the results table's row name
    "data.data_dir",                          # where the same dataset is read from
    "cyclegan.log_every", "cyclegan.eval_every", "cyclegan.checkpoint_every",
    "cyclegan.max_to_keep", "cyclegan.num_samples", "cyclegan.progress",
    "convert.keep_chunks",
    "input.threads", "input.prefetch", "input.worker_buffer",  # the stream is the same for any
    "reid.log_every", "reid.eval_every", "reid.checkpoint_every", "reid.max_to_keep",
    "reid.progress",
    "eval.periodic_trials",                   # only the periodic (during training) evaluation
    "handcrafted.cache_dir",                  # where descriptors are kept, not what they are
)
# The schema every config must fit (a key it lacks is a typo in a config file), and the sections
# whose keys are free (model constructor keywords).
CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
BASE_CONFIG = os.path.join(CONFIGS_DIR, "base.py")
FREE_KEYS = ("reid.model_kwargs", "handcrafted.feature_kwargs")


class UserError(Exception):
  """A problem the user fixes (config, workdir, missing input); shown as one line."""


class ConfigError(UserError, ValueError):
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


# --------------------------------------------------------------------------------------------
# Config files
# --------------------------------------------------------------------------------------------


def _module(path: str):
  """The config module at `path`: `configs.<name>` when it is a file of the `configs` package
  (imported by name, as `from configs import base` inside it expects), else loaded from the file."""
  path = os.path.abspath(path)
  if os.path.dirname(path) == CONFIGS_DIR:
    root = os.path.dirname(CONFIGS_DIR)
    if root not in sys.path:  # a library user outside the repository
      sys.path.append(root)
    return importlib.import_module("configs." + os.path.splitext(os.path.basename(path))[0])
  spec = importlib.util.spec_from_file_location("ce2l_config_" + os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_config_file(spec: str, check_keys: bool = True) -> ml_collections.ConfigDict:
  """`get_config(arg)` of a config file, `spec` = 'path' or 'path:arg' (as config_flags).

  With `check_keys`, a key that configs/base.py does not have (a typo in the file, e.g.
  `c.reid.lrr = 0.1`) is a ConfigError naming it.
  """
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    folder = os.path.dirname(path) or "."
    known = sorted(glob.glob(os.path.join(folder, "*.py")))
    close = difflib.get_close_matches(path, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else (
        f"; config files: {', '.join(known)}" if known else "")
    raise ConfigError(f"config file {path!r} not found{hint}")
  module = _module(path)
  try:
    config = module.get_config(arg) if arg else module.get_config()
  except ValueError as e:
    raise ConfigError(f"{spec}: {e}") from None
  if check_keys:
    check_schema(config, where=f" in {path}")
  return config


def reference_config() -> ml_collections.ConfigDict:
  """configs/base.py's config: every key a run config may have (plus FREE_KEYS sections)."""
  return load_config_file(BASE_CONFIG, check_keys=False)


def check_schema(config: ml_collections.ConfigDict, where: str = "") -> None:
  """ConfigError for a key that configs/base.py lacks (`check_known_keys`)."""
  check_known_keys(config, reference_config(), free=FREE_KEYS, where=where)


def _choices() -> dict[str, tuple]:
  from ce2l_jax.data.augment import CHANNEL_MODES
  from ce2l_jax.models import MODEL_NAMES
  return {
      "data.protocol": ("sysu", "regdb", "llcm"),
      "input.channel_aug.mode": tuple(CHANNEL_MODES),
      "reid.model": tuple(MODEL_NAMES),
      "reid.optimizer": ("sgd", "adam", "adamw"),
      "reid.schedule": ("constant", "warmup_step"),
      "reid.lsr_on": ("all", "converted", "none"),
      "reid.trainer": ("reid", "handcrafted", "d2rl"),
      "eval.metric_learning": ("none", "hcml"),
      "reid.nan_policy": ("stop", "skip"),
      "cyclegan.nan_policy": ("stop", "skip"),
      "eval.protocol": ("auto", "sysu", "regdb", "llcm"),
      "eval.metric": ("euclidean", "cosine"),
      "eval.sampling": ("auto", "random", "official"),
      "convert.resample": ("bilinear", "bicubic", "lanczos"),
  }


def check_config(config: ml_collections.ConfigDict) -> None:
  """One-line ConfigErrors for values a type check cannot catch (choices, missing dataset)."""
  flat = flatten(config)
  for key, allowed in _choices().items():
    if key in flat and flat[key] not in allowed:
      close = difflib.get_close_matches(str(flat[key]), [str(a) for a in allowed], n=1)
      hint = f" (did you mean {close[0]!r}?)" if close else ""
      raise ConfigError(f"config key '{key}' must be one of {', '.join(map(str, allowed))}; got "
                        f"{flat[key]!r}{hint}")
  if not config.data.name:
    raise ConfigError("config.data.name is empty: use a dataset config (configs/sysu.py, regdb.py, "
                      "synthetic.py) or set --config.data.name")
  if config.data.protocol == "regdb":
    for t in trials_of(config):
      if not 1 <= t <= 10:
        raise ConfigError(f"RegDB trials are 1..10; got {t} (data.trial / data.trials)")


def trials_of(config: ml_collections.ConfigDict) -> list[int]:
  """RegDB: [data.trial] or data.trials (trial 0); other protocols: [0] (one run)."""
  if config.data.protocol != "regdb":
    return [0]
  if "/trial" in config.data.name:
    return [int(config.data.name.rsplit("/trial", 1)[1])]
  if re.search(r"_trial\d+$", config.data.name):  # synthetic_vireid/regdb_trial<N>
    return [int(config.data.name.rsplit("_trial", 1)[1])]
  if config.data.trial:
    return [int(config.data.trial)]
  return [int(t) for t in config.data.trials]


def trial_config(config: ml_collections.ConfigDict, trial: int) -> ml_collections.ConfigDict:
  """The config of one RegDB trial (`data.name` = regdb/trial<N>, or for the synthetic twin
  synthetic_vireid/regdb_trial<N>: one TFDS builder config per trial); other protocols: config."""
  if not trial:
    return config
  c = ml_collections.ConfigDict(config.to_dict())
  if c.data.name.startswith("synthetic_vireid/"):
    if not re.search(r"_trial\d+$", c.data.name):
      c.data.name = f"{c.data.name}_trial{trial}"
  elif "/trial" not in c.data.name:
    c.data.name = f"{c.data.name}/trial{trial}"
  c.data.trial = trial
  return c


def prepare_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A resolved, unlocked copy (references followed), `~` expanded, checked."""
  config = config.copy_and_resolve_references()
  if config.is_locked:
    config.unlock()
  if config.data.get("data_dir"):
    config.data.data_dir = os.path.abspath(os.path.expanduser(config.data.data_dir))
  check_schema(config)
  check_config(config)
  return config


def config_json(config: ml_collections.ConfigDict) -> str:
  return config.to_json_best_effort(indent=2, sort_keys=True)


def _short(v: Any) -> str:
  s = json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else repr(v)
  return s if len(s) <= 40 else s[:37] + "..."


def check_workdir_config(workdir: str, config: ml_collections.ConfigDict, force: bool) -> None:
  """Compares `config` with `<workdir>/config.json` (but for IGNORED_KEYS): UserError naming the
  differing keys, or with `force` a warning."""
  path = os.path.join(workdir, workdir_lib.CONFIG)
  current = json.loads(config_json(config))
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    keys = diff_configs(saved, current, ignore=IGNORED_KEYS)
    if keys and not force:
      a, b = flatten(saved), flatten(current)
      shown = ", ".join(f"{k} ({_short(a.get(k, '<missing>'))} → {_short(b.get(k, '<missing>'))})"
                        for k in keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
      raise UserError(f"{workdir} was made with another config; differing keys: {shown}. Rerun with "
                      "the same config, choose another --workdir, or pass --force to go on anyway "
                      "(finished stages are not redone: delete their folders to redo them)")
    if keys:
      print(f"warning: --force: going on in {workdir} with a config that differs in "
            f"{', '.join(keys)}; finished stages are kept", file=sys.stderr)


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """`<workdir>/config.json`, atomically (the run's config as it starts)."""
  workdir_lib.write_text(os.path.join(workdir, workdir_lib.CONFIG), config_json(config) + "\n")
