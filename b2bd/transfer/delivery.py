"""Delivery files: streamed, atomic, deterministic (DESIGN section 6).

A delivery is ``<folder>/<name>.jsonl`` (one record per line, each with ``"kind"``) plus
``<folder>/<name>.manifest.json``; ``<name>`` is the slot's ``YYYYMMDDTHHMMSSZ`` or
``manual-YYYYMMDDTHHMMSSZ``. Guarantees:

- **Atomic**: data is written to ``.<name>.jsonl.tmp`` (a leading dot: readers globbing
  ``*.jsonl`` never see it), fsynced, then renamed; the manifest likewise, *after* the data
  file; then the folder is fsynced. A reader that sees a manifest sees the complete data file
  it describes (``sha256``, ``bytes``, ``counts``). A crash (even SIGKILL) at any point leaves
  either the previous complete delivery of that name or none, plus at most a hidden temp file
  that the next attempt at the same name truncates and reuses.
- **Replaces, never duplicates**: a rerun of the same slot writes the same names. A previous
  manifest of that name is removed before the new data file is renamed in, so a manifest never
  describes other bytes than the data file beside it.
- **One writer per name**: the temp file is locked (``flock``) while written; a second writer of
  the same delivery fails at once instead of interleaving.
- **Streamed**: memory does not grow with the records; the sha256 is computed as chunks pass.
- **Private**: files 0640 and new folders 0750 exactly, whatever the process umask (set by
  ``fchmod``/``chmod`` after creation); existing folders are left as they are.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec

from b2bd.connectors import FailureReason
from b2bd.fsync import fsync_dir

FILE_MODE = 0o640
DIR_MODE = 0o750
_CHUNK = 1 << 20


class DeliveryError(Exception):
    """The delivery could not be written. ``str()`` names paths, never record content.
    ``reason`` is a DESIGN reason class: ``unreachable`` when the target folder cannot be
    written (a share that may come back), ``internal`` for a second writer of one delivery."""

    def __init__(self, message: str, reason: FailureReason = "unreachable") -> None:
        super().__init__(message)
        self.reason: FailureReason = reason


@dataclass(frozen=True)
class DeliveryPlace:
    """Where one delivery goes: ``folder`` and the slot-derived ``name``."""

    folder: Path
    name: str

    @property
    def data_path(self) -> Path:
        return self.folder / f"{self.name}.jsonl"

    @property
    def manifest_path(self) -> Path:
        return self.folder / f"{self.name}.manifest.json"

    @property
    def data_temp(self) -> Path:
        return self.folder / f".{self.name}.jsonl.tmp"

    @property
    def manifest_temp(self) -> Path:
        return self.folder / f".{self.name}.manifest.json.tmp"


@dataclass(frozen=True)
class Delivered:
    """A committed delivery: its files, the data file's sha256 and size in bytes."""

    data_path: Path
    manifest_path: Path
    sha256: str
    bytes: int


def make_folders(folder: Path) -> None:
    """Create ``folder`` and any missing parents with mode 0750 (umask-proof), fsyncing each
    new entry's parent so the folder survives a crash once a file in it has been fsynced."""
    missing: list[Path] = []
    probe = folder
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, DIR_MODE)
        except FileExistsError:
            continue  # a concurrent transfer made it
        os.chmod(path, DIR_MODE)
        fsync_dir(path.parent)


class DeliveryWriter:
    """Writes one delivery. Use as a context manager: leaving it without :meth:`commit`
    (an exception, a timeout) removes the temp file.

    :meth:`write` takes bytes holding whole lines, each ending in ``\\n`` (callers batch many
    lines per call: that is the fast path). :meth:`commit` finishes the data file and writes the
    manifest, adding ``data_file``, ``sha256`` and ``bytes`` to the fields given.
    """

    def __init__(self, place: DeliveryPlace) -> None:
        self.place = place
        self._hash = hashlib.sha256()
        self._size = 0
        self._fd: int | None = None
        try:
            make_folders(place.folder)
            fd = os.open(place.data_temp, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError as error:
            raise DeliveryError(f"{place.folder}: cannot write: {error.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise DeliveryError(
                    f"{place.data_temp}: another transfer is writing this delivery", "internal"
                ) from None
            raise DeliveryError(f"{place.data_temp}: {error.strerror}") from None
        # Locked: a stale temp of a killed attempt is ours to reuse from byte 0.
        os.ftruncate(fd, 0)
        os.fchmod(fd, FILE_MODE)
        self._fd = fd

    def __enter__(self) -> DeliveryWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            self.abort()

    def write(self, lines: bytes) -> None:
        fd = self._fd
        if fd is None:
            raise DeliveryError("delivery already closed")
        self._hash.update(lines)
        self._size += len(lines)
        view = memoryview(lines)
        while view:
            try:
                written = os.write(fd, view)
            except OSError as error:
                raise DeliveryError(
                    f"{self.place.data_temp}: write failed: {error.strerror}"
                ) from None
            view = view[written:]

    @property
    def size(self) -> int:
        return self._size

    def commit(self, manifest: dict[str, Any]) -> Delivered:
        """Make the delivery visible: data file, then manifest, then the folder fsync."""
        fd = self._fd
        if fd is None:
            raise DeliveryError("delivery already closed")
        place = self.place
        digest = self._hash.hexdigest()
        doc = dict(manifest)
        doc.update(data_file=place.data_path.name, sha256=digest, bytes=self._size)
        try:
            os.fsync(fd)
            _write_file(place.manifest_temp, msgspec.json.format(msgspec.json.encode(doc)) + b"\n")
            # Old manifest first: from here until the new one lands, a reader sees a data file
            # without a manifest ("in progress"), never a manifest describing other bytes.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(place.manifest_path)
            os.rename(place.data_temp, place.data_path)
            fsync_dir(place.folder)
            os.rename(place.manifest_temp, place.manifest_path)
            fsync_dir(place.folder)
        except OSError as error:
            self.abort()
            raise DeliveryError(f"{place.folder}: commit failed: {error.strerror}") from None
        os.close(fd)  # releases the lock, after the rename
        self._fd = None
        return Delivered(place.data_path, place.manifest_path, digest, self._size)

    def abort(self) -> None:
        """Drop the temp files (nothing visible changes)."""
        fd, self._fd = self._fd, None
        for path in (self.place.data_temp, self.place.manifest_temp):
            # Best effort: the next attempt at this name truncates a leftover anyway.
            with contextlib.suppress(OSError):
                os.unlink(path)
        if fd is not None:
            os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
