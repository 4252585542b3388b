"""/metrics, request ids and structured logs, on the real stack."""

from __future__ import annotations

import json

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import API_KEY, MINILM, QWEN, embed
from tests.stack import RedisServer, Stack, wait_until


def scrape(api_url: str) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, by (name, sorted labels)."""
    response = requests.get(api_url + "/metrics", timeout=30)
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

    before = scrape(api_url)
    job = submit(http, model=MINILM, input=["gauge one", "gauge two"])
    wait_finished(http, job["id"])
    finished = scrape(api_url)
    # At least: a job left over by an earlier test may finish in the same window.
    assert value(finished, "embedserve_jobs", status="completed") >= value(before, "embedserve_jobs", status="completed") + 1
    assert http.delete(f"{http.base}/v1/jobs/{job['id']}", timeout=30).status_code == 200
    deleted = scrape(api_url)
    assert value(deleted, "embedserve_jobs", status="completed") == value(finished, "embedserve_jobs", status="completed") - 1


def test_jobs_gauge_counts_a_cancelled_job(http, api_url):
    from tests.integration.jobs_helpers import submit, wait_finished

    before = scrape(api_url)
    job = submit(http, model=MINILM, input=[f"gauge cancel {i}" for i in range(2000)])
    assert http.post(f"{http.base}/v1/jobs/{job['id']}/cancel", timeout=30).status_code == 200
    assert wait_finished(http, job["id"])["status"] == "cancelled"
    after = scrape(api_url)
    assert value(after, "embedserve_jobs", status="cancelled") == value(before, "embedserve_jobs", status="cancelled") + 1
    assert value(after, "embedserve_jobs", status="cancelling") == value(before, "embedserve_jobs", status="cancelling")
