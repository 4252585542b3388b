"""The job store's interface: objects named by '/'-separated relative keys, whole or streamed.

Backends (a local directory, S3) live next to this module; `open_store` picks one from a URL.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import BinaryIO, Protocol


class StoreError(ValueError):
    """The job store is misconfigured or unusable: a bad URL, a missing bucket, another host's store."""


class Sink(Protocol):
    """What `Store.writer` yields: bytes go in with `write`; the object appears when the block ends."""

    def write(self, data: bytes) -> int: ...

    def tell(self) -> int: ...


def check_key(key: str) -> str:
    """`key` if it is a relative '/'-separated path without empty, '.'-leading or '..' parts.

    Leading dots are reserved for the local backend's temporary files, so listings never see them.
    """
    parts = key.split("/")
    if not key or any(not part or part.startswith(".") for part in parts):
        raise ValueError(f"bad job store key {key!r}: parts must be non-empty and must not start with '.'")
    return key


class Store(abc.ABC):
    """Objects under keys like `jobs/job_ab12/inputs/00000003.msgpack`. Every method is thread-safe."""

    url: str  # the normalized URL this store was opened from (file:///abs/dir or s3://bucket/prefix)

    @abc.abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Write an object whole; a reader sees the old object or the new one, never part of one."""

    @abc.abstractmethod
    def get(self, key: str) -> bytes | None:
        """An object's bytes, or None when it does not exist."""

    @abc.abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A seekable binary stream over an object (read it sequentially to stream); KeyError when missing."""

    def blocks(self, key: str, size: int = 4 * 1024 * 1024) -> Iterator[bytes]:
        """An object's bytes, `size` at a time (KeyError when missing, on the first block asked for)."""
        with self.open(key) as source:
            while block := source.read(size):
                yield block

    @abc.abstractmethod
    def writer(self, key: str) -> AbstractContextManager[Sink]:
        """A context manager for writing an object in pieces: whole on clean exit, absent after an exception."""

    @abc.abstractmethod
    def size(self, key: str) -> int | None:
        """An object's size in bytes, or None when it does not exist."""

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    @abc.abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys starting with `prefix` (a plain string prefix, as in S3), sorted."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; removing a missing one is not an error."""

    @abc.abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with `prefix`; returns how many."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"
