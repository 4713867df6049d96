"""`python -m ce2l_jax.export`: the serialized jax.export artifacts reproduce the live model.

The artifacts are reloaded in a fresh Python process that imports jax and numpy only (the test
checks that neither ce2l_jax nor flax was imported there), run at two batch sizes (the batch
dimension is symbolic), and compared with the live model restored from the same workdir.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.trained_workdir import ROOT, clean_env, trained_workdir

RELOAD = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    out, images_path, result_path = sys.argv[1:4]
    pre = json.load(open(out + "/preprocessing.json"))
    images = np.load(images_path)
    h, w = pre["input"]["height"], pre["input"]["width"]
    assert images.shape[1:] == (h, w, 3) and images.dtype == np.uint8
    res = {}
    for name, m in pre["modalities"].items():
      exp = jax.export.deserialize(bytearray(open(out + "/" + m["artifact"], "rb").read()))
      res[name + "_5"] = np.asarray(exp.call(images))
      res[name + "_3"] = np.asarray(exp.call(images[:3]))
    bad = sorted(k for k in sys.modules if k.split(".")[0] in ("ce2l_jax", "flax", "optax", "orbax"))
    assert not bad, bad
    np.savez(result_path, **res)
""")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  workdir, _ = trained_workdir(tmp_path_factory)
  out = str(tmp_path_factory.mktemp("export") / "model")
  from ce2l_jax import export
  assert export.main([f"--workdir={workdir}", f"--out={out}"]) == 0
  return workdir, out


def test_reloaded_artifact_matches_live_model(exported, tmp_path):
  workdir, out = exported
  assert sorted(os.listdir(out)) == ["infrared.jax_exported", "preprocessing.json",
                                     "visible.jax_exported"]
  with open(os.path.join(out, "preprocessing.json")) as f:
    pre = json.load(f)
  h, w = pre["input"]["height"], pre["input"]["width"]
  images = np.random.default_rng(0).integers(0, 256, (5, h, w, 3), dtype=np.uint8)
  np.save(tmp_path / "images.npy", images)
  (tmp_path / "reload.py").write_text(RELOAD)
  env = clean_env()
  env["PYTHONPATH"] = ""  # the fresh process cannot import this package even by accident
  p = subprocess.run([sys.executable, str(tmp_path / "reload.py"), out, str(tmp_path / "images.npy"),
                      str(tmp_path / "res.npz")], cwd=str(tmp_path), env=env, capture_output=True,
                     text=True, timeout=300)
  assert p.returncode == 0, p.stderr[-3000:]
  res = np.load(tmp_path / "res.npz")

  # The live model, through the trainer's own predict function (not the exporter's).
  import jax
  from ce2l_jax import export
  from ce2l_jax.trainers import reid
  trained = export.load_trained(workdir)
  predict = reid.make_predict_fn(trained.model)
  # The run's evaluation averaged with the mirror image's features when `eval.flip` (the smoke
  # config inherits configs/synthetic.py's True): the artifact must say so and do the same.
  flip = bool(trained.config.eval.flip)
  assert any("flipped" in step for step in pre["inside_artifact"]) == flip
  for name, m in (("visible", 0), ("infrared", 1)):
    live = np.asarray(jax.jit(lambda v, x: predict(v, x, m))(trained.variables, images))
    if flip:
      live = (live + np.asarray(jax.jit(lambda v, x: predict(v, x, m))(
          trained.variables, images[:, :, ::-1]))) / 2
    live = live / np.linalg.norm(live, axis=1, keepdims=True)
    assert res[f"{name}_5"].shape == (5, pre["output"]["shape"][1])
    np.testing.assert_allclose(res[f"{name}_5"], live, atol=1e-5, rtol=0)
    np.testing.assert_allclose(res[f"{name}_3"], live[:3], atol=1e-5, rtol=0)
  # The two streams are different functions (the modality reached the model).
  assert np.abs(res["visible_5"] - res["infrared_5"]).max() > 1e-4


def test_preprocessing_json_describes_the_input(exported):
  workdir, out = exported
  with open(os.path.join(out, "preprocessing.json")) as f:
    pre = json.load(f)
  with open(os.path.join(workdir, "config.json")) as f:
    config = json.load(f)
  assert [pre["input"]["height"], pre["input"]["width"]] == list(config["input"]["image_size"])
  assert pre["input"]["resize"]["resample"] == config["input"]["resample"]
  assert pre["input_shape"][0] == "b" and pre["distance"] == config["eval"]["metric"]
  assert pre["model"] == config["reid"]["model"] and pre["step"] == 2


def test_workdir_without_finished_reid_stage_is_one_line(tmp_path):
  w = tmp_path / "w"
  (w / "reid").mkdir(parents=True)
  (w / "config.json").write_text("{}")
  p = subprocess.run([sys.executable, "-m", "ce2l_jax.export", f"--workdir={w}"], cwd=ROOT,
                     env=clean_env(), capture_output=True, text=True, timeout=120)
  lines = [s for s in p.stderr.splitlines() if s.strip()]
  assert p.returncode == 2 and len(lines) == 1, p.stderr
  assert str(w / "reid" / "DONE") in lines[0] and not (w / "export").exists()
  (w / "reid" / "DONE").write_text("{}")  # finished, but config.json is not a run's config
  p = subprocess.run([sys.executable, "-m", "ce2l_jax.export", f"--workdir={w}"], cwd=ROOT,
                     env=clean_env(), capture_output=True, text=True, timeout=120)
  lines = [s for s in p.stderr.splitlines() if s.strip()]
  assert p.returncode == 2 and len(lines) == 1 and str(w / "config.json") in lines[0], p.stderr
