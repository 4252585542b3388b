"""The tiny Qwen3 worker runs the packed decoder forward (EMBED_PACKED=auto on CPU) and still equals the model card."""

from __future__ import annotations

import pytest

from embedserve.defaults import DEFAULT_QUERY_INSTRUCTION
from tests.fixtures.tiny_models import reference_qwen3_embeddings
from tests.integration.helpers import QWEN, cosines, embed, vectors

pytestmark = pytest.mark.slow  # needs the session stack: an API and two workers (tests/integration/conftest.py)

# One request, rows from 2 to ~450 tokens: several length groups in one packed pass.
MIXED = ["hi", "Beijing is the capital of China.", "a considerably longer document " * 12,
         "the river map " * 100, "short one", "the weather report " * 40]


def test_qwen3_worker_reports_the_packed_forward(workers):
    log = workers[QWEN].log()
    # The batch-invariant forward (EMBED_DETERMINISTIC, on by default on the CPU) packs with sdpa_groups too.
    assert "batch-invariant packed decoder forward (sdpa_groups, exact-length groups)" in log
    assert "packed forward in" in log and "padded forward in" not in log


def test_packed_worker_equals_the_model_card_on_mixed_lengths(http, qwen_dir):
    ours = vectors(embed(http, model=QWEN, input=MIXED))
    assert cosines(ours, reference_qwen3_embeddings(qwen_dir, MIXED)).min() >= 0.9999
    queries = vectors(embed(http, model=QWEN, input=MIXED, input_type="query", dimensions=24))
    expected = reference_qwen3_embeddings(qwen_dir, MIXED, instruction=DEFAULT_QUERY_INSTRUCTION, dimensions=24)
    assert queries.shape == (len(MIXED), 24) and cosines(queries, expected).min() >= 0.9999
