"""The batch-invariant forward (EMBED_DETERMINISTIC): a row's numbers never depend on what shares its pass."""
