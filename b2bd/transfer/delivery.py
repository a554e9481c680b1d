"""Delivery files: streamed, atomic, confined (DESIGN section 6).

A delivery is ``<folder>/<name>.jsonl`` (one record per line, each with ``"kind"``) plus
``<folder>/<name>.manifest.json``, where ``<folder>`` is a configured root (the LA store, a
school's folder) plus sub-folders (``<base>/<task>``, ``inbound/<task>``) and ``<name>`` the
run's delivery name. Guarantees:

- **Confined**: everything below the configured root is reached through
  :class:`b2bd.confined.Folder` (no symlink followed; a symlink, file or FIFO where one of our
  folders should be is refused as ``local``; temporary files are created ``O_EXCL`` under
  unpredictable names), so a school that plants symlinks in its folder cannot make us write
  anywhere else.
- **Atomic**: data goes to ``.<name>.jsonl.<random>.tmp`` (a leading dot: readers globbing
  ``*.jsonl`` never see it), fsynced, then renamed; the manifest likewise, *after* the data
  file; then the folder is fsynced. A reader that sees a manifest sees the complete data file
  it describes (``sha256``, ``bytes``, ``counts``). A crash (even SIGKILL) at any point leaves
  either the previous complete delivery of that name or none, plus at most a hidden temporary
  file, which the next delivery into that folder removes before it writes.
- **Replaces, never duplicates**: a rerun of the same name replaces it (a scheduled slot's
  retry replaces its own earlier attempt). A previous manifest of that name is removed before
  the new data file is renamed in, so a manifest never describes other bytes than the data file
  beside it. A place with ``replace=False`` (a manual run, whose name the engine chose free)
  never replaces anything: its files are linked in exclusively, and a name taken meanwhile
  fails the delivery (``local``) with the other run's files untouched.
- **One writer per folder**: the folder is locked (``flock`` on its descriptor) while a delivery
  is written into it; a second writer fails at once instead of interleaving.
- **Streamed**: memory does not grow with the records; the sha256 is computed as chunks pass.
- **Private**: files 0640 and new folders 0750 exactly, whatever the process umask; existing
  folders are left as they are.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec

from b2bd.confined import Folder, TempFile, lock
from b2bd.connectors.source import FailureReason
from b2bd.faults import ConfinedError, Kind

WRITE_REASON: dict[Kind, FailureReason] = {
    "missing": "unreachable",  # the configured folder itself (a school share not mounted)
    "not-ours": "local",
    "denied": "local",
    "read-only": "local",
    "full": "local",
    "unreachable": "unreachable",
    "failed": "local",
}
"""Reason class of a delivery that cannot be written, by what is wrong (DESIGN section 5:
the LA's own side is ``local``, reported with its path and never retried per transfer)."""

_LEGACY_TEMP = re.compile(r"^\.(manual-)?\d{8}T\d{6}Z(-\d+)?\.(jsonl|manifest\.json)\.tmp$")
"""Temporary names of earlier versions (deterministic), removed like today's."""


class DeliveryError(Exception):
    """The delivery could not be written. ``str()`` names paths, never record content.
    ``reason`` is a DESIGN reason class (:data:`WRITE_REASON`; ``internal`` for a second writer
    of one folder)."""

    def __init__(self, message: str, reason: FailureReason = "local") -> None:
        super().__init__(message)
        self.reason: FailureReason = reason


def _taken(place: DeliveryPlace) -> str:
    return (
        f"{place.data_path}: a delivery of that name is already there (another run's): "
        "never replaced"
    )


def _failed(error: ConfinedError) -> DeliveryError:
    return DeliveryError(str(error), WRITE_REASON[error.kind])


@dataclass(frozen=True)
class DeliveryPlace:
    """Where one delivery goes: ``root`` (configured: followed if a symlink; created when
    ``create_root``), ``below`` (sub-folders, created 0750, never followed) and ``name``;
    ``replace``: whether an existing delivery of that name may be replaced."""

    root: Path
    below: tuple[str, ...]
    name: str
    create_root: bool = True
    replace: bool = True

    @property
    def folder(self) -> Path:
        return self.root.joinpath(*self.below)

    @property
    def data_path(self) -> Path:
        return self.folder / f"{self.name}.jsonl"

    @property
    def manifest_path(self) -> Path:
        return self.folder / f"{self.name}.manifest.json"


@dataclass(frozen=True)
class Delivered:
    """A committed delivery: its files, the data file's sha256 and size in bytes."""

    data_path: Path
    manifest_path: Path
    sha256: str
    bytes: int


class DeliveryWriter:
    """Writes one delivery. Use as a context manager: leaving it without :meth:`commit`
    (an exception, a timeout) removes the temporary file.

    :meth:`write` takes bytes holding whole lines, each ending in ``\\n`` (callers batch many
    lines per call: that is the fast path). :meth:`commit` finishes the data file and writes the
    manifest, adding ``data_file``, ``sha256`` and ``bytes`` to the fields given.
    """

    def __init__(self, place: DeliveryPlace) -> None:
        self.place = place
        self._hash = hashlib.sha256()
        self._size = 0
        self._folder: Folder | None = None
        self._temp: TempFile | None = None
        try:
            with Folder.open(place.root, create=place.create_root) as root:
                folder = root.descend(*place.below, create=True)
        except ConfinedError as error:
            raise _failed(error) from None
        # Where the file system cannot lock a folder (some network shares), the daemon's own
        # rule (one outstanding transfer per task and base) still keeps writers apart.
        if lock(folder.fd) is False:
            folder.close()
            raise DeliveryError(
                f"{place.folder}: another transfer is writing into this folder", "internal"
            )
        try:
            folder.remove_leftovers(also=_LEGACY_TEMP)
            self._temp = folder.create_temp(f"{place.name}.jsonl")
        except ConfinedError as error:
            folder.close()
            raise _failed(error) from None
        self._folder = folder

    def __enter__(self) -> DeliveryWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._temp is not None:
            self.abort()

    @property
    def temp_path(self) -> Path | None:
        """The data file's temporary path while it is written."""
        return None if self._temp is None else self._temp.path

    def write(self, lines: bytes) -> None:
        temp = self._temp
        if temp is None:
            raise DeliveryError("delivery already closed", "internal")
        self._hash.update(lines)
        self._size += len(lines)
        try:
            temp.write(lines)
        except ConfinedError as error:
            raise _failed(error) from None

    @property
    def size(self) -> int:
        return self._size

    def commit(self, manifest: dict[str, Any]) -> Delivered:
        """Make the delivery visible: data file, then manifest, then the folder fsync."""
        temp, folder = self._temp, self._folder
        if temp is None or folder is None:
            raise DeliveryError("delivery already closed", "internal")
        place = self.place
        digest = self._hash.hexdigest()
        doc = dict(manifest)
        doc.update(data_file=place.data_path.name, sha256=digest, bytes=self._size)
        manifest_name = place.manifest_path.name
        try:
            temp.sync()
            with folder.create_temp(manifest_name) as side:
                side.write(msgspec.json.format(msgspec.json.encode(doc)) + b"\n")
                side.sync()
                if place.replace:
                    # Old manifest first: from here until the new one lands, a reader sees a
                    # data file without a manifest ("in progress"), never a manifest
                    # describing other bytes.
                    folder.unlink(manifest_name)
                elif folder.exists(manifest_name):
                    raise DeliveryError(_taken(place), "local")
                temp.commit(replace=place.replace)
                side.commit(replace=place.replace)
        except ConfinedError as error:
            self.abort()
            if error.errno == errno.EEXIST:
                raise DeliveryError(_taken(place), "local") from None
            raise _failed(error) from None
        except DeliveryError:
            self.abort()
            raise
        self._temp = None
        self._close()
        return Delivered(place.data_path, place.manifest_path, digest, self._size)

    def abort(self) -> None:
        """Drop the temporary file (nothing visible changes)."""
        temp, self._temp = self._temp, None
        if temp is not None:
            temp.abort()
        self._close()

    def _close(self) -> None:
        folder, self._folder = self._folder, None
        if folder is not None:
            with contextlib.suppress(OSError):
                folder.close()  # releases the lock
