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

    def pick_batch(self, texts: list[str], rounds: int = 2) -> dict[int, float]:
        """Texts/s of each batch size on `texts` (best of `rounds`, sizes interleaved); keeps the fastest."""
        best: dict[int, float] = {}
        for _ in range(rounds):  # interleaved, so a noisy moment does not favour one size
            for size in BATCH_SIZES:
                started = time.perf_counter()
                self.model.encode(texts, batch_size=size)
                best[size] = min(best.get(size, float("inf")), time.perf_counter() - started)
        rates = {size: len(texts) / seconds for size, seconds in best.items()}
        self.best_batch = max(rates, key=rates.get)
        return rates

    def throughput(self, texts: list[str], repeat: int = 1) -> float:
        """Texts/s of encode() over all `texts` at the best batch size (best of `repeat`)."""
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            self.model.encode(texts, batch_size=self.best_batch)
            times.append(time.perf_counter() - started)
        return len(texts) / min(times)

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
