"""`python -m ce2l_jax.search`: ranked lists, the page in a real headless browser, bad input.

The model is a 2-step smoke run (tests/trained_workdir.py). Query images are solid grey levels
(infrared), gallery images solid colours (visible), in identity subfolders, so the page's rows
can be recognised pixel by pixel in a Chromium screenshot.
"""

import csv
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from ce2l_jax import search
from tests.trained_workdir import trained_workdir

IDS = ("0001", "0002", "0003", "0004")


def _grey(i):
  return 30 + 17 * i


def make_folders(root, n_per_id=3):
  """root/query/<id>/q<i>.png (grey, MODALITY infrared), root/gallery/<id>/g<j>.png (colour)."""
  rng = np.random.default_rng(0)
  q, g = root / "query", root / "gallery"
  i = 0
  for pid in IDS:
    (q / pid).mkdir(parents=True)
    (g / pid).mkdir(parents=True)
    for k in range(n_per_id):
      Image.new("RGB", (20, 40), (_grey(i),) * 3).save(q / pid / f"q{k}.png")
      i += 1
      Image.new("RGB", (24, 48), tuple(int(c) for c in rng.integers(0, 256, 3))).save(
          g / pid / f"g{k}.png")
  (q / "MODALITY").write_text("infrared\n")
  return str(q), str(g)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
  workdir, _ = trained_workdir(tmp_path_factory)
  root = tmp_path_factory.mktemp("search")
  q, g = make_folders(root)
  out = str(root / "out")
  rc = search.main([f"--workdir={workdir}", f"--query={q}", f"--gallery={g}",
                    "--gallery_modality=visible", f"--out={out}", "--top_k=5", "--list_k=0",
                    "--batch_size=5", "--no_progress"])
  assert rc == 0
  return workdir, q, g, out


def test_lists_are_the_live_model_ranking(searched):
  workdir, q, g, out = searched
  with open(os.path.join(out, "ranked.json")) as f:
    res = json.load(f)
  assert res["identities_known"] and res["query_modality"] == "infrared"
  assert len(res["queries"]) == 12 and res["list_k"] == 12

  # The same ranking from features extracted here, image by image, through the trained model.
  from ce2l_jax import export, metrics
  from ce2l_jax.data import augment
  trained = export.load_trained(workdir)

  def feats(folder, modality):
    import jax
    fn = jax.jit(trained.feature_fn(modality))
    paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(folder) for f in fs if f.endswith(".png"))
    x = np.stack([augment.resize(augment.decode(open(p, "rb").read()), trained.image_size) for p in paths])
    return np.asarray(fn(trained.variables, x)), [os.path.relpath(p, folder) for p in paths]

  qf, qn = feats(q, 1)
  gf, gn = feats(g, 0)
  d = metrics.pairwise_distances(qf, gf)
  for i, entry in enumerate(res["queries"]):
    assert entry["query"] == qn[i] and entry["identity"] == qn[i].split("/")[0]
    got = [r["gallery"] for r in entry["ranked"]]
    dists = [r["distance"] for r in entry["ranked"]]
    assert sorted(got) == sorted(gn) and dists == sorted(dists)
    np.testing.assert_allclose(dists, np.sort(d[i]), atol=1e-5)
    assert [r["match"] for r in entry["ranked"]] == [x.split("/")[0] == entry["identity"] for x in got]

  with open(os.path.join(out, "ranked.csv")) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 12 * 12 and set(rows[0]) == {"query", "rank", "gallery", "distance", "match"}
  assert rows[0]["gallery"] == res["queries"][0]["ranked"][0]["gallery"]


def _one_line(capsys, rc):
  err = [s for s in capsys.readouterr().err.splitlines() if s.strip()]
  assert rc == 2 and len(err) == 1 and err[0].startswith("error: "), err
  return err[0]


def test_bad_input_is_one_line_and_writes_nothing(searched, tmp_path, capsys):
  workdir, q, g, _ = searched
  out = tmp_path / "out"
  base = [f"--workdir={workdir}", f"--out={out}", "--gallery_modality=visible", "--no_progress"]

  empty = tmp_path / "empty"
  empty.mkdir()
  line = _one_line(capsys, search.main(base + [f"--query={empty}", f"--gallery={g}",
                                               "--query_modality=infrared"]))
  assert str(empty) in line and "no images" in line

  broken = tmp_path / "broken"
  shutil.copytree(q, broken)
  (broken / IDS[1] / "zz.jpg").write_bytes(b"\xff\xd8 not a jpeg")
  line = _one_line(capsys, search.main(base + [f"--query={broken}", f"--gallery={g}"]))
  assert str(broken / IDS[1] / "zz.jpg") in line and "not a readable image" in line

  line = _one_line(capsys, search.main(base + [f"--query={q}", f"--gallery={g}",
                                               "--query_modality=visible"]))
  assert os.path.join(q, "MODALITY") in line  # the flag contradicts the folder's marker

  line = _one_line(capsys, search.main([f"--workdir={workdir}", f"--out={out}", f"--query={q}",
                                        f"--gallery={g}", "--no_progress"]))
  assert str(g) in line and "MODALITY" in line  # the gallery has no modality

  line = _one_line(capsys, search.main(base + [f"--query={g}", f"--gallery={g}",
                                               "--query_modality=infrared"]))
  assert str(g) in line and "colour" in line  # colour images given to the infrared stream

  unfinished = tmp_path / "w"
  shutil.copytree(workdir, unfinished)
  os.remove(unfinished / "reid" / "DONE")
  line = _one_line(capsys, search.main([f"--workdir={unfinished}", f"--out={out}", f"--query={q}",
                                        f"--gallery={g}", "--gallery_modality=visible"]))
  assert str(unfinished / "reid" / "DONE") in line
  assert not out.exists() and not list(tmp_path.glob("out.*"))


def test_failed_rerun_keeps_the_previous_output(searched, tmp_path, capsys):
  workdir, q, g, out = searched
  before = {n: open(os.path.join(out, n), "rb").read() for n in os.listdir(out)}
  broken = tmp_path / "broken"
  shutil.copytree(g, broken)
  (broken / IDS[0] / "g9.png").write_bytes(b"\x89PNG truncated")
  _one_line(capsys, search.main([f"--workdir={workdir}", f"--query={q}", f"--gallery={broken}",
                                 "--gallery_modality=visible", f"--out={out}", "--no_progress"]))
  assert {n: open(os.path.join(out, n), "rb").read() for n in os.listdir(out)} == before


def _browser():
  for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
    path = shutil.which(name)
    if path:
      return path
  return None


def _rgb(hex_color):
  return np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)])


def test_page_renders_every_query_row_in_chromium(searched, tmp_path):
  browser = _browser()
  if browser is None:
    pytest.skip("no Chromium/Chrome on PATH (Debian: apt-get install -y chromium; .ci/run "
                "installs it): the page cannot be rendered")
  _, _, _, out = searched
  with open(os.path.join(out, "ranked.json")) as f:
    res = json.load(f)
  n = len(res["queries"])
  k = 5
  width = search.CELL_PX * (k + 1) + 40
  height = search.HEADER_PX + n * search.ROW_PX + 40
  shot = tmp_path / "page.png"
  cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--force-device-scale-factor=1", f"--user-data-dir={tmp_path / 'profile'}",
         f"--window-size={width},{height}", f"--screenshot={shot}",
         "file://" + os.path.join(out, "index.html")]
  p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
  assert p.returncode == 0 and shot.exists(), p.stderr[-2000:]
  img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
  assert img.shape[:2] == (height, width)

  def near(y, x, color, tol=8):
    assert np.abs(img[y, x] - color).max() <= tol, (y, x, img[y, x], color)

  thumb_x = 10 + search.BORDER_PX + search.THUMB_W // 2
  for i, entry in enumerate(res["queries"]):
    top = search.HEADER_PX + i * search.ROW_PX
    near(top + 2, width - 5, _rgb(search.ROW_COLORS[i % 2]))              # the row's stripe
    mid = top + 4 + search.BORDER_PX + search.THUMB_H // 2
    near(mid, thumb_x, np.array([_grey(i)] * 3))                          # its query image
    near(mid, 10 + 1, _rgb(search.QUERY_COLOR))                           # the query's border
    hit = entry["ranked"][0]["match"]
    near(mid, 10 + search.CELL_PX + 1, _rgb(search.MATCH_COLORS[hit]))    # top-1 marked
  near(search.HEADER_PX + n * search.ROW_PX + 20, 20, np.array([255, 255, 255]))  # nothing after


def test_the_runs_test_split_as_folders(searched, tmp_path):
  """--write_test_folders: the run's test split (infrared queries, one per identity; every
  visible image as gallery) and a search over it that ranks every query."""
  workdir = searched[0]
  from ce2l_jax import evaluate as ev
  from ce2l_jax import export
  test = ev.open_test_set(export.load_trained(workdir).config)
  root = tmp_path / "split"
  assert search.main([f"--workdir={workdir}", f"--write_test_folders={root}"]) == 0
  assert (root / "query" / "MODALITY").read_text().strip() == "infrared"
  assert (root / "gallery" / "MODALITY").read_text().strip() == "visible"
  queries = sorted(str(p.relative_to(root / "query")) for p in (root / "query").rglob("*.*"))
  gallery = [p for p in (root / "gallery").rglob("*.*")]
  ir_ids = sorted({int(p) for p, m in zip(test.pid, test.modality) if m == 1})
  assert sorted(int(q.split("/")[0]) for q in queries) == ir_ids  # one per identity
  assert len(gallery) == int((test.modality == 0).sum())
  out = tmp_path / "out"
  assert search.main([f"--workdir={workdir}", f"--query={root / 'query'}",
                      f"--gallery={root / 'gallery'}", f"--out={out}", "--no_progress"]) == 0
  with open(out / "ranked.json") as f:
    res = json.load(f)
  assert [q["query"] for q in res["queries"]] == queries and res["identities_known"]
  assert "rank1" in res["summary"] and res["summary"]["queries"] == len(queries)
