"""Bulk jobs at scale: N short texts as a file through `embedserve embed` on a private local stack.

Prints: Redis peak memory (and per input), API and CLI peak RSS, end-to-end texts/s against the
engine alone on the same texts, result download MB/s, the Parquet result read straight from the
store, the fair-share delay of a second key's small job submitted while the big one runs, and the
bulk path's stage account (embedserve_bulk_stage_seconds): seconds per 1,000 inputs of each stage,
how busy the forward thread was, and the stage that limits the run.

    .venv/bin/python -m scripts.bench_scale                      # 1,000,000 texts, tiny Qwen3-shaped model
    .venv/bin/python -m scripts.bench_scale --texts 100000 --model minilm
    .venv/bin/python -m scripts.bench_scale --model near-free --store s3

The default model is a tiny random-weight Qwen3 (the tests' fixture): the figures are about the
service's machinery (store, scheduler, streaming), not the model's speed. `near-free` is one layer
of hidden size 16 through the same engine: its end-to-end rate is the machinery's own ceiling.
`--store s3` runs the job store on moto's S3 server (a real HTTP S3) and counts its requests.
Besides wall-clock rates, CPU seconds per 1,000 texts of the worker process and of the engine
alone are printed: on a shared machine they move less than the rates. Not a test: it prints.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from embedserve import redis_keys
from scripts.benchkit.memory import cpu_seconds, tree_rss
from tests.stack import ROOT, RedisServer, Stack

KEY_A, KEY_B = "bench-key-a-000001", "bench-key-b-000002"
SMALL_JOB = 200
ENGINE_ROUNDS = 3  # rounds of the engine alone on 20,000 of the texts; the best is kept


def short_texts(n: int) -> list[str]:
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
    return [f"text {i}: " + " ".join(words[(i * 7 + k) % 10] for k in range(2 + i % 9)) for i in range(n)]


class Sampler(threading.Thread):
    """Peak Redis used_memory and peak RSS of the given pids (each with its children), every `interval` s."""

    def __init__(self, client, pids: dict[str, int], interval: float = 0.5):
        super().__init__(daemon=True)
        self.client, self.pids, self.interval = client, pids, interval
        self.peaks = {name: 0 for name in [*pids, "redis"]}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                self.peaks["redis"] = max(self.peaks["redis"], int(self.client.info("memory")["used_memory"]))
            except Exception:  # noqa: BLE001 - a sample missed is fine
                pass
            for name, pid in self.pids.items():
                try:  # the API is a gunicorn master and its worker processes
                    total = sum(tree_rss(pid).values())
                    self.peaks[name] = max(self.peaks[name], total)
                except OSError:
                    pass


def engine_alone(model_dir: str, texts: list[str], rounds: int = ENGINE_ROUNDS) -> tuple[float, float]:
    """Texts/s of the worker's engine in this process, on `texts`, in 256-text batches, and its CPU
    seconds per 1,000 texts: the best of `rounds` rounds (one round's rate moves by a quarter on this
    VM, and the best is the reference the end-to-end rate is held to)."""
    from embedserve.settings import Settings
    from worker.engine import load_engine

    engine = load_engine(Settings(model=model_dir))
    best = (0.0, 0.0)
    for _ in range(rounds):
        started, cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(texts), 256):
            batch = texts[start:start + 256]
            tokenized = engine.tokenize(batch, offset=0, input_type="document", instruction=None, truncate=True)
            engine.embed_batch(tokenized.rows)
        best = max(best, (len(texts) / (time.perf_counter() - started), (time.process_time() - cpu) * 1000 / len(texts)))
    return best


STAGES = ("claim", "read", "tokenize", "forward", "write", "finish", "compact")


def stage_account(client, model: str, texts: int, elapsed: float) -> dict:
    """The bulk path's stages from the workers' account in Redis: seconds per 1,000 inputs of each (summed
    over the slots, which run side by side), the forward thread's busy share, and the stage that limits."""
    from embedserve.fleet import forward_stats, stage_times

    histograms, _ = stage_times.read(client, model)
    per_1k = {stage: round(histograms[("bulk", stage)].sum * 1000 / texts, 4)
              for stage in STAGES if ("bulk", stage) in histograms}
    busy = forward_stats.read(client, model).seconds.get("bulk", 0.0) / elapsed
    machinery = {stage: seconds for stage, seconds in per_1k.items() if stage != "forward"}
    # The forward thread busy nearly all the time: the model limits. Otherwise the stage the slots spend
    # most time in (besides waiting for their forward) is what keeps the forward thread waiting.
    limit = "forward (the model)" if busy >= 0.9 else max(machinery, key=machinery.get, default="?")
    return {"stage_s_per_1k_inputs": per_1k, "forward_thread_busy": round(busy, 3), "limiting_stage": limit}


def s3_requests(log_text: str) -> int:
    """Requests moto's S3 server logged (one access-log line each)."""
    return sum(1 for line in log_text.splitlines() if '"GET ' in line or '"PUT ' in line or '"POST ' in line
               or '"DELETE ' in line or '"HEAD ' in line)


def small_job_delay(url: str, texts: list[str]) -> float:
    """Seconds from submit to completion of a SMALL_JOB-input job of key B."""
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {KEY_B}"
    started = time.monotonic()
    job = http.post(url + "/v1/jobs", json={"input": texts[:SMALL_JOB]}, timeout=60).json()
    while http.get(f"{url}/v1/jobs/{job['id']}", timeout=60).json()["status"] not in ("completed", "failed"):
        time.sleep(0.1)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1_000_000)
    parser.add_argument("--model", choices=("tiny-qwen3", "near-free", "minilm"), default="tiny-qwen3")
    parser.add_argument("--store", choices=("file", "s3"), default="file",
                        help="the job store: a directory, or moto's S3 server (started here)")
    parser.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the worker (e.g. EMBED_MAX_BATCH_TOKENS=8192); repeatable")
    parser.add_argument("--format", choices=("txt", "jsonl"), default="txt",
                        help="the input file: one text a line, or {\"text\", \"id\"} objects (ids travel to the result)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="embed-scale-"))
    if args.model == "minilm":
        model_dir, name = "", "all-MiniLM-L6-v2"  # "": the embedded default
    else:
        from tests.fixtures.tiny_models import NEAR_FREE, build_tiny_qwen3_embedding

        shape = NEAR_FREE if args.model == "near-free" else {}
        model_dir, name = str(build_tiny_qwen3_embedding(work / "model", **shape)), args.model
    texts = short_texts(args.texts)
    input_path = work / f"texts.{args.format}"
    with input_path.open("w") as out:
        for i, text in enumerate(texts):
            out.write(json.dumps({"text": text, "id": f"doc-{i}"}) + "\n" if args.format == "jsonl" else text + "\n")
    print(f"{args.texts} texts ({input_path.stat().st_size / 1e6:.1f} MB) with {name}; work dir {work}", flush=True)

    redis = RedisServer.start()
    stack = Stack(redis=redis, log_dir=work)
    env = {"EMBED_MODEL": model_dir, "EMBED_MODEL_NAME": name} if model_dir else {}
    s3 = None
    if args.store == "s3":
        from tests.fixtures.s3_server import S3Server

        s3 = S3Server.start()
        store_env = {**s3.env, "EMBED_JOB_STORE": s3.url("bench")}
    else:
        store_env = {}
    try:
        tuning = dict(item.split("=", 1) for item in args.worker_env)
        worker = stack.start_worker(name, timeout=600, **{**env, **store_env, **tuning})
        api, url = stack.start_api(timeout=120, EMBED_API_KEYS=f"{KEY_A},{KEY_B}", **store_env)
        client = redis.client()
        idle_small = small_job_delay(url, texts)
        base_memory = int(client.info("memory")["used_memory"])
        out = work / "vectors.npy"
        cli_env = {**os.environ, "EMBED_API_KEY": KEY_A, "EMBED_URL": url}
        s3_before = s3_requests(s3.process.log()) if s3 else 0
        worker_cpu = cpu_seconds(worker.popen.pid)
        started = time.monotonic()
        cli = subprocess.Popen([sys.executable, "-m", "embedserve.cli", "embed", str(input_path), "-o", str(out),
                                "--model", name], env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               cwd=ROOT)
        sampler = Sampler(client, {"api": api.popen.pid, "cli": cli.pid})
        sampler.start()
        time.sleep(min(60.0, 5 + args.texts / 20_000))  # the big job is running by now
        busy_small = small_job_delay(url, texts)
        _, stderr = cli.communicate()
        elapsed = time.monotonic() - started
        worker_cpu = cpu_seconds(worker.popen.pid) - worker_cpu
        s3_count = s3_requests(s3.process.log()) - s3_before if s3 else None
        sampler.stop.set()
        if cli.returncode != 0:
            print(stderr.decode()[-3000:], file=sys.stderr)
            return 1
        # The same result again, timed on its own: the download rate.
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {KEY_A}"
        job = http.get(url + "/v1/jobs?limit=1", timeout=60).json()["data"][0]
        job_id = job["id"]
        # From the first chunk claimed to the job's end (whole seconds): the workers' part of the end to end.
        running_s = max(1, job["completed_at"] - job["started_at"])
        got, t0 = 0, time.monotonic()
        with http.get(f"{url}/v1/jobs/{job_id}/result", headers={"Accept": "application/x-ndjson"}, stream=True,
                      timeout=600) as response:
            for block in response.iter_content(1 << 20):
                got += len(block)
        download_s = time.monotonic() - t0
        time.sleep(2.5)  # the workers' last statistics flush (every 2 s)
        account = stage_account(client, name, args.texts, elapsed)
        table = None
        if s3 is None:
            import pyarrow.dataset as ds

            table = ds.dataset(str(work / "store" / "jobs" / job_id / "result"), format="parquet").to_table(
                columns=["index", "id"])
        alone, alone_cpu = engine_alone(model_dir, texts[:20_000])
        figures = {
            "texts": args.texts, "model": name, "store": args.store,
            "end_to_end_texts_per_s": round(args.texts / elapsed, 1),
            "engine_alone_texts_per_s": round(alone, 1),
            "end_to_end_vs_engine": round(args.texts / elapsed / alone, 3),
            "job_running_s": running_s,
            # How the job was cut (api/bulk/chunking.py): sized by the model's bulk rate measured before the submit.
            "chunks": int(client.hget(redis_keys.job(job_id), "chunks") or 0),
            "while_running_texts_per_s": round(args.texts / running_s, 1),
            "worker_cpu_s_per_1k_texts": round(worker_cpu * 1000 / args.texts, 4),
            "engine_cpu_s_per_1k_texts": round(alone_cpu, 4),
            **account,
            "s3_requests": s3_count,
            "s3_requests_per_1m_inputs": round(s3_count * 1_000_000 / args.texts) if s3_count is not None else None,
            "redis_peak_growth_mb": round((sampler.peaks["redis"] - base_memory) / 2**20, 2),
            "redis_peak_mb": round(sampler.peaks["redis"] / 2**20, 1),
            "redis_bytes_per_input_after": round((int(client.info("memory")["used_memory"]) - base_memory)
                                                 / args.texts, 2),
            "api_peak_rss_mb": round(sampler.peaks["api"] / 2**20, 1),
            "cli_peak_rss_mb": round(sampler.peaks["cli"] / 2**20, 1),
            "download_ndjson_mb_per_s": round(got / 2**20 / download_s, 1),
            "parquet_rows_from_store": table.num_rows if table is not None else None,
            "parquet_ids_from_store": table is not None and table.column("id").null_count == 0
            and args.format == "jsonl",
            "store_result_dir": str(work / "store" / "jobs" / job_id / "result") if s3 is None else s3.url("bench"),
            "small_job_idle_s": round(idle_small, 2),
            "small_job_during_big_s": round(busy_small, 2),
        }
        print(json.dumps(figures, indent=2))
        return 0
    finally:
        stack.close()
        redis.stop()
        if s3 is not None:
            s3.stop()


if __name__ == "__main__":
    sys.exit(main())
