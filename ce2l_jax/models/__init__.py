"""Re-ID models (two-stream BDTR AlexNet, AGW ResNet-50, tiny variants) and their layers.

`create_reid_model(name, num_classes, **kwargs)` builds one by name; see `ce2l_jax.models.reid`
for the apply contract and `ce2l_jax.models.pretrained` for ImageNet initialisation from files.
"""

from ce2l_jax.models.reid import (DEFAULT_INPUT_SIZE, MODEL_NAMES, BDTRAlexNet, ResNetAGW,
                                  create_reid_model, init_reid_variables)

__all__ = ["BDTRAlexNet", "DEFAULT_INPUT_SIZE", "MODEL_NAMES", "ResNetAGW", "create_reid_model",
           "init_reid_variables"]
