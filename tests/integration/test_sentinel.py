"""Redis fails over under Sentinel without losing accepted work.

A primary, two replicas and three sentinels on 127.0.0.1 (tests/stack.py: SentinelGroup); an API
and a MiniLM worker pointed at the sentinel:// URL (so EMBED_REDIS_WAIT_REPLICAS defaults to 1).
With sync load running and a job of a few thousand inputs under way, the primary is SIGKILLed:
the sentinels promote a replica, and
- the job (it got its 202 before the kill) completes with every index exactly once;
- sync requests fail only with retryable statuses (503, 504: a JSON error, never a 500) while
  Redis fails over, and get 200 again within the failover time plus a few seconds.
Two replicas, so the promoted one still has a replica to WAIT for (with one, every WAIT would time
out after the failover; the scheduler then skips WAIT, which costs nothing here).
"""

from __future__ import annotations

import threading
import time

import pytest
import requests

from tests.integration.conftest import API_KEY, MINILM, session_for
from tests.integration.jobs_helpers import get_job, result_ndjson, submit, texts, wait_finished
from tests.stack import SentinelGroup, Stack, wait_until

pytestmark = pytest.mark.slow

N = 3000
SYNC_TIMEOUT_S = 10  # a sync request whose task or reply the dead primary took with it ends in a 504 this soon
# Seconds from the kill until sync requests get 200 again, beyond the failover itself: the clients'
# retries and kombu's reconnection of the worker's consumer.
RECOVERY_MARGIN_S = 15
RETRYABLE = {503, 504}


class SyncLoad(threading.Thread):
    """One client sending small /v1/embeddings requests back to back; records (started, ended, status, body)."""

    def __init__(self, base: str):
        super().__init__(daemon=True, name="sync-load")
        self.http = session_for(base)
        self.stopping = threading.Event()
        self.results: list[tuple[float, float, int, str]] = []

    def run(self):
        number = 0
        while not self.stopping.is_set():
            number += 1
            started = time.monotonic()
            try:
                response = self.http.post(self.http.base + "/v1/embeddings", timeout=SYNC_TIMEOUT_S + 30,
                                          json={"model": MINILM, "input": [f"sync request {number}", "failover"]})
                status, body = response.status_code, response.text
            except requests.RequestException as exc:  # the API itself must stay up: recorded as status 0
                status, body = 0, repr(exc)
            self.results.append((started, time.monotonic(), status, body))
            if status != 200:
                time.sleep(0.2)  # a client backing off before its retry

    def stop(self):
        self.stopping.set()
        self.join(SYNC_TIMEOUT_S + 40)
        self.http.close()


@pytest.mark.timeout(600)
def test_a_primary_failover_loses_no_accepted_job_and_sync_requests_recover(tmp_path):
    group = SentinelGroup.start(replicas=2)
    stack = Stack(redis=group, log_dir=tmp_path, base_env={"EMBED_SYNC_TIMEOUT": str(SYNC_TIMEOUT_S),
                                                           "EMBED_WORKER_DEAD_AFTER": "10"})
    load = None
    try:
        stack.start_worker(MINILM)
        _, url = stack.start_api(EMBED_API_KEYS=API_KEY)
        http = session_for(url)
        load = SyncLoad(url)
        load.start()
        wait_until(lambda: any(status == 200 for _, _, status, _ in load.results), 60, "a first sync 200")

        job = submit(http, model=MINILM, input=texts(N, "failover "))  # 202 only once a replica has it
        wait_until(lambda: get_job(http, job["id"])["request_counts"]["completed"] >= 256, 180,
                   "the first chunks to finish", interval=0.05)
        old_port = group.primary.port
        group.primary.process.kill()  # SIGKILL: whatever the replicas had not received is gone
        killed_at = time.monotonic()
        new_port = group.wait_failover(old_port, 30)
        failover_s = time.monotonic() - killed_at
        assert new_port in {replica.port for replica in group.replicas}

        done = wait_finished(http, job["id"], timeout=300)
        assert done["status"] == "completed", done
        assert done["request_counts"] == {"total": N, "completed": N, "failed": 0}
        lines = result_ndjson(http, job["id"])
        assert [line["index"] for line in lines] == list(range(N))  # none missing, none doubled
        assert all(len(line["embedding"]) == 384 for line in lines)

        # Sync requests: 200 again soon after the failover, and only retryable errors on the way.
        recovered_by = killed_at + failover_s + RECOVERY_MARGIN_S
        wait_until(lambda: any(start > killed_at and status == 200 for start, _, status, _ in load.results),
                   failover_s + RECOVERY_MARGIN_S, "a sync 200 after the kill")
        time.sleep(max(0.0, recovered_by + 3 - time.monotonic()))  # some requests after the recovery deadline
        load.stop()
        results = list(load.results)
        failures = [(start - killed_at, status, body[:300]) for start, _, status, body in results if status != 200]
        assert all(status in RETRYABLE for _, status, _ in failures), failures
        assert all('"error"' in body and "Traceback" not in body for _, _, body in failures), failures
        # Only requests in flight at the kill (started up to a sync timeout before) or sent during the failover.
        assert all(-SYNC_TIMEOUT_S < t < recovered_by - killed_at for t, _, _ in failures), failures
        after = [status for start, _, status, _ in results if start > recovered_by]
        assert after and set(after) == {200}, f"sync requests after recovery: {after}"
        print(f"failover {failover_s:.1f}s; sync failures (s after kill, status): "
              f"{[(round(t, 1), s) for t, s, _ in failures]}; {len(results)} sync requests")
    finally:
        if load is not None and load.is_alive():
            load.stop()
        stack.close()
        group.stop()
