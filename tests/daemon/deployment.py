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

from b2bd.config.model import Endpoint, Settings
from b2bd.connectors import SOURCES
from b2bd.connectors.directory import DirectorySource
from b2bd.connectors.source import Deadline, Manifest, Source, no_deadline
from b2bd.journal import read_journal
from b2bd.records import Record, Rejection
from b2bd.records.model import RecordKind
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

    def add_school(self, laestab: str, *, slow: bool = False) -> Path:
        """A tiny generated export; a ``slow`` one is read through :class:`SlowSchool` (the
        daemon must then run with it installed: in-process with :func:`slow_schools`, as a
        subprocess with ``start_daemon(..., slow=True)``)."""
        folder = self.schools / laestab
        write_export(folder, SchoolSpec(laestab, pupils=6, seed=3, marks_from=dt.date(2026, 11, 2)))
        if slow:
            (folder / SLOW).touch()
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


SLOW = ".slow"
WAITING = ".waiting"


class SlowSchool:
    """A school whose export answers slowly: the real :class:`DirectorySource` over the real
    folder, except that reading pupils first waits (creating ``.waiting`` in the folder) until
    the test deletes ``.waiting`` (:func:`release`). This stands in for a slow network share or
    MIS (a FIFO no longer can: the connector refuses FIFOs, as it must)."""

    def __init__(self, source: DirectorySource, folder: Path) -> None:
        self.source = source
        self.folder = folder

    def manifest(self) -> Manifest:
        return self.source.manifest()

    def read(
        self, kind: RecordKind, since: str | None = None, *, deadline: Deadline = no_deadline
    ) -> Iterator[tuple[bytes, Record | Rejection]]:
        if kind == "pupil":
            (self.folder / WAITING).touch()
            while (self.folder / WAITING).exists():
                time.sleep(0.01)
        yield from self.source.read(kind, since, deadline=deadline)

    def close(self) -> None:
        self.source.close()


def _slow_or_real(endpoint: Endpoint, laestab: str | None, settings: Settings | None) -> Source:
    source = DIRECTORY(endpoint, laestab, settings)
    assert endpoint.path is not None
    if (endpoint.path / SLOW).exists():
        return SlowSchool(source, endpoint.path)  # type: ignore[arg-type]
    return source


DIRECTORY = SOURCES["directory"]


def install_slow_schools() -> None:
    """Make folders holding ``.slow`` answer through :class:`SlowSchool` (this process)."""
    SOURCES["directory"] = _slow_or_real


@pytest.fixture
def slow_schools() -> Iterator[None]:
    install_slow_schools()
    yield
    SOURCES["directory"] = DIRECTORY


def reader_waiting(folder: Path, timeout: float = 10.0) -> None:
    """Wait until a transfer is blocked reading the slow school (it is mid-transfer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (folder / WAITING).exists():
            return
        time.sleep(0.01)
    raise AssertionError("no transfer started reading the slow source")


def release(folder: Path) -> None:
    """Let the transfer blocked on the slow school go on (after it started waiting)."""
    reader_waiting(folder)
    (folder / WAITING).unlink()


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

    def drain(self) -> None:
        """Forget every message so far (before starting another daemon on the same socket)."""
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recv(4096)
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)
        self.messages.clear()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


SLOW_MAIN = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); import deployment; "
    "deployment.install_slow_schools(); from b2bd.cli import main; sys.exit(main())"
)


def start_daemon(
    deployment: Deployment,
    notify: NotifySocket | None,
    *args: str,
    env: dict[str, str] | None = None,
    slow: bool = False,
    stdout: int = subprocess.PIPE,
) -> subprocess.Popen[str]:
    """``b2bd run`` as a subprocess; with ``slow``, schools added with ``slow=True`` answer
    through :class:`SlowSchool`."""
    environ = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    if notify is not None:
        environ["NOTIFY_SOCKET"] = str(notify.path)
    environ.update(env or {})
    launch = ["-c", SLOW_MAIN, str(Path(__file__).parent)] if slow else ["-m", "b2bd"]
    return subprocess.Popen(
        [sys.executable, *launch, "--config", str(deployment.config), "run", *args],
        stdout=stdout,
        stderr=subprocess.STDOUT,
        text=True,
        env=environ,
    )


def stop_daemon(proc: subprocess.Popen[str], timeout: float = 30.0) -> tuple[int, str]:
    """SIGTERM, then the exit code and what the daemon wrote ("" when its stdout was not ours
    to read)."""
    if proc.poll() is None:
        proc.terminate()
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()  # never leave a wedged daemon behind; the test fails
        out, _ = proc.communicate()
        raise AssertionError(f"the daemon did not stop on SIGTERM:\n{out}") from None
    return proc.returncode, out or ""
