"""Ids of jobs, files, batches and chunks: a prefix and 122 random bits, so ids cannot be guessed."""

from __future__ import annotations

import uuid


def new_id(prefix: str) -> str:
    """`prefix` + 32 hex digits of uuid4: 122 random bits."""
    return prefix + uuid.uuid4().hex
