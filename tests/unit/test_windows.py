"""The long-input splitter (worker/windows.py) on texts tokenized by a regex: where windows start and end."""

from __future__ import annotations

import random
import re
import time

import numpy as np
import pytest

from embedserve.errors import InvalidRequest
from worker.windows import boundaries, combine, split

TOKEN = re.compile(r"\w+|[^\w\s]")
SPECIALS = 2  # what encode() adds around a span, as [CLS] and [SEP] do


def offsets(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in TOKEN.finditer(text)]


def encode(span: str) -> list[int]:
    return list(range(len(offsets(span)) + SPECIALS))


def windows_of(text: str, room: int, overlap: int, max_windows: int = 100):
    return split(text, offsets(text), limit=room + SPECIALS, room=room, overlap=overlap, max_windows=max_windows,
                 encode=encode)


def sentences(n: int) -> str:
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"]
    return " ".join(" ".join(words[(i + j) % 7] for j in range(3 + i % 5)).capitalize() + "." for i in range(n))


def test_boundaries_mark_words_and_sentences():
    text = "One two. Three,four\nfive"
    words, ends = boundaries(text, offsets(text))
    tokens = [text[s:e] for s, e in offsets(text)]
    assert tokens == ["One", "two", ".", "Three", ",", "four", "five"]
    assert words == [True, True, False, True, False, False, True]
    assert ends == [True, False, False, True, False, False, True]  # after "." and at the line break


@pytest.mark.parametrize("room,overlap", [(12, 0), (12, 3), (20, 5), (9, 4)])
def test_windows_cover_the_text_in_order_with_the_overlap(room, overlap):
    text = sentences(30)
    windows = windows_of(text, room, overlap)
    assert windows[0].text_start == 0 and windows[-1].text_end == len(text)
    for before, after in zip(windows, windows[1:]):
        assert before.text_start < after.text_start and before.text_end < after.text_end
        if overlap:
            assert after.text_start < before.text_end
            assert len(offsets(text[after.text_start:before.text_end])) >= overlap
        else:  # neighbours meet: only the white space between them is in neither
            assert text[before.text_end:after.text_start].strip() == ""
        assert not text[after.text_start - 1].isalnum()  # a window starts at a word's start
    for window in windows:
        assert window.tokens <= room + SPECIALS
        assert window.row == encode(text[window.text_start:window.text_end])  # each is its span, encoded alone


def test_a_window_ends_at_a_sentence_in_its_last_quarter():
    text = "a b c d e f g h i j k l m n o. p q r s t u v w x y z"
    windows = windows_of(text, room=18, overlap=2)
    assert text[:windows[0].text_end].endswith("o.")  # 16 tokens: the sentence end beats the word at 18


def test_a_window_ends_at_a_word_when_no_sentence_ends_near():
    text = "aaa bbb ccc ddd eee fff ggg-hhh-iii jjj"
    windows = windows_of(text, room=8, overlap=0)  # 8 tokens end inside "ggg-hhh-iii": the window stops before it
    assert text[:windows[0].text_end] == "aaa bbb ccc ddd eee fff"
    assert text[windows[1].text_start:windows[1].text_end] == "ggg-hhh-iii jjj"


def test_without_a_boundary_a_window_is_cut_at_its_room():
    text = "-".join(["x"] * 40)  # one long "word" of 79 tokens
    windows = windows_of(text, room=10, overlap=2)
    assert all(w.tokens == 10 + SPECIALS for w in windows[:-1])
    assert windows[-1].text_end == len(text)


def test_a_span_that_encodes_longer_is_made_shorter():
    text = sentences(10)

    def merging(span: str) -> list[int]:  # one id more than the regex counts: re-encoding "merges" worse
        return list(range(len(offsets(span)) + SPECIALS + 1))

    windows = split(text, offsets(text), limit=14, room=12, overlap=2, max_windows=100, encode=merging)
    assert all(w.tokens <= 14 for w in windows) and windows[-1].text_end == len(text)


def test_more_than_max_windows_is_refused():
    text = sentences(40)
    needed = len(windows_of(text, room=12, overlap=2))
    assert len(windows_of(text, room=12, overlap=2, max_windows=needed)) == needed
    with pytest.raises(InvalidRequest) as refused:
        windows_of(text, room=12, overlap=2, max_windows=needed - 1)
    assert refused.value.code == "too_many_windows" and refused.value.param == "input"


def test_far_too_long_is_refused_before_encoding():
    text = "word " * 10_000
    calls = []
    with pytest.raises(InvalidRequest):
        split(text, offsets(text), limit=12, room=10, overlap=2, max_windows=4,
              encode=lambda span: calls.append(span) or encode(span))
    assert calls == []


def test_combine_is_the_token_weighted_mean_renormalized():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    out = combine(vectors, [3, 1])
    assert np.allclose(out, np.array([3.0, 1.0]) / np.sqrt(10.0), atol=1e-7)
    assert out.dtype == np.float32


def _boundaries_by_rescanning(text, offsets):
    """The rule boundaries() implements, looking back from every token (quadratic over runs of white space)."""
    words, sentences = [True], [True]
    for i, (start, end) in enumerate(offsets[1:], 1):
        first = start
        while first < end and text[first].isspace():
            first += 1
        last = start - 1
        while last >= 0 and text[last].isspace():
            last -= 1
        space = text[last + 1:first]
        word = bool(space) or start > offsets[i - 1][1]
        words.append(word)
        sentences.append(word and ("\n" in space or (last >= 0 and text[last] in ".!?;:\u3002\uff01\uff1f\u2026")))
    return words, sentences


@pytest.mark.parametrize("seed", range(20))
def test_boundaries_follow_the_rule_on_any_text(seed):
    rng = random.Random(seed)
    pieces = ["a", "bc", " ", "  ", "\n", ".", "\u3002", "\u00e9t\u00e9", "\U0001f600", " x", "\t", "!"]
    text = "".join(rng.choice(pieces) for _ in range(300))
    # Tokens of 1-3 characters, white space included (as byte-level BPE has), some sharing a character.
    spans, at = [], 0
    while at < len(text):
        n = rng.randint(1, 3)
        spans.append((at, min(len(text), at + n)))
        if rng.random() < 0.1:
            spans.append(spans[-1])  # two tokens of one character's bytes
        at += n
    assert boundaries(text, spans) == _boundaries_by_rescanning(text, spans)


def test_boundaries_are_linear_over_white_space_tokens():
    """Byte-level BPE tokenizes runs of spaces into tokens: looking back from each over the whole run
    took minutes for a few hundred kB (20k such tokens: ~100 s before), in the worker's request thread."""
    text = " " * 8 * 20_000
    spans = [(8 * i, 8 * i + 8) for i in range(20_000)]
    started = time.perf_counter()
    words, sentences = boundaries(text, spans)
    assert time.perf_counter() - started < 5
    assert all(words) and sentences == [True] + [False] * (len(spans) - 1)


@pytest.mark.parametrize("room", [0, -3])
def test_a_prompt_that_fills_the_model_is_refused_as_such_not_as_too_many_windows(room):
    """A Qwen3 instruction as long as the model leaves no room for text: the refusal says so (it said the
    text needs more than EMBED_MAX_WINDOWS windows "of -3 tokens")."""
    text = "word " * 500
    with pytest.raises(InvalidRequest) as refused:
        split(text, offsets(text), limit=8, room=room, overlap=0, max_windows=4, encode=encode)
    assert refused.value.code == "context_length_exceeded" and "no room" in str(refused.value)
