"""The packed decoder forward (Qwen3 family) equals the model's own padded forward, row for row, on every path."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    AutoTokenizer,
    BertConfig,
    BertModel,
    LlamaConfig,
    LlamaModel,
    Qwen2Config,
    Qwen2Model,
    Qwen3Config,
    Qwen3Model,
)

from embedserve.defaults import DEFAULT_QUERY_INSTRUCTION
from embedserve.settings import ConfigError
from tests.fixtures import tiny_models
from worker.embedding_service import truncate_dimensions
from worker.engine import EmbeddingEngine, _pool, pad_rows
from worker.packed.choice import choose_packed_forward
from worker.packed.decoder import (
    PackedDecoder,
    decoder_unsupported_reason,
    flash_attn_available,
    flex_bucket,
    resolve_kernel,
)
from worker.packed.encoder import PackedEncoder
from worker.packed.rows import PackedRows, pool_packed
from worker.rerank.qwen3 import Qwen3Reranker

CPU = torch.device("cpu")
VOCAB = 300
SHAPE = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             intermediate_size=128, max_position_embeddings=512, pad_token_id=0)
POOLING = ("lasttoken", "mean", "cls", "max", "mean_sqrt_len")


def tiny(kind: str, dtype: torch.dtype = torch.float32):
    torch.manual_seed(0)
    if kind == "qwen3":
        model = Qwen3Model(Qwen3Config(**SHAPE, head_dim=16, use_sliding_window=False, sliding_window=None))
    elif kind == "qwen2":  # bias on query/key/value, no q/k norms
        model = Qwen2Model(Qwen2Config(**SHAPE, use_sliding_window=False))
    else:
        model = LlamaModel(LlamaConfig(**SHAPE))
    model.config._attn_implementation = "sdpa"  # what the engine loads (worker/engine.py)
    return model.to(dtype).eval()


def mixed_rows(count: int, seed: int, lengths=(1, 2, 3, 7, 16, 40, 97, 180, 301)) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(1, VOCAB) for _ in range(rng.choice(lengths))] for _ in range(count)]


def padded_reference(model, rows, mode: str) -> torch.Tensor:
    """The engine's padded path: the model's own forward (left padding for last-token pooling), its pooling."""
    left = mode == "lasttoken"
    ids, mask = (torch.from_numpy(a) for a in pad_rows(rows, 0, left=left))
    hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    return _pool(mode, hidden, mask, left)


def packed_pooled(decoder: PackedDecoder, rows, mode: str) -> torch.Tensor:
    packed = PackedRows.build(rows, CPU)
    return packed.unsort(pool_packed(mode, decoder.forward(packed), packed))


def cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a.float(), b.float(), dim=-1)


@pytest.mark.parametrize("kind", ["qwen3", "qwen2", "llama"])
@torch.inference_mode()
def test_packed_equals_padded_for_every_pooling(kind):
    model = tiny(kind)
    decoder = PackedDecoder(model)  # fuses q/k/v and gate/up: the padded reference runs on the fused views
    rows = mixed_rows(24, seed=1) + [[7] * 40, [8] * 40]  # two equal lengths: a group without padding
    packed = PackedRows.build(rows, CPU)
    hidden = decoder.forward(packed)
    assert hidden.shape == (sum(map(len, rows)), SHAPE["hidden_size"])
    for mode in POOLING:
        ours, reference = packed.unsort(pool_packed(mode, hidden, packed)), padded_reference(model, rows, mode)
        assert cosines(ours, reference).min() >= 0.9999, mode
        torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-3)


@torch.inference_mode()
def test_bf16_packed_matches_padded():
    model = tiny("qwen3", torch.bfloat16)
    rows = mixed_rows(16, seed=2)
    ours = packed_pooled(PackedDecoder(model), rows, "lasttoken")
    assert ours.dtype == torch.bfloat16
    assert cosines(ours, padded_reference(model, rows, "lasttoken")).min() >= 0.999


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")  # unfused on a CPU: expected
@torch.inference_mode()
def test_flex_attention_kernel_matches_the_padded_forward():
    model = tiny("qwen3")
    rows = mixed_rows(8, seed=3, lengths=(1, 3, 9, 20, 33))  # few tokens: unfused flex on a CPU is tokens^2
    ours = packed_pooled(PackedDecoder(model, "flex"), rows, "lasttoken")
    assert cosines(ours, padded_reference(model, rows, "lasttoken")).min() >= 0.9999
    torch.testing.assert_close(ours, packed_pooled(PackedDecoder(model), rows, "lasttoken"), atol=1e-5, rtol=1e-4)
    assert [flex_bucket(n) for n in (1, 128, 129, 3000)] == [128, 128, 256, 4096]


@pytest.mark.skipif(not (torch.cuda.is_available() and flash_attn_available()), reason="needs CUDA and flash_attn")
@torch.inference_mode()
def test_flash_varlen_kernel_matches_the_padded_forward():
    model = tiny("qwen3", torch.bfloat16).cuda()
    rows = mixed_rows(16, seed=4)
    packed = PackedRows.build(rows, torch.device("cuda"))
    ours = packed.unsort(pool_packed("lasttoken", PackedDecoder(model, "flash_varlen").forward(packed), packed))
    ids, mask = (torch.from_numpy(a).cuda() for a in pad_rows(rows, 0, left=True))
    reference = model(input_ids=ids, attention_mask=mask).last_hidden_state[:, -1]
    assert cosines(ours, reference).min() >= 0.999


@torch.inference_mode()
def test_each_row_alone_equals_the_row_in_a_batch():
    decoder = PackedDecoder(tiny("qwen3"))
    rows = mixed_rows(10, seed=5)
    together = packed_pooled(decoder, rows, "lasttoken")
    for i, row in enumerate(rows):
        torch.testing.assert_close(together[i], packed_pooled(decoder, [row], "lasttoken")[0], atol=2e-5, rtol=1e-4)


@torch.inference_mode()
def test_the_pause_hook_runs_between_layers_and_changes_nothing():
    decoder = PackedDecoder(tiny("qwen3"))
    packed = PackedRows.build(mixed_rows(6, seed=6), CPU)
    calls = []
    paused = decoder.forward(packed, pause=lambda: calls.append(1))
    assert len(calls) == SHAPE["num_hidden_layers"]
    torch.testing.assert_close(paused, decoder.forward(packed))


def test_which_models_run_the_packed_decoder():
    assert decoder_unsupported_reason(tiny("qwen3")) is None
    assert "not a Qwen3-family decoder" in decoder_unsupported_reason(BertModel(BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64)))
    windowed = Qwen2Model(Qwen2Config(**{**SHAPE, "num_hidden_layers": 2}, use_sliding_window=True,
                                      sliding_window=16, max_window_layers=0))
    assert "sliding-window" in decoder_unsupported_reason(windowed)
    with pytest.raises(ValueError, match="cannot pack"):
        PackedDecoder(windowed)


def test_attention_kernel_choice_on_cpu():
    assert resolve_kernel("auto", CPU, torch.float32) == "sdpa_groups"
    assert resolve_kernel("flex", CPU, torch.float32) == "flex"
    with pytest.raises(ValueError, match="flash_varlen needs CUDA"):
        resolve_kernel("flash_varlen", CPU, torch.bfloat16)
    with pytest.raises(ValueError, match="unknown attention kernel"):
        resolve_kernel("nested", CPU, torch.float32)
    with pytest.raises(ConfigError, match="flash_varlen"):  # a worker refuses to start rather than ignore it
        choose_packed_forward(tiny("qwen3"), CPU, torch.float32, "on", "flash_varlen")


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_packed_setting_chooses_the_forward():
    qwen = tiny("qwen3")
    assert isinstance(choose_packed_forward(qwen, CPU, torch.float32, "auto"), PackedDecoder)
    assert choose_packed_forward(qwen, CPU, torch.float32, "off") is None
    assert choose_packed_forward(qwen, CPU, torch.float32, "on", "flex").kernel == "flex"
    bert = BertModel(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                intermediate_size=64)).eval()
    assert isinstance(choose_packed_forward(bert, CPU, torch.float32, "auto"), PackedEncoder)


# The service's own pieces on the fixture checkpoints: engine (embeddings) and reranker.

@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    return tiny_models.build_tiny_qwen3_embedding(tmp_path_factory.mktemp("tiny-qwen3"))


def test_engine_runs_qwen3_packed_and_equals_the_model_card(qwen_dir):
    engine = EmbeddingEngine(str(qwen_dir), CPU, torch.float32)
    assert not engine.pads_batches and isinstance(engine.packed, PackedDecoder)
    padded = EmbeddingEngine(str(qwen_dir), CPU, torch.float32, packed="off")
    assert padded.pads_batches
    rng = random.Random(7)
    words = "the cat reads a document about the river map with great enthusiasm".split()
    docs = [" ".join(rng.choice(words) for _ in range(rng.choice([1, 3, 12, 60, 150]))) for _ in range(12)]
    cases = [("document", None, None), ("query", None, None), ("query", "Find the passage about rivers", 32)]
    for input_type, instruction, dimensions in cases:
        rows = engine.tokenize(docs, offset=0, input_type=input_type, instruction=instruction, truncate=True).rows
        ours, theirs = engine.embed_batch(rows), padded.embed_batch(rows)
        if input_type == "query":
            instruction = instruction or DEFAULT_QUERY_INSTRUCTION
        reference = tiny_models.reference_qwen3_embeddings(qwen_dir, docs, instruction=instruction,
                                                           dimensions=dimensions)
        if dimensions:
            ours, theirs = truncate_dimensions(ours, dimensions), truncate_dimensions(theirs, dimensions)
        assert (ours * theirs).sum(axis=1).min() >= 0.9999
        assert (ours * reference).sum(axis=1).min() >= 0.9999


def test_engine_bf16_packed_matches_fp32_reference(qwen_dir):
    engine = EmbeddingEngine(str(qwen_dir), CPU, torch.bfloat16)
    docs = ["short", "a considerably longer document " * 12, "Beijing is the capital of China."]
    rows = engine.tokenize(docs, offset=0, input_type="document", instruction=None, truncate=True).rows
    ours = engine.embed_batch(rows)
    reference = tiny_models.reference_qwen3_embeddings(qwen_dir, docs)
    assert (ours * reference).sum(axis=1).min() >= 0.999


def test_qwen3_reranker_runs_packed_and_equals_the_model_card(tmp_path):
    path = tiny_models.build_tiny_qwen3_reranker(tmp_path / "reranker")
    config, tokenizer = AutoConfig.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    reranker = Qwen3Reranker(str(path), config, tokenizer, CPU, torch.float32)
    assert not reranker.pads_batches
    padded = Qwen3Reranker(str(path), config, tokenizer, CPU, torch.float32, packed="off")
    assert padded.pads_batches
    documents = ["a", "the cat reads the document quickly", "a much longer document about the river map " * 8]
    rows = reranker.tokenize("where is the river?", documents, offset=0, instruction=None, truncate=True).rows
    ours = reranker.score_batch(rows)[:, 0]
    reference = tiny_models.reference_qwen3_rerank_scores(path, "where is the river?", documents)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    np.testing.assert_allclose(ours, padded.score_batch(rows)[:, 0], atol=1e-5)


def test_embed_attention_setting_is_validated():
    from embedserve.settings import Settings

    assert Settings.from_env({}).attention == "auto"
    assert Settings.from_env({"EMBED_ATTENTION": "FLEX"}).attention == "flex"
    with pytest.raises(ConfigError, match="EMBED_ATTENTION"):
        Settings.from_env({"EMBED_ATTENTION": "nested"})


@torch.inference_mode()
def test_grouped_heads_without_sdpa_enable_gqa(monkeypatch):
    """torch 2.4 (the floor) has no enable_gqa: key/value heads are repeated instead, same result."""
    import worker.packed.decoder as packed_decoder

    decoder = PackedDecoder(tiny("qwen3"))
    rows = mixed_rows(10, seed=8)
    native = packed_pooled(decoder, rows, "lasttoken")
    monkeypatch.setattr(packed_decoder, "_SDPA_GQA", False)
    torch.testing.assert_close(packed_pooled(decoder, rows, "lasttoken"), native, atol=2e-6, rtol=1e-5)
