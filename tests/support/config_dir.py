"""Config dirs for tests and benchmarks: the one b2bd.yaml template (:func:`b2bd_yaml`), a
small valid bases.yaml and task, and :class:`ConfigDir`, a config dir in a temp folder that
tests overwrite one file at a time."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from b2bd.config.load import load_config
from b2bd.config.model import Config

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def b2bd_yaml(
    state_dir: str | Path = "state",
    la_store: str | Path = "la",
    *,
    la_code: str = "881",
    la_name: str = "Testshire",
    one_version: str = "3.83",
    timezone: str | None = None,
    academic_year_start: str | None = None,
    concurrency: int | None = None,
    defaults: str | None = None,
    extra: str = "",
) -> str:
    """A b2bd.yaml: the LA, One's version, the state dir and a directory LA store, plus the
    optional keys given (``defaults`` as YAML flow or block text, e.g. ``"{retries: 0}"``) and
    ``extra`` lines appended as they are. Keys left None are not written, so b2bd's own
    defaults apply; line numbers of the keys always written are fixed (tests point at them)."""
    lines = [f'la: {{code: "{la_code}", name: {la_name}}}', f'one_version: "{one_version}"']
    if timezone is not None:
        lines.append(f"timezone: {timezone}")
    if academic_year_start is not None:
        lines.append(f'academic_year_start: "{academic_year_start}"')
    lines.append(f"state_dir: {state_dir}")
    lines.append(f"la_store: {{type: directory, path: {la_store}}}")
    if concurrency is not None:
        lines.append(f"concurrency: {concurrency}")
    if defaults is not None:
        lines.append(f"defaults: {defaults}")
    return "\n".join(lines) + "\n" + extra


SETTINGS = b2bd_yaml()

BASES = """\
bases:
  - id: "8814001"
    name: Secondary A
    mis: sims
    sims_version: "7.214"
    b2b_phase: 2
    services_manager: true
    tags: [sec]
    endpoint: {type: directory, path: schools/8814001}
  - id: "8812002"
    name: Primary B
    mis: sims-primary
    sims_version: "7.214"
    b2b_phase: 2
    services_manager: true
    tags: [pri]
    endpoint: {type: directory, path: schools/8812002}
  - id: "8814004"
    name: Old SIMS
    mis: sims
    sims_version: "7.160"
    b2b_phase: 2
    services_manager: true
    tags: [sec]
    endpoint: {type: directory, path: schools/8814004}
  - id: "8815005"
    name: Locked
    mis: sims-primary
    sims_version: "7.214"
    b2b_phase: 2
    services_manager: true
    lockdown: true
    tags: [pri]
    endpoint: {type: directory, path: schools/8815005}
"""

TASK = """\
id: t
direction: from-school
bases: {ids: ["8814001"]}
data: {type: snapshot}
cohort: {group: ncy}
schedule:
  weekly: {days: [mon], times: ["06:30"]}
"""


class ConfigDir:
    """A minimal valid config dir in a temp folder; tests overwrite one file at a time."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "tasks").mkdir(parents=True)
        self.write("b2bd.yaml", SETTINGS)
        self.write("bases.yaml", BASES)
        self.write("tasks/t.yaml", TASK)

    def write(self, name: str, text: str | bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, "utf-8")
        return path

    def load(self, now: dt.datetime = NOW) -> Config:
        return load_config(self.root, now=now)


@pytest.fixture
def cfg(tmp_path: Path) -> ConfigDir:
    return ConfigDir(tmp_path / "config")
