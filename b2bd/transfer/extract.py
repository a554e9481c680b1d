"""The streaming part of a transfer: source records -> cohort and kind filters -> delivery lines.

Two passes over the source, both streamed:

1. **Pupils** (small: hundreds to a few thousand per base): decide the cohort, a set of UPNs;
   also the set of every UPN the source still has (deletions of pupils the source no longer
   holds, and leavers missing at the source, are decided with it). Two different records with
   one UPN are both rejected (``duplicate-key``; an identical repeat is delivered once), which
   needs the whole pass before anything is delivered: the pass holds at most
   :data:`PUPIL_BYTES` of pupil lines (far more than any school has), beyond that the export is
   ``bad-data``.
2. **Marks / results / deletions** (marks run to millions): each accepted line whose pupil is
   in the cohort and which passes the kind's filters is written *as its raw bytes* with
   ``"kind"`` spliced in front (:func:`b2bd.records.model.tagged_line`), never re-encoded.
   A delivery never holds more marks than the cohort has sessions in the window
   (:func:`mark_cap`): beyond that the export is ``bad-data``, before it fills the LA store.

**Every line read is accounted for** (:class:`Tally`): it is delivered (``counts``), rejected
(``rejected``: the record is bad, whichever pupil it concerns; a line that fails its checks
cannot be trusted to say whose it is) or dropped (``dropped``: a good record this transfer does
not deliver), each by reason, so ``read == delivered + rejected + dropped``.

**Timestamps from the future** (DESIGN section 5): a change time later than ``not_after`` (the
export's ``exported_at`` or the transfer's start, whichever is earlier, plus 5 minutes:
:func:`future_horizon`) is rejected ``future-timestamp`` and never reaches the watermark.

**Every window ends at D** (DESIGN section 5, :mod:`b2bd.transfer.query`): a mark or result dated
after D is not delivered, and a record changed at or after ``query.until`` (the end of D) is
not delivered by a change-driven kind and never reaches the watermark (dropped
``after-reference-date``), so a later run delivers it.

The watermark candidate (``high``) is the largest change time before the end of D among the
accepted records of the kinds the transfer delivers, read *before* cohort filtering (DESIGN
section 5): a change to a pupil outside the cohort must not be re-read forever. It only matters
when the transfer succeeds, which needs every file read to its end and matching any counts the
export declared.

**The cohort's edge** (from-school changed data, ``query.members``): a cohort member the task
does not remember gets their full record whatever its change time (``joined``), a remembered
pupil outside the cohort gets their current record once (``left``); :class:`Tally` says who is
in the cohort now and who the source holds, as memory keys, for the engine to journal.

Nothing here writes pupil data anywhere but the delivery; counts and reasons only.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from b2bd.connectors.source import ConnectorError, Deadline, Source
from b2bd.records.check import Rejection
from b2bd.records.model import Deletion, Pupil, Record, Result, SessionMark, tagged_line
from b2bd.transfer.query import DateWindow, Query, in_cohort

BATCH = 8192
"""Lines joined into one write; progress is reported about every 65,536 lines read."""

FUTURE_TOLERANCE = dt.timedelta(minutes=5)
"""How far past the export's time a change time may be before it counts as from the future."""

PUPIL_BYTES = 8 << 20
"""Pupil lines the pupils pass may hold: about 25,000 pupils (the largest English schools have
about 4,000, ~2 MB), and about 40 MiB of memory at most with their records (measured)."""

DROPPED: dict[str, str] = {
    "not-in-cohort": "the record's pupil is not in the task's cohort at the reference date",
    "unchanged": "changed before the watermark (changed-data types)",
    "outside-window": "dated outside the task's window (academic year, months, up to D)",
    "after-reference-date": "changed after the reference date D, or a result dated after it: "
    "a later run delivers it",
    "code-not-selected": "a mark whose code is not in the task's attendance category",
    "kind-not-selected": "a deletion of a record kind this data type does not deliver",
    "cohort-only": "a pupil record read to decide the cohort of a data type that delivers none",
}
"""Why a good record was not delivered (``Tally.dropped``), with what it means."""

Progress = Callable[[int], None]
"""Told the number of records read so far, between batches."""


def future_horizon(exported_at: str | None, now: dt.datetime) -> str:
    """The latest acceptable change time, as ``YYYY-MM-DDTHH:MM:SSZ``: the export's own time
    plus :data:`FUTURE_TOLERANCE`, but never later than ``now`` (the transfer's start) plus it:
    an export that claims to come from the future is itself a bad clock, and must not carry the
    watermark past changes not yet made."""
    base = now.astimezone(dt.UTC)
    if exported_at:
        told = dt.datetime.strptime(exported_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        base = min(base, told)
    return (base + FUTURE_TOLERANCE).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Tally:
    """What a transfer read and did with it: ``read`` lines; ``counts`` delivered per kind;
    ``rejected`` and ``dropped`` per reason (their sum with the deliveries is ``read``);
    ``missing`` (remembered pupils the source no longer has); ``high`` (watermark candidate,
    ``""`` when nothing was read) and the UPNs of pupils the delivery is about. Following the
    cohort's edge: ``joined_keys`` and ``left_keys``, the memory keys of the pupils sent for
    joining the task's cohort and for having left it (the engine journals them as the change
    of the task's cohort memory)."""

    counts: dict[str, int]
    rejected: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    missing: int = 0
    high: str = ""
    read: int = 0
    pupils: set[str] = field(default_factory=set)
    joined_keys: set[int] = field(default_factory=set)
    left_keys: set[int] = field(default_factory=set)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    @property
    def accounted(self) -> int:
        """Lines delivered, rejected or dropped: equals ``read`` once a transfer is done."""
        return sum(self.counts.values()) + self.rejected_total + sum(self.dropped.values())

    def reject(self, rejection: Rejection, n: int = 1) -> None:
        self.rejected[rejection.reason] = self.rejected.get(rejection.reason, 0) + n

    def drop(self, reason: str, n: int = 1) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + n


Write = Callable[[bytes], None]

_NL = b"\n"
_PREFIX: dict[str, bytes] = {kind: b'{"kind":"%s",' % kind.encode() for kind in ("pupil", "mark")}
_FUTURE = Rejection("future-timestamp", "updated_at")
_FUTURE_DELETION = Rejection("future-timestamp", "deleted_at")
_DUPLICATE = Rejection("duplicate-key", "upn")


def _no_deadline() -> None:
    pass


def extract(
    source: Source,
    query: Query,
    write: Write,
    key: Callable[[str], int],
    *,
    deadline: Deadline = _no_deadline,
    progress: Progress | None = None,
    not_after: str = "9999-12-31T23:59:59Z",
) -> Tally:
    """Run both passes of ``query`` over ``source``, writing delivery lines through ``write``
    (bytes of whole ``\\n``-terminated lines). ``not_after``: the :func:`future_horizon`.
    Raises whatever the source, ``write`` or ``deadline`` raise; the caller then discards the
    partial delivery."""
    tally = Tally(counts={kind: 0 for kind in query.kinds_delivered})
    tick = progress or _no_progress
    cohort, known = _pupils(source, query, write, key, tally, deadline, not_after)
    tick(tally.read)
    if query.cohort_group == "leavers" and query.direction == "from-school":
        held = {key(upn) for upn in known}
        tally.missing = len(query.leavers - held)
    for kind in query.kinds_read[1:]:
        # ``since`` lets an API source ask only for changes (pupils are always read whole).
        records = source.read(kind, query.since, deadline=deadline)
        if kind == "mark":
            _marks(records, query, cohort, write, tally, deadline, tick, not_after)
        elif kind == "result":
            _results(records, query, cohort, write, tally, deadline, tick, not_after)
        elif kind == "deletion":
            _deletions(records, query, cohort, known, write, key, tally, deadline, tick,
                       not_after)  # fmt: skip
        tick(tally.read)
    return tally


def _no_progress(_records: int) -> None:
    pass


def _pupils(
    source: Source,
    query: Query,
    write: Write,
    key: Callable[[str], int],
    tally: Tally,
    deadline: Deadline,
    not_after: str,
) -> tuple[set[str], set[str]]:
    """The cohort and every UPN the source holds; delivers the cohort's changed pupils, and
    those crossing the cohort's edge (see the module docstring)."""
    first: dict[str, tuple[bytes, Pupil]] = {}
    conflicts: dict[str, int] = {}  # UPN -> copies of two or more different records
    held = 0
    for line, record in source.read("pupil", deadline=deadline):
        tally.read += 1
        if record.__class__ is not Pupil:
            tally.reject(record)  # type: ignore[arg-type]  # not the struct: a Rejection
            continue
        pupil: Pupil = record
        if pupil.updated_at > not_after:
            tally.reject(_FUTURE)
            continue
        upn = pupil.upn
        seen = first.get(upn)
        if seen is not None or upn in conflicts:
            if seen is not None and seen[0] == line:
                tally.reject(_DUPLICATE)  # the same record again: delivered once
            else:
                conflicts[upn] = conflicts.get(upn, 1 if seen is None else 2) + (seen is None)
                if seen is not None:
                    del first[upn]
            continue
        held += len(line)
        if held > PUPIL_BYTES:
            raise ConnectorError(
                "bad-data",
                f"pupils: more than {PUPIL_BYTES >> 20} MiB of pupil records, "
                "more than any one school's export holds",
            )
        first[upn] = (line, pupil)
    for copies in conflicts.values():
        tally.reject(_DUPLICATE, copies)
    cohort: set[str] = set()
    known: set[str] = set(first) | set(conflicts)
    deliver = "pupil" in query.kinds_delivered
    since = query.since
    until = query.until
    later_dropped = query.changes
    members = query.members
    high = tally.high
    out: list[bytes] = []
    delivered = outside = unchanged = later = 0
    for upn, (line, pupil) in first.items():
        changed = pupil.updated_at
        if deliver and high < changed < until:
            high = changed
        memory_key = 0
        remembered = False
        if members is not None:
            memory_key = key(upn)
            remembered = memory_key in members
        if not in_cohort(query, pupil, key):
            if not (remembered and deliver):
                outside += 1
                continue
            if changed >= until:  # its current record is after D: a later run sends it
                later += 1
                continue
            tally.left_keys.add(memory_key)  # left since last sent: the current record, once
        else:
            cohort.add(upn)
            if not deliver:
                continue
            joiner = members is not None and not remembered
            if not joiner and since is not None and changed < since:
                unchanged += 1
                continue
            if later_dropped and changed >= until:
                later += 1  # a joiner too: it stays unremembered, so a later run sends it
                continue
            if joiner:
                tally.joined_keys.add(memory_key)  # the full record, however old
        out.append(tagged_line("pupil", line) + _NL)
        tally.pupils.add(upn)
        delivered += 1
        if len(out) >= BATCH:
            write(b"".join(out))
            out.clear()
    if out:
        write(b"".join(out))
    if deliver:
        tally.counts["pupil"] = delivered
        tally.drop("not-in-cohort", outside)
        tally.drop("unchanged", unchanged)
        tally.drop("after-reference-date", later)
    else:
        tally.drop("cohort-only", len(first))
    tally.high = high
    deadline()
    return cohort, known


def _marks(
    records: Iterator[tuple[bytes, Record | Rejection]],
    query: Query,
    cohort: set[str],
    write: Write,
    tally: Tally,
    deadline: Deadline,
    tick: Progress,
    not_after: str,
) -> None:
    """The hot loop (DESIGN section 9: >= 300,000 marks/s): locals only, one class check,
    string comparisons on ISO dates/times, raw bytes out, one local counter per outcome."""
    codes = query.codes
    dates = query.dates
    first = (dates.first if dates else None) or ""
    last = (dates.last if dates else None) or "9999-12-31"
    since = query.since or ""
    until = query.until
    later_dropped = query.changes
    high = tally.high
    horizon = not_after
    prefix = _PREFIX["mark"]
    nl = _NL
    mark_type = SessionMark
    pupils = tally.pupils
    out: list[bytes] = []
    append = out.append
    delivered = read = future = outside = unchanged = window = other_code = later = 0
    cap = mark_cap(len(cohort), dates)
    last_upn = ""
    for line, mark in records:
        read += 1
        if mark.__class__ is not mark_type:
            tally.reject(mark)  # type: ignore[arg-type]  # not the struct: a Rejection
            continue
        changed = mark.updated_at
        if changed > high:
            # high never passes the horizon nor the end of D, so a time beyond either is
            # always above high: the checks cost nothing on the common path.
            if changed > horizon:
                future += 1
                continue
            if changed < until:
                high = changed
            elif later_dropped:
                later += 1
                continue
            # else: a mark dated in the window but amended after D: delivered by its date,
            # never raising the watermark
        upn = mark.upn
        if upn not in cohort:
            outside += 1
            continue
        if changed < since:
            unchanged += 1
            continue
        day = mark.date
        if day < first or day > last:
            window += 1
            continue
        if codes is not None and mark.code not in codes:
            other_code += 1
            continue
        if upn != last_upn:
            pupils.add(upn)
            last_upn = upn
        # Accepted lines are JSON objects; a leading '{' is the norm, whitespace the exception.
        append(prefix + line[1:] + nl if line[0] == 123 else tagged_line("mark", line) + nl)
        if len(out) >= BATCH:
            delivered += len(out)
            if delivered > cap:
                raise _too_many_marks(len(cohort))
            write(b"".join(out))
            out.clear()
        if not read & 0xFFFF:
            deadline()
            tick(tally.read + read)
    if out:
        delivered += len(out)
        if delivered > cap:
            raise _too_many_marks(len(cohort))
        write(b"".join(out))
    tally.read += read
    tally.high = high
    tally.counts["mark"] = tally.counts.get("mark", 0) + delivered
    if future:
        tally.reject(_FUTURE, future)
    tally.drop("not-in-cohort", outside)
    tally.drop("unchanged", unchanged)
    tally.drop("outside-window", window)
    tally.drop("code-not-selected", other_code)
    tally.drop("after-reference-date", later)
    deadline()


def mark_cap(pupils: int, dates: DateWindow | None) -> float:
    """The most marks a delivery can hold: two sessions a day for every pupil of the cohort on
    every day of the window (an export holds each session's current mark once). More is a
    runaway or repeated export, which would otherwise fill the LA store until the timeout and
    fail every other school's delivery there. Unbounded when the window has no first day."""
    if dates is None or dates.first is None or dates.last is None:
        return math.inf
    days = (dt.date.fromisoformat(dates.last) - dt.date.fromisoformat(dates.first)).days + 1
    return 2 * pupils * max(days, 0)


def _too_many_marks(pupils: int) -> ConnectorError:
    return ConnectorError(
        "bad-data",
        f"marks: more than two a day for each of the cohort's {pupils} pupils over the window "
        "(a repeated or runaway export)",
    )


def _results(
    records: Iterator[tuple[bytes, Record | Rejection]],
    query: Query,
    cohort: set[str],
    write: Write,
    tally: Tally,
    deadline: Deadline,
    tick: Progress,
    not_after: str,
) -> None:
    out: list[bytes] = []
    delivered = outside = later = 0
    high = tally.high
    until = query.until
    day = query.day
    for line, result in records:
        tally.read += 1
        if result.__class__ is not Result:
            tally.reject(result)  # type: ignore[arg-type]  # not the struct: a Rejection
            continue
        changed = result.updated_at
        if changed > not_after:
            tally.reject(_FUTURE)
            continue
        if high < changed < until:
            high = changed
        upn = result.upn
        if upn not in cohort:
            outside += 1
            continue
        if result.result_date > day:
            later += 1
            continue
        tally.pupils.add(upn)
        out.append(tagged_line("result", line) + _NL)
        if len(out) >= BATCH:
            delivered += len(out)
            write(b"".join(out))
            out.clear()
            tick(tally.read)
    if out:
        delivered += len(out)
        write(b"".join(out))
    tally.high = high
    tally.counts["result"] = tally.counts.get("result", 0) + delivered
    tally.drop("not-in-cohort", outside)
    tally.drop("after-reference-date", later)
    deadline()


def _deletions(
    records: Iterator[tuple[bytes, Record | Rejection]],
    query: Query,
    cohort: set[str],
    known: set[str],
    write: Write,
    key: Callable[[str], int],
    tally: Tally,
    deadline: Deadline,
    tick: Progress,
    not_after: str,
) -> None:
    """Deletions changed since the watermark, of the record kinds the query names, about a
    cohort pupil or about a pupil the source no longer holds whom the LA was sent before
    (leavers memory): a bulk-deleted leaver's removal reaches the consumers that had them."""
    since = query.since or ""
    until = query.until
    out: list[bytes] = []
    delivered = 0
    high = tally.high
    for line, deletion in records:
        tally.read += 1
        if deletion.__class__ is not Deletion:
            tally.reject(deletion)  # type: ignore[arg-type]  # not the struct: a Rejection
            continue
        changed = deletion.deleted_at
        if changed > not_after:
            tally.reject(_FUTURE_DELETION)
            continue
        if changed >= until:
            tally.drop("after-reference-date")
            continue
        if changed > high:
            high = changed
        if deletion.record not in query.deleted_kinds:
            tally.drop("kind-not-selected")
            continue
        if changed < since:
            tally.drop("unchanged")
            continue
        upn = deletion.key[:13]
        if upn not in cohort and (upn in known or key(upn) not in query.leavers):
            tally.drop("not-in-cohort")
            continue
        out.append(tagged_line("deletion", line) + _NL)
        delivered += 1
        if len(out) >= BATCH:
            write(b"".join(out))
            out.clear()
            tick(tally.read)
    if out:
        write(b"".join(out))
    tally.high = high
    tally.counts["deletion"] = tally.counts.get("deletion", 0) + delivered
    deadline()
