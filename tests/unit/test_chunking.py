"""The one chunking rule that jobs, file jobs and batches share (api/bulk/chunking.py)."""

from __future__ import annotations

from api.bulk.chunking import ChunkBudget, input_weight, limits_for, runs
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


def test_chunks_grow_with_the_job_and_the_models_rate_within_a_bound():
    small = (defaults.JOB_CHUNK_INPUTS, defaults.JOB_CHUNK_CHARS)
    enough = defaults.JOB_CHUNK_TARGET * defaults.JOB_CHUNK_INPUTS  # inputs that fill the target in small chunks
    fast = 10**6  # inputs/s: the rate allows any growth
    assert limits_for(0, fast) == small and limits_for(enough - 1, fast) == small
    assert limits_for(2 * enough, fast) == (2 * small[0], 2 * small[1])
    biggest = (defaults.JOB_CHUNK_GROWTH * small[0], defaults.JOB_CHUNK_GROWTH * small[1])
    assert limits_for(10**9, fast) == biggest
    # A slow model keeps chunks of about JOB_CHUNK_SECONDS of work; an unmeasured one the small budgets.
    assert limits_for(10**9, 4 * defaults.JOB_CHUNK_INPUTS / defaults.JOB_CHUNK_SECONDS) == (4 * small[0], 4 * small[1])
    assert limits_for(10**9, 1.0) == small and limits_for(10**9, None) == small


def test_a_batchs_chunks_take_the_budget_given_for_its_model(redis_server):
    """An OpenAI batch is cut by the same sizing as a job: `limits(model)` sets its chunks' budget."""
    import json

    from api.bulk.batches import Plan, plan_chunks
    from embedserve.fleet.registry import ModelCard, ModelKind, Registry

    registry = Registry(redis_server.client(), declared=(ModelCard.declared("m", ModelKind.EMBEDDING),))
    lines = [json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/embeddings",
                         "body": {"model": "m", "input": [f"text {i}"] * 3}}).encode() for i in range(100)]
    small = list(plan_chunks(iter(lines), registry, "/v1/embeddings", Plan()))
    assert [len(spec.items) for spec in small][:2] == [10, 10]  # 32 inputs a chunk: 10 lines of 3
    asked = []
    grown = list(plan_chunks(iter(lines), registry, "/v1/embeddings", Plan(),
                             limits=lambda model: asked.append(model) or (150, 10**6)))
    assert [len(spec.items) for spec in grown] == [50, 50] and set(asked) == {"m"}
