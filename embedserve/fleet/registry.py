"""Which models are served, by how many live workers: workers announce, the API reads.

A worker's `Heartbeat` stamps it alive every HEARTBEAT_INTERVAL_S (`Liveness.beat`, on Redis's
clock) and announces its model's card in the catalogue (`embedserve/fleet/catalogue.py`). The API's
`Registry` is the catalogue's cards, the declared models (EMBED_MODELS, EMBED_RERANK_MODELS) and
each model's live-worker count, cached for REGISTRY_CACHE_S. A model with no live worker is
still known: work for it waits for a worker (jobs queue; a sync request waits for a cold start).

A lookup that misses the cached view re-reads Redis before answering "no such model", so an API
process that cached the view a moment before a worker announced never tells a client that a
served model does not exist.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import redis

from embedserve import defaults
from embedserve.fleet.catalogue import CardConflict, Catalogue, ModelCard, ModelKind  # noqa: F401 - re-exported
from embedserve.fleet.liveness import Liveness

log = logging.getLogger(__name__)

__all__ = ["CardConflict", "Heartbeat", "ModelCard", "ModelKind", "Registry", "ServedModel"]


class Heartbeat:
    """A daemon thread that keeps one worker alive in the fleet and its model's card in the catalogue.

    `start` first refuses (CardConflict) a card that disagrees with the live workers' of the same
    model. `withdraw` takes the worker out of routing (a drain) while it keeps beating, so it stays
    in the fleet and what it holds is not reaped; `stop` ends the beats and withdraws.
    """

    def __init__(self, client: redis.Redis, worker_id: str, card: ModelCard,
                 interval: float = defaults.HEARTBEAT_INTERVAL_S, *,
                 dead_after: float = defaults.WORKER_DEAD_AFTER_S, info: dict | None = None):
        self._worker_id, self._card, self._interval = worker_id, card, interval
        self._info = {"kind": card.kind, **(info or {})}
        self._liveness = Liveness(client, dead_after)
        self._catalogue = Catalogue(client)
        self._routable = True
        self._failing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self, check: bool = True) -> None:
        """Check the card against live peers (unless `check` is False), beat once, then every interval."""
        if check:
            live = self._liveness.live_counts([self._card.name])[self._card.name]
            self._catalogue.check_compatible(self._card, live)
        self.beat()  # be visible before the first wait
        self._thread.start()

    def beat(self) -> float:
        """One heartbeat now; returns Redis's time."""
        # Draining (not routable): stay in the fleet, out of routing.
        now = self._liveness.beat(self._worker_id, self._card.name, self._info, routed=self._routable)
        self._catalogue.announce(self._card, now)
        return now

    def withdraw(self) -> None:
        """Stop routing new work here at once; the beats go on (the worker stays in the fleet)."""
        self._routable = False
        try:
            self._liveness.withdraw(self._worker_id, self._card.name)
        except redis.RedisError:
            log.warning("could not withdraw %s from routing now (Redis error); the next beat retries",
                        self._worker_id)

    def stop(self) -> None:
        """End the beats and withdraw from routing (the fleet forgets the worker once its stamp lapses)."""
        self._routable = False
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._interval * 2)
        try:
            self._liveness.withdraw(self._worker_id, self._card.name)
        except redis.RedisError:
            pass  # Redis gone at shutdown: the stamp simply lapses.

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.beat()
                if self._failing:
                    log.info("heartbeat of %s reaches Redis again", self._worker_id)
                self._failing = False
            except redis.RedisError as exc:
                if not self._failing:  # once per outage, not every tick
                    log.warning("heartbeat of %s failed (%s); retrying every %gs", self._worker_id, exc,
                                self._interval)
                self._failing = True


@dataclass(frozen=True)
class ServedModel:
    """A model the API knows of and how many workers serve it now (maybe 0)."""

    card: ModelCard
    live_workers: int


@dataclass
class Registry:
    """The API's cached view of the catalogue, declared models and live workers.

    `declared` cards (from EMBED_MODELS / EMBED_RERANK_MODELS) stand in until a worker announces a
    real card under the same name, which wins.
    """

    client: redis.Redis
    declared: tuple[ModelCard, ...] = ()
    cache_seconds: float = defaults.REGISTRY_CACHE_S
    dead_after: float = defaults.WORKER_DEAD_AFTER_S
    catalogue_ttl: float = defaults.CATALOGUE_TTL_S
    _models: dict[str, ServedModel] = field(default_factory=dict)
    _by_name: dict[str, str] = field(default_factory=dict)
    _fetched_at: float = -1e9
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._catalogue = Catalogue(self.client, self.catalogue_ttl)
        self._liveness = Liveness(self.client, self.dead_after)

    @classmethod
    def from_settings(cls, client: redis.Redis, settings, **overrides) -> Registry:
        """A registry with `settings`' declared models, dead-after time and catalogue TTL."""
        declared = tuple([ModelCard.declared(n, ModelKind.EMBEDDING) for n in settings.declared_models]
                         + [ModelCard.declared(n, ModelKind.RERANK) for n in settings.declared_rerank_models])
        return cls(client, declared=declared, dead_after=settings.worker_dead_after,
                   catalogue_ttl=settings.catalogue_ttl, **overrides)

    def models(self, fresh: bool = False) -> list[ServedModel]:
        """Every known model (catalogued or declared), live or not, by name; `fresh` skips the cache."""
        self._refresh(force_after=time.monotonic() if fresh else None)
        return sorted(self._models.values(), key=lambda m: m.card.name)

    def lookup(self, name: str) -> ServedModel | None:
        """The model served under `name` (served name or alias), or None if Redis does not know it either."""
        asked = time.monotonic()
        self._refresh()
        found = self._find(name)
        if found is None:  # the cached view may predate the worker's announcement: ask Redis
            self._refresh(force_after=asked)
            found = self._find(name)
        return found

    def only(self, kind: ModelKind | str = ModelKind.EMBEDDING) -> ServedModel | None:
        """The model of `kind` a request that names none means: the only live one, else the only one known."""
        asked = time.monotonic()
        self._refresh()
        found = self._only(kind)
        if found is None:
            self._refresh(force_after=asked)
            found = self._only(kind)
        return found

    def _find(self, name: str) -> ServedModel | None:
        canonical = self._by_name.get(name)
        return self._models.get(canonical) if canonical else None

    def _only(self, kind: ModelKind | str) -> ServedModel | None:
        kind = ModelKind(kind).value
        of_kind = [m for m in self._models.values() if m.card.kind == kind]
        live = [m for m in of_kind if m.live_workers]
        if live:
            return live[0] if len(live) == 1 else None
        return of_kind[0] if len(of_kind) == 1 else None

    def _refresh(self, force_after: float | None = None) -> None:
        """Re-read Redis when the cache is older than cache_seconds, or (force) older than `force_after`."""
        def fresh_enough() -> bool:
            if force_after is not None:
                return self._fetched_at >= force_after  # another thread re-read since we asked
            return time.monotonic() - self._fetched_at < self.cache_seconds

        if fresh_enough():
            return
        with self._lock:
            if fresh_enough():
                return
            started = time.monotonic()
            cards = {card.name: card for card in self.declared}
            cards.update({card.name: card for card in self._catalogue.cards()})  # a real card wins
            counts = self._liveness.live_counts(list(cards))
            self._models = {name: ServedModel(card, counts.get(name, 0)) for name, card in cards.items()}
            by_name: dict[str, str] = {}
            for card in cards.values():
                for alias in card.aliases:
                    by_name.setdefault(alias, card.name)
            for card in cards.values():  # a served name wins over another model's alias
                by_name[card.name] = card.name
            self._by_name = by_name
            self._fetched_at = started
