"""The batcher's own ceiling: rows per second through worker/batcher.py with a forward that costs nothing.

Job-chunk-shaped load: `--senders` threads (a worker's bulk slots) each submit chunks of `--chunk`
rows at bulk priority and wait for them, as worker/chunk_runner.py does, through a Batcher set up
as a CPU worker's packed one. The forward returns zeros at once, so what is measured is the
batcher's Python work per row and per pass (forming batches, scattering vectors back, waking the
senders): what the forward thread spends besides the model. Not a test: it prints.

    .venv/bin/python -m scripts.bench_batcher
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

import numpy as np

from embedserve import defaults
from worker.batcher import Batcher


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--chunk", type=int, default=768)
    parser.add_argument("--senders", type=int, default=defaults.BULK_SLOTS)
    parser.add_argument("--row-tokens", type=int, default=12)
    args = parser.parse_args()

    passes = []

    def forward(rows, pause=None):
        passes.append(len(rows))
        return np.zeros((len(rows), 64), dtype=np.float32)

    batcher = Batcher(forward, max_batch_tokens=defaults.MAX_BATCH_TOKENS_CPU_PACKED, padded=False, preemptible=True,
                      bulk_batch_tokens=defaults.CPU_BULK_BATCH_TOKENS)
    batcher.start()
    chunk = [[7] * args.row_tokens for _ in range(args.chunk)]
    per_sender = args.rows // args.senders // args.chunk

    def send():
        for _ in range(per_sender):
            batcher.submit(chunk, priority=1, deadline=time.time() + 600).future.result()

    threads = [threading.Thread(target=send) for _ in range(args.senders)]
    started, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    batcher.stop()
    rows = per_sender * args.senders * args.chunk
    print(json.dumps({"rows": rows, "rows_per_s": round(rows / elapsed), "cpu_us_per_row": round(cpu * 1e6 / rows, 2),
                      "passes": len(passes), "rows_per_pass": round(rows / max(1, len(passes)), 1)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
