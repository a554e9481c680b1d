"""The journal on disk, read side: layout, framing, seals, scanning and reading segments.

What ``journal verify``, ``journal cat``, ``status``, ``history`` and the benches need: it takes no
lock and writes nothing, so it is safe while the daemon runs. The writer (open, repair, group
commit, compaction) is :mod:`b2bd.journal.writer`.


Layout. ``<state_dir>/journal/`` holds segments named by the sequence number of their first
record, ``0000000000000001.log`` (16 digits, so names sort in order), plus ``lock`` (held with
``flock`` by the one process that writes) and any ``*.broken`` files kept by repairs.

Framing. One record per line: the record's JSON object (:mod:`b2bd.journal.entries`) with a last
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

History. Compaction keeps the recent run and transfer outcomes in ``history.jsonl`` (framed
like a segment; see :mod:`b2bd.journal.writer`). Its records keep their sequence numbers; only
those below the live journal's first record count as history. Replay (start-up) never reads it;
``history``, ``journal cat`` and ``journal verify`` do (:func:`read_history`).
"""

from __future__ import annotations

import itertools
import os
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import msgspec

from b2bd.confined import Folder
from b2bd.faults import ConfinedError
from b2bd.journal.entries import Codec, Entry, JournalRepaired, to_json
from b2bd.journal.state import State, replay

JOURNAL_DIR = "journal"
HISTORY_FILE = "history.jsonl"
_SEGMENT_RE = re.compile(r"^(\d{16})\.log$")
_CRC_SUFFIX = b',"crc":"%08x"}'
_CRC_MARK = b',"crc":"'
_SUFFIX_LEN = 18
_RECORD_START = b'{"type":"'
_CHECKPOINT_START = b'{"type":"checkpoint",'
_REPAIRED_MARK = b'{"type":"journal-repaired",'
SEAL_SUFFIX = ".sum"


class JournalError(Exception):
    """Base of the journal's errors; the message is meant for the operator."""


class JournalDamaged(JournalError):
    """The journal is damaged somewhere a crash cannot explain; nothing was changed."""

    def __init__(self, segment: str, offset: int, what: str) -> None:
        super().__init__(f"journal damaged: segment {segment}, byte {offset}: {what}")
        self.segment = segment
        self.offset = offset
        self.what = what


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


def frame(record: Entry) -> bytes:
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


class OpenSegments:
    """Segments' files opened at one moment (:func:`open_segments`): a reader holding them reads
    what they held even if a compaction deletes them meanwhile. Closed when read through, or
    when dropped (a reader that stops early or never starts leaks nothing)."""

    def __init__(self, segments: tuple[Segment, ...]) -> None:
        self._fds: list[int] = []
        try:
            for segment in segments:
                self._fds.append(os.open(segment.path, os.O_RDONLY | os.O_CLOEXEC))
        except BaseException:
            self.close()
            raise

    def read(self, index: int, size: int) -> bytes:
        fd = self._fds[index]
        chunks: list[bytes] = []
        offset = 0
        while offset < size:
            chunk = os.pread(fd, size - offset, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)

    def __del__(self) -> None:
        self.close()


def open_segments(segments: tuple[Segment, ...]) -> OpenSegments:
    """Every segment's file, opened now (the writer's :meth:`Journal.entries` opens them under
    the journal's lock, which a compaction holds while it deletes segments)."""
    return OpenSegments(segments)


def read_segments(
    segments: list[Segment] | tuple[Segment, ...],
    *,
    brief: bool = False,
    opened: OpenSegments | None = None,
) -> Iterator[Entry]:
    """Decode the good records of these segments in order, checking sequence numbers.

    ``brief``: decode ``transfer-succeeded`` as :class:`TransferSucceededBrief` (for replay).
    ``opened``: the segments' files, already open (:func:`open_segments`); closed here.
    """
    decode_lines = (Codec.brief_decoder if brief else Codec.decoder).decode_lines
    try:
        yield from _decode_segments(segments, decode_lines, opened)
    finally:
        if opened is not None:
            opened.close()


def _decode_segments(
    segments: list[Segment] | tuple[Segment, ...],
    decode_lines: Callable[[bytes], Sequence[Entry]],
    opened: OpenSegments | None,
) -> Iterator[Entry]:
    for index, segment in enumerate(segments):
        try:
            if opened is not None:
                data = opened.read(index, segment.size)
            else:
                with segment.path.open("rb") as f:
                    data = f.read(segment.size)
        except OSError as exc:  # pread names no file: say which segment it was
            if exc.filename is None:
                exc.filename = str(segment.path)
            raise
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


def read_journal(state_dir: Path, *, with_history: bool = False) -> Iterator[Entry]:
    """Every record of the journal under ``state_dir``, read-only and without taking the lock
    (safe while the daemon runs). A damaged last record, which may be a write in flight, is
    left out; any other damage raises :class:`JournalDamaged` before a record is yielded.

    ``with_history``: first the history kept by compactions (:func:`read_history`; damage in
    it raises :class:`JournalDamaged` when reached)."""
    directory = state_dir / JOURNAL_DIR
    scan, opened = _scan_and_open(directory)
    live = read_segments(scan.segments, opened=opened)
    if not with_history:
        return live
    first = scan.segments[0].first_seq if scan.segments else scan.next_seq
    return itertools.chain(read_history(directory, first), live)


def read_history(directory: Path, before: int) -> Iterator[Entry]:
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


def _history_record(line: bytes, last_seq: int) -> tuple[Entry | None, str]:
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
    scan, opened = _scan_and_open(state_dir / JOURNAL_DIR)
    return replay(read_segments(scan.segments, brief=True, opened=opened))


_SCAN_TRIES = 5
_T = TypeVar("_T")


def scan_journal_retrying(directory: Path, *, deep: bool = False) -> JournalScan:
    """:func:`scan_journal` for a reader without the lock (``journal verify``): a segment that
    vanishes between the listing and its read was deleted by a compaction (the daemon's), whose
    checkpoint segment is already in place, so scanning again finds a consistent journal."""
    return _retrying(directory, lambda: scan_journal(directory, deep=deep))


def _scan_and_open(directory: Path) -> tuple[JournalScan, OpenSegments]:
    """Scan the journal (damage raises :class:`JournalDamaged`) and open its live segments, for
    a reader without the lock; retried like :func:`scan_journal_retrying`. Once open, the files
    stay readable whatever a compaction deletes."""

    def attempt() -> tuple[JournalScan, OpenSegments]:
        scan = scan_journal(directory)
        if scan.damage:
            raise scan.damage[0].error()
        return scan, open_segments(scan.segments)

    return _retrying(directory, attempt)


def _retrying(directory: Path, attempt: Callable[[], _T]) -> _T:
    for tries in range(1, _SCAN_TRIES + 1):
        try:
            return attempt()
        except FileNotFoundError:
            if tries == _SCAN_TRIES or not directory.is_dir():
                raise
    raise AssertionError("unreachable")  # pragma: no cover
