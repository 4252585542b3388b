"""Fixtures shared by all tests."""

from tests.fixtures.s3_server import s3_server  # noqa: E402,F401 - session fixture: a moto S3 server
