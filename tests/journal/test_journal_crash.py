"""Crash tests: SIGKILL during appends loses no acknowledged record (the rounds themselves are
:mod:`tests.support.crash_rounds`, shared with bench/journal.py); a failed write stops appends."""

from __future__ import annotations

import datetime as dt
import os
import resource
import signal

import pytest

from b2bd.journal.entries import SlotMissed
from b2bd.journal.writer import Journal, JournalFailed
from tests.support.crash_rounds import crash_rounds

T0 = dt.datetime(2025, 9, 1, 6, 0, tzinfo=dt.UTC)


def test_acknowledged_records_survive_sigkill_50_rounds(tmp_path):
    acked = crash_rounds(tmp_path, rounds=50, seed=4)
    assert acked > 50  # the child did get records acknowledged before being killed


@pytest.mark.soak
def test_acknowledged_records_survive_sigkill_500_rounds(tmp_path):
    crash_rounds(tmp_path, rounds=500, seed=44)


def test_a_failed_write_stops_appends_and_loses_nothing_acknowledged(tmp_path):
    """A child whose file-size limit makes a write fail: that append and every later one raise
    JournalFailed (never a silent success), and the journal reopens with every acknowledged
    record."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child never returns)
        os.close(read_fd)
        code = 1
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
            journal = Journal.open(tmp_path, segment_bytes=1 << 20)
            resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))
            failures = 0
            for i in range(100):
                try:
                    record = journal.append("slot-missed", task=f"t{i}", slot=T0)
                except JournalFailed:
                    failures += 1
                    continue
                if failures:
                    raise AssertionError("an append succeeded after a failed one")
                os.write(write_fd, f"{record.seq} t{i}\n".encode())
            code = 0 if failures else 2
        finally:
            os._exit(code)
    os.close(write_fd)
    _, status = os.waitpid(pid, 0)
    acked = os.read(read_fd, 1 << 20).decode().split()
    os.close(read_fd)
    assert os.waitstatus_to_exitcode(status) == 0
    with Journal.open(tmp_path) as journal:
        found = {r.task: r.seq for r in journal.entries() if isinstance(r, SlotMissed)}
    pairs = dict(zip(acked[1::2], map(int, acked[0::2]), strict=True))
    assert pairs and all(found.get(task) == seq for task, seq in pairs.items())
