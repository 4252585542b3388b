"""Embed inputs for a sync request's chunk or a job's chunk: tokenize, batch, truncate dimensions, quantize.

Refusals (a ServiceError) and failures are raised, never turned into a reply here: a sync task
replies with them (worker/tasks.py), a job chunk fails the refused items or is handed back
(worker/chunk_runner.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace

import numpy as np

from embedserve import defaults
from embedserve.cache_scope import GLOBAL
from embedserve.errors import InvalidRequest, Timeout
from embedserve.fleet.quant_ranges import RangeBook
from embedserve.jobs.chunks import ChunkParams
from embedserve.protocol import ChunkResult, EmbedChunk
from embedserve.vector_types import FLOAT, TYPES, row_bytes, vector_type
from worker import stage_clock
from worker.batcher import Batcher
from worker.cache.digests import ids_options, input_digests, text_options
from worker.cache.vector_cache import VectorCache
from worker.calibration import Calibration
from worker.engine import EmbeddingEngine
from worker.quantize import quantize
from worker.windows import Window, combine, split

# The long_input values whose inputs are split into windows rather than refused or cut.
WINDOWED = ("mean", "windows")


class EmbeddingService:
    """Glue between the callers (sync tasks, job chunks) and the model: everything they need, nothing about Celery."""

    # What a sync caller is told when embedding fails for a reason of the worker's own, in place of its internals.
    FAILURE = "the worker failed to embed this input"
    # Calibration texts are embedded as one interactive request that may wait this long.
    CALIBRATION_TIMEOUT_S = 600.0

    def __init__(self, engine: EmbeddingEngine, batcher: Batcher, ranges: RangeBook | None = None,
                 max_windows: int = defaults.MAX_WINDOWS, cache: VectorCache | None = None,
                 cache_scope: str = "key"):
        self.engine = engine
        self.batcher = batcher
        self.max_windows = max_windows  # EMBED_MAX_WINDOWS: most windows of one long input
        # int8/uint8 need the model's shared calibration ranges; without a RangeBook they are refused.
        self.calibration = Calibration(ranges, self._embed_documents, truncate_dimensions) if ranges else None
        self.cache = cache  # the embedding cache (EMBED_CACHE_URL), or None
        self.shared_scope = cache_scope == GLOBAL  # EMBED_CACHE_SCOPE=global: every key's scope is one

    def run(self, chunk: EmbedChunk) -> ChunkResult:
        """Embed one sync chunk (a task's message); a refusal or failure is raised (worker/tasks.py replies with it)."""
        params = ChunkParams(input_type=chunk.input_type, instruction=chunk.instruction, truncate=chunk.truncate,
                             dimensions=chunk.dimensions, truncation_direction=chunk.truncation_direction,
                             long_input=chunk.long_input, window_overlap=chunk.window_overlap)
        result = self.embed(chunk.inputs, params, offset=chunk.offset, deadline=chunk.deadline, priority=chunk.priority,
                            tag=chunk.request_id if chunk.priority else "", types=chunk.embedding_types,
                            max_tokens=chunk.max_tokens, scope=chunk.cache_scope)
        return replace(result, chunk=chunk.chunk)

    def embed(self, inputs: list, params: ChunkParams, *, offset: int, deadline: float, priority: int, tag: str = "",
              types: list[str] | None = None, max_tokens: int | None = None,
              stage: Callable[[str, float], None] | None = None, scope: str = "",
              placeholders: frozenset[int] = frozenset()) -> ChunkResult:
        """Embed `inputs` (all texts or all token-id lists) as `params` say, in one batcher submission.

        `offset` is the first input's index in its request (error messages name inputs by it); `tag`
        names a bulk chunk ("job|chunk"), so a hung pass's chunks are told by it; `types` are the
        vector types wanted from the one pass (Cohere's embedding_types), params.embedding_type alone
        when None; `max_tokens` is a text limit below the model's (Cohere's), or None; `stage(name,
        seconds)`, when given, is told the seconds of "tokenize" and of "forward" (queued and run).

        Each distinct input is forwarded once, and, with a cache and a `scope` (embedserve/cache_scope.py),
        only when the cache does not hold it. `placeholders` are positions whose vectors the caller fills
        in itself (a job's repeats of an earlier chunk's text): tokenized and counted, never forwarded,
        their rows left zero.
        """
        # The API checks this against the model card; a model only declared (EMBED_MODELS) has none yet.
        if params.dimensions is not None and params.dimensions > self.engine.dim:
            raise InvalidRequest(f"'dimensions' must be between 1 and {self.engine.dim} for this model, "
                                 f"got {params.dimensions}.", param="dimensions")
        types = self._types(types or [params.embedding_type])
        if params.long_input in WINDOWED:  # rows are windows, not inputs: neither cached nor deduplicated
            return self._embed_windowed(inputs, params, offset, deadline, priority, tag, types, max_tokens, stage)
        started = time.perf_counter()
        scope = GLOBAL if self.shared_scope else scope
        digests = self._digests(inputs, params, max_tokens) if self.cache is not None and scope else None
        found = self.cache.get(scope, digests) if digests else [None] * len(inputs)
        todo = [i for i, entry in enumerate(found) if entry is None]
        vectors = np.zeros((len(inputs), self.engine.dim), dtype=np.float32)
        row_tokens = [0] * len(inputs)
        for i, entry in enumerate(found):
            if entry is not None:
                row_tokens[i], vectors[i] = entry
        sub = None
        with self.batcher.incoming():
            rows = self._tokenize_some(inputs, todo, params, offset, max_tokens)
            submitted = time.perf_counter()
            # One forward per distinct row: the same ids make the same vector.
            unique: dict[tuple, int] = {}
            forward_at = []
            for i, row in zip(todo, rows):
                row_tokens[i] = len(row)
                if i not in placeholders:
                    forward_at.append((i, unique.setdefault(tuple(row), len(unique))))
            if unique:
                sub = self.batcher.submit([list(row) for row in unique], priority=priority, deadline=deadline, tag=tag)
        if sub is not None:
            computed = wait_rows(sub, deadline, "embedding")
            for i, n in forward_at:
                vectors[i] = computed[n]
            if digests:
                self.cache.put(scope, [(digests[i], row_tokens[i], vectors[i]) for i in
                                       dict.fromkeys(i for i, _ in forward_at)])
        if stage is not None:
            stage("tokenize", submitted - started)
            stage("forward", time.perf_counter() - submitted)
        if params.dimensions is not None:
            vectors = truncate_dimensions(vectors, params.dimensions)
        matrices = {kind: self._encode(vectors, kind) for kind in types}
        return ChunkResult(chunk=0, vectors=matrices.pop(FLOAT, b""), rows=vectors.shape[0],
                           dim=vectors.shape[1], tokens=sum(row_tokens), row_tokens=row_tokens,
                           typed=matrices or None,
                           cached=None if self.cache is None else len(inputs) - len(todo))

    def _embed_windowed(self, inputs: list, params: ChunkParams, offset: int, deadline: float, priority: int,
                        tag: str, types: list[str], max_tokens: int | None,
                        stage: Callable[[str, float], None] | None) -> ChunkResult:
        """`long_input` mean or windows: each window is a row of its own, so the batcher spreads a long input
        over its passes; an input's row is its windows' combination (worker/windows.py)."""
        started = time.perf_counter()
        with self.batcher.incoming():
            plans = self._plan(inputs, params, offset, max_tokens)
            submitted = time.perf_counter()
            rows = [window.row for plan in plans for window in plan]
            # A sync request of more windows than one pass holds is many passes of work: at interactive
            # priority every other sync request queued behind all of them (8 clients' p99 was 13x idle
            # beside a 62-window document). Its rows go as bulk rows instead: passes that yield to
            # interactive rows as they come, as a job's do.
            heavy = not priority and sum(map(len, rows)) > self.batcher.max_batch_tokens
            sub = self.batcher.submit(rows, priority=1 if heavy else priority, deadline=deadline, tag=tag)
        vectors = wait_rows(sub, deadline, "embedding")
        if stage is not None:
            stage("tokenize", submitted - started)
            stage("forward", time.perf_counter() - submitted)
        if params.dimensions is not None:  # each window's vector too: as the window alone would be answered
            vectors = truncate_dimensions(vectors, params.dimensions)
        return self._combined(vectors, plans, types, params.long_input == "windows")

    def _digests(self, inputs: list, params: ChunkParams, max_tokens: int | None) -> list[str] | None:
        """Each input's cache digest (worker/cache/digests.py); None for a mix the tokenizer will refuse."""
        if all(isinstance(item, str) for item in inputs):
            prefix = self.engine.files.prefix(params.input_type, params.instruction)
            options = text_options(prefix, params.truncate, params.truncation_direction, max_tokens)
        elif all(isinstance(item, list) for item in inputs):
            options = ids_options(params.truncate, params.truncation_direction)
        else:
            return None
        return input_digests(inputs, options)

    def _tokenize_some(self, inputs: list, todo: list[int], params: ChunkParams, offset: int,
                       max_tokens: int | None) -> list[list[int]]:
        """Token rows of the inputs at `todo`; a refusal names its input by its place among all of `inputs`."""
        if len(todo) == len(inputs):
            return self._tokenize(inputs, params, offset, max_tokens).rows
        if not todo:
            return []
        try:
            return self._tokenize([inputs[i] for i in todo], params, offset, max_tokens).rows
        except InvalidRequest as refused:
            self._tokenize(inputs, params, offset, max_tokens)  # raises the same refusal, naming the right index
            raise refused from None

    def _plan(self, inputs: list, params: ChunkParams, offset: int, max_tokens: int | None) -> list[list[Window]]:
        """Each text's windows: the whole text when it fits the model, else as worker/windows.py cuts it."""
        if not all(isinstance(item, str) for item in inputs):
            raise InvalidRequest(f"'long_input': {params.long_input!r} splits texts; token-id inputs take 'error' "
                                 f"or 'truncate'.", param="long_input", code="unsupported_long_input")

        def encode(text: str) -> list[int]:
            return self.engine.whole_rows([text], input_type=params.input_type, instruction=params.instruction)[0]

        limit = self.engine.limit(max_tokens)
        room = limit - len(encode(""))  # the text tokens a window holds besides the prompt and special tokens
        half = max(0, room) // 2  # more overlap than this and windows would mostly repeat each other
        overlap = min(defaults.WINDOW_OVERLAP, half) if params.window_overlap is None else params.window_overlap
        if overlap > half:
            raise InvalidRequest(f"'window_overlap' must be between 0 and {half} (half of the {room} text tokens a "
                                 f"window holds here), got {overlap}.", param="window_overlap",
                                 code="window_overlap_too_large")
        whole = self.engine.whole_rows(inputs, input_type=params.input_type, instruction=params.instruction)
        plans = []
        for i, (text, row) in enumerate(zip(inputs, whole)):
            if len(row) <= limit:
                plans.append([Window(0, len(text), row)])
                continue
            plans.append(split(text, self.engine.text_offsets(text), limit=limit, room=room,
                               overlap=overlap, max_windows=self.max_windows, encode=encode,
                               index=offset + i))
        return plans

    def _combined(self, vectors: np.ndarray, plans: list[list[Window]], types: list[str],
                  with_windows: bool) -> ChunkResult:
        """One row per input from its windows' rows of `vectors` (worker/windows.py's combine, on floats,
        quantized after), with each window's own vectors and offsets when `with_windows`."""
        bounds = np.cumsum([0] + [len(plan) for plan in plans])
        combined = np.stack([combine(vectors[bounds[i]:bounds[i + 1]], [w.tokens for w in plan])
                             for i, plan in enumerate(plans)])
        matrices = {kind: self._encode(combined, kind) for kind in types}
        windows = None
        if with_windows:
            typed = {kind: self._encode(vectors, kind) for kind in types}
            width = {kind: row_bytes(kind, vectors.shape[1]) for kind in types}
            windows = [[{"text_start": w.text_start, "text_end": w.text_end, "tokens": w.tokens,
                         "vectors": {kind: typed[kind][(row + j) * width[kind]:(row + j + 1) * width[kind]]
                                     for kind in types}}
                        for j, w in enumerate(plan)] for row, plan in zip(bounds, plans)]
        tokens = [sum(w.tokens for w in plan) for plan in plans]
        return ChunkResult(chunk=0, vectors=matrices.pop(FLOAT, b""), rows=len(plans), dim=vectors.shape[1],
                           tokens=sum(tokens), row_tokens=tokens, typed=matrices or None, windows=windows)

    def _types(self, asked: list[str]) -> list[str]:
        """The vector types asked for, once each (the API checked them; a job's params are checked again)."""
        types = list(dict.fromkeys(asked))
        for kind in types:
            if kind not in TYPES:
                raise InvalidRequest(f"'embedding_type' must be one of {', '.join(TYPES)}, got {kind!r}.",
                                     param="embedding_type")
            if self.calibration is None and vector_type(kind).calibrated:
                raise InvalidRequest(f"This worker cannot produce {kind} vectors (no calibration store).",
                                     param="embedding_type")
        return types

    def _encode(self, vectors: np.ndarray, kind: str) -> bytes:
        """The matrix as `kind`'s bytes; int8/uint8 with the model's shared ranges at this width."""
        ranges = self.calibration.ranges(vectors.shape[1]) if vector_type(kind).calibrated else None
        return quantize(vectors, kind, ranges).tobytes()

    def _embed_documents(self, texts: list[str]) -> np.ndarray:
        """Full-width document vectors of `texts` (the calibration set), through the batcher like any request."""
        rows = self.engine.tokenize(texts, offset=0, input_type="document", instruction=None, truncate=True).rows
        deadline = time.time() + self.CALIBRATION_TIMEOUT_S
        return wait_rows(self.batcher.submit(rows, priority=0, deadline=deadline), deadline, "calibration")

    def _tokenize(self, inputs: list, params: ChunkParams, offset: int, max_tokens: int | None):
        if all(isinstance(item, str) for item in inputs):
            return self.engine.tokenize(inputs, offset=offset, input_type=params.input_type,
                                        instruction=params.instruction, truncate=params.truncate,
                                        direction=params.truncation_direction, max_tokens=max_tokens)
        if all(isinstance(item, list) for item in inputs):
            return self.engine.check_ids(inputs, offset=offset, truncate=params.truncate,
                                         direction=params.truncation_direction)
        raise InvalidRequest("input must be all strings or all token-id arrays", param="input")


def wait_rows(sub, deadline: float, what: str) -> np.ndarray:
    """The batcher's result for one submission, or Timeout once the request's deadline passed."""
    try:
        rows = sub.future.result(timeout=max(0.0, deadline - time.time()) + 1.0)
    except FutureTimeout:
        raise Timeout(f"the {what} did not finish within the request's deadline") from None
    stage_clock.waited(sub)
    return rows


def truncate_dimensions(vectors: np.ndarray, dimensions: int) -> np.ndarray:
    """Matryoshka truncation: keep the first `dimensions` values, then re-normalize."""
    if dimensions >= vectors.shape[1]:
        return vectors
    cut = vectors[:, :dimensions]
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    return cut / np.maximum(norms, 1e-12)
