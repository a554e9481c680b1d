"""What every connector is: the :class:`Source` interface, its failures and limits.

The read side of a connector (DESIGN section 6) is a :class:`Source`:

- ``manifest(*, deadline) -> Manifest``: what the endpoint says about itself (MIS, versions,
  whether SIMS Services Manager is running, export time). Raises :class:`ConnectorError` when
  the endpoint cannot be used at all. ``deadline`` as for ``read``.
- ``read(kind, since=None, *, deadline) -> Iterator[tuple[bytes, Record | Rejection]]``:
  every record of one kind, streamed in source order, each with its raw JSON line (no
  newline). A rejected line comes with its :class:`~b2bd.records.check.Rejection` and must be
  counted, never passed on (a line over :data:`LINE_LIMIT` bytes comes as
  ``(b"", TOO_LONG)``: it is never held). An accepted line's bytes may be written to a
  delivery as they are (see :func:`b2bd.records.model.tagged_line`), which is the fast path.
  ``deadline`` is called as bytes arrive (at least once per MiB or per network response) and
  raises when the transfer's time is up. A kind the data type needs but the endpoint cannot
  provide is ``bad-data`` (DESIGN section 5, integrity), except deletions: none is an empty
  list. The iterator ends normally only when the kind's data was read completely (and matched
  any counts or checksum the export declared); otherwise it raises. ``since`` (a record time)
  is a hint: a source *may* leave out records whose change time is before it (an API's
  ``updated_after``); callers filter anyway.
- ``close()``: release what the source holds (an HTTP connection pool); reads are over.

Failures are :class:`ConnectorError` with one of DESIGN section 5's reason classes; only
``unreachable`` and ``timeout`` are transient (worth a retry). ``local`` is the LA's own side
(the LA store, state dir or a delivery folder: permission, read-only, full, a symlink where our
folder should be): never retried per transfer. A message names files, fields, lines and rules,
never a value read from the endpoint (:func:`b2bd.records.check.redact` for anything else).

Which Source serves which endpoint is the table in :mod:`b2bd.connectors.table`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from b2bd.records.check import Rejection
from b2bd.records.model import Record, RecordKind

FailureReason = Literal[
    "unreachable", "timeout", "auth", "bad-data", "prerequisite", "local", "internal"
]
TRANSIENT: frozenset[FailureReason] = frozenset({"unreachable", "timeout"})
"""Reason classes a retry may cure."""

LINE_LIMIT = 64 * 1024
"""Bytes in one record line (without its newline) beyond which it is rejected ``too-long``."""

TOO_LONG = Rejection("too-long")
"""What :meth:`Source.read` yields (with ``b""``) for a line over :data:`LINE_LIMIT`."""

Deadline = Callable[[], float | None]
"""Raises when the transfer's time is up, else returns the seconds left (None: no limit);
sources call it as bytes arrive, and a network source bounds each wait on its peer by it (a
server trickling one byte a second never holds a transfer past its timeout). One that runs on
the monotonic clock is :func:`b2bd.connectors.deadline.expiring`."""


def no_deadline() -> None:
    """A :data:`Deadline` that never expires."""


class ConnectorError(Exception):
    """An endpoint could not be used. ``str(error)`` is a message for operators: it names
    paths and fields, never pupil data."""

    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(message)
        self.reason: FailureReason = reason
        self.message = message

    @property
    def transient(self) -> bool:
        return self.reason in TRANSIENT


ServicesManager = Literal["running", "stopped"]


@dataclass(frozen=True)
class Manifest:
    """What an export says about its source. ``services_manager`` is None for sources that
    have no SIMS behind them (e.g. the LA's own outbound store) or do not report it; ``mis`` is
    None when the source runs SIMS but does not say which edition (a Wonde school)."""

    mis: str | None
    exported_at: str
    services_manager: ServicesManager | None = None
    sims_version: str | None = None
    laestab: str | None = None


class Source(Protocol):
    """The read side of a connector (see the module docstring for the contract)."""

    def manifest(self, *, deadline: Deadline = no_deadline) -> Manifest: ...

    def read(
        self, kind: RecordKind, since: str | None = None, *, deadline: Deadline = no_deadline
    ) -> Iterator[tuple[bytes, Record | Rejection]]: ...

    def close(self) -> None: ...
