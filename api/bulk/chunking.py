"""How bulk work is cut into chunks: one rule for a job's inputs, a user_data file's lines and a batch's requests.

A chunk is what a worker's bulk slot claims at a time; a small one finishes in a fraction of a
second on a small model, so it soon frees its slot for interactive work (embedserve/defaults.py).
A big job's chunks on a fast model are bigger (`limits_for`): every chunk costs the same claim,
finish, input object and part object whatever it holds. They grow with the job past
JOB_CHUNK_TARGET chunks (enough to spread over every slot of many workers) and with the model's
measured bulk rate (embedserve/fleet/stage_times.py) up to JOB_CHUNK_SECONDS of one worker's
forward, within JOB_CHUNK_GROWTH times the small budgets: a million inputs on a model that embeds
thousands a second are ~1,000 chunks of 1,024, not 31,250 of 32, while on a slow CPU model a
chunk stays a fraction of a second of work, so fair share and the work a crash redoes stay
bounded in seconds, not in inputs. An OpenAI batch's chunks are sized as a job's of as many inputs
as it has lines (api/bulk/batches.py).
Items go into a chunk in order until the next would take it past the budget of inputs or of
characters (a token id counts as 4). An item is never split, so one over the budget alone gets a
chunk of its own (a batch request's inputs stay together: its one response needs them all).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from embedserve import defaults

T = TypeVar("T")


def input_weight(item: object) -> int:
    """Rough cost of one input for chunking: characters, or 4 per token id."""
    return len(item) * (4 if isinstance(item, list) else 1)


def limits_for(total: int, rate: float | None) -> tuple[int, int]:
    """(inputs, characters) budget of each chunk of a job of `total` inputs on a model that embeds `rate`
    inputs per second of a worker's forward (None: not measured yet): the small budgets times the growth
    that both the job's size (JOB_CHUNK_TARGET chunks at least) and the rate (JOB_CHUNK_SECONDS of work at
    most) allow, within JOB_CHUNK_GROWTH."""
    by_size = total // (defaults.JOB_CHUNK_TARGET * defaults.JOB_CHUNK_INPUTS)
    by_rate = int((rate or 0) * defaults.JOB_CHUNK_SECONDS) // defaults.JOB_CHUNK_INPUTS
    growth = max(1, min(defaults.JOB_CHUNK_GROWTH, by_size, by_rate))
    return defaults.JOB_CHUNK_INPUTS * growth, defaults.JOB_CHUNK_CHARS * growth


class ChunkBudget:
    """What the chunk being filled holds so far, against its budget."""

    def __init__(self, max_inputs: int = defaults.JOB_CHUNK_INPUTS, max_chars: int = defaults.JOB_CHUNK_CHARS):
        self.max_inputs, self.max_chars = max_inputs, max_chars
        self.items = self.inputs = self.weight = 0

    def takes(self, inputs: int, weight: int) -> bool:
        """Whether an item of `inputs` inputs and `weight` characters still goes in (an empty chunk takes any)."""
        return not self.items or (self.inputs + inputs <= self.max_inputs and self.weight + weight <= self.max_chars)

    def add(self, inputs: int, weight: int) -> None:
        self.items += 1
        self.inputs += inputs
        self.weight += weight


def runs(items: Iterable[T], size: Callable[[T], tuple[int, int]], max_inputs: int = defaults.JOB_CHUNK_INPUTS,
         max_chars: int = defaults.JOB_CHUNK_CHARS) -> Iterator[list[T]]:
    """`items` in order, cut into one run per chunk; `size(item)` is its (inputs, weight). One run in memory at a time."""
    run: list[T] = []
    budget = ChunkBudget(max_inputs, max_chars)
    for item in items:
        inputs, weight = size(item)
        if not budget.takes(inputs, weight):
            yield run
            run, budget = [], ChunkBudget(max_inputs, max_chars)
        run.append(item)
        budget.add(inputs, weight)
    if run:
        yield run
