"""Helpers for scripts/bench.py: texts, load loops, the stack, the raw model and peers."""
