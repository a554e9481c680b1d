"""``journal compact`` and ``journal verify``'s acknowledgement on our own faults, and root on a
state dir that belongs to the service user: one line naming the path and what to do, exit 2
(README's exit codes), nothing changed, never a traceback.

These run as root, as CI does (.ci/run): root is who must be refused, and tmpfs mounts need it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from b2bd.journal.reader import HISTORY_FILE, JOURNAL_DIR, read_state
from b2bd.journal.writer import Journal
from tests.support.config_dir import b2bd_yaml
from tests.support.oserrors import NOBODY, chown_tree, fill, tmpfs

T0 = "2026-11-02T06:00:00Z"


@pytest.fixture(autouse=True)
def as_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("these tests are about root (and mount a tmpfs): run them as root, as CI does")


def deployment(root: Path) -> tuple[Path, Path]:
    """A config dir with no tasks, and its state dir (config, state)."""
    config, state = root / "config", root / "state"
    (config / "tasks").mkdir(parents=True)
    (config / "b2bd.yaml").write_text(b2bd_yaml(state, root / "la"))
    (config / "bases.yaml").write_text("bases: []\n")
    return config, state


def journal_runs(state: Path, n: int) -> None:
    with Journal.open(state) as journal:
        for i in range(n):
            run = f"t/{i}"
            journal.append("run-started", run=run, task="t", slot=T0, bases=["8814001"])
            journal.append("run-finished", run=run, task="t", outcome="succeeded")


def b2bd(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "RUNTIME_DIRECTORY"}
    return subprocess.run(
        [sys.executable, "-m", "b2bd", "--config", str(config), *args],
        capture_output=True, text=True, timeout=60, env=environ,
    )  # fmt: skip


def files(state: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under the state dir: its owner and bytes (the lock's bytes aside)."""
    out = {}
    for path in sorted(state.rglob("*")):
        if path.is_file():
            data = b"" if path.name == "lock" else path.read_bytes()
            out[str(path.relative_to(state))] = (path.stat().st_uid, data)
    return out


# -- root on the service user's state dir ----------------------------------------------------------


def test_root_refuses_to_compact_a_state_dir_that_belongs_to_the_service_user(tmp_path) -> None:
    config, state = deployment(tmp_path)
    journal_runs(state, 2)
    chown_tree(state)  # the service user's (b2bd under systemd)
    before = files(state)
    result = b2bd(config, "journal", "compact")
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line == (
        f"b2bd: {state} belongs to nobody: as root, b2bd journal compact would leave files "
        "there that the service cannot write; run it as that user (runuser -u nobody -- b2bd "
        "journal compact, or sudo -u nobody b2bd journal compact); or start the service, and "
        "the same command goes through it"
    )
    assert files(state) == before  # nothing written, nothing of root's left behind
    assert all(uid == NOBODY for uid, _ in before.values())


def test_root_refuses_to_acknowledge_repairs_in_the_service_users_state_dir(tmp_path) -> None:
    config, state = deployment(tmp_path)
    journal_runs(state, 1)
    (segment,) = (state / JOURNAL_DIR).glob("*.log")
    with segment.open("ab") as f:
        f.write(b'{"type":"run-fini')  # torn: the next open (as the service) repairs it
    with Journal.open(state) as journal:
        assert journal.repairs
    chown_tree(state)
    before = files(state)
    result = b2bd(config, "journal", "verify")
    assert result.returncode == 2
    assert "journal intact" in result.stdout and "repaired on " in result.stdout
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"b2bd: repairs not acknowledged: {state} belongs to nobody: ")
    assert "runuser -u nobody -- b2bd journal verify" in line
    assert files(state) == before
    # verify that only reads is never refused: after acknowledging (as the service would),
    # root's verify is exit 0 and writes nothing
    (repair,) = read_state(state).repairs
    with Journal.open(state) as journal:
        journal.append("repairs-acknowledged", up_to=repair.seq)
    chown_tree(state)
    again = b2bd(config, "journal", "verify")
    assert again.returncode == 0, again.stderr


def test_root_refuses_to_run_the_daemon_on_the_service_users_state_dir(tmp_path) -> None:
    config, state = deployment(tmp_path)
    journal_runs(state, 1)
    chown_tree(state)
    before = files(state)
    result = b2bd(config, "run")
    assert result.returncode == 1
    (line,) = result.stdout.splitlines()
    logged = json.loads(line)
    assert logged["event"] == "state-unusable" and logged["level"] == "error"
    assert str(logged["error"]).startswith(f"{state} belongs to nobody: as root, b2bd run ")
    assert "runuser -u nobody -- b2bd run" in str(logged["error"])
    assert "start the service" not in str(logged["error"])
    assert files(state) == before
    assert "Traceback" not in result.stdout + result.stderr


def test_root_may_still_write_its_own_state_dir(tmp_path) -> None:
    config, state = deployment(tmp_path)
    journal_runs(state, 2)
    result = b2bd(config, "journal", "compact")
    assert result.returncode == 0, result.stderr


# -- compaction on a full disk or a read-only folder -----------------------------------------------


def test_compact_on_a_full_disk_is_exit_2_naming_the_path_and_works_once_space_is_freed(
    tmp_path,
) -> None:
    config, state = deployment(tmp_path)
    with tmpfs(state, "1m"):
        journal_runs(state, 20)
        before = files(state)
        filler = fill(state)
        result = b2bd(config, "journal", "compact")
        assert result.returncode == 2, result.stderr
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"b2bd: cannot compact: cannot write the history file: {state}/")
        assert "No space left on device (the file system is full: free space on it)" in line
        assert "nothing was changed" in line
        filler.unlink()
        assert files(state) == before
        done = b2bd(config, "journal", "compact")
        assert done.returncode == 0, done.stderr
        history = json.loads(b2bd(config, "history", "--format", "json").stdout)
        assert len(history) == 20


def test_compact_on_a_read_only_folder_is_exit_2_naming_the_path(tmp_path) -> None:
    config, state = deployment(tmp_path)
    with tmpfs(state, "1m"):
        journal_runs(state, 3)
        before = files(state)
        remount = subprocess.run(["mount", "-o", "remount,ro", str(state)], check=False)
        assert remount.returncode == 0
        try:
            result = b2bd(config, "journal", "compact")
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(state)], check=True)
        assert result.returncode == 2, result.stderr
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"b2bd: cannot compact: cannot open the journal: {state}/journal")
        assert "Read-only file system (the file system is read-only: remount it" in line
        assert files(state) == before
        assert not (state / JOURNAL_DIR / HISTORY_FILE).exists()


def test_a_checkpoint_that_does_not_fit_changes_nothing_and_the_journal_carries_on(
    tmp_path: Path,
) -> None:
    """The history file fits on the nearly full disk but the checkpoint does not: nothing is
    changed and the journal stays usable (a JournalError, not JournalFailed, which would stop a
    daemon that `journal compact` was typed beside with exit 1, not restarted by systemd); the
    same compaction works once space is freed."""
    from b2bd.journal.reader import JournalError, scan_journal
    from b2bd.journal.writer import JournalFailed

    state = tmp_path / "state"
    with tmpfs(state, "2m"):
        with Journal.open(state) as journal:
            # A big state (the checkpoint holds it) and a small history (it keeps no config).
            files = {f"tasks/task-{i:05}.yaml": "0" * 64 for i in range(4000)}
            journal.append("config-applied", files=files, commit=None, tasks=[], problems=[])
            segments = sorted(p.name for p in (state / JOURNAL_DIR).glob("*.log"))
            spare = state / "spare"
            spare.write_bytes(b"\0" * 65536)  # room for the history file, not the checkpoint
            filler = fill(state)
            spare.unlink()
            with pytest.raises(JournalError) as raised:
                journal.compact()
            assert not isinstance(raised.value, JournalFailed)
            message = str(raised.value)
            assert "cannot write the checkpoint" in message and "No space left" in message
            assert "nothing was changed" in message
            assert sorted(p.name for p in (state / JOURNAL_DIR).glob("*.log")) == segments
            filler.unlink()
            journal.append("repairs-acknowledged", up_to=1)  # still usable
            done = journal.compact()
            assert done.removed == tuple(segments)
        scan = scan_journal(state / JOURNAL_DIR, deep=True)
        assert not scan.damage and scan.tail is None
        assert read_state(state).applied_config is not None
