"""A job under sync load that fills the worker: how far it gets, with and without the bulk floor.

For each EMBED_BULK_MIN_SHARE given (default: 0, the old strict sync-first order, then the
default floor), a private stack (Redis, API, one MiniLM worker) gets a bulk job and `--clients`
closed-loop sync clients (one text per request) for `--seconds`. Prints, per run, over the
seconds the job and the load ran together: sync requests/s, p50/p99, non-200s (goal 0), and the
job's inputs done (inputs/s); then the job's time to finish once the load stopped and whether
every index came back once.

    .venv/bin/python -m scripts.bench_bulk_floor                      # about 3 minutes
    .venv/bin/python -m scripts.bench_bulk_floor --shares 0 0.1 0.3 --seconds 90

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

from scripts.bench_chaos import KEY, MODEL, Load, percentile, texts
from tests.stack import Stack, private_stack, wait_until


def run(stack: Stack, url: str, share: str, seconds: float, job_size: int, clients: int) -> dict:
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {KEY}"
    worker = stack.start_worker(MODEL, EMBED_MODEL_NAME=MODEL, EMBED_BULK_MIN_SHARE=share)
    stop = threading.Event()
    load = [Load(url, stop, n) for n in range(clients)]
    for client in load:
        client.start()
    time.sleep(5)  # the load settles before the job arrives, as a job lands on a busy service
    job = http.post(url + "/v1/jobs", json={"model": MODEL, "input": texts(job_size, f"floor {share}")},
                    timeout=300).json()
    started = time.monotonic()
    before = [len(client.results) for client in load]  # sync figures: the window with the job only
    while time.monotonic() - started < seconds:
        time.sleep(0.5)
    done_under_load = http.get(f"{url}/v1/jobs/{job['id']}", timeout=60).json()["request_counts"]["completed"]
    window = time.monotonic() - started
    during = [r for client, n in zip(load, before) for r in client.results[n:]]
    stop.set()
    stopped = time.monotonic()
    for client in load:
        client.join(180)
    wait_until(lambda: http.get(f"{url}/v1/jobs/{job['id']}", timeout=60).json()["status"] == "completed",
               1800, "the job to finish", interval=0.5)
    finish_s = time.monotonic() - stopped
    lines = http.get(f"{url}/v1/jobs/{job['id']}/result", headers={"Accept": "application/x-ndjson"},
                     timeout=600).text.splitlines()
    worker.stop()
    ok = [s for status, s in during if status == 200]
    return {"bulk_min_share": share, "sync_requests_s": round(len(during) / window, 1),
            "non_200": sum(1 for status, _ in during if status != 200),
            "sync_p50_ms": round(percentile(ok, 0.5) * 1000, 1), "sync_p99_ms": round(percentile(ok, 0.99) * 1000, 1),
            "job_inputs_done_under_load": done_under_load,
            "job_inputs_s_under_load": round(done_under_load / seconds, 1),
            "job_finish_after_load_s": round(finish_s, 1),
            "every_index_once": [json.loads(line)["index"] for line in lines] == list(range(job_size))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shares", nargs="+", default=["0", "0.1"], help="EMBED_BULK_MIN_SHARE values to run")
    parser.add_argument("--seconds", type=float, default=60, help="seconds of sync load with the job running")
    parser.add_argument("--job", type=int, default=2000, help="inputs in the job")
    parser.add_argument("--clients", type=int, default=8, help="closed-loop sync clients")
    args = parser.parse_args()
    with private_stack(Path(tempfile.mkdtemp(prefix="embed-floor-"))) as stack:
        _, url = stack.start_api(EMBED_API_KEYS=KEY, EMBED_MODELS=MODEL)
        wait_until(lambda: requests.get(url + "/ready", timeout=5).status_code == 200, 30, "the API")
        for share in args.shares:
            print(json.dumps(run(stack, url, share, args.seconds, args.job, args.clients)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
