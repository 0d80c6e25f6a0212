"""The three tiers behind one Protocol (`base.Tier`): L1 Redis (`hot`),
L2 usearch + Arrow (`warm`), L3 Parquet + DuckDB (`cold`)."""
