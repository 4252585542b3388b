"""`embedserve embed IN -o OUT`: embed a file of texts through a running server as one bulk job.

The input file is uploaded (`POST /v1/files`, purpose user_data; a .csv converted to JSONL on
the way) and the job submitted with its `input_file_id`; the result is streamed into the output
(ndjson for .jsonl, the framed msgpack stream for .npy and .parquet). Neither side of it is held
whole in memory, whatever the job's size.

Standard library HTTP (urllib) plus msgpack, so it runs from a base install; numpy (for .npy)
and pyarrow (for .parquet) are imported only when that output is asked for.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shlex
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from embedserve import defaults
from embedserve.cli.embed_files import (
    IncompleteResult,
    InputError,
    Source,
    check_output,
    result_format,
    scan_input,
    upload_blocks,
    write_output,
)
from embedserve.vector_types import EMBEDDING_TYPES, FLOAT

FINISHED = {"completed", "failed", "cancelled", "expired"}
# How each output shows an input that failed (a .npy of a quantized type: zero rows, as the server sends them).
FAILED_AS = {".npy": "NaN rows", ".jsonl": "error lines", ".parquet": "null embeddings"}
FAILED_AS_QUANTIZED = {**FAILED_AS, ".npy": "zero rows"}


# Polls and downloads that fail for a reason a retry may fix (no connection, 5xx, a cut stream)
# are retried this many times in a row, waiting 1, 2, 4, ... seconds up to RETRY_MAX_S.
RETRIES = 8
RETRY_MAX_S = 30.0


class ApiError(Exception):
    """The server answered with an error, or could not be reached (`transient`: a retry may help)."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


def retrying(call, what: str):
    """`call()`, retried with backoff while it fails transiently; the last failure is raised."""
    for attempt in range(RETRIES + 1):
        try:
            return call()
        except ApiError as exc:
            if not exc.transient or attempt == RETRIES:
                raise
            delay = min(2.0 ** attempt, RETRY_MAX_S)
            _say(f"{what} failed ({exc}); retrying in {delay:g}s")
            time.sleep(delay)


def add_embed_parser(sub) -> None:
    """Attach `embed` to the top-level subparsers."""
    p = sub.add_parser("embed", help="embed a .txt/.jsonl/.csv file as a bulk job; write .npy/.jsonl/.parquet")
    p.add_argument("input", nargs="?", help=".txt (one text per line), .jsonl ('text' field) or .csv ('text' column)")
    p.add_argument("-o", "--output", required=True, help="where to write: .npy, .jsonl or .parquet")
    p.add_argument("--model", help="model name (optional when the server serves one embedding model)")
    p.add_argument("--dimensions", type=int, help="truncate vectors to this many dimensions (Matryoshka)")
    p.add_argument("--input-type", choices=["query", "document"])
    p.add_argument("--instruction", help="instruction prefix for query inputs (instruction-tuned models)")
    p.add_argument("--truncate", action="store_true", help="cut inputs longer than the model's limit")
    p.add_argument("--truncation-direction", choices=["left", "right"],
                   help="which end --truncate cuts: right (the server's default, the end) or left (the start); "
                        "without --truncate it has no effect, as in the API")
    p.add_argument("--long-input", choices=["error", "truncate", "mean", "windows"],
                   help="an input over the model's maximum: refused (error, the server's default), cut (truncate), "
                        "or embedded whole from windows: their mean (mean), and each window's vector with its "
                        "offsets too (windows: in .jsonl and .parquet output; .npy holds the mean only)")
    p.add_argument("--window-overlap", type=int, help="tokens neighbouring windows share (server default 32)")
    p.add_argument("--embedding-type", choices=EMBEDDING_TYPES,
                   help="the vectors' type (default float): int8/uint8 one byte per dimension, "
                        "binary/ubinary the sign bits packed 8 per byte")
    p.add_argument("--url", default=os.environ.get("EMBED_URL", defaults.EMBED_CLI_URL),
                   help="server base URL (env EMBED_URL; default %(default)s)")
    p.add_argument("--api-key", default=os.environ.get("EMBED_API_KEY"), help="API key (env EMBED_API_KEY)")
    p.add_argument("--job", help="re-attach to this job id instead of submitting INPUT")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Submit (or re-attach), wait with a progress line, download, write; exit codes in docs/jobs.md."""
    client = Client(args.url, args.api_key)
    job_id = args.job
    try:
        check_output(args.output)
        if job_id is None:
            if not args.input:
                raise InputError("give an INPUT file, or --job ID to re-attach to a job")
            source = scan_input(args.input)
            note = f" ({source.skipped} blank lines skipped)" if source.skipped else ""
            submitted = client.submit(source, args)
            job_id = submitted["id"]
            _say(f"submitted {job_id}: {submitted['request_counts']['total']} texts{note}")
        job = wait(client, job_id)
        kept = job.get("embedding_type", FLOAT)
        if args.job is not None and args.embedding_type not in (None, kept):
            # The result is written as the job holds it; the option only applies when submitting.
            _say(f"note: job {job_id} holds {kept} vectors; --embedding-type {args.embedding_type} is ignored")
        suffix = Path(args.output).suffix.lower()
        if job.get("long_input") == "windows" and suffix == ".npy":
            _say(f"note: {args.output} holds each input's mean vector; its windows are in .jsonl or .parquet output")
        failed = retrying(lambda: client.download(f"/v1/jobs/{job_id}/result", result_format(args.output),
                                                  args.output), "download")
    except KeyboardInterrupt:
        if job_id is None:
            _say("interrupted before a job was submitted")
        else:
            _say(f"interrupted; job {job_id} keeps running on the server.\n"
                 f"  re-attach: {reattach_command(args, job_id)}   (API key from EMBED_API_KEY or --api-key)\n"
                 f"  cancel:    curl -X POST {args.url.rstrip('/')}/v1/jobs/{job_id}/cancel "
                 f"-H \"Authorization: Bearer $EMBED_API_KEY\"")
        return 130
    except (InputError, ApiError) as exc:
        _say(f"error: {exc}")
        return 1
    if job["status"] != "completed" or failed:
        failed_as = FAILED_AS if kept == FLOAT else FAILED_AS_QUANTIZED
        _say(f"job {job_id} ended {job['status']}; {failed} of {job['request_counts']['total']} inputs failed "
             f"(written as {failed_as[suffix]}) to {args.output}")
        return 3
    _say(f"wrote {job['request_counts']['total']} embeddings to {args.output}")
    return 0


def reattach_command(args: argparse.Namespace, job_id: str) -> str:
    """The command line that picks the job up again."""
    words = ["embedserve", "embed", "-o", args.output, "--job", job_id]
    if args.url != defaults.EMBED_CLI_URL:
        words += ["--url", args.url]
    return shlex.join(words)


def wait(client: Client, job_id: str) -> dict:
    """Poll the job until it ends, drawing progress on stderr; the poll interval grows to a bound."""
    interval, started, first_done = defaults.EMBED_CLI_POLL_MIN_S, time.monotonic(), None
    while True:
        job = retrying(lambda: client.request("GET", f"/v1/jobs/{job_id}"), "poll")
        counts = job["request_counts"]
        done = counts["completed"] + counts["failed"]
        if first_done is None:
            first_done = done
        progress(job_id, job["status"], done, counts["total"], done - first_done, time.monotonic() - started)
        if job["status"] in FINISHED:
            _end_progress()
            return job
        time.sleep(interval)
        interval = min(interval * 1.5, defaults.EMBED_CLI_POLL_MAX_S)


def progress(job_id: str, status: str, done: int, total: int, gained: int, elapsed: float) -> None:
    """One progress line: bar, done/total, rate and ETA (rate from what this process saw finish)."""
    width = 30
    filled = width * done // total if total else width
    rate = gained / elapsed if elapsed > 0 else 0.0
    eta = f"{(total - done) / rate:.0f}s" if rate > 0 else "?"
    line = f"{job_id} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {rate:.0f}/s ETA {eta} {status}"
    _line.draw(line)


class ProgressLine:
    """A status line on `stream` (sys.stderr when None, looked up at each call).

    A terminal gets one line redrawn in place: padded with spaces over whatever the previous,
    longer, line left (plain spaces rather than an erase escape, so any terminal shows it) and
    cut to the terminal's width, because a wrapped line cannot be redrawn (a carriage return
    reaches only the start of its last row). A pipe or log gets one plain line per update.
    """

    def __init__(self, stream=None, columns: int | None = None):
        self._stream = stream
        self._columns = columns
        self._shown = 0  # characters of the line now on screen (0: none drawn, cursor at column 0)

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stderr

    def draw(self, line: str) -> None:
        stream = self.stream
        if not stream.isatty():
            print(line, file=stream, flush=True)
            return
        columns = self._columns or _terminal_columns(stream)
        line = line[:max(1, columns - 1)]  # the last column would wrap on some terminals
        # The cursor is left at column 0, so a line that ends the program is overwritten, not appended to.
        stream.write(line.ljust(self._shown) + "\r")
        stream.flush()
        self._shown = len(line)

    def say(self, message: str) -> None:
        """A message on a line of its own, after blanking the progress line (redrawn by the next update)."""
        stream = self.stream
        if self._shown:
            stream.write(" " * self._shown + "\r")
            self._shown = 0
        print(message, file=stream, flush=True)

    def finish(self) -> None:
        """Keep the last line on screen and move below it."""
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = 0


def _terminal_columns(stream) -> int:
    """The width of the terminal `stream` writes to (stdout may be redirected while stderr is not)."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):  # no descriptor (a wrapped stream): COLUMNS or the default
        columns = shutil.get_terminal_size().columns
    return columns or 80


# The one progress line of this process; _say goes through it so messages never land inside it.
_line = ProgressLine()


def _end_progress() -> None:
    _line.finish()


def _say(message: str) -> None:
    _line.say(f"embedserve embed: {message}")


class Client:
    """The few calls the command makes, with OpenAI-shaped errors turned into one line."""

    def __init__(self, url: str, api_key: str | None):
        self.base = url.rstrip("/")
        self.api_key = api_key

    def submit(self, source: Source, args: argparse.Namespace) -> dict:
        """Upload the input file, then POST /v1/jobs with its id and the options given.

        The uploaded file is deleted once the job holds its inputs (or was refused): the job's
        chunks are cut from it at submission. Neither call is retried: a lost answer to a retried
        submission would leave a second job running.
        """
        file_id = self.upload(source)["id"]
        body: dict = {"input_file_id": file_id}
        for name in ("model", "dimensions", "input_type", "instruction", "embedding_type", "truncation_direction",
                     "long_input", "window_overlap"):
            if getattr(args, name) is not None:
                body[name] = getattr(args, name)
        if args.truncate:
            body["truncate"] = True
        try:
            return self.request("POST", "/v1/jobs", body)
        finally:
            try:
                self.request("DELETE", f"/v1/files/{file_id}")
            except ApiError:
                pass  # it expires on its own

    def upload(self, source: Source) -> dict:
        """POST /v1/files (purpose user_data), the multipart body streamed from the file with a Content-Length."""
        boundary = "embedserve-" + os.urandom(12).hex()
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nuser_data\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{source.upload_name}\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()

        def body():
            yield head
            yield from upload_blocks(source)
            yield tail

        return self.request("POST", "/v1/files", data=body(), length=len(head) + source.length + len(tail),
                            content_type=f"multipart/form-data; boundary={boundary}")

    def request(self, method: str, path: str, body: dict | None = None, *, data=None, length: int | None = None,
                content_type: str = "application/json") -> dict:
        """One call answered with JSON; returns the decoded body. `data`: a raw body (an iterable of bytes
        with its `length`) instead of `body` as JSON."""
        if body is not None:
            data = json.dumps(body).encode()
        with self.open(path, method=method, data=data, length=length, content_type=content_type) as response:
            try:
                return json.load(response)
            except (OSError, http.client.HTTPException) as exc:
                raise ApiError(f"the connection to {self.base} broke ({exc})", transient=True) from None

    def download(self, path: str, accept: str, output: str) -> int:
        """Stream a result into `output` (written whole or not at all); returns failed inputs."""
        with self.open(path, accept=accept) as response:
            try:
                return write_output(response, output)
            except (OSError, http.client.HTTPException, IncompleteResult) as exc:
                raise ApiError(f"the download from {self.base} broke ({exc})", transient=True) from None

    def open(self, path: str, *, method: str = "GET", data=None, accept: str = "application/json",
             length: int | None = None, content_type: str = "application/json"):
        """The open response (a stream), or ApiError with the server's message."""
        headers = {"Accept": accept}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if data is not None:
            headers["Content-Type"] = content_type
        if length is not None:  # an iterable body: sent as it is produced, not chunked
            headers["Content-Length"] = str(length)
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            return urllib.request.urlopen(req, timeout=defaults.EMBED_CLI_HTTP_TIMEOUT_S)
        except urllib.error.HTTPError as exc:
            raise ApiError(_error_line(exc), transient=exc.code >= 500) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(f"cannot reach {self.base} ({reason}); is the server running? (--url / EMBED_URL)",
                           transient=True) from None


def _error_line(exc: urllib.error.HTTPError) -> str:
    """`HTTP 401 invalid_api_key: message` from an OpenAI-shaped error body, or the raw status."""
    raw = exc.read()[:4096]
    try:
        error = json.loads(raw)["error"]
        code = f" {error['code']}" if error.get("code") else ""
        return f"HTTP {exc.code}{code}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {exc.code}: {raw.decode(errors='replace').strip()[:200] or exc.reason}"

