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
  """Each config carries the version of its own data (`synthetic.data_version`): a change of the
  thermal model rebuilds the thermal configs only."""
  generator = synthetic.CONFIGS[name]
  return SyntheticVireidConfig(name=name, description=description, generator=generator,
                               version=synthetic.data_version(generator))


class SyntheticVireid(tfds.core.GeneratorBasedBuilder):
  """Synthetic SYSU-like visible–infrared person re-ID (`ce2l_jax.data.synthetic`).

  Records: `image` (uint8 H×W×3 PNG; infrared is grayscale repeated to 3 channels), `pid`
  (1-based; train identities first), `camid` (1–6: 1, 2, 4, 5 visible, 3, 6 infrared),
  `modality` (0 visible, 1 infrared), `file` (virtual `cam<c>/<pid:04d>/<n:04d>.png`).
  Splits `train` and `test` hold disjoint identities; every identity has images in at least one
  visible and one infrared camera. The generator's config is in the metadata (`generator`).

  | config        | image  | IR      | cameras      | train ids | test ids | img/id/cam | use          |
  |---------------|--------|---------|--------------|----------:|---------:|-----------:|--------------|
  | sysu          | 128×64 | NIR     | SYSU 1–6     |       300 |      100 |        3–6 | SYSU twin    |
  | regdb_trial1…10 | 128×64 | thermal | RegDB 1, 2 |       206 |      206 |         10 | RegDB twin   |
  | sysu_small    | 64×32  | NIR     | SYSU 1–6     |        40 |       20 |        2–4 | tests        |
  | regdb_small   | 64×32  | thermal | RegDB 1, 2   |        20 |       20 |          4 | tests        |
  | default       | 128×64 | thermal | SYSU 1–6     |       200 |      100 |        3–6 | earlier demo |
  | small         | 64×32  | thermal | SYSU 1–6     |        40 |       20 |        2–4 | tests        |
  | tiny          | 64×32  | thermal | SYSU 1–6     |         6 |        4 |        1–2 | unit tests   |
  | pretrain      | 128×64 | NIR     | SYSU 1–6     |       500 |        0 |        3–6 | pretraining  |
  | pretrain_large | 128×64 | NIR    | SYSU 1–6     |     3,000 |        0 |        3–6 | pretraining  |
  | pretrain_xl   | 128×64 | NIR     | SYSU 1–6     |     8,000 |        0 |        3–6 | pretraining  |

  SYSU layout: cameras 1, 2, 4, 5 visible, 3 and 6 infrared; each camera is missing for an
  identity with probability 0.25 (at least one visible and one infrared camera kept). RegDB
  layout: camera 1 visible, camera 2 thermal (the camids of `tfds_builders/regdb`); trial t
  splits the 412 identities into halves at random as RegDB's ten trials. NIR: reflectance under
  the camera's illuminator; thermal: skin temperature, garment insulation, sunshine and a
  microbolometer camera (`ce2l_jax.data.synthetic`, docs/notes/thermal_twin.md).
  Builds take seconds (small) to about a minute (sysu, regdb_trial*) of one core, mostly PNG
  encoding.
  """

  # The newest data version; each config carries its own (`synthetic.data_version`).
  VERSION = tfds.core.Version("1.2.0")
  RELEASE_NOTES = {"1.0.0": "Procedural SYSU-like people; thermal infrared from emissivity.",
                   "1.1.0": "Twins: sysu (near infrared), regdb_trial1..10 (thermal, RegDB "
                            "layout); tiny, small, default unchanged. (pretrain, pretrain_large, "
                            "pretrain_xl added later at this version.)",
                   "1.2.0": "Thermal configs only (tiny, small, default, regdb_trial1..10, "
                            "regdb_small): a physical thermal model (skin temperature, garment "
                            "insulation by kind and fit, solar absorptance, fabric emissivity "
                            "~0.9, a microbolometer camera; docs/notes/thermal_twin.md). Their "
                            "visible images are unchanged. Near-infrared configs (sysu, "
                            "sysu_small, pretrain*) stay at 1.1.0, image for image."}
  BUILDER_CONFIGS = [
      _config("small", "60 identities at 64×32: tests and the demo."),
      _config("default", "300 identities at 128×64."),
      _config("tiny", "10 identities at 64×32, 1–2 images per camera: unit tests."),
      _config("sysu", "SYSU-MM01 twin: 400 identities at 128×64, near-infrared cameras 3, 6."),
      _config("sysu_small", "SYSU twin for tests: 60 identities at 64×32, near infrared."),
      *[_config(f"regdb_trial{t}", f"RegDB twin, trial {t}: 206 + 206 identities, 10 visible "
                "+ 10 thermal images each, 128×64.") for t in range(1, 11)],
      _config("regdb_small", "RegDB twin for tests: 20 + 20 identities, 4 + 4 images, 64×32."),
      _config("pretrain", "Visible pretraining (ImageNet's part): 500 other identities (seed "
              "1000), train split only; use its visible images."),
      _config("pretrain_large", "Visible pretraining, larger: 3,000 other identities (seed "
              "1000), train split only; use its visible images."),
      _config("pretrain_xl", "Visible pretraining, largest: 8,000 other identities (seed 1000; "
              "no gain over pretrain_large measured), train split only; "
              "`ce2l_jax.synthetic_pretrain` renders it in memory instead."),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "small"

  def _info(self) -> tfds.core.DatasetInfo:
    generator = self.builder_config.generator
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            "Procedurally rendered people in a SYSU-MM01-like (visible cameras 1, 2, 4, 5, "
            "infrared 3, 6) or RegDB-like (visible 1, thermal 2) layout; infrared is near "
            "infrared (reflectance under the camera's illuminator: a partly predictable, "
            "many-to-one function of the dye plus the fabric) or thermal (skin temperature, "
            "garment insulation by kind and fit, sunshine absorbed by the colour, fabric "
            "emissivity ~0.9, a microbolometer camera)."),
        features=features.features("png"),
        homepage="docs/notes/synthetic_benchmark.md",
        metadata=tfds.core.MetadataDict(generator=dataclasses.asdict(generator)),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # nothing to download
    # Only splits with identities: TFDS refuses to write an empty split, and the pretraining
    # configs (`pretrain*`, num_test_ids = 0) have no `test`.
    return {split: self._generate_examples(split)
            for split in self.builder_config.generator.splits}

  def _generate_examples(self, split: str):
    for chunk in synthetic.iter_chunks(self.builder_config.generator, split):
      for i, file in enumerate(chunk["file"]):
        yield file, features.example(synthetic.encode_png(chunk["image"][i]), chunk["pid"][i],
                                     chunk["camid"][i], chunk["modality"][i], file)


Builder = SyntheticVireid  # the name `tfds new` gives, for tools that look for it
