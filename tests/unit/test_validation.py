"""Request parsing without a server: the shapes OpenAI accepts, and precise errors otherwise."""

from __future__ import annotations

import pytest

from api.validation.embeddings import (
    check_against_model,
    check_token_ids_accepted,
    parse_embedding_request,
    parse_job_request,
    parse_json_body,
)
from embedserve.errors import InvalidRequest, UnsupportedMediaType
from embedserve.fleet.registry import ModelCard

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


@pytest.mark.parametrize("sent,direction", [(None, "right"), ("left", "left"), ("right", "right"),
                                            ("Left", "left"), ("Right", "right")])  # TEI's own spelling too
def test_truncation_direction(sent, direction):
    body = {"input": "x"} if sent is None else {"input": "x", "truncation_direction": sent}
    assert parse_embedding_request(body).truncation_direction == direction
    assert parse_job_request(body)[1].truncation_direction == direction


def test_token_ids_refused_when_not_accepted():
    ids = parse_embedding_request({"input": [[1, 2], [3]]})
    check_token_ids_accepted(ids, True)
    check_token_ids_accepted(parse_embedding_request({"input": ["a"]}), False)
    with pytest.raises(InvalidRequest) as info:
        check_token_ids_accepted(ids, False)
    assert (info.value.code, info.value.param) == ("token_ids_not_accepted", "input")
    assert "check_embedding_ctx_length=False" in info.value.message


def test_model_checks():
    with pytest.raises(InvalidRequest, match="dimensions"):
        check_against_model(parse_embedding_request({"input": "x", "dimensions": 9}), CARD)
    with pytest.raises(InvalidRequest, match="vocabulary.*check_embedding_ctx_length=False"):
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


# Where the old validator and the old document disagreed, OpenAI's reference decided (null is not
# a value of any of its optional fields), else the stricter reading (a blank model names nothing).
@pytest.mark.parametrize("body,param", [
    ({"input": "x", "encoding_format": None}, "encoding_format"),
    ({"input": "x", "dimensions": None}, "dimensions"),
    ({"input": "x", "user": None}, "user"),
    ({"input": "x", "model": None}, "model"),
    ({"input": "x", "truncate": None}, "truncate"),
    ({"input": "x", "input_type": None}, "input_type"),
    ({"input": "x", "instruction": None}, "instruction"),
    ({"input": "x", "model": " \t"}, "model"),
    ({"input": "x", "dimensions": 2.5}, "dimensions"),
    ({"input": "x", "user": "lone \udc00"}, "user"),
    ({"input": "x", "instruction": "lone \ud800"}, "instruction"),
    ({"input": "x", "truncation_direction": "up"}, "truncation_direction"),
    ({"input": "x", "truncation_direction": None}, "truncation_direction"),
    ({"input": "x", "truncation_direction": "LEFT"}, "truncation_direction"),
])
def test_what_the_contract_refuses_is_refused(body, param):
    with pytest.raises(InvalidRequest) as info:
        parse_embedding_request(body)
    assert info.value.param == param


def test_json_integers_include_whole_floats():
    """JSON Schema counts 64.0 as an integer, so the document does; so does the API."""
    req = parse_embedding_request({"input": [101.0, 2054, 102.0], "dimensions": 64.0})
    assert req.inputs == [[101, 2054, 102]] and req.dimensions == 64
    assert all(type(t) is int for t in req.inputs[0]) and type(req.dimensions) is int


@pytest.mark.parametrize("body,param,code", [
    ({"input": ["x"] * 3}, "input", "too_many_inputs"),
    ({"input": [[1]] * 3}, "input", "too_many_inputs"),
    ({"input": ["a", ""]}, "input", None),
    ({"input": ["a", 5]}, "input", None),
    ({"input": [[1], []]}, "input", None),
    ({"input": [[True]]}, "input", None),
    ({"input": {"text": "x"}}, "input", None),
    ({"input": "x", "input_file_id": "file-1"}, "input_file_id", None),
    ([{"input": "x"}], None, None),
])
def test_refusals_keep_their_param_and_code(body, param, code):
    with pytest.raises(InvalidRequest) as info:
        parse_embedding_request(body, max_inputs=2)
    assert (info.value.param, info.value.code) == (param, code)


def test_the_limit_set_at_start_applies_to_one_input_of_token_ids_never():
    """A lone array of token ids is one input, however long: the model's maximum bounds it, not max_inputs."""
    assert parse_embedding_request({"input": list(range(50))}, max_inputs=2).inputs == [list(range(50))]


@pytest.mark.parametrize("body,file_id,param", [
    ({"input_file_id": "file-1", "truncate": True}, "file-1", None),
    ({"input_file_id": "file-1", "input": "x"}, None, "input_file_id"),
    ({"model": "m"}, None, "input"),
    ({"input_file_id": None, "input": "x"}, None, "input_file_id"),
    ({"input": ["x"] * 3}, None, "input"),
])
def test_job_bodies_take_input_or_input_file_id(body, file_id, param):
    if param is None:
        found, req = parse_job_request(body, max_inputs=2)
        assert found == file_id and req.inputs == [] and req.truncate
        return
    with pytest.raises(InvalidRequest) as info:
        parse_job_request(body, max_inputs=2)
    assert info.value.param == param


def test_dimensions_over_the_models_size_has_its_own_code():
    """A refusal only the model can know: the schemathesis run allows it by this code, not by its status."""
    with pytest.raises(InvalidRequest) as info:
        check_against_model(parse_embedding_request({"input": "x", "dimensions": 9}), CARD)
    assert (info.value.param, info.value.code) == ("dimensions", "dimensions_too_large")


@pytest.mark.parametrize("body", [{"input": "x", "window_overlap": 1e30},
                                  {"input": "x", "long_input": "truncate", "window_overlap": 10**30}])
def test_window_overlap_without_windows_is_not_sent_on(body):
    """window_overlap only means something with long_input mean/windows; sent on regardless, a huge one
    reached the Celery message and msgpack could not encode it: 500 instead of the usual answer."""
    from kombu.serialization import dumps

    req = parse_embedding_request(body)
    assert req.window_overlap is None
    dumps({"window_overlap": req.window_overlap}, serializer="msgpack")


def test_cohere_window_overlap_without_long_input_is_not_sent_on():
    from api.validation.cohere import parse_cohere_embed

    embed = parse_cohere_embed({"texts": ["x"], "model": "m", "input_type": "search_document",
                                "embedding_types": ["float"], "window_overlap": 10**30})
    assert embed.request.window_overlap is None


def test_window_overlap_is_bounded_for_a_model_of_unknown_length():
    # A declared model with no worker yet has no known maximum: the overlap still gets a bound (a huge
    # one reached the worker's message, which msgpack cannot encode: 500).
    unknown = ModelCard(name="m", dim=8, max_length=0, vocab_size=100)
    body = {"input": "x", "long_input": "mean", "window_overlap": 10**30}
    with pytest.raises(InvalidRequest) as info:
        check_against_model(parse_embedding_request(body), unknown)
    assert (info.value.param, info.value.code) == ("window_overlap", "window_overlap_too_large")
    check_against_model(parse_embedding_request({**body, "window_overlap": 64}), unknown)
