from __future__ import annotations

import json

import pytest

from b2bd.records import (
    REASONS,
    Deletion,
    Pupil,
    RecordDecoder,
    Rejection,
    Result,
    SessionMark,
    decode,
)

MARK = {
    "upn": "B801200005001",
    "date": "2026-11-02",
    "session": "AM",
    "code": "/",
    "updated_at": "2026-11-02T09:10:11Z",
}
PUPIL = {
    "upn": "B801200005001",
    "surname": "Okafor",
    "forename": "Zara",
    "dob": "2014-02-28",
    "sex": "F",
    "ncy": "7",
    "in_care": True,
    "care_authority": "881",
    "admission_date": "2025-09-03",
    "leaving_date": None,
    "updated_at": "2026-10-01T12:00:00Z",
}
RESULT = {
    "upn": "A80120000501A",
    "stage": "KS2",
    "subject": "MAT",
    "method": "TT",
    "component": None,
    "result": "104",
    "result_date": "2025-07-08",
    "updated_at": "2025-07-20T08:00:00Z",
}
DELETION = {
    "record": "mark",
    "key": "B801200005001/2026-11-02/PM",
    "deleted_at": "2026-11-03T00:00:00Z",
}


def line(base, **changes):
    return json.dumps({**base, **changes}).encode()


def test_valid_records_of_every_kind_decode():
    assert decode("mark", line(MARK)) == SessionMark(**MARK)
    assert decode("pupil", line(PUPIL)) == Pupil(**PUPIL)
    assert decode("result", line(RESULT)) == Result(**RESULT)
    assert decode("deletion", line(DELETION)) == Deletion(**DELETION)


def test_whitespace_and_newline_around_a_line_are_fine():
    assert isinstance(decode("mark", b"  " + line(MARK) + b"\r\n"), SessionMark)
    assert isinstance(decode("mark", line(MARK).decode()), SessionMark)


@pytest.mark.parametrize("code", ["C1", "C2", "J1", "Y1", "Y7", "K", "Q", "\\", "#"])
def test_2024_codes_are_accepted_from_19_august_2024(code):
    assert isinstance(decode("mark", line(MARK, code=code, date="2024-08-19")), SessionMark)


@pytest.mark.parametrize("code", ["H", "J", "Y"])
def test_retired_codes_are_accepted_in_history_only(code):
    assert isinstance(decode("mark", line(MARK, code=code, date="2024-07-01")), SessionMark)
    assert decode("mark", line(MARK, code=code)) == Rejection("attendance-code", "code")


@pytest.mark.parametrize(
    ("changes", "reason", "field"),
    [
        ({"upn": "A801200005001"}, "upn-check-letter", "upn"),
        ({"upn": "B80120000500"}, "upn-format", "upn"),
        ({"upn": 801200005001}, "upn-format", "upn"),
        ({"code": "A"}, "attendance-code", "code"),
        ({"code": "Y8"}, "attendance-code", "code"),
        ({"code": "C1", "date": "2023-11-02"}, "attendance-code", "code"),
        ({"date": "2026-02-30"}, "date", "date"),
        ({"date": "2026-2-3"}, "date", "date"),
        ({"date": "02/11/2026"}, "date", "date"),
        ({"updated_at": "2026-11-02T09:10:11+01:00"}, "date", "updated_at"),
        ({"updated_at": "2026-11-02T24:00:00Z"}, "date", "updated_at"),
        ({"updated_at": "2026-02-29T09:10:11Z"}, "date", "updated_at"),
        ({"updated_at": "2026-11-02T09:10:11.5Z"}, "date", "updated_at"),
        ({"session": "XM"}, "schema", "session"),
        ({"session": "am"}, "schema", "session"),
        ({"kind": "mark"}, "schema", None),
        ({"colour": "blue"}, "schema", None),
    ],
)
def test_invalid_marks_are_rejected_with_a_reason(changes, reason, field):
    assert decode("mark", line(MARK, **changes)) == Rejection(reason, field)


def test_missing_field_and_bad_json():
    missing = {k: v for k, v in MARK.items() if k != "session"}
    assert decode("mark", json.dumps(missing).encode()) == Rejection("schema", "session")
    assert decode("mark", b'{"upn": "B8012') == Rejection("json")
    assert decode("mark", b"") == Rejection("json")
    assert decode("mark", b"[1, 2]").reason == "schema"


@pytest.mark.parametrize(
    ("changes", "reason", "field"),
    [
        ({"ncy": "15"}, "ncy-code", "ncy"),
        ({"ncy": "M"}, "ncy-code", "ncy"),
        ({"ncy": 7}, "ncy-code", "ncy"),
        ({"sex": "X"}, "schema", "sex"),
        ({"dob": "2014-02-29"}, "date", "dob"),
        ({"leaving_date": "2026-13-01"}, "date", "leaving_date"),
        ({"care_authority": "88"}, "schema", "care_authority"),
        ({"surname": ""}, "schema", "surname"),
        ({"in_care": "yes"}, "schema", "in_care"),
        ({"upn": "A801200005001"}, "upn-check-letter", "upn"),
    ],
)
def test_invalid_pupils_are_rejected(changes, reason, field):
    assert decode("pupil", line(PUPIL, **changes)) == Rejection(reason, field)


@pytest.mark.parametrize("ncy", ["E1", "E2", "N1", "N2", "R", "1", "14", "X"])
def test_every_ncy_code_is_accepted(ncy):
    assert isinstance(decode("pupil", line(PUPIL, ncy=ncy)), Pupil)


def test_invalid_results_and_deletions_are_rejected():
    assert decode("result", line(RESULT, result_date="2025-06-31")) == Rejection(
        "date", "result_date"
    )
    assert decode("result", line(RESULT, upn="B80120000501A")).reason == "upn-check-letter"
    assert decode("deletion", line(DELETION, record="class")).reason == "schema"
    assert decode("deletion", line(DELETION, key="B801200005001")) == Rejection("key", "key")
    assert decode("deletion", line(DELETION, key="B801200005001/2026-02-30/AM")).reason == "key"
    assert decode("deletion", line(DELETION, key="A801200005001/2026-11-02/AM")) == Rejection(
        "upn-check-letter", "key"
    )
    pupil_gone = {"record": "pupil", "key": "B801200005001", "deleted_at": "2026-11-03T00:00:00Z"}
    assert isinstance(decode("deletion", json.dumps(pupil_gone)), Deletion)


def test_rejections_never_carry_the_offending_value():
    bad_upn = "A801200005001"
    for kind, base in (("mark", MARK), ("pupil", PUPIL)):
        rejection = decode(kind, line(base, upn=bad_upn, surname="Secret"))
        assert bad_upn not in repr(rejection)
        assert "Secret" not in repr(rejection)
    rejection = decode("mark", line(MARK, code="Zebra"))
    assert "Zebra" not in repr(rejection)
    assert set(REASONS) >= {rejection.reason}


def test_cached_upn_verdicts_stay_correct_across_many_lines():
    decoder = RecordDecoder("mark")
    good, bad = line(MARK), line(MARK, upn="A801200005001")
    results = [decoder(good if i % 3 else bad) for i in range(30)]
    assert [isinstance(r, Rejection) for r in results] == [i % 3 == 0 for i in range(30)]
