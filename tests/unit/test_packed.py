"""The packed (padding-free) forward equals the model's own padded forward, row for row."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import (
    BertConfig,
    BertModel,
    Qwen3Config,
    RobertaConfig,
    RobertaModel,
    XLMRobertaConfig,
    XLMRobertaModel,
)

from worker.engine import _pool, pad_rows
from worker.packed.encoder import PackedEncoder, PackedRows, _AttentionLayout, pool_packed, unsupported_reason

SMALL = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
             max_position_embeddings=80)
POOLING = ("mean", "cls", "max", "lasttoken", "mean_sqrt_len")


def tiny(kind: str):
    torch.manual_seed(0)
    if kind == "bert":
        return BertModel(BertConfig(**SMALL)).eval()
    if kind == "roberta":  # positions start after padding_idx (1), unlike BERT's
        return RobertaModel(RobertaConfig(**SMALL, pad_token_id=1)).eval()
    return XLMRobertaModel(XLMRobertaConfig(**SMALL, pad_token_id=1)).eval()


def mixed_rows(count: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    lengths = [rng.choice([1, 2, 5, 9, 17, 33, 60]) for _ in range(count)]
    return [[rng.randrange(5, 120) for _ in range(n)] for n in lengths]


def padded_reference(model, rows: list[list[int]], mode: str) -> torch.Tensor:
    pad = model.config.pad_token_id
    ids, mask = (torch.from_numpy(a) for a in pad_rows(rows, pad, left=False))
    hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    return _pool(mode, hidden, mask, False)


@pytest.mark.parametrize("kind", ["bert", "roberta", "xlm-roberta"])
@torch.inference_mode()
def test_packed_equals_padded_for_every_pooling(kind):
    model = tiny(kind)
    encoder = PackedEncoder(model)  # fuses q/k/v: the padded reference below also runs on the fused views
    rows = mixed_rows(24, seed=1) + [[7] * 33, [8] * 33]  # two equal lengths: a group without a mask
    packed = PackedRows.build(rows, torch.device("cpu"))
    hidden = encoder.forward(packed)
    assert hidden.shape == (sum(map(len, rows)), SMALL["hidden_size"])
    for mode in POOLING:
        ours = packed.unsort(pool_packed(mode, hidden, packed))
        torch.testing.assert_close(ours, padded_reference(model, rows, mode), atol=2e-5, rtol=1e-4)


@torch.inference_mode()
def test_one_row_and_caller_order_are_kept():
    model = tiny("bert")
    encoder = PackedEncoder(model)
    rows = mixed_rows(10, seed=2)
    packed = PackedRows.build(rows, torch.device("cpu"))
    together = packed.unsort(pool_packed("mean", encoder.forward(packed), packed))
    for i, row in enumerate(rows):
        alone = PackedRows.build([row], torch.device("cpu"))
        torch.testing.assert_close(together[i], pool_packed("mean", encoder.forward(alone), alone)[0],
                                   atol=2e-5, rtol=1e-4)


def test_rows_of_very_different_lengths_attend_in_separate_groups():
    packed = PackedRows.build([[1] * 60, [1] * 5, [1] * 58, [1] * 4, [1] * 30], torch.device("cpu"))
    groups = _AttentionLayout(packed).groups
    assert [(g.rows, g.longest) for g in groups] == [(2, 60), (1, 30), (2, 5)]
    assert sum(g.tokens for g in groups) == 157


def test_only_bert_family_encoders_are_packed():
    assert unsupported_reason(tiny("bert")) is None
    relative = BertModel(BertConfig(**SMALL, position_embedding_type="relative_key"))
    assert "relative_key" in unsupported_reason(relative)
    qwen = Qwen3Config(vocab_size=120, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                       num_key_value_heads=2, intermediate_size=64, head_dim=8)
    from transformers import Qwen3Model

    assert "qwen3" in unsupported_reason(Qwen3Model(qwen))
    with pytest.raises(ValueError, match="cannot pack"):
        PackedEncoder(Qwen3Model(qwen))


@torch.inference_mode()
def test_the_pause_hook_runs_between_layers_and_changes_nothing():
    model = tiny("bert")
    encoder = PackedEncoder(model)
    packed = PackedRows.build(mixed_rows(6, seed=3), torch.device("cpu"))
    calls = []
    paused = encoder.forward(packed, pause=lambda: calls.append(1))
    assert len(calls) == SMALL["num_hidden_layers"]
    torch.testing.assert_close(paused, encoder.forward(packed))
