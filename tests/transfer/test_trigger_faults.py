"""``b2bd trigger`` when our own side fails: a full state disk after the deliveries were
written, an unreadable pupil key, a read-only journal segment, a state dir that belongs to the
service user. Each is one line on stderr and exit 2, never a traceback; after the cause is gone
the next trigger works and the journal is intact."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from b2bd.cli import main
from b2bd.journal.keys import PupilKeyer
from b2bd.journal.reader import read_journal, scan_journal
from b2bd.journal.writer import Journal
from tests.support.oserrors import (
    NOBODY,
    chown_tree,
    fill,
    open_tmp,
    root_owned_segment,
    run_as_nobody,
    tmpfs,
)
from tests.support.transfer_world import SECONDARY, World, pupil, slot_at

__all__ = ["open_tmp"]

SNAP = f'data: {{type: snapshot}}\ncohort: {{group: ncy}}\nbases: {{ids: ["{SECONDARY}"]}}\n'
PAGE = 4096  # tmpfs allocates whole pages: a write into the last page's free room succeeds


def trigger(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "b2bd", "--config", str(world.config_dir), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def snap_world(root: Path) -> World:
    world = World(root)
    world.export(SECONDARY, pupils=[pupil(1, "7"), pupil(2, "8")])
    world.task("snap", SNAP)
    return world


def record_sizes(root: Path) -> dict[str, int]:
    """Bytes each journal record of one `trigger snap` takes (a scratch run)."""
    world = snap_world(root)
    assert trigger(world, "trigger", "snap").returncode == 0
    (segment,) = (world.state / "journal").glob("*.log")
    sizes: dict[str, int] = {}
    for line in segment.read_bytes().splitlines(keepends=True):
        sizes[line.split(b'"')[3].decode()] = len(line)
    return sizes


def pad_last_page(state: Path, room: int) -> None:
    """Journal padding records so that the segment's last page has exactly ``room`` bytes
    free."""
    with Journal.open(state) as journal:
        journal.append("daemon-stopped", reason="")
        (segment,) = (state / "journal").glob("*.log")
        size = segment.stat().st_size
        empty = size  # the first record: an empty reason
        padding = (-room - size - empty) % PAGE
        journal.append("daemon-stopped", reason="x" * padding)
        assert (PAGE - segment.stat().st_size % PAGE) == room


def test_full_state_disk_after_the_delivery_is_one_line_and_the_next_trigger_recovers(
    tmp_path: Path,
) -> None:
    sizes = record_sizes(tmp_path / "scratch")
    world = snap_world(tmp_path / "real")
    with tmpfs(world.state, "256k"):
        # run-started fits in the last page; transfer-succeeded, written after the delivery,
        # needs a page the full disk does not have.
        pad_last_page(world.state, sizes["run-started"] + sizes["transfer-succeeded"] // 2)
        PupilKeyer(world.state).digest("X")  # the key exists (it needs a page too)
        filler = fill(world.state)
        failed = trigger(world, "trigger", "snap")
        assert failed.returncode == 2, failed.stderr
        assert failed.stdout == ""
        (line,) = failed.stderr.splitlines()
        (segment,) = (world.state / "journal").glob("*.log")
        assert line.startswith(f"b2bd: cannot write the journal: {segment}: No space left")
        assert "free space" in line and "the run is unfinished in the journal" in line
        assert len(world.delivered("snap")) == 1  # the delivery was written before the failure

        filler.unlink()
        again = trigger(world, "trigger", "snap")
        assert again.returncode == 0, again.stderr
        (warning,) = again.stderr.splitlines()
        assert warning.startswith("b2bd: warning: journal repaired: segment ")
        assert "never acknowledged" in warning
        assert scan_journal(world.state / "journal").intact
        types = [r.type for r in read_journal(world.state)]
        assert types.count("run-started") == 2 and types.count("run-finished") == 1
        assert types[-1] == "run-finished" and "journal-repaired" in types


def nobody_world(root: Path) -> World:
    world = snap_world(root)
    world.state.mkdir()
    world.la.mkdir()
    chown_tree(world.state)
    chown_tree(world.la)
    return world


def trigger_as_nobody(world: World) -> tuple[int, str, str]:
    return run_as_nobody(lambda: main(["--config", str(world.config_dir), "trigger", "snap"]))


def test_unreadable_pupil_key_is_one_line_and_exit_2(open_tmp: Path) -> None:
    world = nobody_world(open_tmp)
    key = world.state / "pupil.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)  # root's
    code, out, err = trigger_as_nobody(world)
    assert code == 2, err
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith(f"b2bd: {key} cannot be read (Permission denied)")
    assert world.delivered("snap") == []


def test_read_only_journal_segment_is_one_line_and_exit_2(open_tmp: Path) -> None:
    world = nobody_world(open_tmp)
    segment = root_owned_segment(world.state)
    code, out, err = trigger_as_nobody(world)
    assert code == 2, err
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith(f"b2bd: cannot open the journal: {segment}: Permission denied")
    assert "fix its owner or mode" in line


def test_root_refuses_to_write_a_state_dir_that_belongs_to_the_service_user(
    tmp_path: Path,
) -> None:
    world = snap_world(tmp_path)
    world.state.mkdir()
    os.chown(world.state, NOBODY, NOBODY)
    proc = trigger(world, "trigger", "snap")
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line == (
        f"b2bd: {world.state} belongs to nobody: as root, b2bd trigger ... would leave files "
        "there that the service cannot write; run it as that user (runuser -u nobody -- b2bd "
        "trigger ..., or sudo -u nobody b2bd trigger ...); or start the service, and the same "
        "command goes through it"
    )
    assert list(world.state.iterdir()) == []  # nothing created as root


def test_a_full_la_store_mid_delivery_is_local_leaves_nothing_and_keeps_the_watermark(
    tmp_path: Path,
) -> None:
    """The LA store fills up while a delivery is being written: that transfer fails `local`
    (the path and "no space", one attempt: retrying cannot free a disk), no partial delivery or
    temporary file is left, the watermark stays where the last success put it, and once space is
    freed the next run delivers every change."""
    world = World(tmp_path)
    task = f'data: {{type: changed}}\ncohort: {{group: ncy}}\nbases: {{ids: ["{SECONDARY}"]}}\n'
    long = "Longname-" * 8
    try:
        with tmpfs(world.la, "512k"):
            world.export(SECONDARY, pupils=[pupil(i, "7") for i in range(1, 11)])
            world.task("chg", task)
            first = world.run("chg", slot_at("2026-11-02"))
            assert first.transfers[0].outcome == "succeeded"
            watermark = first.transfers[0].watermark
            changed = [pupil(i, "7", updated="2026-11-20T10:00:00Z", surname=long)
                       for i in range(1, 1000)]  # fmt: skip
            world.export(SECONDARY, pupils=changed)  # ~300 KB to deliver
            folder = world.la / SECONDARY / "chg"
            before = sorted(p.name for p in folder.iterdir())
            filler = world.la / "filler"
            filler.write_bytes(b"\0" * 300_000)  # ~150 KB left: full mid-delivery
            second = world.run("chg", slot_at("2026-11-23")).transfers[0]
            assert (second.outcome, second.reason, second.attempts) == ("failed", "local", 1)
            assert str(folder) in second.message and "No space left" in second.message
            assert sorted(p.name for p in folder.iterdir()) == before  # nothing partial, no temp
            assert world.engine().watermark("chg", SECONDARY) == watermark
            filler.unlink()
            third = world.run("chg", slot_at("2026-11-23"))
            assert len(world.lines(third)) == 999
            assert third.transfers[0].watermark == "2026-11-20T10:00:00Z"
    finally:
        world.close()


def test_an_unreadable_tasks_folder_is_named_as_the_reason_a_task_is_not_valid(
    open_tmp: Path,
) -> None:
    world = nobody_world(open_tmp)
    chown_tree(world.config_dir)
    tasks = world.config_dir / "tasks"
    os.chown(tasks, 0, 0)
    tasks.chmod(0o700)  # root's, as after a `git pull` run as root with a tight umask
    code, out, err = trigger_as_nobody(world)
    assert code == 2, err
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith("b2bd: no valid task 'snap': tasks/:0:0: error: ")
    assert "Permission denied" in line and line.endswith("[file-unreadable] (see `b2bd validate`)")


def test_a_missing_tasks_folder_or_a_broken_task_file_is_named(tmp_path: Path) -> None:
    world = snap_world(tmp_path)
    path = world.config_dir / "tasks" / "snap.yaml"
    path.write_text(path.read_text().replace("direction: from-school", "direction: sideways"))
    broken = trigger(world, "trigger", "snap")
    assert broken.returncode == 2
    (line,) = broken.stderr.splitlines()
    assert line.startswith("b2bd: no valid task 'snap': tasks/snap.yaml:")
    assert "sideways" in line and line.endswith("(see `b2bd validate`)")
    os.rename(world.config_dir / "tasks", tmp_path / "tasks.moved")
    gone = trigger(world, "trigger", "snap")
    assert gone.returncode == 2
    (line,) = gone.stderr.splitlines()
    assert line.startswith("b2bd: no valid task 'snap': tasks/:0:0: error: ")
    assert "folder is missing" in line and "[file-unreadable]" in line
    # a task id that names no file keeps its "did you mean", whatever else is wrong
    os.rename(tmp_path / "tasks.moved", world.config_dir / "tasks")
    world.task("other", SNAP)
    typo = trigger(world, "trigger", "othr")
    assert typo.returncode == 2
    assert "no valid task 'othr' (valid tasks: other;" in typo.stderr
    assert "did you mean 'other'?" in typo.stderr
