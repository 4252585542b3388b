"""Print what EMBED_REDIS_WAIT_REPLICAS=1 costs per job submission: the WAIT after SUBMIT.

On a private primary + replica + three sentinels (tests/stack.py: SentinelGroup), all on 127.0.0.1:
1. `Scheduler.submit` alone (one pipeline: SUBMIT, then WAIT 1 when on), through the sentinel client;
2. POST /v1/jobs end to end (4 inputs), to two APIs on the same Redis, one with WAIT off, one on
   (no worker: the model is declared, the jobs stay queued).
Calls alternate between off and on, so both see the same machine load. Median and p99, milliseconds.

    .venv/bin/python -m scripts.bench_redis_wait [submissions]     # from the repository root
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

from embedserve.jobs.records import Job, JobStatus, job_record
from embedserve.jobs.scheduler import Scheduler
from embedserve.redis_client import worker_client
from tests.stack import SentinelGroup, Stack

KEY = "bench-wait-key-0001"
MODEL = "all-MiniLM-L6-v2"


def record() -> dict:
    now = int(time.time())
    job = Job(id=f"job_{uuid.uuid4().hex}", owner="bench", kind="job", model="bench-model", status=JobStatus.QUEUED,
              created_at=now, total=4, chunks=1, expires_at=now + 3600)
    return job_record(job, 10)


def summary(name: str, ms: list[float]) -> str:
    ms = sorted(ms)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"{name:<28} n={len(ms):<5} median {statistics.median(ms):7.2f} ms   p99 {p99:7.2f} ms"


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    group = SentinelGroup.start(replicas=1)
    stack = Stack(redis=group, log_dir=Path(tempfile.mkdtemp(prefix="bench-wait-")),
                  base_env={"EMBED_MODELS": MODEL, "EMBED_MAX_QUEUED_INPUTS_PER_KEY": "0", "EMBED_API_KEYS": KEY})
    try:
        client = worker_client(group.url)
        schedulers = {"off": Scheduler(client), "on": Scheduler(client, wait_replicas=1)}
        direct: dict[str, list[float]] = {"off": [], "on": []}
        for i in range(n * 2 + 20):
            mode = ("off", "on")[i % 2]
            started = time.perf_counter()
            schedulers[mode].submit(record(), cap=0, ttl=3600)
            if i >= 20:  # warm-up: script loads, connections
                direct[mode].append((time.perf_counter() - started) * 1000)

        urls = {mode: stack.start_api(EMBED_REDIS_WAIT_REPLICAS=value)[1] for mode, value in (("off", "0"), ("on", "1"))}
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {KEY}"
        body = {"model": MODEL, "input": ["one", "two", "three", "four"]}
        end_to_end: dict[str, list[float]] = {"off": [], "on": []}
        for i in range(n * 2 + 20):
            mode = ("off", "on")[i % 2]
            started = time.perf_counter()
            response = http.post(urls[mode] + "/v1/jobs", json=body, timeout=30)
            took = (time.perf_counter() - started) * 1000
            assert response.status_code == 202, response.text
            if i >= 20:
                end_to_end[mode].append(took)

        print(f"replica {group.replicas[0].url}, {n} calls each way, alternating")
        for mode in ("off", "on"):
            print(summary(f"Scheduler.submit, WAIT {mode}", direct[mode]))
        for mode in ("off", "on"):
            print(summary(f"POST /v1/jobs, WAIT {mode}", end_to_end[mode]))
        extra = statistics.median(direct["on"]) - statistics.median(direct["off"])
        print(f"WAIT 1 adds {extra:.2f} ms (median) to a submission")
    finally:
        stack.close()
        group.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
