"""Conversion stage: one converted record per source record (right labels, target modality, source
size), resumable and atomic; conversion-quality numbers; the whole CycleGAN → convert path on the
synthetic TFDS dataset, read back through the input pipeline."""

import os

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from ce2l_jax import conversion_quality, convert, parallel, stages
from ce2l_jax import workdir as wd
from ce2l_jax.data import pipeline, sources, synthetic
from ce2l_jax.data.augment import to_unit_range
from ce2l_jax.models import cyclegan as cg
from tests.conftest import tiny_cyclegan_cfg


def tiny_cfg(**kw):
  """tests/conftest.py's tiny CycleGAN (the compiled step is shared with tests/test_cyclegan.py)."""
  return tiny_cyclegan_cfg(eval_every=4, num_heldout=8, classifier_images=16, classifier_steps=50, **kw)


def run_config(data_dir=None, **convert_kw):
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.data = ml_collections.ConfigDict({"name": "synthetic_vireid/tiny", "data_dir": str(data_dir)})
  config.mesh = ml_collections.ConfigDict({"num_devices": None})
  config.cyclegan = tiny_cfg()
  config.convert = convert.default_config()
  config.convert.update(dict(chunk_size=16, batch_size=8, **convert_kw))
  return config


@pytest.fixture(scope="module")
def tiny_train():
  data = synthetic.generate("tiny", "train")  # 40 records at 64×32, camera order
  params = cg.init_params(cg.build_models(tiny_cfg()), 0, (32, 16))
  return sources.InMemorySource(data), {r: params[r] for r in cg.ROLES[:2]}


def _read_all(workdir):
  src = convert.open_converted(workdir)
  return [src[i] for i in range(len(src))]


def test_one_converted_record_per_input(tmp_path, tiny_train):
  source, gens = tiny_train
  config = run_config(keep_chunks=True)
  summary = convert.convert_dataset(config, str(tmp_path), gen_params=gens, source=source, progress=False)
  assert summary["num_records"] == summary["converted_now"] == len(source) == 40
  assert summary["rgb2ir_now"] == int(np.sum(source.labels().modality == 0))
  out = _read_all(str(tmp_path))
  assert len(out) == len(source)
  for i, r in enumerate(out):  # record i is the conversion of source record i
    s = source[i]
    assert r["file"].decode() == s["file"] and r["converted"] is True
    assert (r["pid"], r["camid"], r["modality"]) == (s["pid"], s["camid"], 1 - s["modality"])
    img = convert.aug_lib.decode(r["image"])
    assert img.size == (32, 64)  # the source's own size (W, H)
  # Exactly the generator's output, resized back (PNG is lossless).
  s = source[0]
  small = np.asarray(Image.fromarray(s["image"]).resize((16, 32), Image.Resampling.BICUBIC))
  mesh = parallel.make_mesh()
  fake = convert.make_convert_fn(config.cyclegan, mesh)(gens["gen_rgb2ir" if s["modality"] == 0 else "gen_ir2rgb"],
                                                       np.repeat(small[None], 8, 0))
  want = np.asarray(Image.fromarray(np.asarray(fake)[0]).resize((32, 64), Image.Resampling.BICUBIC))
  np.testing.assert_array_equal(np.asarray(convert.aug_lib.decode(out[0]["image"])), want)
  # The pipeline's reader takes it as a converted source, modality = target.
  labels = sources.TfdsSource(convert.DATASET_NAME, "train", convert.converted_data_dir(str(tmp_path))).labels()
  np.testing.assert_array_equal(labels.modality, 1 - source.labels().modality)
  # Finished: a rerun converts nothing.
  assert convert.convert_dataset(config, str(tmp_path), gen_params=gens, source=source)["converted_now"] == 0
  assert not wd.is_done(str(tmp_path), "convert")  # the stage's DONE is stages.py's to write


def test_interrupted_conversion_resumes(tmp_path, tiny_train, monkeypatch):
  source, gens = tiny_train
  config = run_config()
  workdir = str(tmp_path)
  real_write = convert.write_chunk
  written = []

  def killed_after_one(path, *a):
    if written:
      raise KeyboardInterrupt  # killed while converting the second chunk
    real_write(path, *a)
    written.append(path)

  monkeypatch.setattr(convert, "write_chunk", killed_after_one)
  with pytest.raises(KeyboardInterrupt):
    convert.convert_dataset(config, workdir, gen_params=gens, source=source, progress=False)
  assert not convert.is_complete(workdir)
  with pytest.raises(FileNotFoundError, match="tfds/ is missing"):
    convert.open_converted(workdir)
  # Leftovers of a kill: a half-written chunk and a half-built dataset; neither is read.
  open(os.path.join(convert.chunks_dir(workdir), "chunk_000001.npz.tmp123"), "wb").write(b"partial")
  os.makedirs(convert.converted_data_dir(workdir) + ".tmp")

  again = []
  monkeypatch.setattr(convert, "write_chunk", lambda path, *a: (real_write(path, *a), again.append(path)))
  summary = convert.convert_dataset(config, workdir, gen_params=gens, source=source, progress=False)
  assert len(written) == 1 and len(again) == 2  # 3 chunks of 16: only the two missing ones redone
  assert summary["converted_now"] == 40 - 16
  out = _read_all(workdir)
  assert [r["file"].decode() for r in out] == list(source[i]["file"] for i in range(len(source)))
  assert not os.path.exists(convert.chunks_dir(workdir))  # removed once complete (keep_chunks=False)

  # Chunks of another generator are not reused.
  cdir = str(tmp_path / "chunks")
  convert.convert_source(sources.SubsetSource(source, range(16)), gens, cdir, cfg=config.cyclegan,
                         chunk_size=8, progress=False)
  other = jax.tree.map(lambda a: a + 1e-3, gens)
  st = convert.convert_source(sources.SubsetSource(source, range(16)), other, cdir, cfg=config.cyclegan,
                              chunk_size=8, progress=False)
  assert st["converted_now"] == 16


def test_modality_classifier_and_quality_numbers(tiny_train):
  source, gens = tiny_train
  real = conversion_quality.images_from_source(source, 16, (32, 16))
  assert real["rgb"].shape == (16, 32, 16, 3) and real["ir"].shape == (13, 32, 16, 3)
  clf = conversion_quality.train_modality_classifier(real["rgb"], real["ir"], steps=50)
  assert np.mean(clf.predict(real["rgb"]) == 0) == 1.0 and np.mean(clf.predict(real["ir"]) == 1) == 1.0
  # An "identity generator" leaves the images in their own modality: target share 0.
  identity = lambda params, rgb, ir: {"fake_ir": to_unit_range(rgb), "fake_rgb": to_unit_range(ir),
                                      "cycle_l1_rgb": np.zeros(len(rgb)), "cycle_l1_ir": np.zeros(len(ir))}
  q = conversion_quality.evaluate(identity, None, real, real, steps=50, batch_size=8)
  assert q["rgb2ir_target_share"] == 0.0 and q["ir2rgb_target_share"] == 0.0 and q["modality_clf_acc"] == 1.0


def test_cyclegan_then_convert_on_synthetic_tfds(tmp_path):
  """run.py's path: the cyclegan stage (opens the TFDS split itself), then the convert stage from
  its checkpoint; the converted dataset is read back by the re-ID pipeline's reader."""
  from tfds_builders.synthetic_vireid.synthetic_vireid_dataset_builder import SyntheticVireid
  data_dir = tmp_path / "tfds"
  SyntheticVireid(config="tiny", data_dir=str(data_dir), file_format="array_record").download_and_prepare()
  config = run_config(data_dir)
  workdir = str(tmp_path / "run")
  stages.stage_cyclegan(config, workdir)
  result = wd.read_done(workdir, "cyclegan")
  assert result["step"] == 4
  for k in ("heldout_cycle_l1_rgb", "heldout_cycle_l1_ir", "rgb2ir_target_share", "ir2rgb_target_share",
            "modality_clf_acc"):
    assert np.isfinite(result[k])
  assert os.path.exists(os.path.join(workdir, "cyclegan", "samples", "step_0000004.png"))
  assert stages.stage_cyclegan(config, workdir).startswith("finished earlier")
  assert os.path.exists(os.path.join(workdir, "conversion_samples.png"))

  assert stages.stage_convert(config, workdir) == "done: 40 images converted"
  summary = wd.read_done(workdir, "convert")
  assert summary["cyclegan_checkpoint_step"] == 4 and summary["num_records"] == 40
  srcs = pipeline.reid_sources_from_tfds(
      "synthetic_vireid/tiny", str(data_dir), converted_name=convert.DATASET_NAME,
      converted_data_dir=convert.converted_data_dir(workdir))
  assert len(srcs.converted_infrared) == len(srcs.visible) == 27
  assert len(srcs.converted_visible) == len(srcs.infrared) == 13
