"""A tiny random-weight Qwen3 through the stack equals the model card's reference code."""

from __future__ import annotations

import numpy as np
import pytest

from embedserve.defaults import DEFAULT_QUERY_INSTRUCTION
from tests.fixtures.tiny_models import reference_qwen3_embeddings
from tests.integration.helpers import QWEN, QWEN_ALIAS, cosines, embed, vectors

pytestmark = pytest.mark.slow  # needs the session stack: an API and two workers (tests/integration/conftest.py)

DOCS = ["Beijing is the capital of China.", "short", "a considerably longer document " * 12]
QUERIES = ["what is the capital of china?", "explain gravity"]


def test_documents_match_reference(http, qwen_dir):
    ours = vectors(embed(http, model=QWEN, input=DOCS))
    expected = reference_qwen3_embeddings(qwen_dir, DOCS)
    assert cosines(ours, expected).min() >= 0.9999


def test_queries_get_the_default_instruction(http, qwen_dir):
    ours = vectors(embed(http, model=QWEN, input=QUERIES, input_type="query"))
    expected = reference_qwen3_embeddings(qwen_dir, QUERIES, instruction=DEFAULT_QUERY_INSTRUCTION)
    assert cosines(ours, expected).min() >= 0.9999
    plain = reference_qwen3_embeddings(qwen_dir, QUERIES)
    assert cosines(ours, plain).max() < 0.999  # the instruction really changed the input


def test_custom_instruction_and_dimensions(http, qwen_dir):
    instruction = "Given a question, find the passage that answers it"
    ours = vectors(embed(http, model=QWEN, input=QUERIES, input_type="query", instruction=instruction,
                         dimensions=32))
    expected = reference_qwen3_embeddings(qwen_dir, QUERIES, instruction=instruction, dimensions=32)
    assert ours.shape == (2, 32)
    assert cosines(ours, expected).min() >= 0.9999


def test_eos_is_appended_exactly_once(http, qwen_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(qwen_dir)
    expected_tokens = len(tokenizer("short")["input_ids"])  # the tokenizer appends <|endoftext|>
    assert tokenizer("short")["input_ids"][-1] == tokenizer.eos_token_id
    response = embed(http, model=QWEN, input="short")
    assert response.json()["usage"]["prompt_tokens"] == expected_tokens


@pytest.mark.parametrize("name", [QWEN, QWEN_ALIAS])
def test_served_name_and_alias(http, name):
    response = embed(http, model=name, input="hello")
    assert response.status_code == 200
    assert response.json()["model"] == QWEN
    assert np.array(response.json()["data"][0]["embedding"]).shape == (64,)
