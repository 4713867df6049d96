r"""The converted dataset a perfect converter would write: each training image of a synthetic twin
re-rendered by the twin's own generator in the other modality (same person, pose, place and
scene; a camera of the other modality), written where the convert stage writes its output.

A diagnosis tool for issue 12 (docs/notes/synthetic_benchmark.md §4d): it separates "the
CycleGAN's images are poor" from "converted images cannot help on this data". Run the CycleGAN
pipeline once, then replace its conversion with the oracle's and train re-ID on it:

  python run.py --config=configs/synthetic.py:reduced --workdir=W            # any finished run
  cp -r W W_oracle && python benchmarks/oracle_conversion.py --workdir=W_oracle
  python run.py --config=configs/synthetic.py:reduced --workdir=W_oracle --stages=reid,evaluate --force

`--compare` writes nothing: it scores a run's own converted images (the CycleGAN's) against the
oracle's, per direction, as the mean absolute difference in [0, 1] over the person's pixels
(the generator's silhouette, at the re-ID input size 64×32, best of the other modality's
cameras): an error a CycleGAN change can be judged by without training re-ID.

  python benchmarks/oracle_conversion.py --workdir=W --compare [--num=512]

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


def person_masks(cfg_name: str, rows: dict) -> np.ndarray:
  """The person's silhouette (alpha > 0.5) of each row: bool (N, H, W), as `_render_camera`
  places it (pose and place only; the same for every camera of the row)."""
  cfg = synthetic.get_config(cfg_name)
  ids = synthetic.identities(cfg)
  h, w = cfg.height, cfg.width
  hp = synthetic._col(rows["scale"] * h)
  x = (np.arange(w, dtype=np.float32) + 0.5)[None, None, :]
  y = (np.arange(h, dtype=np.float32) + 0.5)[None, :, None]
  u = (x - synthetic._col(rows["cx"] * w)) / hp * synthetic._col(rows["flip"])
  v = (synthetic._col(rows["feet"] * h) - y) / hp
  _, alpha = synthetic._render_person(ids, rows, u, v, hp, False, False)
  return np.asarray(alpha) > 0.5


def _small(images: np.ndarray, size=(32, 64)) -> np.ndarray:
  from PIL import Image
  return np.stack([np.asarray(Image.fromarray(im).resize(size, Image.Resampling.BOX))
                   for im in images]).astype(np.float32) / 255.0


def compare(cfg_name: str, recs: list[dict], fakes: list[np.ndarray], seed: int = 0) -> dict:
  """Mean |fake − oracle| over the person's pixels, per source modality (0: RGB→IR fakes,
  1: IR→RGB fakes); for each image the best of the target modality's cameras. Also the same
  error for the source image itself (a converter that changes nothing), as a scale."""
  cfg = synthetic.get_config(cfg_name)
  rows = oracle_rows(cfg_name, recs, seed)
  src_ir = rows["modality"] == 0
  cams = {0: [c for c in cfg.cameras if c not in cfg.infrared_cameras], 1: list(cfg.infrared_cameras)}
  mask = _small((person_masks(cfg_name, rows)[..., None] * 255).astype(np.uint8).repeat(3, -1))[..., 0] > 0.5
  fake = _small(np.stack(fakes))
  from ce2l_jax.data import augment
  same = _small(np.stack([np.asarray(augment.decode(r["image"])) if isinstance(r["image"], bytes)
                          else np.asarray(r["image"]) for r in recs]))
  best_fake = np.full(len(recs), np.inf)
  best_same = np.full(len(recs), np.inf)
  for c in sorted(set(cams[0]) | set(cams[1])):
    truth = _small(synthetic.render(cfg, dict(rows, camid=np.full(len(recs), c, np.int64))))
    target_ok = np.isin(c, cams[0]) == src_ir  # c is a camera of each image's target modality
    denom = np.maximum(mask.sum((1, 2)), 1) * 3
    err = lambda a: (np.abs(a - truth) * mask[..., None]).sum((1, 2, 3)) / denom
    e_fake, e_same = err(fake), err(same)
    best_fake = np.where(target_ok, np.minimum(best_fake, e_fake), best_fake)
    best_same = np.where(target_ok, np.minimum(best_same, e_same), best_same)
  out = {}
  for m, name in ((0, "rgb2ir"), (1, "ir2rgb")):
    sel = (rows["modality"] == 1 - m)
    if sel.any():
      out[name] = {"n": int(sel.sum()), "fake_l1": float(best_fake[sel].mean()),
                   "unchanged_l1": float(best_same[sel].mean())}
  return out


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--workdir", required=True, help="a run's workdir (its convert/ is replaced)")
  ap.add_argument("--data", default="", help="the TFDS name (default: data.name of <workdir>/config.json)")
  ap.add_argument("--seed", type=int, default=0, help="draws the target camera of each image")
  ap.add_argument("--chunk_size", type=int, default=512)
  ap.add_argument("--compare", action="store_true",
                  help="score the run's converted images against the oracle's; write nothing")
  ap.add_argument("--num", type=int, default=512, help="--compare: images scored (evenly spaced)")
  args = ap.parse_args(argv)
  name = args.data
  if not name:
    path = os.path.join(args.workdir, "config.json")
    if not os.path.exists(path):
      sys.exit(f"oracle_conversion: {path} not found; pass --data=synthetic_vireid/<config>")
    with open(path) as f:
      name = json.load(f)["data"]["name"]
  if not name.startswith("synthetic_vireid/") or name.split("/", 1)[1] not in synthetic.CONFIGS:
    sys.exit(f"oracle_conversion: data {name!r} is not a synthetic_vireid config; only those "
             "have a generator to render the other modality")
  source = src_lib.TfdsSource(name, "train", os.environ.get("TFDS_DATA_DIR"))
  n = len(source)
  if args.compare:
    conv = convert.open_converted(args.workdir)
    index = np.linspace(0, n - 1, min(args.num, n)).round().astype(np.int64)
    from ce2l_jax.data import augment
    recs = src_lib.get_records(source, index)
    fakes = [np.asarray(augment.decode(r["image"])) for r in src_lib.get_records(conv, index)]
    res = compare(name.split("/", 1)[1], recs, fakes, args.seed)
    print(json.dumps({"workdir": args.workdir, **res}))
    return 0
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
