"""The model catalogue: every model once served, with its card, kept in Redis for the API.

A worker announces its model's card (kind, dimensions, maximum tokens, aliases) with every
heartbeat, stamped with Redis's time. The card stays after its workers stop, so the API keeps
accepting work for the model while none runs (an autoscaler starts one from zero): it goes only
when an operator removes it (`embedserve models remove NAME`) or when EMBED_CATALOGUE_TTL passes
with no worker. That age is judged on Redis's clock when the catalogue is read, never on a host's.

Models can also be declared up front (EMBED_MODELS, EMBED_RERANK_MODELS): the API knows their
served name and kind before any worker announced a card. A declared card's dimensions, maximum
tokens and vocabulary are 0, "unknown": the checks that need them happen in the worker.

Workers of one model must agree on its card, or each heartbeat would overwrite the other's and
the API would check requests against whichever wrote last: `check_compatible` refuses, at start,
a worker whose card disagrees with the one its live peers announced.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from enum import Enum

import redis

from embedserve import defaults, redis_keys
from embedserve.settings import ConfigError

log = logging.getLogger(__name__)


class ModelKind(str, Enum):
    """What a served model does, so each endpoint takes only its own kind."""

    EMBEDDING = "embedding"
    RERANK = "rerank"


@dataclass(frozen=True)
class ModelCard:
    """What a worker tells the API about the model it serves (0 = not known yet, for a declared model)."""

    name: str
    aliases: tuple[str, ...] = ()
    kind: str = ModelKind.EMBEDDING.value
    dim: int = 0
    max_length: int = 0
    vocab_size: int = 0
    model_type: str = ""
    created: int = 0
    last_seen: float = 0.0  # Redis's time of the last announcement; 0 = declared, never announced

    @classmethod
    def declared(cls, name: str, kind: ModelKind | str = ModelKind.EMBEDDING) -> ModelCard:
        """The card of a model named in EMBED_MODELS / EMBED_RERANK_MODELS: its name and kind only."""
        return cls(name=name, kind=ModelKind(kind).value)

    @property
    def is_declared(self) -> bool:
        """True for a card no worker announced (its sizes are unknown)."""
        return self.last_seen == 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> ModelCard:
        data = json.loads(raw)
        data["aliases"] = tuple(data.get("aliases", ()))
        known = cls.__dataclass_fields__.keys()
        return cls(**{k: v for k, v in data.items() if k in known})


class CardConflict(ConfigError):
    """A worker's card disagrees with the card its model's live workers announced."""


# What two workers of one model must agree on, and how a message names each.
_MUST_AGREE = (("kind", "kind"), ("dim", "dimensions"), ("max_length", "max tokens"),
               ("aliases", "aliases"), ("vocab_size", "vocabulary size"))

# Read the catalogue, forgetting (atomically, by Redis's clock) each model announced longer ago than
# the TTL that no worker stamped within it either. KEYS: catalogue hash. ARGV: TTL seconds, key prefix.
# Returns {Redis's time as a string, name1, card1, name2, card2, ...}.
_READ = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local since = now - tonumber(ARGV[1])
local raw = redis.call('HGETALL', KEYS[1])
local out = {tostring(now)}
for i = 1, #raw, 2 do
  local ok, card = pcall(cjson.decode, raw[i + 1])
  local seen = (ok and type(card) == 'table' and tonumber(card['last_seen'])) or 0
  local workers = ARGV[2] .. 'workers:' .. raw[i]
  if seen < since and redis.call('ZCOUNT', workers, since, '+inf') == 0 then
    redis.call('HDEL', KEYS[1], raw[i])
    redis.call('DEL', workers, ARGV[2] .. 'ranges:' .. raw[i])
  else
    out[#out + 1] = raw[i]
    out[#out + 1] = raw[i + 1]
  end
end
return out
"""


class Catalogue:
    """Every model once served, by served name, in one Redis hash (`redis_keys.known_models`)."""

    def __init__(self, client: redis.Redis, ttl: float = defaults.CATALOGUE_TTL_S):
        self.redis = client
        self.ttl = ttl
        self._read = client.register_script(_READ)

    def announce(self, card: ModelCard, now: float) -> None:
        """Write `card` as seen at `now` (Redis's time, e.g. what `Liveness.beat` returned)."""
        self.redis.hset(redis_keys.known_models(), card.name, replace(card, last_seen=float(now)).to_json())

    def remove(self, name: str) -> bool:
        """Forget the model served as `name`; False if the catalogue has no such model.

        A model that still has live workers comes back with their next heartbeat.
        """
        pipe = self.redis.pipeline()
        pipe.hdel(redis_keys.known_models(), name)
        pipe.delete(redis_keys.quant_ranges(name))  # its int8 calibration goes with it
        return bool(pipe.execute()[0])

    def get(self, name: str) -> ModelCard | None:
        """The card stored for `name` as is (no TTL check), or None."""
        raw = self.redis.hget(redis_keys.known_models(), name)
        return _parse(name, raw) if raw is not None else None

    def read(self) -> tuple[float, list[ModelCard]]:
        """Redis's time now and every catalogued card by name, after forgetting the expired ones."""
        reply = self._read(keys=[redis_keys.known_models()], args=[self.ttl, redis_keys.PREFIX])
        now = float(reply[0])
        cards = []
        for i in range(1, len(reply), 2):
            card = _parse(reply[i], reply[i + 1])
            if card is not None:
                cards.append(card)
        return now, sorted(cards, key=lambda c: c.name)

    def cards(self) -> list[ModelCard]:
        """Every catalogued card by name (expired ones are forgotten on the way)."""
        return self.read()[1]

    def check_compatible(self, card: ModelCard, live_count: int) -> None:
        """Refuse (CardConflict) a worker whose card disagrees with the one of `live_count` live peers.

        With no live worker of the model the old card is history: the new one simply replaces it.
        """
        if live_count <= 0:
            return
        old = self.get(card.name)
        if old is None:
            return
        diffs = [(label, getattr(old, attr), getattr(card, attr)) for attr, label in _MUST_AGREE
                 if getattr(old, attr) != getattr(card, attr)]
        if not diffs:
            return
        if len(diffs) == 1:
            label, theirs, ours = diffs[0]
            have = f"{label} {_show(theirs)}; this one has {_show(ours)}"
        else:
            have = (", ".join(f"{label} {_show(theirs)}" for label, theirs, _ in diffs) + "; this one has "
                    + ", ".join(f"{label} {_show(ours)}" for label, _, ours in diffs))
        env = "EMBED_RERANK_MODEL_NAME" if card.kind == ModelKind.RERANK.value else "EMBED_MODEL_NAME"
        workers = "another worker serves" if live_count == 1 else f"{live_count} other workers serve"
        raise CardConflict(f"{workers} '{card.name}' with {have}: give it another {env}, "
                           f"or stop the other workers of '{card.name}' first")


def _parse(name: str | bytes, raw: str | bytes) -> ModelCard | None:
    try:
        return ModelCard.from_json(raw)
    except (ValueError, TypeError):
        log.warning("the catalogue's card for %r is not a model card; ignored", name)
        return None


def _show(value: object) -> str:
    if isinstance(value, tuple):
        return ", ".join(value) if value else "(none)"
    return str(value)
