"""Cohere's /v2/embed body mapped onto an EmbeddingRequest, its refusals, and errors reworded for it."""

from __future__ import annotations

import pytest

from api.validation.cohere import cohere_error, parse_cohere_embed
from embedserve.errors import InvalidRequest, RateLimited

OK = {"model": "m", "texts": ["a", "b"], "input_type": "search_document"}


def test_defaults_are_cohere_s_float_and_truncate_end():
    embed = parse_cohere_embed(OK)
    assert embed.texts == ["a", "b"] and embed.types == ("float",)
    req = embed.request
    assert req.inputs == ["a", "b"] and req.model == "m" and req.input_type == "document"
    assert req.embedding_types == ("float",) and req.truncate and req.truncation_direction == "right"
    assert req.dimensions is None


@pytest.mark.parametrize("cohere, ours", [("search_query", "query"), ("search_document", "document"),
                                          ("classification", "classification"), ("clustering", "clustering")])
def test_input_types(cohere, ours):
    assert parse_cohere_embed({**OK, "input_type": cohere}).request.input_type == ours


@pytest.mark.parametrize("truncate, on, direction", [("END", True, "right"), ("START", True, "left"),
                                                     ("NONE", False, "right")])
def test_truncate(truncate, on, direction):
    req = parse_cohere_embed({**OK, "truncate": truncate}).request
    assert (req.truncate, req.truncation_direction) == (on, direction)


def test_max_tokens_is_passed_on():
    assert parse_cohere_embed({**OK, "max_tokens": 16}).request.max_tokens == 16
    assert parse_cohere_embed(OK).request.max_tokens is None


def test_types_in_order_without_repeats_and_base64_is_the_float_vector():
    embed = parse_cohere_embed({**OK, "embedding_types": ["ubinary", "base64", "int8", "ubinary", "float"],
                                "output_dimension": 32})
    assert embed.types == ("ubinary", "base64", "int8", "float")
    assert embed.request.embedding_types == ("ubinary", "float", "int8")  # base64 is computed as float
    assert embed.request.dimensions == 32


@pytest.mark.parametrize("body, param, words", [
    ({"model": "m", "texts": ["a"]}, "input_type", "Missing required parameter: 'input_type'"),
    ({**OK, "input_type": "image"}, "input_type", "this server embeds text"),
    ({**OK, "input_type": "query"}, "input_type", "search_document"),
    ({**OK, "texts": []}, "texts", "texts"),
    ({**OK, "texts": ["a", ""]}, "texts", "texts[1]"),
    ({**OK, "texts": "a"}, "texts", "texts"),
    ({"model": "m", "input_type": "search_query"}, "texts", "Missing required parameter: 'texts'"),
    ({**OK, "embedding_types": ["float16"]}, "embedding_types", "embedding_types[0]"),
    ({**OK, "embedding_types": []}, "embedding_types", "embedding_types"),
    ({**OK, "embedding_types": "float"}, "embedding_types", "embedding_types"),
    ({**OK, "truncate": "end"}, "truncate", "truncate"),
    ({**OK, "output_dimension": 0}, "output_dimension", "output_dimension"),
    ({**OK, "max_tokens": 0}, "max_tokens", "max_tokens"),
    ({**OK, "images": ["data:image/png;base64,AAAA"]}, "images", "embeds text only"),
    ({**OK, "inputs": [{"content": [{"type": "text", "text": "a"}]}]}, "inputs", "embeds text only"),
])
def test_refusals_name_the_field(body, param, words):
    with pytest.raises(InvalidRequest) as info:
        parse_cohere_embed(body)
    assert info.value.param == param and words in info.value.message, info.value.message


def test_too_many_texts_has_openai_s_code():
    with pytest.raises(InvalidRequest) as info:
        parse_cohere_embed({**OK, "texts": ["a"] * 3}, max_inputs=2)
    assert info.value.code == "too_many_inputs" and info.value.param == "texts"


def test_priority_is_accepted_and_ignored():
    assert parse_cohere_embed({**OK, "priority": 3}).texts == ["a", "b"]
    assert parse_cohere_embed({**OK, "priority": 3.0}).texts == ["a", "b"]  # a JSON integer, as the schema says


def test_the_model_s_refusals_are_worded_for_this_route():
    too_long = InvalidRequest('input[3] is 600 tokens, more than this model\'s maximum of 512; shorten it or send '
                              '"truncate": true', param="input", code="context_length_exceeded")
    out = cohere_error(too_long)
    assert out.param == "texts" and out.code == "context_length_exceeded" and out.status == 400
    assert out.message.startswith("texts[3] is 600 tokens") and '"truncate": "END" or "START"' in out.message
    wide = cohere_error(InvalidRequest("'dimensions' must be between 1 and 64 for model m, got 65.",
                                       param="dimensions", code="dimensions_too_large"))
    assert wide.param == "output_dimension" and wide.message.startswith("'output_dimension' must be")
    limited = RateLimited("slow down")
    assert cohere_error(limited) is limited
