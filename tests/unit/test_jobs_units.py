"""Pure parts of bulk jobs: chunking, result format choice, record codecs, job settings."""

from __future__ import annotations

import msgpack
import pytest
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from api.bulk.jobs import chunk_bounds
from api.bulk.result_formats import JSON, MSGPACK, NDJSON, pick_format
from embedserve.errors import NotAcceptable
from embedserve.ids import new_id
from embedserve.jobs.chunks import ChunkOutput, ChunkParams, ChunkSpec
from embedserve.jobs.records import Job, JobStatus
from embedserve.settings import ConfigError, Settings


def test_chunks_cover_every_input_once_within_budgets():
    inputs = [("x" * (1 + i % 300)) for i in range(1000)] + [[1, 2, 3]] * 10
    bounds = list(chunk_bounds(inputs, max_inputs=32, max_chars=2000))
    assert bounds[0][0] == 0 and bounds[-1][1] == len(inputs)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    for start, end in bounds:
        assert 0 < end - start <= 32
        weight = sum(len(x) * (4 if isinstance(x, list) else 1) for x in inputs[start:end])
        assert weight <= 2000 or end - start == 1


def test_an_input_over_the_char_budget_gets_a_chunk_of_its_own():
    assert list(chunk_bounds(["a", "b" * 50, "c"], max_inputs=10, max_chars=10)) == [(0, 1), (1, 2), (2, 3)]


@pytest.mark.parametrize("header,expected", [
    (None, JSON), ("", JSON), ("*/*", JSON), ("application/json", JSON),
    ("application/x-ndjson", NDJSON), ("application/msgpack", MSGPACK), ("application/x-msgpack", MSGPACK),
    ("text/html, application/x-ndjson;q=0.5", NDJSON),
])
def test_pick_format(header, expected):
    assert pick_format(header, parse_accept_header(header or "", MIMEAccept)) == expected


@pytest.mark.parametrize("header", ["text/html", "application/xml", "image/*"])
def test_unsupported_accept_is_406(header):
    with pytest.raises(NotAcceptable) as info:
        pick_format(header, parse_accept_header(header, MIMEAccept))
    assert info.value.status == 406


def test_ids_carry_122_random_bits():
    ids = {new_id("job_") for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == len("job_") + 32 for i in ids)


def test_records_round_trip():
    spec = ChunkSpec(model="m", items=[3, 4], counts=[1, 2], inputs=["a", "b", "c"], params=ChunkParams(truncate=True),
                     meta=[["c1", "float"], ["c2", "base64"]])
    assert ChunkSpec.unpack(spec.pack()) == spec
    out = ChunkOutput(items=[3, 4], rows=[1, 0], tokens=[5, 0], dim=2, vectors=b"\0" * 8,
                      errors=[None, {"status": 400, "error": {"message": "x"}}])
    assert ChunkOutput.unpack(out.pack()) == out and (out.completed, out.failed) == (1, 1)
    job = Job.from_hash({b"id": b"job_1", b"owner": b"o", b"kind": b"job", b"model": b"m", b"status": b"queued",
                         b"created_at": b"5", b"total": b"3", b"chunks": b"1", b"skipped": b"0"})
    assert job.status is JobStatus.QUEUED and job.total == 3 and job.started_at is None
    assert not job.status.finished and JobStatus.CANCELLED.finished


def test_chunk_params_keep_the_wire_form_every_version_reads():
    """API and workers are upgraded in either order, and specs already stored were written by older code."""
    assert ChunkParams().to_wire() == {"input_type": "document", "instruction": None, "truncate": False,
                                       "dimensions": None, "truncation_direction": "right"}  # float: no embedding_type
    typed = ChunkParams(input_type="query", instruction="Find:", truncate=True, dimensions=64,
                        truncation_direction="left", embedding_type="int8")
    assert typed.to_wire() == {"input_type": "query", "instruction": "Find:", "truncate": True, "dimensions": 64,
                               "truncation_direction": "left", "embedding_type": "int8"}
    assert ChunkParams.from_wire(typed.to_wire()) == typed
    # Missing or nil keys are their defaults, as an older spec (params {}) or an older reader means them;
    # keys a newer API may add are ignored.
    assert ChunkParams.from_wire({}) == ChunkParams.from_wire(None) == ChunkParams()
    assert ChunkParams.from_wire({"truncate": None, "embedding_type": None, "input_type": "query",
                                  "from_the_future": 1}) == ChunkParams(input_type="query")
    # A spec stored with a params dict reads back typed, and packs to the same dict.
    old = msgpack.packb({"model": "m", "items": [0], "counts": [1], "inputs": ["a"], "params": typed.to_wire(),
                         "meta": None, "ids": None, "bad": None}, use_bin_type=True)
    assert ChunkSpec.unpack(old).params == typed and ChunkSpec.unpack(old).pack() == old


def test_job_settings_defaults_and_errors():
    settings = Settings.from_env({})
    assert settings.max_job_inputs == 1_000_000 and settings.max_attempts == 3
    assert settings.job_ttl == 24 * 3600 and settings.file_ttl == 30 * 24 * 3600
    assert settings.max_file_bytes == 200 * 1024 * 1024
    for env in ({"EMBED_MAX_ATTEMPTS": "0"}, {"EMBED_JOB_TTL": "soon"}, {"EMBED_BULK_SLOTS": "0"}):
        with pytest.raises(ConfigError, match=next(iter(env))):
            Settings.from_env(env)
