"""Making our own side of the file system fail, for real: a small tmpfs that fills up, and b2bd
run as an unprivileged user so that permissions bite (tests run as root, where they do not).

``run_as_nobody`` runs b2bd's own ``main`` in a forked child that has dropped to uid/gid 65534:
the code is already imported, so the child needs no access to the checkout or the venv (CI's
clone may sit in a 0700 temp dir). Its stdout and stderr are captured through inherited files.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

NOBODY = 65534


def _warm() -> None:
    """Import everything the commands import lazily (the stdlib's too: it may sit under a
    0700 home), while it is readable."""
    import datetime as dt

    import b2bd.cli.run  # noqa: F401
    from b2bd.cli import build_parser
    from b2bd.config import packaged
    from b2bd.config.schema import SCHEMA_FILES

    build_parser()
    for kind in SCHEMA_FILES:  # the packaged schemas and zone names, read at first use
        packaged.validator(kind)
    packaged.known_timezone("Europe/London")  # the zone list (tzdata) and the example's zone
    dt.datetime.strptime("2026-12-02T06:30", "%Y-%m-%dT%H:%M")  # imports _strptime


def run_as_nobody(call: Callable[[], int]) -> tuple[int, str, str]:
    """``call()`` in a forked child running as uid/gid 65534: (its return value, stdout,
    stderr). An exception escaping ``call`` is a test failure (exit 99 with its traceback)."""
    if os.geteuid() != 0:
        pytest.fail("this test drops privileges, so it must run as root (CI does)")
    _warm()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 99
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
                sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                code = call()
            except BaseException:
                traceback.print_exc()
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return os.waitstatus_to_exitcode(status), out.read().decode(), err.read().decode()


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temp dir under /tmp with 0755 parents, so the unprivileged child can reach it."""
    root = Path(tempfile.mkdtemp(prefix="b2bd-faults-"))
    root.chmod(0o755)
    yield root
    for path in root.rglob("*"):
        with contextlib.suppress(OSError):
            path.chmod(0o755)
    shutil.rmtree(root)


def chown_tree(path: Path, uid: int = NOBODY) -> None:
    for p in (path, *path.rglob("*")):
        os.chown(p, uid, uid)


def root_owned_segment(state: Path) -> Path:
    """A journal in ``state`` that belongs to uid 65534 except its segment: root's, mode 0644
    (what a `journal compact` run as root leaves behind). Returns the segment."""
    from b2bd.journal.writer import Journal

    with Journal.open(state) as journal:
        journal.append("daemon-stopped", reason="test")
    chown_tree(state)
    (segment,) = (state / "journal").glob("*.log")
    os.chown(segment, 0, 0)
    segment.chmod(0o644)
    return segment


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "1m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` (created) for the duration."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (these tests need root, as CI runs): {mounted.stderr}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` to the last byte with a filler file; return it
    (remove it to free the space)."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as f:
        for size in (65536, 4096, 1):
            try:
                while True:
                    f.write(chunk[:size])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return filler
