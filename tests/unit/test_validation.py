"""Request parsing without a server: the shapes OpenAI accepts, and precise errors otherwise."""

from __future__ import annotations

import pytest

from api.validation import check_against_model, parse_embedding_request, parse_json_body
from embedserve.errors import InvalidRequest, UnsupportedMediaType
from embedserve.registry import ModelCard

CARD = ModelCard(name="m", dim=8, max_length=4, vocab_size=100)


@pytest.mark.parametrize("value,expected", [
    ("hello", ["hello"]),
    (["a", "b"], ["a", "b"]),
    ([1, 2, 3], [[1, 2, 3]]),
    ([[1], [2, 3]], [[1], [2, 3]]),
])
def test_input_shapes(value, expected):
    assert parse_embedding_request({"model": "m", "input": value}).inputs == expected


def test_defaults_and_extensions():
    req = parse_embedding_request({"input": "x", "model": "m", "input_type": "query", "instruction": "do",
                                   "truncate": True, "dimensions": 4, "encoding_format": "base64", "user": "u"})
    assert (req.input_type, req.instruction, req.truncate, req.dimensions, req.encoding_format) == \
        ("query", "do", True, 4, "base64")
    plain = parse_embedding_request({"input": "x", "model": "m"})
    assert (plain.input_type, plain.encoding_format, plain.truncate, plain.dimensions) == ("document", "float", False, None)


def test_model_checks():
    with pytest.raises(InvalidRequest, match="dimensions"):
        check_against_model(parse_embedding_request({"input": "x", "dimensions": 9}), CARD)
    with pytest.raises(InvalidRequest, match="vocabulary"):
        check_against_model(parse_embedding_request({"input": [1, 100]}), CARD)
    with pytest.raises(InvalidRequest, match="maximum"):
        check_against_model(parse_embedding_request({"input": [1, 2, 3, 4, 5]}), CARD)
    check_against_model(parse_embedding_request({"input": [1, 2, 3, 4, 5], "truncate": True}), CARD)


def test_json_body_rules():
    assert parse_json_body(b'{"a": 1}', "application/json; charset=utf-8") == {"a": 1}
    assert parse_json_body(b'{"a": 1}', None) == {"a": 1}
    with pytest.raises(UnsupportedMediaType):
        parse_json_body(b'{"a": 1}', "text/plain")
    with pytest.raises(InvalidRequest, match="UTF-8"):
        parse_json_body(b'{"a": "\xff"}', "application/json")
    with pytest.raises(InvalidRequest, match="deeply"):
        parse_json_body(b"[" * 50000 + b"]" * 50000, "application/json")


def test_a_declared_card_skips_the_checks_that_need_the_model():
    """A model declared in EMBED_MODELS before any worker announced it: the worker checks these instead."""
    declared = ModelCard.declared("future-model")
    assert (declared.dim, declared.max_length, declared.vocab_size) == (0, 0, 0)
    check_against_model(parse_embedding_request({"input": "x", "dimensions": 100000}), declared)
    check_against_model(parse_embedding_request({"input": [[1, 10**9], list(range(100000))]}), declared)
