"""Limits of jobs and files, on an API started with small ones: refused up front, nothing stored."""

from __future__ import annotations

import json
import socket

import pytest
import requests

from tests.integration.helpers import MINILM, assert_openai_error
from tests.stack import wait_until

pytestmark = pytest.mark.slow  # needs the session stack: an API and two workers (tests/integration/conftest.py)


SMALL_KEY = "test-key-small-limits-0003"


@pytest.fixture(scope="module")
def small(stack, workers):
    _, url = stack.start_api(EMBED_API_KEYS=SMALL_KEY, EMBED_MAX_JOB_INPUTS="50", EMBED_MAX_JOB_BODY_BYTES="4096",
                             EMBED_MAX_FILE_BYTES="2048", EMBED_MAX_BODY_BYTES="2048")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {SMALL_KEY}"
    session.base = url
    yield session
    session.close()


def job_ids(session) -> list[str]:
    return [j["id"] for j in session.get(session.base + "/v1/jobs?limit=100", timeout=30).json()["data"]]


def test_too_many_inputs_is_400_and_stores_nothing(small, stack):
    before = set(stack.redis.client().scan_iter("embed:job:*"))
    listed = job_ids(small)
    response = small.post(small.base + "/v1/jobs", json={"model": MINILM, "input": ["x"] * 51}, timeout=30)
    assert_openai_error(response, 400, "too_many_inputs", "input")
    assert job_ids(small) == listed
    assert set(stack.redis.client().scan_iter("embed:job:*")) == before


def test_job_body_over_its_limit_is_413(small):
    listed = job_ids(small)
    response = small.post(small.base + "/v1/jobs", json={"model": MINILM, "input": ["y" * 100] * 45}, timeout=30)
    assert_openai_error(response, 413, "request_too_large")
    assert "4096" in response.json()["error"]["message"]
    assert job_ids(small) == listed


def test_each_route_family_has_its_own_body_limit(small):
    body = {"model": MINILM, "input": ["z" * 100] * 30}  # ~3.3 kB: over the embeddings limit, under the job one
    assert_openai_error(small.post(small.base + "/v1/embeddings", json=body, timeout=30), 413, "request_too_large")
    async_job = small.post(small.base + "/v1/embeddings", json=body, headers={"Prefer": "respond-async"}, timeout=30)
    assert async_job.status_code == 202, async_job.text
    assert small.post(small.base + "/v1/jobs", json=body, timeout=30).status_code == 202


def test_a_second_large_body_while_one_is_read_is_503_server_busy(small):
    """One process reads and holds at most EMBED_MAX_JOB_BODY_BYTES of large bodies at once (api/body_budget.py):
    a second large body while the first is still arriving is refused before it is read; small ones are not."""
    host, port = small.base.removeprefix("http://").split(":")
    body = json.dumps({"model": MINILM, "input": ["w" * 100] * 30}).encode()  # ~3.3 kB: over the sync limit
    head = (f"POST /v1/jobs HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {SMALL_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    no_model_large = {"input": ["v" * 100] * 30}  # 400 once read: a probe that never makes a job
    probes: list[int] = []

    def refused() -> bool:
        probes.append(small.post(small.base + "/v1/jobs", json=no_model_large, timeout=30).status_code)
        return probes[-1] == 503

    # Once in a whole-suite run (2026-12-07) the probes were never refused for 15 s and it did not
    # recur in 4 runs of the file alone: the held request had not taken its share, for a reason the log did not
    # keep. A fresh held connection is tried then, and the probes' statuses go in the failure message.
    for _ in range(3):
        held = socket.create_connection((host, int(port)), timeout=30)
        held.sendall(head + body[:100])  # the first large body, still arriving
        try:
            wait_until(refused, 5, "a second large body refused while the first is read", interval=0.2)
            break
        except AssertionError:
            held.close()
    else:
        raise AssertionError(f"no probe was refused while a large body was read: statuses {probes}")
    with held:
        busy = small.post(small.base + "/v1/jobs", json=no_model_large, timeout=30)
        assert_openai_error(busy, 503, "server_busy")
        assert int(busy.headers["Retry-After"]) >= 1
        # A body within the sync limit takes no share: read, and refused for what it says.
        assert small.post(small.base + "/v1/jobs", json={"input": ["s"]}, timeout=30).status_code == 400
        held.sendall(body[100:])
        answer = held.recv(65536).decode()
        assert answer.startswith("HTTP/1.1 202"), answer[:300]
    # The first body's request ended: its share is back.
    assert small.post(small.base + "/v1/jobs", json=no_model_large, timeout=30).status_code == 400


def test_file_over_its_limit_is_refused(small):
    content = b'{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {"input": "hi"}}\n' * 40
    response = small.post(small.base + "/v1/files", files={"file": ("big.jsonl", content)},
                          data={"purpose": "batch"}, timeout=30)
    assert response.status_code in (400, 413), response.text
    assert_openai_error(response, response.status_code)
    listed = small.get(small.base + "/v1/files", timeout=30).json()["data"]
    assert listed == []
