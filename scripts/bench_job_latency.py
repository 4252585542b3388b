"""Sync latency while a bulk job runs: p50/p95 of single-input /v1/embeddings, idle vs during a job.

Starts its own private stack (redis-server, one worker with the default model, one API) like the
tests do, so it needs nothing running. Prints figures; asserts nothing.

    .venv/bin/python -m scripts.bench_job_latency [--inputs 20000] [--samples 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import requests

from tests.stack import RedisServer, Stack

MODEL = "all-MiniLM-L6-v2"
KEY = "bench-key-000000001"


def one_request(session: requests.Session, url: str, i: int) -> float:
    started = time.perf_counter()
    response = session.post(url + "/v1/embeddings", json={"model": MODEL, "input": f"query number {i}"}, timeout=60)
    response.raise_for_status()
    return time.perf_counter() - started


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"n={len(samples)} p50={statistics.median(ordered) * 1000:.1f} ms p95={p95 * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inputs", type=int, default=20000)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    redis = RedisServer.start()
    stack = Stack(redis=redis, log_dir=Path(tempfile.mkdtemp(prefix="embed-bench-")))
    try:
        stack.start_worker(MODEL)
        _, url = stack.start_api(EMBED_API_KEYS=KEY)
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {KEY}"
        for i in range(20):  # warm up connections and the model
            one_request(session, url, i)
        idle = [one_request(session, url, i) for i in range(args.samples)]
        texts = [f"document {i}: " + "some words to embed " * (1 + i % 5) for i in range(args.inputs)]
        started = time.perf_counter()
        job = session.post(url + "/v1/jobs", json={"model": MODEL, "input": texts}, timeout=300).json()
        submitted = time.perf_counter() - started
        busy, i = [], 0
        while True:
            state = session.get(f"{url}/v1/jobs/{job['id']}", timeout=30).json()
            if state["status"] != "in_progress" and state["status"] != "queued":
                break
            if len(busy) < args.samples * 5:
                busy.append(one_request(session, url, i))
                i += 1
            else:
                time.sleep(0.2)
        elapsed = time.perf_counter() - started
        print(f"job: {args.inputs} inputs, status {state['status']}, submit {submitted:.2f} s, "
              f"done in {elapsed:.1f} s ({args.inputs / elapsed:.0f} inputs/s while serving sync requests)")
        print(f"sync idle:       {percentiles(idle)}")
        print(f"sync during job: {percentiles(busy)}")
        ratio = sorted(busy)[int(0.95 * len(busy))] / sorted(idle)[int(0.95 * len(idle))]
        print(f"p95 during job / idle p95: {ratio:.2f}x")
    finally:
        stack.close()
        redis.stop()


if __name__ == "__main__":
    main()
