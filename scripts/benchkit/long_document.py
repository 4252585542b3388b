"""A long document beside sync clients: do `long_input` windows stall other requests?

N single-text clients measure their latencies with the stack idle, then again while one more
client embeds a document of about 64 windows (`long_input: mean`) back to back. The issue's
figure is the loaded p99 against the idle p99 (within 2x is the goal): the document's windows
go through the batcher as ordinary rows, so they share passes rather than taking one huge one.
"""

from __future__ import annotations

import itertools
import json
import threading
import time

from scripts.benchkit.load import Client, Target, sequential, summary

WORDS = ("river stone music bridge piano water song boat concert guitar light house garden morning city road "
         "winter summer paper window story").split()
# Words a window holds: MiniLM's 256 tokens less [CLS]/[SEP] and the default overlap of 32, less what ending
# at sentences costs; one of these words is one token.
WORDS_PER_WINDOW = 190


def document(windows: int) -> str:
    """Plain sentences of 6 to 14 one-token words, about `windows` windows of MiniLM long."""
    words = itertools.cycle(WORDS)
    sentences, count, i = [], 0, 0
    while count < windows * WORDS_PER_WINDOW:
        n = 6 + (i * 5) % 9
        sentences.append(" ".join(next(words) for _ in range(n)).capitalize() + ".")
        count, i = count + n, i + 1
    return " ".join(sentences)


def windows_of(target: Target, text: str) -> int:
    """How many windows the stack cuts `text` into."""
    client = Client(target)
    try:
        body = json.dumps({"model": target.model, "input": text, "long_input": "windows"}).encode()
        status, _, data = client.request("POST", target.path, body)
        if status != 200:
            raise RuntimeError(f"the document was refused: HTTP {status}: {data[:300]!r}")
        return len(json.loads(data)["data"][0]["windows"])
    finally:
        client.close()


def clients_latencies(target: Target, probes: list[str], clients: int) -> list[float]:
    """`clients` threads, each sending all of `probes` one by one; every latency, in seconds."""
    out: list[float] = []
    lock = threading.Lock()

    def run() -> None:
        latencies = sequential(target, probes)
        with lock:
            out.extend(latencies)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


def measure(target: Target, probes: list[str], clients: int, windows: int) -> dict:
    """Idle and loaded latency summaries of `clients` sync clients, the p99 ratio, and the document's figures."""
    text = document(windows)
    cut = windows_of(target, text)
    idle = summary(clients_latencies(target, probes, clients))
    stop = threading.Event()
    documents: list[float] = []
    doc_target = Target(target.name, target.base_url, target.path, target.api_key, target.model,
                        extra={"long_input": "mean"})

    def embed_documents() -> None:
        client = Client(doc_target, timeout=600)
        try:
            while not stop.is_set():
                started = time.perf_counter()
                client.embed([text])
                documents.append(time.perf_counter() - started)
        finally:
            client.close()

    background = threading.Thread(target=embed_documents)
    background.start()
    try:
        time.sleep(0.5)  # the first document's windows are queued before the clients measure
        loaded = summary(clients_latencies(target, probes, clients))
    finally:
        stop.set()
        background.join()
    return {"windows": cut, "idle": idle, "loaded": loaded, "p99_ratio": loaded["p99_ms"] / idle["p99_ms"],
            "documents": len(documents), "document_mean_s": sum(documents) / max(1, len(documents))}
