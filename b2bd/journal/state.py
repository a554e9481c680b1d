"""The daemon's state as a pure replay of journal records.

``replay(records) -> State`` reads nothing but its argument. What each record type does:

- ``run-started``: the run is in progress and is the task's last run; unless ``manual``, its slot
  is the task's last slot started (the latest one, never moving back); if ``manual``, its name
  may be the task's latest manual name (:mod:`b2bd.run_names`: a new one comes after it).
- ``run-finished``: the run is no longer in progress; if it is the task's last run, that run
  gets its outcome and end time.
- ``transfer-succeeded`` / ``-failed`` / ``-skipped``: the latest outcome of (task, base), with the
  failure's reason class and message. Only ``transfer-succeeded`` touches the last success of
  (task, base), the watermark (set to the record's watermark; a ``null`` watermark keeps the
  previous one) and the base's pupil memories (:mod:`b2bd.journal.memory`: its ``pupils``
  digests join the leavers memory, which nothing ever shrinks; its ``joined``/``left`` change
  the task's cohort memory).
- ``slot-missed``, ``slot-skipped`` and ``run-started`` (not manual) move the task's last slot
  decided: catch-up after a restart starts after it, so a missed slot is journaled once.
- ``config-rejected``: its problems are the config problems in force. ``config-applied``
  records what is in force and replaces the problems with its own ``problems`` field (empty
  clears them): a daemon applying part of a config and keeping the rest rejected writes
  ``config-applied`` first, then ``config-rejected``, or puts the problems on ``config-applied``.
  It also says which tasks are *running* here (its ``tasks`` less its ``idle`` ones; a record
  without ``idle`` runs them all): a task running that the previous ``config-applied`` did not
  run (added, added again, resumed, or given a base of this shard) has been running since this
  record's time; a task running in both keeps the time it had (unknown in a checkpoint written
  before it was kept). The daemon counts the task's slots from there (``running_since``), as it
  did when it applied that config: the slots while it was away or idle are not missed.
- ``checkpoint``: the state is replaced by the one it carries (which was the replay of every
  record before it, so replaying from the start or from the checkpoint gives the same state).
- ``journal-repaired``: a repair to show until acknowledged; ``repairs-acknowledged`` drops the
  repairs up to its ``up_to`` sequence number.
- ``daemon-started``, ``daemon-stopped``: no state.

A run started and never finished (the daemon died) stays in ``runs_in_progress`` until a
``run-finished`` closes it; the daemon decides what to do about it at start-up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from b2bd import run_names
from b2bd.journal.entries import (
    AppliedConfig,
    Checkpoint,
    ConfigApplied,
    ConfigProblem,
    ConfigRejected,
    DaemonStarted,
    DaemonStopped,
    Entry,
    JournalRepaired,
    LastRun,
    LastSuccess,
    Outcome,
    OutcomeEntry,
    Repair,
    RepairsAcknowledged,
    RunFinished,
    RunInProgress,
    RunStarted,
    SlotMissed,
    SlotSkipped,
    StateSnapshot,
    SuccessEntry,
    TransferFailed,
    TransferOutcome,
    TransferSkipped,
    TransferSucceeded,
    TransferSucceededBrief,
    WatermarkEntry,
)
from b2bd.journal.memory import BaseMemory, keys_of, keys_of_json

TaskBase = tuple[str, str]


@dataclass(frozen=True)
class State:
    """Everything the daemon knows from its journal (see the module docstring)."""

    last_slot_started: Mapping[str, dt.datetime] = field(default_factory=dict)
    last_slot_decided: Mapping[str, dt.datetime] = field(default_factory=dict)
    last_run: Mapping[str, LastRun] = field(default_factory=dict)
    last_outcome: Mapping[TaskBase, Outcome] = field(default_factory=dict)
    watermark: Mapping[TaskBase, str | None] = field(default_factory=dict)
    memory: Mapping[str, BaseMemory] = field(default_factory=dict)
    rejected_config: tuple[ConfigProblem, ...] = ()
    applied_config: AppliedConfig | None = None
    runs_in_progress: Mapping[str, RunInProgress] = field(default_factory=dict)
    last_success: Mapping[TaskBase, LastSuccess] = field(default_factory=dict)
    repairs: tuple[Repair, ...] = ()
    last_manual: Mapping[str, str] = field(default_factory=dict)
    running_since: Mapping[str, dt.datetime] = field(default_factory=dict)
    """When each task the latest ``config-applied`` runs came into force here, where known."""

    @property
    def holds_digests(self) -> bool:
        """Whether any pupil digest is remembered: from then on the key file must never be
        silently re-created (:class:`b2bd.journal.keys.PupilKeyer` ``create=False``)."""
        return any(len(m.keys) for m in self.memory.values())

    def failing(self, task: str) -> dict[str, Outcome]:
        """The task's bases whose latest transfer failed, by base id."""
        return {
            base: outcome
            for (t, base), outcome in sorted(self.last_outcome.items())
            if t == task and outcome.outcome == "failed"
        }


class _Replay:
    """Mutable working copy of a State while records are applied (fast: plain dicts and sets)."""

    __slots__ = (
        "applied",
        "decided",
        "in_progress",
        "last_manual",
        "last_run",
        "memory",
        "outcome",
        "rejected",
        "repairs",
        "running_since",
        "started",
        "success",
        "watermark",
    )

    def __init__(self, state: State, *, copy: bool = True) -> None:
        self.started = dict(state.last_slot_started)
        self.decided = dict(state.last_slot_decided)
        self.last_run = dict(state.last_run)
        self.outcome = dict(state.last_outcome)
        self.watermark = dict(state.watermark)
        # The memories are changed in place: a state given in is copied, unless it is
        # this replay's own (a checkpoint's).
        self.memory = {b: m.copy() if copy else m for b, m in state.memory.items()}
        self.rejected = state.rejected_config
        self.applied = state.applied_config
        self.in_progress = dict(state.runs_in_progress)
        self.success = dict(state.last_success)
        self.repairs = state.repairs
        self.last_manual = dict(state.last_manual)
        self.running_since = dict(state.running_since)

    def state(self) -> State:
        return State(
            last_slot_started=self.started,
            last_slot_decided=self.decided,
            last_run=self.last_run,
            last_outcome=self.outcome,
            watermark=self.watermark,
            memory=self.memory,
            rejected_config=self.rejected,
            applied_config=self.applied,
            runs_in_progress=self.in_progress,
            last_success=self.success,
            repairs=self.repairs,
            last_manual=self.last_manual,
            running_since=self.running_since,
        )

    def _decided(self, task: str, slot: dt.datetime) -> None:
        old = self.decided.get(task)
        if old is None or slot > old:
            self.decided[task] = slot

    def run_started(self, r: RunStarted) -> None:
        self.in_progress[r.run] = RunInProgress(r.run, r.task, r.slot, r.manual, r.bases, r.ts)
        self.last_run[r.task] = LastRun(r.run, r.ts)
        if not r.manual:
            old = self.started.get(r.task)
            if old is None or r.slot > old:
                self.started[r.task] = r.slot
            self._decided(r.task, r.slot)
        else:
            name = r.run.partition("/")[2]
            self.last_manual[r.task] = run_names.later(self.last_manual.get(r.task), name)

    def run_finished(self, r: RunFinished) -> None:
        self.in_progress.pop(r.run, None)
        last = self.last_run.get(r.task)
        if last is None or last.run == r.run:
            started = last.started if last is not None else None
            self.last_run[r.task] = LastRun(r.run, started, r.outcome, r.ts)

    def _run_outcome(self, run: str, base: str, outcome: TransferOutcome) -> None:
        """Note a transfer's outcome on its run while that run is in progress."""
        started = self.in_progress.get(run)
        if started is not None:
            self.in_progress[run] = msgspec.structs.replace(
                started, outcomes=(*started.outcomes, (base, outcome))
            )

    def succeeded(self, r: TransferSucceeded | TransferSucceededBrief) -> None:
        key = (r.task, r.base)
        self.outcome[key] = Outcome("succeeded", r.ts, r.run)
        self._run_outcome(r.run, r.base, "succeeded")
        self.success[key] = LastSuccess(r.run, r.ts)
        if r.watermark is not None or key not in self.watermark:
            self.watermark[key] = r.watermark
        pupils = r.pupils
        # Most transfers bring nobody new (a brief record's pupils are raw JSON: "[]").
        if len(pupils) > (2 if isinstance(pupils, msgspec.Raw) else 0) or r.joined or r.left:
            keys = keys_of_json(pupils) if isinstance(pupils, msgspec.Raw) else keys_of(pupils)
            memory = self.memory.get(r.base)
            if memory is None:
                memory = self.memory[r.base] = BaseMemory()
            memory.apply(r.task, keys, r.joined, r.left)

    def failed(self, r: TransferFailed) -> None:
        self.outcome[(r.task, r.base)] = Outcome("failed", r.ts, r.run, r.reason, r.message)
        self._run_outcome(r.run, r.base, "failed")

    def skipped(self, r: TransferSkipped) -> None:
        self.outcome[(r.task, r.base)] = Outcome("skipped", r.ts, r.run, r.reason)
        self._run_outcome(r.run, r.base, "skipped")

    def slot_missed(self, r: SlotMissed) -> None:
        self._decided(r.task, r.slot)

    def slot_skipped(self, r: SlotSkipped) -> None:
        self._decided(r.task, r.slot)

    def config_applied(self, r: ConfigApplied) -> None:
        before, since = _running(self.applied), self.running_since
        now: dict[str, dt.datetime] = {}
        for task in _running_in(r.tasks, r.idle):
            if task not in before:
                now[task] = r.ts
            elif (was := since.get(task)) is not None:
                now[task] = was
        self.running_since = now
        self.applied = AppliedConfig(dict(r.files), r.commit, r.tasks, r.ts, r.idle)
        self.rejected = r.problems

    def config_rejected(self, r: ConfigRejected) -> None:
        self.rejected = r.problems

    def repaired(self, r: JournalRepaired) -> None:
        repair = Repair(r.seq, r.ts, r.segment, r.offset, r.length, r.broken_file)
        self.repairs = (*self.repairs, repair)

    def acknowledged(self, r: RepairsAcknowledged) -> None:
        self.repairs = tuple(x for x in self.repairs if x.seq > r.up_to)

    def checkpoint(self, r: Checkpoint) -> None:
        _Replay.__init__(self, restore(r.state), copy=False)

    def nothing(self, r: Entry) -> None:
        pass


# Each method takes its own entry type (the key): a parameter type a dict's value type cannot
# tie to its key, hence Any for the entry.
_APPLY: dict[type[Entry], Callable[[_Replay, Any], None]] = {
    RunStarted: _Replay.run_started,
    RunFinished: _Replay.run_finished,
    TransferSucceeded: _Replay.succeeded,
    TransferSucceededBrief: _Replay.succeeded,
    TransferFailed: _Replay.failed,
    TransferSkipped: _Replay.skipped,
    SlotMissed: _Replay.slot_missed,
    SlotSkipped: _Replay.slot_skipped,
    ConfigApplied: _Replay.config_applied,
    ConfigRejected: _Replay.config_rejected,
    Checkpoint: _Replay.checkpoint,
    DaemonStarted: _Replay.nothing,
    DaemonStopped: _Replay.nothing,
    JournalRepaired: _Replay.repaired,
    RepairsAcknowledged: _Replay.acknowledged,
}


def _running_in(tasks: Iterable[str], idle: Iterable[str] | None) -> list[str]:
    """The tasks a ``config-applied`` runs: its ``tasks`` less its ``idle`` (None: all)."""
    if not idle:
        return list(tasks)
    skip = set(idle)
    return [t for t in tasks if t not in skip]


def _running(applied: AppliedConfig | None) -> frozenset[str]:
    return frozenset(_running_in(applied.tasks, applied.idle)) if applied else frozenset()


def running_tasks(state: State) -> tuple[str, ...] | None:
    """The tasks the latest ``config-applied`` runs here, in its order; None when the journal
    has none."""
    applied = state.applied_config
    return None if applied is None else tuple(_running_in(applied.tasks, applied.idle))


def replay(records: Iterable[Entry], initial: State | None = None) -> State:
    """The state after applying ``records`` in order to ``initial`` (default: empty). Pure."""
    work = _Replay(initial if initial is not None else State())
    apply = _APPLY
    for record in records:
        apply[type(record)](work, record)
    return work.state()


def snapshot(state: State) -> StateSnapshot:
    """The state in the shape a ``checkpoint`` record carries (deterministic order)."""
    return StateSnapshot(
        last_slot_started=dict(sorted(state.last_slot_started.items())),
        last_slot_decided=dict(sorted(state.last_slot_decided.items())),
        last_run=dict(sorted(state.last_run.items())),
        last_outcome=tuple(
            OutcomeEntry(task, base, outcome)
            for (task, base), outcome in sorted(state.last_outcome.items())
        ),
        watermark=tuple(
            WatermarkEntry(task, base, mark)
            for (task, base), mark in sorted(state.watermark.items())
        ),
        memory={base: m.snapshot() for base, m in sorted(state.memory.items())},
        rejected_config=state.rejected_config,
        applied_config=state.applied_config,
        runs_in_progress=dict(sorted(state.runs_in_progress.items())),
        last_success=tuple(
            SuccessEntry(task, base, success)
            for (task, base), success in sorted(state.last_success.items())
        ),
        repairs=state.repairs,
        last_manual=dict(sorted(state.last_manual.items())),
        running_since=dict(sorted(state.running_since.items())),
    )


def restore(snap: StateSnapshot) -> State:
    """The inverse of :func:`snapshot`. A checkpoint from before last successes were kept gives
    the latest outcomes that are successes."""
    last_outcome = {(e.task, e.base): e.outcome for e in snap.last_outcome}
    last_success = {(e.task, e.base): e.success for e in snap.last_success} or {
        key: LastSuccess(o.run, o.when)
        for key, o in last_outcome.items()
        if o.outcome == "succeeded"
    }
    return State(
        last_slot_started=dict(snap.last_slot_started),
        last_slot_decided=dict(snap.last_slot_decided),
        last_run=dict(snap.last_run),
        last_outcome=last_outcome,
        watermark={(e.task, e.base): e.watermark for e in snap.watermark},
        memory=_restore_memory(snap),
        rejected_config=snap.rejected_config,
        applied_config=snap.applied_config,
        runs_in_progress=dict(snap.runs_in_progress),
        last_success=last_success,
        repairs=snap.repairs,
        last_manual=dict(snap.last_manual),
        running_since=dict(snap.running_since),
    )


def _restore_memory(snap: StateSnapshot) -> dict[str, BaseMemory]:
    memory = {base: BaseMemory.restore(m) for base, m in snap.memory.items()}
    for base, digests in snap.leavers.items():  # a checkpoint written before the memories
        memory.setdefault(base, BaseMemory()).apply("", keys_of(digests), "", "")
    return memory
