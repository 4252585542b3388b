"""The loaded model's identity for cache entries: what was loaded, not what it is called.

A served name can be given to other weights (a new revision, a fine-tune copied over the old
directory); entries keyed by the name alone would then hand back the old model's vectors. The
fingerprint digests the model's files as loaded: every small file's contents (configs, tokenizer,
sentence-transformers modules) and, of each large (weight) file, its size, a safetensors file's
header (names, shapes, dtypes, offsets) and SAMPLES blocks of its bytes spread evenly over it (a
fine-tune of the same model has the same header and config: only the weights differ, almost
everywhere), plus the Hugging Face commit when the model came from the hub cache. No mtime: workers
on other machines with the same files share entries. Also in it: what changes the arithmetic (dtype, device type, the batch-invariant
forward's setting), so a CPU worker never serves a GPU worker's bf16 vectors as its own.
Computed once at worker start: about a MiB read per weight file, not the weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

# Files up to this size are digested whole (configs, tokenizers); larger ones by header or size+mtime.
SMALL_FILE_BYTES = 4 * 1024 * 1024
# Folders that are no part of the model: the hub's download metadata, Python's bytecode (the default model
# ships inside a Python package, and its .pyc files differ between Python versions).
IGNORED = frozenset({".cache", "__pycache__", ".git"})
# A safetensors header longer than this is not read (a damaged file); the samples stand in.
MAX_HEADER_BYTES = 64 * 1024 * 1024
# Blocks of a large file digested, and their size: 1 MiB read per weight file.
SAMPLES, SAMPLE_BYTES = 16, 64 * 1024


def model_fingerprint(source: str, *, dtype: str, device_type: str, deterministic: object = None) -> str:
    """32 hex characters naming the model loaded from `source` (a directory or a hub id) and how it runs."""
    digest = hashlib.blake2b(digest_size=16)
    _feed(digest, "runtime", json.dumps({"dtype": dtype, "device": device_type,
                                         "deterministic": str(deterministic)}, sort_keys=True).encode())
    directory = _local_directory(source)
    if directory is None:
        # Nothing on disk to read: an identity of this process only, so nothing it stores is ever
        # served for another model (nor shared with other workers).
        log.warning("cannot find %s's files on disk; its cache entries are this worker's alone", source)
        _feed(digest, "unknown", f"{source}:{uuid.uuid4()}".encode())
        return digest.hexdigest()
    commit = _hub_commit(directory)
    if commit:
        _feed(digest, "commit", commit.encode())
    # Only the parts below the model's directory count: a model kept under ~/.cache/... is still read.
    files = (p for p in directory.rglob("*") if p.is_file() and not IGNORED.intersection(p.relative_to(directory).parts))
    for path in sorted(files):
        _feed(digest, "file", path.relative_to(directory).as_posix().encode())
        _feed(digest, "content", _file_identity(path))
    return digest.hexdigest()


def _feed(digest, label: str, data: bytes) -> None:
    # Length-prefixed, so no two sequences of parts digest alike.
    digest.update(label.encode() + b"\0" + struct.pack("<Q", len(data)) + data)


def _file_identity(path: Path) -> bytes:
    """A small file's bytes; a large one's size, safetensors header (if it is one) and sampled blocks."""
    size = path.stat().st_size  # follows the hub cache's symlinks to the blobs
    if size <= SMALL_FILE_BYTES:
        return path.read_bytes()
    parts = [f"size={size}".encode()]
    with path.open("rb") as handle:
        if path.suffix == ".safetensors":
            (length,) = struct.unpack("<Q", handle.read(8))
            if length <= MAX_HEADER_BYTES:
                parts.append(b"safetensors:" + handle.read(length))
        step = (size - SAMPLE_BYTES) // (SAMPLES - 1)
        for k in range(SAMPLES):
            handle.seek(k * step)
            parts.append(handle.read(SAMPLE_BYTES))
    return b"".join(struct.pack("<Q", len(part)) + part for part in parts)


def _local_directory(source: str) -> Path | None:
    """The directory the model was loaded from: `source` itself, or the hub cache's snapshot of it."""
    path = Path(source)
    if path.is_dir():
        return path.resolve()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, local_files_only=True))
    except Exception:  # noqa: BLE001 - not in the local hub cache, or no hub support: no files to read
        return None


def _hub_commit(directory: Path) -> str | None:
    """The commit of a hub-cache snapshot (`.../snapshots/<commit>`), or None for a plain directory."""
    if directory.parent.name == "snapshots" and len(directory.name) == 40:
        return directory.name
    return None
