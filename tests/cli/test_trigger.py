"""``b2bd trigger`` as a user runs it (a real subprocess), and the children's-data scan of
everything it leaves in the state dir and prints."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from b2bd.journal.reader import read_journal
from b2bd.sample import SchoolSpec, generate_pupils, write_export
from tests.support.transfer_world import BOTH, OTHER, SECONDARY, SNAP, World, pupil


def b2bd(world: World, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.run(
        [sys.executable, "-m", "b2bd", "--config", str(world.config_dir), *args],
        text=True,
        timeout=60,
        **kwargs,
    )


def test_trigger_runs_the_task_and_journals_a_manual_run(world: World) -> None:
    world.export(SECONDARY, pupils=[pupil(1, "7"), pupil(2, "8")])
    world.export(OTHER, pupils=[pupil(1, "9", estab="3003")])
    world.task("snap", SNAP + BOTH)
    proc = b2bd(world, "trigger", "snap", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert re.fullmatch(r"snap/manual-\d{8}T\d{6}Z", out["run"])
    assert out["outcome"] == "succeeded" and out["manual"] is True
    counts = {t["base"]: t["counts"] for t in out["transfers"]}
    assert counts == {SECONDARY: {"pupil": 2}, OTHER: {"pupil": 1}}
    for t in out["transfers"]:
        assert Path(t["delivery"]).name == out["run"].split("/")[1] + ".jsonl"
    records = list(read_journal(world.state))
    started = next(r for r in records if r.type == "run-started")
    assert started.manual is True and started.run == out["run"]
    assert records[-1].type == "run-finished"


def test_trigger_exit_1_when_a_transfer_fails_and_text_names_the_reason(world: World) -> None:
    world.export(SECONDARY, pupils=[pupil(1, "7")])
    world.export(OTHER, pupils=[], manifest={"services_manager": "stopped"})
    world.task("snap", SNAP + BOTH)
    proc = b2bd(world, "trigger", "snap")
    assert proc.returncode == 1
    assert "partial (1 of 2 transfers succeeded)" in proc.stdout
    assert f"{OTHER}  failed  prerequisite: " in proc.stdout
    assert "Services Manager is stopped" in proc.stdout
    assert f"{SECONDARY}  succeeded  pupil=1" in proc.stdout


def test_trigger_one_base(world: World) -> None:
    world.export(SECONDARY, pupils=[pupil(1, "7")])
    world.task("snap", SNAP + BOTH)  # OTHER has no export at all: not asked for
    proc = b2bd(world, "trigger", "snap", "--base", SECONDARY, "--format", "json")
    assert proc.returncode == 0, proc.stdout
    assert [t["base"] for t in json.loads(proc.stdout)["transfers"]] == [SECONDARY]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["trigger", "nope"], "no valid task 'nope'"),
        (["trigger", "snap", "--base", "8812002"], "not among task snap's bases"),
    ],
)
def test_trigger_usage_errors_exit_2(world: World, args, message) -> None:
    world.task("snap", SNAP)
    proc = b2bd(world, *args)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


LONG_ID = "x" * 100_000


@pytest.mark.parametrize(
    "args",
    [
        ["trigger", LONG_ID],
        ["trigger", "snap", "--base", LONG_ID],
        ["trigger", "snap", "--base", SECONDARY, "--base", LONG_ID, "--base", LONG_ID + "y"],
        ["history", LONG_ID],
        ["plan", "--task", LONG_ID],
        ["preflight", "--task", LONG_ID],
    ],
)
def test_an_unknown_id_is_echoed_cut_short(world: World, args) -> None:
    """A mistyped (or hostile) id given on the command line is shown as its first 64
    characters and an ellipsis, never echoed whole into a terminal or a job log."""
    world.task("snap", SNAP)
    proc = b2bd(world, *args)
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert "x" * 64 + "…" in line and "x" * 65 not in line, line[:300]
    assert len(line) < 1000 and "Traceback" not in line


def test_trigger_shows_progress_on_a_tty(world: World) -> None:
    world.export(SECONDARY, pupils=[pupil(1, "7")])
    world.task("snap", SNAP)
    leader, follower = pty.openpty()
    try:
        proc = b2bd(world, "trigger", "snap", stderr=follower, stdout=subprocess.PIPE)
        os.close(follower)
        follower = -1
        shown = b""
        try:
            while chunk := os.read(leader, 4096):
                shown += chunk
        except OSError:
            pass  # EIO once the child side is closed
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert proc.returncode == 0
    assert b"bases done" in shown and b"records read" in shown


def test_no_pupil_data_in_clear_in_the_state_dir_or_output(world: World) -> None:
    """Generated pupils (names, UPNs, DOBs) go through every kind of task, a failure and a
    rejection; then every byte under the state dir and everything printed is scanned."""
    spec = SchoolSpec(SECONDARY, "secondary", pupils=60, seed=7)
    write_export(world.school_dir(SECONDARY), spec)
    with (world.school_dir(SECONDARY) / "pupils.jsonl").open("a") as handle:
        bad = pupil(999, "7", surname="Rejectedname", forename="Rejectedfore", dob="2013-02-03")
        handle.write(json.dumps({**bad, "upn": "A" + bad["upn"][1:]}) + "\n")
    manifest = world.school_dir(SECONDARY) / "manifest.json"  # its counts no longer hold
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "files": None}))
    world.export(OTHER, pupils=[], manifest={"services_manager": "stopped"})
    tasks = {
        "snap": SNAP + BOTH,
        "lac": "data: {type: snapshot}\ncohort: {group: lac}\n",
        "chg": "data: {type: changed}\ncohort: {group: ncy, ncy: all}\n",
        "att": "data: {type: attendance, attendance: all-absences-current-year}\n"
        "cohort: {group: ncy, ncy: [7, 8, 9]}\n",
        "ks": "data: {type: attainment}\ncohort: {group: ncy}\n",
        "leave": "data: {type: attendance, attendance: all-attendances-previous-year}\n"
        "cohort: {group: leavers}\n",
    }
    printed = ""
    for task_id, body in tasks.items():
        world.task(task_id, body)
    for task_id in tasks:
        for fmt in ("text", "json"):
            proc = b2bd(world, "trigger", task_id, "--format", fmt)
            assert proc.returncode in (0, 1), proc.stderr
            printed += proc.stdout + proc.stderr
    people = [p.record for p in generate_pupils(spec)]
    secrets = {p.upn for p in people} | {p.dob for p in people}
    names = {p.surname for p in people} | {p.forename for p in people}
    secrets |= {"Rejectedname", "Rejectedfore", "2013-02-03"}
    state_bytes = b"".join(p.read_bytes() for p in world.state.rglob("*") if p.is_file())
    assert len(state_bytes) > 1000
    assert b"transfer-succeeded" in state_bytes and b"transfer-failed" in state_bytes
    text = state_bytes.decode("utf-8", "replace") + printed
    leaked = {s for s in secrets if s in text}
    leaked |= {n for n in names if re.search(rf"\b{re.escape(n)}\b", text)}
    assert leaked == set()
    # the scan would have found them: the deliveries do hold them
    delivered = "".join(p.read_text() for p in world.la.rglob("*.jsonl"))
    assert any(p.upn in delivered for p in people)
    assert any(re.search(rf"\b{re.escape(n)}\b", delivered) for n in names)


def test_a_disabled_task_is_refused_unless_forced(world: World) -> None:
    world.export(SECONDARY, pupils=[pupil(1, "7")])
    world.task("snap", SNAP + "enabled: false\n")
    refused = b2bd(world, "trigger", "snap")
    assert refused.returncode == 2
    assert "task snap is disabled (enabled: false in tasks/snap.yaml)" in refused.stderr
    assert "--force" in refused.stderr and "Traceback" not in refused.stderr
    assert not world.state.exists()  # nothing ran, nothing was journaled
    forced = b2bd(world, "trigger", "snap", "--force", "--format", "json")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["transfers"][0]["counts"] == {"pupil": 1}


def test_a_base_with_a_bases_file_error_is_not_targeted(world: World) -> None:
    # OTHER's LAESTAB is listed twice in bases.yaml: nobody can say which entry is right.
    world.export(SECONDARY, pupils=[pupil(1, "7")])
    world.export(OTHER, pupils=[pupil(1, "7", estab="3003")])
    world.write_bases()
    bases = world.config_dir / "bases.yaml"
    entry = bases.read_text().split("  - id:")[-1]
    bases.write_text(bases.read_text() + "  - id:" + entry.replace("School 8813003", "Twin"))
    world.task("snap", SNAP + "bases: {tags: [sec]}\n")
    proc = b2bd(world, "trigger", "snap", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert [t["base"] for t in json.loads(proc.stdout)["transfers"]] == [SECONDARY]
    named = b2bd(world, "trigger", "snap", "--base", OTHER)
    assert named.returncode == 2 and f"base(s) {OTHER} not among" in named.stderr
    assert not (world.la / OTHER).exists()


def test_a_lost_key_file_stops_trigger_instead_of_making_a_new_one(world: World) -> None:
    world.export(SECONDARY, pupils=[pupil(1, "7"), pupil(2, "8")])
    world.task("snap", SNAP)
    assert b2bd(world, "trigger", "snap").returncode == 0  # the journal now holds digests
    key = world.state / "pupil.key"
    key.unlink()
    proc = b2bd(world, "trigger", "snap")
    assert proc.returncode == 2
    assert "pupil.key is missing, but the journal holds pupil digests" in proc.stderr
    assert "restore it" in proc.stderr and "Traceback" not in proc.stderr
    assert not key.exists()  # never silently re-created
    key.mkdir()  # unreadable as a key
    proc = b2bd(world, "trigger", "snap")
    assert proc.returncode == 2 and "pupil.key cannot be read" in proc.stderr
    runs = [r for r in read_journal(world.state) if r.type == "run-started"]
    assert len(runs) == 1  # neither refused trigger started a run


def test_a_first_trigger_makes_the_key(world: World) -> None:
    world.export(SECONDARY, pupils=[pupil(1, "7")])
    world.task("snap", SNAP)
    assert b2bd(world, "trigger", "snap").returncode == 0
    assert len((world.state / "pupil.key").read_bytes()) == 32


def test_trigger_as_of_runs_as_on_that_date_and_journals_it(world: World) -> None:
    # Admitted 2026-09-03: on roll as of 2026-09-05, not as of 2026-09-01.
    world.export(SECONDARY, pupils=[pupil(1, "7", admission="2026-09-03")])
    world.task("snap", SNAP)
    before = b2bd(world, "trigger", "snap", "--as-of", "2026-09-01", "--format", "json")
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout)["transfers"][0]["counts"] == {"pupil": 0}
    proc = b2bd(world, "trigger", "snap", "--as-of", "2026-09-05", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["reference_date"], out["as_of"]) == ("2026-09-05", True)
    assert out["transfers"][0]["counts"] == {"pupil": 1}
    starts = [r for r in read_journal(world.state) if r.type == "run-started"]
    assert [r.as_of for r in starts] == ["2026-09-01", "2026-09-05"]
    text = b2bd(world, "trigger", "snap", "--as-of", "2026-09-05")
    assert " as of 2026-09-05: succeeded" in text.stdout.splitlines()[0]
    plain = json.loads(b2bd(world, "trigger", "snap", "--format", "json").stdout)
    assert plain["as_of"] is False and plain["reference_date"] is not None


@pytest.mark.parametrize(
    ("date", "message"),
    [
        ("2026-02-30", "'2026-02-30' is not a date YYYY-MM-DD"),
        ("20260905", "'20260905' is not a date YYYY-MM-DD"),
        ("2999-01-01", "--as-of 2999-01-01 is after today"),
    ],
)
def test_trigger_as_of_refuses_what_is_not_a_past_date(world: World, date, message) -> None:
    world.export(SECONDARY, pupils=[pupil(1, "7")])
    world.task("snap", SNAP)
    proc = b2bd(world, "trigger", "snap", "--as-of", date)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_concurrent_triggers_are_separate_runs_or_refused_never_one_run_twice(
    world: World,
) -> None:
    """Four `b2bd trigger` processes at once (no daemon): the journal has one writer, so each
    either runs as its own run or is refused with a message; no run id is reported twice and
    every reported delivery is there with its own bytes."""
    world.export(SECONDARY, pupils=[pupil(1, "7"), pupil(2, "8")])
    world.task("snap", SNAP)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "b2bd",
                "--config",
                str(world.config_dir),
                "trigger",
                "snap",
                "--format",
                "json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outcomes = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        outcomes.append((p.returncode, out, err))
    runs = []
    for code, out, err in outcomes:
        assert code in (0, 2), err
        if code == 0:
            summary = json.loads(out)
            runs.append(summary["run"])
            delivery = Path(summary["transfers"][0]["delivery"])
            assert delivery.read_bytes().count(b"\n") == 2
        else:
            assert "cannot open the journal" in err and "Traceback" not in err
    assert runs and len(set(runs)) == len(runs)
    started = [r.run for r in read_journal(world.state) if r.type == "run-started"]
    assert sorted(started) == sorted(runs)
