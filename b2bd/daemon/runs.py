"""Runs in flight: which (task, base) transfers are waiting, queued or running.

The daemon loop owns one :class:`Runs`. A run's transfers become *pending* with a due time
(slot + the base's stable jitter), are handed to the worker pool when due, and the run is
finished (``run-finished``) when its last transfer has an outcome. Per (task, base) at most one
transfer is outstanding: a new slot finds the pair *busy* and the task's ``overlap`` policy
either skips it or queues it behind the outstanding one.

A run may carry callbacks (a trigger through the control socket): ``on_progress`` gets the
engine's progress events of its transfers (on worker threads) and ``on_finished`` the run's
result once ``run-finished`` is journaled.

Transfers finish on worker threads; everything else here is called from the loop thread, except
:meth:`Runs.in_flight`, which a control-socket thread may call.
"""

from __future__ import annotations

import datetime as dt
import functools
import heapq
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Protocol

from b2bd.journal.entries import TransferOutcome
from b2bd.journal.reader import JournalError
from b2bd.log import get_logger
from b2bd.transfer.engine import JournalWriter, RunContext
from b2bd.transfer.results import (
    OnProgress,
    Progress,
    RunResult,
    TransferResult,
    run_outcome,
)

log = get_logger("b2bd.daemon")

Pair = tuple[str, str]  # (task id, base id)


OnFinished = Callable[[RunResult], object]


class RunEngine(Protocol):
    """What :class:`Runs` asks of the transfer engine (:class:`b2bd.transfer.engine.Engine`):
    to run, skip and journal transfers, to finish runs, and to freeze when the daemon gives up
    waiting for its workers."""

    @property
    def journal(self) -> JournalWriter: ...

    def run_transfer(
        self, context: RunContext, base_id: str, on_progress: OnProgress | None = None
    ) -> TransferResult:
        """On a worker: the transfer of ``base_id``, its outcome journaled."""
        ...

    def skip_transfer(self, context: RunContext, base_id: str, reason: str) -> TransferResult:
        """Journal the transfer as skipped, not run."""
        ...

    def finish_run(self, context: RunContext, results: Sequence[TransferResult]) -> RunResult:
        """Journal ``run-finished`` with the outcome of ``results`` (one per base, in order)."""
        ...

    def freeze(self) -> dict[tuple[str, str], TransferOutcome]:
        """Journal no more outcomes; those journaled so far, by (run, base)."""
        ...


class TransferWatch(Protocol):
    """Told when each transfer starts running on a worker and when it ends (the metrics)."""

    def began(self, task: str) -> None: ...

    def ended(self, task: str, seconds: float) -> None: ...


@dataclass
class _Run:
    context: RunContext
    outstanding: set[str]
    on_progress: OnProgress | None = None
    on_finished: OnFinished | None = None
    results: dict[str, TransferResult] = field(default_factory=dict)


@dataclass(order=True)
class _Pending:
    due: dt.datetime
    seq: int
    run: str = field(compare=False)
    base: str = field(compare=False)


class Runs:
    def __init__(
        self,
        engine: RunEngine,
        pool: Executor,
        wake: Callable[[], None],
        watch: TransferWatch | None = None,
    ) -> None:
        self._engine = engine
        self._watch = watch
        self._pool = pool
        self._wake = wake
        # Re-entrant: a transfer that is already done when its callback is added runs the
        # callback at once, on the thread that holds the lock.
        self._lock = threading.RLock()
        self._runs: dict[str, _Run] = {}
        self._busy: set[Pair] = set()  # pairs with an outstanding transfer (any state)
        self._pending: list[_Pending] = []  # heap: waiting for their (jittered) due time
        self._queued: dict[Pair, deque[tuple[str, str]]] = {}  # behind a busy pair
        self._running: dict[Pair, Future[TransferResult]] = {}
        self._seq = 0
        self._abandoned = False

    def busy(self, task_id: str, base_id: str) -> bool:
        with self._lock:
            return (task_id, base_id) in self._busy

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._runs)

    def running_pairs(self) -> int:
        with self._lock:
            return len(self._running)

    def holder(self, task_id: str, base_id: str) -> str | None:
        """The run whose transfer of (task, base) is outstanding (waiting or running), if any;
        runs queued behind it come after it."""
        with self._lock:
            for run_id, run in self._runs.items():
                if run.context.task.id == task_id and base_id in run.outstanding:
                    queued = self._queued.get((task_id, base_id), ())
                    if all(run_id != r for r, _ in queued):
                        return run_id
            return None

    def has_run(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._runs

    def in_flight(self) -> list[dict[str, object]]:
        """Runs not finished yet, each base ``waiting`` (for its due time), ``queued`` (behind
        another run's transfer of the pair), ``running`` or ``done``: for ``status``."""
        with self._lock:
            queued = {(run, base) for q in self._queued.values() for run, base in q}
            out: list[dict[str, object]] = []
            for run_id, run in self._runs.items():
                bases: dict[str, str] = {}
                for base in run.context.bases:
                    pair = (run.context.task.id, base)
                    if base in run.results:
                        bases[base] = "done"
                    elif (run_id, base) in queued:
                        bases[base] = "queued"
                    elif pair in self._running and base in run.outstanding:
                        bases[base] = "running"
                    else:
                        bases[base] = "waiting"
                out.append({"run": run_id, "task": run.context.task.id, "bases": bases})
            return out

    def next_due(self) -> dt.datetime | None:
        with self._lock:
            return self._pending[0].due if self._pending else None

    def add(
        self,
        context: RunContext,
        due: dict[str, dt.datetime],
        *,
        on_progress: OnProgress | None = None,
        on_finished: OnFinished | None = None,
    ) -> None:
        """Take over a started run: each base's transfer waits for ``due[base]``, or queues
        behind the pair's outstanding transfer."""
        with self._lock:
            run = _Run(context, set(context.bases), on_progress, on_finished)
            self._runs[context.run] = run
            for base_id in context.bases:
                pair = (context.task.id, base_id)
                if pair in self._busy:
                    self._queued.setdefault(pair, deque()).append((context.run, base_id))
                    continue
                self._busy.add(pair)
                self._seq += 1
                heapq.heappush(
                    self._pending, _Pending(due[base_id], self._seq, context.run, base_id)
                )

    def dispatch(self, now: dt.datetime) -> None:
        """Hand every transfer that is due to the pool."""
        with self._lock:
            while self._pending and self._pending[0].due <= now:
                item = heapq.heappop(self._pending)
                self._submit(item.run, item.base)

    def _submit(self, run_id: str, base_id: str) -> None:
        run = self._runs[run_id]
        pair = (run.context.task.id, base_id)
        progress = _logging_retries(run.context, run.on_progress)
        future = self._pool.submit(self._transfer, run.context, base_id, progress)
        self._running[pair] = future
        future.add_done_callback(functools.partial(self._done, run_id, base_id))

    def _transfer(
        self, context: RunContext, base_id: str, on_progress: OnProgress | None
    ) -> TransferResult:
        """On a worker: the engine's transfer, timed for the watch."""
        watch = self._watch
        if watch is None:
            return self._engine.run_transfer(context, base_id, on_progress)
        task = context.task.id
        began = time.monotonic()
        watch.began(task)
        try:
            return self._engine.run_transfer(context, base_id, on_progress)
        finally:
            watch.ended(task, time.monotonic() - began)

    def _done(self, run_id: str, base_id: str, future: Future[TransferResult]) -> None:
        finished: _Run | None = None
        with self._lock:
            if self._abandoned:
                return  # journaled as interrupted by abandon(); the worker ended too late
            run = self._runs[run_id]
            pair = (run.context.task.id, base_id)
            self._running.pop(pair, None)
            exc = future.exception()
            run.results[base_id] = (
                future.result()
                if exc is None
                else TransferResult(pair[0], base_id, "failed", reason="internal", message=str(exc))
            )
            _log_result(run.context.run, run.results[base_id])
            run.outstanding.discard(base_id)
            queue = self._queued.get(pair)
            if queue:
                next_run, next_base = queue.popleft()
                if not queue:
                    del self._queued[pair]
                self._submit(next_run, next_base)
            else:
                self._busy.discard(pair)
            if not run.outstanding:
                finished = self._runs.pop(run_id)
        if finished is not None:
            self._finish(finished)
        self._wake()

    def _finish(self, run: _Run) -> None:
        try:
            result = self._engine.finish_run(
                run.context, [run.results[b] for b in run.context.bases]
            )
        except JournalError:
            return  # the journal failed: the loop sees it (journal.failed), reports and stops
        _log_at(LEVEL[result.outcome], "run-finished", run=result.run, outcome=result.outcome)
        if run.on_finished is not None:
            run.on_finished(result)

    def abandon(self, message: str) -> int:
        """The grace period is over: take no more outcomes from workers (the engine journals
        none), journal every transfer still running as failed with ``message`` and finish its
        run. Returns how many transfers were abandoned (their threads may still be running:
        stuck in a read the OS does not interrupt)."""
        with self._lock:
            self._abandoned = True
            journaled = self._engine.freeze()
            runs = list(self._runs.values())
            self._runs.clear()
        abandoned = 0
        journal = self._engine.journal
        for run in runs:
            context = run.context
            results = dict(run.results)
            for base_id in sorted(run.outstanding):
                done = journaled.get((context.run, base_id))
                if done is not None:  # journaled; its worker's callback came too late
                    results[base_id] = TransferResult(context.task.id, base_id, done)
                    continue
                journal.append("transfer-failed", run=context.run, task=context.task.id,
                               base=base_id, reason="internal", message=message,
                               attempts=1)  # fmt: skip
                log.error("transfer-failed", run=context.run, base=base_id, reason="internal",
                          message=message)  # fmt: skip
                results[base_id] = TransferResult(context.task.id, base_id, "failed",
                                                  attempts=1, reason="internal",
                                                  message=message)  # fmt: skip
                abandoned += 1
            ordered = tuple(results[b] for b in context.bases if b in results)
            outcome = run_outcome(ordered)
            journal.append("run-finished", run=context.run, task=context.task.id,
                           outcome=outcome)  # fmt: skip
            _log_at(LEVEL[outcome], "run-finished", run=context.run, outcome=outcome)
            if run.on_finished is not None:  # a trigger through the control socket: answer it
                run.on_finished(RunResult(context.run, context.task.id, context.slot,
                                          context.manual, outcome, ordered))  # fmt: skip
        return abandoned

    def drop_waiting(self, reason: str, task_id: str | None = None) -> None:
        """Skip transfers not yet handed to the pool (all, or one task's): stopping, or the
        task was removed. Running transfers are left to finish."""
        skipped: list[tuple[str, str]] = []
        with self._lock:
            keep: list[_Pending] = []
            for item in self._pending:
                if task_id is None or self._runs[item.run].context.task.id == task_id:
                    skipped.append((item.run, item.base))
                else:
                    keep.append(item)
            self._pending = keep
            heapq.heapify(self._pending)
            for pair in list(self._queued):
                if task_id is None or pair[0] == task_id:
                    skipped.extend(self._queued.pop(pair))
        for run_id, base_id in skipped:
            self._skip(run_id, base_id, reason)

    def _skip(self, run_id: str, base_id: str, reason: str) -> None:
        run = self._runs[run_id]
        result = self._engine.skip_transfer(run.context, base_id, reason)
        finished: _Run | None = None
        with self._lock:
            run.results[base_id] = result
            run.outstanding.discard(base_id)
            pair = (run.context.task.id, base_id)
            if pair not in self._running:
                self._busy.discard(pair)
            if not run.outstanding:
                finished = self._runs.pop(run_id)
        if finished is not None:
            self._finish(finished)


LEVEL: dict[str, str] = {
    "succeeded": "info",
    "skipped": "warning",
    "partial": "warning",
    "failed": "error",
}
"""The log level of a transfer or run outcome: ``journalctl -p warning`` shows every run that
did not fully succeed, ``-p err`` every failure."""


def _log_at(level: str, event: str, **fields: object) -> None:
    getattr(log, level)(event, **fields)


def _logging_retries(context: RunContext, forward: OnProgress | None) -> OnProgress:
    """The progress callback of a transfer: each retry logged at warning level (which attempt
    failed, the wait before the next, the reason class: never the failure's message, which
    may quote what a school sent), then ``forward`` (a control-socket trigger's) if any."""

    def progress(event: Progress) -> None:
        if event.event == "retry":
            log.warning("transfer-retry", run=event.run, task=context.task.id, base=event.base,
                        attempt=event.attempt, wait=event.wait, reason=event.reason)  # fmt: skip
        if forward is not None:
            forward(event)

    return progress


def _log_result(run: str, result: TransferResult) -> None:
    """One line per transfer: counts and where it went, or why not (never pupil data)."""
    if result.outcome == "succeeded":
        log.info("transfer-succeeded", run=run, base=result.base, records=result.records,
                 rejected=result.rejected, delivery=str(result.delivery))  # fmt: skip
    else:
        _log_at(LEVEL[result.outcome], f"transfer-{result.outcome}", run=run, base=result.base,
                reason=result.reason, message=result.message)  # fmt: skip
