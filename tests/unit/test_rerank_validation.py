"""Rerank request parsing without a server: Cohere/Jina shapes, and precise errors otherwise."""

from __future__ import annotations

import pytest

from api.validation.rerank import parse_rerank_request
from embedserve.errors import InvalidRequest


def test_defaults():
    req = parse_rerank_request({"query": "q", "documents": ["a", "b"]})
    assert (req.model, req.query, req.documents, req.top_n, req.return_documents, req.instruction, req.truncate) == \
        (None, "q", ["a", "b"], None, False, None, False)
    assert req.truncation_direction == "right"


def test_documents_as_strings_or_text_objects():
    req = parse_rerank_request({"model": "m", "query": "q", "documents": ["a", {"text": "b", "title": "t"}, ""]})
    assert req.documents == ["a", "b", ""]


def test_extensions_and_ignored_cohere_fields():
    req = parse_rerank_request({"query": "q", "documents": ["a"], "top_n": 3, "return_documents": True,
                                "instruction": "find", "truncate": True, "max_chunks_per_doc": 5,
                                "max_tokens_per_doc": 512, "rank_fields": ["text"], "truncation_direction": "Left"})
    assert (req.top_n, req.return_documents, req.instruction, req.truncate, req.truncation_direction) == \
        (3, True, "find", True, "left")


@pytest.mark.parametrize("body,param,code", [
    ([], None, None),
    ({"documents": ["a"]}, "query", None),
    ({"query": "", "documents": ["a"]}, "query", None),
    ({"query": " \n", "documents": ["a"]}, "query", None),
    ({"query": 5, "documents": ["a"]}, "query", None),
    ({"query": "bad \ud800", "documents": ["a"]}, "query", None),
    ({"query": "q"}, "documents", None),
    ({"query": "q", "documents": []}, "documents", None),
    ({"query": "q", "documents": {"text": "a"}}, "documents", None),
    ({"query": "q", "documents": [None]}, "documents", None),
    ({"query": "q", "documents": [{"text": 5}]}, "documents", None),
    ({"query": "q", "documents": ["ok", "bad \udfff"]}, "documents", None),
    ({"query": "q", "documents": ["d"] * 4}, "documents", "too_many_documents"),
    ({"query": "q", "documents": ["a"], "top_n": 0}, "top_n", None),
    ({"query": "q", "documents": ["a"], "top_n": 1.5}, "top_n", None),
    ({"query": "q", "documents": ["a"], "top_n": True}, "top_n", None),
    ({"query": "q", "documents": ["a"], "return_documents": 1}, "return_documents", None),
    ({"query": "q", "documents": ["a"], "truncate": "true"}, "truncate", None),
    ({"query": "q", "documents": ["a"], "truncation_direction": "start"}, "truncation_direction", None),
    ({"query": "q", "documents": ["a"], "instruction": ["x"]}, "instruction", None),
    ({"query": "q", "documents": ["a"], "model": ""}, "model", None),
])
def test_bad_bodies_name_the_field(body, param, code):
    with pytest.raises(InvalidRequest) as info:
        parse_rerank_request(body, max_documents=3)
    assert info.value.param == param
    if code:
        assert info.value.code == code


@pytest.mark.parametrize("body,param", [
    ({"query": "q", "documents": ["a"], "return_documents": None}, "return_documents"),
    ({"query": "q", "documents": ["a"], "model": None}, "model"),
    ({"query": "q", "documents": ["a"], "model": "  "}, "model"),
    ({"query": "q", "documents": ["a"], "max_tokens_per_doc": "512"}, "max_tokens_per_doc"),
    ({"query": "q", "documents": ["a"], "rank_fields": "text"}, "rank_fields"),
])
def test_what_the_contract_refuses_is_refused(body, param):
    """Optional fields are left out, not null; Cohere's ignored fields still have Cohere's types."""
    with pytest.raises(InvalidRequest) as info:
        parse_rerank_request(body)
    assert info.value.param == param


def test_whole_floats_are_integers():
    assert parse_rerank_request({"query": "q", "documents": ["a"], "top_n": 2.0}).top_n == 2
    # Clients built from typed structs send null for "all documents", as Jina and Cohere accept.
    assert parse_rerank_request({"query": "q", "documents": ["a"], "top_n": None}).top_n is None
