"""Faults on our side end every command as one line on stderr naming the path and what to do
(exit 2), and a reader that stops reading ends it quietly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from b2bd.cli import main
from tests.support.oserrors import chown_tree, open_tmp, run_as_nobody

__all__ = ["open_tmp"]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def example(open_tmp: Path) -> Path:
    """The shipped example config (state_dir ../var/state), in a folder nobody can reach."""
    config = open_tmp / "config"
    shutil.copytree(REPO / "config", config)
    return config


@pytest.mark.parametrize("command", [["status"], ["plan", "--count", "500"], ["validate"]])
def test_a_closed_pipe_ends_the_command_quietly(example: Path, command: list[str]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head` that has already exited: every write fails with EPIPE
    proc = subprocess.run(
        [sys.executable, "-m", "b2bd", "--config", str(example), *command],
        stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60, check=False,
    )  # fmt: skip
    os.close(write_end)
    assert proc.stderr == ""
    assert proc.returncode == 141


def test_unreadable_config_dir_is_one_line_and_exit_2(example: Path) -> None:
    example.chmod(0o700)
    code, out, err = run_as_nobody(lambda: main(["--config", str(example), "validate"]))
    assert code == 2
    assert out == ""
    assert err.splitlines() == [
        f"b2bd: cannot read the config dir: {example}: Permission denied (not allowed for "
        "nobody, uid 65534: fix its owner or mode (the service runs as user b2bd; README's "
        "install steps set the owners))"
    ]


@pytest.mark.parametrize("command", [["status"], ["history"], ["journal", "verify"]])
def test_unreadable_state_dir_is_one_line_and_exit_2(example: Path, command: list[str]) -> None:
    state = example.parent / "var" / "state"
    (state / "journal").mkdir(parents=True)
    state.chmod(0o700)  # root's, as after a command run as root created it
    chown_tree(example)
    code, out, err = run_as_nobody(lambda: main(["--config", str(example), *command]))
    assert code == 2, err
    assert out == ""
    (line,) = err.splitlines()
    # The control socket's place (tried first) or the journal: a path in the state dir.
    assert line.startswith("b2bd: ") and f"{state}/" in line
    assert "ermission denied" in line


# Ctrl-C while the command is still starting: the console script (pyproject's
# [project.scripts]) or `python -m b2bd` is importing the CLI, which takes a few hundred ms on
# a busy host. A finder that raises KeyboardInterrupt when the named module is imported puts
# the interrupt exactly there, every time.
_CTRL_C_WHILE_IMPORTING = """
import importlib, sys
interrupted, entry = sys.argv[1:3]
del sys.argv[1:3]
class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == interrupted:
            raise KeyboardInterrupt
        return None
sys.meta_path.insert(0, CtrlC())
if entry == "-m":
    import runpy
    runpy.run_module("b2bd", run_name="__main__", alter_sys=True)
else:
    module, _, function = entry.partition(":")
    sys.exit(getattr(importlib.import_module(module), function)())
"""


def _console_script() -> str:
    import tomllib

    with open(REPO / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["scripts"]["b2bd"])


@pytest.mark.parametrize("entry", ["script", "-m"])
@pytest.mark.parametrize("module", ["b2bd.cli", "b2bd.cli.validate", "b2bd.daemon.loop"])
def test_ctrl_c_while_starting_is_quiet(example: Path, entry: str, module: str) -> None:
    how = _console_script() if entry == "script" else "-m"
    proc = subprocess.run(
        [sys.executable, "-c", _CTRL_C_WHILE_IMPORTING, module, how,
         "--config", str(example), "trigger", "daily-changed-data"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.stderr == ""
    assert proc.stdout == ""
    assert proc.returncode == 130


def test_state_dir_in_a_symlink_loop_is_one_line_not_a_crash(example: Path) -> None:
    """b2bd.yaml's relative state_dir (../var/state) reaches a symlink loop: every command says
    so in one line naming the path, and the daemon exits 1 (state unusable; before, a
    RuntimeError from Path.resolve was a traceback, and exit 70 that systemd restarts)."""
    var = example.parent / "var"
    var.mkdir()
    (var / "state").symlink_to("loop")
    (var / "loop").symlink_to("state")
    state = var / "state"
    for command in (["status"], ["trigger", "daily-changed-data"], ["journal", "compact"]):
        proc = subprocess.run(
            [sys.executable, "-m", "b2bd", "--config", str(example), *command],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert proc.returncode == 2, (command, proc.stderr)
        (line,) = proc.stderr.splitlines()
        assert f"{state}/" in line and "Too many levels of symbolic links" in line
    daemon = subprocess.run(
        [sys.executable, "-m", "b2bd", "--config", str(example), "run"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert daemon.returncode == 1, daemon.stdout
    assert daemon.stderr == ""
    (failure,) = [e for e in map(json.loads, daemon.stdout.splitlines()) if e["level"] == "error"]
    assert failure["event"] == "journal-unusable" and str(state) in str(failure["error"])


@pytest.mark.parametrize("command", [["status"], ["history"], ["journal", "verify"],
                                     ["journal", "cat"]])  # fmt: skip
def test_a_journal_folder_replaced_by_a_file_is_not_an_empty_journal(
    example: Path, command: list[str]
) -> None:
    """`journal` in the state dir is a file (a bad restore, a mistyped cp): the daemon cannot
    start (exit 1), so `status` must not say all is well (exit 0, "no transfer yet") nor
    `journal verify` "no journal yet": one line naming the path, exit 2."""
    journal = example.parent / "var" / "state" / "journal"
    journal.parent.mkdir(parents=True)
    journal.write_text("not a folder\n")
    proc = subprocess.run(
        [sys.executable, "-m", "b2bd", "--config", str(example), *command],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    (line,) = proc.stderr.splitlines()
    assert str(journal) in line and "Not a directory" in line


def test_ctrl_c_during_a_trigger_stuck_on_a_share_says_what_it_waits_for(tmp_path: Path) -> None:
    """`b2bd trigger` without a daemon, its transfer stuck reading a school's share: Ctrl-C
    cannot interrupt that read, so the command says it waits for it (it used to wait
    silently); a second Ctrl-C leaves, exit 130, no traceback."""
    import select
    import signal

    from tests.support.deployment import Deployment
    from tests.support.slow_school import WAITING, reader_waiting

    d = Deployment(tmp_path)
    folder = d.add_school("8814001", slow=True)
    d.add_task("t", "8814001")
    slow_main = (
        "import sys; sys.path.insert(0, sys.argv.pop(1)); "
        "from tests.support.slow_school import install_slow_schools; install_slow_schools(); "
        "from b2bd.__main__ import main; sys.exit(main())"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", slow_main, str(REPO), "--config", str(d.config), "trigger", "t"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        reader_waiting(folder, 30)
        proc.send_signal(signal.SIGINT)
        assert proc.stderr is not None
        said, _, _ = select.select([proc.stderr], [], [], 30)
        assert said, "nothing said after Ctrl-C"
        line = proc.stderr.readline()  # said at once, while the read is still stuck
        assert line.startswith("b2bd: interrupted: waiting for the transfers running now")
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=30)
    finally:
        (folder / WAITING).unlink(missing_ok=True)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    assert rest == ""
