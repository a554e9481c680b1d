"""One's scheduled-task export as migrate's tests write it: the header, one row, and the
example config without tasks that it is migrated against."""

from __future__ import annotations

import shutil
from pathlib import Path

from b2bd.migrate import COLUMNS

REPO = Path(__file__).resolve().parents[2]
HEADER = ",".join(COLUMNS)


def config_without_tasks(root: Path) -> Path:
    """The example config with no tasks at ``root``: b2bd.yaml and bases.yaml as shipped."""
    (root / "tasks").mkdir(parents=True)
    for name in ("b2bd.yaml", "bases.yaml"):
        shutil.copy(REPO / "config" / name, root / name)
    return root


def one_row(**values: str) -> str:
    row = {
        "Task Name": "Weekly changed data",
        "Owner": "LA",
        "Locked": "No",
        "Base": "8814001",
        "Direction": "Export from School",
        "Data Type": "Changed Data",
        "Group": "NCY",
        "NCY": "All",
        "Frequency": "Weekly",
        "Days": "Mon",
        "Times": "06:30",
        "Start": "01/09/2025 06:30",
        **values,
    }
    line = ",".join(f'"{row.get(c, "")}"' for c in COLUMNS)
    return f"{HEADER}\n{line}\n"
