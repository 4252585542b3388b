"""Print what managed keys + rate limits cost per request: sequential /v1/embeddings latency,
static unlimited key vs managed rate-limited key, on a private real stack (redis, MiniLM worker, API).

    .venv/bin/python -m scripts.bench_admission [requests]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from tests.stack import ROOT, RedisServer, Stack

STATIC_KEY = "bench-static-key-0001"


def timed(url: str, key: str, n: int) -> list[float]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    out = []
    for i in range(n):
        started = time.perf_counter()
        response = session.post(url + "/v1/embeddings", json={"input": f"benchmark sentence {i}"}, timeout=60)
        out.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return out


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    server = RedisServer.start("--save", "")
    stack = Stack(redis=server, log_dir=Path(tempfile.mkdtemp(prefix="bench-")))
    try:
        stack.start_worker("all-MiniLM-L6-v2")
        _, url = stack.start_api(EMBED_API_KEYS=STATIC_KEY)
        managed = subprocess.run([sys.executable, "-m", "embedserve.cli", "keys", "create", "--name", "bench",
                                  "--rpm", "1000000", "--tpm", "1000000000"], cwd=ROOT, env=stack.env(),
                                 capture_output=True, text=True, check=True).stdout.strip()
        timed(url, STATIC_KEY, 30)  # warm up
        for label, key in (("static key, no limits", STATIC_KEY), ("managed key, rpm+tpm limits", managed),
                           ("static key, no limits (again)", STATIC_KEY)):
            ms = sorted(timed(url, key, n))
            print(f"{label:32s} n={n} p50={statistics.median(ms):.2f} ms  p95={ms[int(0.95 * n)]:.2f} ms")
    finally:
        stack.close()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
