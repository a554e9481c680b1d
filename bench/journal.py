"""Journal benchmark: durable append rates against the disk's raw write+fsync rate, and replay
time for 1,000,000 records with and without a checkpoint.

    .venv/bin/python bench/journal.py [--records 1000000] [--runs 3] [--seconds 2] [--dir DIR]
                                      [--crash-rounds 300] [--skip-appends]

Targets (DESIGN section 9): one fsync per record >= 80 % of the raw rate; group commit with 16
writers >= 10x the one-fsync rate; replay of 1M records <= 3 s. Every figure is the median of
``--runs`` runs. The raw rate is measured on the same file system with the same sync call the
journal uses (``fdatasync`` for appends), writing records of the same size. The group-commit
figure is printed beside the bare thread hand-off it is built on (16 threads passing a leader
role and waking each other with no journal work), which bounds it under CPython's GIL. It ends
with the SIGKILL crash loop of the tests (tests/support/crash_rounds.py) run for more rounds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests.support

from b2bd.journal.entries import Entry, RunFinished, RunStarted, TransferSucceeded
from b2bd.journal.reader import JOURNAL_DIR, SEAL_SUFFIX, frame, seal_bytes, segment_name
from b2bd.journal.state import replay
from b2bd.journal.writer import Journal
from tests.support.crash_rounds import crash_rounds

T0 = dt.datetime(2025, 9, 1, 6, 0, tzinfo=dt.UTC)
FIELDS: dict[str, Any] = {
    "run": "census-changed/20250901T060000Z",
    "task": "census-changed",
    "base": "8814001",
    "direction": "from-school",
    "data_type": "changed",
    "cohort_group": "ncy",
    "counts": {"pupil": 212, "deletion": 1},
    "rejected": 0,
    "missing": 0,
    "watermark": "2025-09-01T05:59:12Z",
}


def median_of(runs: int, fn: Callable[[], float]) -> float:
    """The median of ``runs`` calls of ``fn``."""
    return statistics.median(fn() for _ in range(runs))


def raw_rate(directory: Path, line: bytes, seconds: float) -> float:
    path = directory / "raw.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
    try:
        n = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            os.write(fd, line)
            os.fdatasync(fd)
            n += 1
    finally:
        os.close(fd)
        path.unlink()
    return n / elapsed


def append_rate(directory: Path, writers: int, seconds: float) -> float:
    state = Path(tempfile.mkdtemp(dir=directory))
    journal = Journal.open(state)
    counts = [0] * writers
    stop = threading.Event()

    def writer(i: int) -> None:
        while not stop.is_set():
            journal.append("transfer-succeeded", **FIELDS)
            counts[i] += 1

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    journal.close()
    return sum(counts) / elapsed


class _Hand:
    __slots__ = ("lead", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.lead = False


def handoff_ceiling(directory: Path, line: bytes, writers: int, seconds: float) -> float:
    """The group-commit hand-off alone: ``writers`` threads, one leader writing and syncing the
    batch while the others wait on their own lock, with no record building, framing or
    bookkeeping. What CPython threads allow on this machine, to read the journal's figure by."""
    path = directory / "handoff.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
    lock = threading.Lock()
    pending: list[_Hand] = []
    busy = [False]
    counts = [0] * writers
    stop = threading.Event()

    def append() -> None:
        me = _Hand()
        with lock:
            pending.append(me)
            lead = not busy[0]
            busy[0] = True
        if not lead:
            me.lock.acquire()
            if not me.lead:
                return
        with lock:
            batch = pending[:]
            pending.clear()
        os.write(fd, line * len(batch))
        os.fdatasync(fd)
        with lock:
            successor = pending[0] if pending else None
            if successor is None:
                busy[0] = False
        if successor is not None:
            successor.lead = True
            successor.lock.release()
        for hand in batch:
            if hand is not me:
                hand.lock.release()

    def writer(i: int) -> None:
        while not stop.is_set():
            append()
            counts[i] += 1

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    os.close(fd)
    path.unlink()
    return sum(counts) / elapsed


def history(n: int, tasks: int = 40, bases: int = 25) -> Iterator[Entry]:
    """A plausible journal: runs of ``tasks`` tasks over ``bases`` bases each, every transfer
    carrying a few new pupil digests (the leavers memory grows)."""
    seq = 0
    slot = T0
    while True:
        for t in range(tasks):
            task = f"task-{t:03d}"
            run = f"{task}/{slot:%Y%m%dT%H%M%SZ}"
            base_ids = [f"881{4000 + b:04d}" for b in range(bases)]
            seq += 1
            yield RunStarted(seq, slot, run=run, task=task, slot=slot, bases=tuple(base_ids))
            for b, base in enumerate(base_ids):
                seq += 1
                fields = dict(FIELDS, run=run, task=task, base=base)
                pupils = [f"{(seq * 7 + k) % 2**256:064x}" for k in range(b % 3)]
                yield TransferSucceeded(seq, slot, **fields, pupils=tuple(pupils))
            seq += 1
            yield RunFinished(seq, slot, run=run, task=task, outcome="succeeded")
            if seq >= n:
                return
        slot += dt.timedelta(hours=1)


def write_bulk(state_dir: Path, records: Iterator[Entry], segment_bytes: int) -> int:
    """Write records straight into segments with the journal's framing and seals (what the
    journal writes when it rotates), without fsync."""
    directory = state_dir / JOURNAL_DIR
    directory.mkdir(parents=True)
    chunk: list[bytes] = []
    size = 0
    first = 1
    count = 0
    for record in records:
        line = frame(record)
        chunk.append(line)
        size += len(line)
        count += 1
        if size >= segment_bytes:
            data = b"".join(chunk)
            (directory / segment_name(first)).write_bytes(data)
            (directory / (segment_name(first) + SEAL_SUFFIX)).write_bytes(seal_bytes(data))
            first = record.seq + 1
            chunk, size = [], 0
    if chunk:
        (directory / segment_name(first)).write_bytes(b"".join(chunk))
    return count


def replay_time(state_dir: Path, cpu: list[float]) -> float:
    """Wall time of opening the journal (recovery checks included) and replaying it into the
    state, as the daemon does at start-up; the process CPU time is appended to ``cpu``."""
    start, start_cpu = time.perf_counter(), time.process_time()
    with Journal.open(state_dir) as journal:
        journal.state()
    cpu.append(time.process_time() - start_cpu)
    return time.perf_counter() - start


def full_replay_time(state_dir: Path) -> float:
    """The same through ``replay(journal.entries())``: every field of every record decoded."""
    start = time.perf_counter()
    with Journal.open(state_dir) as journal:
        replay(journal.entries())
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: /tmp)")
    parser.add_argument("--skip-appends", action="store_true")
    parser.add_argument(
        "--crash-rounds", type=int, default=300, metavar="N", help="SIGKILL rounds (0: none)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, dir {root}")
        if not args.skip_appends:
            sample = frame(TransferSucceeded(1, T0, **FIELDS))
            raws, ones, groups, hands = [], [], [], []
            for _ in range(args.runs):  # interleaved, so a slow spell of the disk hits all
                raws.append(raw_rate(root, sample, args.seconds))
                ones.append(append_rate(root, 1, args.seconds))
                groups.append(append_rate(root, 16, args.seconds))
                hands.append(handoff_ceiling(root, sample, 16, args.seconds))
            raw, one, group, hand = map(statistics.median, (raws, ones, groups, hands))
            print(f"raw write+fdatasync ({len(sample)} B):  {raw:10,.0f} /s")
            print(
                f"journal, 1 writer (1 fsync/record): {one:10,.0f} /s  "
                f"= {one / raw:6.1%} of raw (target >= 80 %)"
            )
            print(
                f"journal, 16 writers (group commit): {group:10,.0f} /s  "
                f"= {group / one:5.1f}x one-fsync (target >= 10x; >= 2,000/s)"
            )
            print(
                f"  bare 16-thread hand-off, no journal work: {hand:10,.0f} /s  "
                f"(journal at {group / hand:.0%} of it; {hand / one:.1f}x one-fsync)"
            )
        full = root / "full"
        t = time.perf_counter()
        n = write_bulk(full, history(args.records), 16 * 1024 * 1024)
        size = sum(p.stat().st_size for p in (full / JOURNAL_DIR).iterdir())
        print(f"wrote {n:,} records ({size / 1e6:,.0f} MB) in {time.perf_counter() - t:.1f} s")
        cpu: list[float] = []
        without = median_of(args.runs, lambda: replay_time(full, cpu))
        print(
            f"open + replay {n:,} records, no checkpoint: {without:6.2f} s "
            f"(CPU {statistics.median(cpu):.2f} s; target <= 3 s)"
        )
        every = median_of(args.runs, lambda: full_replay_time(full))
        print(f"  same via replay(journal.entries()), all fields decoded: {every:6.2f} s")
        with Journal.open(full) as journal:
            compaction = journal.compact()
            for record in history(1000):  # some history after the checkpoint
                fields = {k: getattr(record, k) for k in record.__struct_fields__}
                del fields["seq"], fields["ts"]
                journal.append(record.type, **fields)
        print(f"compacted: {len(compaction.removed)} segments removed")
        cpu = []
        with_cp = median_of(args.runs, lambda: replay_time(full, cpu))
        print(
            f"open + replay after checkpoint (+1,000 records): {with_cp:6.2f} s "
            f"(CPU {statistics.median(cpu):.2f} s)"
        )
        if args.crash_rounds:
            t = time.perf_counter()
            acked = crash_rounds(root / "crash", args.crash_rounds, seed=int(time.time()))
            print(
                f"SIGKILL crash loop: {args.crash_rounds} rounds, {acked:,} acknowledged records, "
                f"all present exactly once ({time.perf_counter() - t:.1f} s)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
