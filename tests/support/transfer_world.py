"""A small LA world on disk for transfer tests: a config dir, hand-written school exports, a real
journal, and an engine over them, plus the task bodies the tests share. Nothing of ours is
mocked."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from b2bd.config.load import load_config
from b2bd.config.model import Config
from b2bd.journal.keys import PupilKeyer
from b2bd.journal.writer import Journal
from b2bd.records.upn import make_upn
from b2bd.transfer.engine import Engine
from b2bd.transfer.results import RunResult
from tests.support.config_dir import b2bd_yaml

SETTINGS = b2bd_yaml(
    timezone="Europe/London",
    academic_year_start="08-01",
    concurrency=4,
    defaults="{retries: 2, retry_backoff: 0s, timeout: 15m}",
)

BASE = """\
  - id: "{id}"
    name: School {id}
    phase: {phase}
    mis: {mis}
    sims_version: "{sims}"
    b2b_phase: 2
    services_manager: true
    tags: [{tag}]
    endpoint: {endpoint}
"""

SECONDARY = "8814001"
PRIMARY = "8812002"
OTHER = "8813003"

# Task bodies for World.task (which adds the id, a weekly schedule, SECONDARY as the base and
# from-school when the body does not say).
SNAP = "data: {type: snapshot}\ncohort: {group: ncy}\n"
CHANGED = "data: {type: changed}\ncohort: {group: ncy}\n"
ATT = "data: {type: attendance, attendance: all-attendances-current-year}\ncohort: {group: ncy}\n"
TO_SCHOOL = "direction: to-school\ndata: {type: changed}\ncohort: {group: ncy, ncy: [7]}\n"
RESULTS = "data: {type: attainment}\ncohort: {group: ncy}\n"
BOTH = f'bases: {{ids: ["{SECONDARY}", "{OTHER}"]}}\n'


def upn(serial: int, estab: str = "4001", temporary: bool = False) -> str:
    return make_upn("881", estab, 20, serial, temporary=temporary)


def pupil(
    serial: int,
    ncy: str = "7",
    *,
    admission: str = "2024-09-03",
    leaving: str | None = None,
    in_care: bool = False,
    updated: str = "2026-01-10T10:00:00Z",
    estab: str = "4001",
    surname: str = "Testname",
    forename: str = "Pupil",
    dob: str = "2014-03-04",
) -> dict[str, Any]:
    return {
        "upn": upn(serial, estab),
        "surname": surname,
        "forename": forename,
        "dob": dob,
        "sex": "F",
        "ncy": ncy,
        "in_care": in_care,
        "care_authority": "881" if in_care else None,
        "admission_date": admission,
        "leaving_date": leaving,
        "updated_at": updated,
    }


def mark(
    serial: int,
    date: str,
    code: str = "/",
    session: str = "AM",
    *,
    updated: str | None = None,
    estab: str = "4001",
) -> dict[str, Any]:
    return {
        "upn": upn(serial, estab),
        "date": date,
        "session": session,
        "code": code,
        "updated_at": updated or f"{date}T09:00:00Z",
    }


def result(serial: int, subject: str = "MAT", value: str = "104", estab: str = "4001") -> dict:
    return {
        "upn": upn(serial, estab),
        "stage": "KS2",
        "subject": subject,
        "method": "TT",
        "component": None,
        "result": value,
        "result_date": "2024-07-09",
        "updated_at": "2024-07-09T12:00:00Z",
    }


def write_jsonl(path: Path, rows: list[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        for row in rows:
            handle.write((row if isinstance(row, str) else json.dumps(row)) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


class World:
    """A config dir with three bases (secondary 8814001, primary 8812002 on SIMS Primary,
    another secondary 8813003) whose exports are written by the test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config_dir = root / "config"
        (self.config_dir / "tasks").mkdir(parents=True)
        (self.config_dir / "b2bd.yaml").write_text(SETTINGS)
        self.bases = {
            SECONDARY: ("secondary", "sims", "7.214", "sec"),
            PRIMARY: ("primary", "sims-primary", "7.210", "pri"),
            OTHER: ("secondary", "sims", "7.200", "sec"),
        }
        self.endpoints: dict[str, str] = {}
        self.extra: dict[str, str] = {}  # more bases.yaml lines per base, e.g. "lockdown: true"
        self.write_bases()
        self.state = self.config_dir / "state"
        self.la = self.config_dir / "la"
        self._journal: Journal | None = None
        self._engine: Engine | None = None

    # -- config --------------------------------------------------------------------------

    def school_dir(self, base_id: str) -> Path:
        return self.config_dir / "schools" / base_id

    def write_bases(self) -> None:
        text = "bases:\n"
        for base_id, (phase, mis, sims, tag) in self.bases.items():
            endpoint = self.endpoints.get(base_id, f"{{type: directory, path: schools/{base_id}}}")
            text += BASE.format(
                id=base_id, phase=phase, mis=mis, sims=sims, tag=tag, endpoint=endpoint
            )
            if base_id in self.extra:
                text += f"    {self.extra[base_id]}\n"
        (self.config_dir / "bases.yaml").write_text(text)

    def task(self, task_id: str, body: str) -> None:
        text = f"id: {task_id}\ndescription: test\n{body}"
        if "schedule:" not in body:
            text += 'schedule: {weekly: {days: [mon], times: ["06:30"]}}\n'
        if "bases:" not in body:
            text += f'bases: {{ids: ["{SECONDARY}"]}}\n'
        if "direction:" not in body:
            text += "direction: from-school\n"
        (self.config_dir / "tasks" / f"{task_id}.yaml").write_text(text)

    def config(self) -> Config:
        config = load_config(self.config_dir)
        errors = [p for p in config.problems if p.severity == "error"]
        assert not errors, errors
        return config

    # -- exports -------------------------------------------------------------------------

    def export(
        self,
        base_id: str = SECONDARY,
        *,
        pupils: Sequence[Any] = (),
        marks: list[Any] | None = None,
        results: list[Any] | None = None,
        deletions: list[Any] | None = None,
        manifest: dict[str, Any] | None = None,
        folder: Path | None = None,
    ) -> Path:
        out = folder or self.school_dir(base_id)
        out.mkdir(parents=True, exist_ok=True)
        doc = {
            "mis": self.bases.get(base_id, ("", "sims"))[1],
            "exported_at": "2026-11-27T18:00:00Z",
            "laestab": base_id,
            "sims_version": self.bases.get(base_id, ("", "", "7.214"))[2],
            "services_manager": "running",
        }
        doc.update(manifest or {})
        (out / "manifest.json").write_text(json.dumps(doc))
        write_jsonl(out / "pupils.jsonl", list(pupils))
        for name, rows in (
            ("attendance.jsonl", marks),
            ("results.jsonl", results),
            ("deletions.jsonl", deletions),
        ):
            if rows is not None:
                write_jsonl(out / name, rows)
        return out

    # -- running -------------------------------------------------------------------------

    def engine(self, config: Config | None = None, **kwargs: Any) -> Engine:
        """A fresh engine on ``config`` (default: the current one, which must be valid); the
        journal stays open across engines, so watermarks and leavers memory are replayed from
        it, as after a restart."""
        if self._engine is not None:
            self._engine.close()
        if self._journal is None:
            self._journal = Journal.open(self.state)
        config = config or self.config()
        self._engine = Engine(config, self._journal, PupilKeyer(self.state), **kwargs)
        return self._engine

    def run(
        self,
        task_id: str,
        slot: dt.datetime,
        *,
        bases: list[str] | None = None,
        manual: bool = False,
        **kwargs: Any,
    ) -> RunResult:
        engine = self.engine(**kwargs)
        return engine.run(engine.config.tasks[task_id], slot, bases=bases, manual=manual)

    def delivered(self, task_id: str, base_id: str = SECONDARY) -> list[Path]:
        folder = self.la / base_id / task_id
        return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []

    def lines(self, result: RunResult, base_id: str = SECONDARY) -> list[dict[str, Any]]:
        transfer = next(t for t in result.transfers if t.base == base_id)
        assert transfer.outcome == "succeeded", transfer
        assert transfer.delivery is not None
        return read_jsonl(transfer.delivery)

    def manifest(self, result: RunResult, base_id: str = SECONDARY) -> dict[str, Any]:
        transfer = next(t for t in result.transfers if t.base == base_id)
        assert transfer.delivery is not None
        path = transfer.delivery.with_name(transfer.delivery.stem + ".manifest.json")
        return json.loads(path.read_text())

    def journal_records(self) -> list[Any]:
        assert self._journal is not None
        return list(self._journal.entries())

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        if self._journal is not None:
            self._journal.close()
            self._journal = None


def slot_at(day: str, time: str = "06:30", zone: str = "Europe/London") -> dt.datetime:
    """The UTC instant of a local date and time (a slot)."""
    from zoneinfo import ZoneInfo

    local = dt.datetime.fromisoformat(f"{day}T{time}").replace(tzinfo=ZoneInfo(zone))
    return local.astimezone(dt.UTC)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A :class:`World` in the test's temporary dir, closed after the test (the ``world``
    fixture of tests/transfer and tests/cli)."""
    w = World(tmp_path)
    yield w
    w.close()
