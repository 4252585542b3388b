"""The int8/uint8 ranges of this worker's model: from a fixed calibration set, shared through Redis.

Scalar quantization needs, per dimension, the range values usually fall in. The ranges come from
embedding CALIBRATION_TEXTS (built here from fixed word lists, so every worker of every version
embeds the same texts) as documents, at full width, once per worker; a width asked with
`dimensions` takes the same vectors truncated and re-normalized, as requests are. The first worker
to need a width stores its ranges in the model's catalogue entry (embedserve/fleet/quant_ranges.py) and
every worker uses the stored ones, so a text's bytes do not depend on which worker ran it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from embedserve.fleet.quant_ranges import RangeBook
from worker.quantize import ranges_of

log = logging.getLogger(__name__)

_SUBJECTS = (
    "The city council", "A software engineer", "My grandmother", "The central bank", "Our research team",
    "The football club", "A small bakery", "The hospital", "This open-source library", "The river delta",
    "An astronaut", "The school board", "A migrating flock of geese", "The new smartphone", "The museum",
    "A freelance translator", "The database cluster", "The orchestra", "A volcano in Iceland", "The startup",
    "The farmer", "A judge", "The search engine", "The vaccine trial", "The old lighthouse",
    "A teenage chess player", "The shipping company", "The rainforest", "The compiler", "A street musician",
    "The election commission", "The coffee shop",
)
_ACTIONS = (
    "announced a plan to reduce", "spent the afternoon studying", "quietly rewrote", "raised concerns about",
    "celebrated the anniversary of", "could not explain", "invested heavily in", "published a report on",
    "was criticized for ignoring", "tested a prototype of", "refused to comment on", "slowly recovered from",
    "compared three options for", "accidentally deleted", "won an award for", "asked volunteers to help with",
    "measured the impact of", "postponed the decision on", "translated the manual for", "built a model of",
)
_OBJECTS = (
    "interest rates", "the morning traffic", "its memory allocator", "the harvest", "carbon emissions",
    "the summer festival", "the quarterly budget", "a rare bird species", "patient waiting times",
    "the vector index", "the ancient manuscript", "the championship final", "ocean temperatures",
    "the login page", "housing prices", "a recipe for sourdough bread", "the train timetable",
    "quantum error correction", "the city's water supply", "the privacy policy", "solar panel efficiency",
    "the children's library", "a 404 error on checkout", "protein folding", "the tax form",
)
_TAILS = (
    "", "", " last week.", " after months of debate.", ", according to local news.",
    " despite the heavy rain.", " in Paris, Tokyo and Nairobi.", " with a budget of 2.5 million euros.",
    " — nobody expected it.", ", which surprised everyone involved in the project.",
    " before the deadline on 12 March 2024.", " using Python 3.11 and PostgreSQL.",
)
_QUESTIONS = (
    "How do I deal with {o}?", "What is the best way to handle {o}?", "Why does {o} change over time?",
    "Where can I find data about {o}?", "Is it safe to ignore {o}?", "{o} explained simply",
)


def calibration_texts(count: int = 512) -> list[str]:
    """`count` varied sentences and questions, the same on every worker (no randomness, no files)."""
    texts = []
    for i in range(count):
        subject = _SUBJECTS[i % len(_SUBJECTS)]
        action = _ACTIONS[(i * 7) % len(_ACTIONS)]
        obj = _OBJECTS[(i * 11) % len(_OBJECTS)]
        if i % 5 == 4:
            texts.append(_QUESTIONS[(i // 5) % len(_QUESTIONS)].format(o=obj))
            continue
        text = f"{subject} {action} {obj}{_TAILS[(i * 5) % len(_TAILS)] or '.'}"
        if i % 7 == 3:  # some longer, paragraph-like documents
            text += f" {_SUBJECTS[(i + 3) % len(_SUBJECTS)]} {_ACTIONS[(i + 5) % len(_ACTIONS)]} " \
                    f"{_OBJECTS[(i + 2) % len(_OBJECTS)]} as well."
        texts.append(text)
    return texts


CALIBRATION_TEXTS = calibration_texts()


class Calibration:
    """This worker's ranges per output width, computed or read once each, then kept in memory."""

    def __init__(self, book: RangeBook, embed: Callable[[list[str]], np.ndarray],
                 truncate: Callable[[np.ndarray, int], np.ndarray]):
        self._book = book
        self._embed = embed  # texts -> full-width vectors, as the model serves documents
        self._truncate = truncate
        self._lock = threading.Lock()
        self._vectors: np.ndarray | None = None
        self._ranges: dict[int, np.ndarray] = {}

    def ranges(self, width: int) -> np.ndarray:
        """2 x width float32: the lows and highs every worker of this model quantizes `width` wide with."""
        found = self._ranges.get(width)
        if found is not None:
            return found
        with self._lock:  # one calibration pass per worker, even when many requests ask at once
            if width not in self._ranges:
                stored = self._book.get(width)
                if stored is None:
                    stored = self._book.offer(width, self._compute(width).astype("<f4").tobytes())
                self._ranges[width] = np.frombuffer(stored, dtype="<f4").reshape(2, width)
            return self._ranges[width]

    def _compute(self, width: int) -> np.ndarray:
        if self._vectors is None:
            started = time.monotonic()
            self._vectors = self._embed(CALIBRATION_TEXTS)
            log.info("int8 calibration: %d texts embedded in %.1f s", len(CALIBRATION_TEXTS),
                     time.monotonic() - started)
        return ranges_of(self._truncate(self._vectors, width))
