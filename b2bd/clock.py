"""Time, injectable so clock-driven behaviour is tested without sleeping: the one place for it.

- :func:`utc_now` and :data:`Now` (a function returning the aware UTC time): what the journal,
  the engine and the connectors take as their ``clock``;
- :class:`Clock`: what the daemon loop takes, a time that can also be waited on
  (:class:`SystemClock`, or :class:`ShiftedClock` through ``B2BD_CLOCK_START``).

Test clocks (``ManualClock``, ``StepClock``) live in ``tests/support/clocks.py``.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from typing import Protocol

Now = Callable[[], dt.datetime]
"""A clock as a plain function: the current aware UTC time."""


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Waker(Protocol):
    """What a :class:`Clock` waits on (:class:`b2bd.daemon.wake.Waker`)."""

    def wait(self, timeout: float | None = None) -> bool: ...


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current aware UTC time."""
        ...

    def wait(self, event: Waker, timeout: float) -> bool:
        """Block until ``event`` is set or ``timeout`` seconds pass; True when set."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return utc_now()

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


def clock_from_environment() -> Clock:
    start = os.environ.get("B2BD_CLOCK_START")
    if start:
        return ShiftedClock(dt.datetime.fromisoformat(start.replace("Z", "+00:00")))
    return SystemClock()
