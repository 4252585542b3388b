"""The `embedserve` command: `api` and `worker` start one part each; `keys` manages API keys; `models` the
model catalogue; `embed` embeds a file."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (tests read its subcommand names)."""
    parser = argparse.ArgumentParser(prog="embedserve", description="Self-hosted OpenAI-compatible embeddings.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("api", help="serve the HTTP API (needs Redis; keys from EMBED_API_KEYS and `keys create`)")
    worker = sub.add_parser("worker", help="load EMBED_MODEL (or, with --rerank, EMBED_RERANK_MODEL) and serve it")
    worker.add_argument("--rerank", action="store_true",
                        help="serve EMBED_RERANK_MODEL on /v1/rerank instead (same as EMBED_WORKER_ROLE=rerank)")
    from embedserve.cli.keys import add_keys_parser  # redis only: no torch, no Flask

    add_keys_parser(sub)
    from embedserve.cli.models import add_models_parser  # redis only: no torch, no Flask

    add_models_parser(sub)
    from embedserve.cli.embed import add_embed_parser  # standard library + msgpack: a client of a running server

    add_embed_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the subcommand and run it; settings come from EMBED_* variables (see docs/settings.md)."""
    args = build_parser().parse_args(argv)
    # Imported per command: the API side must never import torch, the worker side never Flask.
    if args.command == "api":
        from api.server import main as run_api

        return run_api()
    if args.command == "worker":
        from worker.main import main as run_worker

        return run_worker(["--rerank"] if args.rerank else [])
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
