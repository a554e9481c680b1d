"""Generated pupils: names, NCY spread by phase, dates of birth, care, admissions, leavers,
temporary UPNs and which leavers were bulk-deleted."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass

from b2bd.records.academic import academic_year
from b2bd.records.model import Pupil, Sex
from b2bd.records.upn import make_upn
from b2bd.sample.school import NCY_NUMBER, Phase, SchoolSpec, pupil_rng, stamp

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
SEXES: tuple[Sex, Sex] = ("F", "M")
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


def _ncy_table(spec: SchoolSpec) -> tuple[tuple[str, float], ...]:
    table = NCY_WEIGHTS[spec.phase]
    sixth_form = spec.sixth_form
    if sixth_form is None:
        sixth_form = random.Random(f"{spec.seed}/{spec.laestab}/sixth-form").random() < 0.5
    if spec.phase == "secondary" and sixth_form:
        table = table + SIXTH_FORM
    return table


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
        rng = pupil_rng(spec, index, "pupil")
        ncy = rng.choices(codes, weights)[0]
        number = NCY_NUMBER.get(ncy, rng.randint(7, 11) if spec.phase == "secondary" else 3)
        # Born between 1 September and 31 August of the cohort's year.
        born_in = year.first.year - 5 - number
        dob = dt.date(born_in, 9, 1) + dt.timedelta(days=rng.randrange(365))
        sex = rng.choice(SEXES)
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
            updated_at=stamp(min(changed, last_day), rng),
        )
        deletion = rng.random()
        left_before = leaving is not None and leaving < year.first
        pupil_deleted = left_before and deletion < 0.25
        marks_deleted = left_before and not pupil_deleted and deletion < 0.5
        deleted_at = None
        if pupil_deleted or marks_deleted:
            deleted_at = stamp(year.first + dt.timedelta(days=rng.randrange(30, 60)), rng)
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


def on_roll_days(pupil: Pupil, days: list[dt.date]) -> Iterator[dt.date]:
    """The days of ``days`` on which ``pupil`` was on roll (admitted, not yet left)."""
    admitted = dt.date.fromisoformat(pupil.admission_date)
    left = dt.date.fromisoformat(pupil.leaving_date) if pupil.leaving_date else None
    for day in days:
        if day >= admitted and (left is None or day < left):
            yield day
