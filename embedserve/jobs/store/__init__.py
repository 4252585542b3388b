"""The job store (data plane): job inputs, chunk results and finished results as objects under a URL.

`EMBED_JOB_STORE` names it: `file:///abs/dir` (a local or shared directory; "" means the default
directory) or `s3://bucket/prefix` (S3 or an S3-compatible server). Every API and worker process
of one deployment must use the same location; embedserve.jobs.store.identity checks that at start.
Importing this package is cheap: boto3 loads only when an s3:// store is opened.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from embedserve.jobs.store.base import Store, StoreError

__all__ = ["Store", "StoreError", "open_store"]

DEFAULT_DIR = ".run/jobs"


def open_store(url: str, default_dir: str | Path = DEFAULT_DIR) -> Store:
    """The store a URL names: "" → file://<default_dir made absolute>, file:///abs/path, s3://bucket[/prefix]."""
    url = url.strip()
    if not url:
        from embedserve.jobs.store.local import LocalStore

        return LocalStore(Path(default_dir).resolve())
    parts = urlsplit(url)
    usage = ("use file:///absolute/path (a directory) or s3://bucket/prefix "
             f"(empty means the default directory {default_dir})")
    if parts.query or parts.fragment:
        raise StoreError(f"EMBED_JOB_STORE={url!r}: a job store URL takes no query or fragment; {usage}")
    if parts.scheme == "file":
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not path.startswith("/"):
            raise StoreError(f"EMBED_JOB_STORE={url!r}: a file URL needs three slashes and an absolute path, "
                             f"like file:///var/lib/embedserve/jobs; {usage}")
        from embedserve.jobs.store.local import LocalStore

        return LocalStore(path)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise StoreError(f"EMBED_JOB_STORE={url!r}: no bucket; {usage}")
        if "@" in parts.netloc or ":" in parts.netloc:
            raise StoreError(f"EMBED_JOB_STORE={url!r}: s3:// takes a bucket name only; the endpoint and "
                             "credentials come from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY")
        from embedserve.jobs.store.s3 import S3Store

        return S3Store(parts.netloc, unquote(parts.path))
    raise StoreError(f"EMBED_JOB_STORE={url!r} is not a job store URL; {usage}")
