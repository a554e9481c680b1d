"""Watching the config dir: filesystem events only mark it dirty.

The whole directory tree is watched, not single files: editors save by writing a temp file and
renaming it over the old one, ``git checkout`` rewrites files, and Kubernetes ConfigMaps swap a
``..data`` symlink — a watch on a file would lose track after any of these. No event is trusted
to say *what* changed: the daemon rescans everything after a quiet period and compares content
hashes (level-triggered), so duplicate, missing or odd events (moves, overflows) cannot cause a
wrong reload, only an early or a redundant rescan.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    DirAttribEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from b2bd.daemon.wake import Waker

CHANGES: list[type[FileSystemEvent]] = [
    FileCreatedEvent, DirCreatedEvent, FileDeletedEvent, DirDeletedEvent, FileMovedEvent,
    DirMovedEvent, FileModifiedEvent, DirModifiedEvent, FileClosedEvent, FileAttribEvent,
    DirAttribEvent,
]  # fmt: skip
"""Every event but the reads (opened, closed_no_write). Left out of the inotify mask, not just
ignored: every rescan opens and closes every config file, and each of those reads would
otherwise be queued by the kernel and passed through the observer's threads, competing with
the rescan itself for the GIL (with 2,000 files, reading and hashing them took twice as long)."""


class _MarkDirty(FileSystemEventHandler):
    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return  # reads, including our own rescans, change nothing
        self._on_change()


class ConfigWatcher:
    """Owns the watchdog observer thread; ``ensure_running`` restarts it if it died.

    ``changed_at`` is the monotonic time of the latest event (None when clean); the daemon
    loop reads it to wait for a quiet period before rescanning.
    """

    def __init__(self, root: Path, wake: Waker) -> None:
        self.root = root
        self._wake = wake
        self._lock = threading.Lock()
        self._changed_at: float | None = None
        self._observer: BaseObserver | None = None
        self.restarts = 0

    def _on_change(self) -> None:
        with self._lock:
            self._changed_at = time.monotonic()
        self._wake.set()

    @property
    def changed_at(self) -> float | None:
        with self._lock:
            return self._changed_at

    def clear(self, seen: float | None) -> None:
        """Forget events up to ``seen`` (a later event keeps the dir dirty)."""
        with self._lock:
            if self._changed_at == seen:
                self._changed_at = None

    def start(self) -> None:
        observer = Observer()
        observer.schedule(
            _MarkDirty(self._on_change), str(self.root), recursive=True, event_filter=CHANGES
        )
        observer.daemon = True
        observer.start()
        self._observer = observer

    def alive(self) -> bool:
        return self._observer is not None and self._observer.is_alive()

    def ensure_running(self) -> bool:
        """Restart a dead observer thread; True when a restart happened. A restart marks the
        dir dirty, since events may have been lost while it was down."""
        if self.alive():
            return False
        self.stop()
        self.start()
        self.restarts += 1
        self._on_change()
        return True

    def stop(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            if observer.is_alive():
                observer.join(timeout=5)
