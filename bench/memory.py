"""Pupil-memory benchmark: a journal remembering 500 bases x 2,000 pupils for 10 changed tasks
opens and replays in <= 3 s, and the daemon holding it stays within 150 MB (DESIGN section 9).

    .venv/bin/python bench/memory.py [--bases 500] [--pupils 2000] [--tasks 10] [--days 60]
                                     [--runs 5] [--dir DIR]

The journal is what the engine writes: each task's first run at each base remembers its whole
cohort (the first task's records carry the 2,000 new pupil digests of the base, every task's a
``joined`` bitmap of 2,000 positions), then ``--days`` daily runs of every task at every base
with a small delta (a joiner every few days, a leaver now and then). It is written straight
into segments with the journal's framing, as ``bench/journal.py`` does. Printed, each the
median of ``--runs``: open+replay of that journal, and of the same after ``journal compact``
(a checkpoint holding the memories); then the resident and peak memory (VmRSS, VmHWM from
/proc) of a real ``b2bd run`` daemon that replayed it, beside the same daemon on an empty
journal, and the ratio of each figure to its target.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _deployment import Deployment
from journal import write_bulk

from b2bd.journal.entries import Entry, RunFinished, RunStarted, TransferSucceeded
from b2bd.journal.keys import PupilKeyer
from b2bd.journal.memory import bits_of, encode_bits
from b2bd.journal.writer import DEFAULT_SEGMENT_BYTES, Journal
from tests.support.daemon import DaemonProcess

T0 = dt.datetime(2026, 9, 1, 6, 0, tzinfo=dt.UTC)
REPLAY_TARGET = 3.0  # seconds
RSS_TARGET = 150.0  # MiB

SETTINGS = """\
la: {{code: "881", name: Benchshire}}
one_version: "3.83"
timezone: Europe/London
state_dir: {state}
la_store: {{type: directory, path: {store}}}
concurrency: 8
"""


def write_config(deployment: Deployment, bases: list[str], tasks: int) -> None:
    config = deployment.config
    (config / "tasks").mkdir(parents=True, exist_ok=True)
    config.joinpath("b2bd.yaml").write_text(
        SETTINGS.format(state=deployment.state, store=deployment.root / "la")
    )
    lines = ["bases:"]
    for n, laestab in enumerate(bases):
        lines += [
            f'  - id: "{laestab}"', f"    name: School {n}", "    mis: sims",
            '    sims_version: "7.214"', "    b2b_phase: 2", "    services_manager: true",
            f"    endpoint: {{type: directory, path: {deployment.root / 'schools' / laestab}}}",
        ]  # fmt: skip
    config.joinpath("bases.yaml").write_text("\n".join(lines) + "\n")
    for t in range(tasks):
        # Never due while the benchmark runs: the daemon replays, then waits.
        config.joinpath("tasks", f"changed-{t}.yaml").write_text(
            f"id: changed-{t}\ndirection: from-school\nbases: {{all: true}}\n"
            "data: {type: changed}\ncohort: {group: ncy}\n"
            'schedule: {once: "2099-01-01T06:00"}\n'
        )


def journal_records(
    bases: list[str], pupils: int, tasks: int, days: int, seed: int = 7
) -> Iterator[Entry]:
    """The engine's records for the scenario (see the module docstring)."""
    rng = random.Random(seed)
    seq = 0
    size = dict.fromkeys(bases, pupils)  # each base's remembered pupils (positions)
    everyone = encode_bits(bits_of(range(pupils)))
    for day in range(days + 1):
        slot = T0 + dt.timedelta(days=day)
        for t in range(tasks):
            task = f"changed-{t}"
            run = f"{task}/{slot:%Y%m%dT%H%M%SZ}"
            seq += 1
            yield RunStarted(seq, slot, run=run, task=task, slot=slot, bases=tuple(bases))
            for base in bases:
                seq += 1
                new: list[str] = []
                joined = left = ""
                if day == 0:
                    joined = everyone
                    if t == 0:
                        new = [f"{rng.getrandbits(256):064x}" for _ in range(pupils)]
                elif t == 0 and rng.random() < 0.2:  # a joiner, new to the base
                    new = [f"{rng.getrandbits(256):064x}"]
                    joined = encode_bits(1 << size[base])
                    size[base] += 1
                elif rng.random() < 0.05:  # somebody leaves this task's cohort
                    left = encode_bits(1 << rng.randrange(size[base]))
                yield TransferSucceeded(
                    seq, slot, run=run, task=task, base=base, direction="from-school",
                    data_type="changed", cohort_group="ncy", counts={"pupil": len(new) + 3},
                    watermark=f"{slot:%Y-%m-%dT%H:%M:%SZ}", pupils=tuple(new), joined=joined,
                    left=left, read=pupils,
                )  # fmt: skip
            seq += 1
            yield RunFinished(seq, slot, run=run, task=task, outcome="succeeded")


def open_and_replay(state_dir: Path) -> tuple[float, float]:
    """Wall and CPU seconds of opening the journal and replaying its state (CPU time is the
    steadier figure on a shared machine: the work is one thread's)."""
    start, cpu = time.perf_counter(), time.process_time()
    with Journal.open(state_dir) as journal:
        state = journal.state()
    elapsed, used = time.perf_counter() - start, time.process_time() - cpu
    assert state.holds_digests
    return elapsed, used


def status_mib(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


def daemon_memory(deployment: Deployment) -> tuple[float, dict[str, float]]:
    (deployment.root / "notify.sock").unlink(missing_ok=True)  # the previous daemon's
    daemon = DaemonProcess(deployment)
    try:
        ready = daemon.start(timeout=300)
        time.sleep(1.0)  # settled: the first config applied, the watcher running
        return ready, status_mib(daemon.pid)
    finally:
        daemon.stop()


def scenario(work: Path, bases: list[str], args: argparse.Namespace, days: int) -> Deployment:
    """Write the deployment and its journal; print its size."""
    deployment = Deployment(work)
    write_config(deployment, bases, args.tasks)
    records = journal_records(bases, args.pupils, args.tasks, days)
    count = write_bulk(deployment.state, records, DEFAULT_SEGMENT_BYTES)
    # The digests were made with a key: the daemon refuses a journal that holds digests
    # without it (never a silent new key).
    PupilKeyer(deployment.state).check()
    size = sum(p.stat().st_size for p in deployment.journal_dir.iterdir()) / 2**20
    then = f", then {days} daily runs of each" if days else " (each task's first runs)"
    print(f"\njournal: {count:,} records, {size:.0f} MiB: {len(bases)} bases x {args.pupils} "
          f"pupils remembered by {args.tasks} changed tasks{then}")  # fmt: skip
    return deployment


def measure_replay(deployment: Deployment, runs: int, label: str) -> None:
    times = [open_and_replay(deployment.state) for _ in range(runs)]
    median = statistics.median(wall for wall, _ in times)
    cpu = statistics.median(used for _, used in times)
    print(f"  open+replay{label}: median {median:.2f} s wall ({cpu:.2f} s CPU) of "
          f"{[round(wall, 2) for wall, _ in times]} (target {REPLAY_TARGET} s: "
          f"{median / REPLAY_TARGET:.2f}x wall, {cpu / REPLAY_TARGET:.2f}x CPU)")  # fmt: skip


def measure_daemon(deployment: Deployment, runs: int, label: str) -> None:
    readings = [daemon_memory(deployment) for _ in range(runs)]
    ready = statistics.median(r for r, _ in readings)
    rss = statistics.median(m["VmRSS"] for _, m in readings)
    peak = statistics.median(m["VmHWM"] for _, m in readings)
    print(f"  daemon{label}: ready in {ready:.2f} s, RSS {rss:.0f} MiB, peak {peak:.0f} MiB "
          f"(target {RSS_TARGET:.0f} MiB: {peak / RSS_TARGET:.2f}x)")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--bases", type=int, default=500)
    parser.add_argument("--pupils", type=int, default=2000)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="b2bd-bench-memory-", dir=args.dir))
    daemon_runs = max(1, args.runs // 2)
    try:
        bases = [f"881{4001 + n:04d}" for n in range(args.bases)]
        empty = Deployment(work / "empty")
        write_config(empty, bases, args.tasks)
        print(f"{args.bases} bases, {args.tasks} changed tasks over all of them")
        measure_daemon(empty, daemon_runs, ", empty journal (for comparison)")
        for days in sorted({0, args.days}):
            deployment = scenario(work / f"days-{days}", bases, args, days)
            measure_replay(deployment, args.runs, "")
            measure_daemon(deployment, daemon_runs, "")
            with Journal.open(deployment.state) as journal:
                journal.compact()
            size = sum(p.stat().st_size for p in deployment.journal_dir.iterdir()) / 2**20
            measure_replay(deployment, args.runs, f" after compact ({size:.0f} MiB on disk)")
            measure_daemon(deployment, daemon_runs, " after compact")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
