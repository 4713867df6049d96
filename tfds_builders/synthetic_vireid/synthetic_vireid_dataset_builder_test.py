"""synthetic_vireid builds without TensorFlow and reads back with `tfds.data_source`."""

import dataclasses

import numpy as np
import pytest
import tensorflow_datasets as tfds

from ce2l_jax.data import synthetic
from tfds_builders.synthetic_vireid.synthetic_vireid_dataset_builder import SyntheticVireid


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("tfds")
  for config in ("tiny", "regdb_small"):
    builder = SyntheticVireid(config=config, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare()
  return data_dir


@pytest.mark.parametrize("config", ["tiny", "regdb_small"])
@pytest.mark.parametrize("split", synthetic.SPLITS)
def test_records_are_the_generator_output(data_dir, split, config):
  source = tfds.data_source(f"synthetic_vireid/{config}", data_dir=data_dir, split=split)
  want = synthetic.generate(config, split)
  assert len(source) == len(want["pid"])
  by_file = {f: i for i, f in enumerate(want["file"])}
  for record in (source[i] for i in range(len(source))):
    i = by_file[record["file"].decode()]
    assert (record["pid"], record["camid"], record["modality"]) == (
        want["pid"][i], want["camid"][i], want["modality"][i])
    np.testing.assert_array_equal(record["image"], want["image"][i])  # PNG is lossless


def test_info(data_dir):
  builder = tfds.builder("synthetic_vireid/tiny", data_dir=data_dir)
  generator = builder.info.metadata["generator"]
  assert generator == dataclasses.asdict(synthetic.CONFIGS["tiny"])
  assert builder.info.features["modality"].names == ["visible", "infrared"]
  assert {c.name for c in SyntheticVireid.BUILDER_CONFIGS} == set(synthetic.CONFIGS)


def test_a_config_without_test_identities_builds_its_train_split(tmp_path):
  """The pretraining configs (`pretrain*`) have num_test_ids = 0: TFDS refuses an empty split
  ("No examples were yielded"), so the builder writes `train` only."""
  from tfds_builders.synthetic_vireid.synthetic_vireid_dataset_builder import SyntheticVireidConfig
  generator = dataclasses.replace(synthetic.CONFIGS["tiny"], num_test_ids=0)
  assert generator.splits == ("train",)
  assert synthetic.CONFIGS["pretrain_large"].splits == ("train",)
  assert synthetic.CONFIGS["sysu"].splits == ("train", "test")
  config = SyntheticVireidConfig(name="tiny_train_only", description="test", generator=generator,
                                 version=synthetic.data_version(generator))
  builder = SyntheticVireid(config=config, data_dir=tmp_path, file_format="array_record")
  builder.download_and_prepare()
  assert set(builder.info.splits) == {"train"}
  source = builder.as_data_source(split="train")
  assert len(source) == len(synthetic.generate(generator, "train")["pid"]) > 0
