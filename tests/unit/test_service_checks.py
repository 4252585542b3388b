"""The worker's own checks of what the API checks against a model card it may not have yet (a declared model)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from embedserve.protocol import EmbedChunk
from worker.batcher import Batcher
from worker.embedding_service import EmbeddingService
from worker.engine import EmbeddingEngine, resolve_model_source
from worker.tasks import answer


@pytest.fixture(scope="module")
def service():
    engine = EmbeddingEngine(resolve_model_source(""), torch.device("cpu"), torch.float32)
    batcher = Batcher(engine.embed_batch, max_batch_tokens=1024, padded=engine.pads_batches)
    batcher.start()
    yield EmbeddingService(engine, batcher)
    batcher.stop()


def chunk(inputs, **options) -> EmbedChunk:
    return EmbedChunk(request_id="r", reply_to="nowhere", chunk=0, offset=0, inputs=inputs,
                      deadline=time.time() + 60, **options)


def test_dimensions_above_the_model_size_are_refused_like_the_api_does(service):
    refused = answer(service, chunk(["hello"], dimensions=385))  # all-MiniLM-L6-v2 has 384
    assert refused.status == 400
    assert refused.error["param"] == "dimensions" and refused.error["type"] == "invalid_request_error"
    assert refused.error["message"].startswith("'dimensions' must be between 1 and 384")
    cut = answer(service, chunk(["hello"], dimensions=384))
    assert cut.status == 200 and cut.dim == 384
    small = answer(service, chunk(["hello"], dimensions=16))
    vector = np.frombuffer(small.vectors, dtype="<f4")
    assert small.dim == 16 and abs(float(np.linalg.norm(vector)) - 1) < 1e-5


def test_token_ids_outside_the_vocabulary_are_refused_like_the_api_does(service):
    vocab = service.engine.vocab_size
    refused = answer(service, chunk([[101, vocab, 102]]))
    assert refused.status == 400 and refused.error["code"] == "invalid_token_id"
    assert refused.error["message"].startswith(
        f"input[0] has token id {vocab}, outside this model's vocabulary (0..{vocab - 1});")
    assert "check_embedding_ctx_length=False" in refused.error["message"]  # LangChain's fix, named
    too_long = answer(service, chunk([[101] * (service.engine.max_length + 1)]))
    assert too_long.status == 400 and too_long.error["code"] == "context_length_exceeded"
