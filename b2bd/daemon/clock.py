"""Time for the daemon loop, injectable so clock-driven behaviour is tested without sleeping."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from typing import Protocol

from b2bd.daemon.wake import Waker


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current aware UTC time."""
        ...

    def wait(self, event: Waker, timeout: float) -> bool:
        """Block until ``event`` is set or ``timeout`` seconds pass; True when set."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def wait(self, event: Waker, timeout: float) -> bool:
        return event.wait(max(timeout, 0.0))


class ShiftedClock(SystemClock):
    """Real time flowing from a chosen start instant: the wall clock as if it had read
    ``start`` when this object was made. Used through ``B2BD_CLOCK_START`` by the tests that
    run the daemon as a subprocess around a chosen instant (a clock change, a slot)."""

    def __init__(self, start: dt.datetime) -> None:
        self._start = start.astimezone(dt.UTC)
        self._t0 = time.monotonic()

    def now(self) -> dt.datetime:
        return self._start + dt.timedelta(seconds=time.monotonic() - self._t0)


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


def clock_from_environment() -> Clock:
    start = os.environ.get("B2BD_CLOCK_START")
    if start:
        return ShiftedClock(dt.datetime.fromisoformat(start.replace("Z", "+00:00")))
    return SystemClock()
