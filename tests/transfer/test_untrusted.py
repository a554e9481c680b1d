"""A school's folder is hostile input (DESIGN sections 5 and 6, issue 10): each attack a school
(or a broken export tool) can mount, as a regression test on real files and, where the attack
is on the process itself (hangs, memory), a real ``b2bd trigger`` subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.transfer_world import (
    ATT,
    BOTH,
    CHANGED,
    OTHER,
    RESULTS,
    SECONDARY,
    SNAP,
    TO_SCHOOL,
    World,
    mark,
    pupil,
    read_jsonl,
    result,
    slot_at,
    upn,
)

D = "2026-11-02"
FILES = {
    "manifest": "manifest.json",
    "pupil": "pupils.jsonl",
    "mark": "attendance.jsonl",
    "result": "results.jsonl",
    "deletion": "deletions.jsonl",
}


# The trigger's own peak RSS is VmHWM of its process image, read as it exits: ru_maxrss would
# also count the memory of the (large) pytest process it was forked from before its exec.
PEAK = (
    "import atexit, runpy, sys\n"
    "def peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            sys.stderr.write('PEAK ' + line.split()[1] + '\\n')\n"
    "atexit.register(peak)\n"
    "runpy.run_module('b2bd', run_name='__main__')\n"
)


def trigger(world: World, task: str, timeout: float = 120) -> tuple[dict[str, Any], int]:
    """``b2bd trigger TASK --format json`` as a subprocess: (its JSON, its own peak RSS in MiB).
    A trigger still running after ``timeout`` s is killed and the test fails."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", PEAK, "--config", str(world.config_dir), "trigger", task,
             "--format", "json"],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise AssertionError(f"trigger still running after {timeout} s (hung?)") from None
    assert proc.returncode in (0, 1), proc.stderr
    peak_kib = int(proc.stderr.rsplit("PEAK ", 1)[1].split()[0])
    return json.loads(proc.stdout), peak_kib // 1024


def transfer(out: dict[str, Any], base: str = SECONDARY) -> dict[str, Any]:
    return next(t for t in out["transfers"] if t["base"] == base)


def outcome(run: Any, base: str = SECONDARY) -> Any:
    return next(t for t in run.transfers if t.base == base)


def files_below(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (not following symlinks) with its bytes."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


# -- reading: symlinks, FIFOs, folders where files should be --------------------------------


def test_a_symlink_to_another_schools_pupils_is_refused_not_followed(world: World) -> None:
    other = world.export(OTHER, pupils=[pupil(1, "7", estab="3003")])
    school = world.export(SECONDARY, pupils=[pupil(1, "7")])
    (school / "pupils.jsonl").unlink()
    (school / "pupils.jsonl").symlink_to(other / "pupils.jsonl")
    world.task("snap", SNAP)
    run = world.run("snap", slot_at(D))
    t = outcome(run)
    assert (t.outcome, t.reason, t.attempts) == ("failed", "bad-data", 1)
    assert "pupils.jsonl: is a symlink (not followed)" in t.message
    assert world.delivered("snap") == []


@pytest.mark.parametrize("name", ["pupils.jsonl", "manifest.json", "attendance.jsonl"])
def test_a_symlink_out_of_the_folder_is_refused(world: World, tmp_path: Path, name: str) -> None:
    outside = tmp_path / "outside"
    outside.write_text(json.dumps(pupil(1, "7")) + "\n")
    school = world.export(SECONDARY, pupils=[pupil(1, "7")], marks=[mark(1, "2026-10-05")])
    (school / name).unlink()
    (school / name).symlink_to(outside)
    world.task("att", ATT)
    t = outcome(world.run("att", slot_at(D)))
    assert (t.outcome, t.reason) == ("failed", "bad-data")
    assert f"{name}: is a symlink" in t.message


def test_an_export_folder_that_is_a_symlink_set_by_the_la_is_followed(world: World) -> None:
    """The configured path may itself be a symlink (the LA's choice): it is followed once."""
    real = world.export(SECONDARY, pupils=[pupil(1, "7")], folder=world.root / "real-share")
    world.school_dir(SECONDARY).parent.mkdir(parents=True, exist_ok=True)
    world.school_dir(SECONDARY).symlink_to(real)
    world.task("snap", SNAP)
    t = outcome(world.run("snap", slot_at(D)))
    assert t.outcome == "succeeded" and t.counts == {"pupil": 1}


def test_an_export_folder_pointing_at_another_school_is_bad_data(world: World) -> None:
    """...but the export must still be this base's: the manifest's LAESTAB decides."""
    other = world.export(OTHER, pupils=[pupil(1, "7", estab="3003")])
    world.school_dir(SECONDARY).parent.mkdir(parents=True, exist_ok=True)
    world.school_dir(SECONDARY).symlink_to(other)
    world.task("snap", SNAP)
    t = outcome(world.run("snap", slot_at(D)))
    assert (t.outcome, t.reason) == ("failed", "bad-data")
    assert "laestab is not this base's (8814001)" in t.message


@pytest.mark.parametrize("kind", list(FILES))
def test_a_fifo_in_place_of_any_file_fails_that_base_at_once(world: World, kind: str) -> None:
    """A FIFO used to hang trigger forever; now it is refused and the other school delivers."""
    empty: dict[str, Any] = {"marks": [], "results": [], "deletions": []}
    world.export(OTHER, pupils=[pupil(1, "7", estab="3003")], **empty)
    school = world.export(SECONDARY, pupils=[pupil(1, "7")], **empty)
    (school / FILES[kind]).unlink()
    os.mkfifo(school / FILES[kind])
    data = {"deletion": "changed", "result": "attainment"}.get(
        kind, "attendance, attendance: all-attendances-current-year"
    )
    world.task("t", f"data: {{type: {data}}}\ncohort: {{group: ncy}}\n" + BOTH)
    out, _ = trigger(world, "t")
    assert out["outcome"] == "partial"
    bad = transfer(out)
    assert (bad["outcome"], bad["reason"]) == ("failed", "bad-data")
    assert "is a FIFO, not a regular file" in bad["message"]
    assert transfer(out, OTHER)["outcome"] == "succeeded"


# -- timeouts and memory ----------------------------------------------------------------------


@pytest.mark.parametrize("junk", ["endless-line", "rejected-lines"])
def test_an_endless_junk_file_ends_by_timeout(world: World, junk: str) -> None:
    school = world.export(SECONDARY, pupils=[pupil(1, "7")], marks=[])
    with (school / "attendance.jsonl").open("wb") as handle:
        if junk == "endless-line":
            handle.truncate(1 << 40)  # 1 TiB of zeros, sparse: no newline, ever
        else:
            for _ in range(200):  # 80 MB of lines that all fail their checks
                handle.write(b"{}\n" * 100_000 + b"x" * 100 + b"\n")
    world.task("att", ATT + "policy: {timeout: 2s, retries: 0}\n")
    out, _ = trigger(world, "att")
    t = transfer(out)
    assert (t["outcome"], t["reason"]) == ("failed", "timeout")
    assert "transfer took longer than 0:00:02" in t["message"]
    assert world.delivered("att") == []


def test_a_runaway_marks_file_is_bad_data_before_it_fills_the_la_store(world: World) -> None:
    """One valid mark repeated without end (a looping export tool, or a school that wants the
    LA's disk full): the delivery stops at two marks a day per cohort pupil over the window, the
    transfer fails `bad-data` and nothing is delivered. Without the cap every copy was written
    to the LA store until the timeout, filling the disk every other school delivers to."""
    school = world.export(SECONDARY, pupils=[pupil(1, "7")], marks=[mark(1, "2026-10-05")])
    line = (school / "attendance.jsonl").read_bytes()
    (school / "attendance.jsonl").write_bytes(line * 50_000)
    world.task("att", ATT)
    t = outcome(world.run("att", slot_at(D)))
    assert (t.outcome, t.reason, t.attempts) == ("failed", "bad-data", 1)
    assert "marks: more than two a day for each of the cohort's 1 pupils" in t.message
    assert files_below(world.la) == {}


def test_a_200_mb_line_is_rejected_without_being_held(world: World) -> None:
    school = world.export(SECONDARY, pupils=[pupil(1, "7")], marks=[])
    good = json.dumps(mark(1, "2026-10-05")).encode()
    with (school / "attendance.jsonl").open("wb") as handle:
        handle.write(good + b"\n" + b'{"upn": "')
        block = b"A" * (1 << 20)
        for _ in range(200):
            handle.write(block)
        handle.write(b'"}\n' + good.replace(b"10-05", b"10-06") + b"\n")
    world.task("att", ATT)
    out, peak_mib = trigger(world, "att")
    t = transfer(out)
    assert t["outcome"] == "succeeded"
    assert t["counts"] == {"mark": 2}
    assert t["rejected_by_reason"] == {"too-long": 1}
    assert t["read"] == 1 + 3  # one pupil, three mark lines
    assert peak_mib < 150, f"peak RSS {peak_mib} MiB"


# -- integrity ---------------------------------------------------------------------------------


def test_a_future_timestamp_is_rejected_and_later_changes_still_arrive(world: World) -> None:
    future = pupil(2, "7", updated="2099-01-01T00:00:00Z")
    world.export(SECONDARY, pupils=[pupil(1, "7"), future])
    world.task("chg", CHANGED)
    first = outcome(world.run("chg", slot_at(D)))
    assert first.outcome == "succeeded"
    assert first.rejected_by_reason == {"future-timestamp": 1}
    assert first.watermark == "2026-01-10T10:00:00Z"  # not 2099
    # the school fixes its clock and edits pupil 1: the change is delivered
    fixed = pupil(1, "7", updated="2026-11-20T10:00:00Z", surname="Newname")
    world.export(SECONDARY, pupils=[fixed, pupil(2, "7", updated="2026-11-20T11:00:00Z")])
    second = world.run("chg", slot_at("2026-11-23"))
    assert {line["updated_at"] for line in world.lines(second)} == {
        "2026-11-20T10:00:00Z",
        "2026-11-20T11:00:00Z",
    }


def test_an_export_time_from_the_future_does_not_let_a_future_change_through(
    world: World,
) -> None:
    """An export claiming to be from 2099 (a bad clock, or a school that wants its changes
    frozen) used to lift the future-timestamp horizon with it: a record stamped later on D was
    accepted, the watermark moved past changes the school had not made yet, and those were
    never delivered. The horizon is the earlier of the export's time and ours (+5 min)."""
    run_time = slot_at(D)  # 06:30 UTC on D
    ahead = pupil(2, "7", updated=f"{D}T23:00:00Z")
    world.export(SECONDARY, pupils=[pupil(1, "7"), ahead],
                 manifest={"exported_at": "2099-01-01T00:00:00Z"})  # fmt: skip
    world.task("chg", CHANGED)
    first = outcome(world.run("chg", run_time, clock=lambda: run_time))
    assert (first.outcome, first.rejected_by_reason) == ("succeeded", {"future-timestamp": 1})
    assert first.watermark == "2026-01-10T10:00:00Z"
    # later on D the school really edits pupil 1; the next morning's run delivers it
    edited = pupil(1, "7", updated=f"{D}T12:00:00Z", surname="Newname")
    world.export(SECONDARY, pupils=[edited, ahead], manifest={"exported_at": f"{D}T23:50:00Z"})
    next_day = slot_at("2026-11-03")
    second = world.run("chg", next_day, clock=lambda: next_day)
    delivered = {(line["upn"], line["updated_at"]) for line in world.lines(second)}
    assert (upn(1), f"{D}T12:00:00Z") in delivered


def test_a_missing_pupils_file_fails_and_moves_no_watermark(world: World) -> None:
    school = world.export(SECONDARY, pupils=[pupil(1, "7")], deletions=[])
    world.task("chg", CHANGED)
    world.run("chg", slot_at(D))
    watermark = world.engine().watermark("chg", SECONDARY)
    later = pupil(2, "7", updated="2026-11-20T10:00:00Z")
    gone = {"record": "pupil", "key": upn(9), "deleted_at": "2026-11-21T10:00:00Z"}
    world.export(SECONDARY, pupils=[pupil(1, "7"), later], deletions=[gone])
    (school / "pupils.jsonl").unlink()
    t = outcome(world.run("chg", slot_at("2026-11-23")))
    assert (t.outcome, t.reason) == ("failed", "bad-data")
    assert "pupils.jsonl: missing" in t.message
    assert world.engine().watermark("chg", SECONDARY) == watermark
    world.export(SECONDARY, pupils=[pupil(1, "7"), later])
    again = world.run("chg", slot_at("2026-11-24"))
    # the watermark is inclusive (at-least-once): pupil 1 comes again, pupil 2 is not lost
    assert [line["upn"] for line in world.lines(again)] == [upn(1), upn(2)]


def test_an_attendance_run_without_its_marks_file_fails(world: World) -> None:
    world.export(SECONDARY, pupils=[pupil(1, "7")])
    world.task("att", ATT)
    t = outcome(world.run("att", slot_at(D)))
    assert (t.outcome, t.reason) == ("failed", "bad-data")
    assert "attendance.jsonl: missing" in t.message


def with_files(folder: Path, **override: dict[str, Any]) -> None:
    """Give ``folder``'s manifest a ``files`` entry for each data file (true counts and sha256
    unless overridden)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    files = {}
    for name in ("pupils.jsonl", "attendance.jsonl", "results.jsonl", "deletions.jsonl"):
        if (folder / name).exists():
            data = (folder / name).read_bytes()
            files[name] = {
                "records": len(data.splitlines()),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
    for name, facts in override.items():
        files[name.replace("_", ".")] = {**files.get(name.replace("_", "."), {}), **facts}
    manifest["files"] = files
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("lie", ["records", "sha256"])
def test_a_file_truncated_against_the_manifest_fails_and_the_next_run_delivers(
    world: World, lie: str
) -> None:
    marks = [mark(1, f"2026-10-{day:02d}") for day in range(5, 10)]
    school = world.export(SECONDARY, pupils=[pupil(1, "7")], marks=marks)
    with_files(school)
    data = (school / "attendance.jsonl").read_bytes()
    if lie == "records":
        (school / "attendance.jsonl").write_bytes(b"".join(data.splitlines(True)[:3]))
    else:  # same number of lines, other bytes
        (school / "attendance.jsonl").write_bytes(data.replace(b"09:00:00Z", b"09:00:01Z"))
    world.task("att", ATT)
    t = outcome(world.run("att", slot_at(D)))
    assert (t.outcome, t.reason) == ("failed", "bad-data")
    assert "attendance.jsonl: " in t.message and "manifest" in t.message
    assert world.delivered("att") == [] and world.engine().watermark("att", SECONDARY) is None
    world.export(SECONDARY, pupils=[pupil(1, "7")], marks=marks)
    with_files(school)
    good = world.run("att", slot_at(D))
    assert len(world.lines(good)) == 5


def test_a_file_listed_in_the_manifest_must_exist(world: World) -> None:
    school = world.export(SECONDARY, pupils=[pupil(1, "7")], deletions=[])
    with_files(school)
    (school / "deletions.jsonl").unlink()
    world.task("chg", CHANGED)
    t = outcome(world.run("chg", slot_at(D)))
    assert (t.outcome, t.reason) == ("failed", "bad-data")


def test_bom_tolerated_control_characters_and_duplicates_rejected(world: World) -> None:
    school = world.export(
        SECONDARY,
        pupils=[
            pupil(1, "7"),
            pupil(2, "7", surname="Nul\u0000l"),
            pupil(3, "7"),
            pupil(3, "7", surname="Other"),  # same UPN, different record: both rejected
            pupil(4, "7"),
            pupil(4, "7"),  # the same record twice: delivered once
        ],
    )
    path = school / "pupils.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    world.task("snap", SNAP)
    run = world.run("snap", slot_at(D))
    assert [line["upn"] for line in world.lines(run)] == [upn(1), upn(4)]
    t = outcome(run)
    assert t.rejected_by_reason == {"control-character": 1, "duplicate-key": 3}
    assert t.read == 6 == sum(t.counts.values()) + t.rejected + sum(t.dropped.values())


def test_every_line_read_is_accounted_for_in_summary_manifest_and_journal(world: World) -> None:
    world.export(
        SECONDARY,
        pupils=[pupil(1, "7"), pupil(2, "12"), "not json"],
        marks=[
            mark(1, "2026-10-05"),
            mark(1, "2026-10-05", "N", "PM"),
            mark(2, "2026-10-05"),  # not in the cohort
            mark(1, "2025-06-05"),  # outside the year
            mark(1, "2026-10-06", updated="2099-01-01T00:00:00Z"),
            "x" * 70_000,
            "{}",
        ],
    )
    world.task("att", ATT.replace("{group: ncy}", "{group: ncy, ncy: [7]}"))
    run = world.run("att", slot_at(D))
    t = outcome(run)
    manifest = world.manifest(run)
    journaled = next(r for r in world.journal_records() if r.type == "transfer-succeeded")
    assert t.read == manifest["read"] == journaled.read == 10
    for source in (
        (t.counts, t.rejected_by_reason, t.dropped),
        (manifest["counts"], manifest["rejected_by_reason"], manifest["dropped"]),
        (journaled.counts, journaled.rejected_by_reason, journaled.dropped),
    ):
        counts, rejected, dropped = source
        assert sum(counts.values()) + sum(rejected.values()) + sum(dropped.values()) == 10
    assert manifest["rejected_by_reason"] == {
        "future-timestamp": 1, "json": 1, "schema": 1, "too-long": 1,
    }  # fmt: skip
    assert manifest["dropped"] == {"cohort-only": 2, "not-in-cohort": 1, "outside-window": 1}


# -- nothing echoed ------------------------------------------------------------------------------

SECRET_UPN = upn(77)


@pytest.mark.parametrize("field", ["mis", "sims_version", "laestab", "services_manager"])
def test_a_manifest_value_is_never_echoed(world: World, field: str) -> None:
    value = f"{SECRET_UPN} Jane Doe 2014-03-04"
    world.export(SECONDARY, pupils=[pupil(1, "7")], manifest={field: value})
    world.task("snap", SNAP)
    out, _ = trigger(world, "snap")
    if field != "mis":  # a transfer does not compare the MIS; preflight does (below)
        assert transfer(out)["outcome"] == "failed"
    status = subprocess.run(
        [sys.executable, "-m", "b2bd", "--config", str(world.config_dir), "status"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    preflight = subprocess.run(
        [sys.executable, "-m", "b2bd", "--config", str(world.config_dir), "preflight"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    seen = json.dumps(out) + status.stdout + status.stderr + preflight.stdout + preflight.stderr
    for data in files_below(world.state).values():
        seen += data.decode("utf-8", "replace")
    for secret in (SECRET_UPN, "Jane", "2014-03-04"):
        assert secret not in seen


SENTINEL = "Zqxsentinelqz"
TEMPLATES: dict[str, dict[str, Any]] = {
    "pupil": pupil(1, "7"),
    "mark": mark(1, "2026-10-05"),
    "result": result(1),
    "deletion": {"record": "pupil", "key": upn(1), "deleted_at": "2026-10-05T10:00:00Z"},
}


def planted(kind: str) -> list[Any]:
    """Lines of ``kind`` carrying the sentinel in every field in turn (alone, with a control
    character, as a number's place), as a field name, as the whole line, in a too-long line."""
    template = TEMPLATES[kind]
    rows: list[Any] = [template]
    for name in template:
        for value in (SENTINEL, f"{SENTINEL}\u0000", f"{SENTINEL}-{SENTINEL}"):
            rows.append({**template, name: value})
    rows += [{**template, SENTINEL: 1}, SENTINEL, f'{{"upn": "{SENTINEL}"' + " " * 70_000 + "}"]
    return rows


def test_no_value_planted_anywhere_in_an_export_reaches_a_message_journal_or_summary(
    world: World,
) -> None:
    """Every field a school controls holds a sentinel in some line (and, for another school, in
    the manifest): trigger (text and JSON), status, history, journal cat, preflight, the state dir
    and the delivery manifests never show it. Only a delivery's data file may hold it (a
    surname that is one is a valid surname)."""
    world.export(
        SECONDARY,
        pupils=[*planted("pupil"), pupil(2, "7", surname=SENTINEL)],
        marks=planted("mark"),
        results=planted("result"),
        deletions=planted("deletion"),
        manifest={SENTINEL: SENTINEL, "files": {SENTINEL: {"records": 1}}},
    )
    world.export(
        OTHER,
        pupils=[pupil(1, "7", estab="3003")],
        manifest={"mis": SENTINEL, "sims_version": SENTINEL, "laestab": SENTINEL,
                  "services_manager": SENTINEL, "exported_at": SENTINEL},
    )  # fmt: skip
    for task, spec in (("chg", CHANGED), ("att", ATT), ("res", RESULTS)):
        world.task(task, spec + BOTH)
    seen = ""
    for args in (
        ["trigger", "chg"], ["trigger", "att", "--format", "json"], ["trigger", "res"],
        ["status"], ["status", "--format", "json"], ["history"], ["journal", "cat"],
        ["journal", "verify"], ["preflight"], ["validate"],
    ):  # fmt: skip
        proc = subprocess.run(
            [sys.executable, "-m", "b2bd", "--config", str(world.config_dir), *args],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert "Traceback" not in proc.stderr, args
        seen += proc.stdout + proc.stderr
    for data in files_below(world.state).values():
        seen += data.decode("utf-8", "replace")
    delivered = ""
    for name, data in files_below(world.la).items():
        if name.endswith(".manifest.json"):
            seen += data.decode("utf-8", "replace")
        else:
            delivered += data.decode("utf-8", "replace")
    assert SENTINEL in delivered  # the planted export was read (a sentinel surname is valid)
    assert SENTINEL not in seen


# -- writing: symlinks where our files or folders should be --------------------------------------


def test_a_symlinked_inbound_folder_is_local_and_nothing_is_written(
    world: World, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    school = world.export(SECONDARY, pupils=[pupil(1, "7")])
    (school / "inbound").symlink_to(victim)
    outbound = world.la / "outbound" / SECONDARY
    world.export(SECONDARY, pupils=[pupil(1, "7")], folder=outbound)
    world.task(
        "to", "direction: to-school\ndata: {type: changed}\ncohort: {group: ncy, ncy: [7]}\n"
    )
    t = outcome(world.run("to", slot_at(D)))
    assert (t.outcome, t.reason, t.attempts) == ("failed", "local", 1)
    assert "inbound: is a symlink (not followed)" in t.message
    assert list(victim.iterdir()) == []


def test_symlinks_at_every_name_we_write_are_replaced_not_followed(
    world: World, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("the journal, or another school's delivery\n")
    world.export(SECONDARY, pupils=[pupil(1, "7")])
    folder = world.la / SECONDARY / "snap"
    folder.mkdir(parents=True)
    for name in ("20261102T063000Z.jsonl", "20261102T063000Z.manifest.json",
                 ".20261102T063000Z.jsonl.tmp", ".20261102T063000Z.manifest.json.tmp"):  # fmt: skip
        (folder / name).symlink_to(victim)
    world.task("snap", SNAP)
    run = world.run("snap", slot_at(D))
    assert outcome(run).outcome == "succeeded"
    assert victim.read_text() == "the journal, or another school's delivery\n"
    for name in ("20261102T063000Z.jsonl", "20261102T063000Z.manifest.json"):
        assert not (folder / name).is_symlink()
    assert len(world.lines(run)) == 1


@pytest.mark.parametrize("planted", ["symlink", "file"])
def test_something_planted_where_our_folder_should_be_is_local(
    world: World, tmp_path: Path, planted: str
) -> None:
    world.export(SECONDARY, pupils=[pupil(1, "7")])
    world.la.mkdir(parents=True)
    if planted == "symlink":
        (world.la / SECONDARY).symlink_to(tmp_path)
    else:
        (world.la / SECONDARY).write_text("")
    world.task("snap", SNAP)
    t = outcome(world.run("snap", slot_at(D)))
    assert (t.outcome, t.reason, t.attempts) == ("failed", "local", 1)
    assert str(world.la / SECONDARY) in t.message
    assert not (tmp_path / "snap").exists()  # nothing written through the symlink


def test_delivered_lines_are_read_back_whole(world: World) -> None:
    world.export(SECONDARY, pupils=[pupil(1, "7")], marks=[mark(1, "2026-10-05")])
    world.task("att", ATT)
    run = world.run("att", slot_at(D))
    assert read_jsonl(outcome(run).delivery)[0]["kind"] == "mark"


def test_preflight_does_not_wait_on_a_fifo_manifest(world: World) -> None:
    """A FIFO in place of manifest.json used to hang `b2bd preflight` forever."""
    school = world.export(SECONDARY, pupils=[pupil(1, "7")])
    (school / "manifest.json").unlink()
    os.mkfifo(school / "manifest.json")
    world.task("snap", SNAP)
    proc = subprocess.run(
        [sys.executable, "-m", "b2bd", "--config", str(world.config_dir), "preflight"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    line = next(line for line in proc.stdout.splitlines() if line.startswith(SECONDARY))
    assert "manifest FAIL (" in line and "is a FIFO, not a regular file" in line
    assert "[bad-data]" in line


# -- a stuck share ---------------------------------------------------------------------------------


def test_a_manual_run_to_a_stuck_share_holds_no_other_transfer(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A manual to-school run first checks that its delivery name is free in each school's
    inbound folder. A share that stopped answering (simulated: opening that school's folder
    blocks, as on a hung network mount) used to block that check forever while it held the
    engine's lock, so every other transfer (which reads its watermark under that lock) and the
    daemon's loop (which starts manual runs) stood still. Now the check waits a few seconds
    outside the lock, takes an unanswered folder as holding nothing (the exclusive commit still
    never replaces a delivery), and other schools' transfers go on meanwhile."""
    import threading
    import time

    world.export(OTHER, pupils=[pupil(1, "7", estab="3003")])
    school = world.export(SECONDARY, pupils=[pupil(1, "7")])
    world.task("snap", SNAP)
    world.task("to", TO_SCHOOL)
    engine = world.engine()
    stuck, blocked = threading.Event(), threading.Event()
    real_open = os.open

    def hung_share_open(path: Any, *args: Any, **kwargs: Any) -> int:
        if os.fspath(path) == str(school):
            blocked.set()
            stuck.wait()
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", hung_share_open)
    named: list[Any] = []
    done: list[Any] = []

    def manual_start() -> None:
        task = engine.config.tasks["to"]
        named.append(engine.start_run(task, slot_at(D), manual=True, bases=[SECONDARY]))

    def other_school() -> None:
        done.append(engine.run(engine.config.tasks["snap"], slot_at(D), bases=[OTHER]))

    try:
        start = time.monotonic()
        starter = threading.Thread(target=manual_start, daemon=True)
        starter.start()
        assert blocked.wait(10)
        other = threading.Thread(target=other_school, daemon=True)
        other.start()
        other.join(60)
        assert done, "another school's transfer waited for the stuck share"
        assert done[0].transfers[0].outcome == "succeeded"
        starter.join(30)
        assert named, "the manual run never got its name"
        assert named[0].run.startswith("to/manual-")
        assert time.monotonic() - start < 30
    finally:
        stuck.set()
