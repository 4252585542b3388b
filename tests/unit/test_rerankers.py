"""Reranker pieces on the tiny models, without a server: the Qwen3 prompt, tokenization, detection, activations."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoTokenizer, BertConfig, Qwen3Config

from embedserve.defaults import DEFAULT_RERANK_INSTRUCTION
from embedserve.errors import InvalidRequest
from embedserve.settings import ConfigError
from tests.fixtures import tiny_models
from worker.rerank.cross_encoder import CrossEncoder, cross_encoder_activation
from worker.rerank.loading import reranker_class
from worker.rerank.qwen3 import PREFIX, SUFFIX, Qwen3Reranker, prompt_body


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory) -> Qwen3Reranker:
    path = tiny_models.build_tiny_qwen3_reranker(tmp_path_factory.mktemp("qwen3-reranker"))
    config = AutoConfig.from_pretrained(path)
    return Qwen3Reranker(str(path), config, AutoTokenizer.from_pretrained(path), torch.device("cpu"), torch.float32)


def test_prompt_is_the_model_cards():
    # The fixture's constants are copied from the Qwen3-Reranker model card, independently of the worker.
    assert PREFIX == tiny_models.RERANK_PREFIX and SUFFIX == tiny_models.RERANK_SUFFIX
    assert DEFAULT_RERANK_INSTRUCTION == tiny_models.RERANK_DEFAULT_INSTRUCTION
    assert prompt_body("q?", "the doc", None) == \
        f"<Instruct>: {DEFAULT_RERANK_INSTRUCTION}\n<Query>: q?\n<Document>: the doc"
    assert prompt_body("q?", "d", "Find animals") == "<Instruct>: Find animals\n<Query>: q?\n<Document>: d"


def test_qwen3_rows_are_prefix_body_suffix(qwen3):
    tok = qwen3.tokenizer
    rows = qwen3.tokenize("q?", ["one doc", "two"], offset=0, instruction=None, truncate=False).rows
    for row, doc in zip(rows, ["one doc", "two"]):
        text = PREFIX + prompt_body("q?", doc, None) + SUFFIX
        assert tok.decode(row) == text
        assert row[: len(qwen3.prefix_ids)] == tok.encode(PREFIX, add_special_tokens=False)
        assert row[-len(qwen3.suffix_ids):] == tok.encode(SUFFIX, add_special_tokens=False)
    assert (qwen3.yes_id, qwen3.no_id) == (tok.convert_tokens_to_ids("yes"), tok.convert_tokens_to_ids("no"))


def test_qwen3_too_long_is_a_400_unless_truncating(qwen3):
    long_doc = "the cat reads the document " * 200
    with pytest.raises(InvalidRequest) as info:
        qwen3.tokenize("q", ["short", long_doc], offset=10, instruction=None, truncate=False)
    assert info.value.code == "context_length_exceeded" and "documents[11]" in info.value.message
    rows = qwen3.tokenize("q", ["short", long_doc], offset=0, instruction=None, truncate=True).rows
    assert len(rows[1]) == qwen3.max_length and rows[1][-len(qwen3.suffix_ids):] == qwen3.suffix_ids


def test_qwen3_scores_do_not_depend_on_padding(qwen3):
    rows = qwen3.tokenize("q", ["a", "a much longer document about the river map"], offset=0, instruction=None,
                          truncate=False).rows
    together = qwen3.score_batch(rows)
    alone = np.concatenate([qwen3.score_batch([row]) for row in rows])
    assert together.shape == (2, 1) and together.dtype == np.float32
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_detection_from_config():
    assert reranker_class(BertConfig(architectures=["BertForSequenceClassification"])) is CrossEncoder
    assert reranker_class(Qwen3Config(architectures=["Qwen3ForCausalLM"])) is Qwen3Reranker
    with pytest.raises(ConfigError, match="neither"):
        reranker_class(BertConfig(architectures=["BertModel"]))


@pytest.mark.parametrize("labels,extra,expected", [
    (1, {}, torch.sigmoid(torch.tensor([2.0]))),
    (1, {"sentence_transformers": {"activation_fn": "torch.nn.modules.linear.Identity"}}, torch.tensor([2.0])),
    (1, {"sbert_ce_default_activation_function": "torch.nn.modules.activation.Tanh"}, torch.tanh(torch.tensor([2.0]))),
    (2, {}, torch.softmax(torch.tensor([2.0, -1.0]), dim=0)[1:]),
])
def test_cross_encoder_activation(labels, extra, expected):
    config = BertConfig(num_labels=labels, **extra)
    logits = torch.tensor([[2.0, -1.0][:labels]])
    torch.testing.assert_close(cross_encoder_activation(config)(logits), expected)


def test_cross_encoder_rejects_other_heads():
    with pytest.raises(ConfigError, match="labels"):
        cross_encoder_activation(BertConfig(num_labels=3))
    with pytest.raises(ConfigError, match="activation"):
        cross_encoder_activation(BertConfig(num_labels=1, sentence_transformers={"activation_fn": "my.Softplus"}))


def test_concurrent_tokenize_keeps_each_callers_truncation(tmp_path):
    """Task threads share one fast tokenizer whose truncation is per-call state; each call must get its own."""
    path = tiny_models.build_tiny_cross_encoder(tmp_path / "ce")
    config = AutoConfig.from_pretrained(path)
    model = CrossEncoder(str(path), config, AutoTokenizer.from_pretrained(path), torch.device("cpu"), torch.float32)
    model.max_length = 64
    long_doc = "the cat reads the document " * 30  # about 150 tokens with the query
    wrong = []

    def work(truncate: bool) -> None:
        for _ in range(100):
            try:
                rows = model.tokenize("q", [long_doc] * 4, offset=0, instruction=None, truncate=truncate).rows
                if len(rows[0]) > 64:
                    wrong.append(len(rows[0]))
            except InvalidRequest:
                if truncate:
                    wrong.append("truncating call refused as too long")
            else:
                if not truncate:
                    wrong.append("untruncated call was cut")

    threads = [threading.Thread(target=work, args=(i % 2 == 1,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not wrong, wrong[:5]


# Truncation's two directions: the document's end ("right") or its start ("left") is cut; the prompt stays.

LONG_DOC = " ".join(tiny_models._corpus()[:120])  # well over the fixtures' 512 tokens


def test_qwen3_left_truncation_keeps_the_prompt_and_the_documents_end(qwen3):
    tok = qwen3.tokenizer
    query = "what does the cat read?"
    body = tok.encode(prompt_body(query, LONG_DOC, None), add_special_tokens=False)  # untruncated
    header = tok.encode(prompt_body(query, "", None).rstrip(" "), add_special_tokens=False)
    room = qwen3.max_length - len(qwen3.prefix_ids) - len(qwen3.suffix_ids)
    left = qwen3.tokenize(query, [LONG_DOC], offset=0, instruction=None, truncate=True, direction="left").rows[0]
    right = qwen3.tokenize(query, [LONG_DOC], offset=0, instruction=None, truncate=True, direction="right").rows[0]
    for row in (left, right):
        assert len(row) == qwen3.max_length
        assert row[:len(qwen3.prefix_ids)] == qwen3.prefix_ids and row[-len(qwen3.suffix_ids):] == qwen3.suffix_ids
    left_body = left[len(qwen3.prefix_ids):-len(qwen3.suffix_ids)]
    assert left_body[:len(header)] == header  # instruction, query, "<Document>:" whole
    assert left_body[len(header):] == body[-(room - len(header)):]  # the document's last tokens
    assert right[len(qwen3.prefix_ids):-len(qwen3.suffix_ids)] == body[:room]  # the document's first tokens


def test_cross_encoder_left_truncation_keeps_the_query_and_the_documents_end(tmp_path):
    path = tiny_models.build_tiny_cross_encoder(tmp_path / "ce")
    tok = AutoTokenizer.from_pretrained(path)
    model = CrossEncoder(str(path), AutoConfig.from_pretrained(path), tok, torch.device("cpu"), torch.float32)
    query = tok("what does the cat read?", add_special_tokens=False)["input_ids"]
    doc = tok(LONG_DOC, add_special_tokens=False)["input_ids"]
    cls, sep = tok.cls_token_id, tok.sep_token_id
    room = model.max_length - len(query) - 3
    left = model.tokenize("what does the cat read?", [LONG_DOC], offset=0, instruction=None, truncate=True,
                          direction="left").rows[0]
    right = model.tokenize("what does the cat read?", [LONG_DOC], offset=0, instruction=None, truncate=True).rows[0]
    assert left == [cls, *query, sep, *doc[-room:], sep]
    assert right == [cls, *query, sep, *doc[:room], sep]
    assert left.second_segment == right.second_segment == len(query) + 2
