"""What one transfer reads and keeps: task + base + reference date + journal state -> Query.

Pure: no clock, no I/O. DESIGN section 5 is the contract; this module is where its sentences
become code:

- **Reference date D**: the slot's local date in the task's timezone (a trigger's slot is "now",
  so D is today's local date). Cohorts are decided at D.
- **Cohort** (:func:`on_roll`, :class:`Cohort`): ``ncy`` = on roll at D (``admission_date <= D``
  and no ``leaving_date <= D``) with a listed NCY (None = every NCY, X included); ``lac`` = on
  roll at D and ``in_care``; ``leavers`` = ``leaving_date <= D`` *and* the pupil's keyed digest
  is in the base's leavers memory (pupils a succeeded non-leavers from-school transfer sent).
  To-school reads the LA's own records, which say nothing about the school's roll: its cohort is
  "a listed NCY" alone.
- **Data types** (:data:`KINDS_READ`, :data:`KINDS_DELIVERED`): which record files are read and
  which kinds reach the delivery. Pupils are always read first: they decide the cohort.
- **Attendance kinds** (:data:`ATTENDANCE_KINDS`): a table of (academic year, code set, changed).
  ``months: N`` narrows the dates (:func:`attendance_dates`).
- **Every window ends at D**: a mark or result dated after D is never delivered; a change made
  after the end of D (``until``: the first instant of the next local day) is never delivered by
  the change-driven kinds, and never raises the watermark of any kind, so a later run still
  delivers it. A trigger ``--as-of D`` in the past therefore runs exactly as it would have on D
  (with the records as they are now).
- **Watermark**: ``changed``, ``attendance-changed`` and to-school keep records whose change
  time is ``>=`` the (task, base) watermark (inclusive: at-least-once, consumers dedupe on
  (key, updated_at)); the first run (no watermark) keeps everything up to ``until``.
- **Changed data follows pupils across the cohort's edge** (from-school ``changed``):
  ``members`` is what the task remembers delivering at this base (cohort members, as memory
  keys: :mod:`b2bd.journal.memory`). A cohort member it lacks (a joiner: the September intake, an
  admission date arriving, a child newly in care) gets their full record whatever its
  ``updated_at``; a remembered pupil no longer in the cohort (left, with the leaving details;
  moved out of the listed NCYs; out of care) gets their current record once. The transfer
  reports who joined and who left, and the engine journals the memory's change.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

from b2bd.config.model import AttendanceKind, CohortGroup, DataType, Direction, Task
from b2bd.records.academic import academic_year, months_back, previous_academic_year
from b2bd.records.codes import ABSENCES, UNAUTHORISED
from b2bd.records.model import Pupil, RecordKind
from b2bd.schedule import local_to_utc

YearChoice = Literal["current", "previous", "any"]


@dataclass(frozen=True, slots=True)
class AttendanceRule:
    """What an attendance kind keeps: marks dated in ``year``, with a code in ``codes``
    (None = every code), and for ``changed`` only marks changed since the watermark."""

    year: YearChoice
    codes: frozenset[str] | None
    changed: bool = False


ATTENDANCE_KINDS: dict[AttendanceKind, AttendanceRule] = {
    "all-attendances-current-year": AttendanceRule("current", None),
    "unauthorised-absences-current-year": AttendanceRule("current", UNAUTHORISED),
    "all-absences-current-year": AttendanceRule("current", ABSENCES),
    "all-attendances-previous-year": AttendanceRule("previous", None),
    "attendance-changed": AttendanceRule("any", None, changed=True),
}
"""DESIGN section 5's attendance kinds as data (codes from :mod:`b2bd.records.codes`)."""

KINDS_READ: dict[DataType, tuple[RecordKind, ...]] = {
    "snapshot": ("pupil",),
    "changed": ("pupil", "deletion"),
    "attainment": ("pupil", "result"),
    "attendance": ("pupil", "mark"),
}
"""Record files a from-school transfer of each data type reads, in order (pupils first)."""

KINDS_DELIVERED: dict[DataType, tuple[RecordKind, ...]] = {
    "snapshot": ("pupil",),
    "changed": ("pupil", "deletion"),
    "attainment": ("result",),
    "attendance": ("mark",),
}
"""Record kinds that reach a delivery. Attendance and attainment deliver only marks and results:
the consumer already holds the pupils (a leaver only appears if sent before; other cohorts come
with their own snapshot/changed tasks), and re-sending every pupil's name and date of birth with
each weekly absence extract would spread children's data for no use."""

_ATTENDANCE_CHANGED_DELETIONS: tuple[RecordKind, ...] = ("pupil", "mark", "deletion")


@dataclass(frozen=True, slots=True)
class DateWindow:
    """An inclusive range of ISO dates a mark's ``date`` must fall in (None = unbounded)."""

    first: str | None
    last: str | None

    def __contains__(self, day: object) -> bool:
        return (
            isinstance(day, str)
            and (self.first is None or day >= self.first)
            and (self.last is None or day <= self.last)
        )


@dataclass(frozen=True)
class Query:
    """Everything one transfer needs to decide which records to deliver.

    ``since``: the inclusive change-time bound applied to records (None: no bound; set only for
    the watermark-driven kinds). ``until``: the exclusive change-time bound, the first instant
    after D (``YYYY-MM-DDTHH:MM:SSZ``): no watermark reaches it, and ``changes`` (a
    change-driven kind: changed data, attendance-changed, to-school) delivers nothing changed at
    or after it. ``watermark``: the (task, base) watermark as the journal holds
    it, carried forward when a run reads nothing newer. ``leavers``: the base's leavers memory
    (memory keys). ``members``: the task's cohort memory at the base (memory keys), or None
    for a transfer that does not follow the cohort's edge. ``remember``: whether a success
    adds the delivered pupils to the leavers memory (non-leavers from-school transfers only).
    """

    task: str
    base: str
    direction: Direction
    data_type: DataType
    cohort_group: CohortGroup
    ncy: frozenset[str] | None
    reference_date: dt.date
    attendance: AttendanceKind | None
    months: int | None
    codes: frozenset[str] | None
    dates: DateWindow | None
    since: str | None
    until: str
    changes: bool
    watermark: str | None
    leavers: frozenset[int]
    members: frozenset[int] | None
    kinds_read: tuple[RecordKind, ...]
    kinds_delivered: tuple[RecordKind, ...]
    deleted_kinds: frozenset[str]
    remember: bool

    @property
    def day(self) -> str:
        """D as ``YYYY-MM-DD`` (record dates compare as strings)."""
        return self.reference_date.isoformat()


def reference_date(slot: dt.datetime, timezone: dt.tzinfo) -> dt.date:
    """The slot's local date in the task's timezone (D of DESIGN section 5)."""
    if slot.tzinfo is None:
        raise ValueError("slot must be an aware datetime")
    return slot.astimezone(timezone).date()


def end_of_day(day: dt.date, timezone: ZoneInfo) -> str:
    """The first instant after the local date ``day`` (its next local midnight, or the end of
    a gap there), as ``YYYY-MM-DDTHH:MM:SSZ``: the exclusive end of a window ending at D."""
    midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
    return local_to_utc(midnight, timezone).strftime("%Y-%m-%dT%H:%M:%SZ")


def attendance_dates(
    kind: AttendanceKind, day: dt.date, months: int | None, year_start: tuple[int, int]
) -> DateWindow:
    """The marks' date range for an attendance kind at D, narrowed by ``months: N``; never
    after D, never empty or inverted.

    Current year: the academic year containing D, up to D; ``months`` keeps marks dated on or
    after D minus N calendar months (:func:`months_back`: 31 May minus 3 is 28/29 February)
    inside that year. Previous year: the whole academic year before D's; ``months`` keeps its
    last N months whenever D falls, counted back from the year's end (from the day after its
    last day, so with years starting on 1 August months 3 is 1 May to 31 July, as when D is
    1 August); never empty or inverted. Changed: up to D; ``months`` as for the current year,
    without a year's bound.
    """
    rule = ATTENDANCE_KINDS[kind]
    first: dt.date | None
    last: dt.date
    if rule.year == "current":
        first, _ = academic_year(day, year_start)
        last = day
    elif rule.year == "previous":
        first, last = previous_academic_year(day, year_start)
    else:
        first, last = None, day
    if months is not None:
        end = last + dt.timedelta(days=1) if rule.year == "previous" else last
        floor = months_back(end, months)
        first = floor if first is None else max(first, floor)
    return DateWindow(first.isoformat() if first else None, last.isoformat())


def build_query(
    task: Task,
    base_id: str,
    day: dt.date,
    *,
    watermark: str | None,
    leavers: frozenset[int],
    year_start: tuple[int, int],
    members: frozenset[int] = frozenset(),
) -> Query:
    """The query of one (task, base) transfer at reference date ``day``; ``members``: the
    task's cohort memory at the base (used by from-school changed data only)."""
    data = task.data
    to_school = task.direction == "to-school"
    dates: DateWindow | None = None
    codes: frozenset[str] | None = None
    changed = data.type == "changed"
    deleted = frozenset({"pupil", "mark", "result"}) if changed else frozenset()
    delivered = KINDS_DELIVERED[data.type]
    read = KINDS_READ[data.type]
    if data.type == "attendance" and data.attendance is not None:
        rule = ATTENDANCE_KINDS[data.attendance]
        dates = attendance_dates(data.attendance, day, data.months, year_start)
        codes = rule.codes
        if rule.changed:
            changed = True
            # Marks removed at the source are changes too: a consumer of "changed" marks must
            # learn about them (only mark deletions are delivered, see filters).
            read = _ATTENDANCE_CHANGED_DELETIONS
            delivered = ("mark", "deletion")
            deleted = frozenset({"mark"})
    return Query(
        task=task.id,
        base=base_id,
        direction=task.direction,
        data_type=data.type,
        cohort_group=task.cohort.group,
        ncy=task.cohort.ncy,
        reference_date=day,
        attendance=data.attendance,
        months=data.months,
        codes=codes,
        dates=dates,
        since=watermark if (changed or to_school) else None,
        until=end_of_day(day, task.schedule.timezone),
        changes=changed or to_school,
        watermark=watermark,
        leavers=leavers,
        members=members if data.type == "changed" and not to_school else None,
        kinds_read=read,
        kinds_delivered=delivered,
        deleted_kinds=deleted,
        remember=not to_school and task.cohort.group != "leavers",
    )


# -- the cohort -------------------------------------------------------------------------------


def on_roll(pupil: Pupil, day: str) -> bool:
    """Whether the pupil is on roll at ``day`` (ISO date): admitted on or before it and not
    left on or before it."""
    leaving = pupil.leaving_date
    return pupil.admission_date <= day and (leaving is None or leaving > day)


def has_left(pupil: Pupil, day: str) -> bool:
    leaving = pupil.leaving_date
    return leaving is not None and leaving <= day


def in_cohort(query: Query, pupil: Pupil, key: Callable[[str], int]) -> bool:
    """Whether ``pupil`` belongs to the transfer's cohort at D. ``key(upn)`` gives the memory
    key the leavers memory holds (called only for leavers)."""
    day = query.day
    if query.direction == "to-school":
        return query.ncy is None or pupil.ncy in query.ncy
    group = query.cohort_group
    if group == "ncy":
        return on_roll(pupil, day) and (query.ncy is None or pupil.ncy in query.ncy)
    if group == "lac":
        return pupil.in_care and on_roll(pupil, day)
    return has_left(pupil, day) and key(pupil.upn) in query.leavers


def changed_since(query: Query, time: str) -> bool:
    """Whether a record changed at ``time`` passes the watermark (inclusive)."""
    return query.since is None or time >= query.since


def advance_watermark(old: str | None, read_high: str | None) -> str | None:
    """The new watermark after a success: the highest change time read, never going back."""
    if read_high is None:
        return old
    if old is None:
        return read_high
    return max(old, read_high)
