"""SYSU-MM01 (RGB–infrared person re-ID), built from the released folder layout."""
