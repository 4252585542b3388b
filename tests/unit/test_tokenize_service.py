"""The worker's /tokenize and /detokenize on the real default model: whole prompts, and its own vocabulary check."""

from __future__ import annotations

import time

import pytest
import torch

from embedserve.protocol import TokenizeChunk
from worker.engine import EmbeddingEngine, resolve_model_source
from worker.tasks import answer
from worker.tokenize_service import TokenizeService


@pytest.fixture(scope="module")
def engine():
    return EmbeddingEngine(resolve_model_source(""), torch.device("cpu"), torch.float32)


def chunk(**fields) -> TokenizeChunk:
    return TokenizeChunk(request_id="r", reply_to="reply", chunk=0, deadline=time.time() + 60, **fields)


def test_a_prompt_is_never_truncated_by_the_models_own_truncating_calls(engine):
    long_text = "token " * 400  # over the model's 256
    engine.tokenize([long_text], offset=0, input_type="document", instruction=None, truncate=True)  # sets truncation
    answer = TokenizeService(engine).run(chunk(prompt=long_text)).answer
    assert answer["count"] == 402 and answer["max_model_len"] == 256


def test_ids_outside_the_vocabulary_are_refused_by_the_worker(engine):
    """A model only declared has no vocabulary on its card: the API cannot check, the worker does."""
    result = answer(TokenizeService(engine), chunk(tokens=[101, engine.vocab_size]))
    assert result.status == 400 and result.answer is None
    assert result.error["param"] == "tokens" and result.error["code"] == "invalid_token_id"
    assert f"tokens[1] is {engine.vocab_size}" in result.error["message"]


def test_detokenize(engine):
    answer = TokenizeService(engine).run(chunk(tokens=[101, 7592, 2088, 102])).answer
    assert answer == {"prompt": "[CLS] hello world [SEP]"}
