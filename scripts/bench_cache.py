"""The embedding cache and a job's repeats, measured: a job sent twice, and a job with half its texts repeated.

On a private stack (a broker Redis, a cache Redis with an LRU policy, one worker with EMBED_CACHE_URL,
an API), with `--texts` N:
1. a job of N distinct texts, then the same job again: seconds from submit to completed, the bulk
   forward seconds each spent (embedserve_bulk_stage_seconds, from the workers' account) and how
   many inputs came from the cache (the job's `cached_inputs`);
2. a job of N texts of which half repeat the other half (new texts, not in the cache): its forward
   seconds against the first job's (a job's repeats are embedded once, cache or not).
Not a test: it prints.

    .venv/bin/python -m scripts.bench_cache --texts 20000              # all-MiniLM-L6-v2
    .venv/bin/python -m scripts.bench_cache --model tiny-qwen3 --texts 100000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import requests

from tests.stack import RedisServer, Stack

KEY = "bench-cache-key-0001"


def distinct_texts(n: int, tag: str) -> list[str]:
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
    return [f"{tag} {i}: " + " ".join(words[(i * 7 + k) % 10] for k in range(4 + i % 17)) for i in range(n)]


def forward_seconds(client, model: str) -> float:
    """Bulk forward seconds the workers have accounted so far (flushed every 2 s)."""
    from embedserve.fleet import stage_times

    histograms, _ = stage_times.read(client, model)
    found = histograms.get(("bulk", "forward"))
    return found.sum if found else 0.0


def run_job(http, url: str, model: str, texts: list[str], client) -> dict:
    before = forward_seconds(client, model)
    started = time.monotonic()
    job = http.post(url + "/v1/jobs", json={"model": model, "input": texts}, timeout=300).json()
    while (job := http.get(f"{url}/v1/jobs/{job['id']}", timeout=60).json())["status"] not in (
            "completed", "failed", "cancelled"):
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    time.sleep(2.5)  # the workers' last statistics flush
    return {"status": job["status"], "seconds": round(elapsed, 2), "texts_per_s": round(len(texts) / elapsed, 1),
            "forward_s": round(forward_seconds(client, model) - before, 2),
            "cached_inputs": job.get("cached_inputs")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=20_000)
    parser.add_argument("--model", choices=("minilm", "tiny-qwen3"), default="minilm")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="embed-cache-"))
    if args.model == "minilm":
        env, name = {}, "all-MiniLM-L6-v2"
    else:
        from tests.fixtures.tiny_models import build_tiny_qwen3_embedding

        name = "tiny-qwen3"
        env = {"EMBED_MODEL": str(build_tiny_qwen3_embedding(work / "model")), "EMBED_MODEL_NAME": name}
    broker = RedisServer.start(private=True)
    cache = RedisServer.start("--maxmemory", "1gb", "--maxmemory-policy", "allkeys-lru")
    stack = Stack(redis=broker, log_dir=work)
    try:
        stack.start_worker(name, timeout=600, EMBED_CACHE_URL=cache.url, **env)
        _, url = stack.start_api(timeout=120, EMBED_API_KEYS=KEY, EMBED_CACHE_URL=cache.url)
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {KEY}"
        client = broker.client()
        texts = distinct_texts(args.texts, "first")
        first = run_job(http, url, name, texts, client)
        again = run_job(http, url, name, texts, client)
        half = distinct_texts(args.texts // 2, "half")
        repeated = run_job(http, url, name, half + half, client)
        figures = {
            "model": name, "texts": args.texts,
            "first_job": first, "same_job_again": again,
            "again_speedup": round(first["seconds"] / again["seconds"], 1) if again["seconds"] else None,
            "half_repeated_job": repeated,
            "half_repeated_forward_vs_first": round(repeated["forward_s"] / first["forward_s"], 3)
            if first["forward_s"] else None,
        }
        print(json.dumps(figures, indent=2))
        return 0
    finally:
        stack.close()
        broker.stop()
        cache.stop()


if __name__ == "__main__":
    sys.exit(main())
