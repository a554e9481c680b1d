from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from b2bd.config.load import load_config
from b2bd.config.model import Config

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)

SETTINGS = """\
la: {code: "881", name: Testshire}
one_version: "3.83"
state_dir: state
la_store: {type: directory, path: la}
"""

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
