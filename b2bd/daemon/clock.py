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
    """A clock that only moves when told to (``advance``), or — with ``auto_advance`` — when the
    loop waits: waiting with nothing to wake it then jumps straight to the end of the timeout.
    For in-process tests."""

    def __init__(self, start: dt.datetime, *, auto_advance: bool = False) -> None:
        self._now = start.astimezone(dt.UTC)
        self._lock = threading.Lock()
        self.auto_advance = auto_advance

    def now(self) -> dt.datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += dt.timedelta(seconds=seconds)

    def wait(self, event: Waker, timeout: float) -> bool:
        # Give worker threads a moment of real time to make progress, then jump ahead.
        if event.wait(0.01 if self.auto_advance else 0.05):
            return True
        if self.auto_advance:
            self.advance(max(timeout, 0.0))
        return event.is_set()


def clock_from_environment() -> Clock:
    start = os.environ.get("B2BD_CLOCK_START")
    if start:
        return ShiftedClock(dt.datetime.fromisoformat(start.replace("Z", "+00:00")))
    return SystemClock()
