"""Result downloads: one finished job of N short texts, its result fetched in every format, on a private stack.

Prints (JSON) the result's size and MB/s per format (best and median of --repeat downloads), and
the RSS of the API's gunicorn worker process: before the first download, at its peak (sampled every
0.1 s), after the last one, and after --idle seconds of rest (what it keeps once results were served).

    .venv/bin/python -m scripts.bench_results                          # 200,000 texts, tiny Qwen3 (dim 64)
    .venv/bin/python -m scripts.bench_results --texts 20000 --repeat 2

The model is the tests' tiny random-weight Qwen3: the figures are about the API's streaming, not
the model. The client reads each body in 1 MiB pieces and discards it, in this process, on the
same box as the API (it shares the CPUs). Not a test: it prints.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

from scripts.bench_scale import Sampler, short_texts
from scripts.benchkit.memory import rss_bytes
from tests.stack import RedisServer, Stack, children, wait_until

KEY = "bench-results-key-01"
FORMATS = {
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "msgpack": "application/msgpack",
    "msgpack_stream": "application/vnd.embedserve.msgpack-stream",
    "parquet": "application/vnd.apache.parquet",
}


def finished_job(http: requests.Session, url: str, texts: list[str], timeout: float) -> str:
    """Upload the texts as a file, run a job over it, wait until it is completed (and compacted); its id."""
    uploaded = http.post(url + "/v1/files", files={"file": ("texts.txt", ("\n".join(texts) + "\n").encode())},
                         data={"purpose": "user_data"}, timeout=300)
    uploaded.raise_for_status()
    job = http.post(url + "/v1/jobs", json={"input_file_id": uploaded.json()["id"]}, timeout=300)
    job.raise_for_status()
    job_id = job.json()["id"]

    def done():
        status = http.get(f"{url}/v1/jobs/{job_id}", timeout=60).json()
        if status["status"] in ("failed", "cancelled", "expired"):
            raise RuntimeError(f"the job ended {status['status']}: {status}")
        return status["status"] == "completed"

    wait_until(done, timeout, "the job to complete", interval=0.5)
    return job_id


def download(http: requests.Session, url: str, accept: str) -> tuple[int, float]:
    """Bytes of the result in `accept` and the seconds they took, read 1 MiB at a time."""
    got, started = 0, time.perf_counter()
    with http.get(url, headers={"Accept": accept}, stream=True, timeout=600) as response:
        response.raise_for_status()
        for block in response.iter_content(1 << 20):
            got += len(block)
    return got, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3, help="downloads per format")
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated, of {', '.join(FORMATS)}")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of rest before the idle RSS is read")
    args = parser.parse_args()
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]

    from tests.fixtures.tiny_models import build_tiny_qwen3_embedding

    work = Path(tempfile.mkdtemp(prefix="embed-results-"))
    model_dir, name = str(build_tiny_qwen3_embedding(work / "model")), "tiny-qwen3"
    redis = RedisServer.start(private=True)
    stack = Stack(redis=redis, log_dir=work)
    try:
        stack.start_worker(name, timeout=600, EMBED_MODEL=model_dir, EMBED_MODEL_NAME=name)
        api, url = stack.start_api(timeout=120, EMBED_API_KEYS=KEY)
        (worker_pid,) = children(api.popen.pid)  # EMBED_API_WORKERS=1: one gunicorn worker process
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {KEY}"
        started = time.monotonic()
        job_id = finished_job(http, url, short_texts(args.texts), timeout=max(600.0, args.texts / 50))
        print(f"{args.texts} texts embedded in {time.monotonic() - started:.1f} s; work dir {work}", file=sys.stderr)
        result_url = f"{url}/v1/jobs/{job_id}/result"
        rss_before = rss_bytes(worker_pid)
        figures: dict = {"texts": args.texts, "model": name, "repeat": args.repeat, "formats": {}}
        sampler = Sampler(redis.client(), {"worker": worker_pid}, interval=0.1)
        sampler.start()
        for fmt in formats:
            sizes, rates = set(), []
            for _ in range(args.repeat):
                size, seconds = download(http, result_url, FORMATS[fmt])
                sizes.add(size)
                rates.append(size / 2**20 / seconds)
            figures["formats"][fmt] = {"mb": round(max(sizes) / 2**20, 1), "best_mb_per_s": round(max(rates), 1),
                                       "median_mb_per_s": round(statistics.median(rates), 1)}
            print(f"{fmt}: {figures['formats'][fmt]}", file=sys.stderr)
        rss_after = rss_bytes(worker_pid)
        sampler.stop.set()
        time.sleep(args.idle)
        figures.update({
            "api_worker_rss_mb_before": round(rss_before / 2**20, 1),
            "api_worker_rss_mb_after": round(rss_after / 2**20, 1),
            "api_worker_rss_mb_idle": round(rss_bytes(worker_pid) / 2**20, 1),
            "api_worker_rss_mb_peak": round(sampler.peaks["worker"] / 2**20, 1),
        })
        print(json.dumps(figures, indent=2))
        return 0
    finally:
        stack.close()
        redis.stop()


if __name__ == "__main__":
    sys.exit(main())
