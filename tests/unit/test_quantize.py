"""Quantization in the worker, its shared calibration ranges, and quantized results as Parquet."""

from __future__ import annotations

import numpy as np
import pytest
import redis

from embedserve.fleet.catalogue import Catalogue, ModelCard
from embedserve.fleet.quant_ranges import RangeBook
from embedserve.jobs.chunks import ChunkOutput
from embedserve.jobs.results import iter_result_batches, read_manifest, to_chunk_output, write_result
from embedserve.jobs.store import open_store
from embedserve.vector_types import TYPES, row_bytes, row_encoder
from worker.calibration import CALIBRATION_TEXTS, Calibration
from worker.embedding_service import truncate_dimensions
from worker.quantize import quantize, ranges_of


def unit_rows(rows: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_bits_are_numpy_packbits_and_binary_is_ubinary_minus_128():
    vectors = unit_rows(5, 20, 0)  # 20 dimensions: the last byte holds 4 bits, zero-padded
    ubinary = quantize(vectors, "ubinary")
    np.testing.assert_array_equal(ubinary, np.packbits(vectors > 0, axis=-1))
    assert ubinary.shape == (5, 3) and row_bytes("ubinary", 20) == 3
    binary = quantize(vectors, "binary")
    assert binary.dtype == np.int8
    np.testing.assert_array_equal(binary.astype(np.int16), ubinary.astype(np.int16) - 128)


def test_scalar_types_are_buckets_of_the_ranges_clipped_at_the_ends():
    calibration = unit_rows(200, 16, 1)
    ranges = ranges_of(calibration)
    vectors = unit_rows(7, 16, 2)
    steps = (ranges[1] - ranges[0]) / np.float32(255)
    buckets = np.clip(np.floor((vectors - ranges[0]) / steps), 0, 255)
    np.testing.assert_array_equal(quantize(vectors, "uint8", ranges), buckets.astype(np.uint8))
    np.testing.assert_array_equal(quantize(vectors, "int8", ranges), (buckets - 128).astype(np.int8))
    assert (quantize(calibration, "uint8", ranges).max(axis=0) >= 254).all()  # the highs: the top buckets
    above = np.full((1, 16), 5.0, dtype=np.float32)
    assert (quantize(above, "int8", ranges) == 127).all() and (quantize(-above, "uint8", ranges) == 0).all()
    flat = np.stack([ranges[0], ranges[0]])  # a dimension with no range does not divide by zero
    assert (quantize(vectors, "uint8", flat) >= 0).all()
    with pytest.raises(ValueError):
        quantize(vectors, "int8", None)


def test_a_json_row_of_each_type_is_its_integers():
    vectors = unit_rows(1, 16, 3)
    ranges = ranges_of(unit_rows(50, 16, 4))
    for name in TYPES:
        row = quantize(vectors, name, ranges)
        assert row_encoder("float", name)(row.tobytes()) == pytest.approx(row[0].tolist())


def test_the_first_workers_ranges_are_everyones(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    card = ModelCard(name="m-shared", dim=16, max_length=128, vocab_size=100, model_type="bert", last_seen=1.0)
    first = Calibration(RangeBook(client, card), lambda texts: unit_rows(len(texts), 16, 10), truncate_dimensions)
    second = Calibration(RangeBook(client, card), lambda texts: unit_rows(len(texts), 16, 11), truncate_dimensions)
    ranges = first.ranges(16)
    np.testing.assert_array_equal(ranges, ranges_of(unit_rows(len(CALIBRATION_TEXTS), 16, 10)))
    np.testing.assert_array_equal(second.ranges(16), ranges)  # not its own vectors' ranges
    # A narrower width is calibrated on the truncated, re-normalized vectors, as requests are.
    np.testing.assert_array_equal(
        first.ranges(8), ranges_of(truncate_dimensions(unit_rows(len(CALIBRATION_TEXTS), 16, 10), 8)))
    # Another model under the same name (another shape) does not inherit them.
    other = ModelCard(name="m-shared", dim=16, max_length=512, vocab_size=100, model_type="bert", last_seen=1.0)
    third = Calibration(RangeBook(client, other), lambda texts: unit_rows(len(texts), 16, 12), truncate_dimensions)
    assert not np.array_equal(third.ranges(16), ranges)
    # They are part of the model's catalogue entry: removing the model removes them.
    catalogue = Catalogue(client)
    catalogue.announce(card, 1.0)
    assert catalogue.remove("m-shared")
    assert RangeBook(client, card).get(16) is None


@pytest.mark.parametrize("kind", ["int8", "ubinary"])
def test_a_quantized_result_round_trips_through_parquet(tmp_path, kind):
    store = open_store((tmp_path / "store").as_uri())
    dim = 24
    matrix = quantize(unit_rows(3, dim, 5), kind, ranges_of(unit_rows(40, dim, 6)))
    output = ChunkOutput(items=[0, 1, 2, 3], rows=[1, 0, 1, 1], tokens=[3, 0, 4, 5], dim=dim,
                         vectors=matrix.tobytes(), embedding_type=kind,
                         errors=[None, {"status": 400, "error": {"message": "bad"}}, None, None])
    manifest = write_result(store, "jobs/q/", [output], embedding_type=kind)
    assert manifest["embedding_type"] == kind and read_manifest(store, "jobs/q/")["dim"] == dim
    [batch] = list(iter_result_batches(store, "jobs/q/"))
    assert batch.schema.field("embedding").type.list_size == TYPES[kind].values(dim)
    assert to_chunk_output(batch) == output


def test_the_same_bytes_as_sentence_transformers_quantize_embeddings():
    from sentence_transformers.util.quantization import quantize_embeddings

    calibration = unit_rows(300, 32, 7)
    ranges = ranges_of(calibration)
    vectors = unit_rows(9, 32, 8) * 1.5  # some values outside the ranges: clipped by both
    for name in ("int8", "uint8", "binary", "ubinary"):
        theirs = quantize_embeddings(vectors, precision=name, ranges=ranges)
        ours = quantize(vectors, name, ranges)
        assert ours.dtype == theirs.dtype
        np.testing.assert_array_equal(ours, theirs)
