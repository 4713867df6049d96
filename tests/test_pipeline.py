"""grain pipelines: batch contracts, determinism, workers, resume, multi-process slices, eval."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ce2l_jax import checkpoint
from ce2l_jax.data import pipeline, sources

H, W = 16, 8


def _records(pids, per, modality, cams, start=0):
  out = []
  for pid in pids:
    for j in range(per):
      v = (start + len(out)) % 256
      out.append({"image": np.full((H + 4, W + 2, 3), v, np.uint8), "pid": pid,
                  "camid": cams[j % len(cams)], "modality": modality, "file": f"c{cams[0]}/{pid}/{j}"})
  return out


def _sources(n_ids=6, converted=True):
  ids = [3 * i + 1 for i in range(n_ids)]
  s = pipeline.ReidSources(sources.InMemorySource(_records(ids, 3, 0, [1, 2])),
                           sources.InMemorySource(_records(ids, 2, 1, [3, 6])))
  if converted:
    s.converted_visible = sources.InMemorySource(_records(ids, 2, 0, [3]))
    s.converted_infrared = sources.InMemorySource(_records(ids, 2, 1, [1]))
  return s


def _cfg(p=4, k=2, **kw):
  cfg = pipeline.default_input_config()
  cfg.p, cfg.k = p, k
  cfg.resize = cfg.crop = cfg.image_size = (H, W)
  cfg.pad = 2
  cfg.threads = 1
  cfg.unpaired.batch_size = 4
  cfg.unpaired.resize = (8, 8)
  for key, v in kw.items():
    cfg[key] = v
  return cfg


def _take(it, n):
  return [next(it) for _ in range(n)]


def _assert_equal_batches(xs, ys):
  assert len(xs) == len(ys)
  for x, y in zip(xs, ys):
    assert x.keys() == y.keys()
    for key in x:
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_reid_batch_contract():
  srcs = _sources()
  pipe = pipeline.build_reid_train_pipeline(srcs, _cfg(), seed=0, num_devices=8, process_index=0, process_count=1)
  assert pipe.num_classes == 6 and pipe.steps_per_epoch == 3 and pipe.image_size == (H, W)
  np.testing.assert_array_equal(pipe.label_map, [1, 4, 7, 10, 13, 16])
  lab = pipe.source.labels()
  conv_from = pipe.source.offsets[2]
  for b in _take(pipe.iterator(), 3):
    assert b["image"].shape == (2, 8, H, W, 3) and b["image"].dtype == np.uint8
    for key, dt in (("pid", np.int32), ("camid", np.int32), ("modality", np.int32), ("converted", bool)):
      assert b[key].shape == (2, 8) and b[key].dtype == dt, key
    np.testing.assert_array_equal(b["pid"][0], b["pid"][1])
    assert len(set(b["pid"][0])) == 4
    np.testing.assert_array_equal(pipe.label_map[b["pid"]], lab.pid[b["_index"]])
    np.testing.assert_array_equal(b["camid"], lab.camid[b["_index"]])
    np.testing.assert_array_equal(b["modality"], [[0] * 8, [1] * 8])
    np.testing.assert_array_equal(b["converted"], b["_index"] >= conv_from)


@pytest.mark.parametrize("which,slots", [("both", {0, 1}), ("infrared", {1}), ("visible", {0})])
def test_converted_slots_keeps_only_that_slots_converted_images(which, slots):
  """`input.converted_slots`: which conversion direction the re-ID batches draw (the real images
  of both slots always); with a converted share of 1 every kept slot is all converted."""
  pipe = pipeline.build_reid_train_pipeline(_sources(), _cfg(converted_share=1.0, converted_slots=which),
                                            seed=0, num_devices=8, process_index=0, process_count=1)
  seen = set()
  for b in _take(pipe.iterator(), 3):
    for slot in (0, 1):
      assert b["converted"][slot].all() == (slot in slots), (which, slot)
      assert b["converted"][slot].any() == (slot in slots), (which, slot)
      seen.add(slot)
  assert seen == {0, 1}
  with pytest.raises(ValueError, match=r"input\.converted_slots='ir'"):
    pipeline.build_reid_train_pipeline(_sources(), _cfg(converted_slots="ir"), seed=0, num_devices=8,
                                       process_index=0, process_count=1)


def test_same_seed_same_stream_and_seed_changes_it():
  srcs, cfg = _sources(), _cfg()
  a = _take(pipeline.build_reid_train_iterator(srcs, cfg, 1, process_index=0, process_count=1), 3)
  b = _take(pipeline.build_reid_train_iterator(srcs, cfg, 1, process_index=0, process_count=1), 3)
  _assert_equal_batches(a, b)
  c = _take(pipeline.build_reid_train_iterator(srcs, cfg, 2, process_index=0, process_count=1), 3)
  assert not all(np.array_equal(x["image"], y["image"]) for x, y in zip(a, c))
  cfg.threads = 0  # no reader threads: same stream
  _assert_equal_batches(a, _take(pipeline.build_reid_train_iterator(srcs, cfg, 1, process_index=0, process_count=1), 3))


def test_two_workers_same_stream_and_resume():
  srcs = _sources()
  ref = _take(pipeline.build_reid_train_iterator(srcs, _cfg(), 4, process_index=0, process_count=1), 5)
  it = pipeline.build_reid_train_iterator(srcs, _cfg(workers=2), 4, process_index=0, process_count=1)
  try:
    _assert_equal_batches(ref[:3], _take(it, 3))
    state = it.get_state()                            # mid-stream, with worker processes
    _assert_equal_batches(ref[3:], _take(it, 2))
    it.set_state(state)
    _assert_equal_batches(ref[3:], _take(it, 2))
  finally:
    it.close()


def test_resume_through_checkpointer(tmp_path):
  srcs, cfg = _sources(), _cfg()
  it = pipeline.build_reid_train_iterator(srcs, cfg, 7, process_index=0, process_count=1)
  _take(it, 3)
  state = {"w": jnp.ones((2,)), "step": jnp.asarray(3)}
  ck = checkpoint.Checkpointer(str(tmp_path / "ckpt"))
  ck.save(3, state, it)
  ck.wait()
  expected = _take(it, 2)
  it2 = pipeline.build_reid_train_iterator(srcs, cfg, 7, process_index=0, process_count=1)
  ck.restore(jax.eval_shape(lambda: state), it2)
  _assert_equal_batches(expected, _take(it2, 2))
  ck.close()


def test_process_slices_assemble_the_global_batch():
  srcs, cfg = _sources(), _cfg()
  full = _take(pipeline.build_reid_train_iterator(srcs, cfg, 3, process_index=0, process_count=1), 2)
  parts = [_take(pipeline.build_reid_train_iterator(srcs, cfg, 3, process_index=i, process_count=2), 2)
           for i in range(2)]
  for t in range(2):
    assert parts[0][t]["image"].shape[:2] == (2, 4)
    for key in full[t]:
      np.testing.assert_array_equal(np.concatenate([parts[0][t][key], parts[1][t][key]], axis=1), full[t][key])


def test_unpaired_process_slices_assemble_the_global_batch():
  """The CycleGAN's unpaired stream on 2 processes: process i builds rows [4i, 4i + 4) of the
  global batch of 8, the same images with the same random crop and flip as one process builds
  (records of random pixels, so a crop or flip drawn per process would show)."""
  rng = np.random.default_rng(0)

  def src(modality, n):
    return sources.InMemorySource({
        "image": rng.integers(0, 256, (n, H + 4, W + 2, 3), dtype=np.uint8),
        "pid": np.arange(n) // 2 + 1, "camid": np.full(n, 3 * modality + 1),
        "modality": np.full(n, modality), "file": np.array([f"{modality}/{i}" for i in range(n)])})

  vis, ir = src(0, 11), src(1, 7)
  cfg = _cfg()
  cfg.unpaired.update(dict(batch_size=8, resize=(H + 2, W + 2), crop=(H, W), flip=True))
  full = _take(pipeline.build_unpaired_iterator(vis, ir, cfg, 5, process_index=0, process_count=1), 3)
  parts = [_take(pipeline.build_unpaired_iterator(vis, ir, cfg, 5, process_index=i, process_count=2), 3)
           for i in range(2)]
  for t in range(3):
    for key in ("rgb", "ir"):
      assert parts[0][t][key].shape == (4, H, W, 3)
      np.testing.assert_array_equal(np.concatenate([parts[0][t][key], parts[1][t][key]]), full[t][key])


def test_config_errors():
  srcs = _sources()
  with pytest.raises(ValueError, match=r"input\.p\*input\.k .* 6 is not divisible by the number of devices \(8\)"):
    pipeline.build_reid_train_pipeline(srcs, _cfg(p=3, k=2), 0, num_devices=8, process_index=0, process_count=1)
  with pytest.raises(ValueError, match=r"not divisible by the process count \(4\)"):
    pipeline.build_reid_train_pipeline(srcs, _cfg(p=3, k=2), 0, process_index=0, process_count=4)
  with pytest.raises(ValueError, match=r"input\.p=7 is larger than the number of training identities"):
    pipeline.build_reid_train_pipeline(srcs, _cfg(p=7, k=1), 0, process_index=0, process_count=1)
  with pytest.raises(ValueError, match=r"input\.image_size"):
    pipeline.build_reid_train_pipeline(srcs, _cfg(image_size=(8, 8)), 0, process_index=0, process_count=1)


def test_eval_batches_pad_and_cover_once():
  src = sources.InMemorySource(_records([5, 6, 7], 3, 1, [3]))  # 9 records
  ev = pipeline.build_eval_batches(src, indices=np.arange(1, 9), batch_size=7, image_size=(H, W),
                                   emit_flipped=True, num_devices=1, process_index=0, process_count=1)
  batches = list(ev)
  assert len(ev) == len(batches) == 2
  for b in batches:
    assert b["image"].shape == (7, H, W, 3) and b["image"].dtype == np.uint8
    assert b["_mask"].dtype == bool and b["index"].dtype == np.int32
    np.testing.assert_array_equal(b["image_flipped"], b["image"][:, :, ::-1])
  np.testing.assert_array_equal(batches[0]["_mask"], [True] * 7)
  np.testing.assert_array_equal(batches[1]["_mask"], [True] + [False] * 6)
  idx = np.concatenate([b["index"][b["_mask"]] for b in batches])
  np.testing.assert_array_equal(idx, np.arange(1, 9))             # every example exactly once
  np.testing.assert_array_equal(batches[1]["index"][1:], -1)
  assert (batches[1]["image"][1:] == 0).all()
  lab = src.labels()
  pid = np.concatenate([b["pid"][b["_mask"]] for b in batches])
  np.testing.assert_array_equal(pid, lab.pid[1:])
  assert batches[0]["image"][0, 0, 0, 0] == 1                     # image of record 1
  again = list(pipeline.build_eval_batches(src, np.arange(1, 9), 7, (H, W), emit_flipped=True,
                                           process_index=0, process_count=1))
  _assert_equal_batches(batches, again)


def test_unpaired_stream(tmp_path):
  vis = sources.InMemorySource(_records([1, 2, 3], 4, 0, [1, 2, 4, 5]))              # values 0..11
  ir = sources.InMemorySource(_records([1, 2, 3], 4, 1, [3, 6], start=100))          # 100..111
  cfg = _cfg()
  pipe = pipeline.build_unpaired_pipeline(vis, ir, cfg, 0, num_devices=4, process_index=0, process_count=1)
  assert pipe.steps_per_epoch == 3
  batches = _take(pipe.iterator(), 6)
  for b in batches:
    assert set(b) == {"rgb", "ir"} and b["rgb"].shape == b["ir"].shape == (4, 8, 8, 3)
    assert b["rgb"].dtype == np.uint8
  rgb = np.concatenate([b["rgb"][:, 0, 0, 0] for b in batches])
  assert sorted(rgb[:12]) == list(range(12)) and sorted(rgb[12:]) == list(range(12))  # per epoch, once
  assert not np.array_equal(rgb[:12], rgb[12:])
  # camera restriction, determinism and resume
  cfg.unpaired.visible_cams, cfg.unpaired.infrared_cams = (1,), (6,)
  it = pipeline.build_unpaired_iterator(vis, ir, cfg, 0, process_index=0, process_count=1)
  first = _take(it, 2)
  assert set(np.concatenate([b["rgb"][:, 0, 0, 0] for b in first])) <= {0, 4, 8}
  assert set(np.concatenate([b["ir"][:, 0, 0, 0] for b in first])) <= {101, 103, 105, 107, 109, 111}
  state = it.get_state()
  expected = _take(it, 2)
  it2 = pipeline.build_unpaired_iterator(vis, ir, cfg, 0, process_index=0, process_count=1)
  it2.set_state(state)
  _assert_equal_batches(expected, _take(it2, 2))
  with pytest.raises(ValueError, match="input.unpaired.batch_size"):
    pipeline.build_unpaired_pipeline(vis, ir, cfg, 0, num_devices=3, process_index=0, process_count=1)


def _build_tiny_tfds(tfds, data_dir):
  """A 24-record array_record TFDS dataset of PNGs in the contract's record format."""
  import io
  from PIL import Image

  class Ce2lInputTiny(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      from tfds_builders import features as shared_features
      return tfds.core.DatasetInfo(builder=self, features=shared_features.features("png"))

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples()}

    def _generate_examples(self):
      for i in range(24):
        pid, cam = 10 + i // 6, (1, 2, 3, 4, 5, 6)[i % 6]
        buf = io.BytesIO()
        Image.fromarray(np.full((H + 6, W + 2, 3), i, np.uint8)).save(buf, format="PNG")
        yield i, {"image": buf.getvalue(), "pid": pid, "camid": cam, "modality": int(cam in (3, 6)),
                  "file": f"cam{cam}/{pid:04d}/{i:04d}.png"}

  b = Ce2lInputTiny(data_dir=data_dir, file_format="array_record")
  b.download_and_prepare()
  return b.name


def test_tfds_source_reads_labels_without_decoding(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  name = _build_tiny_tfds(tfds, str(tmp_path))
  src = sources.TfdsSource(name, "train", str(tmp_path), label_cache_dir=str(tmp_path / "cache"))
  assert isinstance(src[0]["image"], bytes)  # SkipDecoding is honoured by tfds.data_source
  lab = src.labels()
  decoded = tfds.data_source(name, split="train", data_dir=str(tmp_path))
  for i in (0, 5, len(src) - 1):
    r = decoded[i]
    assert (lab.pid[i], lab.camid[i], lab.modality[i]) == (r["pid"], r["camid"], r["modality"])
  assert os.listdir(tmp_path / "cache")
  srcs = pipeline.reid_sources_from_tfds(name, str(tmp_path))
  assert len(srcs.visible) + len(srcs.infrared) == len(src)
  cfg = _cfg(p=2, k=2)
  a = _take(pipeline.build_reid_train_iterator(srcs, cfg, 0, process_index=0, process_count=1), 2)
  assert a[0]["image"].shape == (2, 4, H, W, 3)
  np.testing.assert_array_equal(a[0]["modality"][1], 1)
  ev = list(pipeline.build_eval_batches(src, batch_size=16, image_size=(H, W), process_index=0, process_count=1))
  assert sum(int(b["_mask"].sum()) for b in ev) == len(src)


def test_synthetic_builder_integration(tmp_path):
  """Over the synthetic TFDS builder once it exists (tfds_builders/synthetic_vireid)."""
  root = os.path.join(os.path.dirname(__file__), "..", "tfds_builders", "synthetic_vireid")
  if not os.path.isdir(root):
    pytest.skip("tfds_builders/synthetic_vireid is not there yet")
  mod = pytest.importorskip("tfds_builders.synthetic_vireid.synthetic_vireid_dataset_builder")
  cls = mod.Builder
  configs = {c.name: c for c in getattr(cls, "BUILDER_CONFIGS", [])}
  config = next((n for n in ("tiny", "smoke", "small") if n in configs), None)
  if configs and config is None:
    pytest.skip(f"no tiny config among {sorted(configs)}")
  builder = cls(data_dir=str(tmp_path), file_format="array_record", **({"config": config} if config else {}))
  builder.download_and_prepare()
  name = builder.info.full_name.split("/")[0] + (f"/{config}" if config else "")
  srcs = pipeline.reid_sources_from_tfds(name, str(tmp_path))
  pipe = pipeline.build_reid_train_pipeline(srcs, _cfg(p=4, k=2), 0, num_devices=8, process_index=0,
                                            process_count=1)
  pids = np.union1d(srcs.visible.labels().pid, srcs.infrared.labels().pid)
  assert pipe.num_classes == len(pids)
  b = next(pipe.iterator())
  np.testing.assert_array_equal(b["pid"][0], b["pid"][1])
  np.testing.assert_array_equal(pipe.label_map[b["pid"]], pipe.source.labels().pid[b["_index"]])
  assert set(b["camid"][0]) <= {1, 2, 4, 5} and set(b["camid"][1]) <= {3, 6}


def test_a_synthetic_source_reads_its_own_data_version(tmp_path):
  """A data dir holding a newer version folder of a synthetic config (another checkout's data)
  is not read in place of the version this code renders and `dataset_is_built` checked."""
  import json
  import shutil
  from ce2l_jax import datasets
  from ce2l_jax.data import synthetic
  data_dir = str(tmp_path)
  datasets.build_synthetic("tiny", data_dir)
  current = synthetic.data_version("tiny")
  folder = tmp_path / "synthetic_vireid" / "tiny"
  shutil.copytree(folder / current, folder / "9.9.9")
  info = folder / "9.9.9" / "dataset_info.json"
  info.write_text(json.dumps({**json.loads(info.read_text()), "version": "9.9.9"}))
  # read in a fresh process, as run.py reads a built dataset (the builder's code not imported:
  # TFDS then takes the newest version folder unless the name pins one)
  code = ("from ce2l_jax.data import sources; s = sources.TfdsSource('synthetic_vireid/tiny', "
          f"'train', {data_dir!r}); print(s.name, s._ds.dataset_info.version)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert out.stdout.split()[-2:] == [f"synthetic_vireid/tiny:{current}", current], out.stdout
  # an explicit version is kept
  assert sources.pinned_version("synthetic_vireid/tiny:9.9.9") == "synthetic_vireid/tiny:9.9.9"
  assert sources.pinned_version("sysu_mm01/all") == "sysu_mm01/all"
