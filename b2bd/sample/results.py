"""Generated results: phonics, key stage 1 and 2 assessments and tests, GCSEs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from b2bd.records.academic import academic_year
from b2bd.records.model import Result
from b2bd.sample.pupils import SamplePupil
from b2bd.sample.school import NCY_NUMBER, SchoolSpec, pupil_rng, stamp

_KS2_TESTS = (("READ", "TT"), ("MAT", "TT"), ("GPS", "TT"))
_KS1_SUBJECTS = ("READ", "WRIT", "MAT", "SCI")
_TA = ("PKF", "WTS", "EXS", "EXS", "EXS", "GDS")
_GCSE = ("ENG", "ENGLIT", "MAT", "SCI", "HIS", "GEO", "FRE", "ART", "COMP", "RE")


def results_for(spec: SchoolSpec, sample: SamplePupil) -> Iterator[Result]:
    """The pupil's results of every assessment their year has passed."""
    pupil = sample.record
    number = NCY_NUMBER.get(pupil.ncy)
    if number is None:
        return
    rng = pupil_rng(spec, sample.index, "results")
    this_year = academic_year(spec.marks_until, spec.academic_year_start).first.year

    def summer(years_ago: int) -> dt.date:
        return dt.date(this_year - years_ago, 7, 1) + dt.timedelta(days=rng.randrange(10))

    def result(stage: str, subject: str, method: str, value: str, when: dt.date) -> Result:
        marked = stamp(when + dt.timedelta(days=rng.randint(1, 20)), rng)
        return Result(
            upn=pupil.upn,
            stage=stage,
            subject=subject,
            method=method,
            component=None,
            result=value,
            result_date=when.isoformat(),
            updated_at=min(marked, spec.exported_at),
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
                updated_at=min(stamp(when + dt.timedelta(days=2), rng), spec.exported_at),
            )
