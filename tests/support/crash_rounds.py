"""Crash rounds: a child process appends to a journal from several threads and reports every
acknowledged record on a pipe; the parent kills it with SIGKILL at a random moment, reopens the
journal and checks that every acknowledged record is there exactly once, at the sequence number
it was given. Used by tests/journal/test_journal_crash.py and bench/journal.py (more rounds).

The child is forked (the real thing: a separate process killed by the kernel, not an exception)
so each round costs milliseconds rather than an interpreter start-up. Segments are tiny so kills
also land during rotation, sealing and start-up recovery.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import random
import signal
import threading
import time
from pathlib import Path

from b2bd.journal.entries import SlotMissed
from b2bd.journal.writer import Journal

T0 = dt.datetime(2025, 9, 1, 6, 0, tzinfo=dt.UTC)
WRITERS = 4


def _child(state: Path, ack_fd: int, round_no: int) -> None:
    try:
        journal = Journal.open(state, segment_bytes=1500)

        def writer(w: int) -> None:
            for i in range(1_000_000):
                token = f"r{round_no}w{w}i{i}"
                record = journal.append("slot-missed", task=token, slot=T0)
                os.write(ack_fd, f"{record.seq} {token}\n".encode())  # < PIPE_BUF: atomic

        threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(WRITERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        os._exit(0)


def _round(state: Path, round_no: int, rng: random.Random) -> list[tuple[int, str]]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child never returns)
        os.close(read_fd)
        _child(state, write_fd, round_no)
    os.close(write_fd)
    chunks: list[bytes] = []
    if round_no % 2:
        # Every other round the crash comes after the first acknowledgement, so rounds keep
        # acknowledging records however slowly a loaded machine starts the child; the others
        # may kill it during start-up recovery.
        while (chunk := os.read(read_fd, 65536)) and b"\n" not in b"".join([*chunks, chunk]):
            chunks.append(chunk)
        chunks.append(chunk)
    time.sleep(rng.uniform(0.0, 0.03))  # the random moment of the crash
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    acked = []
    for line in b"".join(chunks).decode().splitlines():
        seq, token = line.split()
        acked.append((int(seq), token))
    return acked


def crash_rounds(state: Path, rounds: int, seed: int) -> int:
    """Run ``rounds`` crash rounds on the journal in ``state``; the number of records that
    were acknowledged (and then found, each once, where they were acknowledged). Raises
    AssertionError at the first round that lost, moved or doubled one."""
    rng = random.Random(seed)
    all_acked: dict[str, int] = {}
    for round_no in range(rounds):
        all_acked.update((token, seq) for seq, token in _round(state, round_no, rng))
        with Journal.open(state) as journal:  # recovery; raises if it cannot
            records = list(journal.entries())
        assert [r.seq for r in records] == list(range(1, len(records) + 1))
        seen = collections.Counter(r.task for r in records if isinstance(r, SlotMissed))
        assert max(seen.values(), default=1) == 1, "a record appears twice"
        at = {r.task: r.seq for r in records if isinstance(r, SlotMissed)}
        lost = {t: s for t, s in all_acked.items() if at.get(t) != s}
        assert not lost, f"round {round_no}: acknowledged records lost or moved: {lost}"
    return len(all_acked)
