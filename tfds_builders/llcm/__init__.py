"""LLCM TFDS builder."""
