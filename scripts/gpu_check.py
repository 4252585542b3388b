"""GPU correctness check (not a test: CI has no GPU). Prints figures and exits non-zero on a mismatch.

Builds the tiny random Qwen3 from the test fixtures, embeds mixed-length texts through the
worker's engine and batcher on CUDA in bf16 (the production default), and compares with the
model card's reference code in fp32 on the CPU. Then the packed decoder forward against the
padded one on CUDA in bf16, for every attention kernel this machine offers (sdpa_groups, flex,
flash_varlen when flash_attn is installed), embeddings and the Qwen3 reranker's scores. Also
checks that an out-of-memory batch is split and retried instead of failing (with the packed
forward, the default for Qwen3 on CUDA): it caps the CUDA allocator so a large batch really runs out.

    python -m scripts.gpu_check
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tests.fixtures.tiny_models import build_tiny_qwen3_embedding, build_tiny_qwen3_reranker, reference_qwen3_embeddings
from worker.batcher import Batcher
from worker.engine import EmbeddingEngine, pick_dtype
from worker.packed.decoder import flash_attn_available

MIN_COSINE_BF16 = 0.99  # bf16 keeps ~3 significant digits; fp32 on CPU is the reference
MIN_COSINE_PACKED_BF16 = 0.999  # packed against padded, both bf16 on the GPU (the bar)


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device; nothing to check")
        return 0
    device = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    texts = [("word " * n).strip() for n in (1, 3, 17, 60, 120, 5, 90)] + ["Beijing is the capital of China."]
    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_qwen3_embedding(Path(tmp) / "qwen")
        dtype = pick_dtype("auto", device)
        engine = EmbeddingEngine(str(path), device, dtype)
        batcher = Batcher(engine.embed_batch, max_batch_tokens=4096,
                          is_oom=lambda exc: isinstance(exc, torch.cuda.OutOfMemoryError))
        batcher.start()
        try:
            rows = engine.tokenize(texts, offset=0, input_type="document", instruction=None, truncate=False).rows
            ours = batcher.submit(rows, priority=0, deadline=time.time() + 60).future.result(60)
            reference = reference_qwen3_embeddings(path, texts)
            cos = (ours * reference).sum(axis=1)
            print(f"dtype {dtype}: cosine to fp32 reference min={cos.min():.5f} mean={cos.mean():.5f}")
            ok = bool(cos.min() >= MIN_COSINE_BF16)
        finally:
            batcher.stop()
        ok = check_packed_kernels(path, Path(tmp)) and ok
        ok = check_oom_split(engine) and ok
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def check_packed_kernels(path: Path, tmp: Path, device: str = "cuda", dtype: torch.dtype = torch.bfloat16,
                         kernels: list[str] | None = None) -> bool:
    """Packed against padded on CUDA in bf16, per attention kernel: embeddings of mixed lengths, reranker scores.

    (`device`, `dtype` and `kernels` let the check itself be tried on a CPU.)
    """
    import random

    from transformers import AutoConfig, AutoTokenizer

    from worker.rerank.qwen3 import Qwen3Reranker

    device, ok = torch.device(device), True
    rng = random.Random(3)
    words = "the cat reads a document about the river map with great enthusiasm".split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.choice([1, 2, 5, 20, 80, 200, 400]))) for _ in range(48)]
    padded = EmbeddingEngine(str(path), device, dtype, packed="off")
    rows = padded.tokenize(texts, offset=0, input_type="query", instruction=None, truncate=True).rows
    reference = padded.embed_batch(rows)
    kernels = kernels or ["sdpa_groups", "flex"] + (["flash_varlen"] if flash_attn_available() else [])
    reranker_path = build_tiny_qwen3_reranker(tmp / "reranker")
    config, tokenizer = AutoConfig.from_pretrained(reranker_path), AutoTokenizer.from_pretrained(reranker_path)
    plain_reranker = Qwen3Reranker(str(reranker_path), config, tokenizer, device, dtype, packed="off")
    pairs = plain_reranker.tokenize("where is the river?", texts[:16], offset=0, instruction=None, truncate=True).rows
    plain_scores = plain_reranker.score_batch(pairs)[:, 0]
    for kernel in kernels:
        try:
            engine = EmbeddingEngine(str(path), device, dtype, packed="on", attention=kernel)
            cos = (engine.embed_batch(rows) * reference).sum(axis=1)
            reranker = Qwen3Reranker(str(reranker_path), config, tokenizer, device, dtype, packed="on",
                                     attention=kernel)
            diff = float(np.abs(reranker.score_batch(pairs)[:, 0] - plain_scores).max())
        except Exception as exc:  # noqa: BLE001 - report, do not crash the check
            print(f"packed {kernel}: FAILED with {type(exc).__name__}: {exc}")
            ok = False
            continue
        passed = bool(cos.min() >= MIN_COSINE_PACKED_BF16 and diff < 0.02)
        print(f"packed {kernel} vs padded, bf16, {len(rows)} rows of {min(map(len, rows))}-{max(map(len, rows))} "
              f"tokens: cosine min={cos.min():.5f} mean={cos.mean():.5f}; reranker max |score diff| {diff:.4f} "
              f"{'ok' if passed else 'MISMATCH'}")
        ok = ok and passed
    return ok


def check_oom_split(engine: EmbeddingEngine) -> bool:
    """Cap the allocator so a big batch fails, and check the batcher splits it and succeeds."""
    sizes: list[int] = []

    def counting_forward(rows):
        sizes.append(len(rows))
        return engine.embed_batch(rows)

    batcher = Batcher(counting_forward, max_batch_tokens=512 * 512, max_rows=512,
                      is_oom=lambda exc: isinstance(exc, torch.cuda.OutOfMemoryError))
    batcher.start()
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    # The cap applies to PyTorch's allocator alone (not the CUDA context), so start from what it
    # holds now and allow 48 MiB more: one 512 x 512 x 128 activation of the MLP is 64 MiB in bf16.
    torch.cuda.set_per_process_memory_fraction((torch.cuda.memory_reserved() + 48 * 2**20) / total)
    rows = [[5] * 512 for _ in range(512)]
    try:
        out = batcher.submit(rows, priority=0, deadline=time.time() + 120).future.result(120)
        same = np.allclose(out[0], out[-1], atol=1e-2)
        print(f"OOM split: forward batch sizes {sizes[:12]}{'...' if len(sizes) > 12 else ''}; "
              f"{out.shape[0]} rows embedded; identical rows agree: {same}")
        return bool(out.shape == (512, engine.dim) and same and len(sizes) > 1)
    except Exception as exc:  # noqa: BLE001 - report, do not crash the check
        print(f"OOM split: FAILED with {type(exc).__name__}: {exc}; batch sizes tried {sizes[:12]}")
        return False
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        batcher.stop()


if __name__ == "__main__":
    sys.exit(main())
