"""The model catalogue, the API's registry and the worker's heartbeat against a real Redis (no API, no worker)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from embedserve import redis_keys
from embedserve.fleet.catalogue import CardConflict, Catalogue, ModelCard, ModelKind
from embedserve.fleet.liveness import Liveness
from embedserve.fleet.registry import Heartbeat, Registry
from tests.stack import RedisServer

MINILM_CARD = ModelCard(name="mini", aliases=("org/mini",), dim=384, max_length=256, vocab_size=30522)


@pytest.fixture(scope="module")
def server():
    server = RedisServer.start("--save", "")  # private: these tests flush it
    yield server
    server.stop()


@pytest.fixture
def client(server):
    client = server.client()
    client.flushdb()
    return client


def redis_now(client) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


def serve(client, card: ModelCard, worker_id: str = "w1") -> float:
    """What one heartbeat of a worker of `card` writes: a live stamp, then the card (Redis's time)."""
    now = Liveness(client).beat(worker_id, card.name)
    Catalogue(client).announce(card, now)
    return now


def test_announce_stores_the_card_with_redis_time(client):
    now = serve(client, MINILM_CARD)
    [card] = Catalogue(client).cards()
    assert card.name == "mini" and card.dim == 384 and card.aliases == ("org/mini",)
    assert card.last_seen == pytest.approx(now) and abs(now - redis_now(client)) < 5


def test_a_model_without_workers_stays_until_the_ttl_by_redis_clock(client):
    catalogue = Catalogue(client, ttl=600)
    now = redis_now(client)
    catalogue.announce(ModelCard(name="recent", dim=8), now - 500)  # workers gone 500 s ago: kept
    catalogue.announce(ModelCard(name="retired", dim=8), now - 700)  # gone longer than the TTL: forgotten
    client.zadd(redis_keys.worker_heartbeats("retired"), {"dead-worker": now - 700})
    assert [c.name for c in catalogue.cards()] == ["recent"]
    assert client.hexists(redis_keys.known_models(), "retired") == 0  # pruned on read, with its stale worker set
    assert client.exists(redis_keys.worker_heartbeats("retired")) == 0
    # A stale card whose worker stamped within the TTL is not forgotten (the card write was lost).
    catalogue.announce(ModelCard(name="beating", dim=8), now - 700)
    Liveness(client).beat("w2", "beating")
    assert [c.name for c in catalogue.cards()] == ["beating", "recent"]


def test_remove_forgets_a_model_once(client):
    serve(client, MINILM_CARD)
    catalogue = Catalogue(client)
    assert catalogue.remove("mini") is True
    assert catalogue.remove("mini") is False
    assert catalogue.cards() == []


def test_a_card_that_disagrees_with_live_workers_is_refused(client):
    serve(client, MINILM_CARD)
    catalogue, live = Catalogue(client), Liveness(client).live_counts(["mini"])["mini"]
    assert live == 1
    bigger = ModelCard(name="mini", aliases=("org/mini",), dim=1024, max_length=256, vocab_size=30522)
    with pytest.raises(CardConflict) as refused:
        catalogue.check_compatible(bigger, live)
    assert str(refused.value).startswith(
        "another worker serves 'mini' with dimensions 384; this one has 1024: give it another EMBED_MODEL_NAME")
    other_aliases = ModelCard(name="mini", aliases=("mini-v2",), dim=384, max_length=512, vocab_size=30522)
    with pytest.raises(CardConflict, match=r"max tokens 256, aliases org/mini; this one has max tokens 512, "
                                           r"aliases mini-v2"):
        catalogue.check_compatible(other_aliases, live)
    catalogue.check_compatible(replace(MINILM_CARD, created=123), live)  # same card: fine
    # With no live worker the old card is history: the new one replaces it.
    Liveness(client).withdraw("w1", "mini")
    catalogue.check_compatible(bigger, Liveness(client).live_counts(["mini"])["mini"])


def test_heartbeat_refuses_a_conflicting_card_before_announcing(client):
    serve(client, MINILM_CARD)
    odd = Heartbeat(client, "w-odd", ModelCard(name="mini", dim=1024, max_length=256, vocab_size=30522))
    with pytest.raises(CardConflict):
        odd.start()
    assert Catalogue(client).get("mini").dim == 384  # the live workers' card was not overwritten
    assert Liveness(client).live_counts(["mini"])["mini"] == 1


def test_heartbeat_withdraw_leaves_routing_but_stays_in_the_fleet(client):
    beat = Heartbeat(client, "w-drain", MINILM_CARD, interval=0.05)
    beat.start()
    liveness = Liveness(client)
    assert liveness.live_counts(["mini"])["mini"] == 1
    beat.withdraw()
    beat.beat()  # beats go on while draining ...
    assert liveness.live_counts(["mini"])["mini"] == 0  # ... out of routing
    assert liveness.alive(["w-drain"]) == {"w-drain": True}  # ... and in the fleet: its work is not reaped
    beat.stop()
    assert liveness.live_counts(["mini"])["mini"] == 0
    assert Catalogue(client).get("mini") is not None  # the model stays catalogued


def test_registry_lists_catalogued_and_declared_models_with_live_counts(client):
    serve(client, MINILM_CARD)
    Catalogue(client).announce(ModelCard(name="asleep", dim=64), redis_now(client) - 3600)
    registry = Registry(client, declared=(ModelCard.declared("mini"), ModelCard.declared("future-model"),
                                          ModelCard.declared("future-reranker", ModelKind.RERANK)))
    models = {m.card.name: m for m in registry.models()}
    assert {n: m.live_workers for n, m in models.items()} == {"asleep": 0, "future-model": 0,
                                                               "future-reranker": 0, "mini": 1}
    assert models["mini"].card.dim == 384  # a real card wins over a declared one
    assert models["future-model"].card.dim == 0 and models["future-model"].card.is_declared
    assert models["future-reranker"].card.kind == "rerank"
    assert registry.lookup("org/mini").card.name == "mini"
    assert registry.lookup("nope") is None


def test_a_lookup_miss_rereads_redis_despite_the_cache(client):
    registry = Registry(client, cache_seconds=3600)
    assert registry.models() == []  # cached: an empty view, trusted for an hour
    serve(client, MINILM_CARD)
    found = registry.lookup("mini")
    assert found is not None and found.live_workers == 1
    assert registry.lookup("org/mini") is not None
    assert registry.only(ModelKind.EMBEDDING).card.name == "mini"


def test_only_model_is_the_only_live_one_else_the_only_known_one(client):
    registry = Registry(client, cache_seconds=0)
    assert registry.only(ModelKind.EMBEDDING) is None
    Catalogue(client).announce(ModelCard(name="asleep", dim=8), redis_now(client))
    assert registry.only(ModelKind.EMBEDDING).card.name == "asleep"  # none live, one known
    serve(client, MINILM_CARD)
    assert registry.only(ModelKind.EMBEDDING).card.name == "mini"  # one live among two known
    serve(client, ModelCard(name="other", dim=8), worker_id="w2")
    assert registry.only(ModelKind.EMBEDDING) is None  # two live: ambiguous
    assert registry.only(ModelKind.RERANK) is None
    serve(client, ModelCard(name="ranker", kind="rerank"), worker_id="w3")
    assert registry.only(ModelKind.RERANK).card.name == "ranker"
    declared = Registry(client, declared=(ModelCard.declared("only-declared", ModelKind.RERANK),), cache_seconds=0)
    client.delete(redis_keys.known_models())
    assert declared.only(ModelKind.RERANK).card.name == "only-declared"
