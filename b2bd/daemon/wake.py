"""Waking the daemon loop, safely from anywhere — a signal handler included.

A ``threading.Event`` cannot be set from a signal handler: Python runs the handler on the main
thread between bytecodes, possibly while that thread is inside ``Event.wait`` holding the
event's internal lock, and ``set`` would then wait for that lock forever (seen as a daemon that
never stops on SIGTERM). A self-pipe needs no lock: ``set`` is one non-blocking ``write``, and
the loop waits in ``select``, which a signal interrupts and which then sees the byte.
"""

from __future__ import annotations

import contextlib
import os
import select


class Waker:
    """The same small interface as ``threading.Event``: set, clear, is_set, wait."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def set(self) -> None:
        # A full pipe is readable already: nothing more to do.
        with contextlib.suppress(BlockingIOError):
            os.write(self._write, b"\0")

    def is_set(self) -> bool:
        return self.wait(0)

    def wait(self, timeout: float | None = None) -> bool:
        ready, _, _ = select.select([self._read], [], [], timeout)
        return bool(ready)

    def clear(self) -> None:
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass

    @property
    def write_fd(self) -> int:
        """For ``signal.set_wakeup_fd``: the C-level handler writes here at once, whichever
        thread the kernel delivered the signal to. Without it a signal taken by another thread
        leaves the main thread asleep in ``select`` until its timeout, and only then runs the
        Python-level handler."""
        return self._write
