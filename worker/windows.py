"""Windows of a long input: where a text longer than the model's maximum is cut, and how its windows'
vectors become one (`long_input` mean and windows, docs/api.md "Long inputs").

Pure functions: the tokenizer comes in as the character offsets of the text's own tokens and an
`encode(span)` callback that gives a span's ids as the model is fed them (prompt and special tokens
included). Each window is embedded as its span of the text, re-encoded alone, so a window's vector is
exactly that span's as a request of its own would get it; the offsets only say where to cut.

A window holds at most `room` of the text's tokens (the model's maximum less the prompt and special
tokens). It ends at a sentence end, else a word end, found in its last TAIL_FRACTION; else it is cut
at `room` tokens, mid-word. The next one starts `overlap` tokens before that end, moved back to the
start of its word (so neighbours share at least `overlap` tokens, never a piece of a word).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from embedserve.errors import InvalidRequest

# The share of a window's end within which it may stop early at a sentence or word boundary: a window
# is never shorter than 1 - TAIL_FRACTION of its room unless the text ends first.
TAIL_FRACTION = 0.25
# What ends a sentence, as the last non-space character before a boundary (Latin and CJK full stops).
SENTENCE_ENDS = frozenset(".!?;:\u3002\uff01\uff1f\u2026")


@dataclass(frozen=True)
class Window:
    """One window of an input: its character span [text_start, text_end) and the ids of that span as fed."""

    text_start: int
    text_end: int
    row: list[int]

    @property
    def tokens(self) -> int:
        return len(self.row)


def boundaries(text: str, offsets: list[tuple[int, int]]) -> tuple[list[bool], list[bool]]:
    """For each token: whether a word starts with it, and whether a sentence does (a cut may fall before it).

    A word starts where white space comes before the token (or the token begins with it, as byte-level
    BPE's " word" does); a sentence where, in addition, the text before that space ends a sentence or
    the space holds a line break.
    """
    words, sentences = [], []
    # The text is scanned once, left to right: `last` is the last non-space character and `newline` the last
    # line break before `scanned`. Looking back from each token instead was quadratic over a run of white
    # space that byte-level BPE splits into many tokens (20k of them: minutes).
    scanned, last, newline = 0, -1, -1
    for i, (start, end) in enumerate(offsets):
        # The white space before the token's text: between the last non-space character and the token's
        # first non-space one (byte-level BPE tokens carry their leading space).
        first = start
        while first < end and text[first].isspace():
            first += 1
        if first >= scanned:
            piece = text[scanned:first]
            kept = piece.rstrip()
            if kept:
                last = scanned + len(kept) - 1
            if (at := piece.rfind("\n")) >= 0:
                newline = scanned + at
            scanned = first
            before, broken = last, newline > last
        else:  # offsets that go back (not seen from a fast tokenizer): look back from this token alone
            before = start - 1
            while before >= 0 and text[before].isspace():
                before -= 1
            broken = "\n" in text[before + 1:first]
        if i == 0:
            words.append(True)
            sentences.append(True)
            continue
        word = before + 1 < first or (start > offsets[i - 1][1])
        sentence = word and (broken or (before >= 0 and text[before] in SENTENCE_ENDS))
        words.append(word)
        sentences.append(sentence)
    return words, sentences


def window_end(start: int, room: int, total: int, words: list[bool], sentences: list[bool]) -> int:
    """Where a window starting at token `start` with `room` tokens ends (exclusive): the text's end when it
    fits, else the last sentence boundary in its last TAIL_FRACTION, else the last word boundary there,
    else `start + room`."""
    hard = start + room
    if hard >= total:
        return total
    lowest = start + max(1, int(room * (1 - TAIL_FRACTION)))
    for marks in (sentences, words):
        for end in range(hard, lowest - 1, -1):
            if marks[end]:
                return end
    return hard


def next_start(start: int, end: int, overlap: int, room: int, words: list[bool]) -> int:
    """Where the window after [start, end) starts: `overlap` tokens before `end`, back to its word's start
    (at most TAIL_FRACTION of a window further back), and always after `start`."""
    at = max(start + 1, end - overlap)
    lowest = max(start + 1, at - int(room * TAIL_FRACTION))
    for candidate in range(at, lowest - 1, -1):
        if words[candidate]:
            return candidate
    return at


def split(text: str, offsets: list[tuple[int, int]], *, limit: int, room: int, overlap: int, max_windows: int,
          encode: Callable[[str], list[int]], index: int = 0) -> list[Window]:
    """The windows of `text` (its tokens' character `offsets`), each encoded within `limit` ids.

    `room` is the text tokens a window may hold; a window whose span encodes to more than `limit` ids
    alone (re-encoding at a boundary may merge differently) is made shorter by the excess and encoded
    again. The first window starts at character 0 and the last ends at the text's end, so together
    they cover it all. More than `max_windows` windows: 400 too_many_windows (`index` names the input).
    """
    total = len(offsets)
    if room < 1:
        raise no_room(index, limit)
    if total > max_windows * max(1, room - overlap) + overlap:  # certainly too many: refused before any encoding
        raise too_many_windows(index, max_windows, room)
    words, sentences = boundaries(text, offsets)
    windows: list[Window] = []
    start = 0
    while True:
        budget = room
        while True:
            end = window_end(start, budget, total, words, sentences)
            char_start = 0 if start == 0 else offsets[start][0]
            char_end = len(text) if end == total else offsets[end - 1][1]
            row = encode(text[char_start:char_end])
            if len(row) <= limit:
                break
            budget = (end - start) - (len(row) - limit)
            if budget < 1:  # the prompt and special tokens alone fill the model
                raise no_room(index, limit)
        windows.append(Window(char_start, char_end, row))
        if end >= total:
            return windows
        if len(windows) >= max_windows:
            raise too_many_windows(index, max_windows, room)
        start = next_start(start, end, overlap, budget, words)


def no_room(index: int, limit: int) -> InvalidRequest:
    """The refusal of an input whose prompt and special tokens alone fill the model."""
    return InvalidRequest(f"input[{index}]: the prompt leaves no room for text within the model's "
                          f"maximum of {limit} tokens", param="input", code="context_length_exceeded")


def too_many_windows(index: int, max_windows: int, room: int) -> InvalidRequest:
    """The refusal of an input that needs more windows than EMBED_MAX_WINDOWS allows."""
    return InvalidRequest(f"input[{index}] needs more than {max_windows} windows of {room} tokens "
                          f"(EMBED_MAX_WINDOWS); split the document, or send \"long_input\": \"truncate\".",
                          param="input", code="too_many_windows")


def combine(vectors: np.ndarray, weights: list[int]) -> np.ndarray:
    """One input's vector from its windows' (rows of `vectors`): their mean weighted by `weights`
    (each window's tokens), L2-normalized again."""
    w = np.asarray(weights, dtype=np.float64)
    mean = (vectors.astype(np.float64) * (w / w.sum())[:, None]).sum(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
