"""Reload: from the rename of one changed task file in a 2,000-file config to ``config-applied``
in the journal (DESIGN section 9: target <= 0.5 s median).

Generates a deployment (bench/_deployment.py: 2,000 valid, varied task files whose slots are
all 2-3 hours away, 20 bases with tiny exports), starts ``b2bd run`` as a subprocess with a real
NOTIFY_SOCKET and waits for READY=1 (the start-up time is printed as context). Then
``--changes`` times (default 7), each on a different task file, an editor-style save: the new
content is written to a hidden temporary file in the same folder and fsynced (not timed), then
renamed over the task file. The clock starts just before the rename; it stops when a
``config-applied`` record naming the new content's sha256 for that file is readable in the
journal (the journal's newest segment is polled every ``--poll`` seconds, default 2 ms, reading
only new bytes). The READY=1 that follows RELOADING=1 on the notify socket is timed too.

The figure includes the daemon's deliberate quiet period (b2bd.daemon.loop.QUIET: a rescan
starts only after the directory has been silent that long, so a ``git checkout`` of many files
is one reload), the rescan (every file read and hashed, the changed one parsed and checked),
the cross-file rules over all tasks, and the fsynced journal append.

Prints each change, the median, the ratio to the target and /proc/loadavg (shared machine).

    .venv/bin/python bench/reload.py [--tasks 2000] [--bases 20] [--changes 7] [--pause 1.0]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from _deployment import Deployment, generated_daemon, loadavg

from b2bd.daemon.loop import QUIET
from tests.support.daemon import DaemonProcess

TARGET_SECONDS = 0.5
APPLIED = b'{"type":"config-applied",'


class JournalTail:
    """Reads only the bytes appended to the journal since the last look, as whole lines."""

    def __init__(self, journal_dir: Path) -> None:
        self.dir = journal_dir
        self.path: Path | None = None
        self.offset = 0
        self.partial = b""

    def _newest(self) -> Path | None:
        segments = sorted(self.dir.glob("*.log"))
        return segments[-1] if segments else None

    def skip_to_end(self) -> None:
        self.path = self._newest()
        self.offset = self.path.stat().st_size if self.path else 0
        self.partial = b""

    def lines(self) -> list[bytes]:
        if self.path is None:
            self.skip_to_end()
            return []
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        if not data:
            newest = self._newest()
            if newest != self.path:  # rotated: the next segment starts where this one ended
                self.path, self.offset = newest, 0
            return []
        chunks = (self.partial + data).split(b"\n")
        self.partial = chunks.pop()
        return chunks


def wait_applied(tail: JournalTail, name: str, digest: str, poll: float, timeout: float) -> float:
    """Poll until a config-applied record carrying ``digest`` for ``name`` is in the journal;
    the monotonic time it was seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in tail.lines():
            if line.startswith(APPLIED):
                seen = time.monotonic()
                if json.loads(line).get("files", {}).get(name) == digest:
                    return seen
        time.sleep(poll)
    raise TimeoutError(f"no config-applied with the new {name} within {timeout:.0f} s")


def edited(text: str, n: int, rng: random.Random) -> str:
    """A valid new version: the description always changes (a content change for sure); every
    other edit also moves the task's times to other minutes, still 2-3 hours away."""
    text = re.sub(r"(?m)^(description: .*?)( \(edit \d+\))?$", rf"\1 (edit {n})", text, count=1)
    if n % 2:
        zone = re.search(r"(?m)^  timezone: (\S+)$", text)
        local = dt.datetime.now(ZoneInfo(zone.group(1) if zone else "Europe/London"))
        new = (local + dt.timedelta(minutes=rng.randint(121, 179))).strftime("%H:%M")
        text = re.sub(r"(?m)^    times: \[.*\]$", f'    times: ["{new}"]', text, count=1)
    return text


def save_like_an_editor(path: Path, text: str) -> float:
    """Write ``text`` to a hidden temp file beside ``path``, fsync it, rename it over ``path``;
    the monotonic time taken just before the rename."""
    tmp = path.with_name(f".{path.name}.bench-tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    began = time.monotonic()
    os.replace(tmp, path)
    return began


def reload_once(
    deployment: Deployment,
    daemon: DaemonProcess,
    tail: JournalTail,
    n: int,
    args: argparse.Namespace,
) -> tuple[float, float | None]:
    rng = random.Random(n)
    task = rng.randrange(args.tasks)
    path = deployment.task_path(task)
    text = edited(path.read_text(), n, rng)
    name = f"tasks/{path.name}"
    digest = hashlib.sha256(text.encode()).hexdigest()
    daemon.notify.drain()
    tail.lines()  # skip anything written before this change
    began = save_like_an_editor(path, text)
    applied = wait_applied(tail, name, digest, args.poll, timeout=60.0) - began
    ready: float | None = None
    reloading = False
    for notice in daemon.notify.drain():
        lines = notice.splitlines()
        reloading = reloading or "RELOADING=1" in lines
        if reloading and "READY=1" in lines:
            ready = notice.at - began
            break
    if ready is None:
        try:
            ready = daemon.notify.wait_for("READY=1", timeout=10.0).at - began
        except TimeoutError:
            ready = None
    return applied, ready


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--bases", type=int, default=20)
    parser.add_argument("--changes", type=int, default=7)
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between changes")
    parser.add_argument("--poll", type=float, default=0.002, help="journal poll interval, s")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (path printed)")
    args = parser.parse_args()

    with generated_daemon(
        "b2bd-bench-reload-", tasks=args.tasks, bases=args.bases, keep=args.keep
    ) as (work, deployment, daemon):
        print(
            f"deployment: {args.tasks} task files (every slot 2-3 h away), {args.bases} bases "
            f"with tiny exports, in {work}"
        )
        print(f"loadavg before: {loadavg()} ({os.cpu_count()} CPUs)")
        startup = daemon.start()
        print(f"start-up (process start -> READY=1) with {args.tasks} task files: {startup:.2f} s")
        tail = JournalTail(deployment.journal_dir)
        tail.skip_to_end()
        time.sleep(args.pause)

        applied_times: list[float] = []
        ready_times: list[float] = []
        for n in range(args.changes):
            applied, ready = reload_once(deployment, daemon, tail, n, args)
            applied_times.append(applied)
            if ready is not None:
                ready_times.append(ready)
            shown = f"{ready:.3f} s" if ready is not None else "not seen"
            print(f"  change {n + 1}: rename -> config-applied {applied:.3f} s "
                  f"(-> READY=1 {shown})")  # fmt: skip
            time.sleep(args.pause)
        print(f"loadavg after: {loadavg()}")

        median = statistics.median(applied_times)
        print(
            f"median rename -> config-applied: {median:.3f} s of {_fmt(applied_times)}; "
            f"of which the quiet period is {QUIET:.3f} s by design"
        )
        if ready_times:
            ready_median = statistics.median(ready_times)
            print(f"median rename -> READY=1 (after RELOADING=1): {ready_median:.3f} s")
        print(
            f"target <= {TARGET_SECONDS} s: {median / TARGET_SECONDS:.2f}x the target "
            f"({'met' if median <= TARGET_SECONDS else 'MISSED'})"
        )
        code = daemon.stop()
        print(f"daemon stopped by SIGTERM: exit {code}")
        return 0 if code == 0 else 1


def _fmt(times: list[float]) -> str:
    return "[" + ", ".join(f"{t:.3f}" for t in times) + "]"


if __name__ == "__main__":
    sys.exit(main())
