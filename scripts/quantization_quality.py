"""What the compact embedding types cost in retrieval: recall@10 of each against float search.

No labelled set is at hand offline, so the measure is agreement with exact float search: the
corpus is every distinct sentence of this repository's Markdown (README, docs, the seed guide),
each of the first QUERIES sentences asks for its 10 nearest other sentences, and recall@10 is the
share of float search's top 10 that the quantized search also returns. Scoring is what vector
databases do with each type: float and int8/uint8 by dot product (int8 with the model's
calibration ranges, worker/calibration.py), binary by Hamming distance; "rescored" reranks the
binary top 40 with the float query against float documents. A figure printer, not a test:

    .venv/bin/python -m scripts.quantization_quality [--model PATH] [--dimensions N]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from embedserve.vector_types import row_bytes

ROOT = Path(__file__).resolve().parents[1]
K = 10
QUERIES = 300


def corpus() -> list[str]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "tests/data/seed_usage_guide.md"]
    seen, out = set(), []
    for path in files:
        text = re.sub(r"```.*?```", " ", path.read_text(), flags=re.S)  # prose, not code
        for sentence in re.split(r"(?<=[.!?])\s+|\n\s*\n|\n[-*|#]", text):
            sentence = " ".join(sentence.split()).strip("|-# ")
            if len(sentence) >= 40 and sentence not in seen:
                seen.add(sentence)
                out.append(sentence)
    return out


def top_k(scores: np.ndarray, k: int = K) -> np.ndarray:
    """Indexes of the k best scores per row, each query's own sentence excluded."""
    scores = scores.astype(np.float64, copy=True)
    np.fill_diagonal(scores[:, :scores.shape[0]], -np.inf)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="", help="model path or id (default: the embedded MiniLM)")
    parser.add_argument("--dimensions", type=int, default=None)
    args = parser.parse_args()

    import torch

    from worker.calibration import CALIBRATION_TEXTS
    from worker.embedding_service import truncate_dimensions
    from worker.engine import EmbeddingEngine, resolve_model_source
    from worker.quantize import quantize, ranges_of

    engine = EmbeddingEngine(resolve_model_source(args.model), torch.device("cpu"), torch.float32)

    def embed(texts: list[str]) -> np.ndarray:
        rows = engine.tokenize(texts, offset=0, input_type="document", instruction=None, truncate=True).rows
        out = np.concatenate([engine.embed_batch(rows[i:i + 64]) for i in range(0, len(rows), 64)])
        return truncate_dimensions(out, args.dimensions) if args.dimensions else out

    docs = corpus()
    floats = embed(docs)
    ranges = ranges_of(embed(list(CALIBRATION_TEXTS)))
    queries = floats[:QUERIES]
    truth = top_k(queries @ floats.T)
    dim = floats.shape[1]
    print(f"model {Path(engine.source).name}, {dim} dimensions, {len(docs)} sentences, {QUERIES} queries, "
          f"recall@{K} against float search")
    print(f"{'type':<18}{'bytes/vector':>13}{'recall@10':>11}")
    print(f"{'float':<18}{row_bytes('float', dim):>13}{1.0:>11.3f}")
    for kind in ("int8", "uint8"):
        q = quantize(floats, kind, ranges).astype(np.int32)
        print(f"{kind:<18}{row_bytes(kind, dim):>13}{recall(top_k(q[:QUERIES] @ q.T), truth):>11.3f}")
    bits = np.unpackbits(quantize(floats, "ubinary"), axis=-1)[:, :dim].astype(np.int32)
    hamming = -(bits[:QUERIES] @ (1 - bits).T + (1 - bits[:QUERIES]) @ bits.T)  # higher is closer
    print(f"{'binary / ubinary':<18}{row_bytes('ubinary', dim):>13}{recall(top_k(hamming), truth):>11.3f}")
    candidates = top_k(hamming, 4 * K)
    rescored = np.stack([c[np.argsort(-(floats[c] @ q), kind="stable")[:K]] for c, q in zip(candidates, queries)])
    print(f"{'binary, rescored':<18}{row_bytes('ubinary', dim):>13}{recall(rescored, truth):>11.3f}"
          f"   (top {4 * K} by Hamming, reranked with float vectors)")


if __name__ == "__main__":
    main()
