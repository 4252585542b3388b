"""Chaos: two workers under sync load and a bulk job, one SIGKILLed and restarted every 30 s.

Runs the same load twice on a private stack (MiniLM): calm, then with a worker killed (SIGKILL)
and a fresh one started every `--kill-every` seconds. Prints, for each run: sync requests and
their non-200 count (goal 0), sync p50/p99, the job's completion time and whether every index
came back exactly once; then the cold-start time (first request sent before any worker exists,
to its answer).

    .venv/bin/python -m scripts.bench_chaos                  # 3 minutes each, 20,000-input job
    .venv/bin/python -m scripts.bench_chaos --seconds 60 --job 5000

Not a test: it prints figures (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from tests.stack import RedisServer, Stack, wait_until

KEY = "bench-chaos-key-0001"
MODEL = "chaos-minilm"


def texts(n: int, seed: str) -> list[str]:
    return [f"{seed} text {i} " + "word " * (i % 9) for i in range(n)]


class Load(threading.Thread):
    """One closed-loop client: one-text sync requests until stopped; (status, seconds) of each."""

    def __init__(self, url: str, stop: threading.Event, n: int):
        super().__init__(daemon=True)
        self.url, self.stop, self.n = url, stop, n
        self.results: list[tuple[int, float]] = []

    def run(self) -> None:
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {KEY}"
        i = 0
        while not self.stop.is_set():
            i += 1
            started = time.monotonic()
            try:
                status = http.post(self.url + "/v1/embeddings", json={"model": MODEL, "input": f"c{self.n} {i}"},
                                   timeout=120).status_code
            except requests.RequestException:
                status = -1
            self.results.append((status, time.monotonic() - started))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run(stack: Stack, url: str, seconds: float, job_size: int, kill_every: float | None) -> dict:
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {KEY}"
    stop = threading.Event()
    clients = [Load(url, stop, n) for n in range(8)]
    workers = [stack.start_worker(MODEL, EMBED_MODEL_NAME=MODEL) for _ in range(2)]
    job = http.post(url + "/v1/jobs", json={"model": MODEL, "input": texts(job_size, "chaos")}, timeout=300).json()
    started = time.monotonic()
    for client in clients:
        client.start()
    kills, job_done_s = 0, None
    next_kill = started + kill_every if kill_every else float("inf")
    while time.monotonic() - started < seconds or job_done_s is None:
        if job_done_s is None and http.get(f"{url}/v1/jobs/{job['id']}", timeout=60).json()["status"] == "completed":
            job_done_s = time.monotonic() - started
        if time.monotonic() - started >= seconds:
            stop.set()  # the load ends on time; the job may still be finishing
        if time.monotonic() >= next_kill and not stop.is_set():
            victim = workers.pop(0)
            victim.kill()
            kills += 1
            workers.append(stack.start_worker(MODEL, EMBED_MODEL_NAME=MODEL))
            next_kill = time.monotonic() + kill_every
        time.sleep(0.5)
    stop.set()
    for client in clients:
        client.join(180)
    results = [r for client in clients for r in client.results]
    lines = http.get(f"{url}/v1/jobs/{job['id']}/result", headers={"Accept": "application/x-ndjson"},
                     timeout=600).text.splitlines()
    indices = [json.loads(line)["index"] for line in lines]
    for worker in workers:
        worker.stop()
    ok = [seconds for status, seconds in results if status == 200]
    return {"sync_requests": len(results), "non_200": sum(1 for status, _ in results if status != 200),
            "sync_p50_ms": round(percentile(ok, 0.5) * 1000, 1), "sync_p99_ms": round(percentile(ok, 0.99) * 1000, 1),
            "sync_max_ms": round(max(ok, default=float("nan")) * 1000, 1),
            "job_inputs": job_size, "job_completed_s": round(job_done_s, 1), "kills": kills,
            "every_index_once": indices == list(range(job_size))}


def cold_start(stack: Stack, url: str) -> float:
    """Seconds from a request sent with no worker up to its answer, the worker started right after it."""
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {KEY}"
    answer: dict = {}
    name = "cold-" + MODEL
    sent = time.monotonic()
    caller = threading.Thread(target=lambda: answer.update(
        response=http.post(url + "/v1/embeddings", json={"model": name, "input": "cold"}, timeout=120)))
    caller.start()
    worker = stack.start_worker(name, EMBED_MODEL_NAME=name)
    caller.join(120)
    worker.stop()
    if answer["response"].status_code != 200:
        raise RuntimeError(answer["response"].text)
    return time.monotonic() - sent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--job", type=int, default=20_000)
    parser.add_argument("--kill-every", type=float, default=30)
    args = parser.parse_args()
    redis = RedisServer.start()
    stack = Stack(redis=redis, log_dir=Path(tempfile.mkdtemp(prefix="embed-chaos-")))
    try:
        _, url = stack.start_api(EMBED_API_KEYS=KEY, EMBED_MODELS=f"{MODEL},cold-{MODEL}")
        wait_until(lambda: requests.get(url + "/ready", timeout=5).status_code == 200, 30, "the API")
        figures = {"calm": run(stack, url, args.seconds, args.job, None),
                   "chaos": run(stack, url, args.seconds, args.job, args.kill_every),
                   "cold_start_s": round(cold_start(stack, url), 1)}
        print(json.dumps(figures, indent=2))
        return 0
    finally:
        stack.close()
        redis.stop()


if __name__ == "__main__":
    sys.exit(main())
