"""Deterministic sample school data: export folders as the ``directory`` connector reads them.

Everything is fictional (names from a small built-in list, UPNs made up with valid check
letters) but shaped like a real SIMS export, so the example config, the tests and the
benchmarks exercise the same paths real data would:

- pupils with a realistic NCY spread for the phase (primary: N1 N2 R 1-6; secondary: 7-11 and
  sometimes a sixth form 12-13; a few X), dates of birth matching their NCY, a few looked
  after (``in_care`` with a ``care_authority``), some leavers (before and after 1 August),
  mid-year admissions, and a few temporary UPNs;
- a session mark for every AM and PM of every school day each pupil was on roll (Mon-Fri,
  minus half terms, Christmas, Easter and summer), with a realistic mix of DfE codes: mostly
  ``/`` and ``\\``, illness, appointments, lateness, unauthorised absence, trips, work
  experience, study leave, and the 2024 codes (K, C1, C2, J1, Q, Y1-Y7) only on or after
  19 August 2024 (their pre-2024 equivalents before it, H/J/Y included);
- results for KS1-, KS2-, phonics- and KS4-style assessments;
- ``updated_at`` spread over time (registers saved per class and session, some marks amended
  days later);
- bulk-deleted leavers: some leavers' pupil record, marks and results are gone and
  ``deletions.jsonl`` says so; others kept their pupil record but lost their marks.

Every manifest lists its data files with their record counts and sha256 (``files``), so the
directory connector checks that what it reads is what was exported (DESIGN section 5).

Output is byte-identical for the same arguments (every pupil draws from its own
``random.Random`` seeded by ``(seed, laestab, index)``); nothing reads the clock. Large mark
files for benchmarks are streamed (:func:`write_bench_export`), never held in memory.

CLI: ``python -m b2bd.sample OUT_DIR --laestab 8814001 --seed 1 --pupils 300`` (see ``--help``);
``python -m b2bd.sample --examples examples/schools`` regenerates the repository's examples.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import itertools
import json
import os
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from b2bd.records.academic import academic_year
from b2bd.records.codes import REGULATIONS_2024
from b2bd.records.model import Deletion, Pupil, Result
from b2bd.records.upn import make_upn

Phase = Literal["primary", "secondary"]
DEFAULT_UNTIL = dt.date(2026, 11, 27)
"""Last day of marks when none is given: the date the shipped examples were generated for."""

SURNAMES = (
    "Abbott", "Adeyemi", "Ahmed", "Bailey", "Begum", "Bennett", "Brown", "Campbell", "Chen",
    "Clarke", "Collins", "Cooper", "Davies", "Evans", "Fletcher", "Foster", "Green", "Hall",
    "Harris", "Hughes", "Hussain", "Jackson", "James", "Kaur", "Khan", "Kowalski", "Lewis",
    "Martin", "Mensah", "Mitchell", "Moore", "Murphy", "Nowak", "O'Neill", "Okafor", "Palmer",
    "Patel", "Phillips", "Roberts", "Robinson", "Shah", "Singh", "Smith", "Smith-Jones",
    "Taylor", "Thomas", "Turner", "Walker", "Ward", "Watson", "White", "Williams", "Wilson",
    "Wood", "Wright", "Young",
)  # fmt: skip
FORENAMES = {
    "F": (
        "Amelia", "Aisha", "Ava", "Chloe", "Ella", "Emily", "Evie", "Freya", "Grace", "Hannah",
        "Isla", "Ivy", "Layla", "Lily", "Maryam", "Mia", "Olivia", "Poppy", "Rosie", "Ruby",
        "Sofia", "Zara", "Zofia", "Niamh",
    ),
    "M": (
        "Adam", "Alfie", "Archie", "Arthur", "Charlie", "Daniel", "Ethan", "Finley", "George",
        "Harry", "Henry", "Isaac", "Jack", "Jacob", "Leo", "Louis", "Muhammad", "Noah", "Oliver",
        "Oscar", "Reuben", "Theo", "Tomasz", "Yusuf",
    ),
}  # fmt: skip
CARE_AUTHORITIES = ("881", "881", "881", "882", "883", "919", "886")

NCY_WEIGHTS: dict[Phase, tuple[tuple[str, float], ...]] = {
    "primary": (
        ("N1", 0.4), ("N2", 0.8), ("R", 1), ("1", 1), ("2", 1), ("3", 1), ("4", 1), ("5", 1),
        ("6", 1), ("X", 0.04),
    ),
    "secondary": (
        ("7", 1), ("8", 1), ("9", 1), ("10", 1), ("11", 1), ("X", 0.04),
    ),
}  # fmt: skip
SIXTH_FORM: tuple[tuple[str, float], ...] = (("12", 0.6), ("13", 0.5))
_NCY_NUMBER = {"E1": -4, "E2": -3, "N1": -2, "N2": -1, "R": 0} | {str(n): n for n in range(1, 15)}

# Absence reasons and their relative weights; the pre-2024 equivalent of each 2024 code.
_ABSENCE: tuple[tuple[str, float], ...] = (
    ("I", 40), ("M", 6), ("O", 10), ("N", 9), ("G", 6), ("C", 4), ("U", 3), ("E", 1.2),
    ("R", 1), ("T", 0.3), ("B", 1.5), ("V", 1), ("P", 0.6), ("C1", 0.2), ("J1", 0.3),
    ("Q", 0.2), ("Y1", 0.3), ("Y2", 0.15), ("Y3", 0.1), ("Y5", 0.05), ("Y6", 0.1), ("Y7", 0.3),
    ("K", 0.5), ("C2", 0.4),
)  # fmt: skip
_ABSENCE_CODES = tuple(code for code, _ in _ABSENCE)
_ABSENCE_CUM = tuple(sum(weight for _, weight in _ABSENCE[: i + 1]) for i in range(len(_ABSENCE)))
_BEFORE_2024 = {
    "K": "B", "C1": "C", "C2": "C", "J1": "J", "Q": "Y", "Y1": "Y", "Y2": "Y", "Y3": "Y",
    "Y4": "Y", "Y5": "Y", "Y6": "Y", "Y7": "Y",
}  # fmt: skip
_CODE_JSON = {
    code: json.dumps(code) for code in (*_ABSENCE_CODES, *_BEFORE_2024.values(), *"/\\LHWSXD", "Y4")
}


@dataclass(frozen=True)
class SchoolSpec:
    """What to generate for one school (base).

    Marks cover every school day from ``marks_from`` to ``marks_until`` inclusive. Pupils'
    NCYs are those of the academic year containing ``marks_until``.
    """

    laestab: str
    phase: Phase = "secondary"
    pupils: int = 300
    seed: int = 1
    marks_from: dt.date | None = None  # default: 1 September of the previous academic year
    marks_until: dt.date = DEFAULT_UNTIL
    mis: str = "sims"
    sims_version: str = "7.214"
    services_manager: Literal["running", "stopped"] = "running"
    sixth_form: bool | None = None  # None: decided by the seed
    academic_year_start: tuple[int, int] = (8, 1)

    @property
    def first_mark_day(self) -> dt.date:
        if self.marks_from is not None:
            return self.marks_from
        previous_first = academic_year(self.marks_until, self.academic_year_start).first
        return dt.date(previous_first.year - 1, 9, 1)

    @property
    def exported_at(self) -> str:
        return f"{self.marks_until.isoformat()}T18:00:00Z"


@dataclass(frozen=True)
class SamplePupil:
    """A generated pupil with the facts the marks and results generators need."""

    index: int
    record: Pupil
    marks_deleted: bool  # attendance bulk-deleted (leaver): no marks written
    pupil_deleted: bool  # everything bulk-deleted: not in pupils.jsonl, a deletion instead
    absence_rate: float
    profile: str  # "", "nursery-part-time", "dual", "la-provision", "reduced-timetable"
    deleted_at: str | None = None


@dataclass
class Counts:
    """Records written per file, and each file's ``{"records": N, "sha256": H}`` for the
    manifest (by file name)."""

    pupils: int = 0
    marks: int = 0
    results: int = 0
    deletions: int = 0
    files: dict[str, dict[str, object]] = dataclasses.field(default_factory=dict)

    def write(self, path: Path, lines: Iterator[bytes]) -> int:
        """Write ``path`` (:func:`_write_atomic_lines`), remembering its facts."""
        count, digest = _write_atomic_lines(path, lines)
        self.files[path.name] = {"records": count, "sha256": digest}
        return count


# -- the school calendar ------------------------------------------------------------------


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


# -- pupils ---------------------------------------------------------------------------------


def _pupil_rng(spec: SchoolSpec, index: int, purpose: str) -> random.Random:
    # str seeds are hashed with SHA-512 by random.Random: stable across runs and platforms.
    return random.Random(f"{spec.seed}/{spec.laestab}/{index}/{purpose}")


def _ncy_table(spec: SchoolSpec) -> tuple[tuple[str, float], ...]:
    table = NCY_WEIGHTS[spec.phase]
    sixth_form = spec.sixth_form
    if sixth_form is None:
        sixth_form = random.Random(f"{spec.seed}/{spec.laestab}/sixth-form").random() < 0.5
    if spec.phase == "secondary" and sixth_form:
        table = table + SIXTH_FORM
    return table


def _stamp(day: dt.date, rng: random.Random, first_hour: int = 7, last_hour: int = 18) -> str:
    return (
        f"{day.isoformat()}T{rng.randint(first_hour, last_hour):02d}:"
        f"{rng.randrange(60):02d}:{rng.randrange(60):02d}Z"
    )


def generate_pupils(spec: SchoolSpec) -> list[SamplePupil]:
    """The school's pupils, in UPN-issue order (a few hundred at most, so a list is fine)."""
    year = academic_year(spec.marks_until, spec.academic_year_start)
    last_day = spec.marks_until
    table = _ncy_table(spec)
    codes = [code for code, _ in table]
    weights = [weight for _, weight in table]
    la, estab = spec.laestab[:3], spec.laestab[3:]
    out = []
    for index in range(spec.pupils):
        rng = _pupil_rng(spec, index, "pupil")
        ncy = rng.choices(codes, weights)[0]
        number = _NCY_NUMBER.get(ncy, rng.randint(7, 11) if spec.phase == "secondary" else 3)
        # Born between 1 September and 31 August of the cohort's year.
        born_in = year.first.year - 5 - number
        dob = dt.date(born_in, 9, 1) + dt.timedelta(days=rng.randrange(365))
        sex = rng.choice(("F", "M"))
        entry_number = {"primary": -2 if ncy in ("N1", "N2") else 0, "secondary": 7}[spec.phase]
        entry_year = year.first.year - max(0, number - entry_number)
        if rng.random() < 0.12:  # joined mid-way through their time at the school
            admission = dt.date(entry_year, 9, 1) + dt.timedelta(days=rng.randrange(700))
            admission = min(admission, last_day - dt.timedelta(days=rng.randrange(1, 60)))
        else:
            admission = dt.date(entry_year, 9, 3)
        leaving: dt.date | None = None
        roll = rng.random()
        if roll < 0.05:  # left before this academic year (e.g. moved away last spring)
            leaving = year.first - dt.timedelta(days=rng.randrange(1, 200))
        elif roll < 0.09:  # left during this academic year
            leaving = year.first + dt.timedelta(days=rng.randrange(0, (last_day - year.first).days))
        if leaving is not None and leaving <= admission:
            admission = leaving - dt.timedelta(days=rng.randrange(60, 400))
        in_care = rng.random() < 0.03
        # Unique per school: the serial is the index; past 1,000 pupils (benchmark sets) each
        # block of 1,000 takes its own issue year.
        issue_year = admission.year if rng.random() < 0.8 else admission.year - 1
        if index >= 1000:
            issue_year = 50 + index // 1000
        upn = make_upn(la, estab, issue_year, index % 1000, temporary=rng.random() < 0.01)
        changed = admission + dt.timedelta(days=rng.randrange(max(1, (last_day - admission).days)))
        if leaving is not None:
            changed = max(changed, leaving)
        record = Pupil(
            upn=upn,
            surname=rng.choice(SURNAMES),
            forename=rng.choice(FORENAMES[sex]),
            dob=dob.isoformat(),
            sex=sex,
            ncy=ncy,
            in_care=in_care,
            care_authority=rng.choice(CARE_AUTHORITIES) if in_care else None,
            admission_date=admission.isoformat(),
            leaving_date=leaving.isoformat() if leaving else None,
            updated_at=_stamp(min(changed, last_day), rng),
        )
        deletion = rng.random()
        left_before = leaving is not None and leaving < year.first
        pupil_deleted = left_before and deletion < 0.25
        marks_deleted = left_before and not pupil_deleted and deletion < 0.5
        deleted_at = None
        if pupil_deleted or marks_deleted:
            deleted_at = _stamp(year.first + dt.timedelta(days=rng.randrange(30, 60)), rng)
            deleted_at = min(deleted_at, spec.exported_at)
        profile = ""
        if ncy in ("N1", "N2") and rng.random() < 0.5:
            profile = "nursery-part-time"
        elif rng.random() < 0.06:
            profile = rng.choice(("dual", "la-provision", "reduced-timetable"))
        absence_rate = rng.uniform(0.15, 0.35) if rng.random() < 0.1 else rng.uniform(0.0, 0.07)
        out.append(
            SamplePupil(
                index=index,
                record=record,
                marks_deleted=marks_deleted,
                pupil_deleted=pupil_deleted,
                absence_rate=absence_rate,
                profile=profile,
                deleted_at=deleted_at,
            )
        )
    return out


# -- marks ----------------------------------------------------------------------------------


def _on_roll_days(pupil: Pupil, days: list[dt.date]) -> Iterator[dt.date]:
    admitted = dt.date.fromisoformat(pupil.admission_date)
    left = dt.date.fromisoformat(pupil.leaving_date) if pupil.leaving_date else None
    for day in days:
        if day >= admitted and (left is None or day < left):
            yield day


def _absence_code(rng: random.Random) -> str:
    pick = rng.random() * _ABSENCE_CUM[-1]
    for code, bound in zip(_ABSENCE_CODES, _ABSENCE_CUM, strict=True):
        if pick < bound:
            return code
    return "O"


def _day_codes(sample: SamplePupil, day: dt.date, rng: random.Random) -> tuple[str, str]:
    """The AM and PM codes of one pupil on one school day."""
    ncy = sample.record.ncy
    profile = sample.profile
    if profile == "nursery-part-time":
        am, pm = "/", "X"
    elif profile == "dual" and day.weekday() in (3, 4):
        return "D", "D"
    elif profile == "la-provision" and day.weekday() in (0, 1):
        am, pm = "K", "K"
    elif profile == "reduced-timetable":
        am, pm = "/", "C2"
    elif ncy == "10" and day.month == 6 and 10 <= day.day <= 16:
        return "W", "W"
    elif ncy in ("11", "13") and (day.month == 6 or (day.month == 5 and day.day > 10)):
        am, pm = ("S", "S") if rng.random() < 0.7 else ("/", "\\")
    else:
        am, pm = "/", "\\"
    if am == "/" and rng.random() < sample.absence_rate:
        code = _absence_code(rng)
        if code == "M":  # an appointment takes one session
            am, pm = (code, pm) if rng.random() < 0.5 else (am, code)
        elif code == "U":
            am = code
        else:
            am, pm = code, (code if pm in ("\\", "C2") else pm)
    elif am == "/" and rng.random() < 0.03:
        am = "L"
    if day < REGULATIONS_2024:
        am, pm = _BEFORE_2024.get(am, am), _BEFORE_2024.get(pm, pm)
        if am == "C" and rng.random() < 0.6:
            am, pm = "H", ("H" if pm == "C" else pm)
    return am, pm


def _school_closure_day(spec: SchoolSpec, days: list[dt.date]) -> dt.date | None:
    """One unexpected whole-school closure (e.g. snow), for some schools."""
    rng = random.Random(f"{spec.seed}/{spec.laestab}/closure")
    winter = [d for d in days if d.month in (1, 2)]
    return rng.choice(winter) if winter and rng.random() < 0.5 else None


def iter_mark_lines(
    spec: SchoolSpec,
    pupils: list[SamplePupil],
    days: list[dt.date] | None = None,
    removed: frozenset[str] = frozenset(),
) -> Iterator[bytes]:
    """Every mark line (with newline) of the school's ``attendance.jsonl``, pupil by pupil in
    date order, leaving out marks whose key is in ``removed``. Streams: memory does not grow
    with the number of marks."""
    if days is None:
        days = school_days(spec.first_mark_day, spec.marks_until)
    closure = _school_closure_day(spec, days)
    minutes: dict[tuple[str, str], int] = {}  # bounded: NCYs x school days
    for sample in pupils:
        if sample.marks_deleted or sample.pupil_deleted:
            continue
        rng = _pupil_rng(spec, sample.index, "marks")
        upn = sample.record.upn
        # One register per class and session: pupils of one NCY share its save time.
        class_seed = f"{spec.seed}/{spec.laestab}/{sample.record.ncy}"
        for day in _on_roll_days(sample.record, days):
            iso = day.isoformat()
            if day == closure:
                am = pm = "Y4" if day >= REGULATIONS_2024 else "Y"
            else:
                am, pm = _day_codes(sample, day, rng)
            minute = minutes.get((class_seed, iso))
            if minute is None:
                minute = minutes[class_seed, iso] = hash_minute(class_seed, iso)
            for session, code, hour in (("AM", am, 8), ("PM", pm, 13)):
                if removed and f"{upn}/{iso}/{session}" in removed:
                    continue
                if code not in ("/", "\\", "L", "X", "D") and rng.random() < 0.2:
                    # Amended later (N replaced by a reason, say): a later updated_at.
                    later = day + dt.timedelta(days=rng.randint(1, 10))
                    stamp = _stamp(later, rng, 8, 17)
                    stamp = min(stamp, spec.exported_at)
                else:
                    stamp = f"{iso}T{hour:02d}:{minute:02d}:{minute:02d}Z"
                yield (
                    f'{{"upn":"{upn}","date":"{iso}","session":"{session}",'
                    f'"code":{_CODE_JSON[code]},"updated_at":"{stamp}"}}\n'
                ).encode()


def hash_minute(class_seed: str, iso: str) -> int:
    """A stable minute in 0..59 for one class's register on one date."""
    return random.Random(f"{class_seed}/{iso}").randrange(60)


# -- results --------------------------------------------------------------------------------

_KS2_TESTS = (("READ", "TT"), ("MAT", "TT"), ("GPS", "TT"))
_KS1_SUBJECTS = ("READ", "WRIT", "MAT", "SCI")
_TA = ("PKF", "WTS", "EXS", "EXS", "EXS", "GDS")
_GCSE = ("ENG", "ENGLIT", "MAT", "SCI", "HIS", "GEO", "FRE", "ART", "COMP", "RE")


def _results_for(spec: SchoolSpec, sample: SamplePupil) -> Iterator[Result]:
    pupil = sample.record
    number = _NCY_NUMBER.get(pupil.ncy)
    if number is None:
        return
    rng = _pupil_rng(spec, sample.index, "results")
    this_year = academic_year(spec.marks_until, spec.academic_year_start).first.year

    def summer(years_ago: int) -> dt.date:
        return dt.date(this_year - years_ago, 7, 1) + dt.timedelta(days=rng.randrange(10))

    def result(stage: str, subject: str, method: str, value: str, when: dt.date) -> Result:
        stamp = _stamp(when + dt.timedelta(days=rng.randint(1, 20)), rng)
        return Result(
            upn=pupil.upn,
            stage=stage,
            subject=subject,
            method=method,
            component=None,
            result=value,
            result_date=when.isoformat(),
            updated_at=min(stamp, spec.exported_at),
        )

    if number >= 2:  # phonics screening check at the end of year 1
        when = summer(number - 1)
        yield result("PHON", "PHON", "CHK", str(rng.randint(18, 40)), when)
    if number >= 3:  # key stage 1 teacher assessment at the end of year 2
        when = summer(number - 2)
        for subject in _KS1_SUBJECTS:
            yield result("KS1", subject, "TA", rng.choice(_TA), when)
    if number >= 7:  # key stage 2 tests and writing TA at the end of year 6
        when = summer(number - 6)
        for subject, method in _KS2_TESTS:
            yield result("KS2", subject, method, str(rng.randint(88, 120)), when)
        yield result("KS2", "WRIT", "TA", rng.choice(_TA[1:]), when)
    if number >= 12:  # GCSEs at the end of year 11, results in August
        when = dt.date(this_year - (number - 11), 8, 21)
        for subject in rng.sample(_GCSE, 8):
            yield result("KS4", subject, "EX", str(rng.randint(1, 9)), when)
        # Combined science gives two grades: one result per component.
        first = rng.randint(2, 9)
        for component, grade in (("1", first), ("2", max(1, first - rng.randint(0, 1)))):
            yield Result(
                upn=pupil.upn,
                stage="KS4",
                subject="SCIDA",
                method="EX",
                component=component,
                result=str(grade),
                result_date=when.isoformat(),
                updated_at=min(_stamp(when + dt.timedelta(days=2), rng), spec.exported_at),
            )


# -- writing --------------------------------------------------------------------------------


def _write_atomic_lines(path: Path, lines: Iterator[bytes]) -> tuple[int, str]:
    """Write lines to ``path`` via a temporary file and rename; return the line count and the
    file's sha256."""
    tmp = path.with_name(f".{path.name}.tmp")
    count = 0
    digest = hashlib.sha256()
    with tmp.open("wb", buffering=1 << 20) as handle:
        for line in lines:
            handle.write(line)
            digest.update(line)
            count += 1
    os.replace(tmp, path)
    return count, digest.hexdigest()


def _manifest(spec: SchoolSpec, counts: Counts, *, outbound: bool = False) -> bytes:
    doc: dict[str, object] = {
        "mis": "one" if outbound else spec.mis,
        "exported_at": spec.exported_at,
        "laestab": spec.laestab,
    }
    if not outbound:
        doc["sims_version"] = spec.sims_version
        doc["services_manager"] = spec.services_manager
    doc["files"] = dict(sorted(counts.files.items()))
    return json.dumps(doc, indent=2).encode() + b"\n"


def write_export(out_dir: Path, spec: SchoolSpec) -> Counts:
    """Write a complete school export folder (manifest and the four data files)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder = msgspec.json.Encoder()
    pupils = generate_pupils(spec)
    counts = Counts()
    counts.pupils = counts.write(
        out_dir / "pupils.jsonl",
        (encoder.encode(p.record) + b"\n" for p in pupils if not p.pupil_deleted),
    )
    days = school_days(spec.first_mark_day, spec.marks_until)
    deletions = _deletions(spec, pupils, days)
    removed = frozenset(d.key for d in deletions if d.record == "mark")
    counts.marks = counts.write(
        out_dir / "attendance.jsonl", iter_mark_lines(spec, pupils, days, removed)
    )
    counts.results = counts.write(
        out_dir / "results.jsonl",
        (
            encoder.encode(r) + b"\n"
            for p in pupils
            if not p.pupil_deleted
            for r in _results_for(spec, p)
        ),
    )
    counts.deletions = counts.write(
        out_dir / "deletions.jsonl",
        (encoder.encode(d) + b"\n" for d in deletions),
    )
    (out_dir / "manifest.json").write_bytes(_manifest(spec, counts))
    return counts


def _deletions(spec: SchoolSpec, pupils: list[SamplePupil], days: list[dt.date]) -> list[Deletion]:
    """Bulk-deleted pupils, then a few single marks removed at the source (entered for the
    wrong pupil and taken out again): :func:`iter_mark_lines` leaves those marks out."""
    out = [
        Deletion(record="pupil", key=sample.record.upn, deleted_at=sample.deleted_at)
        for sample in pupils
        if sample.pupil_deleted and sample.deleted_at is not None
    ]
    rng = random.Random(f"{spec.seed}/{spec.laestab}/deleted-marks")
    with_marks = [p for p in pupils if not (p.pupil_deleted or p.marks_deleted)]
    for sample in rng.sample(with_marks, min(3, len(with_marks))):
        on_roll = list(_on_roll_days(sample.record, days))
        if not on_roll:
            continue
        day = rng.choice(on_roll)
        stamp = min(_stamp(day + dt.timedelta(days=1), rng), spec.exported_at)
        key = f"{sample.record.upn}/{day.isoformat()}/{rng.choice(('AM', 'PM'))}"
        out.append(Deletion(record="mark", key=key, deleted_at=stamp))
    return out


def write_la_outbound(la_store: Path, spec: SchoolSpec, changes: int = 20) -> Counts:
    """Write the LA's own change records for a base into ``<la_store>/outbound/<laestab>/``
    (same layout as a school export; manifest without services_manager), for to-school
    transfers: ``changes`` pupils of the school whose details the LA updated (care status,
    care authority), with ``updated_at`` spread over the generated period, plus one deletion.
    The UPNs are those :func:`write_export` gives the same spec's pupils."""
    out_dir = la_store / "outbound" / spec.laestab
    out_dir.mkdir(parents=True, exist_ok=True)
    pupils = [p for p in generate_pupils(spec) if not p.pupil_deleted]
    rng = random.Random(f"{spec.seed}/{spec.laestab}/la-outbound")
    chosen = sorted(rng.sample(range(len(pupils)), min(changes, len(pupils))))
    first = spec.first_mark_day
    span = max(1, (spec.marks_until - first).days)
    encoder = msgspec.json.Encoder()
    records = []
    for i in chosen:
        pupil = pupils[i].record
        in_care = not pupil.in_care if rng.random() < 0.5 else pupil.in_care
        stamp = _stamp(first + dt.timedelta(days=rng.randrange(span)), rng)
        records.append(
            msgspec.structs.replace(
                pupil,
                in_care=in_care,
                care_authority=(pupil.care_authority or rng.choice(CARE_AUTHORITIES))
                if in_care
                else None,
                updated_at=min(stamp, spec.exported_at),
            )
        )
    counts = Counts()
    counts.pupils = counts.write(
        out_dir / "pupils.jsonl", (encoder.encode(r) + b"\n" for r in records)
    )
    deletions = []
    if len(pupils) > changes:
        gone = pupils[rng.randrange(len(pupils))].record
        deletions.append(Deletion(record="pupil", key=gone.upn, deleted_at=spec.exported_at))
    counts.deletions = counts.write(
        out_dir / "deletions.jsonl", (encoder.encode(d) + b"\n" for d in deletions)
    )
    (out_dir / "manifest.json").write_bytes(_manifest(spec, counts, outbound=True))
    return counts


def _bench_school(
    n_marks: int, seed: int, laestab: str
) -> tuple[SchoolSpec, list[SamplePupil], list[dt.date]]:
    """A secondary school just big enough for ``n_marks`` marks: the fewest leading pupils
    whose sessions on roll add up to at least ``n_marks``."""
    days = school_days(dt.date(DEFAULT_UNTIL.year - 1, 9, 1), DEFAULT_UNTIL)
    guess = max(10, n_marks // len(days) + 10)  # about twice the pupils needed
    spec = SchoolSpec(laestab=laestab, phase="secondary", pupils=guess, seed=seed)
    pupils = generate_pupils(spec)
    total = 0
    for count, sample in enumerate(pupils, start=1):
        if not (sample.pupil_deleted or sample.marks_deleted):
            total += 2 * sum(1 for _ in _on_roll_days(sample.record, days))
        if total >= n_marks:
            return dataclasses.replace(spec, pupils=count), pupils[:count], days
    raise ValueError(f"cannot place {n_marks} marks")  # unreachable with the guess above


def write_bench_export(
    out_dir: Path, n_marks: int, seed: int = 1, laestab: str = "8814001"
) -> Counts:
    """A secondary-school export with exactly ``n_marks`` marks (1M-10M for benchmarks),
    streamed to disk: pupils are added until the marks suffice, over two academic years.
    Results and deletions are left empty (not what a marks benchmark measures)."""
    spec, pupils, days = _bench_school(n_marks, seed, laestab)
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder = msgspec.json.Encoder()
    counts = Counts()
    counts.pupils = counts.write(
        out_dir / "pupils.jsonl",
        (encoder.encode(p.record) + b"\n" for p in pupils if not p.pupil_deleted),
    )
    marks = iter_mark_lines(spec, pupils, days)
    counts.marks = counts.write(out_dir / "attendance.jsonl", itertools.islice(marks, n_marks))
    if counts.marks < n_marks:
        raise RuntimeError(f"generated only {counts.marks} of {n_marks} marks")
    counts.write(out_dir / "results.jsonl", iter(()))
    counts.write(out_dir / "deletions.jsonl", iter(()))
    (out_dir / "manifest.json").write_bytes(_manifest(spec, counts))
    return counts


def write_marks(path: Path, n_marks: int, seed: int = 1, laestab: str = "8814001") -> int:
    """Just an ``attendance.jsonl`` of exactly ``n_marks`` lines at ``path`` (streamed)."""
    spec, pupils, days = _bench_school(n_marks, seed, laestab)
    marks = iter_mark_lines(spec, pupils, days)
    return _write_atomic_lines(path, itertools.islice(marks, n_marks))[0]


# -- the shipped examples -------------------------------------------------------------------

EXAMPLES: tuple[SchoolSpec, ...] = (
    SchoolSpec("8814001", "secondary", pupils=90, seed=1, sixth_form=True),
    SchoolSpec("8812002", "primary", pupils=80, seed=2, mis="sims-primary", sims_version="7.212"),
    SchoolSpec("8813003", "secondary", pupils=80, seed=3, sixth_form=False),
    SchoolSpec("8814004", "secondary", pupils=30, seed=4, sims_version="7.150"),
    SchoolSpec("8815005", "primary", pupils=30, seed=5, sims_version="7.214"),
)
"""The example config's bases (``examples/schools/<laestab>/``): kept small for the repo."""
EXAMPLE_MARKS_FROM = dt.date(2026, 6, 1)


def write_examples(root: Path) -> dict[str, Counts]:
    """(Re)generate every example school under ``root`` (``examples/schools``), and the LA's
    outbound changes for them beside it (``examples/la/outbound/<laestab>``), which the example
    config's to-school task reads."""
    out = {}
    for spec in EXAMPLES:
        dated = dataclasses.replace(spec, marks_from=EXAMPLE_MARKS_FROM)
        out[spec.laestab] = write_export(root / spec.laestab, dated)
        write_la_outbound(root.parent / "la", dated)
    return out


# -- CLI ------------------------------------------------------------------------------------


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from None


def _laestab(text: str) -> str:
    if len(text) != 7 or not text.isdigit():
        raise argparse.ArgumentTypeError(f"a LAESTAB is 7 digits: {text!r}")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m b2bd.sample",
        description="Write deterministic fictional school export folders.",
        allow_abbrev=False,
    )
    parser.add_argument("out_dir", type=Path, help="folder to write (created)")
    parser.add_argument("--laestab", type=_laestab, default="8814001")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pupils", type=int, default=300)
    parser.add_argument("--phase", choices=("primary", "secondary"), default="secondary")
    parser.add_argument("--mis", choices=("sims", "sims-primary"), default="sims")
    parser.add_argument("--sims-version", default="7.214")
    parser.add_argument("--services-manager", choices=("running", "stopped"), default="running")
    parser.add_argument(
        "--from",
        dest="marks_from",
        type=_date,
        default=None,
        help="first day of marks (default: 1 Sep of the previous academic year)",
    )
    parser.add_argument(
        "--until",
        type=_date,
        default=DEFAULT_UNTIL,
        help=f"last day of marks (default {DEFAULT_UNTIL})",
    )
    parser.add_argument(
        "--marks",
        type=int,
        default=None,
        help="benchmark export: exactly this many marks, streamed",
    )
    parser.add_argument(
        "--la-outbound",
        action="store_true",
        help="write LA change records into OUT_DIR/outbound/<laestab>/ instead",
    )
    parser.add_argument("--examples", action="store_true",
                        help="regenerate every example school under OUT_DIR")  # fmt: skip
    args = parser.parse_args(argv)
    if args.examples:
        for laestab, counts in write_examples(args.out_dir).items():
            print(f"{laestab}: {_describe(counts)}")
        return 0
    if args.marks is not None:
        counts = write_bench_export(args.out_dir, args.marks, args.seed, args.laestab)
        print(f"{args.out_dir}: {_describe(counts)}")
        return 0
    spec = SchoolSpec(
        laestab=args.laestab,
        phase=args.phase,
        pupils=args.pupils,
        seed=args.seed,
        marks_from=args.marks_from,
        marks_until=args.until,
        mis=args.mis,
        sims_version=args.sims_version,
        services_manager=args.services_manager,
    )
    if args.la_outbound:
        counts = write_la_outbound(args.out_dir, spec)
    else:
        counts = write_export(args.out_dir, spec)
    print(f"{args.out_dir}: {_describe(counts)}")
    return 0


def _describe(counts: Counts) -> str:
    return (
        f"{counts.pupils} pupils, {counts.marks} marks, {counts.results} results, "
        f"{counts.deletions} deletions"
    )


if __name__ == "__main__":
    sys.exit(main())
