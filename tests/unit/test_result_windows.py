"""A `long_input: windows` job's rows as JSON: each succeeded row gets its own windows, across pieces and failures."""

from __future__ import annotations

import json
import struct

from api.bulk import result_json
from embedserve.jobs.chunks import ChunkOutput
from embedserve.vector_types import vector_type

DIM = 4


def output(n: int) -> ChunkOutput:
    """n rows, every 5th failed; row i's windows: i % 3 + 1 of them, window k's vector all i + k / 10."""
    failed = [i % 5 == 2 for i in range(n)]
    ok = [i for i in range(n) if not failed[i]]
    windows = [[{"text_start": k, "text_end": k + 9, "tokens": 3 + k,
                 "embedding": struct.pack(f"<{DIM}f", *[i + k / 10] * DIM)} for k in range(i % 3 + 1)] for i in ok]
    error = {"status": 400, "error": {"message": "too many windows", "type": "invalid_request_error",
                                      "param": "input", "code": "too_many_windows"}}
    return ChunkOutput(items=list(range(n)), rows=[0 if bad else 1 for bad in failed],
                       tokens=[0 if bad else 5 for bad in failed], dim=DIM,
                       vectors=b"".join(struct.pack(f"<{DIM}f", *[float(i)] * DIM) for i in ok),
                       errors=[error if bad else None for bad in failed], windows=windows)


def test_each_row_carries_its_own_windows(monkeypatch):
    monkeypatch.setattr(result_json, "PIECE_VALUES", 3 * DIM)  # pieces of 3 rows: the windows cross pieces
    lines = [json.loads(line) for piece in result_json.entries(output(23), vector_type("float"), "float",
                                                                result_json.NDJSON_ENTRY) for line in piece]
    assert [line["index"] for line in lines] == list(range(23))
    for i, line in enumerate(lines):
        if i % 5 == 2:
            assert line["error"]["code"] == "too_many_windows" and "windows" not in line
            continue
        assert line["embedding"] == [float(i)] * DIM
        assert len(line["windows"]) == i % 3 + 1
        assert all(abs(w["embedding"][0] - (i + k / 10)) < 1e-5 for k, w in enumerate(line["windows"]))
        assert [(w["text_start"], w["text_end"], w["tokens"]) for w in line["windows"]] == \
            [(k, k + 9, 3 + k) for k in range(i % 3 + 1)]
