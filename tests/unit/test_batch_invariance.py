"""The batch-invariant forward (worker/invariant/), without a server: a row's output, to the bit, is the
same alone as inside any batch, for each served family; and off, it is not (what the setting buys).

The whole-stack version (sync requests, jobs, two workers) is tests/integration/test_same_bits.py.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoTokenizer

from tests.fixtures import tiny_models
from worker.engine import EmbeddingEngine, resolve_model_source
from worker.invariant.choice import wants_invariance
from worker.invariant.length_groups import by_length
from worker.invariant.products import MIN_ROWS, RowInvariantProducts
from worker.packed.decoder import MLP_BLOCK
from worker.rerank.cross_encoder import CrossEncoder
from worker.rerank.qwen3 import Qwen3Reranker

CPU = torch.device("cpu")
WORDS = ("the quick brown fox jumps over a lazy dog while seven small birds sing in tall green trees near "
         "the river and somebody reads a long document about search engines").split()


def texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 70))) for _ in range(n)]


def mixes(n: int, seed: int, count: int = 6) -> list[list[int]]:
    """`count` random batches over rows 0..n-1: sizes 2..n, shuffled."""
    rng = random.Random(seed)
    return [rng.sample(range(n), rng.randint(2, n)) for _ in range(count)]


def differing(forward, rows: list, n_mixes: int = 6) -> int:
    """How many (row, mix) outputs differ in any byte from the row's output alone."""
    alone = [forward([row])[0] for row in rows]
    bad = 0
    for mix in mixes(len(rows), seed=1, count=n_mixes):
        out = forward([rows[i] for i in mix])
        bad += sum(not np.array_equal(out[j], alone[i]) for j, i in enumerate(mix))
    return bad


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    return tiny_models.build_tiny_qwen3_embedding(tmp_path_factory.mktemp("qwen3"))


def engine(source: str, deterministic: bool, packed: str = "auto") -> EmbeddingEngine:
    return EmbeddingEngine(source, CPU, torch.float32, packed=packed, deterministic=deterministic)


def rows_of(eng: EmbeddingEngine, n: int = 40) -> list[list[int]]:
    return eng.tokenize(texts(n, seed=0), offset=0, input_type="document", instruction=None, truncate=True).rows


@pytest.mark.parametrize("family", ["bert", "qwen3"])
def test_a_rows_vector_is_the_same_alone_and_in_any_batch(family, qwen_dir):
    source = resolve_model_source("") if family == "bert" else str(qwen_dir)
    eng = engine(source, deterministic=True)
    assert eng.packed is not None and eng.packed.group_ratio == 1.0
    assert differing(eng.embed_batch, rows_of(eng)) == 0


@pytest.mark.parametrize("tail", [1, 5, 11])
def test_a_pass_just_over_an_mlp_block_keeps_its_shortest_rows_bits(tail, qwen_dir):
    # On a CPU the packed decoder runs its MLP over blocks of MLP_BLOCK tokens; rows are packed
    # longest first, so a pass of MLP_BLOCK + a few tokens puts its shortest rows in a tail block of
    # a few tokens: a small product, whose kernel rounds otherwise (seen on the stack: 1 vector in 1,330).
    eng = engine(str(qwen_dir), deterministic=True)
    rows = rows_of(eng, 200)
    short = min(rows, key=len)
    batch, tokens = [], 0
    for row in sorted(rows, key=len, reverse=True):
        if tokens + len(row) + len(short) <= MLP_BLOCK:
            batch.append(row)
            tokens += len(row)
    batch.append([short[0]] * (MLP_BLOCK - tokens))  # the pass's tokens now end exactly at MLP_BLOCK
    batch.append(short[:tail] if len(short) >= tail else short + [short[-1]] * (tail - len(short)))
    assert sum(map(len, batch)) == MLP_BLOCK + tail
    together = eng.embed_batch(batch)
    alone = np.concatenate([eng.embed_batch([row]) for row in batch[-1:]])
    assert np.array_equal(together[-1:], alone)


@pytest.mark.parametrize("family", ["bert", "qwen3"])
def test_packed_off_gives_the_same_bits_when_deterministic(family, qwen_dir):
    source = resolve_model_source("") if family == "bert" else str(qwen_dir)
    rows = rows_of(engine(source, deterministic=True), 20)
    packed = engine(source, deterministic=True, packed="auto").embed_batch(rows)
    padded_setting = engine(source, deterministic=True, packed="off").embed_batch(rows)
    assert np.array_equal(packed, padded_setting)


def test_without_it_vectors_move_with_the_batch():
    # What EMBED_DETERMINISTIC=off gives on this machine: if this ever reads 0, the setting no
    # longer buys anything here and its cost should be dropped (docs/benchmarks.md).
    eng = engine(resolve_model_source(""), deterministic=False)
    assert differing(eng.embed_batch, rows_of(eng, 24), n_mixes=3) > 0


def test_the_sentence_transformers_head_is_invariant_too(tmp_path):
    path = tiny_models.build_tiny_st_dense(tmp_path / "st")  # Pooling -> Dense -> Normalize
    eng = engine(str(path), deterministic=True)
    assert differing(eng.embed_batch, rows_of(eng, 40)) == 0


def test_rerankers_scores_are_the_same_alone_and_in_any_batch(tmp_path):
    qwen_path = tiny_models.build_tiny_qwen3_reranker(tmp_path / "qwen3-reranker")
    ce_path = tiny_models.build_tiny_cross_encoder(tmp_path / "cross-encoder")
    docs = texts(40, seed=3)
    for cls, path in ((Qwen3Reranker, qwen_path), (CrossEncoder, ce_path)):
        reranker = cls(str(path), AutoConfig.from_pretrained(path), AutoTokenizer.from_pretrained(path), CPU,
                       torch.float32, deterministic=True)
        rows = reranker.tokenize("what does the fox read?", docs, offset=0, instruction=None, truncate=True).rows
        assert differing(reranker.score_batch, rows) == 0, cls.__name__


@pytest.mark.parametrize("inner, outer", [(384, 1152), (1536, 384), (64, 192), (1024, 3072)])
def test_this_machines_products_keep_each_rows_bits_from_min_rows_on(inner, outer):
    # What the invariant forward rests on (worker/invariant/products.py): from MIN_ROWS rows on, a row's
    # result does not depend on how many rows the product has. If this fails on some machine, its BLAS
    # changes kernels at other sizes and MIN_ROWS must move.
    torch.manual_seed(0)
    weight, bias = torch.randn(outer, inner), torch.randn(outer)
    x = torch.randn(2500, inner)
    whole, whole_mm = F.linear(x, weight, bias), x @ weight.t()
    for rows in [*range(MIN_ROWS, 80), 127, 128, 129, 333, 1000, 2047]:
        assert torch.equal(F.linear(x[:rows], weight, bias), whole[:rows]), rows
        assert torch.equal(F.linear(x[-rows:], weight, bias), whole[-rows:]), rows
    with RowInvariantProducts():  # under the mode, small products give the big product's rows too
        for rows in range(1, MIN_ROWS):
            assert torch.equal(F.linear(x[:rows], weight, bias), whole[:rows]), rows
            assert torch.equal(torch.addmm(bias, x[:rows], weight.t()), whole[:rows]), rows
            assert torch.equal(x[:rows] @ weight.t(), whole_mm[:rows]), rows
            assert torch.equal(F.linear(x[None, :rows], weight, bias)[0], whole[:rows]), rows
    assert not all(torch.equal(F.linear(x[:r], weight, bias), whole[:r]) for r in range(1, MIN_ROWS)), \
        "small products are row-invariant without the mode here: the mode may be dropped"


def test_by_length_runs_each_length_once_and_keeps_the_order():
    seen = []

    def forward(rows):
        seen.append(sorted({len(r) for r in rows}))
        return np.array([[len(r), r[0]] for r in rows], dtype=np.float32)

    rows = [[1, 2, 3], [4], [5, 6, 7], [8, 9], [10]]
    out = by_length(rows, forward)
    assert out.tolist() == [[3, 1], [1, 4], [3, 5], [2, 8], [1, 10]]
    assert sorted(seen) == [[1], [2], [3]]


def test_auto_is_on_for_the_cpu_only():
    assert wants_invariance("auto", CPU) and not wants_invariance("auto", torch.device("cuda"))
    assert wants_invariance("on", torch.device("cuda")) and not wants_invariance("off", CPU)
