r"""Search with a trained model on new images: rank a gallery folder for every query image.

  python -m ce2l_jax.search --workdir=W --query=DIR --gallery=DIR [--out=W/search]
      [--query_modality=infrared] [--gallery_modality=visible] [--top_k=10] [--list_k=100]
      [--rerank] [--batch_size=64]
  ce2l-search ...                 (the same, as the installed script)
  python -m ce2l_jax.search --workdir=W --write_test_folders=DIR [--per_identity=1]
                                  (the run's own test split as folders to try it on)

Folders: every image (jpg, jpeg, png, bmp, tif, tiff, webp) under DIR, recursively, in sorted
path order. An image inside a subfolder has that subfolder's name as its identity
(`DIR/0007/a.jpg` → identity '0007', as SYSU-MM01's and RegDB's released layouts); when every
query and gallery image has one, correct matches are marked and rank-1 / mAP are printed.
Modality of a folder: the flag, else a file `DIR/MODALITY` holding `visible` or `infrared`
(the model has one stream per modality; the flag and the file must agree when both are given).

What happens: the run's model (`export.load_trained`: config.json, the finished re-ID stage,
its latest checkpoint) extracts features batch by batch (one jitted function per modality, a
fixed batch size, the last batch padded; a progress bar), each image decoded, made RGB and
resized exactly as the run's evaluation does; the features are the evaluation's (flip-averaged
and L2-normalised as configured). Distances: the run's `eval.metric`, or with `--rerank` the
k-reciprocal re-ranked ones (`metrics.reranking`, k1 = 20, k2 = 6, λ = 0.3). Each query's
gallery is ranked by a stable sort (ties in gallery order).

Written atomically into `--out` (a temporary folder renamed into place; nothing is left half
written on an error):
  ranked.json   settings, and per query its file, identity and top `--list_k` (0 = all) gallery
                files with distances (and `match` when identities are known);
  ranked.csv    the same lists, one row per (query, rank): query, rank, gallery, distance[, match];
  index.html    a static, self-contained page (thumbnails embedded): one row per query, of
                ROW_PX pixels, below a HEADER_PX header: the query and its `--top_k` first gallery
                images with their distances, borders green (same identity) / red (other) when
                identities are known.
Bad input (a missing or empty folder, an unreadable image, a workdir without a finished re-ID
stage, a folder without a modality, an 'infrared' folder of colour images) stops with one line
naming the path.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import html
import io
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np

from ce2l_jax.export import MODALITIES, ExportError, TrainedModel, atomic_write_folder, load_trained

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MODALITY_FILE = "MODALITY"
# Page geometry (pixels), fixed so that a screenshot can be checked row by row.
HEADER_PX = 72
ROW_PX = 156
THUMB_W, THUMB_H = 56, 112
CELL_PX = 72                  # one image's column (thumbnail + border + gap)
BORDER_PX = 4
ROW_COLORS = ("#ffffff", "#e3e8ef")
MATCH_COLORS = {True: "#1a9850", False: "#d73027", None: "#9e9e9e"}
QUERY_COLOR = "#2166ac"
# An 'infrared' folder whose images differ between colour channels by more than this (mean
# absolute difference of channels, grey levels, median over the sampled images) holds colour
# images, which the model's infrared stream was not trained on.
COLOUR_THRESHOLD = 12.0


class SearchError(Exception):
  """A problem the user fixes; shown as one line naming the path or flag."""


# --------------------------------------------------------------------------------------------
# Folders
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Folder:
  root: str
  files: list[str]                     # paths relative to root, sorted
  identities: list[str | None]         # the image's subfolder name, None directly in root
  modality: str                        # visible | infrared

  @property
  def paths(self) -> list[str]:
    return [os.path.join(self.root, f) for f in self.files]


def scan_folder(root: str, flag: str | None, what: str) -> Folder:
  """The images under `root` and its modality (the flag or `root/MODALITY`)."""
  root = os.path.abspath(os.path.expanduser(root))
  if not os.path.isdir(root):
    raise SearchError(f"--{what} {root} is not a folder")
  files = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for name in sorted(filenames):
      if name.lower().endswith(IMAGE_EXTENSIONS):
        files.append(os.path.relpath(os.path.join(dirpath, name), root))
  if not files:
    raise SearchError(f"--{what} {root} holds no images ({', '.join(IMAGE_EXTENSIONS)}, searched "
                      "recursively)")
  files.sort()
  identities = [os.path.basename(os.path.dirname(f)) or None for f in files]
  return Folder(root, files, identities, folder_modality(root, flag, what))


def folder_modality(root: str, flag: str | None, what: str) -> str:
  marker = os.path.join(root, MODALITY_FILE)
  from_file = None
  if os.path.exists(marker):
    with open(marker) as f:
      from_file = f.read().strip().lower()
    if from_file not in MODALITIES:
      raise SearchError(f"{marker} says {from_file!r}; the model has the streams "
                        f"{', '.join(MODALITIES)}: write one of them")
  if flag:
    flag = flag.strip().lower()
    if flag not in MODALITIES:
      raise SearchError(f"--{what}_modality={flag!r}: the model has the streams "
                        f"{', '.join(MODALITIES)}")
    if from_file and from_file != flag:
      raise SearchError(f"--{what}_modality={flag} but {marker} says {from_file}: remove one")
    return flag
  if from_file:
    return from_file
  raise SearchError(f"no modality for --{what} {root}: pass --{what}_modality=visible|infrared "
                    f"or write 'visible' or 'infrared' into {marker}")


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------


def _load(path: str, size: tuple[int, int], resample: str) -> tuple[np.ndarray, float]:
  """uint8 (H, W, 3) as the evaluation stream makes it, and the image's colourfulness."""
  from ce2l_jax.data import augment
  try:
    with open(path, "rb") as f:
      data = f.read()
    img = augment.decode(data)
    img.load()
  except Exception as e:  # PIL raises several types for broken files
    raise SearchError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
  x = np.asarray(img)
  colour = float(np.abs(np.diff(x.astype(np.int16), axis=2)).mean())
  return augment.resize(img, size, resample), colour


def extract_features(trained: TrainedModel, folder: Folder, batch_size: int = 64,
                     desc: str = "features", progress: bool = True) -> np.ndarray:
  """(n, D) float32 features of a folder's images through its modality's stream."""
  import jax
  from tqdm import tqdm
  fn = jax.jit(trained.feature_fn(MODALITIES[folder.modality]))
  h, w = trained.image_size
  paths = folder.paths
  out, colour = [], []
  starts = range(0, len(paths), batch_size)
  with ThreadPoolExecutor(max_workers=2) as pool:
    for s in tqdm(starts, desc=desc, unit="batch", disable=not progress, dynamic_ncols=True):
      loaded = list(pool.map(lambda p: _load(p, (h, w), trained.resample), paths[s:s + batch_size]))
      batch = np.zeros((batch_size, h, w, 3), np.uint8)
      for i, (x, c) in enumerate(loaded):
        batch[i] = x
        colour.append(c)
      out.append(np.asarray(jax.device_get(fn(trained.variables, batch)))[:len(loaded)])
  if folder.modality == "infrared" and float(np.median(colour)) > COLOUR_THRESHOLD:
    worst = paths[int(np.argmax(colour))]
    raise SearchError(f"{folder.root} is marked infrared but holds colour images (e.g. {worst}): "
                      "the model's infrared stream expects grayscale/thermal images; mark the "
                      "folder visible")
  feats = np.concatenate(out)
  if not np.isfinite(feats).all():
    raise SearchError(f"{trained.workdir}: the model gives NaN/Inf features for images of "
                      f"{folder.root} (a diverged checkpoint?)")
  return feats


# --------------------------------------------------------------------------------------------
# Ranking and outputs
# --------------------------------------------------------------------------------------------


def rank(query_feats: np.ndarray, gallery_feats: np.ndarray, metric: str = "euclidean",
         rerank: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """(distances (nq, ng), order (nq, ng)): each row's gallery indices by a stable sort."""
  from ce2l_jax import metrics
  from ce2l_jax.metrics import ranking, reranking
  if rerank:
    d = reranking.rerank(query_feats, gallery_feats)
  else:
    d = metrics.pairwise_distances(query_feats, gallery_feats, metric)
  return d, ranking.stable_argsort_rows(np.ascontiguousarray(d, np.float32))


def _thumbnail(path: str) -> str:
  """A data: URI of the image as a THUMB_W × THUMB_H JPEG (quality 90)."""
  from PIL import Image
  with Image.open(path) as img:
    small = img.convert("RGB").resize((THUMB_W, THUMB_H), Image.Resampling.BILINEAR)
  buf = io.BytesIO()
  small.save(buf, format="JPEG", quality=90)
  return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def render_html(query: Folder, gallery: Folder, dist: np.ndarray, order: np.ndarray, top_k: int,
                title: str, known: bool, summary: str) -> str:
  """The static page: a header, then one ROW_PX row per query (module docstring)."""
  k = min(top_k, len(gallery.files))
  width = CELL_PX * (k + 1) + 40
  thumbs: dict[str, str] = {}

  def thumb(folder: Folder, i: int) -> str:
    p = folder.paths[i]
    if p not in thumbs:
      thumbs[p] = _thumbnail(p)
    return thumbs[p]

  css = f"""
body {{ margin: 0; background: #ffffff; font: 11px/13px sans-serif; color: #222; }}
.page {{ width: {width}px; }}
.header {{ height: {HEADER_PX}px; box-sizing: border-box; padding: 8px 10px; overflow: hidden;
  background: #ffffff; border-bottom: 1px solid #bbb; }}
.header h1 {{ font-size: 14px; margin: 0 0 4px 0; }}
.row {{ height: {ROW_PX}px; box-sizing: border-box; padding: 4px 10px; overflow: hidden;
  white-space: nowrap; }}
.cell {{ display: inline-block; vertical-align: top; width: {CELL_PX}px; height: {ROW_PX - 8}px;
  overflow: hidden; text-align: left; }}
.cell img {{ display: block; width: {THUMB_W}px; height: {THUMB_H}px;
  border: {BORDER_PX}px solid {MATCH_COLORS[None]}; }}
.cell.q img {{ border-color: {QUERY_COLOR}; }}
.cell.hit img {{ border-color: {MATCH_COLORS[True]}; }}
.cell.miss img {{ border-color: {MATCH_COLORS[False]}; }}
.cell span {{ display: block; width: {CELL_PX - 4}px; overflow: hidden; text-overflow: ellipsis; }}
"""
  parts = [f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{css}</style></head><body><div class='page'>",
           f"<div class='header'><h1>{html.escape(title)}</h1><div>{html.escape(summary)}</div>"
           f"<div>border: blue = query" + (", green = same identity, red = another identity"
                                          if known else "; identities unknown") + "</div></div>"]
  for qi in range(len(query.files)):
    bg = ROW_COLORS[qi % 2]
    qname = query.files[qi]
    cells = [f"<div class='cell q'><img src='{thumb(query, qi)}' alt='{html.escape(qname)}' "
             f"title='{html.escape(qname)}'><span>q{qi + 1}</span><span>"
             f"{html.escape(query.identities[qi] or '')}</span></div>"]
    for r in range(k):
      gi = int(order[qi, r])
      gname = gallery.files[gi]
      cls = ""
      if known:
        cls = " hit" if gallery.identities[gi] == query.identities[qi] else " miss"
      cells.append(f"<div class='cell{cls}'><img src='{thumb(gallery, gi)}' "
                   f"alt='{html.escape(gname)}' title='{html.escape(gname)}'>"
                   f"<span>{r + 1}: {float(dist[qi, gi]):.4f}</span></div>")
    parts.append(f"<div class='row' style='background:{bg}'>{''.join(cells)}</div>")
  parts.append("</div></body></html>\n")
  return "".join(parts)


def write_outputs(out_dir: str, trained: TrainedModel, query: Folder, gallery: Folder,
                  dist: np.ndarray, order: np.ndarray, *, top_k: int, list_k: int,
                  rerank: bool) -> dict:
  """ranked.json, ranked.csv and index.html into `out_dir`, atomically; returns the summary."""
  known = all(i is not None for i in query.identities + gallery.identities)
  n = len(gallery.files) if list_k <= 0 else min(list_k, len(gallery.files))
  summary: dict[str, Any] = {"queries": len(query.files), "gallery": len(gallery.files)}
  if known:
    from ce2l_jax.metrics import eval_regdb
    q_ids, g_ids = np.asarray(query.identities), np.asarray(gallery.identities)
    if np.isin(q_ids, g_ids).any():
      cmc, m_ap, m_inp = eval_regdb(dist, q_ids, g_ids, max_rank=20)
      summary.update({"queries_with_a_match": int(np.isin(q_ids, g_ids).sum()),
                      "rank1": float(cmc[0]), "mAP": float(m_ap), "mINP": float(m_inp)})
  settings = {"workdir": trained.workdir, "model": trained.model_name, "step": trained.step,
              "query": query.root, "query_modality": query.modality, "gallery": gallery.root,
              "gallery_modality": gallery.modality,
              "distance": "k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3)" if rerank
              else trained.metric, "identities_known": known, "list_k": n, "summary": summary}
  lists = []
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(["query", "rank", "gallery", "distance"] + (["match"] if known else []))
  for qi, qf in enumerate(query.files):
    ranked = []
    for r in range(n):
      gi = int(order[qi, r])
      entry = {"gallery": gallery.files[gi], "distance": float(dist[qi, gi])}
      if known:
        entry["identity"] = gallery.identities[gi]
        entry["match"] = gallery.identities[gi] == query.identities[qi]
      ranked.append(entry)
      writer.writerow([qf, r + 1, gallery.files[gi], f"{float(dist[qi, gi]):.6g}"]
                      + ([int(entry["match"])] if known else []))
    lists.append({"query": qf, "identity": query.identities[qi], "ranked": ranked})
  text = "; ".join(f"{k} {100 * v:.2f}%" if isinstance(v, float) else f"{k} {v}"
                   for k, v in summary.items())
  title = (f"{os.path.basename(query.root)} ({query.modality}) → {os.path.basename(gallery.root)} "
           f"({gallery.modality}): {trained.model_name}, step {trained.step}")
  page = render_html(query, gallery, dist, order, top_k, title, known, text)
  atomic_write_folder(out_dir, {
      "ranked.json": (json.dumps({**settings, "queries": lists}, indent=1) + "\n").encode(),
      "ranked.csv": buf.getvalue().encode(),
      "index.html": page.encode()})
  return summary


def search(workdir: str, query_dir: str, gallery_dir: str, out_dir: str | None = None, *,
           query_modality: str | None = None, gallery_modality: str | None = None,
           top_k: int = 10, list_k: int = 100, rerank: bool = False, batch_size: int = 64,
           progress: bool = True) -> dict:
  """The whole search (module docstring); returns the summary. SearchError on bad input."""
  if top_k < 1:
    raise SearchError(f"--top_k must be ≥ 1, got {top_k}")
  if batch_size < 1:
    raise SearchError(f"--batch_size must be ≥ 1, got {batch_size}")
  query = scan_folder(query_dir, query_modality, "query")
  gallery = scan_folder(gallery_dir, gallery_modality, "gallery")
  try:
    trained = load_trained(workdir)
  except ExportError as e:
    raise SearchError(str(e)) from None
  out_dir = out_dir or os.path.join(trained.workdir, "search")
  qf = extract_features(trained, query, batch_size, "query features", progress)
  gf = extract_features(trained, gallery, batch_size, "gallery features", progress)
  dist, order = rank(qf, gf, trained.metric, rerank)
  return write_outputs(out_dir, trained, query, gallery, dist, order, top_k=top_k, list_k=list_k,
                       rerank=rerank)


# --------------------------------------------------------------------------------------------
# The run's test split as folders
# --------------------------------------------------------------------------------------------


def write_test_folders(workdir: str, out_dir: str, per_identity: int = 1) -> dict[str, int]:
  """The run's test split as `out_dir/query/<pid>/…` (infrared, `per_identity` images of each
  identity) and `out_dir/gallery/<pid>/…` (every visible image), each with its MODALITY file."""
  from ce2l_jax import evaluate as ev
  from ce2l_jax.data import sources
  try:
    trained = load_trained(workdir)
  except ExportError as e:
    raise SearchError(str(e)) from None
  test = ev.open_test_set(trained.config)
  files: dict[str, bytes] = {"query/MODALITY": b"infrared\n", "gallery/MODALITY": b"visible\n"}
  taken: dict[int, int] = {}
  counts = {"query": 0, "gallery": 0}
  for s in range(0, len(test), 256):
    idx = list(range(s, min(s + 256, len(test))))
    for i, r in zip(idx, sources.get_records(test.source, idx)):
      pid, mod = int(test.pid[i]), int(test.modality[i])
      if mod == MODALITIES["infrared"]:
        if taken.get(pid, 0) >= per_identity:
          continue
        taken[pid] = taken.get(pid, 0) + 1
        part = "query"
      else:
        part = "gallery"
      name = r["file"].decode() if isinstance(r["file"], bytes) else str(r["file"])
      base = name.replace("/", "_")
      image = r["image"]
      if not isinstance(image, (bytes, bytearray)):
        from PIL import Image
        buf = io.BytesIO()
        Image.fromarray(np.asarray(image)).save(buf, format="PNG")
        image, base = buf.getvalue(), os.path.splitext(base)[0] + ".png"
      files[f"{part}/{pid:04d}/{base}"] = bytes(image)
      counts[part] += 1
  atomic_write_folder(out_dir, files)
  return counts


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
  import argparse
  ap = argparse.ArgumentParser(prog="python -m ce2l_jax.search",
                               description="Rank a gallery folder for every query image with a "
                               "trained run's model; writes ranked.json, ranked.csv, index.html.")
  ap.add_argument("--workdir", required=True, help="a run's workdir with a finished re-ID stage")
  ap.add_argument("--query", help="folder of query images")
  ap.add_argument("--gallery", help="folder of gallery images")
  ap.add_argument("--out", default="", help="output folder (default <workdir>/search)")
  ap.add_argument("--query_modality", default="", help="visible | infrared (else DIR/MODALITY)")
  ap.add_argument("--gallery_modality", default="", help="visible | infrared (else DIR/MODALITY)")
  ap.add_argument("--top_k", type=int, default=10, help="gallery images per query on the page")
  ap.add_argument("--list_k", type=int, default=100, help="ranks per query in the lists (0: all)")
  ap.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (k1 20, k2 6, λ 0.3)")
  ap.add_argument("--batch_size", type=int, default=64)
  ap.add_argument("--no_progress", action="store_true", help="no progress bars")
  ap.add_argument("--write_test_folders", default="", help="instead of searching: write the run's "
                  "test split as DIR/query (infrared) and DIR/gallery (visible)")
  ap.add_argument("--per_identity", type=int, default=1, help="queries per identity (with "
                  "--write_test_folders)")
  args = ap.parse_args(argv)
  try:
    if args.write_test_folders:
      counts = write_test_folders(args.workdir, args.write_test_folders, args.per_identity)
      print(f"wrote {counts['query']} infrared queries to {args.write_test_folders}/query and "
            f"{counts['gallery']} visible gallery images to {args.write_test_folders}/gallery")
      return 0
    if not args.query or not args.gallery:
      raise SearchError("--query and --gallery are both required (folders of images)")
    out = args.out or os.path.join(os.path.abspath(os.path.expanduser(args.workdir)), "search")
    summary = search(args.workdir, args.query, args.gallery, out,
                     query_modality=args.query_modality or None,
                     gallery_modality=args.gallery_modality or None, top_k=args.top_k,
                     list_k=args.list_k, rerank=args.rerank, batch_size=args.batch_size,
                     progress=not args.no_progress)
  except SearchError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  text = ", ".join(f"{k} {100 * v:.2f}%" if isinstance(v, float) else f"{k} {v}"
                   for k, v in summary.items())
  print(f"{text}. Written: {os.path.join(out, 'ranked.json')}, ranked.csv, index.html")
  return 0


def run_main() -> None:
  sys.exit(main())


if __name__ == "__main__":
  run_main()
