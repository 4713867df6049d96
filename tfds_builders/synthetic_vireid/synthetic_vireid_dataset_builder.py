"""synthetic_vireid: procedural visible–infrared person re-ID data, no download.

The embedded default dataset of ce2l_jax: `ce2l_jax.data.synthetic` renders it, deterministically
from its config's seed, in SYSU-MM01's layout. Build and read (no TensorFlow):

  python -m ce2l_jax.tfds_build tfds_builders/synthetic_vireid --config=small --data_dir=/data/tfds
  tfds.data_source("synthetic_vireid/small", data_dir="/data/tfds", split="train")
"""

import dataclasses

import tensorflow_datasets as tfds

from ce2l_jax.data import synthetic
from tfds_builders import features


@dataclasses.dataclass
class SyntheticVireidConfig(tfds.core.BuilderConfig):
  """A builder config: the name of a `ce2l_jax.data.synthetic.CONFIGS` entry."""
  generator: synthetic.SyntheticConfig | None = None


def _config(name: str, description: str) -> SyntheticVireidConfig:
  return SyntheticVireidConfig(name=name, description=description,
                               generator=synthetic.CONFIGS[name])


class SyntheticVireid(tfds.core.GeneratorBasedBuilder):
  """Synthetic SYSU-like visible–infrared person re-ID (`ce2l_jax.data.synthetic`).

  Records: `image` (uint8 H×W×3 PNG; infrared is grayscale repeated to 3 channels), `pid`
  (1-based; train identities first), `camid` (1–6: 1, 2, 4, 5 visible, 3, 6 infrared),
  `modality` (0 visible, 1 infrared), `file` (virtual `cam<c>/<pid:04d>/<n:04d>.png`).
  Splits `train` and `test` hold disjoint identities; every identity has images in at least one
  visible and one infrared camera. The generator's config is in the metadata (`generator`).

  | config  | image  | split | pids    | visible | infrared | total | use                |
  |---------|--------|-------|---------|--------:|---------:|------:|--------------------|
  | tiny    | 64×32  | train | 1–6     |      27 |       13 |    40 | unit tests         |
  |         |        | test  | 7–10    |      20 |       10 |    30 |                    |
  | small   | 64×32  | train | 1–40    |     377 |      180 |   557 | tests and the demo |
  |         |        | test  | 41–60   |     170 |       93 |   263 |                    |
  | default | 128×64 | train | 1–200   |   2,664 |    1,391 | 4,055 | larger runs        |
  |         |        | test  | 201–300 |   1,370 |      702 | 2,072 |                    |

  Images per identity per camera: 1–2 (tiny), 2–4 (small), 3–6 (default); each camera is
  missing for an identity with probability 0.25. Builds take < 1 s (tiny), ~1 s (small) and
  ~20 s (default) of one core's CPU time, mostly PNG encoding (docs/benchmarks.md (synthetic section)).
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Procedural SYSU-like people; thermal infrared from emissivity."}
  BUILDER_CONFIGS = [
      _config("small", "60 identities at 64×32: tests and the demo."),
      _config("default", "300 identities at 128×64."),
      _config("tiny", "10 identities at 64×32, 1–2 images per camera: unit tests."),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "small"

  def _info(self) -> tfds.core.DatasetInfo:
    generator = self.builder_config.generator
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            "Procedurally rendered people in a SYSU-MM01-like layout: visible cameras 1, 2, 4, 5 "
            "and infrared cameras 3, 6, with a modality gap (infrared from emissivity and body "
            "heat, independent of colour)."),
        features=features.features("png"),
        homepage="docs/notes/issue3_synthetic.md",
        metadata=tfds.core.MetadataDict(generator=dataclasses.asdict(generator)),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # nothing to download
    return {split: self._generate_examples(split) for split in synthetic.SPLITS}

  def _generate_examples(self, split: str):
    for chunk in synthetic.iter_chunks(self.builder_config.generator, split):
      for i, file in enumerate(chunk["file"]):
        yield file, {
            "image": synthetic.encode_png(chunk["image"][i]),
            "pid": int(chunk["pid"][i]),
            "camid": int(chunk["camid"][i]),
            "modality": int(chunk["modality"][i]),
            "file": file,
        }


Builder = SyntheticVireid  # the name `tfds new` gives, for tools that look for it
