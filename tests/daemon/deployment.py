"""A small deployment for daemon tests: config dir, one or two school exports, a state dir."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from b2bd.journal import read_journal
from b2bd.sample import SchoolSpec, write_export

SETTINGS = """\
la: {{code: "881", name: Testshire}}
one_version: "3.83"
state_dir: {state}
la_store: {{type: directory, path: {la}}}
concurrency: 4
defaults: {{retries: 0, retry_backoff: 1s, timeout: 5m}}
"""

BASE = """\
  - id: "{id}"
    name: School {id}
    mis: sims
    sims_version: "7.214"
    b2b_phase: 2
    services_manager: true
    tags: [all]
    endpoint: {{type: directory, path: {path}}}
"""

REPO = Path(__file__).resolve().parents[2]

TASK = """\
id: {id}
direction: from-school
bases: {{ids: ["{base}"]}}
data: {{type: snapshot}}
cohort: {{group: ncy}}
schedule:
  weekly: {{days: [mon, tue, wed, thu, fri, sat, sun], times: ["{time}"]}}
{policy}"""


class Deployment:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "config"
        self.state = root / "state"
        self.la = root / "la"
        self.schools = root / "schools"
        (self.config / "tasks").mkdir(parents=True)
        self.config.joinpath("b2bd.yaml").write_text(SETTINGS.format(state=self.state, la=self.la))
        self.bases: list[str] = []

    @classmethod
    def example(cls, root: Path) -> Deployment:
        """A copy of the shipped example (config/ and examples/), as README's first command
        runs it: state in ``root/var/state``, deliveries in ``root/var/la``."""
        for name in ("config", "examples"):
            shutil.copytree(REPO / name, root / name)
        d = cls.__new__(cls)
        d.root, d.config, d.schools = root, root / "config", root / "examples" / "schools"
        d.state, d.la = root / "var" / "state", root / "var" / "la"
        d.bases = []
        return d

    def add_school(self, laestab: str, *, fifo: bool = False) -> Path:
        """A tiny generated export; with ``fifo`` its pupils file is a named pipe, so a transfer
        reading it blocks until the test writes to it (a real slow source)."""
        folder = self.schools / laestab
        write_export(folder, SchoolSpec(laestab, pupils=6, seed=3, marks_from=dt.date(2026, 11, 2)))
        if fifo:
            data = (folder / "pupils.jsonl").read_bytes()
            (folder / "pupils.jsonl").unlink()
            os.mkfifo(folder / "pupils.jsonl")
            (folder / "pupils.data").write_bytes(data)
        self.bases.append(BASE.format(id=laestab, path=folder))
        self.config.joinpath("bases.yaml").write_text("bases:\n" + "".join(self.bases))
        return folder

    def task_text(self, task_id: str, base: str, time: str = "06:00", policy: str = "") -> str:
        return TASK.format(id=task_id, base=base, time=time, policy=policy)

    def add_task(self, task_id: str, base: str, time: str = "06:00", policy: str = "") -> Path:
        path = self.config / "tasks" / f"{task_id}.yaml"
        path.write_text(self.task_text(task_id, base, time, policy))
        return path

    def records(self, type: str | None = None) -> list[dict[str, object]]:
        if not (self.state / "journal").exists():
            return []
        out = []
        for record in read_journal(self.state):
            data = json.loads(json_bytes(record))
            if type is None or data["type"] == type:
                out.append(data)
        return out

    def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; journal: {self.records()}")


def json_bytes(record: object) -> bytes:
    import msgspec

    return msgspec.json.encode(record)


def reader_waiting(folder: Path, timeout: float = 10.0) -> int:
    """Wait until a transfer has the named pipe open for reading (it is mid-transfer, blocked
    on its slow source); return our write end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            fd = os.open(folder / "pupils.jsonl", os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: nobody is reading yet
            time.sleep(0.01)
            continue
        os.set_blocking(fd, True)
        return fd
    raise AssertionError("no transfer started reading the slow source")


def release_fifo(folder: Path, fd: int | None = None) -> None:
    """Feed the named pipe its data; the blocked transfer then completes."""
    fd = reader_waiting(folder) if fd is None else fd
    with os.fdopen(fd, "wb") as pipe:
        pipe.write((folder / "pupils.data").read_bytes())


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    return Deployment(tmp_path)


class NotifySocket:
    """A real datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []

    def wait_for(self, line: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages:
                if line in message.splitlines():
                    self.messages.remove(message)
                    return message
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                break
        raise AssertionError(f"no {line!r} from the daemon; got {self.messages}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


def start_daemon(
    deployment: Deployment,
    notify: NotifySocket | None,
    *args: str,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    if notify is not None:
        environ["NOTIFY_SOCKET"] = str(notify.path)
    environ.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "b2bd", "--config", str(deployment.config), "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environ,
    )


def stop_daemon(proc: subprocess.Popen[str], timeout: float = 30.0) -> tuple[int, str]:
    if proc.poll() is None:
        proc.terminate()
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()  # never leave a wedged daemon behind; the test fails
        out, _ = proc.communicate()
        raise AssertionError(f"the daemon did not stop on SIGTERM:\n{out}") from None
    return proc.returncode, out
