"""ce2l_jax: CE²L visible–infrared person re-identification in JAX/Flax.

Stages: CycleGAN RGB↔IR conversion (`trainers.cyclegan`, `convert`), re-ID training with the
cross-modality top-ranking, intra-modality and label-smoothed identity losses (`trainers.reid`,
`losses`), and the SYSU-MM01 / RegDB evaluation protocols (`metrics`).
"""

__version__ = "0.1.0"

VISIBLE = 0
INFRARED = 1
