"""The DfE attendance code table: the one place that knows what each register code means.

Source: notes/domain.md section 3 (School Attendance (Pupil Registration) (England) Regulations
2024, statutory from 19 August 2024, and the 2006 regulations before them). Everything else
(the record checks, the transfer filters, the sample generator) derives its sets from ``CODES``.

Decisions recorded here:

- Codes are valid only on the dates their regulations allowed them: the multi-character codes
  and K/Q from 19 August 2024; H, J and Y up to 18 August 2024; F up to 31 August 2013 (it was
  discontinued from the 2013/14 year and merged into H). A mark with a code outside its range is
  rejected as ``attendance-code``: an export that shows ``C1`` in 2023 or ``H`` in 2025 is wrong.
- Retired codes keep their historical category: H and F were authorised absences, J an approved
  educational activity, Y not counted. The DESIGN's absence kinds name today's sets
  (authorised = C C1 C2 E I J1 M R S T); ``AUTHORISED`` follows it exactly, while
  ``AUTHORISED_HISTORIC`` adds H and F. ``ABSENCES`` uses the historic set, because an
  "all absences" extract covering a pre-2024 date must not silently drop a family-holiday
  absence: H *was* an authorised absence on that day. (Current-year extracts only ever see
  H/F if the year straddles 19 August 2024, i.e. 2024/25's first three weeks.)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum


class Category(StrEnum):
    """How a code counts in attendance statistics."""

    PRESENT = "present"
    APPROVED_EDUCATIONAL_ACTIVITY = "approved-educational-activity"
    AUTHORISED = "authorised"
    UNAUTHORISED = "unauthorised"
    NOT_COUNTED = "not-counted"
    ADMINISTRATIVE = "administrative"


REGULATIONS_2024 = dt.date(2024, 8, 19)
"""First day of the 2024 regulations' code set."""


@dataclass(frozen=True, slots=True)
class AttendanceCode:
    """One register code. ``valid_from``/``valid_until`` bound (inclusively) the session dates
    the code may carry; None means unbounded. ``retired`` codes are kept only for history."""

    code: str
    meaning: str
    category: Category
    valid_from: dt.date | None = None
    valid_until: dt.date | None = None

    @property
    def retired(self) -> bool:
        return self.valid_until is not None


_P = Category.PRESENT
_AEA = Category.APPROVED_EDUCATIONAL_ACTIVITY
_A = Category.AUTHORISED
_U = Category.UNAUTHORISED
_NC = Category.NOT_COUNTED
_ADM = Category.ADMINISTRATIVE
_NEW = REGULATIONS_2024
_OLD = dt.date(2024, 8, 18)
_F_END = dt.date(2013, 8, 31)

CODES: tuple[AttendanceCode, ...] = (
    AttendanceCode("/", "present (AM)", _P),
    AttendanceCode("\\", "present (PM)", _P),
    AttendanceCode("L", "late, arrived before the register closed", _P),
    AttendanceCode("K", "attending education provision arranged by the LA", _AEA, _NEW),
    AttendanceCode("V", "educational visit or trip", _AEA),
    AttendanceCode("P", "approved sporting activity", _AEA),
    AttendanceCode("W", "work experience", _AEA),
    AttendanceCode("B", "other approved supervised educational activity", _AEA),
    AttendanceCode("D", "dual registered, attending the other school", _NC),
    AttendanceCode("C", "leave of absence, exceptional circumstances", _A),
    AttendanceCode("C1", "leave for regulated performance or employment abroad", _A, _NEW),
    AttendanceCode("C2", "leave: temporary reduced timetable", _A, _NEW),
    AttendanceCode("E", "suspended or excluded, no alternative provision", _A),
    AttendanceCode("I", "illness", _A),
    AttendanceCode("J1", "interview for employment or another institution", _A, _NEW),
    AttendanceCode("M", "medical or dental appointment", _A),
    AttendanceCode("R", "religious observance", _A),
    AttendanceCode("S", "study leave", _A),
    AttendanceCode("T", "parent travelling for occupational purposes", _A),
    AttendanceCode("G", "holiday not granted by the school", _U),
    AttendanceCode("N", "reason not yet provided", _U),
    AttendanceCode("O", "other or unknown unauthorised circumstances", _U),
    AttendanceCode("U", "arrived after the register closed", _U),
    AttendanceCode("X", "not of compulsory school age, not required to attend", _NC),
    AttendanceCode("Q", "unable to attend: lack of access arrangements", _NC, _NEW),
    AttendanceCode("Y1", "unable to attend: transport not available", _NC, _NEW),
    AttendanceCode("Y2", "unable to attend: widespread travel disruption", _NC, _NEW),
    AttendanceCode("Y3", "unable to attend: part of premises out of use", _NC, _NEW),
    AttendanceCode("Y4", "unable to attend: whole school closed unexpectedly", _NC, _NEW),
    AttendanceCode("Y5", "unable to attend: criminal justice detention", _NC, _NEW),
    AttendanceCode("Y6", "unable to attend: public-health guidance or law", _NC, _NEW),
    AttendanceCode("Y7", "unable to attend: any other unavoidable cause", _NC, _NEW),
    AttendanceCode("Z", "prospective pupil, not yet on the admission register", _ADM),
    AttendanceCode("#", "planned whole-school closure", _ADM),
    # Retired, kept so that history before the 2024 (or 2013) change still checks.
    AttendanceCode("H", "agreed family holiday (retired 2024)", _A, None, _OLD),
    AttendanceCode("J", "interview (retired 2024; now J1)", _AEA, None, _OLD),
    AttendanceCode("Y", "exceptional circumstances (retired 2024; now Y1-Y7, Q)", _NC, None, _OLD),
    AttendanceCode("F", "agreed extended family holiday (retired 2013)", _A, None, _F_END),
)

BY_CODE: dict[str, AttendanceCode] = {c.code: c for c in CODES}
ALL_CODES: frozenset[str] = frozenset(BY_CODE)
CURRENT_CODES: frozenset[str] = frozenset(c.code for c in CODES if not c.retired)
RETIRED_CODES: frozenset[str] = frozenset(c.code for c in CODES if c.retired)


def codes_in(*categories: Category, historic: bool = True) -> frozenset[str]:
    """The codes whose category is one of ``categories`` (retired ones only if ``historic``)."""
    return frozenset(
        c.code for c in CODES if c.category in categories and (historic or not c.retired)
    )


UNAUTHORISED: frozenset[str] = codes_in(Category.UNAUTHORISED)
"""G N O U."""
AUTHORISED: frozenset[str] = codes_in(Category.AUTHORISED, historic=False)
"""C C1 C2 E I J1 M R S T: DESIGN section 5's authorised set."""
AUTHORISED_HISTORIC: frozenset[str] = codes_in(Category.AUTHORISED)
"""AUTHORISED plus the retired H and F."""
ABSENCES: frozenset[str] = AUTHORISED_HISTORIC | UNAUTHORISED
"""What ``all-absences-current-year`` keeps (see the module docstring for H and F)."""
PRESENT: frozenset[str] = codes_in(Category.PRESENT)
ATTENDANCE: frozenset[str] = codes_in(Category.PRESENT, Category.APPROVED_EDUCATIONAL_ACTIVITY)
"""Sessions that count as attended (present plus approved educational activity)."""

DATE_RANGES: dict[str, tuple[str, str]] = {
    c.code: (
        c.valid_from.isoformat() if c.valid_from else "0000-01-01",
        c.valid_until.isoformat() if c.valid_until else "9999-12-31",
    )
    for c in CODES
    if c.valid_from or c.valid_until
}
"""Codes valid only on some dates: code -> (first, last) ISO date, compared as strings."""


def code_valid_on(code: str, date: str) -> bool:
    """Whether ``code`` may appear on a session dated ``date`` (ISO ``YYYY-MM-DD``)."""
    if code not in ALL_CODES:
        return False
    bounds = DATE_RANGES.get(code)
    return bounds is None or bounds[0] <= date <= bounds[1]
