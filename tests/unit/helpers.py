"""What several unit test files share (no test file imports another)."""

from __future__ import annotations


class RecordingEnv(dict):
    """An environment mapping that remembers every name asked for (what Settings.from_env reads)."""

    def __init__(self):
        super().__init__()
        self.asked: set[str] = set()

    def get(self, name, default=None):
        self.asked.add(name)
        return super().get(name, default)

    def __getitem__(self, name):
        self.asked.add(name)
        return super().__getitem__(name)
