"""The embedding cache (EMBED_CACHE_URL) on a stack of its own: a broker Redis, a cache Redis with an LRU
policy, real workers and an API. Forwards are counted from /metrics (embedserve_batch_rows_sum)."""

from __future__ import annotations

import time

import numpy as np
import openai
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from safetensors.torch import load_file, save_file

from embedserve import defaults
from tests.fixtures.tiny_models import build_tiny_qwen3_embedding
from tests.integration.helpers import API_KEY, OTHER_KEY, embed, session_for, vectors
from tests.integration.jobs_helpers import result_json, submit, wait_finished
from tests.stack import RedisServer, Stack, wait_until

pytestmark = pytest.mark.slow  # a stack of its own: two Redis servers, workers, an API

KEYED = "cached-minilm"  # the default model, entries per API key
SHARED = "shared-minilm"  # the default model again, EMBED_CACHE_SCOPE=global
# Long enough for a worker's forward statistics to be flushed and the API's gauges to be read again.
SETTLE_S = defaults.BATCH_STATS_FLUSH_S + 2.0
TEXTS = ["The cache keeps vectors.", "A second sentence, longer than the first one was.", "third"]


def forwarded(api_url: str, model: str) -> float:
    """Rows `model`'s workers have forwarded, as /metrics says (embedserve_batch_rows_sum)."""
    text = requests.get(api_url + "/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "embedserve_batch_rows_sum" and sample.labels.get("model") == model:
                return sample.value
    return 0.0


def settled_forwards(api_url: str, model: str, at_least: float = 0.0) -> float:
    """The forwarded rows once they reach `at_least` and stop moving."""
    wait_until(lambda: forwarded(api_url, model) >= at_least, 30, f"{model}'s forwards to reach {at_least}")
    time.sleep(SETTLE_S)
    return forwarded(api_url, model)


def cache_metric(api_url: str, outcome: str, model: str) -> float:
    text = requests.get(api_url + "/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"embedserve_cache_{outcome}_total" and sample.labels.get("model") == model:
                return sample.value
    return 0.0


@pytest.fixture(scope="module")
def cache_redis():
    server = RedisServer.start("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cache_stack(cache_redis, tmp_path_factory):
    broker = RedisServer.start(private=True)
    stack = Stack(redis=broker, log_dir=tmp_path_factory.mktemp("cache-logs"),
                  base_env={"EMBED_CACHE_URL": cache_redis.url})
    try:
        stack.start_worker(KEYED, EMBED_MODEL_NAME=KEYED)
        stack.start_worker(SHARED, EMBED_MODEL_NAME=SHARED, EMBED_CACHE_SCOPE="global")
        _, url = stack.start_api(EMBED_API_KEYS=f"{API_KEY},{OTHER_KEY}")
        stack.url = url
        yield stack
    finally:
        stack.close()
        broker.stop()


@pytest.fixture
def first(cache_stack):
    with session_for(cache_stack.url, API_KEY) as session:
        yield session


@pytest.fixture
def second(cache_stack):
    with session_for(cache_stack.url, OTHER_KEY) as session:
        yield session


def test_a_repeated_request_is_served_without_a_forward(cache_stack, first):
    texts = [f"repeat {t}" for t in TEXTS]
    before = settled_forwards(cache_stack.url, KEYED)
    one = embed(first, model=KEYED, input=texts)
    assert one.status_code == 200, one.text
    assert one.json()["usage"]["cached_inputs"] == 0
    computed = settled_forwards(cache_stack.url, KEYED, before + len(texts))

    again = embed(first, model=KEYED, input=texts)
    assert again.status_code == 200, again.text
    assert again.json()["usage"] == {**one.json()["usage"], "cached_inputs": len(texts)}
    assert np.array_equal(vectors(again), vectors(one))
    # Other widths and types come from the same entries: dimensions and quantization follow the float vector.
    narrow = embed(first, model=KEYED, input=texts, dimensions=64, encoding_format="base64")
    assert narrow.json()["usage"]["cached_inputs"] == len(texts)
    assert np.allclose(vectors(narrow), vectors(one)[:, :64] / np.linalg.norm(vectors(one)[:, :64], axis=1,
                                                                                 keepdims=True), atol=1e-6)
    assert settled_forwards(cache_stack.url, KEYED) == computed  # nothing was forwarded for either
    assert cache_metric(cache_stack.url, "hits", KEYED) >= 2 * len(texts)

    # A request with a new text forwards only that one.
    mixed = embed(first, model=KEYED, input=[texts[0], "repeat something new"])
    assert mixed.json()["usage"]["cached_inputs"] == 1
    assert settled_forwards(cache_stack.url, KEYED, computed + 1) == computed + 1


def test_keys_share_entries_only_when_scoped_global(cache_stack, first, second):
    texts = [f"scoped {t}" for t in TEXTS]
    assert embed(first, model=KEYED, input=texts).json()["usage"]["cached_inputs"] == 0
    assert embed(first, model=KEYED, input=texts).json()["usage"]["cached_inputs"] == len(texts)
    computed = embed(second, model=KEYED, input=texts)
    assert computed.json()["usage"]["cached_inputs"] == 0  # not the first key's
    # With the batch-invariant forward (EMBED_DETERMINISTIC: auto is on on the CPU) a cached vector is the
    # recomputed one, to the bit.
    assert np.array_equal(vectors(computed), vectors(embed(first, model=KEYED, input=texts)))

    assert embed(first, model=SHARED, input=texts).json()["usage"]["cached_inputs"] == 0
    shared = embed(second, model=SHARED, input=texts)
    assert shared.json()["usage"]["cached_inputs"] == len(texts)  # EMBED_CACHE_SCOPE=global: the first key's
    assert np.array_equal(vectors(shared), vectors(embed(first, model=KEYED, input=texts)))


def test_a_full_cache_degrades_to_computing(cache_stack, cache_redis, first):
    texts = [f"full {t}" for t in TEXTS]
    reference = vectors(embed(first, model=KEYED, input=texts))
    client = cache_redis.client()
    errors = cache_metric(cache_stack.url, "errors", KEYED)
    client.flushall()
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1")  # every write now answers OOM
    try:
        # Long enough apart that the cache is tried again after each failure (defaults.CACHE_RETRY_AFTER_S).
        for _ in range(2):
            response = embed(first, model=KEYED, input=texts)
            assert response.status_code == 200, response.text
            assert response.json()["usage"]["cached_inputs"] == 0
            assert np.allclose(vectors(response), reference, atol=1e-5)
            time.sleep(defaults.CACHE_RETRY_AFTER_S + 0.5)
        wait_until(lambda: cache_metric(cache_stack.url, "errors", KEYED) >= errors + 2, 30, "cache errors counted")
    finally:
        client.config_set("maxmemory", str(64 * 1024 * 1024))
        client.config_set("maxmemory-policy", "allkeys-lru")


def test_a_cache_that_is_down_degrades_to_computing(cache_stack, cache_redis, first):
    texts = [f"down {t}" for t in TEXTS]
    reference = vectors(embed(first, model=KEYED, input=texts))
    cache_redis.process.kill()
    try:
        for _ in range(3):
            started = time.monotonic()
            response = embed(first, model=KEYED, input=texts + ["down and new"])
            assert response.status_code == 200, response.text
            assert response.json()["usage"]["cached_inputs"] == 0
            assert np.allclose(vectors(response)[:3], reference, atol=1e-5)
            assert time.monotonic() - started < 5
    finally:
        cache_redis._launch()  # same port, empty
    # Back: entries are stored and found again once the pause after the failure has passed.
    time.sleep(defaults.CACHE_RETRY_AFTER_S + 0.5)
    embed(first, model=KEYED, input=texts)
    assert embed(first, model=KEYED, input=texts).json()["usage"]["cached_inputs"] == len(texts)


def test_a_cache_redis_that_would_not_evict_is_refused_at_start(cache_stack):
    keeper = RedisServer.start(private=True)  # noeviction, as tests/stack.py starts every Redis
    try:
        for url, why in ((keeper.url, "maxmemory-policy 'noeviction'"), (cache_stack.redis.url, "EMBED_REDIS_URL")):
            worker = cache_stack.spawn("refused", "worker", EMBED_CACHE_URL=url)
            assert worker.popen.wait(60) == 2
            assert why in worker.log() and "EMBED_CACHE_URL" in worker.log(), worker.log()[-2000:]
        broker_db = cache_stack.redis.url.rsplit("/", 1)[0] + "/3"  # another database of the broker's Redis
        worker = cache_stack.spawn("refused", "worker", EMBED_CACHE_URL=broker_db)
        assert worker.popen.wait(60) == 2
        assert "broker's Redis" in worker.log(), worker.log()[-2000:]
    finally:
        keeper.stop()


def test_a_model_swapped_under_the_same_name_never_returns_the_old_vectors(cache_stack, first, tmp_path):
    name = "swapped-model"
    old_dir = build_tiny_qwen3_embedding(tmp_path / "old")
    new_dir = build_tiny_qwen3_embedding(tmp_path / "new")
    weights = load_file(new_dir / "model.safetensors")
    save_file({k: v + 0.05 * (v.std() if v.numel() > 1 else 1) for k, v in weights.items()},
              new_dir / "model.safetensors", metadata={"format": "pt"})  # same names, shapes, config: other weights
    texts = [f"swap {t}" for t in TEXTS]

    old = cache_stack.start_worker(name, EMBED_MODEL=str(old_dir), EMBED_MODEL_NAME=name)
    old_vectors = vectors(embed(first, model=name, input=texts))
    assert embed(first, model=name, input=texts).json()["usage"]["cached_inputs"] == len(texts)
    old.stop()

    cache_stack.start_worker(name, EMBED_MODEL=str(new_dir), EMBED_MODEL_NAME=name)
    swapped = embed(first, model=name, input=texts)
    assert swapped.status_code == 200, swapped.text
    assert swapped.json()["usage"]["cached_inputs"] == 0
    assert not np.allclose(vectors(swapped), old_vectors, atol=1e-3)
    assert np.array_equal(vectors(embed(first, model=name, input=texts)), vectors(swapped))


def test_jobs_use_the_cache_and_say_how_much(cache_stack, first):
    texts = [f"job {t} {n}" for n in range(20) for t in TEXTS]
    assert embed(first, model=KEYED, input=texts).json()["usage"]["cached_inputs"] == 0
    before = settled_forwards(cache_stack.url, KEYED, 0)
    job = submit(first, model=KEYED, input=texts + ["job and one new text"])
    done = wait_finished(first, job["id"])
    assert done["status"] == "completed" and done["cached_inputs"] == len(texts), done
    assert settled_forwards(cache_stack.url, KEYED, before + 1) == before + 1  # only the new text
    listed = result_json(first, job["id"])
    assert np.allclose(np.asarray([d["embedding"] for d in listed["data"][:-1]], dtype=np.float32),
                       vectors(embed(first, model=KEYED, input=texts)), atol=0)


def test_the_openai_client_reads_the_cached_count(cache_stack):
    texts = [f"client {t}" for t in TEXTS]
    with openai.OpenAI(base_url=cache_stack.url + "/v1", api_key=API_KEY, max_retries=0) as client:
        client.embeddings.create(model=KEYED, input=texts)
        again = client.embeddings.create(model=KEYED, input=texts)
    assert again.usage.cached_inputs == len(texts) and again.usage.prompt_tokens > 0
    assert len(again.data) == len(texts) and len(again.data[0].embedding) == 384
