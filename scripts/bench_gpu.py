#!/usr/bin/env python3
"""GPU benchmark: the worker's engine and batcher versus a plain transformers forward, and MFU.

A Qwen3-0.6B-shaped model (hidden 1024, 28 layers, 16 heads, 8 kv heads, head_dim 128,
intermediate 3072, vocab 151669) with random weights in bf16 (weights do not change speed),
saved to a temp dir and loaded through the worker's normal `from_pretrained` path. For each
batch shape it times:

- plain: `model(input_ids, attention_mask)` on ids already on the GPU, synchronized per batch;
- engine: the same rows submitted to `worker.batcher.Batcher` driving
  `worker.engine.EmbeddingEngine.embed_batch` (host padding, pinned copy, forward, last-token
  pool, normalize, vectors back to the host): what a worker does per batch.

MFU = 2 x non-embedding parameters x tokens/s / peak dense bf16 FLOP/s (attention's own
FLOPs are left out, so it is a slight underestimate). Needs torch, transformers, numpy,
tokenizers and this repository; no download. `--tiny` runs a small fp32 config on the CPU to
check the script itself. Usage: `python scripts/bench_gpu.py [--tiny] [--seconds S]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers, processors  # noqa: E402
from transformers import AutoModel, PreTrainedTokenizerFast, Qwen3Config  # noqa: E402

from worker.batcher import Batcher  # noqa: E402
from worker.engine import EmbeddingEngine, pick_device, pick_dtype  # noqa: E402

QWEN3_06B = dict(hidden_size=1024, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                 head_dim=128, intermediate_size=3072, vocab_size=151669)
TINY = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=32, intermediate_size=256, vocab_size=1000)
# (rows, tokens per row): the default CUDA token budget, a larger one, and many short texts.
SHAPES = ((32, 512), (64, 512), (256, 128))
TINY_SHAPES = ((8, 64), (32, 32))
# Dense bf16 peak FLOP/s by GPU name (no sparsity), from the vendors' data sheets.
PEAK_BF16 = (("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("H800", 989e12), ("GH200", 989e12),
             ("A100", 312e12), ("L40S", 362e12), ("L4", 121e12), ("A10", 125e12), ("4090", 165e12))
EOS = "<|endoftext|>"


def build_checkpoint(path: Path, shape: dict, device: torch.device, dtype: torch.dtype) -> Path:
    """Save a random Qwen3Model and a minimal left-padding tokenizer that the engine can load."""
    vocab = {EOS: 0, "[UNK]": 1, **{f"w{i}": i + 2 for i in range(64)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single=f"$A:0 {EOS}:0", special_tokens=[(EOS, 0)])
    max_len = 32768
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS, padding_side="left",
                            model_max_length=max_len).save_pretrained(path)
    config = Qwen3Config(**shape, max_position_embeddings=max_len, use_sliding_window=False, sliding_window=None,
                         bos_token_id=0, eos_token_id=0, pad_token_id=0)
    torch.manual_seed(0)
    with torch.device(device):  # initialise on the GPU: seconds instead of a minute on the CPU
        model = AutoModel.from_config(config, dtype=dtype)
    model.save_pretrained(path)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return path


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
        model(input_ids=ids, attention_mask=mask).last_hidden_state
        sync(engine.device)  # a caller that uses the output waits for it, once per batch

    count, elapsed = time_loop(step, engine.device, seconds)
    return count * rows * length / elapsed


def engine_forward(engine: EmbeddingEngine, rows: int, length: int, seconds: float) -> float:
    """Tokens/s of the same rows through the batcher's forward thread and the engine."""
    rng = np.random.default_rng(1)
    batch = rng.integers(2, engine.vocab_size, size=(rows, length)).tolist()
    batcher = Batcher(engine.embed_batch, max_batch_tokens=rows * length, max_rows=rows, wait_s=0)
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
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        build_checkpoint(Path(tmp), shape, device, dtype)
        engine = EmbeddingEngine(tmp, device, dtype)  # the worker's own loading path
    engine.warmup()
    params = sum(p.numel() for p in engine.model.parameters())
    dense = params - engine.model.get_input_embeddings().weight.numel()
    print(f"model: {params / 1e6:.0f}M parameters ({dense / 1e6:.0f}M outside the embedding table), "
          f"attention={engine.model.config._attn_implementation}, loaded in {time.perf_counter() - started:.1f}s",
          flush=True)

    results = []
    print(f"{'batch':>12} {'plain tok/s':>13} {'engine tok/s':>13} {'engine/plain':>13} {'MFU plain':>10} {'MFU engine':>11}")
    for rows, length in shapes:
        plain = plain_forward(engine, rows, length, args.seconds)
        eng = engine_forward(engine, rows, length, args.seconds)
        mfu = [2 * dense * rate / peak if peak else None for rate in (plain, eng)]
        fmt = [f"{m:.1%}" if m is not None else "n/a" for m in mfu]
        print(f"{rows:>5}x{length:<6} {plain:>13,.0f} {eng:>13,.0f} {eng / plain:>13.3f} {fmt[0]:>10} {fmt[1]:>11}",
              flush=True)
        results.append(dict(rows=rows, length=length, plain_tokens_s=plain, engine_tokens_s=eng,
                            ratio=eng / plain, mfu_plain=mfu[0], mfu_engine=mfu[1]))
    if device.type == "cuda":
        print(f"peak memory: {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB; "
              f"peak bf16 taken as {peak / 1e12:.0f} TFLOP/s" if peak else "peak bf16 unknown for this GPU")
    print(f"total {time.perf_counter() - started:.0f}s")
    if args.json:
        args.json.write_text(json.dumps(dict(device=gpu, dtype=str(dtype), params=params, dense_params=dense,
                                             results=results), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
