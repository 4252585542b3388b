"""Deterministic mixed-length English texts, so every run and every contender sees the same input."""

from __future__ import annotations

import random

# Common English words; sentences built from them tokenize like ordinary prose (~1.2 tokens/word).
_WORDS = """the of and to in is was that for on as with by he at from his an were are which this be
have or had not but what all when we there can been one would their more if has will some who
so out them time two may then do first any my now such like our over man me even most made
after also did many before must through back years where much your way well down should because
each just those people how too little state good very make world still own see men work long get
here between both life being under never day same another know while last might us great old year
off come since against go came right used take three small house public city water morning school
market river country question report number system program company night government market study
book story child family service point area hand week group problem fact money power community
music village garden letter window island engineer doctor teacher student museum library bridge
train station weather summer winter autumn spring ocean mountain forest desert valley harbour
council election budget policy science history language research machine network software data
model energy climate health hospital medicine patient kitchen recipe bread coffee breakfast dinner
travel journey holiday festival football match player season record league coach stadium audience
quickly slowly carefully quietly finally recently usually often rarely almost nearly really simply
new large young important different early public able bad best better sure free clear full special
easy strong certain open whole short hard late real local low single private main major general
says said found gave told asked turned showed became built opened closed moved wrote read learned
""".split()
# Share of texts per length class (words): many short queries, some paragraphs, a few long passages.
_LENGTH_CLASSES = ((0.50, 4, 16), (0.35, 20, 60), (0.15, 80, 150))


def _sentence(rng: random.Random, words: int) -> str:
    body = " ".join(rng.choice(_WORDS) for _ in range(words))
    return body[0].upper() + body[1:] + rng.choice(".!?.")


def _text(rng: random.Random, words: int) -> str:
    parts, left = [], words
    while left > 0:
        n = min(left, rng.randint(5, 18))
        parts.append(_sentence(rng, n))
        left -= n
    return " ".join(parts)


def mixed_texts(count: int, seed: int = 1234) -> list[str]:
    """`count` texts of mixed length (4..150 words), the same for the same seed."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        roll, acc = rng.random(), 0.0
        for share, low, high in _LENGTH_CLASSES:  # noqa: B007 - read after the loop breaks
            acc += share
            if roll <= acc:
                break
        out.append(_text(rng, rng.randint(low, high)))
    return out


def short_texts(count: int, seed: int = 99) -> list[str]:
    """Single-sentence texts (6..14 words) for latency probes."""
    rng = random.Random(seed)
    return [_sentence(rng, rng.randint(6, 14)) for _ in range(count)]
