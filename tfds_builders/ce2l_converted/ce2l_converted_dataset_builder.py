"""ce2l_converted: the training images of a run translated to the other modality by its CycleGAN.

Written by `ce2l_jax.convert` (stage `convert` of run.py), which translates every training image
and stores the results as chunk files; this builder turns a folder of such chunks (its manual
dir) into an array_record dataset read like the originals:

  tfds.data_source("ce2l_converted", data_dir=ce2l_jax.convert.converted_data_dir(workdir), split="train")

Records: the shared features (`tfds_builders/features.py`) plus `converted` (always True):
`image` uint8 H×W×3 PNG at the source image's size, `pid`/`camid` of the source image,
`modality` = the TARGET modality (an RGB→IR image has 1), `file` = the source image's file.
Record i is the conversion of record i of the source split (shuffling disabled).

Chunk files (`chunk_<k>.npz`, see `ce2l_jax.convert.write_chunk`): `index`, `pid`, `camid`,
`modality` int64 (n,), `files` str (n,), `png` uint8 (all PNGs concatenated), `png_offsets`
int64 (n + 1,).
"""

import glob
import os

import numpy as np
import tensorflow_datasets as tfds

from tfds_builders import features


def read_chunk(path: str):
  """Yields (source index, record) from one chunk file."""
  with np.load(path, allow_pickle=False) as z:
    index, pid, camid, modality = z["index"], z["pid"], z["camid"], z["modality"]
    files, png, off = z["files"], z["png"], z["png_offsets"]
  for j in range(len(index)):
    yield int(index[j]), {
        "image": png[off[j]:off[j + 1]].tobytes(),
        "pid": int(pid[j]),
        "camid": int(camid[j]),
        "modality": int(modality[j]),
        "file": str(files[j]),
        "converted": True,
    }


class Ce2lConverted(tfds.core.GeneratorBasedBuilder):
  """Modality-converted training images (CE²L): one record per source training image."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "RGB→IR and IR→RGB conversions of a training split."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = ("The chunk folder written by ce2l_jax.convert "
                                  "(<workdir>/convert/chunks); run.py's convert stage builds this for you.")

  def _info(self) -> tfds.core.DatasetInfo:
    base = features.features("png")
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            **{k: base[k] for k in base.keys()},
            "converted": tfds.features.Scalar(dtype=np.bool_),
        }),
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    return {"train": self._generate_examples(str(dl_manager.manual_dir))}

  def _generate_examples(self, chunk_dir: str):
    paths = sorted(glob.glob(os.path.join(chunk_dir, "chunk_*.npz")))
    if not paths:
      raise FileNotFoundError(f"no chunk_*.npz files in {chunk_dir}")
    for p in paths:
      yield from read_chunk(p)
