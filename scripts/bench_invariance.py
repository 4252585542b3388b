"""What the batch-invariant forward (EMBED_DETERMINISTIC) costs the model itself, and whether it holds.

Two engines of the same model in one process, one with the batch-invariant forward and one without,
timed in turns (interleaved rounds, the best round of each kept, so load from elsewhere hits both
alike): one text alone at several lengths (what a sync request's forward costs) and one pass of
`--rows` mixed texts (a bulk pass), in CPU seconds of this process. Then, for each engine, how many
of `--rows` texts come out with other bytes inside a shuffled batch than alone. Not a test: it prints.

    .venv/bin/python -m scripts.bench_invariance                # all-MiniLM-L6-v2
    .venv/bin/python -m scripts.bench_invariance --model qwen3  # the tests' tiny Qwen3
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from worker.engine import EmbeddingEngine, resolve_model_source

WORDS = ("the quick brown fox jumps over a lazy dog while seven small birds sing in tall green trees near "
         "the river and somebody reads a long document about search engines").split()


def mixed_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 70))) for _ in range(n)]


def cpu_seconds(run, repeats: int) -> float:
    started = time.process_time()
    for _ in range(repeats):
        run()
    return (time.process_time() - started) / repeats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["minilm", "qwen3"], default="minilm")
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: CPU time is cleanest)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.model == "minilm":
        source = resolve_model_source("")
    else:
        from tests.fixtures.tiny_models import build_tiny_qwen3_embedding

        source = str(build_tiny_qwen3_embedding(Path(tempfile.mkdtemp()) / "qwen3"))
    cpu = torch.device("cpu")
    engines = {"on": EmbeddingEngine(source, cpu, torch.float32, deterministic=True),
               "off": EmbeddingEngine(source, cpu, torch.float32, deterministic=False)}
    tokenize = engines["on"].tokenize
    rows = tokenize(mixed_texts(args.rows, seed=5), offset=0, input_type="document", instruction=None,
                    truncate=True).rows
    singles = [tokenize(["word " * words], offset=0, input_type="document", instruction=None, truncate=True).rows
               for words in (3, 12, 40, 120)]
    print(f"model {args.model}, torch threads {args.threads}, best of {args.rounds} interleaved rounds, CPU ms")
    print(f"{'shape':>22} {'on':>9} {'off':>9} {'cost':>7}")
    cases = [(f"1 text, {len(s[0])} tokens", s, 20) for s in singles]
    cases.append((f"{len(rows)} texts, {sum(map(len, rows))} tok", rows, 1))
    for label, batch, repeats in cases:
        best = dict.fromkeys(engines, float("inf"))
        for _ in range(args.rounds):  # in turns, so load from elsewhere hits both engines alike
            for name, engine in engines.items():
                best[name] = min(best[name], cpu_seconds(lambda e=engine, b=batch: e.embed_batch(b), repeats))
        print(f"{label:>22} {best['on'] * 1e3:9.2f} {best['off'] * 1e3:9.2f} {best['on'] / best['off'] - 1:+7.1%}")
    mix = random.Random(1).sample(range(len(rows)), len(rows))
    for name, engine in engines.items():
        alone = [engine.embed_batch([row])[0] for row in rows]
        together = engine.embed_batch([rows[i] for i in mix])
        moved = sum(not np.array_equal(together[j], alone[i]) for j, i in enumerate(mix))
        print(f"EMBED_DETERMINISTIC={name}: {moved} of {len(rows)} texts differ in their bytes in a batch vs alone")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
