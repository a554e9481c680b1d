"""The journal on disk: segments, framing, durability, recovery and group commit.

Layout. ``<state_dir>/journal/`` holds segments named by the sequence number of their first
record, ``0000000000000001.log`` (16 digits, so names sort in order), plus ``lock`` (held with
``flock`` by the one process that writes) and any ``*.broken`` files kept by repairs.

Framing. One record per line: the record's JSON object (:mod:`b2bd.journal.records`) with a last
key ``"crc"`` holding the CRC-32 (zlib polynomial, 8 lowercase hex digits) of every byte of the
line before ``,"crc":``. So ``{"type":"slot-missed","seq":7,...,"crc":"1a2b3c4d"}\\n``: each line is
plain JSON (``grep``/``jq`` work on the raw files), and its checksum covers its own bytes, so a
damaged record is found without trusting anything around it. Sequence numbers grow by exactly
one from record to record, across segments: a segment named N holding k records is followed by
the segment named N+k, and a missing or reordered segment is damage, not a gap to skip.

Seals. When a segment is closed (the journal moves on to a new one) a ``<segment>.sum`` file is
written beside it holding the CRC-32 and size of the whole segment. Opening checks a sealed
segment with one checksum over the file instead of one per line (what keeps start-up fast); a
segment whose seal is missing or does not match is checked line by line, and the writer
re-seals it when it is intact. A seal is only a shortcut: the per-record checksums decide.

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

from b2bd.confined import ConfinedError, Folder, fsync_dir
from b2bd.faults import explain
from b2bd.journal.history import DEFAULT_HISTORY_DAYS, HistoryKeeper
from b2bd.journal.records import Codec, JournalRepaired, Record, build_record, to_json
from b2bd.journal.state import State, replay, snapshot

DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024
JOURNAL_DIR = "journal"
LOCK_FILE = "lock"
HISTORY_FILE = "history.jsonl"
_SEGMENT_RE = re.compile(r"^(\d{16})\.log$")
_BROKEN_RE = re.compile(r"^(\d{16}\.log)\.(\d+)(?:\.\d+)?\.broken$")
_CRC_SUFFIX = b',"crc":"%08x"}'
_CRC_MARK = b',"crc":"'
_SUFFIX_LEN = 18
_RECORD_START = b'{"type":"'
_CHECKPOINT_START = b'{"type":"checkpoint",'
_REPAIRED_MARK = b'{"type":"journal-repaired",'
SEAL_SUFFIX = ".sum"

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class JournalError(Exception):
    """Base of the journal's errors; the message is meant for the operator."""


class JournalDamaged(JournalError):
    """The journal is damaged somewhere a crash cannot explain; nothing was changed."""

    def __init__(self, segment: str, offset: int, what: str) -> None:
        super().__init__(f"journal damaged: segment {segment}, byte {offset}: {what}")
        self.segment = segment
        self.offset = offset
        self.what = what


class JournalBusy(JournalError):
    """Another process holds the journal open for writing."""


class JournalFailed(JournalError):
    """A write or fsync failed; the journal takes no more appends until it is reopened."""


def repair_message(repair: JournalRepaired) -> str:
    """What a repair did, for the operator (the daemon's log, trigger's stderr)."""
    where = (
        f"segment {repair.segment}, byte {repair.offset}: {repair.length} bytes cut and kept "
        f"in {repair.broken_file}"
    )
    if repair.records:
        return (
            f"journal repaired: {where}; {repair.records} complete record(s) were among them and "
            "may have been acknowledged (check what they say with `cat`; the runs they belong to "
            "show as interrupted or incomplete)"
        )
    return f"journal repaired: {where} (a record whose write was cut short, never acknowledged)"


def segment_name(first_seq: int) -> str:
    return f"{first_seq:016d}.log"


def frame(record: Record) -> bytes:
    """The record's line on disk, newline included (see the module docstring)."""
    head = to_json(record)[:-1]
    return head + _CRC_SUFFIX % zlib.crc32(head) + b"\n"


def seal_bytes(data: bytes) -> bytes:
    """The content of the seal of a closed segment holding ``data``."""
    return b"%08x %d\n" % (zlib.crc32(data), len(data))


def _sealed(path: Path, data: bytes) -> bool:
    try:
        seal = path.with_name(path.name + SEAL_SUFFIX).read_bytes()
    except FileNotFoundError:
        return False
    return seal == seal_bytes(data)


def _line_ok(line: bytes) -> bool:
    return line[-_SUFFIX_LEN:] == _CRC_SUFFIX % zlib.crc32(line[:-_SUFFIX_LEN])


def _what_is_wrong(line: bytes, last: bool) -> str:
    if not line:
        return "empty line where a record should be"
    if last:
        return "incomplete record (the line has no end)"
    if line[-_SUFFIX_LEN:-10] == _CRC_MARK:
        return "checksum mismatch"
    return "malformed record (no checksum at the end of the line)"


@dataclass(frozen=True)
class Damage:
    """What is wrong where. ``repairable``: it is the torn tail of the last segment, which
    opening the journal for writing cuts off (keeping the bytes)."""

    segment: str
    offset: int
    what: str
    repairable: bool = False

    def error(self) -> JournalDamaged:
        return JournalDamaged(self.segment, self.offset, self.what)


@dataclass(frozen=True)
class Segment:
    """A segment as found: its first sequence number, how many good records it holds and how
    many bytes they take (the damaged tail, if any, excluded)."""

    path: Path
    first_seq: int
    count: int
    size: int

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class JournalScan:
    """The result of checking a journal dir without changing it."""

    directory: Path
    segments: tuple[Segment, ...]
    superseded: tuple[Path, ...]
    damage: tuple[Damage, ...]
    tail: Damage | None
    repaired_files: frozenset[str]
    unsealed: tuple[Path, ...] = ()

    @property
    def next_seq(self) -> int:
        if not self.segments:
            return 1
        last = self.segments[-1]
        return last.first_seq + last.count

    @property
    def intact(self) -> bool:
        return not self.damage and self.tail is None


def _check_lines(data: bytes) -> tuple[int, int, tuple[int, str] | None]:
    """(good records, bytes they take, first problem as (offset, what) or None)."""
    lines = data.split(b"\n")
    tail = lines.pop()
    ok = _line_ok
    for i, line in enumerate(lines):
        if not ok(line):
            offset = sum(map(len, lines[:i])) + i
            return i, offset, (offset, _what_is_wrong(line, last=False))
    if tail:
        offset = len(data) - len(tail)
        return len(lines), offset, (offset, _what_is_wrong(tail, last=True))
    return len(lines), len(data), None


def _valid_record_after(data: bytes, offset: int) -> bool:
    """Whether any checksum-valid record starts anywhere after ``offset`` (not only at line
    starts: a damaged newline merges a good record into the bad line before it)."""
    pos = data.find(_RECORD_START, offset + 1)
    while pos != -1:
        end = data.find(b"\n", pos)
        if _line_ok(data[pos : end if end != -1 else len(data)]):
            return True
        pos = data.find(_RECORD_START, pos + 1)
    return False


def _first_line(path: Path, data: bytes | None = None) -> bytes:
    if data is None:
        with path.open("rb") as f:
            return f.readline().rstrip(b"\n")
    return data.split(b"\n", 1)[0]


def _starts_with_checkpoint(path: Path) -> bool:
    with path.open("rb") as f:
        if f.read(len(_CHECKPOINT_START)) != _CHECKPOINT_START:
            return False
    return _line_ok(_first_line(path))


def _segment_paths(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for entry in os.scandir(directory):
        m = _SEGMENT_RE.match(entry.name)
        if m:
            found.append((int(m.group(1)), Path(entry.path)))
    return sorted(found)


def _repairs_recorded(data: bytes) -> set[str]:
    names: set[str] = set()
    pos = data.find(_REPAIRED_MARK)
    while pos != -1:
        end = data.find(b"\n", pos)
        line = data[pos : end if end != -1 else len(data)]
        if _line_ok(line):
            record = Codec.decoder.decode(line)
            if isinstance(record, JournalRepaired):
                names.add(record.broken_file)
        pos = data.find(_REPAIRED_MARK, pos + 1)
    return names


def _deep_check(data: bytes, size: int, first_seq: int) -> tuple[int, str] | None:
    """Decode every good line and check its sequence number (``journal verify``)."""
    offset = 0
    for i, line in enumerate(data[:size].split(b"\n")[:-1]):
        try:
            record = Codec.decoder.decode(line)
        except msgspec.DecodeError as exc:
            return offset, f"record does not decode: {exc}"
        if record.seq != first_seq + i:
            return offset, f"record has sequence number {record.seq}, expected {first_seq + i}"
        offset += len(line) + 1
    return None


def scan_journal(directory: Path, *, deep: bool = False) -> JournalScan:
    """Check every segment of the journal in ``directory`` without changing anything.

    ``deep`` also decodes every record and checks its sequence number (slower; the cheap scan
    checks checksums and counts, which is what a crash can break).
    """
    found = _segment_paths(directory) if directory.is_dir() else []
    start = 0
    for i in range(len(found) - 1, 0, -1):
        if _starts_with_checkpoint(found[i][1]):
            start = i
            break
    superseded = tuple(path for _, path in found[:start])
    live = found[start:]
    segments: list[Segment] = []
    damage: list[Damage] = []
    tail: Damage | None = None
    repaired: set[str] = set()
    unsealed: list[Path] = []
    expected: int | None = None
    for index, (first, path) in enumerate(live):
        data = path.read_bytes()
        name = path.name
        closed = index < len(live) - 1
        if expected is None and first != 1:
            head = _first_line(path, data)
            if not (head.startswith(_CHECKPOINT_START) and _line_ok(head)):
                what = (
                    f"the journal starts at record {first} without a checkpoint: "
                    "earlier segments are missing"
                )
                damage.append(Damage(name, 0, what))
        elif expected is not None and first != expected:
            what = (
                f"records {expected}..{first - 1} are missing (a segment was removed)"
                if first > expected
                else f"segment starts at record {first}, but the one before ends at {expected - 1}"
            )
            damage.append(Damage(name, 0, what))
        if closed and not deep and _sealed(path, data):
            count, size, problem = data.count(b"\n"), len(data), None
        else:
            count, size, problem = _check_lines(data)
            if closed and problem is None:
                unsealed.append(path)
        torn = problem is not None and not closed
        if problem is None and deep:
            problem = _deep_check(data, size, first)
        if problem is not None:
            offset, what = problem
            if torn and not _valid_record_after(data, offset):
                tail = Damage(name, offset, what, repairable=True)
            else:
                damage.append(Damage(name, offset, what))
            count, size = data[:offset].count(b"\n"), offset
        repaired |= _repairs_recorded(data)
        segments.append(Segment(path, first, count, size))
        expected = first + count
    return JournalScan(
        directory,
        tuple(segments),
        superseded,
        tuple(damage),
        tail,
        frozenset(repaired),
        tuple(unsealed),
    )


def read_segments(
    segments: list[Segment] | tuple[Segment, ...], *, brief: bool = False
) -> Iterator[Record]:
    """Decode the good records of these segments in order, checking sequence numbers.

    ``brief``: decode ``transfer-succeeded`` as :class:`TransferSucceededBrief` (for replay).
    """
    decode_lines = (Codec.brief_decoder if brief else Codec.decoder).decode_lines
    for segment in segments:
        with segment.path.open("rb") as f:
            data = f.read(segment.size)
        if len(data) != segment.size:
            raise JournalDamaged(segment.name, len(data), "segment is shorter than when opened")
        try:
            records = decode_lines(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            problem = _deep_check(data, len(data), segment.first_seq)
            offset, what = problem if problem else (0, "records do not decode")
            raise JournalDamaged(segment.name, offset, what) from None
        first = segment.first_seq
        for i, record in enumerate(records):
            if record.seq != first + i:
                problem = _deep_check(data, len(data), first)
                offset, what = problem if problem else (0, "sequence numbers out of order")
                raise JournalDamaged(segment.name, offset, what)
        yield from records


def read_journal(state_dir: Path, *, with_history: bool = False) -> Iterator[Record]:
    """Every record of the journal under ``state_dir``, read-only and without taking the lock
    (safe while the daemon runs). A damaged last record, which may be a write in flight, is
    left out; any other damage raises :class:`JournalDamaged` before a record is yielded.

    ``with_history``: first the history kept by compactions (:func:`read_history`; damage in
    it raises :class:`JournalDamaged` when reached)."""
    directory = state_dir / JOURNAL_DIR
    scan = scan_journal(directory)
    if scan.damage:
        raise scan.damage[0].error()
    live = read_segments(scan.segments)
    if not with_history:
        return live
    first = scan.segments[0].first_seq if scan.segments else scan.next_seq
    return itertools.chain(read_history(directory, first), live)


def read_history(directory: Path, before: int) -> Iterator[Record]:
    """The records of the journal dir's history file with sequence numbers below ``before``
    (the live journal's first record; see the module docstring). Each line's checksum is
    checked as it is read: damage raises :class:`JournalDamaged` naming the file and offset.
    Anything but a regular file there (a FIFO, a symlink) is damage too: never waited on or
    followed (:meth:`~b2bd.confined.Folder.open_read`)."""
    try:
        with Folder.open(directory) as folder:
            reader = folder.open_read(HISTORY_FILE)
    except ConfinedError as exc:
        if exc.kind == "missing":
            return
        if exc.kind == "not-ours":
            raise JournalDamaged(HISTORY_FILE, 0, exc.what) from None
        raise
    with reader, os.fdopen(reader.fd, "rb", closefd=False) as f:
        offset = 0
        last = 0
        for line in f:
            record, what = _history_record(line, last)
            if record is None:
                raise JournalDamaged(HISTORY_FILE, offset, what)
            if record.seq >= before:
                return
            yield record
            last = record.seq
            offset += len(line)


def _history_record(line: bytes, last_seq: int) -> tuple[Record | None, str]:
    if not line.endswith(b"\n"):
        return None, "incomplete record (the line has no end)"
    line = line[:-1]
    if not _line_ok(line):
        return None, _what_is_wrong(line, last=False)
    try:
        record = Codec.decoder.decode(line)
    except msgspec.DecodeError as exc:
        return None, f"record does not decode: {exc}"
    if record.seq <= last_seq:
        return None, f"record has sequence number {record.seq}, not above {last_seq}"
    return record, ""


def verify_history(directory: Path) -> Damage | None:
    """The first damage in the history file, if any (for ``journal verify``)."""
    try:
        for _ in read_history(directory, before=2**63):
            pass
    except JournalDamaged as exc:
        return Damage(exc.segment, exc.offset, exc.what)
    return None


def read_state(state_dir: Path) -> State:
    """The replayed state of the journal under ``state_dir``, read-only like
    :func:`read_journal`."""
    scan = scan_journal(state_dir / JOURNAL_DIR)
    if scan.damage:
        raise scan.damage[0].error()
    return replay(read_segments(scan.segments, brief=True))


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
        explain(exc, "cannot write the journal", path)
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

    checkpoint: Record
    removed: tuple[str, ...]
    history: int = 0  # records now in the history file


class Journal:
    """The open journal of one state dir: the only writer (an exclusive ``flock``)."""

    def __init__(
        self, directory: Path, clock: Clock, segment_bytes: int, lock_fd: int, scan: JournalScan
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

    # opening -----------------------------------------------------------------

    @classmethod
    def open(
        cls,
        state_dir: Path,
        clock: Clock = utc_now,
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
            raise JournalError(explain(exc, "cannot open the journal", directory)) from None
        try:
            journal._record_repairs()
        except BaseException:
            journal.close()
            raise
        return journal

    @classmethod
    def _open(cls, directory: Path, clock: Clock, segment_bytes: int) -> Journal:
        state_dir = directory.parent
        if not directory.is_dir():
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            directory.mkdir(mode=0o700, exist_ok=True)
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
            raise JournalError(explain(exc, doing, scan.directory)) from None
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, tail.offset)
            os.fsync(fd)
        finally:
            os.close(fd)

    # writing -----------------------------------------------------------------

    def append(self, type: str, **fields: Any) -> Record:
        """Append one record and return it once it is durable (see the module docstring).

        Thread-safe. Raises :class:`~b2bd.journal.records.BadRecord` for fields that do not
        fit the type (nothing is written), :class:`JournalFailed` if the journal cannot write.
        """
        # Validate outside the lock; only the sequence number and time are set inside it.
        draft = build_record(type, 0, _EPOCH, fields)
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
        return record

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
        """``replay(self.records())``, decoding only the fields the state uses (faster)."""
        with self._lock:
            self._check_usable()
            snapshot_ = self._durable_segments()
        return replay(read_segments(snapshot_, brief=True))

    def records(self, *, with_history: bool = False) -> Iterator[Record]:
        """Every durable record, from the earliest kept segment (so starting with its checkpoint
        after a compaction) up to the newest appended before this call; ``with_history``: the
        history file's first (:func:`read_history`). Read lazily, segment by segment: do not
        compact while iterating (the segments being read would be deleted)."""
        with self._lock:
            self._check_usable()
            snapshot = self._durable_segments()
            first = snapshot[0].first_seq if snapshot else self._next_seq
        live = read_segments(snapshot)
        if not with_history:
            return live
        return itertools.chain(read_history(self.directory, first), live)

    # compaction --------------------------------------------------------------

    def compact(self, *, history_days: int = DEFAULT_HISTORY_DAYS) -> Compaction:
        """Write the history file (runs of the last ``history_days``), then a checkpoint of the
        replayed state as the first record of a new segment, and delete every older segment.
        Appends wait while it runs. Damage in the history file raises :class:`JournalDamaged`
        and changes nothing; failing to write it raises :class:`JournalError` likewise."""
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
                error = explain(exc, "cannot write the history file", path)
                raise JournalError(f"{error}; nothing was changed") from None
            record = build_record("checkpoint", seq, now, {"state": snapshot(state)})
            data = frame(record)
            try:
                fd = _create_durably(self.directory, segment_name(seq), data, keep_open=True)
            except OSError as exc:
                self._failed = _write_failure(exc, self.directory / segment_name(seq))
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

            def tee() -> Iterator[Record]:
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
