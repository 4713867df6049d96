"""Input pipeline: sources, the P×K cross-modality sampler, augmentation, grain pipelines.

`sources` (TFDS / in-memory / concatenated random-access sources and their labels), `sampler`
(pure seeded P×K sampling), `augment` (host-side uint8 augmentation; on-device normalisation),
`pipeline` (grain streams: re-ID train, unpaired CycleGAN, padded eval). Importing this package
does not import JAX, so grain worker processes stay light.
"""
