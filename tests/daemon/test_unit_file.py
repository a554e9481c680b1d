"""The shipped systemd files: the unit hardened and accepted by systemd's own checker, the
settings file for the systemd layout valid. (That they give a running service is the job of
test_systemd_install.py, in a booted container.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "b2bd.service"
TEMPLATE = REPO / "systemd" / "b2bd@.service"  # one instance per config dir (DESIGN section 10)
# systemd-analyze reads the instance name from the file name: the template as instance "essex".
UNITS = {"b2bd.service": UNIT, "b2bd@essex.service": TEMPLATE}


@pytest.fixture(autouse=True)
def _systemd_analyze() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is not installed (.ci/run installs systemd)")


@pytest.mark.parametrize("name", UNITS)
def test_security_exposure_is_at_most_2(name: str, tmp_path: Path) -> None:
    unit = tmp_path / name
    shutil.copy(UNITS[name], unit)
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    ).stdout  # fmt: skip
    match = re.search(rf"Overall exposure level for {re.escape(name)}: ([0-9.]+)", out)
    assert match, out
    assert float(match.group(1)) <= 2.0


@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify_is_clean(name: str, tmp_path: Path) -> None:
    # verify checks that ExecStart's binary exists: point it at this checkout's entry point.
    b2bd = Path(sys.executable).with_name("b2bd")
    assert b2bd.exists()
    unit = tmp_path / name
    unit.write_text(UNITS[name].read_text().replace("/opt/b2bd/venv/bin/b2bd", str(b2bd)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def directives(unit: Path) -> list[str]:
    return [
        line
        for line in unit.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_the_template_is_the_unit_with_per_instance_places_only() -> None:
    """One hardening, not two drifting copies: every directive of b2bd@.service is
    b2bd.service's, in the same order, but for the instance's name and directories."""
    per_instance = {
        "Description=b2bd %i - scheduled B2B:Student pupil-data exchange",
        "ExecStart=/opt/b2bd/venv/bin/b2bd --config /etc/b2bd/%i run",
        "ConfigurationDirectory=b2bd/%i",
        "StateDirectory=b2bd/%i",
        "RuntimeDirectory=b2bd/%i",
    }
    unit, template = directives(UNIT), directives(TEMPLATE)
    assert len(unit) == len(template)
    differ = {t for u, t in zip(unit, template, strict=True) if u != t}
    assert differ == per_instance
    for u, t in zip(unit, template, strict=True):
        if u != t:  # the same directive, another value
            assert u.split("=", 1)[0] == t.split("=", 1)[0]


def test_unit_speaks_notify_and_reloads_with_sighup() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "ExecReload=/bin/sh -c 'kill -HUP $$MAINPID'",
        "RestartPreventExitStatus=1 78",
        "StateDirectory=b2bd",
        "ConfigurationDirectory=b2bd",
        "UMask=0027",
    ):
        assert line in text.splitlines(), line
    assert any(line.startswith("LoadCredential=") for line in text.splitlines())


def test_the_exit_codes_the_unit_will_not_restart_for_are_the_daemons() -> None:
    from b2bd.daemon.loop import EXIT_CONFIG, EXIT_JOURNAL

    (line,) = [x for x in UNIT.read_text().splitlines() if x.startswith("RestartPrevent")]
    assert line.split("=", 1)[1].split() == [str(EXIT_JOURNAL), str(EXIT_CONFIG)]


def test_the_settings_for_the_systemd_layout_validate_with_the_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from b2bd.config.load import load_config

    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    config = tmp_path / "b2bd"
    shutil.copytree(REPO / "config", config)
    shutil.copy(REPO / "systemd" / "b2bd.yaml", config / "b2bd.yaml")
    loaded = load_config(config)
    assert [p for p in loaded.problems if p.severity == "error"] == []
    assert loaded.settings is not None
    assert loaded.settings.state_dir == Path("/var/lib/b2bd")
    assert loaded.settings.la_store.path == Path("/var/spool/b2bd")
    assert loaded.settings.la_outbound == Path("/var/spool/b2bd/outbound")
