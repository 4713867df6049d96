"""TFDS builders for SYSU-MM01, RegDB and the synthetic RGB–IR dataset."""
