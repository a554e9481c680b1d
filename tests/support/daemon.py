"""The daemon as systemd runs it, for tests and benchmarks: ``b2bd --config DIR run`` as a real
subprocess, with a real datagram socket as its ``NOTIFY_SOCKET``, stopped with SIGTERM (the
``deployment`` arguments are anything with a ``config`` dir, and for :class:`DaemonProcess` a
``root`` folder: tests/daemon/deployment.py's and bench/_deployment.py's).

- :class:`NotifySocket` receives the daemon's sd_notify messages (READY=1, RELOADING=1,
  STOPPING=1, WATCHDOG=1, STATUS=...) and remembers when each arrived.
- :func:`start_daemon` / :func:`stop_daemon`: one daemon process, its output piped (tests read
  it) or sent to a file descriptor.
- :class:`DaemonProcess`: the same for benchmarks, logging to a file and timing READY=1.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Protocol

REPO = Path(__file__).resolve().parents[2]

# Run b2bd with the slow schools of tests.support.slow_school installed in the daemon process.
_SLOW_MAIN = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from tests.support.slow_school import install_slow_schools; install_slow_schools(); "
    "from b2bd.cli import main; sys.exit(main())"
)


class Notice(str):
    """One sd_notify message (its text), with ``at``: :func:`time.monotonic` when it was read."""

    at: float

    def __new__(cls, text: str, at: float) -> Notice:
        notice = super().__new__(cls, text)
        notice.at = at
        return notice


class NoNotice(AssertionError, TimeoutError):
    """The awaited message did not come in time (a test failure; a benchmark's TimeoutError)."""


class NotifySocket:
    """A real datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[Notice] = []  # read, not yet consumed by wait_for or drain

    def _receive(self) -> Notice:
        return Notice(self.sock.recv(4096).decode(), time.monotonic())

    def wait_for(self, line: str, timeout: float = 15.0) -> Notice:
        """The first message (already read or arriving within ``timeout`` s) holding ``line``
        as one of its lines; it is consumed, earlier others are kept."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages:
                if line in message.splitlines():
                    self.messages.remove(message)
                    return message
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(max(left, 0.01))
            try:
                self.messages.append(self._receive())
            except TimeoutError:
                break
        raise NoNotice(f"no {line!r} from the daemon within {timeout:.0f} s; got {self.messages}")

    def drain(self) -> list[Notice]:
        """Every message so far, without blocking; they are forgotten (e.g. before starting
        another daemon on the same socket)."""
        self.sock.setblocking(False)
        try:
            while True:
                self.messages.append(self._receive())
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)
        drained, self.messages = self.messages, []
        return drained

    def close(self) -> None:
        self.sock.close()


class HasConfig(Protocol):
    @property
    def config(self) -> Path: ...


class Deployed(HasConfig, Protocol):
    @property
    def root(self) -> Path: ...


def start_daemon(
    deployment: HasConfig | Path,
    notify: NotifySocket | None,
    *args: str,
    env: dict[str, str] | None = None,
    slow: bool = False,
    stdout: int = subprocess.PIPE,
    cwd: Path | None = None,
    stderr: int = subprocess.STDOUT,
) -> subprocess.Popen[str]:
    """``b2bd --config DIR run ARGS`` as a subprocess (DIR: ``deployment``'s config dir, or the
    path given), its stderr with its stdout unless ``stderr`` is given, in this environment
    updated with ``env``. With ``notify``, that socket is its NOTIFY_SOCKET (else it has none);
    a watchdog of the caller's own is never passed on (one given in ``env`` is). With ``slow``,
    folders holding ``.slow`` answer through :class:`tests.support.slow_school.SlowSchool`."""
    config = deployment if isinstance(deployment, Path) else deployment.config
    inherited = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
    environ = {k: v for k, v in os.environ.items() if k not in inherited}
    environ.update(env or {})
    environ.pop("NOTIFY_SOCKET", None)
    if notify is not None:
        environ["NOTIFY_SOCKET"] = str(notify.path)
    launch = ["-c", _SLOW_MAIN, str(REPO)] if slow else ["-m", "b2bd"]
    return subprocess.Popen(
        [sys.executable, *launch, "--config", str(config), "run", *args],
        stdout=stdout,
        stderr=stderr,
        text=True,
        env=environ,
        cwd=cwd,
    )


class DaemonWedged(AssertionError):
    """The daemon did not stop on SIGTERM in time (it was then killed)."""


def stop_daemon(proc: subprocess.Popen[str], timeout: float = 30.0) -> tuple[int, str]:
    """SIGTERM, then the exit code and what the daemon wrote ("" when its stdout was not ours
    to read). A daemon still running after ``timeout`` s is killed and :class:`DaemonWedged`
    raised: never leave one behind."""
    if proc.poll() is None:
        proc.terminate()
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise DaemonWedged(f"the daemon did not stop on SIGTERM:\n{out}") from None
    return proc.returncode, out or ""


class DaemonProcess:
    """A daemon for benchmarks: :func:`start_daemon` with its output in ``root/daemon.log`` and
    its notify socket at ``root/notify.sock``; :meth:`start` waits for READY=1."""

    def __init__(self, deployment: Deployed) -> None:
        self.deployment = deployment
        self.root = deployment.root
        self.log_path = self.root / "daemon.log"
        self.notify = NotifySocket(self.root / "notify.sock")
        self.proc: subprocess.Popen[str] | None = None
        self.started_at = 0.0
        self.ready_at = 0.0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 120.0) -> float:
        """Start the daemon and wait for READY=1; seconds from process start to READY."""
        with self.log_path.open("wb") as log:
            self.started_at = time.monotonic()
            self.proc = start_daemon(
                self.deployment, self.notify, stdout=log.fileno(), cwd=self.root
            )
        try:
            self.ready_at = self.notify.wait_for("READY=1", timeout).at
        except NoNotice:
            self.stop()
            raise RuntimeError(f"daemon never became ready; its log:\n{self.log_tail()}") from None
        return self.ready_at - self.started_at

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM and its exit code (killed after ``timeout`` s); None if never started."""
        if self.proc is None:
            return None
        with contextlib.suppress(DaemonWedged):  # killed: its exit code says so
            stop_daemon(self.proc, timeout)
        self.notify.close()
        return self.proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
