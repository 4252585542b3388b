"""Webhooks in parts: signatures (the Standard Webhooks test vector), URL safety, the event body,
backoff, settings, and the outbox's leases on a real Redis."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import standardwebhooks

from embedserve import redis_keys
from embedserve.events import event, signing, url_safety
from embedserve.events.delivery import backoff, post
from embedserve.events.endpoints import Endpoint
from embedserve.events.outbox import Outbox, record_steps
from embedserve.settings import ConfigError, Settings

# The test vector of the Standard Webhooks spec's reference libraries.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signature_matches_the_spec_vector():
    assert signing.sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE


def test_new_secret_verifies_with_the_reference_library():
    secret = signing.new_secret()
    assert secret.startswith("whsec_") and len(signing.secret_bytes(secret)) == signing.SECRET_BYTES
    now = int(time.time())
    headers = signing.headers(secret, "evt_1", now, b'{"a":1}')
    assert standardwebhooks.Webhook(secret).verify(b'{"a":1}', headers) == {"a": 1}


@pytest.mark.parametrize("bad", ["", "secret", "whsec_", "whsec_not base64!"])
def test_bad_secrets_are_refused(bad):
    with pytest.raises(signing.BadSecret):
        signing.secret_bytes(bad)


@pytest.mark.parametrize("address, reason", [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("fd00:ec2::254", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"), ("100.100.100.200", "not globally routable"),
    ("8.8.8.8", None), ("2001:4860:4860::8888", None), ("1.1.1.1", None),
])
def test_addresses_are_classified(address, reason):
    assert url_safety.unsafe_reason(address) == reason


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://localhost/hook", "https://[::1]/x",
                                 "http://169.254.169.254/latest/meta-data/", "http://10.0.0.7/"])
def test_private_urls_are_refused_unless_allowed(url):
    with pytest.raises(url_safety.UnsafeURL, match="EMBED_WEBHOOK_ALLOW_PRIVATE"):
        url_safety.resolve(url, allow_private=False)
    target = url_safety.resolve(url, allow_private=True)
    assert url_safety.unsafe_reason(target.address) is not None


def test_public_literal_url_resolves_to_itself():
    target = url_safety.resolve("https://8.8.8.8:8443/hooks?x=1", allow_private=False)
    assert (target.scheme, target.host, target.port, target.path, target.address) == \
        ("https", "8.8.8.8", 8443, "/hooks?x=1", "8.8.8.8")


@pytest.mark.parametrize("url", ["ftp://example.com/", "example.com/hook", "http://", "http://u:p@8.8.8.8/",
                                 "http://8.8.8.8:99999/", "http://8.8.8.8/a b"])
def test_malformed_urls_are_refused(url):
    with pytest.raises(url_safety.UnsafeURL):
        url_safety.resolve(url, allow_private=True)


def test_an_attempt_that_cannot_be_sent_is_a_failed_attempt_not_an_exception():
    """http.client writes the request line in ASCII: a URL with a non-ASCII path raised UnicodeEncodeError
    out of post(), so the event was never counted failed nor given up, only leased again and again."""
    secret = signing.new_secret()
    with pytest.raises(url_safety.UnsafeURL, match="ASCII"):
        url_safety.resolve("http://8.8.8.8/caf\u00e9", allow_private=True)  # refused when registered
    for url in ("http://127.0.0.1:9/caf\u00e9", "http://127.0.0.1:9/x?q=\u00e9"):  # one kept from before
        assert isinstance(post(Endpoint(url, secret), "evt_1", b"{}", 1.0, allow_private=True), str)
    assert isinstance(post(Endpoint("http://127.0.0.1:9/", "whsec_bad!"), "evt_1", b"{}", 1.0, True), str)


def test_a_receiver_that_drips_its_answer_is_cut_off():
    """EMBED_WEBHOOK_TIMEOUT bounds each socket read, not the attempt: a receiver sending a header line
    every 0.1 s held the sender thread (every key's deliveries in that process) as long as it liked, and
    outlived the lease, so other processes took the event and were held too."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def drip():
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            for i in range(80):  # 8 s of headers, then a 200
                try:
                    conn.sendall(b"x-drip-%d: 1\r\n" % i)
                except OSError:
                    return
                time.sleep(0.1)
            conn.sendall(b"content-length: 0\r\n\r\n")

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    started = time.monotonic()
    why = post(Endpoint(f"http://127.0.0.1:{port}/hook", signing.new_secret()), "evt_1", b"{}", 0.5,
               allow_private=True)
    elapsed = time.monotonic() - started
    server.close()
    assert why is not None and elapsed < 4, (why, elapsed)


def test_event_body_names_the_object_only():
    record = {"id": event.event_id("job_0123abcd"), "type": "embedding.job.completed", "object_id": "job_0123abcd",
              "created_at": "1700000000", "owner": "ff" * 32, "record": "embed:job:job_0123abcd"}
    assert json.loads(event.body(record)) == {"id": "evt_0123abcd", "object": "event",
                                              "type": "embedding.job.completed", "created_at": 1700000000,
                                              "data": {"id": "job_0123abcd"}}
    assert event.body(record) == event.body(dict(record))  # the same bytes on every attempt


def test_backoff_doubles_up_to_its_cap():
    assert [backoff(n, 5.0, 60.0) for n in (1, 2, 3, 4, 5, 6)] == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]


def test_webhook_settings():
    env = {"EMBED_WEBHOOK_URL": "https://hooks.example.com/x", "EMBED_WEBHOOK_SECRET": VECTOR_SECRET}
    settings = Settings.from_env(env)
    assert settings.webhook_retry_hours == 72 and not settings.webhook_allow_private
    assert VECTOR_SECRET not in repr(settings)
    with pytest.raises(ConfigError, match="EMBED_WEBHOOK_SECRET"):
        Settings.from_env({"EMBED_WEBHOOK_URL": "https://hooks.example.com/x"})
    with pytest.raises(ConfigError, match="EMBED_WEBHOOK_URL"):
        Settings.from_env({**env, "EMBED_WEBHOOK_URL": "ftp://hooks.example.com/"})


@pytest.fixture
def outbox(redis_server):
    client = redis_server.client()
    client.delete(redis_keys.webhooks_due(), redis_keys.webhook_counts(), redis_keys.webhook_event("evt_1"))
    yield Outbox(client)
    client.delete(redis_keys.webhooks_due(), redis_keys.webhook_counts(), redis_keys.webhook_event("evt_1"),
                  "embed:test-record")


def _record(outbox: Outbox, created_at: int | None = None) -> None:
    outbox.redis.hset("embed:test-record", "id", "batch_1")
    pipe = outbox.redis.pipeline(transaction=True)
    record_steps(pipe, {"id": "evt_1", "type": "batch.failed", "object_id": "batch_1", "owner": "o",
                        "created_at": created_at or int(time.time())}, "embed:test-record")
    pipe.execute()


def test_a_lapsed_lease_is_taken_again_and_the_old_holder_is_fenced_off(outbox):
    _record(outbox)
    first = outbox.take(lease_s=0.3)
    assert first is not None and first.fields["type"] == "batch.failed"
    assert outbox.take(lease_s=0.3) is None  # leased: no one else gets it
    time.sleep(0.4)
    second = outbox.take(lease_s=30)
    assert second is not None and second.id == first.id and second.lease != first.lease
    assert not outbox.delivered(first)  # the dead holder's late outcome changes nothing
    assert outbox.failed(first, 1, 3600) == "lost"
    assert outbox.delivered(second)
    assert outbox.counts() == {"delivered": 1, "failed": 0, "given_up": 0} and outbox.pending() == 0
    assert outbox.redis.hget("embed:test-record", "webhook_delivered_at") is not None


def test_failures_retry_then_give_up_past_the_window(outbox):
    _record(outbox)
    taken = outbox.take(lease_s=30)
    assert outbox.failed(taken, delay_s=0.05, window_s=3600) == "retry"
    time.sleep(0.1)
    taken = outbox.take(lease_s=30)
    assert taken.attempts == 1
    assert outbox.failed(taken, delay_s=7200, window_s=3600) == "given_up"
    assert outbox.counts() == {"delivered": 0, "failed": 2, "given_up": 1} and outbox.pending() == 0
    assert not outbox.redis.exists(redis_keys.webhook_event("evt_1"))


def _job(scheduler, kind: str, webhook: int) -> str:
    from embedserve.ids import new_id
    from embedserve.jobs.records import Job, JobStatus, job_record

    now = int(time.time())
    job = Job(id=new_id("job_"), owner="owner-w", kind=kind, model="hook-model", status=JobStatus.QUEUED,
              created_at=now, total=2, chunks=1, expires_at=now + 3600, webhook=webhook,
              batch_id=new_id("batch_") if kind == "batch" else None)
    scheduler.submit(job_record(job, 10), cap=0, ttl=3600)
    return job.id


@pytest.mark.parametrize("kind, object_prefix, event_type", [("job", "job_", "embedding.job.cancelled"),
                                                             ("batch", "batch_", "batch.cancelled")])
def test_a_job_records_one_event_with_its_first_final_status(redis_server, kind, object_prefix, event_type):
    from embedserve.jobs.records import JobRecords
    from embedserve.jobs.scheduler import Scheduler

    client = redis_server.client()
    client.flushdb()
    records = JobRecords(client)
    job_id = _job(Scheduler(client), kind, webhook=1)
    quiet = _job(Scheduler(client), kind, webhook=0)
    records.cancel(job_id)
    records.cancel(quiet)
    records.expire([job_id, quiet])  # later statuses of an ended job send nothing more
    due = [i.decode() for i in client.zrange(redis_keys.webhooks_due(), 0, -1)]
    assert len(due) == 1
    fields = {k.decode(): v.decode() for k, v in client.hgetall(redis_keys.webhook_event(due[0])).items()}
    assert fields["type"] == event_type and fields["object_id"].startswith(object_prefix)
    assert due[0] == event.event_id(fields["object_id"]) and fields["owner"] == "owner-w"
    assert fields["record"] == redis_keys.job(job_id)
