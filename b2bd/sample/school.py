"""One generated school: what to generate (:class:`SchoolSpec`) and the seeded random streams
and time stamps every generator draws from, so the same spec always gives the same bytes."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Literal

from b2bd.records.academic import academic_year

Phase = Literal["primary", "secondary"]
DEFAULT_UNTIL = dt.date(2026, 11, 27)
"""Last day of marks when none is given: the date the shipped examples were generated for."""
NCY_NUMBER = {"E1": -4, "E2": -3, "N1": -2, "N2": -1, "R": 0} | {str(n): n for n in range(1, 15)}

# Absence reasons and their relative weights; the pre-2024 equivalent of each 2024 code.
"""NCY code -> year number (reception 0, nursery below it); X has none."""


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


def pupil_rng(spec: SchoolSpec, index: int, purpose: str) -> random.Random:
    """The random stream of one pupil for one purpose (pupil, marks, results)."""
    # str seeds are hashed with SHA-512 by random.Random: stable across runs and platforms.
    return random.Random(f"{spec.seed}/{spec.laestab}/{index}/{purpose}")


def stamp(day: dt.date, rng: random.Random, first_hour: int = 7, last_hour: int = 18) -> str:
    """A UTC time stamp on ``day`` between the given hours."""
    return (
        f"{day.isoformat()}T{rng.randint(first_hour, last_hour):02d}:"
        f"{rng.randrange(60):02d}:{rng.randrange(60):02d}Z"
    )
