from __future__ import annotations

import datetime as dt

import pytest

T0 = dt.datetime(2025, 9, 1, 6, 0, tzinfo=dt.UTC)


class StepClock:
    """An injected clock: each read is one second after the previous one."""

    def __init__(self, start: dt.datetime = T0) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(seconds=1)
        return self.now


@pytest.fixture
def clock() -> StepClock:
    return StepClock()
