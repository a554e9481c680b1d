"""The command line itself: ``--version``, global options before or after the command, no
silent abbreviations, "did you mean" for a mistyped command or choice (a real subprocess)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from b2bd import __version__
from tests.support.cli import b2bd

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "config")


def test_version() -> None:
    result = b2bd("--version")
    assert result.returncode == 0 and result.stdout == f"b2bd {__version__}\n"


@pytest.mark.parametrize(
    "args",
    [
        ["--config", CONFIG, "validate", "--format", "json"],
        ["validate", "--config", CONFIG, "--format", "json"],
        ["validate", "--format", "json", f"--config={CONFIG}"],
        ["--config", "/nonexistent", "validate", "--config", CONFIG, "--format", "json"],
    ],
)
def test_global_options_before_or_after_the_command(args: list[str]) -> None:
    result = b2bd(*args)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["tasks"] == 9


def test_global_option_after_a_nested_command(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "b2bd.yaml").write_text(
        (REPO / "config" / "b2bd.yaml").read_text().replace("../var/state", str(tmp_path / "s"))
    )
    result = b2bd("journal", "verify", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert f"no journal yet in {tmp_path / 's' / 'journal'}" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--conf", CONFIG, "validate"], "unknown option '--conf'; did you mean '--config'?"),
        (["--config", CONFIG, "validate", "--form", "json"], "unrecognized arguments: --form"),
        (["--config", CONFIG, "plan", "--co", "3"], "unrecognized arguments: --co"),
    ],
)
def test_options_are_never_abbreviated(args: list[str], message: str) -> None:
    result = b2bd(*args)
    assert result.returncode == 2 and message in result.stderr


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["stauts"], "unknown command 'stauts'; did you mean 'status'?"),
        (
            ["--config", CONFIG, "journal", "verfy"],
            "unknown command 'verfy'; did you mean 'verify'?",
        ),
        (["validate", "--format", "jsno"], "unknown choice 'jsno'; did you mean 'json'?"),
        (["frobnicate"], "unknown command 'frobnicate' (choose from validate, schema,"),
    ],
)
def test_a_mistyped_command_or_choice_gets_the_nearest_one(args: list[str], hint: str) -> None:
    result = b2bd(*args)
    assert result.returncode == 2
    assert hint in result.stderr and "Traceback" not in result.stderr
