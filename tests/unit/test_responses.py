"""Response building without a server: the order of a rerank's results."""

from __future__ import annotations

from api.responses import ranked


def test_ranked_orders_by_score_then_input_order():
    scores = [0.2, 0.9, 0.2, 0.5]
    assert ranked(scores, None) == [1, 3, 0, 2]
    assert ranked(scores, 2) == [1, 3]
    assert ranked(scores, 10) == [1, 3, 0, 2]
