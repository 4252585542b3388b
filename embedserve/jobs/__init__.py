"""Bulk jobs: their records, Lua transitions, chunks, data, scheduling, compaction, results, sweeping and store."""
