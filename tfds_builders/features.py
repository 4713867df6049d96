"""The feature dictionary shared by every ce2l_jax dataset builder.

`image`: uint8 H×W×3 (single-channel infrared images repeated to 3 channels), encoded as JPEG
for SYSU-MM01 and PNG for RegDB / synthetic (lossless). `pid`: the dataset's own identity number.
`camid`: SYSU / synthetic 1–6 (1, 2, 4, 5 visible; 3, 6 infrared), RegDB 1 visible / 2 thermal.
`modality`: 0 visible, 1 infrared. `file`: path relative to the dataset root.

Dtypes are numpy types, not strings: TFDS without TensorFlow rejects `"uint8"`.
`example(...)` builds one record of this layout (every builder's `_generate_examples` yields it).
"""

import numpy as np
import tensorflow_datasets as tfds

MODALITY_NAMES = ("visible", "infrared")
SYSU_VISIBLE_CAMS = (1, 2, 4, 5)
SYSU_INFRARED_CAMS = (3, 6)


def features(encoding_format: str = "png") -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict({
      "image": tfds.features.Image(shape=(None, None, 3), dtype=np.uint8, encoding_format=encoding_format),
      "pid": tfds.features.Scalar(dtype=np.int64),
      "camid": tfds.features.Scalar(dtype=np.int64),
      "modality": tfds.features.ClassLabel(names=list(MODALITY_NAMES)),
      "file": tfds.features.Text(),
  })


def example(image, pid: int, camid: int, modality: int, file: str) -> dict:
  """One record of `features()`: `image` as `tfds.features.Image` takes it (a path, encoded
  bytes), the numbers as Python ints."""
  return {"image": image, "pid": int(pid), "camid": int(camid), "modality": int(modality),
          "file": str(file)}
