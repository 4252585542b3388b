"""Per-key rate limits and queue backpressure, on the real stack."""

from __future__ import annotations

import threading

import pytest
import requests

from tests.integration.helpers import MINILM, OTHER_KEY, create_key
from tests.stack import wait_until

pytestmark = pytest.mark.slow  # needs the session stack: an API and two workers (tests/integration/conftest.py)


def post(api_url: str, key: str, text, model: str = MINILM) -> requests.Response:
    return requests.post(api_url + "/v1/embeddings", json={"model": model, "input": text},
                         headers={"Authorization": f"Bearer {key}"}, timeout=120)


def test_requests_per_minute_limit_answers_429_while_another_key_is_served(stack, api_url):
    key = create_key(stack, "rpm-limited", "--rpm", "2")
    first = post(api_url, key, "one")
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    assert post(api_url, key, "two").status_code == 200
    refused = post(api_url, key, "three")
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limit_exceeded"
    assert "2 requests per minute" in refused.json()["error"]["message"]
    # One request refills every 30 s; a little was refilled while the two requests ran.
    assert 1 <= int(refused.headers["Retry-After"]) <= 30
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    # Another key is not slowed: the static key (no limits) is served at once, with no limit headers.
    other = post(api_url, OTHER_KEY, "three")
    assert other.status_code == 200
    assert "x-ratelimit-limit-requests" not in other.headers


def test_tokens_per_minute_limit_charges_an_estimate_and_settles_the_real_usage(stack, api_url):
    key = create_key(stack, "tpm-limited", "--tpm", "60")
    text = "word " * 48  # 240 characters: an estimate of 60 tokens, ~50 real ones
    first = post(api_url, key, text)
    assert first.status_code == 200
    used = first.json()["usage"]["prompt_tokens"]
    assert used < 60
    assert int(first.headers["x-ratelimit-remaining-tokens"]) >= 60 - used  # settled: the overcharge came back
    refused = post(api_url, key, text)
    assert refused.status_code == 429
    assert "60 tokens per minute" in refused.json()["error"]["message"]
    assert int(refused.headers["Retry-After"]) >= 30
    assert refused.headers["x-ratelimit-limit-tokens"] == "60"
    small = post(api_url, key, "hi")  # a request the bucket still covers goes through
    assert small.status_code == 200


UNSERVED = "queue-limit-unserved"  # declared, served by no worker: nothing consumes its sync queue


@pytest.fixture
def slow_api(stack):
    """An API with EMBED_MAX_QUEUE=1 on the shared stack; its key may send 5 requests a minute.

    Its requests go to a declared model that no worker serves, so the queue's depth depends only on
    what the test sends (a stopped worker's pending BRPOP could still take a message, and did).
    """
    process, url = stack.start_api(EMBED_API_KEYS=OTHER_KEY, EMBED_MODELS=UNSERVED, EMBED_MAX_QUEUE="1",
                                   EMBED_SYNC_TIMEOUT="2", EMBED_COLD_START_TIMEOUT="3",
                                   EMBED_STATIC_KEY_RPM="5")
    yield url
    process.stop()


def test_a_deep_queue_answers_503_at_once(stack, slow_api):
    client = stack.redis.client()
    outcomes: list[requests.Response] = []
    threads = [threading.Thread(target=lambda: outcomes.append(post(slow_api, OTHER_KEY, "x", UNSERVED)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    wait_until(lambda: client.llen(f"embed.{UNSERVED}") >= 2, 10, "two chunks to wait in the queue")
    refused = post(slow_api, OTHER_KEY, "x", UNSERVED)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "queue_full"
    assert refused.headers["Retry-After"] == "2"
    # Two requests taken of five; the refused one was given back (it would read 2 otherwise).
    assert refused.headers["x-ratelimit-remaining-requests"] == "3"
    for thread in threads:  # the queued two end with 503 no_worker after the cold-start wait
        thread.join(30)
    assert [r.json()["error"]["code"] for r in outcomes] == ["no_worker", "no_worker"]
    client.delete(f"embed.{UNSERVED}")  # their expired messages wait for a worker that would skip them


def test_static_keys_get_the_static_limits(stack, workers):
    key = "static-limited-key-01"
    process, url = stack.start_api(EMBED_API_KEYS=key, EMBED_STATIC_KEY_RPM="1")
    try:
        first = post(url, key, "static one")
        assert first.status_code == 200 and first.headers["x-ratelimit-limit-requests"] == "1"
        second = post(url, key, "static two")
        assert second.status_code == 429 and int(second.headers["Retry-After"]) >= 1
    finally:
        process.stop()
