"""Academic years and calendar-month windows: pure date arithmetic for the transfer filters.

An academic year starts on ``start`` = (month, day) — b2bd.yaml ``academic_year_start``,
``"08-01"`` by default, the census and CTF convention (notes/domain.md section 6) — and ends
the day before the next start. A year is named by the calendar year it starts in (2026/27 is
``2026``), as CTF's ``AcademicYear`` is.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

DEFAULT_START: tuple[int, int] = (8, 1)


@dataclass(frozen=True, slots=True, order=True)
class AcademicYear:
    """An inclusive date range ``first .. last``, named by ``first.year``."""

    first: dt.date
    last: dt.date

    @property
    def name(self) -> str:
        """e.g. ``"2026/27"``."""
        return f"{self.first.year}/{(self.first.year + 1) % 100:02d}"

    def __contains__(self, day: object) -> bool:
        return isinstance(day, dt.date) and self.first <= day <= self.last

    def __iter__(self) -> Iterator[dt.date]:
        """Unpacks as ``first, last = academic_year(day)``."""
        return iter((self.first, self.last))


def _start_in(year: int, start: tuple[int, int]) -> dt.date:
    month, day = start
    # A 29 February start is clamped in common years, so every year still has a start.
    return dt.date(year, month, min(day, calendar.monthrange(year, month)[1]))


def parse_start(text: str) -> tuple[int, int]:
    """``"MM-DD"`` (b2bd.yaml ``academic_year_start``) as (month, day); ValueError if invalid."""
    month_text, sep, day_text = text.partition("-")
    if not sep or len(month_text) != 2 or len(day_text) != 2:
        raise ValueError(f"academic year start must be MM-DD, not {text!r}")
    month, day = int(month_text), int(day_text)
    dt.date(2000, month, day)  # raises for 13-01 or 04-31 (2000 is a leap year: 02-29 is fine)
    return month, day


def academic_year(day: dt.date, start: tuple[int, int] = DEFAULT_START) -> AcademicYear:
    """The academic year containing ``day``.

    With the default start, 31 July 2026 is in 2025/26 and 1 August 2026 in 2026/27."""
    first = _start_in(day.year, start)
    if day < first:
        first = _start_in(day.year - 1, start)
    return AcademicYear(first, _start_in(first.year + 1, start) - dt.timedelta(days=1))


def previous_academic_year(day: dt.date, start: tuple[int, int] = DEFAULT_START) -> AcademicYear:
    """The academic year before the one containing ``day``."""
    return academic_year(academic_year(day, start).first - dt.timedelta(days=1), start)


def months_back(day: dt.date, months: int) -> dt.date:
    """``day`` minus ``months`` calendar months, clamped to the target month's last day:
    31 May minus 3 months is 28 February (29 in a leap year); 31 March minus 1 is 28/29 Feb."""
    index = day.year * 12 + (day.month - 1) - months
    year, month0 = divmod(index, 12)
    month = month0 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))
