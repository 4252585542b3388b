"""The job store in S3 or any S3-compatible object store (s3://bucket/prefix): one store for many hosts.

Why boto3: it is well kept and its multipart API is explicit (create / upload_part / complete /
abort), which is all `writer` needs. s3fs/fsspec would pin aiobotocore (and so an exact botocore)
and add an async layer this service does not use.

Configuration is AWS's own, read when the client is first needed: `AWS_ENDPOINT_URL` (or
`AWS_ENDPOINT_URL_S3`) for MinIO, Ceph, R2 and the like (botocore reads it itself),
`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (or any other source in boto3's credential chain:
instance roles, ~/.aws), `AWS_DEFAULT_REGION`. With a custom endpoint, requests use path-style
addressing (http://host:9000/bucket/key), which every S3-compatible server answers. The bucket
must exist: the service never creates buckets.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from embedserve.jobs.store.base import Store, StoreError, check_key

log = logging.getLogger(__name__)

MIN_PART_SIZE = 5 * 2**20  # S3's minimum for every part but the last
DEFAULT_PART_SIZE = 8 * 2**20
MAX_PARTS = 10_000  # S3's limit: with 8 MiB parts an object may reach ~78 GiB
READ_AHEAD = 8 * 2**20  # bytes one ranged GET asks for after a seek
READ_RETRIES = 3  # reconnects of a broken streaming read before giving up


def _code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def _missing(exc: Exception) -> bool:
    return _code(exc) in ("NoSuchKey", "404", "NotFound")


def _new_client():
    import boto3  # imported here: only an s3:// store pays for it
    from botocore.config import Config

    custom_endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=32,  # a worker's bulk slots and the API's threads share one client
        s3={"addressing_style": "path"} if custom_endpoint else None,
    )
    # A session of its own: boto3's default session is shared module state and sessions are not
    # thread-safe; the client made from it is.
    return boto3.session.Session().client("s3", config=config)


class S3Store(Store):
    def __init__(self, bucket: str, prefix: str = "", *, part_size: int = DEFAULT_PART_SIZE,
                 delete_batch: int = 1000):
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum part size)")
        if not 1 <= delete_batch <= 1000:
            raise ValueError("delete_batch must be 1..1000 (S3's DeleteObjects limit)")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.part_size = part_size
        self.delete_batch = delete_batch
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self):
        """The boto3 client, made (and the bucket checked) on first use; one per store, shared by threads."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    client = _new_client()
                    self._check_bucket(client)
                    self._client = client
        return self._client

    def _check_bucket(self, client) -> None:
        from botocore.exceptions import ClientError, NoCredentialsError

        where = f"job store {self.url} (EMBED_JOB_STORE) at {client.meta.endpoint_url}"
        try:
            client.head_bucket(Bucket=self.bucket)
        except NoCredentialsError:
            raise StoreError(f"{where}: no S3 credentials; set AWS_ACCESS_KEY_ID and "
                             "AWS_SECRET_ACCESS_KEY (or another boto3 credential source)") from None
        except ClientError as exc:
            code = _code(exc)
            if code in ("404", "NoSuchBucket"):
                raise StoreError(f"{where}: bucket {self.bucket!r} does not exist; create it (for example "
                                 f"`aws s3 mb s3://{self.bucket}`): the service does not create buckets") from None
            if code in ("403", "AccessDenied"):
                raise StoreError(f"{where}: access to bucket {self.bucket!r} denied; check the credentials "
                                 "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) and the bucket's policy") from None
            raise

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _prefixed(self, prefix: str) -> str:
        return f"{self.prefix}/{prefix}" if self.prefix else prefix

    # -- reading -------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._name(key))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        with response["Body"] as body:
            return body.read()

    def open(self, key: str) -> S3Reader:
        from botocore.exceptions import ClientError

        name = self._name(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            if _missing(exc):
                raise KeyError(key) from None
            raise
        return S3Reader(self.client, self.bucket, name, response)

    def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._name(key))["ContentLength"]
        except ClientError as exc:
            if _missing(exc):
                return None
            raise

    def list(self, prefix: str) -> list[str]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        return sorted(name[strip:] for name in self._names(prefix))

    def _names(self, prefix: str) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                      Prefix=self._prefixed(prefix))
        for page in pages:
            for item in page.get("Contents", ()):
                yield item["Key"]

    # -- writing -------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._name(key), Body=data)  # S3 PUTs are atomic

    @contextmanager
    def writer(self, key: str) -> Iterator[MultipartWriter]:
        upload = MultipartWriter(self.client, self.bucket, self._name(key), self.part_size)
        try:
            yield upload
            upload.commit()
        except BaseException:
            upload.abort()
            raise

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._name(key))  # missing is fine in S3

    def delete_prefix(self, prefix: str) -> int:
        if not prefix:
            raise ValueError("delete_prefix needs a non-empty prefix")
        deleted, batch = 0, []
        # Deleting listed keys while paging is safe: a continuation token resumes after the last key.
        for name in self._names(prefix):
            batch.append({"Key": name})
            if len(batch) == self.delete_batch:
                deleted += self._delete_batch(batch)
                batch = []
        if batch:
            deleted += self._delete_batch(batch)
        return deleted

    def _delete_batch(self, batch: list[dict]) -> int:
        response = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        errors = response.get("Errors") or []
        if errors:
            first = errors[0]
            raise OSError(f"S3 did not delete {len(errors)} of {len(batch)} objects in {self.url}; first: "
                          f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}")
        return len(batch)


class MultipartWriter:
    """Bytes written are cut into parts of `part_size` and uploaded as they fill: memory holds one part.

    An object smaller than one part goes up as a single PutObject at commit.
    """

    def __init__(self, client, bucket: str, name: str, part_size: int):
        self._client, self._bucket, self._name, self._part_size = client, bucket, name, part_size
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict] = []
        self._written = 0

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        size = len(view)
        while view:
            take = self._part_size - len(self._buffer)
            self._buffer += view[:take]
            view = view[take:]
            if len(self._buffer) == self._part_size:
                self._send()
        self._written += size
        return size

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        pass

    @property
    def closed(self) -> bool:
        return False

    def _send(self) -> None:
        if self._upload_id is None:
            self._upload_id = self._client.create_multipart_upload(Bucket=self._bucket, Key=self._name)["UploadId"]
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise StoreError(f"s3://{self._bucket}/{self._name} would need more than {MAX_PARTS} parts; "
                             "raise the store's part_size")
        response = self._client.upload_part(Bucket=self._bucket, Key=self._name, UploadId=self._upload_id,
                                            PartNumber=number, Body=bytes(self._buffer))
        self._parts.append({"ETag": response["ETag"], "PartNumber": number})
        self._buffer.clear()

    def commit(self) -> None:
        if self._upload_id is None:
            self._client.put_object(Bucket=self._bucket, Key=self._name, Body=bytes(self._buffer))
            return
        if self._buffer:
            self._send()  # the last part may be smaller than 5 MiB
        self._client.complete_multipart_upload(Bucket=self._bucket, Key=self._name, UploadId=self._upload_id,
                                               MultipartUpload={"Parts": self._parts})

    def abort(self) -> None:
        """Drop the upload's parts: S3 keeps (and bills) the parts of an upload nobody completes or aborts."""
        if self._upload_id is None:
            return
        try:
            self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._name, UploadId=self._upload_id)
        except Exception:  # the original error matters more; a bucket lifecycle rule can sweep leftovers
            log.warning("could not abort multipart upload of s3://%s/%s", self._bucket, self._name, exc_info=True)


class S3Reader(io.RawIOBase):
    """A seekable stream over one object: sequential reads continue one GET; a seek starts a ranged GET.

    Ranged GETs carry If-Match with the first response's ETag, so an object replaced mid-read fails
    loudly instead of mixing two versions. A dropped connection is resumed from the current offset.
    """

    def __init__(self, client, bucket: str, name: str, response: dict):
        super().__init__()
        self._client, self._bucket, self._name = client, bucket, name
        self._size = response["ContentLength"]
        self._etag = response.get("ETag")
        self._body = response["Body"]
        self._body_end = self._size  # the first GET covers the whole object
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        new = {io.SEEK_SET: offset, io.SEEK_CUR: self._pos + offset, io.SEEK_END: self._size + offset}[whence]
        if new < 0:
            raise ValueError("negative seek position")
        if new != self._pos:
            self._drop()
        self._pos = new
        return new

    def read(self, size: int | None = -1) -> bytes:
        from botocore.exceptions import BotoCoreError

        remaining = max(0, self._size - self._pos)
        want = remaining if size is None or size < 0 else min(size, remaining)
        pieces, failures = [], 0
        while want > 0:
            if self._body is None or self._pos >= self._body_end:
                self._open_range(want)
            try:
                data = self._body.read(min(want, self._body_end - self._pos))
            except (BotoCoreError, OSError):
                data = b""
            if not data:  # the connection broke before the range ended: resume where we are
                self._drop()
                failures += 1
                if failures > READ_RETRIES:
                    raise OSError(f"reading s3://{self._bucket}/{self._name} failed at byte {self._pos}")
                continue
            pieces.append(data)
            self._pos += len(data)
            want -= len(data)
        return b"".join(pieces)

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def _open_range(self, want: int) -> None:
        self._drop()
        end = min(self._size, self._pos + max(want, READ_AHEAD))
        extra = {"IfMatch": self._etag} if self._etag else {}
        response = self._client.get_object(Bucket=self._bucket, Key=self._name,
                                           Range=f"bytes={self._pos}-{end - 1}", **extra)
        self._body, self._body_end = response["Body"], end

    def _drop(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def close(self) -> None:
        self._drop()
        super().close()
