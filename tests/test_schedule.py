"""b2bd.schedule: slots of weekly, monthly and once schedules, exact across clock changes.

Expected instants in the DST tables are written out by hand from the published rules (UK: clocks
change at 01:00 UTC on the last Sunday of March and of October), not computed by the code under
test. The systemd comparison and the brute-force oracle check the same rules independently.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import itertools
import random
import re
import shutil
import subprocess
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b2bd.schedule import (
    Monthly,
    Once,
    Schedule,
    Weekly,
    jitter_offset,
    local_to_utc,
    merge_slots,
    next_slot,
    slot_name,
    slots,
)

UTC = dt.UTC
LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")
SUN = 6


def t(text: str) -> dt.time:
    return dt.time.fromisoformat(text)


def z(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def weekly(days: set[int], *times: str, zone: ZoneInfo = LONDON, expires: dt.date | None = None):
    return Schedule(Weekly(frozenset(days), tuple(t(x) for x in times)), zone, expires)


def monthly(days, months, *times: str, zone: ZoneInfo = LONDON, expires: dt.date | None = None):
    return Schedule(
        Monthly(tuple(days), frozenset(months), tuple(t(x) for x in times)), zone, expires
    )


def sunday_slots(schedule: Schedule, sunday: dt.date) -> list[dt.datetime]:
    """The slots from the Saturday before ``sunday`` to the Monday after (UTC)."""
    start = dt.datetime.combine(sunday - dt.timedelta(days=1), dt.time(), UTC)
    return list(slots(schedule, start, start + dt.timedelta(days=3)))


# --- London: the real transitions of 2025, 2026 and 2027 -------------------------------------

SPRING = [dt.date(2025, 3, 30), dt.date(2026, 3, 29), dt.date(2027, 3, 28)]
AUTUMN = [dt.date(2025, 10, 26), dt.date(2026, 10, 25), dt.date(2027, 10, 31)]

# local time on the spring-forward Sunday -> UTC (hours, minutes) on that date. The clock jumps
# from 01:00 GMT to 02:00 BST at 01:00 UTC: 01:00..01:59 do not exist and run at 01:00 UTC.
SPRING_TABLE = [
    ("00:59", (0, 59)),  # last minute before the gap: GMT
    ("01:00", (1, 0)),  # first skipped minute: runs when the gap ends
    ("01:30", (1, 0)),  # inside the gap
    ("01:59", (1, 0)),  # last skipped minute
    ("02:00", (1, 0)),  # first minute after the gap: BST, the same instant
    ("02:01", (1, 1)),
    ("06:30", (5, 30)),
]
# local time on the fall-back Sunday -> UTC. 01:00..01:59 happen twice (BST, then GMT); the
# first occurrence runs. The clock goes back at 01:00 UTC (02:00 BST -> 01:00 GMT).
AUTUMN_TABLE = [
    ("00:59", (23, 59, -1)),  # BST, so the previous UTC day
    ("01:00", (0, 0, 0)),  # first minute of the overlap, first occurrence (BST)
    ("01:30", (0, 30, 0)),
    ("01:59", (0, 59, 0)),  # last minute of the overlap, first occurrence
    ("02:00", (2, 0, 0)),  # GMT: an hour and a minute after 01:59 BST
    ("06:30", (6, 30, 0)),
]


@pytest.mark.parametrize("sunday", SPRING, ids=str)
@pytest.mark.parametrize(("local", "utc"), SPRING_TABLE, ids=[r[0] for r in SPRING_TABLE])
def test_london_spring_forward_runs_once_at_the_end_of_the_gap(sunday, local, utc):
    got = sunday_slots(weekly({5, SUN, 0}, local), sunday)
    saturday = dt.datetime.combine(sunday - dt.timedelta(days=1), t(local), UTC)  # GMT
    monday = dt.datetime.combine(sunday + dt.timedelta(days=1), t(local), UTC) - dt.timedelta(
        hours=1
    )
    on_sunday = dt.datetime.combine(sunday, dt.time(*utc), UTC)
    assert got == [saturday, on_sunday, monday]


@pytest.mark.parametrize("sunday", AUTUMN, ids=str)
@pytest.mark.parametrize(("local", "utc"), AUTUMN_TABLE, ids=[r[0] for r in AUTUMN_TABLE])
def test_london_fall_back_runs_once_at_the_first_occurrence(sunday, local, utc):
    got = sunday_slots(weekly({SUN}, local), sunday)
    hour, minute, day_shift = utc
    expected = dt.datetime.combine(
        sunday + dt.timedelta(days=day_shift), dt.time(hour, minute), UTC
    )
    assert got == [expected]
    assert got[0].astimezone(LONDON).fold == 0


@pytest.mark.parametrize("sunday", SPRING, ids=str)
def test_times_sharing_one_gap_give_one_slot(sunday):
    schedule = weekly({SUN}, "00:30", "01:15", "01:45", "02:00", "02:30")
    got = sunday_slots(schedule, sunday)
    at = dt.datetime.combine(sunday, dt.time(), UTC)
    assert got == [
        at + dt.timedelta(minutes=30),
        at + dt.timedelta(hours=1),
        at + dt.timedelta(hours=1, minutes=30),
    ]


@pytest.mark.parametrize("sunday", AUTUMN, ids=str)
def test_every_overlap_minute_runs_exactly_once(sunday):
    times = [f"01:{m:02d}" for m in range(60)]
    got = sunday_slots(weekly({SUN}, *times), sunday)
    start = dt.datetime.combine(sunday, dt.time(), UTC)
    assert got == [start + dt.timedelta(minutes=m) for m in range(60)]


def test_daily_slots_across_both_2026_changes_never_skip_or_double():
    every_day = weekly(set(range(7)), "01:30")
    got = list(slots(every_day, z(2026, 1, 1), z(2027, 1, 1)))
    local_dates = [s.astimezone(LONDON).date() for s in got]
    assert len(got) == 365
    assert local_dates == [dt.date(2026, 1, 1) + dt.timedelta(days=n) for n in range(365)]
    assert z(2026, 3, 29, 1, 0) in got and z(2026, 10, 25, 0, 30) in got
    assert z(2026, 10, 25, 1, 30) not in got


# --- other zones with other rules ------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        # New York springs forward 2026-03-08 02:00 EST -> 03:00 EDT (07:00 UTC).
        (weekly({SUN}, "02:30", zone=NEW_YORK), z(2026, 3, 7), z(2026, 3, 8, 7, 0)),
        (weekly({SUN}, "03:00", zone=NEW_YORK), z(2026, 3, 7), z(2026, 3, 8, 7, 0)),
        (weekly({SUN}, "01:59", zone=NEW_YORK), z(2026, 3, 7), z(2026, 3, 8, 6, 59)),
        # ... and falls back 2026-11-01 02:00 EDT -> 01:00 EST (06:00 UTC): first 01:30 is EDT.
        (weekly({SUN}, "01:30", zone=NEW_YORK), z(2026, 10, 31), z(2026, 11, 1, 5, 30)),
        (weekly({SUN}, "02:00", zone=NEW_YORK), z(2026, 10, 31), z(2026, 11, 1, 7, 0)),
        # Sydney (southern hemisphere) falls back 2026-04-05 03:00 AEDT -> 02:00 AEST.
        (weekly({SUN}, "02:30", zone=SYDNEY), z(2026, 4, 3), z(2026, 4, 4, 15, 30)),
        (weekly({SUN}, "03:00", zone=SYDNEY), z(2026, 4, 3), z(2026, 4, 4, 17, 0)),
        # ... and springs forward 2026-10-04 02:00 AEST -> 03:00 AEDT (16:00 UTC the day before).
        (weekly({SUN}, "02:30", zone=SYDNEY), z(2026, 10, 2), z(2026, 10, 3, 16, 0)),
        (weekly({SUN}, "01:59", zone=SYDNEY), z(2026, 10, 2), z(2026, 10, 3, 15, 59)),
        # Lord Howe Island moves its clock by half an hour: 02:00 -> 02:30 on 2026-10-04.
        (
            weekly({SUN}, "02:10", zone=ZoneInfo("Australia/Lord_Howe")),
            z(2026, 10, 2),
            z(2026, 10, 3, 15, 30),
        ),
    ],
)
def test_other_zones(schedule, after, expected):
    assert next_slot(schedule, after) == expected


def test_a_gap_at_midnight_runs_at_its_end():
    # Santiago springs forward 2026-09-06 00:00 -> 01:00 (04:00 UTC): 00:30 does not exist.
    santiago = ZoneInfo("America/Santiago")
    got = next_slot(weekly({SUN}, "00:30", zone=santiago), z(2026, 9, 5))
    assert got == z(2026, 9, 6, 4, 0)
    assert got.astimezone(santiago).time() == dt.time(1, 0)


def test_local_to_utc_states_the_rule_for_one_time():
    assert local_to_utc(dt.datetime(2026, 3, 29, 1, 30), LONDON) == z(2026, 3, 29, 1, 0)
    assert local_to_utc(dt.datetime(2026, 10, 25, 1, 30), LONDON) == z(2026, 10, 25, 0, 30)
    assert local_to_utc(dt.datetime(2026, 7, 1, 12, 0), LONDON) == z(2026, 7, 1, 11, 0)


# --- monthly, once, expiry, bounds -----------------------------------------------------------


def test_monthly_skips_days_a_month_lacks_and_last_is_the_last_day():
    got = list(slots(monthly([31, "last"], range(1, 13), "09:00"), z(2026, 1, 1), z(2027, 1, 1)))
    local = [s.astimezone(LONDON) for s in got]
    days = [(d.month, d.day) for d in local]
    assert days == [
        (1, 31), (2, 28), (3, 31), (4, 30), (5, 31), (6, 30),
        (7, 31), (8, 31), (9, 30), (10, 31), (11, 30), (12, 31),
    ]  # fmt: skip
    assert all(d.time() == dt.time(9, 0) for d in local)


def test_monthly_listed_months_only_and_leap_day():
    schedule = monthly([29], [2], "06:30")
    got = list(itertools.islice(slots(schedule, z(2025, 1, 1)), 3))
    assert got == [z(2028, 2, 29, 6, 30), z(2032, 2, 29, 6, 30), z(2036, 2, 29, 6, 30)]


def test_monthly_day_that_never_exists_yields_nothing_at_once():
    assert list(slots(monthly([30, 31], [2], "06:30"), z(2026, 1, 1))) == []
    assert next_slot(monthly([31], [4, 6, 9, 11], "06:30"), z(2026, 1, 1)) is None


def test_monthly_on_the_changeover_sunday():
    # 29 March 2026 is the spring-forward day; the 1st of April is BST.
    got = list(slots(monthly([29, 1], [3, 4], "01:30"), z(2026, 3, 1), z(2026, 5, 1)))
    assert got == [
        z(2026, 3, 1, 1, 30),
        z(2026, 3, 29, 1, 0),
        z(2026, 4, 1, 0, 30),
        z(2026, 4, 29, 0, 30),
    ]


def test_expires_is_an_inclusive_local_date():
    # Expires 2026-06-30: the 23:30 BST slot that day (22:30 UTC) still runs.
    schedule = weekly(set(range(7)), "23:30", expires=dt.date(2026, 6, 30))
    got = list(slots(schedule, z(2026, 6, 28)))
    assert got == [z(2026, 6, 28, 22, 30), z(2026, 6, 29, 22, 30), z(2026, 6, 30, 22, 30)]
    assert next_slot(schedule, z(2026, 6, 30, 22, 30)) is None


def test_once():
    once = Schedule(Once(dt.datetime(2026, 12, 1, 6, 30)), LONDON)
    assert list(slots(once, z(2026, 1, 1))) == [z(2026, 12, 1, 6, 30)]
    assert list(slots(once, z(2026, 12, 1, 6, 30))) == []  # after is exclusive
    assert list(slots(once, z(2026, 1, 1), z(2026, 12, 1, 6, 30))) == [z(2026, 12, 1, 6, 30)]
    assert list(slots(once, z(2026, 1, 1), z(2026, 12, 1, 6, 29))) == []
    in_gap = Schedule(Once(dt.datetime(2026, 3, 29, 1, 30)), LONDON)
    assert next_slot(in_gap, z(2026, 1, 1)) == z(2026, 3, 29, 1, 0)
    expired = Schedule(Once(dt.datetime(2026, 12, 1, 6, 30)), LONDON, dt.date(2026, 11, 30))
    assert next_slot(expired, z(2026, 1, 1)) is None


def test_after_is_exclusive_until_inclusive_and_any_zone_is_accepted():
    schedule = weekly({0}, "06:30")  # Mondays
    at = z(2026, 6, 1, 5, 30)  # Monday 06:30 BST
    assert next_slot(schedule, at) == z(2026, 6, 8, 5, 30)
    assert next_slot(schedule, at - dt.timedelta(microseconds=1)) == at
    assert list(slots(schedule, z(2026, 5, 31), at)) == [at]
    in_new_york = at.astimezone(NEW_YORK) - dt.timedelta(seconds=1)
    assert next_slot(schedule, in_new_york) == at
    assert next_slot(schedule, at).tzinfo is UTC
    with pytest.raises(ValueError, match="aware"):
        next_slot(schedule, dt.datetime(2026, 6, 1))


def test_unbounded_slots_are_lazy():
    schedule = weekly(set(range(7)), "00:00", "12:00")
    got = list(itertools.islice(slots(schedule, z(2026, 1, 1)), 1000))
    assert len(got) == 1000
    assert got[-1] < z(2027, 6, 1)


def test_merge_slots_orders_by_instant_then_task_id():
    schedules = {
        "b-task": weekly({0}, "06:30"),
        "a-task": weekly({0}, "06:30", "07:00"),
        "c-task": Schedule(Once(dt.datetime(2026, 6, 1, 6, 45)), LONDON),
    }
    bounded = list(merge_slots(schedules, z(2026, 5, 31), z(2026, 6, 2)))
    assert bounded == [
        (z(2026, 6, 1, 5, 30), "a-task"),
        (z(2026, 6, 1, 5, 30), "b-task"),
        (z(2026, 6, 1, 5, 45), "c-task"),
        (z(2026, 6, 1, 6, 0), "a-task"),
    ]
    assert list(itertools.islice(merge_slots(schedules, z(2026, 5, 31)), 4)) == bounded


# --- jitter and slot names -------------------------------------------------------------------


def test_jitter_is_stable_and_within_range():
    ten = dt.timedelta(minutes=10)
    # Pinned: the same value on every machine and every release (sha256 of "id\0base").
    assert jitter_offset("weekly-unauthorised-absence", "8814001", ten) == jitter_offset(
        "weekly-unauthorised-absence", "8814001", ten
    )
    assert jitter_offset("a", "b", ten) == dt.timedelta(seconds=210, microseconds=227454)
    offsets = [jitter_offset("task", f"88140{n:02d}", ten) for n in range(100)]
    assert all(dt.timedelta(0) <= o < ten for o in offsets)
    assert len(set(offsets)) == 100
    assert max(offsets) - min(offsets) > dt.timedelta(minutes=8)  # spread, not bunched
    assert jitter_offset("task", "8814001", dt.timedelta(0)) == dt.timedelta(0)
    assert jitter_offset("task", "8814001", dt.timedelta(microseconds=1)) == dt.timedelta(0)
    assert jitter_offset("x", "y", ten) != jitter_offset("y", "x", ten)


def test_jitter_runs_in_a_fresh_process_give_the_same_value():
    code = (
        "import datetime as d; from b2bd.schedule import jitter_offset as j;"
        "print(j('t', '8814001', d.timedelta(minutes=10)).total_seconds())"
    )
    import sys

    runs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    }
    assert runs == {f"{jitter_offset('t', '8814001', dt.timedelta(minutes=10)).total_seconds()}\n"}


def test_slot_name():
    assert slot_name(z(2026, 3, 29, 1, 0)) == "20260329T010000Z"
    assert slot_name(dt.datetime(2026, 3, 29, 2, 0, tzinfo=LONDON)) == "20260329T010000Z"


# --- against systemd's own calendar ----------------------------------------------------------

SYSTEMD = shutil.which("systemd-analyze")
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
SAFE_ZONES = (LONDON, NEW_YORK, SYDNEY, ZoneInfo("Asia/Kolkata"), ZoneInfo("UTC"))
_ELAPSE = re.compile(r"^\s*(?:Next elapse|Iter\. #\d+|\(in UTC\)): \w+ (\S+ \S+) UTC$")


def _generated_schedules(count: int, seed: int) -> list[tuple[Schedule, list[str]]]:
    """Weekly and monthly schedules whose times avoid every DST edge (hours 04..23; the zones
    above change their clocks between 01:00 and 03:00), each with its systemd expressions.

    Times are an hours x minutes product so that one OnCalendar expression can list them.
    """
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        zone = rng.choice(SAFE_ZONES)
        hours = sorted(rng.sample(range(4, 24), rng.randint(1, 3)))
        minutes = sorted(rng.sample(range(60), rng.randint(1, 2)))
        times = tuple(dt.time(h, m) for h in hours for m in minutes)
        clock = f"{','.join(f'{h:02d}' for h in hours)}:{','.join(f'{m:02d}' for m in minutes)}:00"
        if rng.random() < 0.5:
            days = sorted(rng.sample(range(7), rng.randint(1, 5)))
            rule: Weekly | Monthly = Weekly(frozenset(days), times)
            exprs = [f"{','.join(DAY_NAMES[d] for d in days)} *-*-* {clock} {zone.key}"]
        else:
            days = sorted(rng.sample(range(1, 32), rng.randint(1, 3)))
            months = sorted(rng.sample(range(1, 13), rng.randint(1, 12)))
            month_part = "*" if len(months) == 12 else ",".join(f"{m:02d}" for m in months)
            last = rng.random() < 0.3
            rule = Monthly((*days, "last") if last else tuple(days), frozenset(months), times)
            exprs = [f"*-{month_part}-{','.join(f'{d:02d}' for d in days)} {clock} {zone.key}"]
            if last:
                exprs.append(f"*-{month_part}~01 {clock} {zone.key}")
        out.append((Schedule(rule, zone), exprs))
    return out


def _systemd_elapses(exprs: list[str], base: dt.datetime, iterations: int) -> list[dt.datetime]:
    result = subprocess.run(
        [
            SYSTEMD,
            "calendar",
            f"--iterations={iterations}",
            f"--base-time=@{int(base.timestamp())}",
            *exprs,
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"TZ": "UTC", "LC_ALL": "C", "PATH": "/usr/bin:/bin", "SYSTEMD_COLORS": "0"},
    )
    instants = set()
    for line in result.stdout.splitlines():
        match = _ELAPSE.match(line)
        if match:
            instants.add(dt.datetime.fromisoformat(match.group(1)).replace(tzinfo=UTC))
    # Several expressions (monthly days plus `last`): each gave its own first N; the union's
    # first N are the schedule's first N.
    return sorted(instants)[:iterations]


@pytest.mark.skipif(SYSTEMD is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("seed", range(4))
def test_slots_equal_systemd_analyze_calendar(seed):
    iterations = 30
    rng = random.Random(1000 + seed)
    checked = 0
    for schedule, exprs in _generated_schedules(15, seed):
        # Base instants from 2025 to 2027, so the windows cross clock changes.
        base = z(2025, 1, 1) + dt.timedelta(seconds=rng.randrange(3 * 365 * 86400))
        ours = list(itertools.islice(slots(schedule, base), iterations))
        theirs = _systemd_elapses(exprs, base, iterations)
        assert ours == theirs, f"{exprs} from {base.isoformat()}"
        checked += len(ours)
    assert checked > 15 * 10  # the comparison compared something


# --- properties ------------------------------------------------------------------------------

PROPERTY_ZONES = [
    LONDON,
    NEW_YORK,
    SYDNEY,
    ZoneInfo("Australia/Lord_Howe"),  # half-hour change
    ZoneInfo("America/Santiago"),  # changes at midnight
    ZoneInfo("Europe/Berlin"),
    ZoneInfo("Asia/Kolkata"),  # no DST
]


def _transitions(zone: ZoneInfo) -> list[dt.datetime]:
    """Instants (to the hour) near which ``zone`` changed its offset, 2020..2030."""
    found = []
    instant = z(2020, 1, 1)
    offset = instant.astimezone(zone).utcoffset()
    while instant < z(2030, 1, 1):
        instant += dt.timedelta(hours=1)
        now = instant.astimezone(zone).utcoffset()
        if now != offset:
            found.append(instant)
            offset = now
    return found


TRANSITIONS = [(zone, at) for zone in PROPERTY_ZONES for at in _transitions(zone)]
QUARTERS = st.sampled_from([0, 15, 30, 45, 59])


@st.composite
def local_times(draw) -> tuple[dt.time, ...]:
    # Mostly near the small hours, where the clock changes are.
    hours = st.one_of(st.integers(0, 3), st.integers(0, 23))
    times = draw(
        st.lists(
            st.builds(dt.time, hours, st.one_of(QUARTERS, st.integers(0, 59))),
            min_size=1,
            max_size=4,
        )
    )
    return tuple(times)


@st.composite
def schedules_near_a_change(draw) -> tuple[Schedule, dt.datetime]:
    """A weekly or monthly schedule and an ``after`` up to four days before a real clock change
    (or anywhere, for the zone without DST)."""
    zone = draw(st.sampled_from(PROPERTY_ZONES))
    changes = [at for zz, at in TRANSITIONS if zz is zone]
    if changes:
        centre = draw(st.sampled_from(changes))
    else:
        centre = z(2020, 1, 1) + dt.timedelta(days=draw(st.integers(0, 3650)))
    after = centre - dt.timedelta(minutes=15 * draw(st.integers(0, 4 * 24 * 4)))
    times = draw(local_times())
    # Half the time, aim at the change itself: times around its wall-clock reading, on its date.
    aimed = draw(st.booleans())
    change = (centre - dt.timedelta(hours=1)).astimezone(zone)
    if aimed:
        minutes = draw(st.lists(st.integers(0, 150), min_size=1, max_size=4))
        start = change.replace(minute=0, tzinfo=None)
        times += tuple((start + dt.timedelta(minutes=m)).time() for m in minutes)
    if draw(st.booleans()):
        days = draw(st.sets(st.integers(0, 6), min_size=1))
        rule: Weekly | Monthly = Weekly(
            frozenset(days | {change.weekday()} if aimed else days), times
        )
    else:
        days = draw(
            st.lists(st.one_of(st.integers(1, 31), st.just("last")), min_size=1, max_size=4)
        )
        months = draw(st.sets(st.integers(1, 12), min_size=1))
        if aimed:
            days, months = [*days, change.day], months | {change.month}
        rule = Monthly(tuple(days), frozenset(months), times)
    return Schedule(rule, zone), after


def _listed(rule: Weekly | Monthly, day: dt.date) -> bool:
    """Whether the rule lists this local date: a plain restatement of the contract."""
    if isinstance(rule, Weekly):
        return day.weekday() in rule.days
    if day.month not in rule.months:
        return False
    last = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
    return day.day in rule.days or ("last" in rule.days and day == last)


def _oracle(schedule: Schedule, after: dt.datetime, until: dt.datetime) -> list[dt.datetime]:
    """Walk the clock minute by minute: an instant is a slot when the local clock first reaches
    (or passes) a listed local date-time, never counting a reading the clock has shown before.
    Independent of the code under test; exact because listed times and the zones' changes fall
    on whole minutes."""
    zone, rule = schedule.timezone, schedule.rule
    wanted = sorted(
        dt.datetime.combine(day, time)
        for n in range(-3, (until - after).days + 3)
        for day in [after.astimezone(zone).date() + dt.timedelta(days=n)]
        if _listed(rule, day)
        for time in rule.times
    )
    found = []
    # Start a day early: what the clock read before `after` (the first pass of an overlap) counts.
    instant = after - dt.timedelta(days=1)
    high = instant.astimezone(zone).replace(tzinfo=None)  # the furthest the clock has read
    step = dt.timedelta(minutes=1)
    while instant < until:
        instant += step
        wall = instant.astimezone(zone).replace(tzinfo=None)
        if wall > high:
            index = bisect.bisect_right(wanted, high)
            if instant > after and index < len(wanted) and wanted[index] <= wall:
                found.append(instant)
            high = wall
    return found


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules_near_a_change())
def test_slots_match_a_minute_by_minute_walk_of_the_clock(case):
    """Never skipped, never doubled: the slots are exactly the instants the wall clock first
    reaches a listed local time, across real clock changes in zones with different rules."""
    schedule, after = case
    until = after + dt.timedelta(days=6)
    assert list(slots(schedule, after, until)) == _oracle(schedule, after, until)


@settings(max_examples=200, deadline=None)
@given(schedules_near_a_change())
def test_slots_increase_and_keep_their_local_time_except_in_a_gap(case):
    schedule, after = case
    zone, rule = schedule.timezone, schedule.rule
    got = list(itertools.islice(slots(schedule, after), 60))
    assert all(a < b for a, b in itertools.pairwise([after, *got]))
    for instant in got:
        local = instant.astimezone(zone)
        if local.time() in rule.times and _listed(rule, local.date()):
            assert local.fold == 0  # a repeated time runs at its first occurrence
        else:
            # The requested time did not exist: this is the instant a gap ended.
            before = (instant - dt.timedelta(seconds=1)).astimezone(zone)
            assert local.utcoffset() > before.utcoffset()
            assert any(
                before.replace(tzinfo=None)
                < dt.datetime.combine(local.date(), tm)
                < local.replace(tzinfo=None)
                for tm in rule.times
            )


@settings(max_examples=200, deadline=None)
@given(schedules_near_a_change(), st.builds(dt.time, st.integers(0, 23), QUARTERS))
def test_one_daily_time_is_never_closer_than_23_hours(case, time):
    schedule, after = case
    daily = Schedule(Weekly(frozenset(range(7)), (time,)), schedule.timezone)
    got = list(itertools.islice(slots(daily, after), 20))
    assert len(got) == 20
    for a, b in itertools.pairwise(got):
        assert dt.timedelta(hours=23) <= b - a <= dt.timedelta(hours=25)


def test_starts_is_an_inclusive_local_date():
    # Starts 2026-07-01: the 00:30 BST slot that day (23:30 UTC on 30 June) is the first.
    schedule = Schedule(
        Weekly(frozenset(range(7)), (t("00:30"),)), LONDON, starts=dt.date(2026, 7, 1)
    )
    got = list(itertools.islice(slots(schedule, z(2026, 1, 1)), 2))
    assert got == [z(2026, 6, 30, 23, 30), z(2026, 7, 1, 23, 30)]
    # A monthly rule, after long before starts: nothing is generated before it.
    monthly_ = Schedule(
        Monthly((1, "last"), frozenset(range(1, 13)), (t("06:30"),)),
        LONDON,
        starts=dt.date(2027, 2, 2),
    )
    assert next_slot(monthly_, z(2020, 1, 1)) == z(2027, 2, 28, 6, 30)


def test_starts_and_expires_bound_once_and_can_leave_nothing():
    once = Once(dt.datetime(2026, 12, 1, 6, 30))
    assert list(slots(Schedule(once, LONDON, starts=dt.date(2026, 12, 2)), z(2026, 1, 1))) == []
    assert list(slots(Schedule(once, LONDON, starts=dt.date(2026, 12, 1)), z(2026, 1, 1))) == [
        z(2026, 12, 1, 6, 30)
    ]
    crossed = Schedule(
        Weekly(frozenset(range(7)), (t("06:30"),)),
        LONDON,
        expires=dt.date(2026, 12, 1),
        starts=dt.date(2026, 12, 2),
    )
    assert list(slots(crossed, z(2026, 1, 1))) == []


@settings(max_examples=200, deadline=None)
@given(schedules_near_a_change(), st.integers(-10, 10))
def test_starts_keeps_exactly_the_slots_listed_on_or_after_its_date(case, shift):
    schedule, after = case
    starts = after.astimezone(schedule.timezone).date() + dt.timedelta(days=shift)
    until = after + dt.timedelta(days=40)
    bounded = dataclasses.replace(schedule, starts=starts)
    everything = list(slots(schedule, after, until))
    # A slot belongs to the local date it is listed for: the date it reads, unless it ran at
    # the end of a gap that began on the previous date (never across midnight in these zones).
    kept = [s for s in everything if s.astimezone(schedule.timezone).date() >= starts]
    assert list(slots(bounded, after, until)) == kept
