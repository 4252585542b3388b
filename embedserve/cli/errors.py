"""How the admin subcommands (`embedserve keys`, `embedserve models`) end on an error: a one-line
message naming the command, and exit status 2, never a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import redis

from embedserve.settings import ConfigError


def guarded(command: str, open_: Callable[[], tuple], expected: tuple[type[Exception], ...] = ()):
    """Decorator: run `action(*open_(), args)`; configuration, `expected` and Redis errors exit 2 with a message."""

    def wrap(action: Callable[..., int]) -> Callable[[argparse.Namespace], int]:
        def run(args: argparse.Namespace) -> int:
            try:
                return action(*open_(), args)
            except (ConfigError, *expected) as exc:
                print(f"embedserve {command}: {exc}", file=sys.stderr)
                return 2
            except redis.RedisError as exc:
                print(f"embedserve {command}: Redis error ({exc}); check EMBED_REDIS_URL", file=sys.stderr)
                return 2
        return run

    return wrap
