"""HTTP load loops shared by every contender (our stack, a peer): sequential, concurrent, stats.

Plain `http.client` with one keep-alive connection per client thread: the load generator runs on
the same cores as the server, so it must cost as little CPU per request as possible.
"""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Target:
    """An OpenAI-compatible embeddings endpoint and how to call it."""

    name: str
    base_url: str  # e.g. http://127.0.0.1:8000
    path: str = "/v1/embeddings"
    api_key: str | None = None
    model: str = "all-MiniLM-L6-v2"
    extra: dict | None = None  # extra body fields (e.g. truncate for our stack)

    def body(self, texts: list[str]) -> bytes:
        payload = {"model": self.model, "input": texts, "encoding_format": "base64", **(self.extra or {})}
        return json.dumps(payload).encode()

    def headers(self, content_type: str = "application/json") -> dict:
        headers = {"Content-Type": content_type}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers


class Client:
    """One keep-alive connection to a target."""

    def __init__(self, target: Target, timeout: float = 120):
        self.target = target
        parts = urlsplit(target.base_url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
                ) -> tuple[int, dict, bytes]:
        self.conn.request(method, path, body=body, headers=headers or self.target.headers())
        resp = self.conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()

    def embed(self, texts: list[str]) -> None:
        status, _, data = self.request("POST", self.target.path, self.target.body(texts))
        if status != 200:
            raise RuntimeError(f"{self.target.name}: HTTP {status}: {data[:300]!r}")

    def close(self) -> None:
        self.conn.close()


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank on sorted values."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def sequential(target: Target, texts: list[str], *, stop: threading.Event | None = None) -> list[float]:
    """One client, one text per request, back to back; latencies in seconds."""
    client = Client(target)
    latencies = []
    try:
        client.embed(texts[:1])  # open the connection outside the timing
        for text in texts:
            if stop is not None and stop.is_set():
                break
            started = time.perf_counter()
            client.embed([text])
            latencies.append(time.perf_counter() - started)
    finally:
        client.close()
    return latencies


def concurrent(target: Target, texts: list[str], clients: int) -> float:
    """`clients` threads each sending one text per request until `texts` run out; texts/s."""
    lock = threading.Lock()
    position = iter(range(len(texts)))
    errors: list[BaseException] = []
    conns = [Client(target) for _ in range(clients)]
    for conn in conns:
        conn.embed(texts[:1])
    ready = threading.Barrier(clients + 1)

    def run(conn: Client) -> None:
        ready.wait()
        try:
            while True:
                with lock:
                    i = next(position, None)
                if i is None:
                    return
                conn.embed([texts[i]])
        except BaseException as exc:  # noqa: BLE001 - reported after the run
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(conn,)) for conn in conns]
    for thread in threads:
        thread.start()
    ready.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for conn in conns:
        conn.close()
    if errors:
        raise RuntimeError(f"{target.name}: {len(errors)} client(s) failed: {errors[0]}")
    return len(texts) / elapsed


def summary(latencies: list[float]) -> dict:
    """p50/p95/p99/mean in milliseconds."""
    return {"n": len(latencies), "p50_ms": percentile(latencies, 50) * 1e3, "p95_ms": percentile(latencies, 95) * 1e3,
            "p99_ms": percentile(latencies, 99) * 1e3, "mean_ms": statistics.fmean(latencies) * 1e3}
