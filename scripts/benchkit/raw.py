"""The raw model in this process: sentence-transformers `encode()` at its best batch size."""

from __future__ import annotations

import gc
import time

# Batch sizes tried for encode(); the best on a probe slice is used for the full run.
BATCH_SIZES = (8, 16, 32, 64, 128)


class RawModel:
    """sentence-transformers on the same model files the worker loads, on the CPU."""

    def __init__(self, path: str):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(path, device="cpu")
        self.model.encode(["warm up"] * 8)
        self.best_batch = 32

    def pick_batch(self, texts: list[str]) -> dict[int, float]:
        """Texts/s of each batch size on `texts` (best of two); remembers the fastest."""
        rates = {}
        for size in BATCH_SIZES:
            times = []
            for _ in range(2):
                started = time.perf_counter()
                self.model.encode(texts, batch_size=size)
                times.append(time.perf_counter() - started)
            rates[size] = len(texts) / min(times)
        self.best_batch = max(rates, key=rates.get)
        return rates

    def throughput(self, texts: list[str]) -> float:
        """Texts/s of one encode() over all `texts` at the best batch size."""
        started = time.perf_counter()
        self.model.encode(texts, batch_size=self.best_batch)
        return len(texts) / (time.perf_counter() - started)

    def single_latencies(self, texts: list[str]) -> list[float]:
        """encode([text]) one text at a time; seconds each."""
        out = []
        for text in texts:
            started = time.perf_counter()
            self.model.encode([text])
            out.append(time.perf_counter() - started)
        return out

    def close(self) -> None:
        del self.model
        gc.collect()
