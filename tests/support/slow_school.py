"""A school that answers slowly, for tests of transfers caught mid-read: the real
:class:`~b2bd.connectors.directory.DirectorySource` over the real folder, except that reading
pupils first waits until the test lets it go. Installed in this process with the
:func:`slow_schools` fixture, in a daemon subprocess with
``tests.support.daemon.start_daemon(..., slow=True)``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from b2bd.config.model import Endpoint, Settings
from b2bd.connectors.source import Deadline, Manifest, Source, no_deadline
from b2bd.connectors.table import SOURCES
from b2bd.records import Record, Rejection
from b2bd.records.model import RecordKind

SLOW = ".slow"
WAITING = ".waiting"


class SlowSchool:
    """A school whose export answers slowly: the real :class:`DirectorySource` over the real
    folder, except that reading pupils first waits (creating ``.waiting`` in the folder) until
    the test deletes ``.waiting`` (:func:`release`). This stands in for a slow network share or
    MIS (a FIFO no longer can: the connector refuses FIFOs, as it must)."""

    def __init__(self, source: Source, folder: Path) -> None:
        self.source = source
        self.folder = folder

    def manifest(self, *, deadline: Deadline = no_deadline) -> Manifest:
        return self.source.manifest(deadline=deadline)

    def read(
        self, kind: RecordKind, since: str | None = None, *, deadline: Deadline = no_deadline
    ) -> Iterator[tuple[bytes, Record | Rejection]]:
        if kind == "pupil":
            (self.folder / WAITING).touch()
            while (self.folder / WAITING).exists():
                time.sleep(0.01)
        yield from self.source.read(kind, since, deadline=deadline)

    def close(self) -> None:
        self.source.close()


def _slow_or_real(endpoint: Endpoint, laestab: str | None, settings: Settings | None) -> Source:
    source = DIRECTORY(endpoint, laestab, settings)
    assert endpoint.path is not None
    if (endpoint.path / SLOW).exists():
        return SlowSchool(source, endpoint.path)
    return source


DIRECTORY = SOURCES["directory"]


def install_slow_schools() -> None:
    """Make folders holding ``.slow`` answer through :class:`SlowSchool` (this process)."""
    SOURCES["directory"] = _slow_or_real


@pytest.fixture
def slow_schools() -> Iterator[None]:
    install_slow_schools()
    yield
    SOURCES["directory"] = DIRECTORY


def reader_waiting(folder: Path, timeout: float = 10.0) -> None:
    """Wait until a transfer is blocked reading the slow school (it is mid-transfer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (folder / WAITING).exists():
            return
        time.sleep(0.01)
    raise AssertionError("no transfer started reading the slow source")


def release(folder: Path) -> None:
    """Let the transfer blocked on the slow school go on (after it started waiting)."""
    reader_waiting(folder)
    (folder / WAITING).unlink()
