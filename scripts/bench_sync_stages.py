"""Benchmark: where a sync request's time goes, stage by stage, against the raw model in the same run.

Starts a private redis-server, one `python -m worker` and one `python -m api` (tests/stack.py),
measures the raw model (sentence-transformers in this process) and the stack on the same texts,
and prints, for one client sending one text at a time and for `--clients` such clients, the mean
seconds of each stage of the sync path as the API's /metrics histogram
`embedserve_sync_stage_seconds` counted them during that phase (docs/observability.md names the
stages). A benchmark, not a test: figures are printed, nothing is asserted.

    .venv/bin/python -m scripts.bench_sync_stages [--singles 300] [--texts 1000] [--clients 32] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import re
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from scripts.bench import MODEL_NAME, default_model_dir  # noqa: E402
from scripts.benchkit import load  # noqa: E402
from scripts.benchkit.texts import mixed_texts  # noqa: E402

STAGE_METRIC = "embedserve_sync_stage_seconds"
_SAMPLE = re.compile(rf'^{STAGE_METRIC}_(sum|count)\{{stage="([a-z_]+)"\}} (\S+)$')


def stage_totals(url: str) -> dict[str, tuple[float, float]]:
    """stage -> (seconds summed, count) from the API's /metrics; empty when the API exports no stages."""
    import requests

    totals: dict[str, list[float]] = {}
    for line in requests.get(url + "/metrics", timeout=10).text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            kind, stage, value = match.groups()
            totals.setdefault(stage, [0.0, 0.0])[0 if kind == "sum" else 1] += float(value)
    return {stage: (s, c) for stage, (s, c) in totals.items()}


def stage_means(before: dict, after: dict) -> dict[str, float]:
    """Mean seconds per stage between two scrapes, in the order the API exports them."""
    means = {}
    for stage, (total, count) in after.items():
        total0, count0 = before.get(stage, (0.0, 0.0))
        if count > count0:
            means[stage] = (total - total0) / (count - count0)
    return means


def print_stages(title: str, means: dict[str, float], client_mean_s: float | None = None) -> None:
    """The stages' means; with the client's mean latency, what lies outside the account (HTTP in and out)."""
    if not means:
        print(f"  {title}: no stage account (this API exports no {STAGE_METRIC})")
        return
    print(f"  {title}, mean ms per request:")
    for stage, seconds in means.items():
        print(f"    {stage:<14} {seconds * 1e3:7.2f}")
    total = sum(means.values())
    print(f"    {'(sum)':<14} {total * 1e3:7.2f}")
    if client_mean_s is not None:
        print(f"    {'(outside)':<14} {(client_mean_s - total) * 1e3:7.2f}  client's mean {client_mean_s * 1e3:.2f} "
              "less the sum: gunicorn's accept, parse and write, and the client")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--singles", type=int, default=300, help="sequential single-text requests per round")
    parser.add_argument("--texts", type=int, default=1000, help="texts sent by the concurrent clients per round")
    parser.add_argument("--clients", type=int, default=32, help="concurrent single-text clients")
    parser.add_argument("--repeat", type=int, default=2, help="rounds (raw and stack alternate; best kept)")
    parser.add_argument("--env", action="append", default=[], metavar="EMBED_X=VALUE",
                        help="a setting for our worker and API (repeatable)")
    args = parser.parse_args()
    model_dir = default_model_dir()
    texts = mixed_texts(args.texts, seed=1234)
    singles = mixed_texts(args.singles, seed=4321)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; model {model_dir}; "
          f"{len(singles)} single-text probes, {len(texts)} texts for {args.clients} clients", flush=True)

    from scripts.benchkit.raw import RawModel
    from scripts.benchkit.servers import API_KEY, OurStack, settle

    raw = RawModel(model_dir)
    raw.best_batch = max(raw.pick_batch(texts[:512]).items(), key=lambda kv: kv[1])[0]
    stack = OurStack(model_dir, MODEL_NAME, **dict(item.split("=", 1) for item in args.env))
    best = {"raw_p50": float("inf"), "raw_tps": 0.0, "stack_p50": float("inf"), "stack_tps": 0.0}
    try:
        settle()
        target = load.Target("stack", stack.url, api_key=API_KEY, model=MODEL_NAME, extra={"truncate": True})
        for text in singles[:20]:
            load.Client(target).embed([text])
        for round_ in range(1, args.repeat + 1):
            print(f"\nround {round_} (load average {os.getloadavg()[0]:.2f}):", flush=True)
            raw_lat = load.summary(raw.single_latencies(singles))
            raw_tps = raw.throughput(texts)
            print(f"  raw: single encode([text]) p50 {raw_lat['p50_ms']:.1f} ms, mean {raw_lat['mean_ms']:.1f} ms, "
                  f"p95 {raw_lat['p95_ms']:.1f} ms; "
                  f"encode(batch_size={raw.best_batch}) {raw_tps:.1f} texts/s", flush=True)
            scrape = stage_totals(stack.url)
            lat = load.summary(load.sequential(target, singles))
            after = stage_totals(stack.url)
            print(f"  stack, one client: p50 {lat['p50_ms']:.1f} ms ({lat['p50_ms'] - raw_lat['p50_ms']:+.1f} ms "
                  f"over raw), mean {lat['mean_ms']:.1f} ms, p95 {lat['p95_ms']:.1f} ms", flush=True)
            print_stages("one client", stage_means(scrape, after), lat["mean_ms"] / 1e3)
            scrape = after
            tps = load.concurrent(target, texts, args.clients)
            after = stage_totals(stack.url)
            print(f"  stack, {args.clients} clients: {tps:.1f} texts/s = {tps / raw_tps:.2f}x raw", flush=True)
            print_stages(f"{args.clients} clients", stage_means(scrape, after))
            best["raw_p50"] = min(best["raw_p50"], raw_lat["p50_ms"])
            best["raw_tps"] = max(best["raw_tps"], raw_tps)
            best["stack_p50"] = min(best["stack_p50"], lat["p50_ms"])
            best["stack_tps"] = max(best["stack_tps"], tps)
    finally:
        stack.close()
        raw.close()
    print(f"\nbest of {args.repeat}: single p50 raw {best['raw_p50']:.1f} ms, stack {best['stack_p50']:.1f} ms "
          f"({best['stack_p50'] - best['raw_p50']:+.1f} ms; target <= +5 ms); {args.clients} clients "
          f"{best['stack_tps']:.1f} texts/s = {best['stack_tps'] / best['raw_tps']:.2f}x raw {best['raw_tps']:.1f} "
          f"(target >= 0.8x); load average {os.getloadavg()[0]:.2f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
