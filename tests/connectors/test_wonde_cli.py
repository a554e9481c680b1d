"""Wonde bases as an operator meets them: ``b2bd preflight``, ``b2bd trigger`` and the daemon,
run as subprocesses against the emulator on 127.0.0.1. Tokens come from the places b2bd.yaml
names (an environment variable, a file) and from ``$CREDENTIALS_DIRECTORY``; none of them may
appear in any output, log line, journal record or file written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from b2bd.sample import SchoolSpec, write_export
from tests.support.config_dir import b2bd_yaml
from tests.support.daemon import start_daemon, stop_daemon
from tests.support.wonde_emulator import EmulatedSchool, Fault, WondeEmulator

TOKEN = "5f1c0ffee5f1c0ffee5f1c0ffee5f1c0ffee5f1c"
WRONG = "badbadbadbadbadbadbadbadbadbadbadbadbad0"
SYSTEMD = "c0de5c0de5c0de5c0de5c0de5c0de5c0de5c0de5"
MANGLED = "f00dcafef00dcafe\nd00dfeedd00dfeed"  # a newline inside: not a token
CREDENTIALS = """\
credentials:
  wonde: {{env: B2BD_TEST_WONDE_TOKEN}}
  wrong: {{path: {wrong}}}
  mangled: {{path: {mangled}}}
"""
BASE = """\
  - id: "{id}"
    name: School {id}
    mis: sims
    sims_version: "7.214"
    b2b_phase: 2
    services_manager: true
    tags: [wonde]
    endpoint:
      {{type: wonde, school_id: {school}, token: {{credential: {credential}}}, url: "{url}"}}
"""
TASK = """\
id: snapshot-all
direction: from-school
bases: {tags: [wonde]}
data: {type: snapshot}
cohort: {group: ncy}
schedule: {weekly: {days: [mon], times: ["06:30"]}}
"""
CASES = {
    # base id: (school id at the API, credential name, (failing check, reason) or None)
    "8814001": ("A8814001", "wonde", None),
    "8814002": ("A8814002", "wrong", ("reachable", "auth")),
    "8814003": ("A8814003", "wonde", ("services-manager", "prerequisite")),  # not approved
    "8814004": ("A0000404", "wonde", ("services-manager", "prerequisite")),  # unknown school
    "8814005": ("A8814005", "mangled", ("reachable", "auth")),
    "8814006": ("A8814006", "systemd", None),  # from $CREDENTIALS_DIRECTORY
}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Path, WondeEmulator, dict[str, str]]]:
    schools = []
    for base in CASES:
        folder = tmp_path / "exports" / base
        write_export(folder, SchoolSpec(laestab=base, pupils=8, seed=int(base[-1])))
        school = EmulatedSchool.from_export(folder, f"A{base}")  # 8814004 asks another id
        school.approved = base != "8814003"
        schools.append(school)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "wrong").write_text(WRONG + "\n")
    (secrets / "mangled").write_text(MANGLED)
    systemd = tmp_path / "credentials"
    systemd.mkdir()
    (systemd / "systemd").write_text(SYSTEMD)
    config = tmp_path / "config"
    (config / "tasks").mkdir(parents=True)
    with WondeEmulator(schools, {TOKEN: None, SYSTEMD: frozenset({"A8814006"})}) as emulator:
        (config / "b2bd.yaml").write_text(
            b2bd_yaml(
                "../state",
                "../la",
                la_name="Essex",
                defaults="{retries: 0, retry_backoff: 1s, timeout: 5m}",
                extra=CREDENTIALS.format(wrong=secrets / "wrong", mangled=secrets / "mangled"),
            )
        )
        (config / "bases.yaml").write_text(
            "bases:\n"
            + "".join(
                BASE.format(id=base, school=school, credential=credential, url=emulator.url)
                for base, (school, credential, _) in CASES.items()
            )
        )
        (config / "tasks" / "snapshot-all.yaml").write_text(TASK)
        env = {
            **os.environ,
            "B2BD_TEST_WONDE_TOKEN": TOKEN,
            "CREDENTIALS_DIRECTORY": str(systemd),
        }
        yield config, emulator, env


def b2bd(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "b2bd", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def failures(report: dict) -> list[tuple[str, str]]:
    return [(c["name"], c["reason"]) for c in report["checks"] if c["status"] == "fail"]


def test_preflight_checks_each_wonde_base_live(world):
    config, emulator, env = world
    result = b2bd(config, env, "preflight", "--format", "json")
    assert result.returncode == 1, result.stderr
    by_id = {b["id"]: b for b in json.loads(result.stdout)["bases"]}
    for base, (_, _, expected) in CASES.items():
        assert failures(by_id[base]) == ([expected] if expected else []), base
    assert {r.auth for r in emulator.requests} == {"bearer"}
    assert_no_token(result.stdout, result.stderr)


def test_trigger_and_the_daemon_deliver_and_never_show_a_token(world, tmp_path):
    config, emulator, env = world
    # A flaky server on top: the requests are retried inside the transfer.
    emulator.inject(Fault("500", times=2, path="students"), Fault("429", path="results"))
    trigger = b2bd(config, env, "trigger", "snapshot-all", "--format", "json")
    assert trigger.returncode == 1  # some bases fail by design
    outcomes = {t["base"]: t for t in json.loads(trigger.stdout)["transfers"]}
    assert outcomes["8814001"]["outcome"] == outcomes["8814006"]["outcome"] == "succeeded"
    assert outcomes["8814002"]["reason"] == outcomes["8814005"]["reason"] == "auth"
    assert outcomes["8814003"]["reason"] == outcomes["8814004"]["reason"] == "prerequisite"
    delivered = list((tmp_path / "la" / "8814001" / "snapshot-all").glob("*.jsonl"))
    assert delivered and delivered[0].read_text().count('"kind":"pupil"') > 0

    daemon = start_daemon(
        config, None, "--now", env={k: v for k, v in env.items() if os.environ.get(k) != v}
    )
    try:
        wait_for_runs(tmp_path / "state", 2)
    finally:
        _, log = stop_daemon(daemon, timeout=60)
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    failed = {e["base"]: e for e in events if e.get("event") == "transfer-failed"}
    assert failed["8814002"]["reason"] == "auth" and "HTTP 401" in failed["8814002"]["message"]
    assert failed["8814005"]["reason"] == "auth" and "not a token" in failed["8814005"]["message"]
    assert_no_token(trigger.stdout, trigger.stderr, log)
    for path in tmp_path.joinpath("state").rglob("*"):
        if path.is_file():
            assert_no_token(path.read_bytes().decode("utf-8", "replace"))
    for path in tmp_path.joinpath("la").rglob("*"):
        if path.is_file():
            assert_no_token(path.read_text())


def wait_for_runs(state: Path, count: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        journal = state / "journal"
        text = "".join(p.read_text() for p in journal.glob("*")) if journal.is_dir() else ""
        if text.count('"type":"run-finished"') >= count:
            return
        time.sleep(0.1)
    raise AssertionError("the daemon did not finish its run")


def assert_no_token(*texts: str) -> None:
    for text in texts:
        for secret in (TOKEN, WRONG, SYSTEMD, *MANGLED.split("\n")):
            assert secret not in text
