"""`tfds build` without TensorFlow (`python -m ce2l_jax.tfds_build`, script `ce2l-tfds-build`).

The stock `tfds` command imports TensorFlow, apache-beam and mlcroissant before it reads its
flags. This entry point drives TFDS's own `build` command (`tensorflow_datasets.scripts.cli.build`)
with the same flags, and only changes three things:

- `--file_format` defaults to `array_record` (TFRecord needs TensorFlow to write);
- a bad manual folder (`tfds_builders.manual_check.ManualDirError`) and a bad dataset argument or
  `--config` print one short message on stderr and exit with code 2, not a traceback;
- `--overwrite` deletes the existing dataset only after the new input has been checked (TFDS
  deletes it when it creates the builder), so a bad manual folder leaves the old dataset intact.

  python -m ce2l_jax.tfds_build tfds_builders/sysu_mm01 --manual_dir=/data/manual --data_dir=/data/tfds
  python -m ce2l_jax.tfds_build tfds_builders/regdb --config=trial3 --manual_dir=/data/manual --data_dir=/data/tfds

A build killed midway leaves only a TFDS temporary folder (`incomplete.*`), which readers ignore:
rerun the same command.
"""

import dataclasses
import json
import logging as python_logging
import os
import sys

from absl import app
from absl import logging
from tensorflow_datasets.scripts.cli import build
from tensorflow_datasets.scripts.cli import cli_utils

from tfds_builders.manual_check import ManualDirError

USAGE_ERROR = 2

parse_flags = cli_utils.make_flags_parser(
    build.Args, description="Build TFDS datasets without TensorFlow (the flags of `tfds build`).")


class UsageError(ValueError):
  """A dataset argument or `--config` that names nothing buildable."""


def _check_datasets(args: build.Args) -> None:
  """Resolves every dataset argument and `--config` before anything is built."""
  for name in args.positional_datasets + args.datasets or [""]:
    if (os.sep in name or name.endswith(".py")) and not os.path.exists(name):
      raise UsageError(f"{name} does not exist; expected a builder folder (e.g. "
                       "tfds_builders/sysu_mm01), a builder .py file or a registered name.")
    try:
      builder_cls, kwargs = build._get_builder_cls_and_kwargs(  # pylint: disable=protected-access
          name, has_imports=bool(args.generation.imports))
    except (FileNotFoundError, ValueError, ImportError) as e:
      first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise UsageError(f"cannot load a dataset builder from {name!r}: {first_line}") from None
    config = kwargs.get("config") or args.generation.config
    names = [c.name for c in builder_cls.BUILDER_CONFIGS]
    if config and not str(config).startswith("{") and config not in names:
      raise UsageError(f"{builder_cls.name} has no config {config!r}; expected one of "
                       f"{', '.join(names) or 'none (it has no configs)'}.")


def _with_defaults(args: build.Args) -> build.Args:
  """`array_record` by default; `--overwrite` moved after the input check (see module doc)."""
  generation = args.generation
  if generation.file_format is None:
    generation = dataclasses.replace(generation, file_format="array_record")
  debug = args.debug
  if debug.overwrite:
    # REUSE_CACHE_IF_EXISTS overwrites the dataset inside `download_and_prepare`, after the
    # builder's manual-folder check, instead of TFDS deleting it when creating the builder.
    config = json.loads(generation.download_config or "{}")
    config.setdefault("download_mode", "reuse_cache_if_exists")
    generation = dataclasses.replace(generation, download_config=json.dumps(config))
    debug = dataclasses.replace(debug, overwrite=False)
  return dataclasses.replace(args, generation=generation, debug=debug)


def _log_to_stderr() -> None:
  """INFO logs of TFDS on stderr, one short line each (as `tfds build` does)."""
  logging.use_python_logging(quiet=True)
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().python_handler.setFormatter(
      python_logging.Formatter("{levelname}[{filename}]: {message}", style="{"))


def main(args: build.Args) -> None:
  """Builds the datasets `args` names; exits with code 2 on bad input."""
  logging.set_verbosity(logging.WARNING)  # Quiet while resolving: the build logs it again.
  try:
    _check_datasets(args)
    _log_to_stderr()
    _with_defaults(args).execute()
  except (ManualDirError, UsageError) as e:
    print(f"ce2l-tfds-build: error: {e}", file=sys.stderr)
    sys.exit(USAGE_ERROR)


def run_main() -> None:
  """Console-script entry point."""
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  run_main()
