"""What crosses Redis between the API and the workers: task names, queues, payloads, replies.

Vectors travel as bytes inside msgpack, never as lists of floats: little-endian float32, or the
quantized types' own bytes (embedserve/vector_types.py). A 2048 x 1024 float reply is 8 MiB of
bytes instead of ~40 MiB of JSON, and base64 responses are the same bytes, re-encoded without
touching a value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from embedserve.vector_types import FLOAT, row_bytes

# Celery task names; the API sends by name so it never imports worker code.
EMBED_TASK = "embedserve.embed"
RERANK_TASK = "embedserve.rerank"
TOKENIZE_TASK = "embedserve.tokenize"  # /tokenize and /detokenize, on either kind of worker's sync queue


def interactive_queue(model: str) -> str:
    """Queue for synchronous requests to `model` (served name)."""
    return f"embed.{model}"


def rerank_queue(model: str) -> str:
    """Queue for /v1/rerank requests to reranker `model` (served name)."""
    return f"rerank.{model}"


class _Wire:
    """Plain-dict round trip for Celery messages (msgpack serializer)."""

    def to_wire(self) -> dict[str, Any]:
        """A plain dict for the Celery message."""
        return self.__dict__.copy()

    @classmethod
    def from_wire(cls, payload: dict[str, Any]):
        """Rebuild from a Celery message, ignoring fields a newer API may add."""
        known = cls.__dataclass_fields__.keys()
        return cls(**{k: v for k, v in payload.items() if k in known})


@dataclass(frozen=True)
class EmbedChunk(_Wire):
    """One task's work: a slice of one request's inputs, already validated by the API."""

    request_id: str
    reply_to: str  # Redis list the result is pushed to
    chunk: int  # position of this slice in the request
    offset: int  # index of this slice's first input in the request (for error messages)
    inputs: list  # list[str] or list[list[int]]
    deadline: float  # unix time after which nobody waits for the result: skip the work
    input_type: str = "document"
    instruction: str | None = None
    truncate: bool = False
    dimensions: int | None = None
    truncation_direction: str = "right"  # which end `truncate` cuts: "right" (the end) or "left" (the start)
    max_tokens: int | None = None  # a text limit below the model's (Cohere's max_tokens), or None
    priority: int = 0  # 0 = interactive; higher numbers wait behind lower ones
    # The vector types wanted (embedserve/vector_types.py); None = float only. Several (Cohere's
    # embedding_types) come from one forward pass.
    embedding_types: list | None = None
    # An input over the model's maximum: "error" (refused; `truncate` cuts), "mean" or "windows" (worker/windows.py).
    long_input: str = "error"
    window_overlap: int | None = None  # None: the default (worker/embedding_service.py)
    # Whose embedding-cache entries this chunk may read and write (embedserve/cache_scope.py): a hash of
    # the caller's key; "" = none (the cache is skipped). EMBED_CACHE_SCOPE=global on the workers overrides it.
    cache_scope: str = ""


@dataclass(frozen=True)
class RerankChunk(_Wire):
    """A slice of one rerank request's documents, all scored against the same query.

    The reply is a ChunkResult with one float32 score per document (dim 1), so replies, errors
    and the API's gathering are shared with embeddings.
    """

    request_id: str
    reply_to: str
    chunk: int
    offset: int  # index of this slice's first document in the request
    query: str
    documents: list  # list[str]
    deadline: float
    instruction: str | None = None
    truncate: bool = False
    priority: int = 0
    truncation_direction: str = "right"  # which end of a document `truncate` cuts


@dataclass(frozen=True)
class TokenizeChunk(_Wire):
    """One /tokenize (`prompt` set) or /detokenize (`tokens` set): a single chunk, answered in `ChunkResult.answer`."""

    request_id: str
    reply_to: str
    chunk: int
    deadline: float
    prompt: str | None = None
    tokens: list | None = None  # list[int]
    add_special_tokens: bool = True
    return_token_strs: bool = False


@dataclass(frozen=True)
class ChunkResult:
    """A worker's answer for one chunk: vectors and token count, or an error."""

    chunk: int
    vectors: bytes = b""  # rows x dim little-endian float32, row-major (when float was asked for)
    rows: int = 0
    dim: int = 0
    tokens: int = 0
    error: dict[str, Any] | None = None  # the OpenAI error object
    row_tokens: list[int] | None = None  # tokens of each row (jobs report usage per item)
    status: int = 200
    typed: dict[str, bytes] | None = None  # the matrix of each other type asked for, by type name
    answer: dict[str, Any] | None = None  # a reply that is no vectors: /tokenize's ids, /detokenize's text
    # A sync chunk's time on the worker (worker/stage_clock.py): seconds per stage, and the wall-clock
    # marks picked_at / replied_at; the API turns them into its stage account (api/stage_account.py).
    stages: dict[str, float] | None = None
    # `long_input: windows`: per row, its windows, each {"text_start", "text_end", "tokens", "vectors": {type: bytes}}.
    windows: list | None = None
    # Inputs whose vector came from the embedding cache; None when the worker has no cache (EMBED_CACHE_URL).
    cached: int | None = None

    def pack(self) -> bytes:
        """Serialize for the reply list. Fields left at None are left out: an API from before a field was
        added (a rolling upgrade, workers first) then reads the reply as it always did."""
        return msgpack.packb({k: v for k, v in self.__dict__.items() if v is not None}, use_bin_type=True)

    @classmethod
    def unpack(cls, data: bytes) -> ChunkResult:
        """Parse a reply popped from Redis, ignoring fields a newer worker may add."""
        known = cls.__dataclass_fields__.keys()
        return cls(**{k: v for k, v in msgpack.unpackb(data, raw=False).items() if k in known})

    def data(self, embedding_type: str = FLOAT) -> bytes:
        """The whole matrix of one type."""
        if embedding_type == FLOAT:
            return self.vectors
        if not self.typed or embedding_type not in self.typed:
            # A worker older than the API ignores embedding_types and answers float only.
            raise KeyError(f"the worker's reply has no {embedding_type} vectors")
        return self.typed[embedding_type]

    def row(self, index: int, embedding_type: str = FLOAT) -> bytes:
        """Bytes of one vector of `embedding_type`."""
        width = row_bytes(embedding_type, self.dim)
        return self.data(embedding_type)[index * width:(index + 1) * width]
