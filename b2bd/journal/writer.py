"""The journal on disk, write side: opening and recovery, durability, group commit, compaction.

The one writer of a state dir holds ``journal/lock`` with ``flock``. The on-disk format (layout,
framing, seals) and everything that only reads it is :mod:`b2bd.journal.reader`.

Durability. :meth:`Journal.append` returns only after the record's bytes are written and
``fdatasync``-ed (the file size is part of what fdatasync persists), so a caller may act on a record
as soon as ``append`` returns. Concurrent appenders share fsyncs (group commit): one of them
writes and syncs everything queued so far while the others wait; none of them returns before its
own record is durable. If a write or sync fails, the journal refuses every later append
(:class:`JournalFailed`): after a failed fsync the kernel may have dropped the dirty pages, so
only reopening (which re-reads and repairs) is safe. A new segment is written complete under a
temporary name, fsynced, renamed into place and the directory fsynced, so a segment never exists
half-created.

Recovery on open (DESIGN section 7). Every segment is checked line by line. The damage a crash
can cause is confined to the end of the last segment (the write in flight, which was never
acknowledged): if the first bad line of the last segment has no valid record anywhere after it,
the bytes from that line to the end are copied to ``<segment>.<offset>.broken`` (written and
fsynced before anything is cut), the segment is truncated there and fsynced, and a
``journal-repaired`` record is appended. Any other damage (a bad record followed by good ones, a
bad record in an older segment, a missing segment) raises :class:`JournalDamaged` naming the
segment and byte offset, and nothing is changed.

Compaction writes a ``checkpoint`` record (the replayed state) as the first record of a new
segment, made durable as above, and only then deletes the older segments, oldest first. If that
is interrupted, the next open finishes it: segments before the newest segment that begins with a
checkpoint are superseded and removed.

History. Before the checkpoint, compaction rewrites ``history.jsonl`` (framed like a segment,
the whole file replaced durably): the run and transfer outcomes of the runs started in the last
``history_days`` (:class:`~b2bd.journal.history.HistoryKeeper`: no pupil digests), taken from
the previous history file and the segments about to be dropped. Its records keep their sequence
numbers (with gaps); only those below the live journal's first record count as history, so a
compaction interrupted before its checkpoint leaves nothing counted twice. Replay (start-up)
never reads it; ``history``, ``journal cat`` and ``journal verify`` do.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import itertools
import os
import re
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import msgspec

from b2bd.clock import Now, utc_now
from b2bd.confined import Folder, fsync_dir
from b2bd.faults import explain
from b2bd.journal.entries import Entry, JournalRepaired, build_entry
from b2bd.journal.history import DEFAULT_HISTORY_DAYS, HistoryKeeper
from b2bd.journal.reader import (
    HISTORY_FILE,
    JOURNAL_DIR,
    SEAL_SUFFIX,
    JournalError,
    JournalScan,
    Segment,
    frame,
    open_segments,
    read_history,
    read_segments,
    scan_journal,
    seal_bytes,
    segment_name,
)
from b2bd.journal.state import State, replay, snapshot
from b2bd.statedir import running_as

DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024
LOCK_FILE = "lock"
_BROKEN_RE = re.compile(r"^(\d{16}\.log)\.(\d+)(?:\.\d+)?\.broken$")


class JournalBusy(JournalError):
    """Another process holds the journal open for writing."""


class JournalFailed(JournalError):
    """A write or fsync failed; the journal takes no more appends until it is reopened."""


# -- file-system steps -----------------------------------------------------------------------------


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written == len(data):
        return
    view = memoryview(data)[written:]
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _create_durably(directory: Path, name: str, data: bytes, *, keep_open: bool) -> int | None:
    """Create ``directory/name`` holding ``data``: temp file, fsync, rename, fsync directory.

    Returns a write descriptor (O_APPEND) on the new file when ``keep_open``.
    """
    with (
        Folder.open(directory) as folder,
        folder.create_temp(name, mode=0o600, append=True) as temp,
    ):
        temp.write(data)
        return temp.commit(keep_open=keep_open)


class _DurableFile:
    """A file written in one go under a temporary name and put in place like a segment (fsync,
    rename over any older version, fsync the directory: :mod:`b2bd.confined`), or not at all."""

    def __init__(self, directory: Path, name: str) -> None:
        self.folder = Folder.open(directory)
        try:
            self.temp = self.folder.create_temp(name, mode=0o600)
        except BaseException:
            self.folder.close()
            raise
        assert self.temp.fd is not None
        self.file = os.fdopen(self.temp.fd, "wb", closefd=False)
        self.count = 0

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.count += 1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:
            # Flushes into the temporary file (its descriptor stays open). If that fails (a full
            # disk), the file is incomplete and must never replace the old one.
            self.file.close()
            if exc_type is None:
                self.temp.commit()
        finally:
            self.temp.abort()  # no-op once committed
            self.folder.close()


def _write_failure(exc: OSError, path: Path) -> str:
    return (
        explain(exc, "cannot write the journal", path, user=running_as())
        + "; nothing acknowledged was lost, and the journal must be reopened (start b2bd again) "
        "once this is fixed"
    )


def _keep_broken(directory: Path, segment: str, offset: int, data: bytes) -> str:
    for n in range(1000):
        name = f"{segment}.{offset}.broken" if n == 0 else f"{segment}.{offset}.{n}.broken"
        if not (directory / name).exists():
            _create_durably(directory, name, data, keep_open=False)
            return name
    raise JournalFailed(f"too many .broken files for {segment} at byte {offset}")


def _make_folder(path: Path, *, parents: bool = False) -> None:
    """``mkdir`` (0700) unless ``path`` is a folder already. Something else in its way is an
    OSError saying what it is, where mkdir says only "File exists": a symlink loop (ELOOP), a
    symlink to nothing (ENOENT), a file (ENOTDIR)."""
    try:
        path.mkdir(mode=0o700, parents=parents, exist_ok=True)
    except FileExistsError:
        os.stat(path)  # a symlink loop or a dangling symlink raises here, with its own errno
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(path)) from None


def _lock(directory: Path) -> int:
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise JournalBusy(
                f"{directory} is in use by another process (is the daemon running?)"
            ) from None
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


# -- the writer ------------------------------------------------------------------------------------


_LEAD = "lead"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class _Waiter:
    """One appender waiting for its batch: its ``lock`` is held until the leader releases it,
    having set ``outcome`` to None (durable), ``_LEAD`` (write the next batch) or a failure
    message."""

    __slots__ = ("lock", "outcome")

    def __init__(self) -> None:
        self.outcome: str | None = None
        self.lock = threading.Lock()
        self.lock.acquire()

    def wait(self) -> None:
        self.lock.acquire()

    def wake(self, outcome: str | None) -> None:
        self.outcome = outcome
        self.lock.release()


@dataclass(frozen=True)
class Compaction:
    """What :meth:`Journal.compact` did."""

    checkpoint: Entry
    removed: tuple[str, ...]
    history: int = 0  # records now in the history file


class Journal:
    """The open journal of one state dir: the only writer (an exclusive ``flock``)."""

    def __init__(
        self, directory: Path, clock: Now, segment_bytes: int, lock_fd: int, scan: JournalScan
    ) -> None:
        self.directory = directory
        self._clock = clock
        self._segment_bytes = segment_bytes
        self._lock_fd = lock_fd
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # signalled when no batch is in flight
        self._segments: list[Segment] = list(scan.segments)
        self._fd: int | None = None
        self._size = 0
        self._crc = 0  # of the current segment's bytes, for its seal
        if self._segments:
            last = self._segments[-1]
            self._fd = os.open(last.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            self._size = last.size
            with last.path.open("rb") as f:
                self._crc = zlib.crc32(f.read(last.size))
        self._next_seq = scan.next_seq
        self._durable_seq = self._next_seq - 1
        self._pending: list[tuple[bytes, _Waiter | None]] = []
        self._flushing = False
        self._idle_waiters = 0
        self._failed: str | None = None
        self._closed = False
        self._repaired_files: frozenset[str] = frozenset()
        self.repairs: list[JournalRepaired] = []
        self._listeners: list[Callable[[Entry], None]] = []

    # opening -----------------------------------------------------------------

    @classmethod
    def open(
        cls,
        state_dir: Path,
        clock: Now = utc_now,
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> Journal:
        """Open (creating if needed) the journal under ``state_dir`` for writing and recover it.

        Raises :class:`JournalDamaged` for damage a crash cannot explain (nothing is changed),
        :class:`JournalBusy` when another process has it open. The ``journal-repaired`` records
        written by this open are in :attr:`repairs`.
        """
        directory = state_dir / JOURNAL_DIR
        try:
            journal = cls._open(directory, clock, segment_bytes)
        except OSError as exc:
            raise JournalError(
                explain(exc, "cannot open the journal", directory, user=running_as())
            ) from None
        try:
            journal._record_repairs()
        except BaseException:
            journal.close()
            raise
        return journal

    @classmethod
    def _open(cls, directory: Path, clock: Now, segment_bytes: int) -> Journal:
        state_dir = directory.parent
        if not directory.is_dir():
            _make_folder(state_dir, parents=True)
            _make_folder(directory)
            fsync_dir(state_dir)
        lock_fd = _lock(directory)
        try:
            for entry in os.scandir(directory):
                # never renamed into place, so nothing in it was acknowledged
                if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                    os.unlink(entry.path)
            scan = scan_journal(directory)
            if scan.damage:
                raise scan.damage[0].error()
            for path in scan.superseded:  # an interrupted compaction: finish it
                path.unlink()
                path.with_name(path.name + SEAL_SUFFIX).unlink(missing_ok=True)
            for path in scan.unsealed:
                _create_durably(
                    directory,
                    path.name + SEAL_SUFFIX,
                    seal_bytes(path.read_bytes()),
                    keep_open=False,
                )
            if scan.superseded:
                fsync_dir(directory)
            cls._repair_tail(scan)
            journal = cls(directory, clock, segment_bytes, lock_fd, scan)
        except BaseException:
            os.close(lock_fd)
            raise
        journal._repaired_files = scan.repaired_files
        return journal

    def _record_repairs(self) -> None:
        """Journal a ``journal-repaired`` record for each ``.broken`` file of a live segment
        that no record mentions yet (this open's repair, or one whose record a crash lost)."""
        directory = self.directory
        live = {s.name for s in self._segments}
        unrecorded = sorted(
            name
            for entry in os.scandir(directory)
            if (m := _BROKEN_RE.match(name := entry.name))
            and m.group(1) in live
            and name not in self._repaired_files
        )
        for name in unrecorded:
            m = _BROKEN_RE.match(name)
            assert m is not None
            cut = (directory / name).read_bytes()
            record = self.append(
                "journal-repaired",
                segment=m.group(1),
                offset=int(m.group(2)),
                length=len(cut),
                broken_file=name,
                records=cut.count(b"\n"),
            )
            assert isinstance(record, JournalRepaired)
            self.repairs.append(record)

    @staticmethod
    def _repair_tail(scan: JournalScan) -> None:
        """Keep the damaged tail's bytes in a .broken file (durably), then cut it off."""
        tail = scan.tail
        if tail is None:
            return
        path = scan.directory / tail.segment
        with path.open("rb") as f:
            f.seek(tail.offset)
            damaged = f.read()
        # open() appends the journal-repaired record for it with any other unrecorded .broken file
        try:
            _keep_broken(scan.directory, tail.segment, tail.offset, damaged)
        except OSError as exc:
            doing = (
                f"cannot repair the torn last record of journal segment {tail.segment} "
                "(its bytes are kept in a .broken file before it is cut; nothing was changed)"
            )
            raise JournalError(explain(exc, doing, scan.directory, user=running_as())) from None
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, tail.offset)
            os.fsync(fd)
        finally:
            os.close(fd)

    # writing -----------------------------------------------------------------

    def append(self, type: str, **fields: Any) -> Entry:
        """Append one record and return it once it is durable (see the module docstring).

        Thread-safe. Raises :class:`~b2bd.journal.entries.BadEntry` for fields that do not
        fit the type (nothing is written), :class:`JournalFailed` if the journal cannot write.
        """
        # Validate outside the lock; only the sequence number and time are set inside it.
        draft = build_entry(type, 0, _EPOCH, fields)
        with self._lock:
            self._check_usable()
            seq = self._next_seq
            ts = self._clock()
            if ts.tzinfo is None:
                raise ValueError("the journal clock must return aware datetimes")
            if ts.tzinfo is not dt.UTC:
                ts = ts.astimezone(dt.UTC)
            record = msgspec.structs.replace(draft, seq=seq, ts=ts)
            # A leader never waits, so its entry has no waiter.
            waiter = _Waiter() if self._flushing else None
            self._pending.append((frame(record), waiter))
            self._next_seq = seq + 1
            self._flushing = True
        if waiter is None:
            failed = self._lead(None)
        else:
            waiter.wait()  # released by the leader: done, failed, or "you lead next"
            failed = self._lead(waiter) if waiter.outcome is _LEAD else waiter.outcome
        if failed is not None:
            raise JournalFailed(failed)
        for listener in self._listeners:
            listener(record)
        return record

    def listen(self, listener: Callable[[Entry], None]) -> None:
        """Call ``listener`` with every entry appended from now on, once it is durable, on the
        appending thread and outside the journal's lock (the daemon's metrics). It must not
        raise: the entry is written either way, and the appender would see the exception."""
        self._listeners.append(listener)

    @property
    def failed(self) -> str | None:
        """Why the journal takes no more appends (a write or fsync failed), or None."""
        with self._lock:
            return self._failed

    def _check_usable(self) -> None:
        if self._closed:
            raise JournalError("the journal is closed")
        if self._failed is not None:
            raise JournalFailed(self._failed)

    def _lead(self, me: _Waiter | None) -> str | None:
        """Write and sync everything pending (the leader's record included) as the one leader,
        then wake the appenders of that batch and hand leadership to the first newer one, if
        any. Returns the failure, if the batch could not be made durable.

        Only one thread leads at a time (``_flushing``); the lock is not held during I/O, so
        records keep queueing for the next batch meanwhile: that is the group commit.
        """
        with self._lock:
            batch, self._pending = self._pending, []
            first = self._durable_seq + 1
            last = self._next_seq - 1
            rotate = self._fd is None or self._size >= self._segment_bytes
            failed = self._failed
        data = batch[0][0] if len(batch) == 1 else b"".join([line for line, _ in batch])
        new_fd: int | None = None
        if failed is None:
            try:
                if rotate:
                    if self._fd is not None:
                        seal = b"%08x %d\n" % (self._crc, self._size)
                        name = self._segments[-1].name + SEAL_SUFFIX
                        _create_durably(self.directory, name, seal, keep_open=False)
                    name = segment_name(first)
                    new_fd = _create_durably(self.directory, name, data, keep_open=True)
                else:
                    assert self._fd is not None
                    _write_all(self._fd, data)
                    os.fdatasync(self._fd)
            except OSError as exc:
                path = self.directory / segment_name(first) if rotate else self._segments[-1].path
                failed = _write_failure(exc, path)
        with self._lock:
            if failed is not None:
                self._failed = failed
            else:
                if new_fd is not None:
                    if self._fd is not None:
                        os.close(self._fd)
                        closed = self._segments[-1]  # its counters become fixed
                        self._segments[-1] = Segment(
                            closed.path, closed.first_seq, first - closed.first_seq, self._size
                        )
                    self._fd = new_fd
                    self._size = 0
                    self._crc = 0
                    self._segments.append(
                        Segment(self.directory / segment_name(first), first, 0, 0)
                    )
                self._size += len(data)
                self._crc = zlib.crc32(data, self._crc)
                self._durable_seq = last
            successor = self._pending[0][1] if self._pending else None
            if successor is None:
                self._flushing = False
                if self._idle_waiters:
                    self._idle.notify_all()
        if successor is not None:  # first, so the next write starts while this batch wakes up
            successor.wake(_LEAD)
        for _, waiter in batch:
            if waiter is not None and waiter is not me:
                waiter.wake(failed)
        return failed

    def _wait_idle(self) -> None:
        """Wait (holding the lock) until no batch is in flight."""
        self._idle_waiters += 1
        try:
            while self._flushing:
                self._idle.wait()
        finally:
            self._idle_waiters -= 1

    def _durable_segments(self) -> tuple[Segment, ...]:
        """The segments with what is durable in them (call holding the lock); the last one's
        count and size are kept in the journal's counters rather than rebuilt on every write."""
        if not self._segments:
            return ()
        last = self._segments[-1]
        count = self._durable_seq - last.first_seq + 1
        return (*self._segments[:-1], Segment(last.path, last.first_seq, count, self._size))

    # reading -----------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The sequence number of the newest durable record (0 when empty)."""
        with self._lock:
            return self._durable_seq

    def state(self) -> State:
        """``replay(self.entries())``, decoding only the fields the state uses (faster)."""
        with self._lock:
            self._check_usable()
            snapshot_ = self._durable_segments()
            opened = open_segments(snapshot_)  # before a compaction can delete them
        return replay(read_segments(snapshot_, brief=True, opened=opened))

    def entries(self, *, with_history: bool = False) -> Iterator[Entry]:
        """Every durable record, from the earliest kept segment (so starting with its checkpoint
        after a compaction) up to the newest appended before this call; ``with_history``: the
        history file's first (:func:`read_history`). Read lazily, segment by segment, from files
        opened here: a compaction meanwhile (the daemon's, while a control-socket thread reads)
        deletes none of them under the reader, and the history file counts only records below
        this snapshot's first."""
        with self._lock:
            self._check_usable()
            snapshot = self._durable_segments()
            first = snapshot[0].first_seq if snapshot else self._next_seq
            opened = open_segments(snapshot)
        live = read_segments(snapshot, opened=opened)
        if not with_history:
            return live
        return itertools.chain(read_history(self.directory, first), live)

    # compaction --------------------------------------------------------------

    def compact(self, *, history_days: int = DEFAULT_HISTORY_DAYS) -> Compaction:
        """Write the history file (runs of the last ``history_days``), then a checkpoint of the
        replayed state as the first record of a new segment, and delete every older segment.
        Appends wait while it runs. Damage in the history file raises :class:`JournalDamaged`
        and changes nothing; failing to write it, or the checkpoint (a full disk), raises
        :class:`JournalError` likewise; :class:`JournalFailed` only once the checkpoint is in
        place but its folder could not be synced."""
        with self._lock:
            self._check_usable()
            self._wait_idle()  # when no batch is in flight, nothing is pending either
            old = self._durable_segments()
            seq = self._next_seq
            now = self._clock().astimezone(dt.UTC)
            try:
                state, kept = self._write_history(old, now - dt.timedelta(days=history_days))
            except OSError as exc:
                path = self.directory / HISTORY_FILE
                error = explain(exc, "cannot write the history file", path, user=running_as())
                raise JournalError(f"{error}; nothing was changed") from None
            record = build_entry("checkpoint", seq, now, {"state": snapshot(state)})
            data = frame(record)
            path = self.directory / segment_name(seq)
            try:
                fd = _create_durably(self.directory, segment_name(seq), data, keep_open=True)
            except OSError as exc:
                if not os.path.lexists(path):  # its temporary file never took the name
                    error = explain(exc, "cannot write the checkpoint", path, user=running_as())
                    raise JournalError(f"{error}; nothing was changed") from None
                self._failed = _write_failure(exc, path)
                raise JournalFailed(self._failed) from None
            assert fd is not None
            if self._fd is not None:
                os.close(self._fd)
            self._fd = fd
            self._size = len(data)
            self._crc = zlib.crc32(data)
            self._segments = [Segment(self.directory / segment_name(seq), seq, 1, len(data))]
            self._next_seq = seq + 1
            self._durable_seq = seq
            for segment in old:  # oldest first: an interruption leaves a contiguous suffix
                segment.path.unlink()
                segment.path.with_name(segment.name + SEAL_SUFFIX).unlink(missing_ok=True)
            fsync_dir(self.directory)
            return Compaction(record, tuple(s.name for s in old), kept)

    def _write_history(self, old: tuple[Segment, ...], cutoff: dt.datetime) -> tuple[State, int]:
        """Rewrite the history file from the previous one and the segments ``old`` (read once,
        for the history and the replayed state, which is returned with the records kept)."""
        keeper = HistoryKeeper(cutoff)
        first = old[0].first_seq if old else self._next_seq
        with _DurableFile(self.directory, HISTORY_FILE) as out:
            for record in read_history(self.directory, first):
                if (kept := keeper.keep(record)) is not None:
                    out.write(frame(kept))

            def tee() -> Iterator[Entry]:
                for record in read_segments(old):
                    if (kept := keeper.keep(record)) is not None:
                        out.write(frame(kept))
                    yield record

            state = replay(tee())
        return state, out.count

    # closing -----------------------------------------------------------------

    def close(self) -> None:
        """Close the journal and release the lock (every acknowledged record is already
        durable; this writes nothing)."""
        with self._lock:
            self._wait_idle()
            if self._closed:
                return
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            os.close(self._lock_fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
