from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2bd.records.academic import (
    academic_year,
    months_back,
    parse_start,
    previous_academic_year,
)

D = dt.date


@pytest.mark.parametrize(
    ("day", "first", "last", "name"),
    [
        (D(2026, 7, 31), D(2025, 8, 1), D(2026, 7, 31), "2025/26"),
        (D(2026, 8, 1), D(2026, 8, 1), D(2027, 7, 31), "2026/27"),
        (D(2026, 8, 2), D(2026, 8, 1), D(2027, 7, 31), "2026/27"),
        (D(2027, 1, 1), D(2026, 8, 1), D(2027, 7, 31), "2026/27"),
        (D(2099, 12, 31), D(2099, 8, 1), D(2100, 7, 31), "2099/00"),
    ],
)
def test_academic_year_around_1_august(day, first, last, name):
    year = academic_year(day)
    assert (year.first, year.last, year.name) == (first, last, name)
    assert day in year
    first_day, last_day = year
    assert (first_day, last_day) == (first, last)


def test_previous_academic_year_around_1_august():
    assert tuple(previous_academic_year(D(2026, 7, 31))) == (D(2024, 8, 1), D(2025, 7, 31))
    assert tuple(previous_academic_year(D(2026, 8, 1))) == (D(2025, 8, 1), D(2026, 7, 31))


def test_other_start_dates():
    assert tuple(academic_year(D(2026, 8, 31), (9, 1))) == (D(2025, 9, 1), D(2026, 8, 31))
    assert tuple(academic_year(D(2026, 9, 1), (9, 1))) == (D(2026, 9, 1), D(2027, 8, 31))
    # A 29 February start is clamped to 28 February in common years.
    assert academic_year(D(2027, 3, 1), (2, 29)).first == D(2027, 2, 28)
    assert academic_year(D(2028, 2, 28), (2, 29)).first == D(2027, 2, 28)
    assert academic_year(D(2028, 2, 29), (2, 29)).first == D(2028, 2, 29)


def test_parse_start():
    assert parse_start("08-01") == (8, 1)
    assert parse_start("02-29") == (2, 29)
    for bad in ("8-1", "13-01", "04-31", "0801", "aa-bb"):
        with pytest.raises(ValueError):
            parse_start(bad)


@given(st.dates(min_value=D(1901, 1, 1), max_value=D(2998, 12, 31)))
def test_every_day_is_in_exactly_one_year_and_years_tile(day):
    year = academic_year(day)
    assert day in year
    assert academic_year(year.last + dt.timedelta(days=1)).first == year.last + dt.timedelta(1)
    assert previous_academic_year(day).last == year.first - dt.timedelta(days=1)
    assert 365 <= (year.last - year.first).days + 1 <= 366


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (D(2026, 5, 31), 3, D(2026, 2, 28)),
        (D(2024, 5, 31), 3, D(2024, 2, 29)),
        (D(2026, 3, 31), 1, D(2026, 2, 28)),
        (D(2026, 10, 31), 1, D(2026, 9, 30)),
        (D(2026, 1, 15), 1, D(2025, 12, 15)),
        (D(2026, 1, 31), 13, D(2024, 12, 31)),
        (D(2026, 8, 1), 3, D(2026, 5, 1)),
        (D(2026, 11, 28), 0, D(2026, 11, 28)),
    ],
)
def test_months_back_clamps_to_month_end(day, months, expected):
    assert months_back(day, months) == expected


@given(st.dates(min_value=D(1902, 1, 1), max_value=D(2999, 12, 31)), st.integers(0, 13))
def test_months_back_properties(day, months):
    back = months_back(day, months)
    assert back <= day
    assert (day.year - back.year) * 12 + day.month - back.month == months
    assert back.day == day.day or back.day < day.day  # clamped only downwards
