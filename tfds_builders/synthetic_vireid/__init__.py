"""synthetic_vireid: procedural visible–infrared person re-ID data in SYSU-MM01's layout."""
