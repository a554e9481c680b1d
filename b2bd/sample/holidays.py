"""A plausible English school-year calendar: holidays and school days (not any real LA's)."""

from __future__ import annotations

import datetime as dt


def easter_sunday(year: int) -> dt.date:
    """Gregorian Easter Sunday (anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    m = (32 + 2 * e + 2 * i - h - k) % 7
    n = (a + 11 * h + 22 * m) // 451
    month, day = divmod(h + m - 7 * n + 114, 31)
    return dt.date(year, month, day + 1)


def _week_of(day: dt.date) -> tuple[dt.date, dt.date]:
    monday = day - dt.timedelta(days=day.weekday())
    return monday, monday + dt.timedelta(days=4)


def _last_monday(year: int, month: int) -> dt.date:
    day = dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)
    return day - dt.timedelta(days=day.weekday())


def holidays(year: int) -> tuple[tuple[dt.date, dt.date], ...]:
    """Closed ranges (inclusive) of the English school year starting in September ``year``:
    a plausible term calendar, not any real LA's."""
    easter = easter_sunday(year + 1)
    first_may = dt.date(year + 1, 5, 1)
    may_bank = first_may + dt.timedelta(days=(7 - first_may.weekday()) % 7)
    return (
        (dt.date(year, 7, 23), dt.date(year, 9, 2)),
        _week_of(_last_monday(year, 10)),
        (dt.date(year, 12, 20), dt.date(year + 1, 1, 3)),
        _week_of(dt.date(year + 1, 2, 14)),
        (easter - dt.timedelta(days=6), easter + dt.timedelta(days=5)),
        (may_bank, may_bank),
        _week_of(_last_monday(year + 1, 5)),
        (dt.date(year + 1, 7, 23), dt.date(year + 1, 9, 2)),
    )


def school_days(first: dt.date, last: dt.date) -> list[dt.date]:
    """Every school day (Mon-Fri outside :func:`holidays`) from ``first`` to ``last``."""
    closed: set[dt.date] = set()
    for year in range(first.year - 1, last.year + 1):
        for start, end in holidays(year):
            closed.update(start + dt.timedelta(days=n) for n in range((end - start).days + 1))
    days = []
    day = first
    while day <= last:
        if day.weekday() < 5 and day not in closed:
            days.append(day)
        day += dt.timedelta(days=1)
    return days
