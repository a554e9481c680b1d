"""Test clocks: time that moves only when a test says so (never sleep in a test).

- :class:`ManualClock`: a :class:`b2bd.clock.Clock` for the daemon loop in-process;
- :class:`StepClock`: a :data:`b2bd.clock.Now` for the journal and the engine, one second a read.
"""

from __future__ import annotations

import datetime as dt
import threading

from b2bd.clock import Waker

T0 = dt.datetime(2025, 9, 1, 6, 0, tzinfo=dt.UTC)


class StepClock:
    """An injected clock: each read is one second after the previous one."""

    def __init__(self, start: dt.datetime = T0) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(seconds=1)
        return self.now


class ManualClock:
    """A clock that only moves when told to (``advance``); waiting never moves it. For
    in-process tests, which move time and then wake the loop."""

    def __init__(self, start: dt.datetime) -> None:
        self._now = start.astimezone(dt.UTC)
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += dt.timedelta(seconds=seconds)

    def wait(self, event: Waker, timeout: float) -> bool:
        # A short real wait: the loop turns often enough to see time the test has moved.
        return event.wait(0.05)
