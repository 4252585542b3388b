"""Replies between workers and the API stay readable across a rolling upgrade, in both directions."""

from __future__ import annotations

import msgpack

from embedserve.protocol import ChunkResult

# The fields a ChunkResult had before embedding_type and /tokenize added theirs.
BEFORE = {"chunk", "vectors", "rows", "dim", "tokens", "error", "row_tokens", "status"}


def test_a_float_reply_carries_only_the_fields_an_older_api_knows():
    reply = ChunkResult(chunk=3, vectors=b"\x00" * 16, rows=1, dim=4, tokens=5, row_tokens=[5])
    assert set(msgpack.unpackb(reply.pack(), raw=False)) <= BEFORE
    assert ChunkResult.unpack(reply.pack()) == reply


def test_a_quantized_reply_round_trips_and_unknown_fields_are_ignored():
    reply = ChunkResult(chunk=0, rows=1, dim=16, tokens=2, typed={"ubinary": b"\xff\x00"})
    assert ChunkResult.unpack(reply.pack()) == reply
    assert reply.row(0, "ubinary") == b"\xff\x00"
    newer = msgpack.packb({"chunk": 1, "rows": 0, "from_the_future": [1, 2]}, use_bin_type=True)
    assert ChunkResult.unpack(newer) == ChunkResult(chunk=1)
