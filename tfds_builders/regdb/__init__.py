"""RegDB (visible–thermal person re-ID), built from the released layout and trial indexes."""
