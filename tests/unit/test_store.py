"""The job store against a local directory and a real S3 server (moto, over HTTP), and the identity check."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from embedserve import redis_keys
from embedserve.jobs.store import StoreError, open_store
from embedserve.jobs.store.identity import IDENTITY_KEY, check_identity, claim_identity
from embedserve.jobs.store.local import LocalStore
from embedserve.jobs.store.s3 import MIN_PART_SIZE, S3Store
from tests.stack import ROOT

MiB = 2**20


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """The moto server's AWS_* variables in this process, as a deployment would set them."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    return s3_server


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return open_store((tmp_path / "store").as_uri())
    server = request.getfixturevalue("s3_env")
    return open_store(server.url())


def test_put_get_overwrite(store):
    assert store.get("a/b.bin") is None and not store.exists("a/b.bin") and store.size("a/b.bin") is None
    store.put("a/b.bin", b"first")
    assert store.get("a/b.bin") == b"first" and store.size("a/b.bin") == 5 and store.exists("a/b.bin")
    store.put("a/b.bin", b"second, longer")
    assert store.get("a/b.bin") == b"second, longer"
    store.put("a/empty", b"")
    assert store.get("a/empty") == b"" and store.size("a/empty") == 0


def test_put_is_atomic_for_concurrent_readers(store):
    """Readers racing a writer see one of the whole versions, never a mix or a truncated file."""
    versions = [bytes([i]) * 300_000 for i in range(1, 5)]
    store.put("hot", versions[0])
    seen, stop = set(), threading.Event()

    def read():
        while not stop.is_set():
            seen.add(store.get("hot"))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(3):
            for version in versions:
                store.put("hot", version)
    finally:
        stop.set()
        reader.join()
    assert seen and seen <= set(versions)


def test_open_streams_and_seeks(store):
    data = os.urandom(3 * MiB + 17)
    store.put("big", data)
    with store.open("big") as stream:
        pieces = []
        while piece := stream.read(256 * 1024):
            pieces.append(piece)
        assert b"".join(pieces) == data
        stream.seek(-17, os.SEEK_END)
        assert stream.read() == data[-17:]
        stream.seek(MiB)
        assert stream.tell() == MiB and stream.read(10) == data[MiB:MiB + 10]
    with pytest.raises(KeyError):
        store.open("missing")


def test_writer_streams_an_object(store):
    chunks = [os.urandom(MiB) for _ in range(11)] + [b"tail"]
    with store.writer("out/w.bin") as sink:
        for chunk in chunks:
            sink.write(chunk)
        assert not store.exists("out/w.bin")  # nothing visible before the block ends
    assert store.get("out/w.bin") == b"".join(chunks)
    with store.writer("out/small") as sink:
        sink.write(b"tiny")
    assert store.get("out/small") == b"tiny"


def test_writer_leaves_nothing_after_an_error(store):
    store.put("out/kept", b"old")
    for key in ("out/new", "out/kept"):
        with pytest.raises(RuntimeError, match="boom"):
            with store.writer(key) as sink:
                sink.write(os.urandom(6 * MiB))  # past one S3 part: a multipart upload is under way
                raise RuntimeError("boom")
    assert store.get("out/new") is None and store.get("out/kept") == b"old"
    assert store.list("out/") == ["out/kept"]  # and no temporary file shows


def test_s3_writer_uploads_parts_and_aborts(s3_env):
    store = S3Store(s3_env.bucket, "parts", part_size=MIN_PART_SIZE)
    data = os.urandom(11 * MiB)
    with store.writer("obj") as sink:
        for start in range(0, len(data), MiB):
            sink.write(data[start:start + MiB])
        assert sink.tell() == len(data)
    assert store.get("obj") == data
    s3 = s3_env.client()
    assert s3.head_object(Bucket=s3_env.bucket, Key="parts/obj")["ETag"].strip('"').endswith("-3")  # 5+5+1 MiB
    with pytest.raises(ValueError):
        with store.writer("aborted") as sink:
            sink.write(data)
            raise ValueError("stop")
    assert not store.exists("aborted")
    assert s3.list_multipart_uploads(Bucket=s3_env.bucket).get("Uploads", []) == []
    with pytest.raises(ValueError, match="part_size"):
        S3Store(s3_env.bucket, part_size=MiB)


def test_list_and_delete(store):
    for key in ("jobs/a/in/0", "jobs/a/in/1", "jobs/a/out/0", "jobs/ab/in/0", "jobs/b/in/0"):
        store.put(key, key.encode())
    assert store.list("jobs/a/") == ["jobs/a/in/0", "jobs/a/in/1", "jobs/a/out/0"]
    assert store.list("jobs/a") == ["jobs/a/in/0", "jobs/a/in/1", "jobs/a/out/0", "jobs/ab/in/0"]
    assert store.list("nothing/") == []
    store.delete("jobs/a/in/1")
    store.delete("jobs/a/in/1")  # missing: no error
    assert store.list("jobs/a/in/") == ["jobs/a/in/0"]
    assert store.delete_prefix("jobs/a/") == 2
    assert store.list("jobs/") == ["jobs/ab/in/0", "jobs/b/in/0"]
    assert store.delete_prefix("jobs/a/") == 0
    with pytest.raises(ValueError):
        store.delete_prefix("")


def test_local_delete_prunes_empty_directories(tmp_path):
    store = LocalStore(tmp_path)
    store.put("jobs/x/in/0", b"1")
    store.put("jobs/y/in/0", b"2")
    store.delete_prefix("jobs/x/")
    assert not (tmp_path / "jobs" / "x").exists() and (tmp_path / "jobs" / "y" / "in" / "0").exists()
    store.put("jobs/x/in/0", b"3")  # the directory comes back when needed
    assert store.get("jobs/x/in/0") == b"3"


def test_s3_delete_prefix_batches(s3_env):
    store = S3Store(s3_env.bucket, s3_env.url().split("/", 3)[3], delete_batch=7)
    names = [f"d/{i:03d}" for i in range(30)]
    for name in names:
        store.put(name, b"x")
    store.put("keep/0", b"x")
    assert store.list("d/") == names
    assert store.delete_prefix("d/") == 30
    assert store.list("") == ["keep/0"]


def test_s3_delete_prefix_over_a_thousand(s3_env):
    """Real batching: more objects than one DeleteObjects call (and one listing page) takes."""
    store = open_store(s3_env.url())
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: store.put(f"many/{i:04d}", b""), range(1050)))
    assert len(store.list("many/")) == 1050
    assert store.delete_prefix("many/") == 1050
    assert store.list("many/") == []


def test_bad_keys_are_refused(store):
    for key in ("", "/abs", "a//b", "../up", "a/../b", "a/.hidden", "a/"):
        with pytest.raises(ValueError):
            store.put(key, b"x")


@pytest.mark.parametrize("url", ["jobs", "/tmp/jobs", "file://relative/dir", "file:jobs", "http://host/x",
                                 "s3://", "s3:///prefix", "s3://key:secret@bucket/p", "file:///tmp/x?y=1",
                                 "gs://bucket/p"])
def test_open_store_refuses_other_urls(url):
    with pytest.raises(StoreError, match="EMBED_JOB_STORE"):
        open_store(url)


def test_open_store_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    default = open_store("")
    assert isinstance(default, LocalStore) and default.url == (tmp_path / ".run" / "jobs").as_uri()
    assert (tmp_path / ".run" / "jobs").is_dir()
    assert open_store("", default_dir=tmp_path / "d").url == (tmp_path / "d").as_uri()
    assert open_store(f"file://{tmp_path}/x/").url == (tmp_path / "x").as_uri()
    assert open_store(f"file://localhost{tmp_path}/y").url == (tmp_path / "y").as_uri()
    s3 = open_store("s3://bucket/some/prefix/")
    assert isinstance(s3, S3Store) and (s3.bucket, s3.prefix, s3.url) == ("bucket", "some/prefix",
                                                                           "s3://bucket/some/prefix")
    assert open_store("s3://bucket").url == "s3://bucket"


def test_missing_bucket_is_a_clear_error(s3_env):
    store = open_store("s3://no-such-bucket/x")
    with pytest.raises(StoreError, match="does not exist; create it"):
        store.get("a")
    assert "no-such-bucket" not in [b["Name"] for b in s3_env.client().list_buckets()["Buckets"]]


def test_importing_the_store_is_cheap():
    code = ("import sys, embedserve.jobs.store, embedserve.jobs.store.identity, embedserve.jobs.results; "
            "embedserve.jobs.store.open_store('s3://b/p'); "
            "print(','.join(m for m in ('boto3', 'botocore', 'pyarrow', 'numpy', 'torch', 'flask') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


# -- identity ---------------------------------------------------------------------------------


@pytest.fixture
def rclient(redis_server):
    client = redis_server.client()
    client.delete(redis_keys.store_identity())
    yield client
    client.delete(redis_keys.store_identity())


def test_identity_same_store_passes(tmp_path, rclient):
    api_store = open_store((tmp_path / "shared").as_uri())
    token = claim_identity(api_store, rclient)
    assert rclient.get(redis_keys.store_identity()).decode() == token == api_store.get(IDENTITY_KEY).decode()
    check_identity(open_store((tmp_path / "shared").as_uri()), rclient, timeout=0)
    assert claim_identity(api_store, rclient) == token  # a restart keeps the store's token


def test_identity_other_store_fails(tmp_path, rclient):
    claim_identity(open_store((tmp_path / "api").as_uri()), rclient)
    worker_store = open_store((tmp_path / "worker").as_uri())
    with pytest.raises(StoreError, match="is not the API's.*EMBED_JOB_STORE"):
        check_identity(worker_store, rclient, timeout=0)
    claim_identity(open_store((tmp_path / "api2").as_uri()), rclient)  # another store claimed since
    with pytest.raises(StoreError, match="another store's identity"):
        check_identity(open_store((tmp_path / "api").as_uri()), rclient, timeout=0)


def test_identity_local_worker_against_s3_api(tmp_path, rclient, s3_env):
    claim_identity(open_store(s3_env.url()), rclient)
    with pytest.raises(StoreError, match="is not the API's"):
        check_identity(open_store((tmp_path / "w").as_uri()), rclient, timeout=0)


def test_identity_worker_waits_for_the_api(tmp_path, rclient):
    url = (tmp_path / "s").as_uri()
    timer = threading.Timer(0.3, claim_identity, (open_store(url), rclient))
    timer.start()
    started = time.monotonic()
    check_identity(open_store(url), rclient, timeout=10, interval=0.05)
    assert 0.25 < time.monotonic() - started < 5
    timer.join()


def test_identity_worker_claims_when_no_api_does(tmp_path, rclient):
    worker_store = open_store((tmp_path / "w").as_uri())
    check_identity(worker_store, rclient, timeout=0.1, interval=0.05)
    assert rclient.get(redis_keys.store_identity()) == worker_store.get(IDENTITY_KEY)
    api_store = open_store((tmp_path / "api").as_uri())
    claim_identity(api_store, rclient)  # the API's store wins when it starts
    assert rclient.get(redis_keys.store_identity()) == api_store.get(IDENTITY_KEY)


def test_identity_concurrent_claims_agree(tmp_path, rclient):
    url = (tmp_path / "s").as_uri()
    barrier = threading.Barrier(6)
    tokens = []

    def claim():
        barrier.wait()
        tokens.append(claim_identity(open_store(url), rclient))

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert rclient.get(redis_keys.store_identity()) == open_store(url).get(IDENTITY_KEY)
    check_identity(open_store(url), rclient, timeout=0)
