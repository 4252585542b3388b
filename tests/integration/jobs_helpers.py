"""Helpers for job tests: upload an input file, submit, wait, read results in every format."""

from __future__ import annotations

import json

import msgpack
import numpy as np

from tests.stack import wait_until

FINISHED = {"completed", "failed", "cancelled", "expired"}


def submit(http, **body) -> dict:
    """POST /v1/jobs and return the 202's job object."""
    response = http.post(http.base + "/v1/jobs", json=body, timeout=120)
    assert response.status_code == 202, response.text[:500]
    job = response.json()
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    return job


def get_job(http, job_id: str) -> dict:
    response = http.get(f"{http.base}/v1/jobs/{job_id}", timeout=30)
    assert response.status_code == 200, response.text[:500]
    return response.json()


def wait_finished(http, job_id: str, timeout: float = 180, seen: list | None = None) -> dict:
    """Poll until the job ends; `seen` collects the completed counts observed on the way."""

    def finished():
        job = get_job(http, job_id)
        if seen is not None:
            seen.append(job["request_counts"]["completed"])
        return job if job["status"] in FINISHED else None

    return wait_until(finished, timeout, f"job {job_id} to finish", interval=0.2)


def result_json(http, job_id: str) -> dict:
    response = http.get(f"{http.base}/v1/jobs/{job_id}/result", timeout=120)
    assert response.status_code == 200, response.text[:500]
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()


def result_ndjson(http, job_id: str) -> list[dict]:
    response = http.get(f"{http.base}/v1/jobs/{job_id}/result", headers={"Accept": "application/x-ndjson"},
                        timeout=120)
    assert response.status_code == 200, response.text[:500]
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


def result_msgpack(http, job_id: str) -> dict:
    response = http.get(f"{http.base}/v1/jobs/{job_id}/result", headers={"Accept": "application/msgpack"},
                        timeout=120)
    assert response.status_code == 200, response.text[:500]
    assert response.headers["Content-Type"].startswith("application/msgpack")
    return msgpack.unpackb(response.content, raw=False)


def matrix(packed: dict) -> np.ndarray:
    """The float32 matrix of a msgpack result."""
    assert packed["dtype"] == "<f4"
    return np.frombuffer(packed["data"], dtype="<f4").reshape(packed["shape"])


def sync_vectors(http, model: str, texts: list[str]) -> np.ndarray:
    """The same texts through /v1/embeddings, in 2048-input requests."""
    rows = []
    for start in range(0, len(texts), 2048):
        response = http.post(http.base + "/v1/embeddings", json={"model": model, "input": texts[start:start + 2048]},
                             timeout=120)
        assert response.status_code == 200, response.text[:500]
        rows += [d["embedding"] for d in response.json()["data"]]
    return np.asarray(rows, dtype=np.float32)


def texts(n: int, seed: str = "") -> list[str]:
    """Short distinct texts of varying length."""
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
    return [f"{seed}text {i}: " + " ".join(words[(i + k) % 10] for k in range(1 + i % 7)) for i in range(n)]


def upload(http, name: str, content: bytes, purpose: str = "user_data", file_first: bool = False):
    """POST /v1/files: a file for a job's input_file_id (`file_first`: the file part before 'purpose')."""
    files = {"file": (name, content)}
    if file_first:  # 'purpose' after the file part: checked from the stored copy
        return http.post(http.base + "/v1/files", files=[("file", (name, content)), ("purpose", (None, purpose))],
                         timeout=60)
    return http.post(http.base + "/v1/files", files=files, data={"purpose": purpose}, timeout=60)
