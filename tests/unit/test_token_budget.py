"""The GPU token budget sized from free memory (worker/token_budget.py), on numbers."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen3Config

from embedserve.settings import Settings
from worker.token_budget import MAX_TOKENS, MIN_TOKENS, ModelShape, bytes_per_token, gpu_token_budget, token_budget

GIB = 2**30
QWEN3_06B = ModelShape(hidden=1024, intermediate=3072, heads=16, kv_heads=8, head_dim=128, max_length=32768)
QWEN3_8B = ModelShape(hidden=4096, intermediate=12288, heads=32, kv_heads=8, head_dim=128, max_length=32768)


def test_bytes_per_token_of_the_qwen3_shapes():
    # 8 x hidden + 4 x intermediate + 3 x (heads + 2 kv heads) x head_dim elements, 2 bytes each in bf16.
    assert bytes_per_token(QWEN3_06B, 2, padded=False) == (8 * 1024 + 4 * 3072 + 3 * 4096) * 2 == 64 * 1024
    assert bytes_per_token(QWEN3_8B, 2, padded=False) == (8 * 4096 + 4 * 12288 + 3 * 6144) * 2
    # Padded: one mask byte per key of the longest row.
    assert bytes_per_token(QWEN3_8B, 2, padded=True) == bytes_per_token(QWEN3_8B, 2, padded=False) + 32768


@pytest.mark.parametrize("free_gib,shape,padded,expected", [
    (130, QWEN3_06B, False, MAX_TOKENS),  # a 0.6B model on an H200: capped, one pass stays short
    (6.5, QWEN3_8B, False, 24320),  # an 8B model on a 24 GB card (16 GB of weights): 0.7 x 6.5 GiB / 196 KiB
    (6.5, QWEN3_8B, True, 20736),  # padded rows also hold the attention mask
    (0.05, QWEN3_8B, False, MIN_TOKENS),  # almost nothing free: the floor (the batcher splits on OOM)
])
def test_budget_fills_the_free_memory_within_bounds(free_gib, shape, padded, expected):
    budget = token_budget(int(free_gib * GIB), shape, 2, padded)
    assert budget == expected
    assert budget % 256 == 0
    if MIN_TOKENS < budget < MAX_TOKENS:
        assert budget * bytes_per_token(shape, 2, padded) <= 0.7 * free_gib * GIB


def test_shape_is_read_from_a_config():
    config = Qwen3Config(hidden_size=1024, intermediate_size=3072, num_attention_heads=16, num_key_value_heads=8,
                         head_dim=128)
    assert ModelShape.of(config, 32768) == QWEN3_06B


def test_no_budget_without_cuda():
    class Engine:
        device = torch.device("cpu")

    assert gpu_token_budget(Engine()) is None


def test_a_set_budget_always_wins():
    assert Settings.from_env({}).batch_tokens("cuda", packed=True, gpu_budget=40960) == 40960
    assert Settings.from_env({}).batch_tokens("cuda", packed=True, gpu_budget=None) == 16384
    assert Settings.from_env({"EMBED_MAX_BATCH_TOKENS": "4096"}).batch_tokens("cuda", gpu_budget=40960) == 4096
    assert Settings.from_env({}).batch_tokens("cpu", packed=True, gpu_budget=40960) == 2048
