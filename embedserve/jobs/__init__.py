"""Bulk jobs: their records, Lua transitions, data, scheduling, results, sweeping and store."""
