"""The job store in a local directory (file:///abs/dir): the default, for one host or a shared mount.

Objects are files under the root; keys map to relative paths. Whole-object writes go to a temporary
file in the destination's directory and are renamed over it (os.replace is atomic on POSIX), so a
reader sees the old file or the new one. No fsync: a job store survives process crashes, and a
host crash loses at most what the job record in Redis will also have lost.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from embedserve.jobs.store.base import Store, check_key

TEMP_PREFIX = ".tmp-"  # keys never start with "." (check_key), so listings can skip these


class LocalStore(Store):
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = self.root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _temp(self, path: Path) -> tuple[Path, BinaryIO]:
        """A new temporary file next to `path`, its directory created if needed."""
        temp = path.with_name(f"{TEMP_PREFIX}{path.name}.{uuid.uuid4().hex}")
        for _ in range(3):
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                return temp, open(temp, "xb")
            except FileNotFoundError:  # a delete_prefix pruned the empty directory meanwhile: make it again
                continue
        return temp, open(temp, "xb")

    def put(self, key: str, data: bytes) -> None:
        with self.writer(key) as out:
            out.write(data)

    @contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        path = self._path(key)
        temp, out = self._temp(path)
        try:
            with out:
                yield out
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except (FileNotFoundError, NotADirectoryError):
            raise KeyError(key) from None

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            return None

    def list(self, prefix: str) -> list[str]:
        if ".." in prefix.split("/"):
            raise ValueError(f"bad job store prefix {prefix!r}")
        # Walk only the deepest directory the prefix names, then filter by the full string prefix.
        top = self.root / prefix.rpartition("/")[0] if "/" in prefix else self.root
        found = []
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if name.startswith("."):
                    continue
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    found.append(key)
        return sorted(found)

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        self._prune(path.parent)

    def delete_prefix(self, prefix: str) -> int:
        if not prefix:
            raise ValueError("delete_prefix needs a non-empty prefix")
        keys = self.list(prefix)
        parents = {self._path(key).parent for key in keys}
        for key in keys:
            self._path(key).unlink(missing_ok=True)
        if prefix.endswith("/"):
            # A whole "directory" goes: also the temp files of writes that never finished (a process
            # killed mid-write), which listings hide, so no husk is left behind.
            base = self.root / prefix.rstrip("/")
            for temp in base.rglob(f"{TEMP_PREFIX}*") if base.is_dir() else ():
                temp.unlink(missing_ok=True)
                parents.add(temp.parent)
        for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            self._prune(parent)
        return len(keys)

    def _prune(self, directory: Path) -> None:
        """Remove empty directories from `directory` up to (not including) the root: jobs leave no husks."""
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:  # not empty (or gone): stop
                return
            directory = directory.parent
