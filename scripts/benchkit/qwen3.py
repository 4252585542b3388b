"""Qwen3-shaped checkpoints with random weights for the benchmarks, and their length mixes.

Weights do not change speed, so a random model of the right shape measures what a real one
would. The tokenizer is word-level over the benchmark texts' vocabulary (scripts/benchkit/texts.py)
plus punctuation, with <|endoftext|> appended and left padding as Qwen3-Embedding's: the
benchmark texts tokenize to about one token per word, 5-170 tokens, like ordinary prose.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from scripts.benchkit import texts as _texts

EOS = "<|endoftext|>"
PUNCTUATION = [".", "!", "?", ",", "'", '"', "-", ":", ";"]
# Qwen3-Embedding-0.6B's shape.
QWEN3_06B = dict(hidden_size=1024, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                 head_dim=128, intermediate_size=3072, vocab_size=151669)
# A small Qwen3-shaped model a 2-core CPU runs a 2,000-text job through in about a minute: the same
# proportions (intermediate 3x hidden, grouped query attention, 64-wide heads), a third of the width.
QWEN3_SMALL = dict(hidden_size=384, num_hidden_layers=4, num_attention_heads=6, num_key_value_heads=2,
                   head_dim=64, intermediate_size=1152)


def build_checkpoint(path: Path, shape: dict, device: torch.device, dtype: torch.dtype,
                     max_len: int = 32768) -> Path:
    """Save a random Qwen3Model and its word-level tokenizer where EmbeddingEngine can load them."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import AutoModel, PreTrainedTokenizerFast, Qwen3Config

    words = sorted(set(_texts._WORDS) | {w.capitalize() for w in _texts._WORDS})
    vocab = {EOS: 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(words + PUNCTUATION)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single=f"$A:0 {EOS}:0", special_tokens=[(EOS, 0)])
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS, padding_side="left",
                            model_max_length=max_len).save_pretrained(path)
    shape = {"vocab_size": max(len(vocab), 1024), **shape}
    config = Qwen3Config(**shape, max_position_embeddings=max_len, use_sliding_window=False, sliding_window=None,
                         bos_token_id=0, eos_token_id=0, pad_token_id=0)
    torch.manual_seed(0)
    with torch.device(device):  # initialise on the GPU when there is one: seconds instead of a minute
        model = AutoModel.from_config(config, dtype=dtype)
    model.save_pretrained(path)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return path


def document_lengths(count: int, low: int = 32, high: int = 4096, seed: int = 7) -> list[int]:
    """Token counts of a document mix: log-uniform between `low` and `high` (as many 32-64 as 2,048-4,096)."""
    rng = random.Random(seed)
    return [int(round(low * (high / low) ** rng.random())) for _ in range(count)]


def random_rows(lengths: list[int], vocab: int, seed: int = 1) -> list[list[int]]:
    """Rows of random token ids (2..vocab-1) with the given lengths, each ending in EOS as the tokenizer's do."""
    rng = random.Random(seed)
    return [[rng.randrange(2, vocab) for _ in range(n - 1)] + [0] for n in lengths]
