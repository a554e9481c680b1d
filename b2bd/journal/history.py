"""Runs as the journal tells them: a pure fold of records into one entry per run.

A run is known from its ``run-started`` record; the transfer records and ``run-finished`` with the
same run id fill it in. Records for a run whose start is not in the records given (it was
compacted away) are ignored. Runs come out newest first (by their ``run-started`` position).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from b2bd.journal.records import (
    Record,
    RunFinished,
    RunStarted,
    TransferFailed,
    TransferSkipped,
    TransferSucceeded,
)


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


def _result(record: Record) -> TransferResult | None:
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
    records: Iterable[Record], task: str | None = None, limit: int | None = None
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
        elif (result := _result(record)) is not None:
            entry = runs.get(record.run)  # type: ignore[attr-defined]
            if entry is not None:
                entry.transfers[result.base] = result
    newest = sorted(runs.values(), key=lambda r: r.seq, reverse=True)
    return newest if limit is None else newest[:limit]
