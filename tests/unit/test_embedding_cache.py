"""The embedding cache's parts without a worker: fingerprints, digests, entries in a real Redis."""

from __future__ import annotations

import numpy as np
import redis

from embedserve.redis_policy import check_cache_policy
from tests.stack import RedisServer, free_port
from worker.cache.digests import ids_options, input_digests, text_options
from worker.cache.fingerprint import model_fingerprint
from worker.cache.vector_cache import VectorCache, cache_client


def test_the_fingerprint_follows_the_files_and_the_arithmetic(tmp_path):
    (tmp_path / "config.json").write_text('{"hidden_size": 8}')
    (tmp_path / "model.safetensors").write_bytes(b"weights-1")
    first = model_fingerprint(str(tmp_path), dtype="float32", device_type="cpu")
    assert model_fingerprint(str(tmp_path), dtype="float32", device_type="cpu") == first
    assert model_fingerprint(str(tmp_path), dtype="bfloat16", device_type="cpu") != first
    assert model_fingerprint(str(tmp_path), dtype="float32", device_type="cpu", deterministic=True) != first
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"bytecode")  # not the model
    assert model_fingerprint(str(tmp_path), dtype="float32", device_type="cpu") == first
    (tmp_path / "model.safetensors").write_bytes(b"weights-2")  # other weights under the same name
    assert model_fingerprint(str(tmp_path), dtype="float32", device_type="cpu") != first


def test_models_kept_under_a_cache_folder_are_told_apart(tmp_path):
    # The ignored folders (.cache, __pycache__) count below the model's directory only: every model
    # under ~/.cache/... had all its files skipped, so two models of one dtype had one fingerprint.
    fingerprints = set()
    for name in ("bge-small", "e5-small"):
        model = tmp_path / ".cache" / "models" / name
        model.mkdir(parents=True)
        (model / "config.json").write_text(f'{{"name": "{name}"}}')
        fingerprints.add(model_fingerprint(str(model), dtype="float32", device_type="cpu"))
    assert len(fingerprints) == 2


def test_a_large_weight_file_is_told_from_another_with_the_same_header(tmp_path):
    # A fine-tune copied over the old directory: same safetensors header, same size, other weights.
    header = b'{"w": {"dtype": "F32", "shape": [2097152], "data_offsets": [0, 8388608]}}'
    def weights(fill: bytes) -> bytes:
        return len(header).to_bytes(8, "little") + header + fill * (8388608 // len(fill))
    (tmp_path / "config.json").write_text('{"hidden_size": 8}')
    (tmp_path / "model.safetensors").write_bytes(weights(b"\x01\x02\x03\x04"))
    first = model_fingerprint(str(tmp_path), dtype="float32", device_type="cpu")
    (tmp_path / "model.safetensors").write_bytes(weights(b"\x01\x02\x03\x05"))
    assert model_fingerprint(str(tmp_path), dtype="float32", device_type="cpu") != first


def test_digests_name_the_input_and_the_options_that_change_its_vector():
    plain = text_options("", False, "right", None)
    (a,) = input_digests(["hello"], plain)
    assert input_digests(["hello"], plain) == [a]
    assert input_digests(["hello "], plain) != [a]
    assert input_digests(["hello"], text_options("query: ", False, "right", None)) != [a]
    assert input_digests(["hello"], text_options("", True, "right", None)) != [a]
    assert input_digests(["hello"], text_options("", True, "right", 8)) != input_digests(["hello"],
                                                                                        text_options("", True, "right", None))
    assert input_digests([[1, 2]], ids_options(False, "right")) != input_digests([[1, 2]], ids_options(True, "left"))
    assert input_digests(["\ud800"], plain)  # a lone surrogate (JSON allows one) digests too


def test_entries_round_trip_and_a_dead_cache_is_a_miss(tmp_path):
    server = RedisServer.start("--maxmemory-policy", "allkeys-lru")
    counts: dict[str, int] = {}
    try:
        cache = VectorCache(cache_client(server.url), "f" * 32, 4,
                            count=lambda outcome, n: counts.__setitem__(outcome, counts.get(outcome, 0) + n))
        vector = np.arange(4, dtype=np.float32)
        cache.put("scope", [("d1", 7, vector)])
        found = cache.get("scope", ["d1", "d2"])
        assert found[0][0] == 7 and np.array_equal(found[0][1], vector) and found[1] is None
        assert cache.get("other-scope", ["d1"]) == [None]
        assert counts == {"hits": 1, "misses": 2}
        assert check_cache_policy(server.client(), server.client()) is not None  # the same server: refused
    finally:
        server.stop()
    dead = VectorCache(cache_client(f"redis://127.0.0.1:{free_port()}/0"), "f" * 32, 4,
                       count=lambda outcome, n: counts.__setitem__(outcome, counts.get(outcome, 0) + n))
    assert dead.get("scope", ["d1"]) == [None] and counts["errors"] == 1
    assert dead.get("scope", ["d1"]) == [None] and counts["errors"] == 1  # paused: not tried again at once
    dead.put("scope", [("d1", 7, vector)])  # never raises
    assert isinstance(dead.redis, redis.Redis)


def test_a_cache_redis_without_a_memory_limit_is_refused():
    # allkeys-lru with maxmemory 0 never evicts: the cache would grow until the machine runs out of memory.
    broker = RedisServer.start(private=True)
    cache = RedisServer.start("--maxmemory-policy", "allkeys-lru")
    try:
        why = check_cache_policy(cache.client(), broker.client())
        assert why is not None and "no maxmemory" in why
        cache.client().config_set("maxmemory", "64mb")
        assert check_cache_policy(cache.client(), broker.client()) is None
    finally:
        cache.stop()
        broker.stop()
