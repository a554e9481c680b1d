from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2bd.records.model import Pupil
from b2bd.transfer.query import (
    ATTENDANCE_KINDS,
    DateWindow,
    advance_watermark,
    attendance_dates,
    end_of_day,
    on_roll,
    reference_date,
)

START = (8, 1)


def test_reference_date_is_the_local_date_of_the_slot() -> None:
    london = ZoneInfo("Europe/London")
    # 23:30 UTC on 31 July is 00:30 BST on 1 August: the new academic year in London.
    slot = dt.datetime(2026, 7, 31, 23, 30, tzinfo=dt.UTC)
    assert reference_date(slot, london) == dt.date(2026, 8, 1)
    assert reference_date(slot, ZoneInfo("UTC")) == dt.date(2026, 7, 31)


@pytest.mark.parametrize(
    ("kind", "day", "months", "expected"),
    [
        # Every window ends at D: the current year runs from its start to D.
        ("all-attendances-current-year", "2026-07-31", None, ("2025-08-01", "2026-07-31")),
        ("all-attendances-current-year", "2026-08-01", None, ("2026-08-01", "2026-08-01")),
        ("all-attendances-current-year", "2026-11-02", None, ("2026-08-01", "2026-11-02")),
        ("all-attendances-previous-year", "2026-07-31", None, ("2024-08-01", "2025-07-31")),
        ("all-attendances-previous-year", "2026-08-01", None, ("2025-08-01", "2026-07-31")),
        ("unauthorised-absences-current-year", "2026-07-31", 1, ("2026-06-30", "2026-07-31")),
        # months reaching before the year start stop at the year start
        ("all-absences-current-year", "2026-08-01", 3, ("2026-08-01", "2026-08-01")),
        ("all-absences-current-year", "2026-09-15", 3, ("2026-08-01", "2026-09-15")),
        # previous year: the last N months of that year, whenever D falls in the next one
        ("all-attendances-previous-year", "2026-08-01", 1, ("2026-07-01", "2026-07-31")),
        ("all-attendances-previous-year", "2026-11-02", 1, ("2026-07-01", "2026-07-31")),
        ("all-attendances-previous-year", "2027-03-15", 3, ("2026-05-01", "2026-07-31")),
        ("all-attendances-previous-year", "2026-11-02", 13, ("2025-08-01", "2026-07-31")),
        # 31 May minus 3 months is the last day of February
        ("all-attendances-current-year", "2026-05-31", 3, ("2026-02-28", "2026-05-31")),
        ("all-attendances-current-year", "2028-05-31", 3, ("2028-02-29", "2028-05-31")),
        ("attendance-changed", "2026-08-01", None, (None, "2026-08-01")),
        ("attendance-changed", "2026-08-01", 2, ("2026-06-01", "2026-08-01")),
    ],
)
def test_attendance_dates(kind, day, months, expected) -> None:
    window = attendance_dates(kind, dt.date.fromisoformat(day), months, START)
    assert (window.first, window.last) == expected


@given(
    kind=st.sampled_from(sorted(ATTENDANCE_KINDS)),
    day=st.dates(dt.date(2001, 1, 1), dt.date(2099, 12, 31)),
    months=st.one_of(st.none(), st.integers(1, 13)),
    start=st.sampled_from([(8, 1), (9, 1), (1, 1), (2, 29)]),
)
def test_a_window_is_never_empty_inverted_or_after_d(kind, day, months, start) -> None:
    window = attendance_dates(kind, day, months, start)
    assert window.last is not None and window.last <= day.isoformat()
    assert window.first is None or window.first <= window.last


def test_end_of_day_is_the_next_local_midnight() -> None:
    london = ZoneInfo("Europe/London")
    assert end_of_day(dt.date(2026, 7, 1), london) == "2026-07-01T23:00:00Z"  # BST
    assert end_of_day(dt.date(2026, 12, 1), london) == "2026-12-02T00:00:00Z"
    # Santiago skips 00:00-01:00 on 6 September 2026: 5 September ends when the gap ends.
    assert end_of_day(dt.date(2026, 9, 5), ZoneInfo("America/Santiago")) == "2026-09-06T04:00:00Z"


def test_attendance_kind_code_sets() -> None:
    assert ATTENDANCE_KINDS["unauthorised-absences-current-year"].codes == {"G", "N", "O", "U"}
    absences = ATTENDANCE_KINDS["all-absences-current-year"].codes
    assert absences is not None
    assert {"C", "C1", "C2", "E", "I", "J1", "M", "R", "S", "T", "G", "N", "O", "U"} <= absences
    assert not absences & {"/", "\\", "L", "B", "K", "V", "P", "W", "D", "X", "Q", "Y1", "Z", "#"}
    assert ATTENDANCE_KINDS["all-attendances-current-year"].codes is None


def _pupil(admission: str, leaving: str | None) -> Pupil:
    return Pupil(
        upn="B801200005001",
        surname="A",
        forename="B",
        dob="2014-01-01",
        sex="M",
        ncy="7",
        in_care=False,
        care_authority=None,
        admission_date=admission,
        leaving_date=leaving,
        updated_at="2026-01-01T00:00:00Z",
    )


@pytest.mark.parametrize(
    ("admission", "leaving", "day", "expected"),
    [
        ("2024-09-03", None, "2026-11-02", True),
        ("2026-11-02", None, "2026-11-02", True),  # admitted that day
        ("2026-11-03", None, "2026-11-02", False),  # not yet admitted
        ("2024-09-03", "2026-11-02", "2026-11-02", False),  # left that day
        ("2024-09-03", "2026-11-03", "2026-11-02", True),  # leaves tomorrow
    ],
)
def test_on_roll(admission, leaving, day, expected) -> None:
    assert on_roll(_pupil(admission, leaving), day) is expected


times = st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2030, 1, 1)).map(
    lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
)


@given(st.none() | times, st.none() | times)
def test_watermark_never_goes_back(old, high) -> None:
    new = advance_watermark(old, high)
    if old is not None:
        assert new is not None and new >= old
    if high is not None:
        assert new is not None and new >= high
    assert new in (old, high)


def test_date_window_contains() -> None:
    window = DateWindow("2026-08-01", None)
    assert "2026-08-01" in window and "2030-01-01" in window and "2026-07-31" not in window
