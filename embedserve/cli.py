"""The `embedserve` command: `embedserve api` and `embedserve worker` start one part each."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse the subcommand and run it; settings come from EMBED_* variables (see README)."""
    parser = argparse.ArgumentParser(prog="embedserve", description="Self-hosted OpenAI-compatible embeddings.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("api", help="serve the HTTP API (needs Redis and EMBED_API_KEYS)")
    worker = sub.add_parser("worker", help="load EMBED_MODEL (or, with --rerank, EMBED_RERANK_MODEL) and serve it")
    worker.add_argument("--rerank", action="store_true",
                        help="serve EMBED_RERANK_MODEL on /v1/rerank instead (same as EMBED_WORKER_ROLE=rerank)")
    args = parser.parse_args(argv)
    # Imported per command: the API side must never import torch, the worker side never Flask.
    if args.command == "api":
        from api.server import main as run

        return run()
    from worker.main import main as run_worker

    return run_worker(["--rerank"] if args.rerank else [])


if __name__ == "__main__":
    sys.exit(main())
