r"""The converted dataset a perfect converter would write: each training image of a synthetic twin
re-rendered by the twin's own generator in the other modality (same person, pose, place and
scene; a camera of the other modality), written where the convert stage writes its output.

A diagnosis tool for issue 12 (docs/notes/synthetic_benchmark.md §4d): it separates "the
CycleGAN's images are poor" from "converted images cannot help on this data". Run the CycleGAN
pipeline once, then replace its conversion with the oracle's and train re-ID on it:

  python run.py --config=configs/synthetic.py:reduced --workdir=W            # any finished run
  cp -r W W_oracle && python benchmarks/oracle_conversion.py --workdir=W_oracle
  python run.py --config=configs/synthetic.py:reduced --workdir=W_oracle --stages=reid,evaluate --force

Only for `synthetic_vireid` configs (the generator is needed); the records keep the source's
`pid`, `camid` and `file` as the convert stage's do, `modality` is the target modality.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ce2l_jax import convert  # noqa: E402
from ce2l_jax.data import sources as src_lib  # noqa: E402
from ce2l_jax.data import synthetic  # noqa: E402

_FILE = re.compile(r"cam(\d+)/(\d+)/(\d+)\.png$")


def oracle_rows(cfg_name: str, recs: list[dict], seed: int) -> dict:
  """The generator's table rows of `recs` (training records of the twin `cfg_name`, found by
  their file names), each moved to a camera of the other modality drawn with `seed`: every
  other rendering parameter (person, pose, place, light, noise field) is the source's."""
  cfg = synthetic.get_config(cfg_name)
  table = synthetic.specs(cfg, "train")
  key = {(int(c), int(p), int(i)): r for r, (c, p, i) in
         enumerate(zip(table["camid"], table["pid"], table["index"]))}
  rows = []
  for r in recs:
    f = r["file"].decode() if isinstance(r["file"], bytes) else str(r["file"])
    m = _FILE.search(f)
    if not m:
      raise ValueError(f"oracle_conversion: record file {f!r} is not a synthetic_vireid file name")
    rows.append(key[tuple(int(x) for x in m.groups())])
  part = synthetic.take(table, np.asarray(rows, np.int64))
  src_ir = np.isin(part["camid"], cfg.infrared_cameras)
  rng = np.random.default_rng([seed, 99])
  vis_cams = np.array([c for c in cfg.cameras if c not in cfg.infrared_cameras])
  ir_cams = np.array(cfg.infrared_cameras)
  target = np.where(src_ir, rng.choice(vis_cams, len(rows)), rng.choice(ir_cams, len(rows)))
  return dict(part, camid=target.astype(np.int64), modality=(~src_ir).astype(np.int64))


def oracle_images(cfg_name: str, recs: list[dict], seed: int) -> np.ndarray:
  """`recs` rendered in the other modality: uint8 (N, H, W, 3)."""
  return synthetic.render(cfg_name, oracle_rows(cfg_name, recs, seed))


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--workdir", required=True, help="a run's workdir (its convert/ is replaced)")
  ap.add_argument("--seed", type=int, default=0, help="draws the target camera of each image")
  ap.add_argument("--chunk_size", type=int, default=512)
  args = ap.parse_args(argv)
  with open(os.path.join(args.workdir, "config.json")) as f:
    name = json.load(f)["data"]["name"]
  if not name.startswith("synthetic_vireid/"):
    sys.exit(f"oracle_conversion: {args.workdir}/config.json has data.name={name!r}; only "
             "synthetic_vireid configs have a generator to render the other modality")
  source = src_lib.TfdsSource(name, "train", os.environ.get("TFDS_DATA_DIR"))
  n = len(source)
  out = convert.chunks_dir(args.workdir) + ".oracle"
  shutil.rmtree(out, ignore_errors=True)
  os.makedirs(out)
  t0 = time.perf_counter()
  for k in range(0, n, args.chunk_size):
    index = np.arange(k, min(n, k + args.chunk_size))
    recs = src_lib.get_records(source, index)
    images = oracle_images(name.split("/", 1)[1], recs, args.seed + k)
    modality = np.array([int(r["modality"]) for r in recs], np.int64)
    convert.write_chunk(convert.chunk_path(out, k // args.chunk_size), index,
                        [int(r["pid"]) for r in recs], [int(r["camid"]) for r in recs],
                        1 - modality, [convert._to_str(r["file"]) for r in recs],
                        [convert._encode_png(im) for im in images])
  convert.build_dataset(out, convert.converted_data_dir(args.workdir), n)
  shutil.rmtree(out, ignore_errors=True)
  print(f"oracle_conversion: {n} images of {name} rendered in the other modality into "
        f"{convert.converted_data_dir(args.workdir)} in {time.perf_counter() - t0:.1f} s")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
