#!/usr/bin/env python3
"""GPU correctness check (not a test: CI has no GPU). Prints figures and exits non-zero on a mismatch.

Builds the tiny random Qwen3 from the test fixtures, embeds mixed-length texts through the
worker's engine and batcher on CUDA in bf16 (the production default), and compares with the
model card's reference code in fp32 on the CPU. Also checks that an out-of-memory batch is split
and retried instead of failing: it caps the CUDA allocator so a large batch really runs out.

    python scripts/gpu_check.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from tests.fixtures.tiny_models import build_tiny_qwen3_embedding, reference_qwen3_embeddings  # noqa: E402
from worker.batcher import Batcher  # noqa: E402
from worker.engine import EmbeddingEngine, pick_dtype  # noqa: E402

MIN_COSINE_BF16 = 0.99  # bf16 keeps ~3 significant digits; fp32 on CPU is the reference


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
        ok = check_oom_split(engine) and ok
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


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
