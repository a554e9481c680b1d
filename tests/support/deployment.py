"""A small deployment for daemon tests: config dir, one or two school exports, a state dir; the
``deployment`` and ``notify_socket`` fixtures. The daemon runner and notify socket are
:mod:`tests.support.daemon`, the slow school :mod:`tests.support.slow_school`."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from b2bd.journal.reader import read_journal
from b2bd.sample import SchoolSpec, write_export
from tests.support.config_dir import b2bd_yaml
from tests.support.daemon import NotifySocket
from tests.support.slow_school import SLOW

DEFAULTS = "{retries: 0, retry_backoff: 1s, timeout: 5m}"

BASE = """\
  - id: "{id}"
    name: School {id}
    mis: sims
    sims_version: "7.214"
    b2b_phase: 2
    services_manager: true
    tags: [all]
    endpoint: {{type: directory, path: {path}}}
"""

REPO = Path(__file__).resolve().parents[2]

TASK = """\
id: {id}
direction: from-school
bases: {{ids: ["{base}"]}}
data: {{type: snapshot}}
cohort: {{group: ncy}}
schedule:
  weekly: {{days: [mon, tue, wed, thu, fri, sat, sun], times: ["{time}"]}}
{policy}"""


class Deployment:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "config"
        self.state = root / "state"
        self.la = root / "la"
        self.schools = root / "schools"
        (self.config / "tasks").mkdir(parents=True)
        self.config.joinpath("b2bd.yaml").write_text(
            b2bd_yaml(self.state, self.la, concurrency=4, defaults=DEFAULTS)
        )
        self.bases: list[str] = []

    @classmethod
    def example(cls, root: Path) -> Deployment:
        """A copy of the shipped example (config/ and examples/), as README's first command
        runs it: state in ``root/var/state``, deliveries in ``root/var/la``."""
        for name in ("config", "examples"):
            shutil.copytree(REPO / name, root / name)
        d = cls.__new__(cls)
        d.root, d.config, d.schools = root, root / "config", root / "examples" / "schools"
        d.state, d.la = root / "var" / "state", root / "var" / "la"
        d.bases = []
        return d

    def add_school(self, laestab: str, *, slow: bool = False) -> Path:
        """A tiny generated export; a ``slow`` one is read through :class:`SlowSchool` (the
        daemon must then run with it installed: in-process with :func:`slow_schools`, as a
        subprocess with ``start_daemon(..., slow=True)``)."""
        folder = self.schools / laestab
        write_export(folder, SchoolSpec(laestab, pupils=6, seed=3, marks_from=dt.date(2026, 11, 2)))
        if slow:
            (folder / SLOW).touch()
        self.bases.append(BASE.format(id=laestab, path=folder))
        self.config.joinpath("bases.yaml").write_text("bases:\n" + "".join(self.bases))
        return folder

    def task_text(self, task_id: str, base: str, time: str = "06:00", policy: str = "") -> str:
        return TASK.format(id=task_id, base=base, time=time, policy=policy)

    def add_task(self, task_id: str, base: str, time: str = "06:00", policy: str = "") -> Path:
        path = self.config / "tasks" / f"{task_id}.yaml"
        path.write_text(self.task_text(task_id, base, time, policy))
        return path

    def records(self, type: str | None = None) -> list[dict[str, object]]:
        if not (self.state / "journal").exists():
            return []
        out = []
        for record in read_journal(self.state):
            data = json.loads(json_bytes(record))
            if type is None or data["type"] == type:
                out.append(data)
        return out

    def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; journal: {self.records()}")


def json_bytes(record: object) -> bytes:
    import msgspec

    return msgspec.json.encode(record)


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    return Deployment(tmp_path)


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()
