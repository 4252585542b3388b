"""user_data lines and the chunks a file job is cut into."""

from __future__ import annotations

import pytest

from api.bulk.files import _user_data_line
from api.bulk.jobs import file_chunk_specs, file_inputs
from embedserve.errors import InvalidRequest
from embedserve.jobs.chunks import ChunkParams


def test_user_data_lines():
    assert _user_data_line(b'"plain"', "jsonl") == ("plain", None, None)
    assert _user_data_line(b'{"text": "t", "id": "a"}', "jsonl") == ("t", "a", None)
    assert _user_data_line(b"not json\r", "txt") == ("not json", None, None)
    for bad in (b"{oops", b'{"title": "x"}', b'""', b'{"text": "t", "id": 3}', b"\xff\xfe", b'"\\ud800"'):
        text, _, error = _user_data_line(bad, "jsonl")
        assert text is None and error["code"] == "invalid_input", bad


def test_file_chunks_keep_bad_items_in_place():
    items = [("a", "x", None), (None, None, {"code": "invalid_input"}), ("b", None, None)] * 30
    specs = list(file_chunk_specs(iter(items), "m", ChunkParams(), max_inputs=32))
    assert [s.items for s in specs] == [list(range(0, 32)), list(range(32, 64)), list(range(64, 90))]
    first = specs[0]
    assert first.counts[:3] == [1, 0, 1] and first.inputs[:2] == ["a", "b"]
    assert first.bad["1"] == {"status": 400, "error": {"code": "invalid_input"}}
    assert first.ids[:3] == ["x", None, None]
    assert sum(first.counts) == len(first.inputs)


def test_a_file_job_is_held_to_the_job_input_limit():
    """A user_data file's lines count against EMBED_MAX_JOB_INPUTS as a job's `input` list does."""
    assert file_inputs({"id": "file-a", "lines": "5"}, max_inputs=5) == 5
    with pytest.raises(InvalidRequest) as refused:
        file_inputs({"id": "file-a", "lines": "6"}, max_inputs=5)
    assert refused.value.code == "too_many_inputs" and refused.value.param == "input_file_id"
