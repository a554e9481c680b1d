"""Runs as the journal tells them: a pure fold of records into one entry per run, and what of
the journal compaction keeps as history.

A run is known from its ``run-started`` record; the transfer records and ``run-finished`` with the
same run id fill it in. Records for a run whose start is not in the records given (it fell out of
the kept history) are ignored. Runs come out newest first (by their ``run-started`` position).

History kept across compaction (DESIGN section 7): :class:`HistoryKeeper` chooses, from the
records a compaction drops, the runs started at or after a cutoff (``run-started``, its
transfers' outcomes, ``run-finished``) and the slots missed or skipped since then; a
``transfer-succeeded`` loses its pupil digests and cohort-memory changes (``joined``/``left``: the
checkpoint holds the memories they built, and alone they mean nothing). Ids,
times, counts, reasons and messages stay, so ``history`` reads the same before and after.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from b2bd.config.model import DEFAULT_HISTORY_DAYS
from b2bd.journal.entries import (
    Entry,
    RunFinished,
    RunStarted,
    SlotMissed,
    SlotSkipped,
    TransferFailed,
    TransferSkipped,
    TransferSucceeded,
)

__all__ = ["DEFAULT_HISTORY_DAYS", "HistoryKeeper", "RunHistory", "TransferResult", "run_history"]


@dataclass(frozen=True)
class TransferResult:
    """One base's outcome within a run."""

    base: str
    outcome: str
    when: dt.datetime
    reason: str | None = None
    message: str | None = None
    attempts: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    missing: int = 0


@dataclass
class RunHistory:
    """One run: ``outcome`` is None while it has no ``run-finished`` (in progress, or cut short
    by a crash)."""

    run: str
    task: str
    slot: dt.datetime
    manual: bool
    bases: tuple[str, ...]
    started: dt.datetime
    seq: int
    outcome: str | None = None
    finished: dt.datetime | None = None
    transfers: dict[str, TransferResult] = field(default_factory=dict)


def _result(record: Entry) -> TransferResult | None:
    if isinstance(record, TransferSucceeded):
        return TransferResult(
            record.base,
            "succeeded",
            record.ts,
            counts=dict(record.counts),
            rejected=record.rejected,
            missing=record.missing,
        )
    if isinstance(record, TransferFailed):
        return TransferResult(
            record.base, "failed", record.ts, record.reason, record.message, record.attempts
        )
    if isinstance(record, TransferSkipped):
        return TransferResult(record.base, "skipped", record.ts, record.reason)
    return None


def run_history(
    records: Iterable[Entry], task: str | None = None, limit: int | None = None
) -> list[RunHistory]:
    """The runs in ``records`` (only ``task``'s if given), newest first, at most ``limit``."""
    runs: dict[str, RunHistory] = {}
    for record in records:
        if isinstance(record, RunStarted):
            if task is None or record.task == task:
                runs[record.run] = RunHistory(
                    record.run,
                    record.task,
                    record.slot,
                    record.manual,
                    record.bases,
                    record.ts,
                    record.seq,
                )
        elif isinstance(record, RunFinished):
            entry = runs.get(record.run)
            if entry is not None:
                entry.outcome = record.outcome
                entry.finished = record.ts
        elif isinstance(record, TransferSucceeded | TransferFailed | TransferSkipped):
            result = _result(record)
            entry = runs.get(record.run)
            if entry is not None and result is not None:
                entry.transfers[result.base] = result
    newest = sorted(runs.values(), key=lambda r: r.seq, reverse=True)
    return newest if limit is None else newest[:limit]


class HistoryKeeper:
    """Chooses the records compaction keeps as history; feed it records in journal order.

    Pure and stateful: it remembers the runs it kept, so a run's outcomes are kept exactly when
    its start is.
    """

    def __init__(self, cutoff: dt.datetime) -> None:
        self.cutoff = cutoff
        self._runs: set[str] = set()

    def keep(self, record: Entry) -> Entry | None:
        """The record as history keeps it, or None when history drops it."""
        if isinstance(record, RunStarted):
            if record.ts < self.cutoff:
                return None
            self._runs.add(record.run)
            return record
        if isinstance(record, TransferSucceeded):
            if record.run not in self._runs:
                return None
            if record.pupils or record.joined or record.left:  # the checkpoint holds them
                return msgspec.structs.replace(record, pupils=(), joined="", left="")
            return record
        if isinstance(record, RunFinished | TransferFailed | TransferSkipped):
            return record if record.run in self._runs else None
        if isinstance(record, SlotMissed | SlotSkipped):
            return record if record.ts >= self.cutoff else None
        return None
