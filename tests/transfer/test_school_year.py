"""A school year, day by day: changed data follows pupils across the cohort's edge.

A generated secondary school lives through 2025/26 and into September 2026: existing pupils,
a September intake (records made in July, admitted in September), January admissions, leaving
dates entered weeks in advance, a mid-year leaver, the NCY rollover at the end of July, a
child entering care and one leaving it, and everyday edits (some in the same second, to make
the inclusive window's ties). Every morning the school exports what its MIS holds; three
changed-data tasks (NCY 7-9, every NCY, looked-after) run on it as of that day, through the
real engine, real files and a real journal. Once the LA catches up after two lost days with
real ``b2bd trigger --as-of`` processes on a later export.

For each run, what was delivered must equal an expectation computed here, independently of
the code under test, from DESIGN section 5: the task's cohort at D; joiners (in the cohort,
not remembered) get their full record whatever its time; remembered pupils no longer in the
cohort get their current record once and are forgotten; members get records changed since
the watermark (inclusive) and before the end of D; the watermark is the newest change read
before the end of D. Then, over the whole year: everyone who was ever in a cohort was sent,
every leaver was sent once with their leaving details, and nothing was sent twice except a
tie on the watermark.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import random
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from b2bd.records.upn import make_upn
from tests.support.transfer_world import SECONDARY, World, read_jsonl

LONDON = ZoneInfo("Europe/London")
FIRST_DAY = dt.date(2025, 8, 26)
LAST_DAY = dt.date(2026, 9, 12)
LOST_DAYS = (dt.date(2026, 1, 6), dt.date(2026, 1, 7))  # caught up on 8 January
CAUGHT_UP = dt.date(2026, 1, 8)

Record = dict[str, Any]
Version = tuple[str, Record]  # (updated_at, the whole record)

COHORTS: dict[str, Callable[[Record, str], bool]] = {
    "ks3": lambda r, d: on_roll(r, d) and r["ncy"] in ("7", "8", "9"),
    "everyone": lambda r, d: on_roll(r, d),
    "looked-after": lambda r, d: on_roll(r, d) and r["in_care"],
}
TASKS = {
    "ks3": "cohort: {group: ncy, ncy: [7, 8, 9]}\n",
    "everyone": "cohort: {group: ncy}\n",
    "looked-after": "cohort: {group: lac}\n",
}


def on_roll(record: Record, day: str) -> bool:
    leaving = record["leaving_date"]
    return record["admission_date"] <= day and (leaving is None or leaving > day)


# -- the school's history -------------------------------------------------------------------


def stamp(day: dt.date, hour: int, minute: int = 0, second: int = 0) -> str:
    local = dt.datetime.combine(day, dt.time(hour, minute, second), LONDON)
    return local.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def school_days() -> Iterator[dt.date]:
    day = FIRST_DAY
    while day <= LAST_DAY:
        yield day
        day += dt.timedelta(days=1)


Change = dict[str, Any] | Callable[[Record], dict[str, Any]]


def history(seed: int = 11) -> dict[str, list[Version]]:
    """Every version of every pupil record, by UPN, oldest first: each version is the one
    before it (in time) with that day's change applied."""
    rng = random.Random(seed)
    made: dict[str, tuple[str, Record]] = {}
    changes: list[tuple[str, str, Change]] = []  # (when, upn, change)
    serial = iter(range(1, 10_000))

    def new(ncy: str, admitted: dt.date, when: str, **fields: Any) -> str:
        upn = make_upn("881", "4001", 20, next(serial))
        record = {
            "upn": upn, "surname": f"Family{len(made)}", "forename": "Child", "dob": "2012-05-06",
            "sex": rng.choice("MF"), "ncy": ncy, "in_care": False, "care_authority": None,
            "admission_date": admitted.isoformat(), "leaving_date": None, "updated_at": when,
        }  # fmt: skip
        made[upn] = (when, {**record, **fields})
        return upn

    def edit(upn: str, when: str, change: Change) -> None:
        changes.append((when, upn, change))

    made_at = stamp(dt.date(2025, 7, 26), 10)  # after the MIS's last year-end rollover
    current = [new(str(ncy), dt.date(2025 - (ncy - 7), 9, 3), made_at) for ncy in range(7, 12)
               for _ in range(6)]  # fmt: skip
    intake = [new("7", dt.date(2025, 9, 3), stamp(dt.date(2025, 7, 1), 11)) for _ in range(6)]
    for ncy in ("8", "10"):  # January admissions, entered in December
        new(ncy, dt.date(2026, 1, 5), stamp(dt.date(2025, 12, 8), 14))
    # Admitted on a lost day, edited the next: the catch-up as of 6 January does not send
    # a record changed on the 7th; the one as of the 7th sends it, as a joiner.
    edited_late = new("9", LOST_DAYS[0], stamp(dt.date(2025, 12, 9), 14))
    edit(edited_late, stamp(LOST_DAYS[1], 10), {"forename": "Corrected"})
    in_care_all_along = new("8", dt.date(2024, 9, 3), made_at, in_care=True, care_authority="881")
    # Leaving dates entered weeks in advance: Year 11 in May, one mid-year leaver in January.
    year11 = [u for u in current if made[u][1]["ncy"] == "11"]
    for n, upn in enumerate(year11):
        edit(upn, stamp(dt.date(2026, 5, 14), 9, n), {"leaving_date": "2026-07-22"})
    edit(current[3], stamp(dt.date(2026, 1, 20), 15), {"leaving_date": "2026-02-13"})
    # Care: one child enters care in October, the other leaves it in March.
    edit(current[8], stamp(dt.date(2025, 10, 14), 12), {"in_care": True, "care_authority": "881"})
    edit(in_care_all_along, stamp(dt.date(2026, 3, 3), 16),
         {"in_care": False, "care_authority": None})  # fmt: skip
    # Everyday edits, a few of them in one second (ties on the watermark).
    everyone = [*current, *intake, in_care_all_along]  # all made before the first day
    for n in range(60):
        day = FIRST_DAY + dt.timedelta(days=rng.randrange((LAST_DAY - FIRST_DAY).days))
        second = 0 if n % 7 == 0 else rng.randrange(60)
        edit(rng.choice(everyone), stamp(day, rng.randrange(8, 18), rng.randrange(60), second),
             {"forename": f"Edit{n}"})  # fmt: skip
    # The rollover on the first day of the new year: everyone still on roll moves up a year;
    # next year's intake (made in July) is admitted the day after.
    rollover = stamp(dt.date(2026, 9, 1), 9)
    for upn in made:
        edit(upn, rollover, lambda r: {} if r["leaving_date"] or r["ncy"] == "11"
             else {"ncy": str(int(r["ncy"]) + 1)})  # fmt: skip
    for _ in range(4):
        new("7", dt.date(2026, 9, 2), stamp(dt.date(2026, 7, 2), 11))

    pupils = {upn: [first] for upn, first in made.items()}
    for when, upn, change in sorted(changes, key=lambda c: c[0]):
        record = pupils[upn][-1][1]
        fields = change(record) if callable(change) else change
        if fields:
            pupils[upn].append((when, {**record, **fields, "updated_at": when}))
    return pupils


def export_of(pupils: dict[str, list[Version]], at: str) -> dict[str, Record]:
    """What the MIS holds at ``at``: each pupil's newest version made by then."""
    held = {}
    for upn, versions in pupils.items():
        made = [record for when, record in versions if when <= at]
        if made:
            held[upn] = made[-1]
    return held


# -- the expectation, from DESIGN section 5 alone -------------------------------------------


@dataclasses.dataclass
class Expected:
    """What one task remembers, per DESIGN: its cohort memory and its watermark."""

    cohort: Callable[[Record, str], bool]
    remembered: set[str] = dataclasses.field(default_factory=set)
    watermark: str | None = None

    def run(self, export: dict[str, Record], day: dt.date) -> tuple[set[tuple[str, str]], dict]:
        """(upn, updated_at) of the pupil records a run as of ``day`` on ``export`` sends, and
        why each was sent."""
        d = day.isoformat()
        end_of_d = stamp(day + dt.timedelta(days=1), 0)
        cohort = {u for u, r in export.items() if self.cohort(r, d)}
        why: dict[str, str] = {}
        # Crossing the edge sends the current record, unless it was changed after D: then
        # the crossing waits for a run whose D is not before that change.
        for upn in cohort - self.remembered:
            if export[upn]["updated_at"] < end_of_d:
                why[upn] = "joined"
        for upn in self.remembered - cohort:
            if upn in export and export[upn]["updated_at"] < end_of_d:
                why[upn] = "left"
        for upn in cohort & self.remembered:
            changed = export[upn]["updated_at"]
            if (self.watermark is None or changed >= self.watermark) and changed < end_of_d:
                why[upn] = "tie" if changed == self.watermark else "changed"
        read = [r["updated_at"] for r in export.values() if r["updated_at"] < end_of_d]
        if read:
            self.watermark = max(self.watermark or "", max(read))
        self.remembered |= {u for u, w in why.items() if w == "joined"}
        self.remembered -= {u for u, w in why.items() if w == "left"}
        return {(u, export[u]["updated_at"]) for u in why}, why


# -- the run --------------------------------------------------------------------------------


def write_export(world: World, held: dict[str, Record], at: str) -> None:
    world.export(SECONDARY, pupils=list(held.values()), deletions=[],
                 manifest={"exported_at": at})  # fmt: skip


def sent_by(delivery: Path) -> list[Record]:
    return [line for line in read_jsonl(delivery) if line["kind"] == "pupil"]


def trigger(world: World, task: str, day: dt.date) -> tuple[Path, dict[str, int]]:
    proc = subprocess.run(
        [sys.executable, "-m", "b2bd", "--config", str(world.config_dir), "trigger", task,
         "--as-of", day.isoformat(), "--format", "json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["reference_date"], out["as_of"]) == (day.isoformat(), True)
    (transfer,) = out["transfers"]
    return Path(transfer["delivery"]), {"joined": transfer["joined"], "left": transfer["left"]}


@pytest.fixture
def year_world(tmp_path: Path) -> Iterator[World]:
    """A world in memory when the machine has a tmpfs (/dev/shm): real files, but a year of
    fsyncs (three per delivery and per journal record) costs nothing there."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        with tempfile.TemporaryDirectory(dir=shm, prefix="b2bd-year-") as root:
            world = World(Path(root))
            yield world
            world.close()
    else:
        world = World(tmp_path)
        yield world
        world.close()


def test_a_school_year_of_changed_data_follows_every_pupil(year_world: World) -> None:
    world = year_world
    pupils = history()
    for task, cohort in TASKS.items():
        world.task(task, "data: {type: changed}\n" + cohort)
    expected = {task: Expected(COHORTS[task]) for task in TASKS}
    sent: dict[str, list[tuple[dt.date, Record, str]]] = {task: [] for task in TASKS}
    runs = 0

    def check(
        task: str, day: dt.date, held: dict[str, Record], delivered: list[Record],
        crossed: dict[str, int],
    ) -> None:  # fmt: skip
        want, why = expected[task].run(held, day)
        got = {(r["upn"], r["updated_at"]) for r in delivered}
        assert got == want, (task, day, sorted(got ^ want), why)
        reasons = list(why.values())
        assert crossed == {"joined": reasons.count("joined"), "left": reasons.count("left")}
        for record in delivered:
            assert record == {"kind": "pupil", **held[record["upn"]]}
            sent[task].append((day, record, why[record["upn"]]))

    days = [day for day in school_days() if day not in LOST_DAYS]
    exports = {day: export_of(pupils, stamp(day, 5)) for day in days}
    engine = None
    for day in days:
        held = exports[day]
        write_export(world, held, stamp(day, 5))
        if day == CAUGHT_UP:
            # The LA catches up the two lost days on this morning's export, by hand.
            world.close()
            engine = None
            for lost in LOST_DAYS:
                for task in TASKS:
                    delivery, crossed = trigger(world, task, lost)
                    check(task, lost, held, sent_by(delivery), crossed)
                    runs += 1
        engine = engine or world.engine()
        slot = dt.datetime.combine(day, dt.time(6, 30), LONDON).astimezone(dt.UTC)
        for task in TASKS:
            result = engine.run(engine.config.tasks[task], slot, manual=True, as_of=day)
            (transfer,) = result.transfers
            assert transfer.outcome == "succeeded", transfer
            assert transfer.delivery is not None
            crossed = {"joined": transfer.joined, "left": transfer.left}
            check(task, day, held, sent_by(transfer.delivery), crossed)
            runs += 1
    assert runs == 3 * ((LAST_DAY - FIRST_DAY).days + 1)

    final = exports[LAST_DAY]
    for task, cohort in COHORTS.items():
        deliveries = sent[task]
        # Everyone who was ever in the cohort was sent, on the first day they were in it.
        for upn in pupils:
            days_in = [
                day for day in days
                if (r := exports[day].get(upn)) is not None and cohort(r, day.isoformat())
            ]  # fmt: skip
            if days_in:
                first_sends = [day for day, r, _ in deliveries if r["upn"] == upn]
                assert first_sends and first_sends[0] <= days_in[0], (task, upn)
        # Nothing twice, except a tie on the watermark or a pupil crossing the edge again.
        seen: set[tuple[str, str]] = set()
        for _, record, why in deliveries:
            pair = (record["upn"], record["updated_at"])
            assert pair not in seen or why in ("tie", "joined", "left"), (task, pair, why)
            seen.add(pair)

    # Every leaver was sent once by the every-NCY task, with the leaving details.
    leavers = {u: r["leaving_date"] for u, r in final.items() if r["leaving_date"]}
    assert len(leavers) == 7  # Year 11 and the mid-year leaver
    for upn, leaving in leavers.items():
        after = [(d, r, why) for d, r, why in sent["everyone"] if r["upn"] == upn
                 and d.isoformat() >= leaving]  # fmt: skip
        assert [(r["leaving_date"], why) for _, r, why in after] == [(leaving, "left")], upn
    # The September 2025 and 2026 intakes (records made in July) and January's admissions
    # were each first sent on their admission day, as joiners.
    admitted_later = {u: r["admission_date"] for u, r in final.items()
                      if r["admission_date"] > FIRST_DAY.isoformat()}  # fmt: skip
    assert len(admitted_later) == 6 + 6 + 2 + 1 + 4
    for upn, admitted in admitted_later.items():
        first = next((d, why) for d, r, why in sent["everyone"] if r["upn"] == upn)
        day = LOST_DAYS[1] if admitted == LOST_DAYS[0].isoformat() else admitted
        assert first == (dt.date.fromisoformat(str(day)), "joined"), upn
    # Year 9 moving up to Year 10 left the NCY 7-9 cohort and was told once; so was the child
    # who left care.
    left_ks3 = {r["upn"] for _, r, why in sent["ks3"] if why == "left"}
    assert {
        u for u, r in final.items() if r["ncy"] == "10" and r["admission_date"] < "2025"
    } <= left_ks3
    left_care = [r for _, r, why in sent["looked-after"] if why == "left"]
    assert [r["in_care"] for r in left_care] == [False]
