"""Generated session marks: every AM and PM of every school day each pupil was on roll, with a
realistic mix of DfE codes (the 2024 codes only from 19 August 2024), registers saved per class
and session, some marks amended later. Streamed: memory does not grow with the marks."""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterator

from b2bd.records.codes import REGULATIONS_2024
from b2bd.sample.holidays import school_days
from b2bd.sample.pupils import SamplePupil, on_roll_days
from b2bd.sample.school import SchoolSpec, pupil_rng, stamp

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
        rng = pupil_rng(spec, sample.index, "marks")
        upn = sample.record.upn
        # One register per class and session: pupils of one NCY share its save time.
        class_seed = f"{spec.seed}/{spec.laestab}/{sample.record.ncy}"
        for day in on_roll_days(sample.record, days):
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
                    saved = min(stamp(later, rng, 8, 17), spec.exported_at)
                else:
                    saved = f"{iso}T{hour:02d}:{minute:02d}:{minute:02d}Z"
                yield (
                    f'{{"upn":"{upn}","date":"{iso}","session":"{session}",'
                    f'"code":{_CODE_JSON[code]},"updated_at":"{saved}"}}\n'
                ).encode()


def hash_minute(class_seed: str, iso: str) -> int:
    """A stable minute in 0..59 for one class's register on one date."""
    return random.Random(f"{class_seed}/{iso}").randrange(60)
