from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from b2bd.connectors.directory import FILES, DirectorySource
from b2bd.records import Deletion, Pupil, Rejection, SessionMark, key_upn
from b2bd.records.academic import academic_year
from b2bd.records.codes import REGULATIONS_2024, RETIRED_CODES
from b2bd.sample import (
    EXAMPLES,
    SchoolSpec,
    easter_sunday,
    school_days,
    write_examples,
    write_export,
    write_la_outbound,
)
from tests.support.exports import write_bench_export

REPO = Path(__file__).resolve().parents[2]


def digest(folder):
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
        for p in sorted(folder.iterdir())
    }


def read_all(folder, **kw):
    """Every record of every file the folder has (the manifest's ``files`` are checked)."""
    source = DirectorySource(folder, **kw)
    source.manifest()
    return {
        kind: [record for _, record in source.read(kind)]
        for kind, name in FILES.items()
        if (folder / name).exists()
    }


SPEC = SchoolSpec("8814001", "secondary", pupils=60, seed=7, marks_from=dt.date(2026, 5, 1))


def test_same_seed_gives_the_same_bytes(tmp_path):
    write_export(tmp_path / "a", SPEC)
    write_export(tmp_path / "b", SPEC)
    write_export(tmp_path / "c", dataclasses.replace(SPEC, seed=8))
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a")["attendance.jsonl"] != digest(tmp_path / "c")["attendance.jsonl"]


def test_cli_output_is_deterministic_across_processes(tmp_path):
    for name in ("x", "y"):
        subprocess.run(
            [sys.executable, "-m", "b2bd.sample", str(tmp_path / name), "--laestab", "8812002",
             "--seed", "3", "--pupils", "25", "--phase", "primary", "--from", "2026-09-01"],
            check=True, capture_output=True, cwd=REPO,
        )  # fmt: skip
    assert digest(tmp_path / "x") == digest(tmp_path / "y")


@pytest.mark.parametrize("phase", ["primary", "secondary"])
def test_every_generated_record_decodes_and_checks(tmp_path, phase):
    spec = dataclasses.replace(SPEC, phase=phase, laestab="8812002")
    write_export(tmp_path, spec)
    data = read_all(tmp_path, laestab="8812002")
    for kind, records in data.items():
        assert records, kind
        assert not [r for r in records if isinstance(r, Rejection)], kind
    upns = [p.upn for p in data["pupil"]]
    assert len(set(upns)) == len(upns)
    assert all(upn[1:8] == "8812002" for upn in upns)


def test_pupils_look_like_a_school(tmp_path):
    spec = dataclasses.replace(SPEC, pupils=400, sixth_form=True)
    write_export(tmp_path, spec)
    pupils: list[Pupil] = read_all(tmp_path)["pupil"]
    ncys = collections.Counter(p.ncy for p in pupils)
    assert set(ncys) <= {"7", "8", "9", "10", "11", "12", "13", "X"}
    assert all(ncys[str(n)] > 20 for n in range(7, 12))
    assert any(p.in_care and p.care_authority for p in pupils)
    assert all(p.care_authority is None for p in pupils if not p.in_care)
    year = academic_year(spec.marks_until)
    leavers = [dt.date.fromisoformat(p.leaving_date) for p in pupils if p.leaving_date]
    assert any(d < year.first for d in leavers) and any(d >= year.first for d in leavers)
    assert all(p.admission_date < (p.leaving_date or "9999") for p in pupils)
    assert any(p.upn[-1].isalpha() for p in pupils) or len(pupils) < 200  # temporary UPNs
    primary = dataclasses.replace(spec, phase="primary", laestab="8812002")
    write_export(tmp_path / "p", primary)
    primary_ncys = {p.ncy for p in read_all(tmp_path / "p")["pupil"]}
    assert {"N1", "N2", "R", "1", "6"} <= primary_ncys <= {"N1", "N2", "R", *"123456", "X"}


def test_marks_cover_school_days_with_a_realistic_mix(tmp_path):
    spec = dataclasses.replace(SPEC, pupils=120, marks_from=dt.date(2024, 6, 1))
    write_export(tmp_path, spec)
    data = read_all(tmp_path)
    marks: list[SessionMark] = data["mark"]
    codes = collections.Counter(m.code for m in marks)
    assert (codes["/"] + codes["\\"]) / len(marks) > 0.8
    assert {"I", "L", "N", "O", "G", "M"} <= set(codes)
    assert set(codes) & {"C1", "C2", "J1", "K", "Q", "Y1", "Y2", "Y3", "Y5", "Y6", "Y7"}
    before = {m.code for m in marks if m.date < REGULATIONS_2024.isoformat()}
    assert before & RETIRED_CODES  # history uses the codes of its day
    days = {m.date for m in marks}
    assert all(dt.date.fromisoformat(d).weekday() < 5 for d in days)
    assert not {d for d in days if d[5:7] == "08"}  # summer holiday
    # Each pupil has at most one mark per session, and none outside their time on roll.
    assert len({(m.upn, m.date, m.session) for m in marks}) == len(marks)
    roll = {p.upn: p for p in data["pupil"]}
    for mark in marks:
        pupil = roll[mark.upn]
        assert pupil.admission_date <= mark.date
        assert pupil.leaving_date is None or mark.date < pupil.leaving_date
    assert len({m.updated_at[:10] for m in marks}) > 100  # spread over time


def test_bulk_deleted_leavers_and_deleted_marks(tmp_path):
    spec = dataclasses.replace(SPEC, pupils=400)
    write_export(tmp_path, spec)
    data = read_all(tmp_path)
    deletions: list[Deletion] = data["deletion"]
    on_file = {p.upn for p in data["pupil"]}
    gone = {d.key for d in deletions if d.record == "pupil"}
    assert gone and not gone & on_file
    with_marks = {m.upn for m in data["mark"]}
    assert not gone & with_marks and not gone & {r.upn for r in data["result"]}
    # Some leavers kept their pupil record but lost their marks.
    assert [p for p in data["pupil"] if p.leaving_date and p.upn not in with_marks]
    removed = {d.key for d in deletions if d.record == "mark"}
    assert removed and all(key_upn(k) in with_marks for k in removed)
    assert not removed & {f"{m.upn}/{m.date}/{m.session}" for m in data["mark"]}


def test_results_cover_key_stages(tmp_path):
    write_export(tmp_path, dataclasses.replace(SPEC, pupils=200, sixth_form=True))
    stages = {r.stage for r in read_all(tmp_path)["result"]}
    assert {"PHON", "KS1", "KS2", "KS4"} <= stages


def test_la_outbound_matches_the_school_pupils(tmp_path):
    write_export(tmp_path / "school", SPEC)
    counts = write_la_outbound(tmp_path / "la", SPEC, changes=10)
    folder = tmp_path / "la" / "outbound" / "8814001"
    data = read_all(folder, require_services_manager=False)
    assert counts.pupils == len(data["pupil"]) == 10
    school = {p.upn for p in read_all(tmp_path / "school")["pupil"]}
    assert {p.upn for p in data["pupil"]} <= school
    assert not [r for rs in data.values() for r in rs if isinstance(r, Rejection)]


def test_bench_export_has_exactly_the_marks_asked_for(tmp_path):
    counts = write_bench_export(tmp_path / "bench", 20_000, seed=2)
    data = read_all(tmp_path / "bench")
    assert counts.marks == len(data["mark"]) == 20_000
    assert not [m for m in data["mark"] if isinstance(m, Rejection)]


def test_shipped_examples_are_what_the_generator_writes(tmp_path):
    write_examples(tmp_path / "schools")
    for spec in EXAMPLES:
        shipped = digest_files(REPO / "examples" / "schools" / spec.laestab)
        assert digest_files(tmp_path / "schools" / spec.laestab) == shipped
        outbound = REPO / "examples" / "la" / "outbound" / spec.laestab
        assert digest_files(tmp_path / "la" / "outbound" / spec.laestab) == digest_files(outbound)


def digest_files(folder):
    # Files only: running the example config delivers into the schools' inbound/ folders.
    return {k: v for k, v in digest(folder).items() if (folder / k).is_file()}


def test_school_calendar():
    assert easter_sunday(2026) == dt.date(2026, 4, 5)
    assert easter_sunday(2027) == dt.date(2027, 3, 28)
    days = school_days(dt.date(2025, 9, 1), dt.date(2026, 7, 31))
    assert 180 <= len(days) <= 195
    assert dt.date(2025, 12, 25) not in days and dt.date(2026, 4, 6) not in days
