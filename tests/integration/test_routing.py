"""Model routing, the model list, health and readiness, and the 504 path."""

from __future__ import annotations

import pytest
import requests

from embedserve import redis_keys
from embedserve.fleet.catalogue import Catalogue, ModelCard
from tests.integration.helpers import API_KEY, MINILM, QWEN, QWEN_ALIAS, assert_openai_error, embed

pytestmark = pytest.mark.slow  # needs the session stack: an API and two workers (tests/integration/conftest.py)


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


def test_ready_counts_live_workers(api_url):
    response = requests.get(api_url + "/ready")
    assert response.status_code == 200
    assert response.json()["status"] == "ready" and response.json()["models"][MINILM] >= 1


def test_a_retired_model_stays_known_and_ready_stays_200(http, redis_server):
    """A model whose workers all died an hour ago, in a Redis shared with served models (issue 11).

    It stays in the catalogue (work for it waits for a worker: scale from zero); it never makes
    the API unready, and no sleep is needed: every read below sees it at once.
    """
    client = redis_server.client()
    name = "departed-model"
    seconds, _ = client.time()
    stale = seconds - 3600.0
    Catalogue(client).announce(ModelCard(name=name, dim=8, max_length=16), stale)
    client.zadd(redis_keys.worker_heartbeats(name), {"gone-worker": stale})
    try:
        ready = requests.get(http.base + "/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["models"][name] == 0 and ready.json()["models"][MINILM] >= 1
        listed = {m["id"]: m for m in http.get(http.base + "/v1/models").json()["data"]}
        assert listed[name]["workers"] == 0 and listed[name]["dimensions"] == 8
        assert listed[MINILM]["workers"] >= 1
        one = http.get(http.base + f"/v1/models/{name}")
        assert one.status_code == 200 and one.json()["workers"] == 0
    finally:
        Catalogue(client).remove(name)
        client.delete(redis_keys.worker_heartbeats(name))


@pytest.fixture
def impatient_api(stack, workers):
    """An API of its own with a 50 ms sync timeout, stopped (with its gunicorn workers) after the test."""
    api, url = stack.start_api(EMBED_API_KEYS=API_KEY, EMBED_SYNC_TIMEOUT="0.05")
    yield url
    api.stop()
    assert not api.alive()


def test_sync_timeout_is_504(impatient_api):
    texts = [f"a long sentence to keep the worker busy for a while {i} " * 20 for i in range(512)]
    response = requests.post(impatient_api + "/v1/embeddings", json={"model": MINILM, "input": texts},
                             headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
    assert_openai_error(response, 504, code="timeout")


def test_stopped_worker_withdraws_and_its_model_stays_listed(stack, qwen_dir, http):
    """A real worker for a second name: serves, then SIGTERM withdraws it from routing at once; the model stays."""
    name = "short-lived-qwen"
    worker = stack.start_worker(name, EMBED_MODEL=str(qwen_dir), EMBED_MODEL_NAME=name)
    try:
        assert embed(http, model=name, input="hello").status_code == 200  # no wait for the API's cache
        worker.stop()
        assert worker.popen.returncode == 0, worker.log()[-2000:]
        listed = {m["id"]: m for m in http.get(http.base + "/v1/models").json()["data"]}
        assert listed[name]["workers"] == 0 and listed[name]["dimensions"] == 64
        ready = requests.get(http.base + "/ready")
        assert ready.status_code == 200 and ready.json()["models"][name] == 0
    finally:  # forget the model, as an operator would (`embedserve models remove`)
        worker.stop()
        Catalogue(stack.redis.client()).remove(name)
