"""What a transfer run comes to: each base's :class:`TransferResult`, the run's
:class:`RunResult` and outcome, and the :class:`Progress` events of a run under way. Plain values
and the rule that folds outcomes into the run's (:func:`outcome_of`); the engine makes them, the
daemon, ``b2bd trigger`` and :mod:`b2bd.transfer.manual` read them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from b2bd.journal.entries import RunOutcome, TransferOutcome


@dataclass(frozen=True)
class TransferResult:
    """One base's outcome in a run. ``delivery`` is the data file written (None unless
    succeeded); ``reason``/``message`` explain a failure or skip."""

    task: str
    base: str
    outcome: TransferOutcome
    attempts: int = 0
    reason: str | None = None
    message: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    read: int = 0
    missing: int = 0
    watermark: str | None = None
    delivery: Path | None = None
    joined: int = 0  # pupils sent for joining the task's cohort (changed data)
    left: int = 0  # remembered pupils sent once for leaving it

    @property
    def records(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class RunResult:
    """A finished run; ``day`` is its reference date D (``as_of``: given by the trigger)."""

    run: str
    task: str
    slot: dt.datetime
    manual: bool
    outcome: RunOutcome
    transfers: tuple[TransferResult, ...]
    day: dt.date | None = None
    as_of: bool = False


@dataclass(frozen=True)
class Progress:
    """A progress event: ``event`` is ``started``, ``records`` (``records`` read so far),
    ``retry`` (attempt ``attempt`` failed for ``reason``/``message``; the next starts after
    ``wait`` seconds) or ``finished`` (with ``result``). Delivered from worker threads."""

    run: str
    base: str
    event: Literal["started", "records", "retry", "finished"]
    records: int = 0
    result: TransferResult | None = None
    attempt: int = 0
    wait: float = 0.0
    reason: str | None = None
    message: str = ""


OnProgress = Callable[[Progress], None]


def run_outcome(results: Iterable[TransferResult]) -> RunOutcome:
    return outcome_of(r.outcome for r in results)


def outcome_of(outcomes: Iterable[str]) -> RunOutcome:
    """``succeeded`` when every transfer that ran succeeded (skipped ones do not count, and a
    run with nothing to do has failed nothing), ``failed`` when none did, else ``partial``."""
    ran = [o for o in outcomes if o != "skipped"]
    if all(o == "succeeded" for o in ran):
        return "succeeded"
    if any(o == "succeeded" for o in ran):
        return "partial"
    return "failed"
