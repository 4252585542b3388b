"""Bulk jobs through the jobs API (issue 3's contract): submit, poll, download as msgpack.

`POST /v1/jobs` -> 202 job object with `id`; `GET /v1/jobs/{id}` until `completed`;
`GET /v1/jobs/{id}/result` with `Accept: application/msgpack`. When the API has no jobs
endpoint (404/405), every figure here is reported as not available instead of failing the run.
"""

from __future__ import annotations

import json
import threading
import time

from scripts.benchkit.load import Client, Target, sequential

# Seconds between job status polls (kept short: it bounds how late "completed" is seen).
POLL_S = 0.05
FINISHED = {"completed", "failed", "cancelled", "expired"}


class JobsUnavailable(Exception):
    """The server has no jobs API."""


def submit(client: Client, target: Target, texts: list[str]) -> str:
    status, _, data = client.request("POST", "/v1/jobs", target.body(texts))
    if status in (404, 405):
        raise JobsUnavailable(f"jobs API not available: {status}")
    if status != 202:
        raise RuntimeError(f"POST /v1/jobs: HTTP {status}: {data[:300]!r}")
    return json.loads(data)["id"]


def status_of(client: Client, job_id: str) -> dict:
    status, _, data = client.request("GET", f"/v1/jobs/{job_id}")
    if status != 200:
        raise RuntimeError(f"GET /v1/jobs/{job_id}: HTTP {status}: {data[:300]!r}")
    return json.loads(data)


def wait_finished(client: Client, job_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = status_of(client, job_id)
        if job["status"] in FINISHED:
            return job
        time.sleep(POLL_S)
    raise RuntimeError(f"job {job_id} did not finish within {timeout:.0f}s")


def download(client: Client, target: Target, job_id: str) -> int:
    """Fetch the msgpack result; returns its size in bytes."""
    headers = target.headers()
    headers["Accept"] = "application/msgpack"
    status, _, data = client.request("GET", f"/v1/jobs/{job_id}/result", headers=headers)
    if status != 200:
        raise RuntimeError(f"GET /v1/jobs/{job_id}/result: HTTP {status}: {data[:300]!r}")
    return len(data)


def delete(client: Client, job_id: str) -> None:
    client.request("DELETE", f"/v1/jobs/{job_id}")


def bulk_job(target: Target, texts: list[str], timeout: float = 1800) -> float:
    """Submit -> completed -> result downloaded; texts/s end to end."""
    client = Client(target)
    try:
        started = time.perf_counter()
        job_id = submit(client, target, texts)
        job = wait_finished(client, job_id, timeout)
        if job["status"] != "completed":
            raise RuntimeError(f"job ended {job['status']}: {job.get('errors')}")
        download(client, target, job_id)
        elapsed = time.perf_counter() - started
        delete(client, job_id)
    finally:
        client.close()
    return len(texts) / elapsed


def latencies_during_job(target: Target, job_texts: list[str], probes: list[str], timeout: float = 1800
                         ) -> list[float]:
    """Single-text sync latencies measured while a large job is in progress (then the job is deleted)."""
    client = Client(target)
    stop = threading.Event()
    try:
        job_id = submit(client, target, job_texts)
        deadline = time.monotonic() + timeout
        while status_of(client, job_id)["status"] == "queued" and time.monotonic() < deadline:
            time.sleep(POLL_S)
        out: list[float] = []
        probe = threading.Thread(target=lambda: out.extend(sequential(target, probes, stop=stop)))
        probe.start()
        # Stop probing when the job ends, so every latency counted was taken under load.
        while probe.is_alive() and status_of(client, job_id)["status"] not in FINISHED:
            time.sleep(0.2)
        stop.set()
        probe.join()
        client.request("POST", f"/v1/jobs/{job_id}/cancel")
        delete(client, job_id)
    finally:
        client.close()
    return out
