"""The worker's Redis client and the broker's socket options (embedserve/redis_client.py), and the
bulk slots' hand-back of chunks a lost claim reply left held (worker/bulk_slots.py), without Redis."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import redis
from kombu.transport.redis import Channel, SentinelChannel
from redis.backoff import ExponentialBackoff
from redis.sentinel import SentinelConnectionPool

from embedserve import redis_client
from embedserve.celery_app import RedisTransport, SentinelTransport, make_celery
from embedserve.jobs.scheduler import IDLE_WAIT_S, Claim
from embedserve.settings import Settings
from worker.bulk_slots import BulkSlots


def test_socket_timeout_outlasts_the_longest_blocking_command():
    # The bulk slots BLPOP for IDLE_WAIT_S; redis-py does not lengthen the socket timeout for it.
    assert redis_client.SOCKET_TIMEOUT_S >= IDLE_WAIT_S + 2
    assert redis_client.BROKER_HEALTH_CHECK_INTERVAL_S > 0


def test_worker_client_connections_time_out_keep_alive_check_health_and_retry_with_backoff():
    client = redis_client.worker_client("redis://127.0.0.1:1/0")
    conn = client.connection_pool.make_connection()
    assert conn.socket_timeout == redis_client.SOCKET_TIMEOUT_S
    assert conn.socket_connect_timeout == redis_client.CONNECT_TIMEOUT_S
    assert conn.socket_keepalive is True and conn.socket_keepalive_options == redis_client.keepalive_options()
    assert conn.health_check_interval == redis_client.HEALTH_CHECK_INTERVAL_S
    assert conn.retry._retries == redis_client.RETRIES >= 2
    assert isinstance(conn.retry._backoff, ExponentialBackoff)
    assert {redis.ConnectionError, redis.TimeoutError} <= set(conn.retry._supported_errors)
    if hasattr(socket, "TCP_KEEPIDLE"):
        assert redis_client.keepalive_options()[socket.TCP_KEEPIDLE] == 10


def test_two_worker_clients_do_not_share_a_retry_object():
    one = redis_client.worker_client("redis://127.0.0.1:1/0").connection_pool.make_connection()
    two = redis_client.worker_client("redis://127.0.0.1:1/0").connection_pool.make_connection()
    assert one.retry is not two.retry  # each backoff keeps its own state


class SilentServer:
    """A TCP server that accepts connections and never answers: a hung or half-open Redis."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.sock.getsockname()[1]}/0"

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self):
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def test_a_silent_server_costs_bounded_time_and_each_retry_uses_a_fresh_connection():
    server = SilentServer()
    try:
        client = redis_client.worker_client(server.url, socket_timeout=0.1, socket_connect_timeout=0.1)
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            client.ping()
        took = time.monotonic() - started
        # Each command try (first + RETRIES) may run the health check's own tries first, each timing out,
        # plus their backoff: bounded, never a hang.
        tries = (redis_client.RETRIES + 1) ** 2
        assert took < tries * (0.1 + redis_client.BACKOFF_CAP_S) + 5
        assert len(server.accepted) >= redis_client.RETRIES + 1  # a dead socket is dropped, not reused
    finally:
        server.close()


def test_celery_broker_gets_socket_timeouts_keepalive_and_health_checks_that_kombu_knows():
    options = make_celery(Settings()).conf.broker_transport_options
    expected = redis_client.broker_socket_options()
    assert {k: options[k] for k in expected} == expected
    assert options["socket_timeout"] == redis_client.SOCKET_TIMEOUT_S
    assert options["socket_connect_timeout"] and options["socket_keepalive"] is True
    assert options["health_check_interval"] == redis_client.BROKER_HEALTH_CHECK_INTERVAL_S
    # kombu's Redis channel takes these from the transport options (and passes them to redis-py).
    assert set(expected) <= set(Channel.from_transport_options)
    # No retry on timeout: kombu reconnects the consumer itself, and a retried pipeline could replay.
    assert "retry_on_timeout" not in options


SENTINEL_URL = "sentinel://:master%3Apw@127.0.0.1:1,localhost:2,[::1]:3/mymaster/4"


def test_a_sentinel_url_gives_a_client_of_the_named_master_with_the_workers_options():
    client = redis_client.worker_client(SENTINEL_URL, sentinel_password="sentinel-pw")
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "mymaster" and pool.is_master
    conn = pool.make_connection()  # asks the sentinels only when it connects
    assert conn.db == 4 and conn.password == "master:pw"
    assert conn.socket_timeout == redis_client.SOCKET_TIMEOUT_S and conn.socket_keepalive is True
    assert conn.health_check_interval == redis_client.HEALTH_CHECK_INTERVAL_S
    assert conn.retry._retries == redis_client.RETRIES
    sentinels = pool.sentinel_manager.sentinels
    assert [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
            for s in sentinels] == [("127.0.0.1", 1), ("localhost", 2), ("::1", 3)]
    # The sentinels get their own password and short timeouts, not the master's password.
    assert {s.connection_pool.connection_kwargs["password"] for s in sentinels} == {"sentinel-pw"}
    assert sentinels[0].connection_pool.connection_kwargs["socket_timeout"] == redis_client.SENTINEL_TIMEOUT_S


def test_every_client_comes_from_the_settings_through_one_factory():
    plain = redis_client.client_for(Settings(), socket_connect_timeout=1)
    assert type(plain.connection_pool) is redis.ConnectionPool
    sentinel = redis_client.client_for(Settings.from_env({"EMBED_REDIS_URL": SENTINEL_URL}))
    assert isinstance(sentinel.connection_pool, SentinelConnectionPool)


def test_a_sentinel_url_gives_celery_kombus_sentinel_transport_with_the_master_name():
    settings = Settings.from_env({"EMBED_REDIS_URL": SENTINEL_URL, "EMBED_REDIS_SENTINEL_PASSWORD": "sentinel-pw"})
    app = make_celery(settings)
    options = app.conf.broker_transport_options
    assert options["master_name"] == "mymaster"
    assert options["sentinel_kwargs"]["password"] == "sentinel-pw"
    assert options["socket_timeout"] == redis_client.SOCKET_TIMEOUT_S  # the master's connections, as before
    connection = app.connection_for_write()
    assert issubclass(connection.transport_cls, SentinelTransport) and str(connection.transport_cls) == "sentinel"
    assert connection.alt == ["sentinel://:master%3Apw@127.0.0.1:1/4", "sentinel://:master%3Apw@localhost:2/4",
                              "sentinel://:master%3Apw@[::1]:3/4"]
    assert (connection.password, connection.virtual_host) == ("master:pw", "4")  # kombu decodes them
    assert {"master_name", "sentinel_kwargs"} <= set(SentinelChannel.from_transport_options)
    # A plain URL stays as it was: no sentinel options, kombu's redis transport.
    plain = make_celery(Settings())
    assert "master_name" not in plain.conf.broker_transport_options
    assert plain.conf.broker_url == Settings().redis_url
    assert issubclass(plain.connection_for_write().transport_cls, RedisTransport)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "sentinel://127.0.0.1:1/mymaster/0"])
def test_a_broker_channel_closed_after_its_connection_raises_a_connection_error_not_attribute_error(url):
    # What Celery's consumer does on losing Redis with unacknowledged messages delivered: collect()
    # detaches the transport, then closing the channel restores the messages through a new pool.
    connection = make_celery(Settings.from_env({"EMBED_REDIS_URL": url})).connection_for_write()
    channel_cls = connection.transport.Channel
    channel = channel_cls.__new__(channel_cls)  # its __init__ would connect
    channel.connection = connection.transport
    connection.transport.client = None
    with pytest.raises(redis.ConnectionError):
        channel._connparams()
    assert redis.ConnectionError in connection.transport.connection_errors  # what Celery retries on


# -- bulk slots: a claim whose reply was lost ------------------------------------------------------


class FakeScheduler:
    """The slice of Scheduler that BulkSlots uses, in memory; `claim` may fail after claiming."""

    def __init__(self, chunks: list[tuple[str, str]]):
        self.waiting = list(chunks)
        self.held_set: set[str] = set()
        self.handed_back: list[tuple[str, str, bool]] = []
        self.lose_next_claim_reply = False
        self.lock = threading.Lock()

    def claim(self, model, worker_id):
        with self.lock:
            if not self.waiting:
                return None
            job_id, chunk = self.waiting.pop(0)
            self.held_set.add(f"{job_id}|{chunk}")
            if self.lose_next_claim_reply:  # claimed on the server, but the client timed out
                self.lose_next_claim_reply = False
                raise redis.TimeoutError("Timeout reading from socket")
            return Claim(job_id, chunk, 1)

    def wait_for_work(self, model, timeout=IDLE_WAIT_S):
        time.sleep(0.01)

    def held(self, worker_id):
        with self.lock:
            return sorted(self.held_set)

    def hand_back(self, claim, worker_id, *, refund):
        with self.lock:
            self.held_set.discard(f"{claim.job_id}|{claim.chunk}")
            self.handed_back.append((claim.job_id, claim.chunk, refund))
            self.waiting.insert(0, (claim.job_id, claim.chunk))

    def finish(self, claim):
        with self.lock:
            self.held_set.discard(f"{claim.job_id}|{claim.chunk}")


def test_a_chunk_claimed_on_the_server_but_lost_to_a_timeout_is_handed_back_and_runs():
    scheduler = FakeScheduler([("j", "0"), ("j", "1"), ("j", "2")])
    scheduler.lose_next_claim_reply = True
    ran: list[str] = []

    def handle(claim):
        ran.append(claim.chunk)
        scheduler.finish(claim)

    slots = BulkSlots(scheduler, "m", "w1", handle, lambda job_id: None, slots=1)
    slots.start()
    try:
        deadline = time.monotonic() + 10
        while sorted(ran) != ["0", "1", "2"] and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        slots.drain(5)
    assert sorted(ran) == ["0", "1", "2"], ran  # chunk 0 ran after all, once
    assert scheduler.handed_back == [("j", "0", True)]  # its attempt refunded: it never ran
    assert scheduler.held_set == set()


def test_stray_release_leaves_running_chunks_and_a_running_jobs_compaction_alone():
    scheduler = FakeScheduler([])
    slots = BulkSlots(scheduler, "m", "w1", lambda claim: False, lambda job_id: None, slots=1)
    slots._running = {"a|3"}  # a slot runs job a's chunk 3 (and its finish may just have handed it a|c)
    scheduler.held_set = {"a|3", "a|c", "b|7"}
    slots._unsure.set()
    assert slots.release_strays() == ["b|7"]
    assert scheduler.held_set == {"a|3", "a|c"}
    assert slots._unsure.is_set()  # a|c is looked at again once job a's chunk is done
    slots._running = set()  # chunk 3 finished (its finish released it) and the slot compacts nothing
    scheduler.held_set.discard("a|3")
    assert slots.release_strays() == ["a|c"]
    assert not slots._unsure.is_set()


def test_a_chunk_whose_hand_back_failed_while_a_stray_check_saw_it_running_is_still_handed_back_later():
    """The race a Redis failover produced: a stray check (holding the lock, its HKEYS retrying until the
    new master answered) saw a failed chunk still in _running, skipped it and cleared _unsure, while that
    chunk's slot, its hand-back refused, waited for the lock. The chunk sat held by a live worker forever."""
    scheduler = FakeScheduler([("j", "5")])
    in_held, go_on = threading.Event(), threading.Event()
    real_held, real_hand_back = scheduler.held, scheduler.hand_back
    redis_down = threading.Event()
    redis_down.set()
    runs: list[str] = []

    def held(worker_id):
        in_held.set()
        go_on.wait(10)  # Redis failing over: the stray check holds the lock meanwhile
        return real_held(worker_id)

    def hand_back(claim, worker_id, *, refund):
        if redis_down.is_set():
            raise redis.ConnectionError("no master yet")
        return real_hand_back(claim, worker_id, refund=refund)

    def handle(claim):
        runs.append(claim.chunk)
        if len(runs) > 1:
            scheduler.finish(claim)  # the second run, once Redis is back
            return
        threading.Thread(target=slots.release_strays, daemon=True).start()
        assert in_held.wait(10)
        threading.Timer(0.3, go_on.set).start()  # while this slot waits for the lock the check holds
        raise redis.ConnectionError("the master died mid-chunk")

    scheduler.held, scheduler.hand_back = held, hand_back
    slots = BulkSlots(scheduler, "m", "w1", handle, lambda job_id: None, slots=1)
    slots.start()
    try:
        assert go_on.wait(10)
        time.sleep(0.5)  # the check has skipped j|5 as running and ended; the slot left j|5 held
        redis_down.clear()  # the new master answers
        deadline = time.monotonic() + 10
        while len(runs) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        slots.drain(5)
    assert runs == ["5", "5"] and scheduler.held_set == set()  # handed back, then run again
