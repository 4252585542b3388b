"""Resident memory of a process and its children, read from /proc (Linux)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.stack import children  # one /proc reader of children, for tests and benchmarks


def status_bytes(pid: int, field: str = "VmRSS") -> int:
    """A /proc/PID/status memory field (VmRSS, RssAnon, RssFile), bytes; 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def rss_bytes(pid: int) -> int:
    """VmRSS of one process, bytes (0 if it is gone)."""
    return status_bytes(pid, "VmRSS")


def tree_rss(pid: int) -> dict[int, int]:
    """RSS of `pid` and all its descendants, by pid."""
    out, todo = {}, [pid]
    while todo:
        current = todo.pop()
        out[current] = rss_bytes(current)
        todo += children(current)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process, seconds (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds used so far by `pid` and all its descendants."""
    return sum(cpu_seconds(p) for p in tree_rss(pid))
