"""Model routing, the model list, health and readiness, and the 503/504 paths."""

from __future__ import annotations

import time

import requests

from embedserve import keys
from embedserve.registry import ModelCard
from tests.integration.conftest import API_KEY, MINILM, QWEN, QWEN_ALIAS, embed
from tests.integration.test_errors import assert_openai_error


def test_models_lists_live_models(http):
    body = http.get(http.base + "/v1/models").json()
    assert body["object"] == "list"
    by_id = {m["id"]: m for m in body["data"]}
    assert {MINILM, QWEN} <= set(by_id)
    assert by_id[MINILM]["dimensions"] == 384 and by_id[QWEN]["dimensions"] == 64
    assert QWEN_ALIAS in by_id[QWEN]["aliases"]
    assert all(m["object"] == "model" and m["owned_by"] for m in body["data"])


def test_model_retrieve_by_alias(http):
    assert http.get(http.base + f"/v1/models/{QWEN_ALIAS}").json()["id"] == QWEN
    assert_openai_error(http.get(http.base + "/v1/models/nope"), 404)


def test_health_needs_no_auth(api_url):
    assert requests.get(api_url + "/health").json() == {"status": "ok"}


def test_ready_when_every_model_has_a_worker(api_url):
    response = requests.get(api_url + "/ready")
    assert response.status_code == 200
    assert response.json()["models"][MINILM] >= 1


def test_known_model_without_live_worker_is_503(http, redis_server):
    """A model whose last heartbeat is older than the TTL: what Redis holds after its worker died."""
    client = redis_server.client()
    name = "departed-model"
    stale = time.time() - 60
    client.hset(keys.known_models(), name, ModelCard(name=name, dim=8, max_length=16, last_seen=stale).to_json())
    client.zadd(keys.worker_heartbeats(name), {"gone-worker": stale})
    try:
        time.sleep(1.1)  # the API caches the registry for a second
        response = embed(http, model=name, input="hi")
        assert_openai_error(response, 503, code="no_worker")
        assert int(response.headers["Retry-After"]) >= 1
        ready = requests.get(http.base + "/ready")
        assert ready.status_code == 503 and ready.json()["models"][name] == 0
        assert name not in [m["id"] for m in http.get(http.base + "/v1/models").json()["data"]]
    finally:
        client.hdel(keys.known_models(), name)
        client.delete(keys.worker_heartbeats(name))


def test_sync_timeout_is_504(stack, workers):
    _, url = stack.start_api(EMBED_API_KEYS=API_KEY, EMBED_SYNC_TIMEOUT="0.05")
    texts = [f"a long sentence to keep the worker busy for a while {i} " * 20 for i in range(512)]
    response = requests.post(url + "/v1/embeddings", json={"model": MINILM, "input": texts},
                             headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
    assert_openai_error(response, 504, code="timeout")


def test_stopped_worker_withdraws_and_its_model_answers_503(stack, qwen_dir, http):
    """A real worker for a second name: serves, then SIGTERM withdraws it from the registry at once."""
    name = "short-lived-qwen"
    worker = stack.start_worker(name, EMBED_MODEL=str(qwen_dir), EMBED_MODEL_NAME=name)
    time.sleep(1.1)  # registry cache
    assert embed(http, model=name, input="hello").status_code == 200
    worker.stop()
    assert worker.popen.returncode == 0, worker.log()[-2000:]
    time.sleep(1.1)
    try:
        assert_openai_error(embed(http, model=name, input="hello"), 503, code="no_worker")
    finally:  # forget the model so /ready is not held at 503 for later tests
        client = stack.redis.client()
        client.hdel(keys.known_models(), name)
        client.delete(keys.worker_heartbeats(name))
