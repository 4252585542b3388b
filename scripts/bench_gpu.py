"""GPU benchmark: the worker's engine and batcher versus a plain transformers forward, and MFU.

A Qwen3-0.6B-shaped model (hidden 1024, 28 layers, 16 heads, 8 kv heads, head_dim 128,
intermediate 3072, vocab 151669) with random weights in bf16 (weights do not change speed),
saved to a temp dir and loaded through the worker's normal `from_pretrained` path. For each
batch shape it times:

- plain: `model(input_ids, attention_mask)` on ids already on the GPU, synchronized per batch;
- engine: the same rows submitted to `worker.batcher.Batcher` driving
  `worker.engine.EmbeddingEngine.embed_batch` (host padding, pinned copy, forward, last-token
  pool, normalize, vectors back to the host): what a worker does per batch.

Then mixed lengths, where padding costs: the benchmark texts' length mix (scripts/benchkit/texts.py,
5-170 tokens) and a document mix (32-4,096 tokens, log-uniform), each as a bulk job through the
same Batcher (chunks of 32, 8 in flight) with the engine packed (EMBED_PACKED=auto: the packed
decoder forward, EMBED_ATTENTION's kernel) and padded (EMBED_PACKED=off), and a plain padded
transformers forward over the same rows sorted by length (as sentence-transformers' encode()
batches them). Real tokens/s and MFU for each. `--attention` compares kernels by hand.

MFU = 2 x non-embedding parameters x tokens/s / peak dense bf16 FLOP/s (attention's own
FLOPs are left out, so it is a slight underestimate). Needs torch, transformers, numpy,
tokenizers and this repository; no download. `--tiny` runs a small fp32 config on the CPU to
check the script itself. Usage: `python -m scripts.bench_gpu [--tiny] [--seconds S] [--attention K]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from embedserve import defaults
from embedserve.settings import Settings
from scripts.benchkit.engine_load import through_batcher
from scripts.benchkit.qwen3 import QWEN3_06B, build_checkpoint, document_lengths, random_rows
from scripts.benchkit.texts import mixed_texts
from worker.batcher import Batcher
from worker.engine import EmbeddingEngine, pad_rows, pick_device, pick_dtype
from worker.model_thread import ModelThread
from worker.token_budget import gpu_token_budget

TINY = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=32, intermediate_size=256, vocab_size=1000)
# (rows, tokens per row): the default CUDA token budget, a larger one, and many short texts.
SHAPES = ((32, 512), (64, 512), (256, 128))
TINY_SHAPES = ((8, 64), (32, 32))
# Mixed-length workloads: (name, rows); the tiny run takes a fraction of them, capped in length.
MIXED = (("texts 5-170", 16384), ("docs 32-4096", 1024))
# Dense bf16 peak FLOP/s by GPU name (no sparsity), from the vendors' data sheets.
PEAK_BF16 = (("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("H800", 989e12), ("GH200", 989e12),
             ("A100", 312e12), ("L40S", 362e12), ("L4", 121e12), ("A10", 125e12), ("4090", 165e12))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_loop(step, device: torch.device, seconds: float, warmup: int = 3) -> tuple[int, float]:
    """Run `step` for about `seconds` after warm-up; (iterations, elapsed seconds)."""
    for _ in range(warmup):
        step()
    sync(device)
    started, count = time.perf_counter(), 0
    while count < 3 or time.perf_counter() - started < seconds:
        step()
        count += 1
    sync(device)
    return count, time.perf_counter() - started


def plain_forward(engine: EmbeddingEngine, rows: int, length: int, seconds: float) -> float:
    """Tokens/s of a bare `model(...)` on ids already on the device."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(2, engine.vocab_size, (rows, length), generator=gen).to(engine.device)
    mask = torch.ones_like(ids)
    model = engine.model

    @torch.inference_mode()
    def step():
        _ = model(input_ids=ids, attention_mask=mask).last_hidden_state
        sync(engine.device)  # a caller that uses the output waits for it, once per batch

    count, elapsed = time_loop(step, engine.device, seconds)
    return count * rows * length / elapsed


def engine_forward(engine: EmbeddingEngine, rows: int, length: int, seconds: float, model_thread: ModelThread) -> float:
    """Tokens/s of the same rows through the batcher, its forwards on the engine's thread, as in the worker."""
    rng = np.random.default_rng(1)
    batch = rng.integers(2, engine.vocab_size, size=(rows, length)).tolist()
    batcher = Batcher(engine.embed_batch, max_batch_tokens=rows * length, max_rows=rows, wait_s=0,
                      model_thread=model_thread)
    batcher.start()
    try:
        def submit_many(n: int) -> None:
            subs = [batcher.submit(batch, priority=0, deadline=time.time() + 600) for _ in range(n)]
            for sub in subs:
                sub.future.result(600)

        submit_many(3)  # warm-up
        started, count = time.perf_counter(), 0
        while count < 3 or time.perf_counter() - started < seconds:
            submit_many(4)  # several queued at once, as under load: the thread never idles between them
            count += 4
        elapsed = time.perf_counter() - started
    finally:
        batcher.stop()
    return count * rows * length / elapsed


def mixed_rows(name: str, count: int, engine: EmbeddingEngine) -> list[list[int]]:
    """The rows of one mixed-length workload, in arrival order."""
    if name.startswith("texts"):
        return engine.tokenize(mixed_texts(count, seed=1234), offset=0, input_type="document", instruction=None,
                               truncate=True).rows
    lengths = [min(n, engine.max_length) for n in document_lengths(count)]
    return random_rows(lengths, engine.vocab_size)


def plain_sorted(engine: EmbeddingEngine, rows: list[list[int]], budget: int) -> float:
    """Seconds for a bare padded `model(...)` over `rows` sorted by length, batches of `budget` padded tokens."""
    ordered, batches, batch = sorted(rows, key=len, reverse=True), [], []
    for row in ordered:
        if batch and len(batch[0]) * (len(batch) + 1) > budget:
            batches.append(batch)
            batch = []
        batch.append(row)
    batches.append(batch)
    inputs = [tuple(torch.from_numpy(a).to(engine.device) for a in pad_rows(b, engine.pad_id, left=True))
              for b in batches]
    with torch.inference_mode():
        engine.model(input_ids=inputs[0][0], attention_mask=inputs[0][1])  # warm-up
        sync(engine.device)
        started = time.perf_counter()
        for ids, mask in inputs:
            _ = engine.model(input_ids=ids, attention_mask=mask).last_hidden_state
        sync(engine.device)
    return time.perf_counter() - started


def mixed_workloads(engines: dict, tiny: bool, dense: int, peak: float | None, model_thread: ModelThread) -> list[dict]:
    """Tokens/s and MFU of each mixed workload: engine packed, engine padded, plain padded forward (sorted)."""
    results = []
    print(f"\n{'workload':>14} {'rows':>6} {'tokens':>10} {'packed tok/s':>13} {'padded tok/s':>13} "
          f"{'plain tok/s':>12} {'packed/padded':>14} {'MFU packed':>11} {'MFU padded':>11} {'MFU plain':>10}")
    for name, count in MIXED:
        count = count // 64 if tiny else count
        first = next(iter(engines.values()))
        rows = mixed_rows(name, count, first)
        if tiny:
            rows = [row[:256] for row in rows]
        tokens = sum(map(len, rows))
        rates = {}
        for label, engine in engines.items():
            budget = Settings().batch_tokens(engine.device.type, packed=not engine.pads_batches,
                                             gpu_budget=gpu_token_budget(engine))
            bulk = budget if engine.device.type == "cuda" else defaults.CPU_BULK_BATCH_TOKENS
            through_batcher(engine, rows[:64], "job", budget, bulk, model_thread)  # warm-up (lazy compiles, allocator)
            rates[label] = tokens / through_batcher(engine, rows, "job", budget, bulk, model_thread)
        padded_engine = engines["padded"]
        rates["plain"] = tokens / model_thread.call(plain_sorted, padded_engine, rows, Settings().batch_tokens(
            padded_engine.device.type, packed=False, gpu_budget=gpu_token_budget(padded_engine)))
        mfu = {k: (2 * dense * v / peak if peak else None) for k, v in rates.items()}
        fmt = {k: f"{v:.1%}" if v is not None else "n/a" for k, v in mfu.items()}
        print(f"{name:>14} {len(rows):>6} {tokens:>10,} {rates['packed']:>13,.0f} {rates['padded']:>13,.0f} "
              f"{rates['plain']:>12,.0f} {rates['packed'] / rates['padded']:>14.2f} {fmt['packed']:>11} "
              f"{fmt['padded']:>11} {fmt['plain']:>10}", flush=True)
        results.append(dict(workload=name, rows=len(rows), tokens=tokens, tokens_s=rates, mfu=mfu))
    return results


def peak_flops(device: torch.device, override_tflops: float | None) -> tuple[float | None, str]:
    if override_tflops:
        return override_tflops * 1e12, "given"
    if device.type != "cuda":
        return None, "cpu"
    name = torch.cuda.get_device_name(device)
    for key, peak in PEAK_BF16:
        if key in name:
            return peak, name
    return None, name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="small fp32 config on the CPU (checks the script)")
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per measurement")
    parser.add_argument("--peak-tflops", type=float, default=None, help="override the dense bf16 peak")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--attention", default="auto", help="EMBED_ATTENTION for the packed engine")
    parser.add_argument("--no-mixed", action="store_true", help="only the uniform shapes")
    args = parser.parse_args()

    device = torch.device("cpu") if args.tiny else pick_device("auto")
    if not args.tiny and device.type != "cuda":
        print("no CUDA device: run with --tiny to check the script on the CPU", file=sys.stderr)
        return 2
    dtype = pick_dtype("float32" if args.tiny else "auto", device)
    shape, shapes = (TINY, TINY_SHAPES) if args.tiny else (QWEN3_06B, SHAPES)
    peak, gpu = peak_flops(device, args.peak_tflops)
    print(f"device: {gpu} | torch {torch.__version__} | dtype {dtype} | config {json.dumps(shape)}", flush=True)

    started = time.perf_counter()
    # Every load and forward on one thread, as in the worker (worker/model_thread.py): on a CPU (--tiny) a
    # second thread running forwards would make a second OpenMP pool.
    model_thread = ModelThread()
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        build_checkpoint(Path(tmp), shape, device, dtype)
        # The worker's own loading path, packed (EMBED_PACKED=on: what auto does for Qwen3) and padded.
        engines = {"packed": model_thread.call(EmbeddingEngine, tmp, device, dtype, packed="on",
                                               attention=args.attention),
                   "padded": model_thread.call(EmbeddingEngine, tmp, device, dtype, packed="off")}
    for engine in engines.values():
        model_thread.call(engine.warmup)
    engine = engines["padded"]
    print(f"packed engine: {type(engines['packed'].packed).__name__}, attention kernel "
          f"{getattr(engines['packed'].packed, 'kernel', '-')}", flush=True)
    params = sum(p.numel() for p in engine.model.parameters())
    dense = params - engine.model.get_input_embeddings().weight.numel()
    print(f"model: {params / 1e6:.0f}M parameters ({dense / 1e6:.0f}M outside the embedding table), "
          f"attention={engine.model.config._attn_implementation}, loaded in {time.perf_counter() - started:.1f}s",
          flush=True)

    results = []
    print(f"{'batch':>12} {'plain tok/s':>13} {'padded eng':>13} {'packed eng':>13} {'packed/plain':>13} "
          f"{'MFU plain':>10} {'MFU padded':>11} {'MFU packed':>11}")
    for rows, length in shapes:
        plain = model_thread.call(plain_forward, engine, rows, length, args.seconds)
        padded = engine_forward(engines["padded"], rows, length, args.seconds, model_thread)
        packed = engine_forward(engines["packed"], rows, length, args.seconds, model_thread)
        mfu = [2 * dense * rate / peak if peak else None for rate in (plain, padded, packed)]
        fmt = [f"{m:.1%}" if m is not None else "n/a" for m in mfu]
        print(f"{rows:>5}x{length:<6} {plain:>13,.0f} {padded:>13,.0f} {packed:>13,.0f} {packed / plain:>13.3f} "
              f"{fmt[0]:>10} {fmt[1]:>11} {fmt[2]:>11}", flush=True)
        results.append(dict(rows=rows, length=length, plain_tokens_s=plain, engine_padded_tokens_s=padded,
                            engine_packed_tokens_s=packed, mfu_plain=mfu[0], mfu_padded=mfu[1], mfu_packed=mfu[2]))
    mixed = [] if args.no_mixed else mixed_workloads(engines, args.tiny, dense, peak, model_thread)
    if device.type == "cuda":
        print(f"peak memory: {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB; "
              f"peak bf16 taken as {peak / 1e12:.0f} TFLOP/s" if peak else "peak bf16 unknown for this GPU")
    print(f"total {time.perf_counter() - started:.0f}s")
    if args.json:
        args.json.write_text(json.dumps(dict(device=gpu, dtype=str(dtype), params=params, dense_params=dense,
                                             attention=getattr(engines["packed"].packed, "kernel", None),
                                             results=results, mixed=mixed), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
