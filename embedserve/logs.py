"""Process-wide logging setup, shared by the API and workers."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str) -> None:
    """Plain, timestamped lines on stderr at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
