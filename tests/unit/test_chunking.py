"""The one chunking rule that jobs, file jobs and batches share (api/bulk/chunking.py)."""

from __future__ import annotations

from api.bulk.chunking import ChunkBudget, input_weight, limits_for, runs
from api.bulk.jobs import chunk_bounds
from embedserve import defaults


def test_token_ids_weigh_four_characters_each():
    assert input_weight("abc") == 3 and input_weight([1, 2, 3]) == 12


def test_an_empty_chunk_takes_any_item_and_a_full_one_none():
    budget = ChunkBudget(max_inputs=4, max_chars=10)
    assert budget.takes(9, 99)  # alone over both budgets: a chunk of its own
    budget.add(3, 8)
    assert budget.takes(1, 2) and not budget.takes(2, 1) and not budget.takes(1, 3)


def test_runs_keep_items_whole_and_in_order():
    # batch-like items of several inputs each: (inputs, weight)
    items = [(2, 4), (2, 4), (1, 1), (5, 1), (1, 9), (1, 2)]
    cut = list(runs(items, lambda item: item, max_inputs=4, max_chars=10))
    assert cut == [[(2, 4), (2, 4)], [(1, 1)], [(5, 1)], [(1, 9)], [(1, 2)]]  # three cuts for inputs, one for characters
    assert list(runs([], lambda item: item)) == []


def test_a_small_job_keeps_small_chunks_and_a_big_one_grows_them_to_a_bound():
    small = (defaults.JOB_CHUNK_INPUTS, defaults.JOB_CHUNK_CHARS)
    enough = defaults.JOB_CHUNK_TARGET * defaults.JOB_CHUNK_INPUTS  # inputs that fill the target in small chunks
    assert limits_for(0) == small and limits_for(enough - 1) == small
    assert limits_for(2 * enough) == (2 * small[0], 2 * small[1])
    biggest = (defaults.JOB_CHUNK_GROWTH * small[0], defaults.JOB_CHUNK_GROWTH * small[1])
    assert limits_for(1_000_000) == biggest and limits_for(10**9) == biggest


def test_a_million_input_job_is_cut_into_a_few_thousand_chunks():
    bounds = list(chunk_bounds(["text"] * 1_000_000))
    assert len(bounds) == -(-1_000_000 // (defaults.JOB_CHUNK_INPUTS * defaults.JOB_CHUNK_GROWTH))
    assert bounds[0] == (0, defaults.JOB_CHUNK_INPUTS * defaults.JOB_CHUNK_GROWTH) and bounds[-1][1] == 1_000_000
