"""The real stack for integration tests: a private Redis, real worker processes, a real API.

Session-scoped: loading a model takes seconds, so every test shares one MiniLM worker, one tiny
Qwen3 worker and one API server. Tests that kill or reconfigure things start their own.
"""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from embedserve import redis_keys
from tests.fixtures.tiny_models import build_tiny_cross_encoder, build_tiny_qwen3_embedding, build_tiny_qwen3_reranker
from tests.integration.helpers import (
    API_KEY,
    CROSS_ENCODER,
    MINILM,
    OTHER_KEY,
    QWEN,
    QWEN_ALIAS,
    QWEN_RERANKER,
    QWEN_RERANKER_ALIAS,
    session_for,
)
from tests.stack import RedisServer, Stack


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def qwen_dir(tmp_path_factory) -> Path:
    return build_tiny_qwen3_embedding(tmp_path_factory.mktemp("tiny-qwen3"))


@pytest.fixture(scope="session")
def stack(redis_server, tmp_path_factory):
    stack = Stack(redis=redis_server, log_dir=tmp_path_factory.mktemp("logs"))
    yield stack
    stack.close()


@pytest.fixture(scope="session")
def workers(stack, qwen_dir):
    """One worker for the default model and one for the tiny Qwen3 (aliased as the seed's model)."""
    minilm = stack.start_worker(MINILM)
    qwen = stack.start_worker(QWEN, EMBED_MODEL=str(qwen_dir), EMBED_MODEL_NAME=QWEN,
                              EMBED_MODEL_ALIASES=QWEN_ALIAS)
    return {MINILM: minilm, QWEN: qwen}


@pytest.fixture(scope="session")
def api_url(stack, workers) -> str:
    _, url = stack.start_api(EMBED_API_KEYS=f"{API_KEY},{OTHER_KEY}")
    return url


@pytest.fixture
def http(api_url):
    """A requests session that sends the test API key, with the base URL on `.base`."""
    with session_for(api_url, API_KEY) as session:
        yield session


@pytest.fixture
def other_http(api_url):
    """Like `http`, with the second API key: another owner."""
    with session_for(api_url, OTHER_KEY) as session:
        yield session


@pytest.fixture
def client(api_url):
    """The official OpenAI client on the session API (test_openai_client has its own)."""
    with openai.OpenAI(base_url=api_url + "/v1", api_key=API_KEY, max_retries=0) as client:
        yield client


@pytest.fixture(scope="module")
def rerankers(stack, tmp_path_factory):
    """One rerank worker per tiny reranker, started for this module only; yields {name: model dir}."""
    qwen_dir = build_tiny_qwen3_reranker(tmp_path_factory.mktemp("tiny-qwen3-reranker"))
    ce_dir = build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-cross-encoder"))
    started = [
        stack.start_worker(QWEN_RERANKER, EMBED_WORKER_ROLE="rerank", EMBED_RERANK_MODEL=str(qwen_dir),
                           EMBED_RERANK_MODEL_NAME=QWEN_RERANKER, EMBED_RERANK_MODEL_ALIASES=QWEN_RERANKER_ALIAS),
        stack.start_worker(CROSS_ENCODER, EMBED_WORKER_ROLE="rerank", EMBED_RERANK_MODEL=str(ce_dir),
                           EMBED_RERANK_MODEL_NAME=CROSS_ENCODER),
    ]
    yield {QWEN_RERANKER: qwen_dir, CROSS_ENCODER: ce_dir}
    for process in started:
        process.stop()
    # Forget the stopped rerankers, or /ready would report them down for the rest of the session.
    client = stack.redis.client()
    client.hdel(redis_keys.known_models(), QWEN_RERANKER, CROSS_ENCODER)
    client.delete(redis_keys.worker_heartbeats(QWEN_RERANKER), redis_keys.worker_heartbeats(CROSS_ENCODER))
