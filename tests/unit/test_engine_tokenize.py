"""The engine's tokenizer: concurrent calls with and without truncation, truncation's two directions
(the real MiniLM model and the tiny Qwen3 fixture)."""

from __future__ import annotations

import threading

import pytest
import torch

from embedserve.errors import InvalidRequest
from tests.fixtures import tiny_models
from worker.engine import EmbeddingEngine, cut_left, resolve_model_source


@pytest.fixture(scope="module")
def engine():
    return EmbeddingEngine(resolve_model_source(""), torch.device("cpu"), torch.float32)


def test_concurrent_truncating_and_plain_calls_do_not_mix(engine):
    long_text = "token " * 400  # over the 256-token limit
    errors: list[str] = []

    def truncating():
        for _ in range(40):
            rows = engine.tokenize([long_text], offset=0, input_type="document", instruction=None, truncate=True).rows
            if len(rows[0]) != engine.max_length:
                errors.append(f"truncated to {len(rows[0])}")

    def plain():
        for _ in range(40):
            try:  # must see all 402 tokens and refuse; a leaked truncation would cut and accept it
                rows = engine.tokenize([long_text], offset=0, input_type="document", instruction=None,
                                       truncate=False).rows
                errors.append(f"plain call was truncated to {len(rows[0])}")
            except InvalidRequest:
                pass

    threads = [threading.Thread(target=f) for f in (truncating, plain) * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_the_default_model_runs_packed_on_cpu_and_matches_the_padded_forward(engine):
    assert not engine.pads_batches
    rows = engine.tokenize(["a short one", "a somewhat longer sentence about rivers and bridges " * 6, "mid length "
                            "text about the weather"], offset=0, input_type="document", instruction=None,
                           truncate=True).rows
    packed = engine.embed_batch(rows)
    encoder, engine.packed = engine.packed, None
    try:
        padded = engine.embed_batch(rows)
    finally:
        engine.packed = encoder
    assert (packed * padded).sum(axis=1).min() > 0.99999


# Truncation's two directions: only the text's own tokens are cut; special tokens and the prompt stay.

LONG = " ".join(f"river{i % 10} bridge{i % 7}" for i in range(300))  # ~600 word pieces, distinct at each end


def test_left_truncation_keeps_the_last_tokens_and_cls_sep(engine):
    full = engine.tokenizer(LONG)["input_ids"]  # [CLS] text [SEP], untruncated
    text_room = engine.max_length - 2
    left = engine.tokenize([LONG], offset=0, input_type="document", instruction=None, truncate=True,
                           direction="left").rows[0]
    right = engine.tokenize([LONG], offset=0, input_type="document", instruction=None, truncate=True,
                            direction="right").rows[0]
    assert len(left) == len(right) == engine.max_length
    assert left == [full[0]] + full[-1 - text_room:]  # [CLS] + the text's last tokens + [SEP]
    assert right == full[:1 + text_room] + [full[-1]]  # [CLS] + the text's first tokens + [SEP]
    default = engine.tokenize([LONG], offset=0, input_type="document", instruction=None, truncate=True).rows[0]
    assert default == right


def test_left_truncation_keeps_the_prompt(engine):
    prompt = "represent this sentence for searching relevant passages: "
    full = engine.tokenizer(prompt + LONG)["input_ids"]
    prompt_ids = engine.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    head = 1 + len(prompt_ids)
    left = engine.tokenize([LONG], offset=0, input_type="document", instruction=prompt, truncate=True,
                           direction="left").rows[0]
    assert len(left) == engine.max_length
    assert left[:head] == full[:head]  # [CLS] and the prompt, whole
    assert left[head:] == full[-(engine.max_length - head):]  # the text's end and [SEP]


def test_direction_without_truncate_has_no_effect(engine):
    with pytest.raises(InvalidRequest) as info:
        engine.tokenize([LONG], offset=3, input_type="document", instruction=None, truncate=False, direction="left")
    assert info.value.code == "context_length_exceeded" and "input[3]" in info.value.message
    short = engine.tokenize(["a short text"], offset=0, input_type="document", instruction=None, truncate=False,
                            direction="left").rows
    assert short == [engine.tokenizer("a short text")["input_ids"]]


def test_token_ids_truncate_from_either_end_as_sent(engine):
    ids = list(range(1000, 1000 + engine.max_length + 50))
    assert engine.check_ids([ids], offset=0, truncate=True, direction="left").rows == [ids[-engine.max_length:]]
    assert engine.check_ids([ids], offset=0, truncate=True, direction="right").rows == [ids[:engine.max_length]]


def test_out_of_vocabulary_ids_name_langchains_switch(engine):
    with pytest.raises(InvalidRequest) as info:
        engine.check_ids([[101, engine.vocab_size + 5, 102]], offset=2, truncate=False)
    assert info.value.code == "invalid_token_id" and "input[2]" in info.value.message
    assert "check_embedding_ctx_length=False" in info.value.message


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory):
    path = tiny_models.build_tiny_qwen3_embedding(tmp_path_factory.mktemp("tiny-qwen3"))
    return EmbeddingEngine(str(path), torch.device("cpu"), torch.float32)


QWEN_LONG = " ".join(tiny_models._corpus()[:120])  # well over the fixture's 512 tokens


@pytest.mark.parametrize("input_type", ["query", "document"])
def test_qwen3_left_truncation_keeps_the_instruction_the_tail_and_eos(qwen3, input_type):
    prefix = qwen3.files.prefix(input_type, None)  # the Qwen3 query instruction; documents get none
    assert (prefix != "") == (input_type == "query")
    full = qwen3.tokenizer(prefix + QWEN_LONG)["input_ids"]
    eos = qwen3.tokenizer.eos_token_id
    assert full[-1] == eos and len(full) > qwen3.max_length
    head = len(qwen3.tokenizer(prefix, add_special_tokens=False)["input_ids"]) if prefix else 0
    left = qwen3.tokenize([QWEN_LONG], offset=0, input_type=input_type, instruction=None, truncate=True,
                          direction="left").rows[0]
    assert len(left) == qwen3.max_length and left[-1] == eos  # last-token pooling reads EOS
    assert left[:head] == full[:head]  # "Instruct: ...\nQuery:" whole
    assert left[head:] == full[-(qwen3.max_length - head):]  # the text's last tokens, then EOS
    right = qwen3.tokenize([QWEN_LONG], offset=0, input_type=input_type, instruction=None, truncate=True,
                           direction="right").rows[0]
    assert len(right) == qwen3.max_length and right[-1] == eos and right.count(eos) == 1
    assert right[:-1] == full[:qwen3.max_length - 1]  # the instruction and the text's first tokens


def test_cut_left_keeps_head_and_tail_even_when_the_head_fills_the_limit():
    row = list(range(10))
    assert cut_left(row, 10, head=3, tail=1) == row
    assert cut_left(row, 6, head=2, tail=1) == [0, 1, 6, 7, 8, 9]
    assert cut_left(row, 5, head=7, tail=1) == [0, 1, 2, 3, 9]  # a prompt over the limit: its end goes, EOS stays


def test_max_tokens_lowers_the_limit_for_one_request(engine, qwen3):
    """Cohere's max_tokens: cut (either end) or refused as at the model's maximum, never below the special tokens."""
    full = engine.tokenizer(LONG)["input_ids"]
    right = engine.tokenize([LONG], offset=0, input_type="document", instruction=None, truncate=True,
                            max_tokens=10).rows[0]
    assert right == full[:9] + [full[-1]]
    left = engine.tokenize([LONG], offset=0, input_type="document", instruction=None, truncate=True,
                           direction="left", max_tokens=10).rows[0]
    assert left == [full[0]] + full[-9:]
    with pytest.raises(InvalidRequest) as info:
        engine.tokenize(["a b c d e f g h i j k"], offset=1, input_type="document", instruction=None,
                        truncate=False, max_tokens=5)
    assert info.value.code == "context_length_exceeded" and "input[1]" in info.value.message
    assert "max_tokens of 5" in info.value.message
    assert len(engine.tokenize([LONG], offset=0, input_type="document", instruction=None, truncate=True,
                               max_tokens=1).rows[0]) == 3  # [CLS], one token, [SEP]
    assert len(engine.tokenize([LONG], offset=0, input_type="document", instruction=None, truncate=True,
                               max_tokens=100_000).rows[0]) == engine.max_length
    eos = qwen3.tokenizer.eos_token_id
    for max_tokens in (1, 7):
        row = qwen3.tokenize([QWEN_LONG], offset=0, input_type="document", instruction=None, truncate=True,
                             max_tokens=max_tokens).rows[0]
        assert len(row) == max(2, max_tokens) and row[-1] == eos
