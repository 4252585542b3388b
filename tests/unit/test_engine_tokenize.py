"""The engine's tokenizer under concurrent calls with and without truncation (the real model)."""

from __future__ import annotations

import threading

import pytest
import torch

from embedserve.errors import InvalidRequest
from worker.engine import EmbeddingEngine, resolve_model_source


@pytest.fixture(scope="module")
def engine():
    return EmbeddingEngine(resolve_model_source(""), torch.device("cpu"), torch.float32)


def test_concurrent_truncating_and_plain_calls_do_not_mix(engine):
    long_text = "token " * 400  # over the 256-token limit
    errors: list[str] = []

    def truncating():
        for _ in range(40):
            rows = engine.tokenize([long_text], offset=0, input_type="document", instruction=None, truncate=True).rows
            if len(rows[0]) != engine.max_length:
                errors.append(f"truncated to {len(rows[0])}")

    def plain():
        for _ in range(40):
            try:  # must see all 402 tokens and refuse; a leaked truncation would cut and accept it
                rows = engine.tokenize([long_text], offset=0, input_type="document", instruction=None,
                                       truncate=False).rows
                errors.append(f"plain call was truncated to {len(rows[0])}")
            except InvalidRequest:
                pass

    threads = [threading.Thread(target=f) for f in (truncating, plain) * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_the_default_model_runs_packed_on_cpu_and_matches_the_padded_forward(engine):
    assert not engine.pads_batches
    rows = engine.tokenize(["a short one", "a somewhat longer sentence about rivers and bridges " * 6, "mid length "
                            "text about the weather"], offset=0, input_type="document", instruction=None,
                           truncate=True).rows
    packed = engine.embed_batch(rows)
    encoder, engine.packed = engine.packed, None
    try:
        padded = engine.embed_batch(rows)
    finally:
        engine.packed = encoder
    assert (packed * padded).sum(axis=1).min() > 0.99999
