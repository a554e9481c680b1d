"""The shipped systemd unit: hardened, and accepted by systemd's own checker."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "b2bd.service"

needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)


@needs_systemd
def test_security_exposure_is_at_most_2() -> None:
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(UNIT)],
        capture_output=True, text=True, timeout=60, check=False,
    ).stdout  # fmt: skip
    match = re.search(r"Overall exposure level for b2bd\.service: ([0-9.]+)", out)
    assert match, out
    assert float(match.group(1)) <= 2.0


@needs_systemd
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    # verify checks that ExecStart's binary exists: point it at this checkout's entry point.
    b2bd = Path(sys.executable).with_name("b2bd")
    assert b2bd.exists()
    unit = tmp_path / "b2bd.service"
    unit.write_text(UNIT.read_text().replace("/opt/b2bd/venv/bin/b2bd", str(b2bd)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_unit_speaks_notify_and_reloads_with_sighup() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "RestartPreventExitStatus=78",
        "StateDirectory=b2bd",
        "ConfigurationDirectory=b2bd",
        "UMask=0027",
    ):
        assert line in text.splitlines(), line
    assert any(line.startswith("LoadCredential=") for line in text.splitlines())
