"""What integration tests share besides fixtures: the session stack's names and keys, requests, assertions.

Fixtures live in conftest.py; helpers for jobs (submit, wait, read results) in jobs_helpers.py. A test
module imports from these, never from another test module.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys

import numpy as np
import requests

from tests.integration.jobs_helpers import FINISHED
from tests.stack import ROOT, wait_until

# The session stack (conftest.py): its models and its two static API keys.
MINILM = "all-MiniLM-L6-v2"
QWEN = "tiny-qwen3"
QWEN_ALIAS = "Qwen3-Embedding-8B"  # the model the seed guide's Python example asks for
API_KEY = "test-key-primary-0001"
OTHER_KEY = "test-key-secondary-0002"

# The rerank workers of the `rerankers` fixture (conftest.py), and a query for them.
QWEN_RERANKER = "tiny-qwen3-reranker"
QWEN_RERANKER_ALIAS = "Qwen3-Reranker-0.6B"
CROSS_ENCODER = "tiny-cross-encoder"
QUERY = "what does the cat read?"


def session_for(api_url: str, key: str = API_KEY) -> requests.Session:
    """A requests session that sends `key`, with the base URL on `.base`."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    session.base = api_url
    return session


def embed(http, **body) -> requests.Response:
    """POST /v1/embeddings with `body`."""
    return http.post(http.base + "/v1/embeddings", json=body, timeout=120)


def rerank(http, path="/v1/rerank", **body) -> requests.Response:
    """POST a rerank body."""
    return http.post(http.base + path, json=body, timeout=120)


def assert_openai_error(response: requests.Response, status: int, code=None, param=None) -> dict:
    assert response.status_code == status, response.text[:500]
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in error["message"]
    assert error["type"] == ("invalid_request_error" if status < 500 else "server_error")
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    return error


def vectors(response) -> np.ndarray:
    data = response.json()["data"]
    assert [item["index"] for item in data] == list(range(len(data)))
    first = data[0]["embedding"]
    if isinstance(first, str):
        return np.stack([np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4") for item in data])
    return np.array([item["embedding"] for item in data], dtype=np.float32)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# Managed keys, through the real CLI.

def keys_cli(stack, *args: str) -> subprocess.CompletedProcess:
    """Run `embedserve keys ...` against the test stack's Redis."""
    return subprocess.run([sys.executable, "-m", "embedserve.cli", "keys", *args], cwd=ROOT, env=stack.env(),
                          capture_output=True, text=True, timeout=60)


def create_key(stack, name: str, *limits: str) -> str:
    """A new managed key (the CLI's stdout)."""
    done = keys_cli(stack, "create", "--name", name, *limits)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def models(api_url: str, key: str) -> int:
    return requests.get(api_url + "/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=30).status_code


# OpenAI Batches, through the official client (the `client` fixture, conftest.py).

def jsonl(lines: list[dict]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def request_line(custom_id: str, body: dict) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings", "body": body}


def upload(client, content: bytes, name: str = "batch.jsonl"):
    return client.files.create(file=(name, io.BytesIO(content)), purpose="batch")


def wait_batch(client, batch_id: str, timeout: float = 180):
    def finished():
        batch = client.batches.retrieve(batch_id)
        return batch if batch.status in FINISHED else None

    return wait_until(finished, timeout, f"batch {batch_id} to finish", interval=0.3)
