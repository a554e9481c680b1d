"""Connectors: one small class per endpoint ``type`` (DESIGN section 6).

The read side of a connector is a :class:`Source`:

- ``manifest() -> Manifest``: what the endpoint says about itself (MIS, versions, whether SIMS
  Services Manager is running, export time). Raises :class:`ConnectorError` when the endpoint
  cannot be used at all.
- ``read(kind) -> Iterator[tuple[bytes, Record | Rejection]]``: every record of one kind,
  streamed in source order, each with its raw JSON line (no newline). A rejected line comes
  with its :class:`~b2bd.records.check.Rejection` and must be counted, never passed on. An
  accepted line's bytes may be written to a delivery as they are (see
  :func:`b2bd.records.model.tagged_line`), which is the fast path. A kind the endpoint has no
  data for yields nothing.

Failures are :class:`ConnectorError` with one of DESIGN section 5's reason classes; only
``unreachable`` and ``timeout`` are transient (worth a retry).

:func:`open_source` maps a base's :class:`~b2bd.config.model.Endpoint` to its Source through
``SOURCES``, a table keyed by endpoint type; a new connector adds one entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from b2bd.records.check import Rejection
from b2bd.records.model import Record, RecordKind

if TYPE_CHECKING:
    from b2bd.config.model import Endpoint

FailureReason = Literal["unreachable", "timeout", "auth", "bad-data", "prerequisite", "internal"]
TRANSIENT: frozenset[FailureReason] = frozenset({"unreachable", "timeout"})
"""Reason classes a retry may cure."""


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
    have no SIMS behind them (e.g. the LA's own outbound store)."""

    mis: str
    exported_at: str
    services_manager: ServicesManager | None = None
    sims_version: str | None = None
    laestab: str | None = None


class Source(Protocol):
    """The read side of a connector (see the module docstring for the contract)."""

    def manifest(self) -> Manifest: ...

    def read(self, kind: RecordKind) -> Iterator[tuple[bytes, Record | Rejection]]: ...


def _directory_source(endpoint: Endpoint, laestab: str | None) -> Source:
    from b2bd.connectors.directory import DirectorySource  # here: directory imports this module

    if endpoint.path is None:
        raise ConnectorError("internal", "directory endpoint without a path")
    return DirectorySource(endpoint.path, laestab=laestab)


SOURCES: dict[str, Callable[[Endpoint, str | None], Source]] = {
    "directory": _directory_source,
}
"""Endpoint type -> factory(endpoint, expected LAESTAB or None) of its Source."""


def open_source(endpoint: Endpoint, laestab: str | None = None) -> Source:
    """The Source for a base's endpoint; ``laestab``, when given, must match the export's.

    Raises ConnectorError("internal") for an endpoint type with no source registered.
    """
    factory = SOURCES.get(endpoint.type)
    if factory is None:
        raise ConnectorError("internal", f"no connector for endpoint type {endpoint.type!r}")
    return factory(endpoint, laestab)
