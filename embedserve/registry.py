"""Which models are served, by how many live workers: workers announce, the API reads.

A worker heartbeats every HEARTBEAT_INTERVAL_S into a sorted set per model (member = worker id,
score = time) and refreshes its model card in one hash. The API counts members seen within
HEARTBEAT_TTL_S: a model with none is "known but down" (503) for KNOWN_MODEL_TTL_S, after which
it is forgotten (404), so a model removed from a deployment stops answering 503 forever.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from enum import Enum

import redis

from embedserve import defaults, keys


class ModelKind(str, Enum):
    """What a served model does, so each endpoint takes only its own kind."""

    EMBEDDING = "embedding"
    RERANK = "rerank"


@dataclass(frozen=True)
class ModelCard:
    """What a worker tells the API about the model it serves."""

    name: str
    aliases: tuple[str, ...] = ()
    kind: str = ModelKind.EMBEDDING.value
    dim: int = 0
    max_length: int = 0
    vocab_size: int = 0
    model_type: str = ""
    created: int = 0
    last_seen: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> "ModelCard":
        data = json.loads(raw)
        data["aliases"] = tuple(data.get("aliases", ()))
        known = cls.__dataclass_fields__.keys()
        return cls(**{k: v for k, v in data.items() if k in known})


def heartbeat(client: redis.Redis, worker_id: str, card: ModelCard) -> None:
    """Announce one worker of `card` as alive now (one round trip)."""
    now = time.time()
    card = ModelCard(**{**asdict(card), "last_seen": now})
    pipe = client.pipeline(transaction=False)
    pipe.zadd(keys.worker_heartbeats(card.name), {worker_id: now})
    # Drop long-dead members so the set does not grow with every restart.
    pipe.zremrangebyscore(keys.worker_heartbeats(card.name), "-inf", now - defaults.KNOWN_MODEL_TTL_S)
    pipe.hset(keys.known_models(), card.name, card.to_json())
    pipe.execute()


def withdraw(client: redis.Redis, worker_id: str, model: str) -> None:
    """Remove a worker that is shutting down cleanly, so the API stops routing to it at once."""
    client.zrem(keys.worker_heartbeats(model), worker_id)


class Heartbeat:
    """A daemon thread that keeps one worker announced until stopped."""

    def __init__(self, client: redis.Redis, worker_id: str, card: ModelCard,
                 interval: float = defaults.HEARTBEAT_INTERVAL_S):
        self._client, self._worker_id, self._card, self._interval = client, worker_id, card, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        heartbeat(self._client, self._worker_id, self._card)  # be visible before the first wait
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval * 2)
        try:
            withdraw(self._client, self._worker_id, self._card.name)
        except redis.RedisError:
            pass  # Redis gone at shutdown: the heartbeat simply expires.

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                heartbeat(self._client, self._worker_id, self._card)
            except redis.RedisError:
                continue  # Redis blip: try again next tick; the TTL covers a few misses.


@dataclass(frozen=True)
class ServedModel:
    """A model the API knows of and how many workers serve it now."""

    card: ModelCard
    live_workers: int


@dataclass
class Registry:
    """The API's cached view of served models, refreshed at most every REGISTRY_CACHE_S."""

    client: redis.Redis
    cache_seconds: float = defaults.REGISTRY_CACHE_S
    _models: dict[str, ServedModel] = field(default_factory=dict)
    _by_name: dict[str, str] = field(default_factory=dict)
    _fetched_at: float = -1e9
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def models(self) -> list[ServedModel]:
        """All known models, live or not, by name."""
        self._refresh()
        return sorted(self._models.values(), key=lambda m: m.card.name)

    def lookup(self, name: str) -> ServedModel | None:
        """The model served under `name` (served name or alias), or None if never seen."""
        self._refresh()
        canonical = self._by_name.get(name)
        return self._models.get(canonical) if canonical else None

    def _refresh(self) -> None:
        if time.monotonic() - self._fetched_at < self.cache_seconds:
            return
        with self._lock:
            if time.monotonic() - self._fetched_at < self.cache_seconds:
                return
            now = time.time()
            cards = [ModelCard.from_json(raw) for raw in self.client.hgetall(keys.known_models()).values()]
            cards = [c for c in cards if now - c.last_seen < defaults.KNOWN_MODEL_TTL_S]
            pipe = self.client.pipeline(transaction=False)
            for card in cards:
                pipe.zcount(keys.worker_heartbeats(card.name), now - defaults.HEARTBEAT_TTL_S, "+inf")
            counts = pipe.execute() if cards else []
            self._models = {c.name: ServedModel(c, int(n)) for c, n in zip(cards, counts)}
            self._by_name = {}
            for card in cards:
                for alias in card.aliases:
                    self._by_name.setdefault(alias, card.name)
            for card in cards:  # a served name wins over another model's alias
                self._by_name[card.name] = card.name
            self._fetched_at = time.monotonic()
