"""Check the rerankers on an accelerator and time the Qwen3 last-position head. Prints figures; asserts nothing.

1. The tiny Qwen3-Reranker and cross-encoder (tests/fixtures) scored by the worker's engines on
   the chosen device, in float32 and bfloat16, against the CPU float32 reference formulas.
2. A random-weight Qwen3 with Qwen3-Reranker-0.6B's shape (151,669-token vocabulary): one batch
   scored three ways, timed and with peak memory: the worker's path (decoder, then the two
   lm_head rows for no/yes at the last position), transformers' `logits_to_keep=1`, and the
   model card's full `logits[:, -1]` (every position projected onto the whole vocabulary).

    python -m scripts.bench_rerank_heads [--device cuda] [--rows 32] [--length 512] [--small]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

from tests.fixtures import tiny_models
from worker.rerank.loading import reranker_class
from worker.rerank.qwen3 import Qwen3Reranker

QUERY = "what does the cat read?"
DOCS = ["The cat reads the document quickly.", "A dog ranks many passages.", "",
        "My friend writes a query with care. " * 3, "The library publishes a scientific paper before dinner."]
# Qwen3-Reranker-0.6B's config.json (the shape, not the weights).
QWEN3_06B = dict(vocab_size=151669, hidden_size=1024, num_hidden_layers=28, num_attention_heads=16,
                 num_key_value_heads=8, head_dim=128, intermediate_size=3072, max_position_embeddings=40960,
                 tie_word_embeddings=True, use_sliding_window=False, sliding_window=None)


def load(path: Path, device: torch.device, dtype: torch.dtype):
    config = AutoConfig.from_pretrained(path)
    return reranker_class(config)(str(path), config, AutoTokenizer.from_pretrained(path), device, dtype)


def check_tiny(workdir: Path, device: torch.device) -> None:
    for build, reference in ((tiny_models.build_tiny_qwen3_reranker, tiny_models.reference_qwen3_rerank_scores),
                             (tiny_models.build_tiny_cross_encoder, tiny_models.reference_cross_encoder_scores)):
        path = build(workdir / build.__name__)
        expected = np.array(reference(path, QUERY, DOCS))
        for dtype in (torch.float32, torch.bfloat16):
            model = load(path, device, dtype)
            scores = model.score_batch(model.tokenize(QUERY, DOCS, offset=0, instruction=None, truncate=False).rows)
            print(f"{model.kind:16s} {device.type} {str(dtype):15s} max |score - CPU fp32 reference| = "
                  f"{np.abs(scores[:, 0] - expected).max():.2e}  same order: "
                  f"{list(np.argsort(-scores[:, 0], kind='stable')) == list(np.argsort(-expected, kind='stable'))}")


def timed(fn, device: torch.device, repeats: int = 5):
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return out, (time.perf_counter() - started) / repeats * 1000, peak


def time_heads(workdir: Path, device: torch.device, rows: int, length: int, small: bool) -> None:
    shape = dict(QWEN3_06B, num_hidden_layers=2, hidden_size=256, intermediate_size=512) if small else QWEN3_06B
    tokenizer_dir = tiny_models.build_tiny_qwen3_reranker(workdir / "tokenizer")
    path = workdir / "qwen3-0.6b-shape"
    torch.manual_seed(0)
    with torch.device(device):
        Qwen3ForCausalLM(Qwen3Config(**shape)).to(torch.bfloat16).eval().save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tokenizer_dir / name).exists():
            shutil.copy(tokenizer_dir / name, path / name)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    ours = load(path, device, dtype)
    assert isinstance(ours, Qwen3Reranker)
    full = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="sdpa").to(device).eval()
    generator = torch.Generator().manual_seed(1)
    batch = [torch.randint(0, 800, (length,), generator=generator).tolist() for _ in range(rows)]
    ids = torch.tensor(batch, device=device)
    mask = torch.ones_like(ids)
    pair = [ours.no_id, ours.yes_id]

    @torch.inference_mode()
    def keep_one():
        logits = full(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits[:, -1, pair].float()
        return torch.softmax(logits, dim=-1)[:, 1].cpu().numpy()

    @torch.inference_mode()
    def card():
        logits = full(input_ids=ids, attention_mask=mask).logits[:, -1, :]
        return torch.softmax(torch.stack([logits[:, pair[0]], logits[:, pair[1]]], 1).float(), dim=-1)[:, 1].cpu().numpy()

    print(f"\nQwen3 {'(small) ' if small else ''}shape, vocab {shape['vocab_size']}, {rows} rows x {length} tokens, "
          f"{dtype}, {device}:")
    results = {}
    for label, fn in (("worker: decoder + 2 lm_head rows", lambda: ours.score_batch(batch)[:, 0]),
                      ("logits_to_keep=1", keep_one), ("model card: full logits", card)):
        scores, ms, peak = timed(fn, device)
        results[label] = scores
        print(f"  {label:34s} {ms:8.1f} ms/batch   peak {peak:6.2f} GiB")
    base = results["model card: full logits"]
    for label, scores in results.items():
        print(f"  max |{label} - model card| = {np.abs(scores - base).max():.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--small", action="store_true", help="a 2-layer model (a quick CPU run of the script)")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}")
    with tempfile.TemporaryDirectory() as tmp:
        check_tiny(Path(tmp), device)
        time_heads(Path(tmp), device, args.rows, args.length, args.small)


if __name__ == "__main__":
    main()
