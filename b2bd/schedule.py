"""When a task is due: a schedule's value objects and its slots, as UTC instants. Pure: no clock,
no I/O, nothing from the rest of b2bd (the config model re-exports these types; the loader builds
them from task files).

A schedule lists local dates (weekly: weekdays; monthly: days of months, ``last`` = the month's
last day, a day the month lacks such as 31 April is skipped; once: one date-time) and local
times, read in the schedule's timezone. Each listed (date, time) gives one slot, the **first
instant at which the local clock reads that time or later**. That single rule settles the
clock changes:

* spring-forward gap: a time the clock skips (01:30 on the last Sunday of March in London) runs
  once, at the first instant after the gap (01:00 UTC, when the clock reads 02:00 BST);
* fall-back overlap: a time the clock shows twice (01:30 on the last Sunday of October in
  London) runs once, at its first occurrence (00:30 UTC, ``fold=0``);
* listed times that land on one instant (01:15 and 01:45 both inside one gap) give one slot.

So a slot is never skipped and never doubled, and slots are strictly increasing. ``starts`` and
``expires`` are inclusive local dates: no slot is listed for an earlier, or a later, local date
(the first and last days both run).

The hot path avoids per-slot zone arithmetic: the UTC instant of local midnight is computed once
per (zone, local date) and cached; only days on which the zone's offset changes take the exact
per-time path.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import hashlib
import heapq
import operator
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

UTC = dt.UTC
# One day short of date.max, so that local midnight plus a day or a time never overflows.
_MAX_ORDINAL = dt.date.max.toordinal() - 1
_FOREVER = dt.datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Weekly:
    """Each listed weekday (0 = Monday) at each listed local time."""

    days: frozenset[int]
    times: tuple[dt.time, ...]

    def local_days(self, first: int, last: int) -> Iterator[int]:
        """The ordinals (:meth:`datetime.date.toordinal`) of the listed local dates in
        ``first..last``, increasing."""
        weekdays = sorted(self.days)
        if not weekdays:
            return
        # date.fromordinal(1) is Monday 0001-01-01, so ordinal - 1 is a multiple of 7 on Mondays.
        monday = first - (first - 1) % 7
        while monday <= last:
            for weekday in weekdays:
                ordinal = monday + weekday
                if ordinal > last:
                    return
                if ordinal >= first:
                    yield ordinal
            monday += 7


@dataclass(frozen=True)
class Monthly:
    """Each listed day (1..31 or ``"last"``) of each listed month (1..12) at each local time."""

    days: tuple[int | Literal["last"], ...]
    months: frozenset[int]
    times: tuple[dt.time, ...]

    def local_days(self, first: int, last: int) -> Iterator[int]:
        """The ordinals (:meth:`datetime.date.toordinal`) of the listed local dates in
        ``first..last``, increasing."""
        months = sorted(self.months)
        if not _can_occur(self, months):
            return
        start = dt.date.fromordinal(first)
        end = dt.date.fromordinal(last)
        year = start.year
        while year <= end.year:
            for month in months:
                if (year, month) < (start.year, start.month):
                    continue
                if (year, month) > (end.year, end.month):
                    return
                length = calendar.monthrange(year, month)[1]
                days = sorted(
                    {length if d == "last" else d for d in self.days if d == "last" or d <= length}
                )
                base = dt.date(year, month, 1).toordinal() - 1
                for day in days:
                    ordinal = base + day
                    if ordinal > last:
                        return
                    if ordinal >= first:
                        yield ordinal
            year += 1


@dataclass(frozen=True)
class Once:
    """A single naive local date-time."""

    at: dt.datetime


Rule = Weekly | Monthly | Once


@dataclass(frozen=True)
class Schedule:
    """When a task is due: the rule, the zone its local times are read in, and inclusive local
    start and expiry dates (no slot listed for an earlier / a later local date)."""

    rule: Rule
    timezone: ZoneInfo
    expires: dt.date | None = None
    starts: dt.date | None = None


def slots(
    schedule: Schedule, after: dt.datetime, until: dt.datetime | None = None
) -> Iterator[dt.datetime]:
    """Yield the slots ``s`` of ``schedule`` with ``after < s <= until``, strictly increasing.

    ``after`` and ``until`` are aware datetimes in any zone; ``until=None`` means unbounded, so
    callers take the next N with :func:`itertools.islice`. Yielded instants are aware, in UTC.
    Generation is lazy: each slot costs constant work, whatever the distance to ``until``. A
    schedule that can never be due (monthly 30 February) yields nothing and returns at once.
    """
    after_utc = _aware_utc(after, "after")
    until_utc = None if until is None else _aware_utc(until, "until")
    zone = schedule.timezone
    last_ordinal = _MAX_ORDINAL if schedule.expires is None else schedule.expires.toordinal()
    first_allowed = 1 if schedule.starts is None else schedule.starts.toordinal()
    match schedule.rule:
        case Once(at=at):
            yield from _once(at, zone, first_allowed, last_ordinal, after_utc, until_utc)
            return
        case Weekly() | Monthly() as rule:
            # A listed time earlier than after's local wall clock maps to an instant <= after
            # (the mapping is monotonic), so the walk can start on after's local date.
            first_ordinal = max(after_utc.astimezone(zone).toordinal(), first_allowed)
            days = rule.local_days(first_ordinal, last_ordinal)
            times = rule.times
    offsets = tuple(
        dt.timedelta(hours=t.hour, minutes=t.minute, seconds=t.second, microseconds=t.microsecond)
        for t in sorted(set(times))
    )
    if not offsets:
        return
    previous = after_utc
    end = _FOREVER if until_utc is None else until_utc
    for ordinal in days:
        midnight = _utc_midnight(zone, ordinal)
        for offset in offsets:
            if midnight is not None:
                instant = midnight + offset
            else:
                instant = local_to_utc(dt.datetime.fromordinal(ordinal) + offset, zone)
            if instant <= previous:
                continue  # before `after`, or a second listed time that fell into the same gap
            if instant > end:
                return
            previous = instant
            yield instant


def _once(
    at: dt.datetime,
    zone: ZoneInfo,
    first_allowed: int,
    last_ordinal: int,
    after: dt.datetime,
    until: dt.datetime | None,
) -> Iterator[dt.datetime]:
    """The one slot of a ``once`` rule, when its local date is within starts..expires and its
    instant within ``(after, until]``."""
    local = at.replace(tzinfo=None)
    if not first_allowed <= local.date().toordinal() <= last_ordinal:
        return
    instant = local_to_utc(local, zone)
    if after < instant and (until is None or instant <= until):
        yield instant


def next_slot(schedule: Schedule, after: dt.datetime) -> dt.datetime | None:
    """The first slot strictly after ``after`` (UTC), or None if the schedule has none left."""
    return next(slots(schedule, after), None)


def merge_slots(
    schedules: Mapping[str, Schedule], after: dt.datetime, until: dt.datetime | None = None
) -> Iterator[tuple[dt.datetime, str]]:
    """Yield ``(slot, task id)`` for every schedule's slots in ``(after, until]``, merged in slot
    order; slots at one instant come in task id order.

    Unbounded (``until=None``) the merge is lazy, so it can be cut with ``islice``. Bounded, the
    slots are collected and sorted on the instant alone, which is about twice as fast as a heap
    merge of (instant, id) pairs for a year of slots.
    """
    ordered = sorted(schedules.items())
    if until is None:
        streams = [_tagged(task_id, slots(schedule, after)) for task_id, schedule in ordered]
        return heapq.merge(*streams)
    pairs: list[tuple[dt.datetime, str]] = []
    for task_id, schedule in ordered:
        pairs.extend([(instant, task_id) for instant in slots(schedule, after, until)])
    pairs.sort(key=_instant)  # stable: equal instants keep task id order
    return iter(pairs)


_instant = operator.itemgetter(0)


def _tagged(task_id: str, instants: Iterator[dt.datetime]) -> Iterator[tuple[dt.datetime, str]]:
    for instant in instants:
        yield instant, task_id


def local_to_utc(local: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The first instant at which the clock in ``zone`` reads ``local`` (naive) or later.

    Ordinary times map one-to-one; a time shown twice maps to its first occurrence (fold=0);
    a time the clock skips maps to the instant the gap ends.
    """
    naive = local.replace(tzinfo=None)
    instant = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == naive:
        return instant
    # In a gap. fold=0 reads the time with the offset from before the transition (an instant
    # past it) and fold=1 with the offset after it (an instant before it): the transition lies
    # between. Bisect on whole seconds (tzdata transitions are whole seconds) for the first
    # instant whose wall clock is already past the skipped time.
    low = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    lo, hi = 0, int((instant - low).total_seconds())
    while lo < hi:
        mid = (lo + hi) // 2
        if (low + dt.timedelta(seconds=mid)).astimezone(zone).replace(tzinfo=None) > naive:
            hi = mid
        else:
            lo = mid + 1
    return low + dt.timedelta(seconds=lo)


def jitter_offset(task_id: str, base_id: str, jitter: dt.timedelta) -> dt.timedelta:
    """A stable offset in ``[0, jitter)`` for one (task, base): the same on every machine, in
    every process, after every restart (sha256, not Python's salted ``hash``). Resolution is one
    microsecond; zero (or negative) jitter gives ``timedelta(0)``."""
    span = jitter // dt.timedelta(microseconds=1)
    if span <= 0:
        return dt.timedelta(0)
    digest = hashlib.sha256(f"{task_id}\0{base_id}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big")
    return dt.timedelta(microseconds=span * fraction >> 64)


def slot_name(slot: dt.datetime) -> str:
    """``YYYYMMDDTHHMMSSZ`` of the slot's UTC instant: part of run ids and delivery file names."""
    return _aware_utc(slot, "slot").strftime("%Y%m%dT%H%M%SZ")


def _aware_utc(value: dt.datetime, name: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got {value!r}")
    return value.astimezone(UTC)


@functools.lru_cache(maxsize=1 << 16)
def _utc_midnight(zone: ZoneInfo, ordinal: int) -> dt.datetime | None:
    """UTC instant of local midnight of the day ``ordinal`` when the zone's offset holds all that
    day (so every local time of the day is midnight + time), or None on a day the offset changes
    (those days take the exact :func:`local_to_utc` path)."""
    day = dt.datetime.fromordinal(ordinal)
    start = day.replace(tzinfo=zone).utcoffset()
    end = (day + dt.timedelta(days=1)).replace(tzinfo=zone).utcoffset()
    if end != start:
        return None
    # Offsets at 00:00 and at the next 00:00 agree. A change there and back within one day is
    # unknown in tzdata; midday is checked too, as a cheap guard against one.
    noon = (day + dt.timedelta(hours=12)).replace(tzinfo=zone).utcoffset()
    if start is None or noon != start:
        return None
    return (day - start).replace(tzinfo=UTC)


def _can_occur(rule: Monthly, months: Iterable[int]) -> bool:
    """Whether any listed day exists in any listed month (29 February counts: leap years)."""
    longest = {m: calendar.monthrange(2000, m)[1] for m in months}  # 2000: a leap year
    return any(d == "last" or d <= n for n in longest.values() for d in rule.days)
