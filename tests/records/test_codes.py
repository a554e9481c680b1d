from __future__ import annotations

import pytest

from b2bd.records.codes import (
    ABSENCES,
    ALL_CODES,
    ATTENDANCE,
    AUTHORISED,
    AUTHORISED_HISTORIC,
    BY_CODE,
    CODES,
    CURRENT_CODES,
    RETIRED_CODES,
    UNAUTHORISED,
    Category,
    code_valid_on,
)


def test_unauthorised_and_authorised_sets_are_the_design_sets():
    assert {"G", "N", "O", "U"} == UNAUTHORISED
    assert {"C", "C1", "C2", "E", "I", "J1", "M", "R", "S", "T"} == AUTHORISED
    assert AUTHORISED | {"H", "F"} == AUTHORISED_HISTORIC
    assert ABSENCES == AUTHORISED_HISTORIC | UNAUTHORISED


def test_codes_are_unique_and_include_the_2024_multi_character_codes():
    assert len(CODES) == len(BY_CODE)
    assert {"C1", "C2", "J1", "Y1", "Y2", "Y3", "Y4", "Y5", "Y6", "Y7", "K", "Q"} <= CURRENT_CODES


def test_retired_codes_keep_their_historical_category():
    assert {"H", "J", "Y", "F"} == RETIRED_CODES
    assert BY_CODE["H"].category is Category.AUTHORISED
    assert BY_CODE["J"].category is Category.APPROVED_EDUCATIONAL_ACTIVITY
    assert BY_CODE["Y"].category is Category.NOT_COUNTED
    assert BY_CODE["F"].category is Category.AUTHORISED
    assert not RETIRED_CODES & CURRENT_CODES


@pytest.mark.parametrize(
    ("code", "category"),
    [
        ("/", Category.PRESENT),
        ("\\", Category.PRESENT),
        ("L", Category.PRESENT),
        ("K", Category.APPROVED_EDUCATIONAL_ACTIVITY),
        ("B", Category.APPROVED_EDUCATIONAL_ACTIVITY),
        ("J1", Category.AUTHORISED),
        ("U", Category.UNAUTHORISED),
        ("D", Category.NOT_COUNTED),
        ("Q", Category.NOT_COUNTED),
        ("Y4", Category.NOT_COUNTED),
        ("Z", Category.ADMINISTRATIVE),
        ("#", Category.ADMINISTRATIVE),
    ],
)
def test_categories(code, category):
    assert BY_CODE[code].category is category


def test_attendance_counts_present_and_approved_activity_only():
    assert {"/", "\\", "L", "K", "V", "P", "W", "B"} <= ATTENDANCE
    assert not ATTENDANCE & ABSENCES


def test_every_category_is_used_and_sets_do_not_overlap():
    assert {c.category for c in CODES} == set(Category)
    assert not AUTHORISED_HISTORIC & UNAUTHORISED
    assert ALL_CODES == CURRENT_CODES | RETIRED_CODES


@pytest.mark.parametrize(
    ("code", "date", "valid"),
    [
        ("C1", "2024-08-19", True),
        ("C1", "2024-08-18", False),
        ("H", "2024-08-18", True),
        ("H", "2024-08-19", False),
        ("Y", "2023-01-10", True),
        ("Y7", "2023-01-10", False),
        ("F", "2013-08-31", True),
        ("F", "2013-09-02", False),
        ("/", "1999-01-01", True),
        ("A", "2025-01-01", False),
    ],
)
def test_codes_are_valid_only_on_their_dates(code, date, valid):
    assert code_valid_on(code, date) is valid
