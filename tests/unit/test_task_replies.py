"""A sync task's reply when its service raises: the one place a refusal or a bug becomes the caller's error."""

from __future__ import annotations

import time

from embedserve.errors import InvalidRequest
from embedserve.protocol import EmbedChunk
from worker.tasks import answer


class Service:
    FAILURE = "the worker failed to embed this input"

    def __init__(self, error: Exception):
        self.error = error

    def run(self, chunk):
        raise self.error


def chunk() -> EmbedChunk:
    return EmbedChunk(request_id="r", reply_to="nowhere", chunk=3, offset=0, inputs=["a"], deadline=time.time() + 60)


def test_a_refusal_is_the_reply_as_raised():
    reply = answer(Service(InvalidRequest("too long", param="input", code="context_length_exceeded")), chunk())
    assert (reply.chunk, reply.status, reply.rows) == (3, 400, 0)
    assert reply.error == {"message": "too long", "type": "invalid_request_error", "param": "input",
                           "code": "context_length_exceeded"}


def test_a_bug_is_a_500_that_names_the_service_s_failure_without_its_internals():
    reply = answer(Service(RuntimeError("CUDA error: secret internals")), chunk())
    assert (reply.chunk, reply.status) == (3, 500)
    assert reply.error == {"message": "the worker failed to embed this input", "type": "server_error", "param": None,
                           "code": "internal_error"}
