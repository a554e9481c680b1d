"""The b2bd command line as a user runs it: ``python -m b2bd ARGS`` in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def b2bd(
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``b2bd ARGS`` with this interpreter; its exit code, stdout and stderr as text."""
    return subprocess.run(
        [sys.executable, "-m", "b2bd", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout,
    )  # fmt: skip
