"""/metrics, request ids and structured logs, on the real stack."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from embedserve import redis_keys
from tests.integration.helpers import API_KEY, MINILM, QWEN, assert_openai_error, embed
from tests.stack import RedisServer, Stack, private_stack, wait_until

pytestmark = pytest.mark.slow  # the session stack (tests/integration/conftest.py) and stacks of its own

# The Redis-derived gauges are cached for about a second per API process (api/observability.py):
# a test that waits for one to change polls for longer than that.
GAUGE_WAIT_S = 10


def scrape(api_url: str, token: str | None = None) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, by (name, sorted labels)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.get(api_url + "/metrics", headers=headers, timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_change_after_traffic(http, api_url):
    before = scrape(api_url)
    assert embed(http, model=MINILM, input=["metrics one", "metrics two", "metrics three"]).status_code == 200
    assert embed(http, model=MINILM, input=[]).status_code == 400
    after = scrape(api_url)
    ok = dict(route="/v1/embeddings", method="POST", status="200")
    bad = dict(route="/v1/embeddings", method="POST", status="400")
    assert value(after, "embedserve_http_requests_total", **ok) == value(before, "embedserve_http_requests_total", **ok) + 1
    assert value(after, "embedserve_http_requests_total", **bad) == value(before, "embedserve_http_requests_total", **bad) + 1
    count = dict(route="/v1/embeddings", method="POST")
    assert value(after, "embedserve_http_request_duration_seconds_count", **count) == \
        value(before, "embedserve_http_request_duration_seconds_count", **count) + 2
    assert value(after, "embedserve_live_workers", model=MINILM) >= 1
    assert value(after, "embedserve_live_workers", model=QWEN) >= 1
    assert ("embedserve_queue_depth", (("model", MINILM), ("queue", "interactive"), ("redis_list", f"embed.{MINILM}"))) in after
    assert ("embedserve_bulk_chunks", (("model", MINILM), ("state", "waiting"))) in after
    assert ("embedserve_bulk_chunks", (("model", MINILM), ("state", "running"))) in after

    # Workers push forward-pass statistics every couple of seconds: the batch above shows up.
    def batches_grew():
        now = scrape(api_url)
        grew = value(now, "embedserve_batch_rows_count", model=MINILM) > value(before, "embedserve_batch_rows_count", model=MINILM)
        return now if grew else None

    now = wait_until(batches_grew, 15, "the worker's batch statistics to reach /metrics", interval=0.5)
    assert value(now, "embedserve_batch_rows_sum", model=MINILM) >= value(before, "embedserve_batch_rows_sum", model=MINILM) + 3
    assert value(now, "embedserve_batch_padded_tokens_sum", model=MINILM) > value(before, "embedserve_batch_padded_tokens_sum", model=MINILM)
    sync_seconds = dict(model=MINILM, priority="interactive")
    assert value(now, "embedserve_forward_seconds_total", **sync_seconds) > \
        value(before, "embedserve_forward_seconds_total", **sync_seconds)


def test_a_sync_request_is_accounted_stage_by_stage(http, api_url):
    from api.stage_account import STAGES

    before = scrape(api_url)
    started = time.perf_counter()
    assert embed(http, model=MINILM, input=["stage account"]).status_code == 200
    elapsed = time.perf_counter() - started
    after = scrape(api_url)
    name = "embedserve_sync_stage_seconds"
    for stage in STAGES:  # every stage, once for the one request
        assert value(after, f"{name}_count", stage=stage) == value(before, f"{name}_count", stage=stage) + 1, stage
    spent = {stage: value(after, f"{name}_sum", stage=stage) - value(before, f"{name}_sum", stage=stage)
             for stage in STAGES}
    assert spent["forward"] > 0
    assert sum(spent.values()) <= elapsed  # the stages add up to the request's time on the server, no more


def test_forward_seconds_count_a_jobs_passes_as_bulk(http, api_url):
    from tests.integration.jobs_helpers import submit, wait_finished

    bulk = dict(model=MINILM, priority="bulk")
    before = value(scrape(api_url), "embedserve_forward_seconds_total", **bulk)
    wait_finished(http, submit(http, model=MINILM, input=[f"bulk seconds {i}" for i in range(40)])["id"])
    wait_until(lambda: value(scrape(api_url), "embedserve_forward_seconds_total", **bulk) > before, 15,
               "the job's forward seconds in /metrics", interval=0.5)


def test_a_jobs_chunks_are_accounted_stage_by_stage(http, api_url):
    from tests.integration.jobs_helpers import submit, wait_finished

    stages = ("claim", "read", "tokenize", "forward", "write", "finish", "compact")
    before = scrape(api_url)
    counts = {stage: value(before, "embedserve_bulk_stage_seconds_count", model=MINILM, stage=stage)
              for stage in stages}
    items = value(before, "embedserve_bulk_inputs_total", model=MINILM)
    wait_finished(http, submit(http, model=MINILM, input=[f"stage account {i}" for i in range(40)])["id"])

    def accounted() -> bool:
        now = scrape(api_url)
        return value(now, "embedserve_bulk_inputs_total", model=MINILM) >= items + 40 and all(
            value(now, "embedserve_bulk_stage_seconds_count", model=MINILM, stage=stage) > counts[stage]
            for stage in stages)

    wait_until(accounted, 15, "every stage of the job's chunks in /metrics", interval=0.5)


def test_each_served_model_had_a_bulk_rate_before_its_first_job(stack, workers):
    # The session's workers started on an empty Redis, so each measured its model's rate on a probe pass
    # (worker/rate_probe.py): a fleet's first big job is then cut by it, not into JOB_CHUNK_INPUTS-input chunks.
    client = stack.redis.client()
    for model in (MINILM, QWEN):
        assert float(client.get(redis_keys.bulk_rate_probe(model)) or 0) > 0, model
        assert "a probe pass of 128 texts" in workers[model].log(), model


def test_unknown_paths_share_one_route_label(api_url):
    requests.get(api_url + "/no/such/path/42", timeout=30)
    samples = scrape(api_url)
    assert value(samples, "embedserve_http_requests_total", route="unmatched", method="GET", status="404") >= 1
    assert not any("/no/such/path/42" in str(labels) for _, labels in samples)


def test_request_id_is_echoed_and_reaches_the_worker_log(http, workers):
    response = http.post(http.base + "/v1/embeddings", json={"model": MINILM, "input": "trace me"},
                         headers={"x-request-id": "client-req-7f3a"}, timeout=60)
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "client-req-7f3a"
    wait_until(lambda: "[client-req-7f3a]" in workers[MINILM].log(), 10, "the request id in the worker log")


def test_a_request_id_is_made_when_none_or_a_bad_one_is_sent(http):
    plain = http.get(http.base + "/v1/models", timeout=30)
    assert len(plain.headers["x-request-id"]) == 32
    bad = http.get(http.base + "/v1/models", headers={"x-request-id": "has spaces\tand tabs"}, timeout=30)
    assert bad.headers["x-request-id"] != "has spaces\tand tabs" and len(bad.headers["x-request-id"]) == 32
    unauthorized = requests.get(http.base + "/v1/models", timeout=30)
    assert unauthorized.status_code == 401 and unauthorized.headers["x-request-id"]


def test_json_logs_carry_the_request_id_on_both_sides(tmp_path, qwen_dir):
    server = RedisServer.start("--save", "")  # private: this worker's model must not linger in the shared registry
    stack = Stack(redis=server, log_dir=tmp_path, base_env={"EMBED_LOG_JSON": "1"})
    try:
        worker = stack.start_worker("json-qwen", EMBED_MODEL=str(qwen_dir), EMBED_MODEL_NAME="json-qwen")
        api, url = stack.start_api(EMBED_API_KEYS=API_KEY)
        response = requests.post(url + "/v1/embeddings", json={"model": "json-qwen", "input": "hello"},
                                 headers={"Authorization": f"Bearer {API_KEY}", "x-request-id": "json-req-1"}, timeout=60)
        assert response.status_code == 200

        def lines_with_id(process):
            entries = [json.loads(line) for line in process.log().splitlines() if line.startswith("{")]
            return [e for e in entries if e.get("request_id") == "json-req-1"]

        worker_lines = wait_until(lambda: lines_with_id(worker), 10, "a JSON worker log line with the request id")
        assert {"ts", "level", "logger", "message"} <= worker_lines[0].keys()
        api_lines = wait_until(lambda: lines_with_id(api), 10, "a JSON API log line with the request id")
        assert "/v1/embeddings" in api_lines[0]["message"]
    finally:
        stack.close()
        server.stop()


def test_jobs_by_status_gauge_follows_a_job(http, api_url):
    from tests.integration.jobs_helpers import submit, wait_finished

    before = value(scrape(api_url), "embedserve_jobs", status="completed")
    job = submit(http, model=MINILM, input=["gauge one", "gauge two"])
    wait_finished(http, job["id"])
    # At least: a job left over by an earlier test may finish in the same window.
    finished = wait_until(lambda: (n := value(scrape(api_url), "embedserve_jobs", status="completed")) >= before + 1
                          and n, GAUGE_WAIT_S, "the completed job in the gauge", interval=0.3)
    assert http.delete(f"{http.base}/v1/jobs/{job['id']}", timeout=30).status_code == 200
    wait_until(lambda: value(scrape(api_url), "embedserve_jobs", status="completed") == finished - 1,
               GAUGE_WAIT_S, "the deleted job to leave the gauge", interval=0.3)


def test_jobs_gauge_counts_a_cancelled_job(http, api_url):
    from tests.integration.jobs_helpers import submit, wait_finished

    before = scrape(api_url)
    job = submit(http, model=MINILM, input=[f"gauge cancel {i}" for i in range(2000)])
    assert http.post(f"{http.base}/v1/jobs/{job['id']}/cancel", timeout=30).status_code == 200
    assert wait_finished(http, job["id"])["status"] == "cancelled"
    after = wait_until(lambda: (now := scrape(api_url)) and value(now, "embedserve_jobs", status="cancelled") >
                       value(before, "embedserve_jobs", status="cancelled") and now,
                       GAUGE_WAIT_S, "the cancelled job in the gauge", interval=0.3)
    assert value(after, "embedserve_jobs", status="cancelled") == value(before, "embedserve_jobs", status="cancelled") + 1
    assert value(after, "embedserve_jobs", status="cancelling") == value(before, "embedserve_jobs", status="cancelling")


METRICS_TOKEN = "metrics-scrape-token-5c1e"
DECLARED = ("declared-model-a", "declared-model-b")


@pytest.fixture(scope="module")
def guarded_api(tmp_path_factory):
    """An API on a Redis of its own (so every command on it is the API's), with EMBED_METRICS_TOKEN set.

    No worker: the declared models are listed with 0 workers, and each still costs its Redis reads per scrape.
    """
    with private_stack(tmp_path_factory.mktemp("metrics-token")) as stack:
        _, url = stack.start_api(EMBED_API_KEYS=API_KEY, EMBED_METRICS_TOKEN=METRICS_TOKEN,
                                 EMBED_MODELS=",".join(DECLARED))
        yield stack, url


@pytest.mark.parametrize("authorization", [
    None, "Bearer wrong-token", f"Bearer {METRICS_TOKEN}x", f"Bearer {METRICS_TOKEN[:-1]}", METRICS_TOKEN,
    f"Basic {METRICS_TOKEN}", f"Bearer {API_KEY}", "Bearer caf\u00e9",
])
def test_metrics_token_refuses_scrapes_without_it(guarded_api, authorization):
    _, url = guarded_api
    headers = {} if authorization is None else {"Authorization": authorization.encode("utf-8")}
    response = requests.get(url + "/metrics", headers=headers, timeout=30)
    error = assert_openai_error(response, 401, "invalid_metrics_token")
    assert "EMBED_METRICS_TOKEN" in error["message"] and METRICS_TOKEN not in response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "embedserve_" not in response.text


def test_metrics_token_admits_the_scrape_that_sends_it(guarded_api):
    _, url = guarded_api
    for scheme in ("Bearer", "bearer"):  # the scheme is case-insensitive (RFC 7235)
        response = requests.get(url + "/metrics", headers={"Authorization": f"{scheme} {METRICS_TOKEN}"}, timeout=30)
        assert response.status_code == 200, response.text[:300]
    samples = scrape(url, METRICS_TOKEN)
    assert all(value(samples, "embedserve_live_workers", model=name) == 0 for name in DECLARED)
    assert ("embedserve_live_workers", (("model", DECLARED[0]),)) in samples


class CommandLog:
    """Every command the Redis server runs from opening to `close()`: MONITOR on a socket of its own
    (the server buffers the lines until they are read)."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self._sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
        self._sock.sendall(b"MONITOR\r\n")
        received = b""
        while not received.startswith(b"+OK\r\n"):  # monitoring from here on
            chunk = self._sock.recv(4096)
            assert chunk, "Redis closed the MONITOR connection"
            received += chunk
        self._data = received[len(b"+OK\r\n"):]

    def close(self) -> list[str]:
        self._sock.settimeout(0.5)  # the last scrape's commands may still be on their way
        try:
            while chunk := self._sock.recv(65536):
                self._data += chunk
        except TimeoutError:
            pass
        finally:
            self._sock.close()
        return self._data.decode(errors="replace").splitlines()


def test_scrapes_within_a_second_share_one_set_of_redis_reads(guarded_api):
    """Each model's batch-statistics hash is read by /metrics alone: count its reads over several scrapes."""
    stack, url = guarded_api
    batch_keys = [redis_keys.batch_stats(name) for name in DECLARED]

    def reads(commands):
        return sum(1 for command in commands for key in batch_keys if key in command)

    time.sleep(1.2)  # out of any window an earlier scrape opened
    log = CommandLog(stack.redis.url)
    started = time.monotonic()
    for _ in range(5):
        scrape(url, METRICS_TOKEN)
    quick = time.monotonic() - started
    commands = log.close()
    if quick < 0.9:  # all five inside one window (a very slow machine may need two)
        assert reads(commands) == len(DECLARED), commands
    else:
        assert reads(commands) <= 2 * len(DECLARED), commands

    # A second later the gauges are read afresh: the cache bounds the cost, not the freshness.
    time.sleep(1.2)
    log = CommandLog(stack.redis.url)
    scrape(url, METRICS_TOKEN)
    assert reads(log.close()) == len(DECLARED)
