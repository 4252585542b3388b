"""The forward thread's time split between sync and bulk passes (worker/forward_share.py), on a fake clock."""

from __future__ import annotations

import math

import pytest

from worker.forward_share import ForwardShare

INTERACTIVE, BULK = 0, 1


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bulk_is_owed_only_below_its_floor():
    clock = Clock()
    share = ForwardShare(0.25, tau_s=5.0, clock=clock)
    assert not share.bulk_owed()  # nothing ran yet: nothing to make up for
    share.charge(INTERACTIVE, 1.0)
    assert share.bulk_owed() and share.bulk_fraction() == 0.0
    share.charge(BULK, 0.2)  # 0.2 of 1.2 = 17 %
    assert share.bulk_owed()
    share.charge(BULK, 0.2)  # 0.4 of 1.4 = 29 %
    assert not share.bulk_owed()
    assert share.bulk_fraction() == pytest.approx(0.4 / 1.4)


def test_old_time_fades_so_the_share_follows_the_current_load():
    clock = Clock()
    share = ForwardShare(0.1, tau_s=5.0, clock=clock)
    share.charge(BULK, 100.0)  # a long job alone earns no lasting credit against later sync traffic
    clock.now += 30.0  # six time constants: 100 s of bulk fades to 0.25 s
    share.charge(INTERACTIVE, 3.0)
    assert share.bulk_fraction() == pytest.approx(100 * math.exp(-6) / (100 * math.exp(-6) + 3.0))
    assert share.bulk_owed()


def test_a_zero_floor_never_owes_bulk():
    share = ForwardShare(0.0, clock=Clock())
    share.charge(INTERACTIVE, 10.0)
    assert not share.bulk_owed()
