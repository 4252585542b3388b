"""A padded forward made batch-invariant: rows of one length at a time, so no row is ever padded.

Padding changes a row's numbers even where it is masked: attention reduces over the padded
length, and the kernels split that reduction by it. The packed forwards avoid padding with
exact-length attention groups; a model that cannot be packed (a cross-encoder reranker, an
architecture outside the packed families) gets the same guarantee from this: one padded call per
distinct length, each with nothing to pad, under RowInvariantProducts (worker/invariant/products.py):
the model's own modules then take no small matrix product either. It costs one call per length.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from worker.invariant.products import RowInvariantProducts


def by_length(rows: list[list[int]], forward: Callable[[list[list[int]]], np.ndarray]) -> np.ndarray:
    """`forward` run once per distinct row length, under RowInvariantProducts; its per-row results back in
    `rows`' order."""
    with RowInvariantProducts():
        return _by_length(rows, forward)


def _by_length(rows: list[list[int]], forward: Callable[[list[list[int]]], np.ndarray]) -> np.ndarray:
    groups: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(len(row), []).append(i)
    if len(groups) == 1:
        return forward(rows)
    out = None
    for indices in groups.values():
        part = forward([rows[i] for i in indices])
        if out is None:
            out = np.empty((len(rows), *part.shape[1:]), dtype=part.dtype)
        out[indices] = part
    return out
