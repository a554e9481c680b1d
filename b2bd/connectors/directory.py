"""The ``directory`` connector, read side: a school's export folder (DESIGN section 6).

Layout of an export folder (a school's, or the LA's ``<la_store>/outbound/<base>/``)::

    manifest.json      {"mis": "sims", "sims_version": "7.214", "services_manager": "running",
                        "exported_at": "2026-11-27T18:00:00Z", "laestab": "8814001"}
    pupils.jsonl       one pupil record per line      (kind "pupil")
    attendance.jsonl   one session mark per line      (kind "mark")
    results.jsonl      one result per line            (kind "result")
    deletions.jsonl    one deletion per line          (kind "deletion")

Every data file is optional: a missing one means "no records of that kind". Files are read
line by line through a buffered binary reader, so memory does not grow with the file.

Failure classes: folder missing, not a folder or unreadable -> ``unreachable`` (transient: a
share may come back); manifest missing, not JSON or malformed, or naming another LAESTAB ->
``bad-data``; services_manager ``stopped`` (or absent where required) -> ``prerequisite``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import msgspec

from b2bd.connectors import ConnectorError, Manifest
from b2bd.records.check import RecordDecoder, Rejection, is_utc_time
from b2bd.records.model import Record, RecordKind

MANIFEST_FILE = "manifest.json"
FILES: dict[RecordKind, str] = {
    "pupil": "pupils.jsonl",
    "mark": "attendance.jsonl",
    "result": "results.jsonl",
    "deletion": "deletions.jsonl",
}
"""Record kind -> its file name in an export folder."""

_READ_BUFFER = 1 << 20
_MAX_MANIFEST = 1 << 16


class _ManifestDoc(msgspec.Struct, frozen=True):
    # Unknown fields are allowed: an export tool may add its own, and none of them matter here.
    mis: str
    exported_at: str
    services_manager: Literal["running", "stopped"] | None = None
    sims_version: str | None = None
    laestab: str | None = None


class DirectorySource:
    """Reads one export folder.

    ``laestab``: when given, the manifest's ``laestab`` (if it has one) must equal it, so a
    base whose path points at another school's folder fails as ``bad-data`` instead of
    delivering the wrong children's data. ``require_services_manager``: a school export must
    say SIMS Services Manager is ``running``; the LA's own outbound store passes False.
    """

    def __init__(
        self,
        path: Path,
        *,
        laestab: str | None = None,
        require_services_manager: bool = True,
    ) -> None:
        self.path = Path(path)
        self.laestab = laestab
        self.require_services_manager = require_services_manager

    def manifest(self) -> Manifest:
        """The folder's manifest, checked (see the module docstring for the failure classes)."""
        self._check_folder()
        manifest_path = self.path / MANIFEST_FILE
        try:
            with manifest_path.open("rb") as handle:
                data = handle.read(_MAX_MANIFEST + 1)
        except FileNotFoundError:
            raise ConnectorError("bad-data", f"{manifest_path}: no manifest") from None
        except IsADirectoryError:
            raise ConnectorError("bad-data", f"{manifest_path}: not a file") from None
        except OSError as error:
            raise ConnectorError(
                "unreachable", f"{manifest_path}: {error.strerror or error}"
            ) from None
        if len(data) > _MAX_MANIFEST:
            raise ConnectorError("bad-data", f"{manifest_path}: larger than 64 KiB")
        try:
            doc = msgspec.json.decode(data, type=_ManifestDoc)
        except msgspec.DecodeError as error:
            raise ConnectorError("bad-data", f"{manifest_path}: {error}") from None
        if not is_utc_time(doc.exported_at):
            raise ConnectorError(
                "bad-data", f"{manifest_path}: exported_at is not YYYY-MM-DDTHH:MM:SSZ"
            )
        if self.laestab is not None and doc.laestab is not None and doc.laestab != self.laestab:
            raise ConnectorError(
                "bad-data",
                f"{manifest_path}: export is for {doc.laestab}, expected {self.laestab}",
            )
        if self.require_services_manager and doc.services_manager != "running":
            state = doc.services_manager or "not reported"
            raise ConnectorError(
                "prerequisite", f"{manifest_path}: SIMS Services Manager is {state}"
            )
        return Manifest(
            mis=doc.mis,
            exported_at=doc.exported_at,
            services_manager=doc.services_manager,
            sims_version=doc.sims_version,
            laestab=doc.laestab,
        )

    def read(self, kind: RecordKind) -> Iterator[tuple[bytes, Record | Rejection]]:
        """Stream every line of ``kind``'s file as (raw line without newline, record or
        rejection). Blank lines are skipped. A missing file yields nothing; a folder or file
        that cannot be read raises ConnectorError("unreachable") (also mid-file)."""
        decode = RecordDecoder(kind).decode
        for line in self.lines(kind):
            yield line, decode(line)

    def lines(self, kind: RecordKind) -> Iterator[bytes]:
        """The raw non-blank lines of ``kind``'s file, without line endings (no checks)."""
        self._check_folder()
        path = self.path / FILES[kind]
        try:
            handle = path.open("rb", buffering=_READ_BUFFER)
        except FileNotFoundError:
            return
        except OSError as error:
            raise ConnectorError("unreachable", f"{path}: {error.strerror or error}") from None
        with handle:
            try:
                for raw in handle:
                    line = raw.rstrip(b"\r\n")
                    if line:
                        yield line
            except OSError as error:
                raise ConnectorError("unreachable", f"{path}: {error.strerror or error}") from None

    def _check_folder(self) -> None:
        try:
            if not self.path.is_dir():
                raise ConnectorError("unreachable", f"{self.path}: no such folder")
            # is_dir() succeeds on a folder we may not list; opening it finds that out.
            with os.scandir(self.path):
                pass
        except PermissionError as error:
            raise ConnectorError("unreachable", f"{self.path}: {error.strerror}") from None
        except OSError as error:
            raise ConnectorError("unreachable", f"{self.path}: {error.strerror or error}") from None
