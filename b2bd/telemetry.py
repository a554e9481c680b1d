"""What the daemon's metrics and health endpoint say, kept from journal entries and daemon
events (pure: no clock, no I/O; the HTTP server is :mod:`b2bd.daemon.metrics`).

:class:`Telemetry` is seeded from the replayed journal state at start (:meth:`Telemetry.seed`:
the last success of every (task, base), which the journal keeps across compaction, so it
survives restarts), then fed every entry the daemon journals (:meth:`Telemetry.entry`) and
the few things that are not entries: config loads (:meth:`Telemetry.loaded`) and how long each
transfer ran (:meth:`Telemetry.began`, :meth:`Telemetry.ended`). :meth:`Telemetry.series` turns
it, with what is in force now (:class:`View`), into the exposed series, named and labelled as
README's "Metrics and health" lists them.

Counters count from the daemon's start (Prometheus takes a restart as a counter reset); the
gauges that state a fact (last success, last good config load, next slot) are facts, whenever
the daemon started.

Label values are ids only: task and base ids (validated config ids), outcomes, reason classes
and record kinds named by our own code. A value that is not shaped like an id is exposed as
``other`` rather than passed on, whatever put it there.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from b2bd.journal.entries import (
    Entry,
    SlotMissed,
    SlotSkipped,
    TransferFailed,
    TransferSkipped,
    TransferSucceeded,
)
from b2bd.journal.state import State

DURATION_BUCKETS: tuple[float, ...] = (1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, math.inf)
"""Transfer duration histogram buckets, seconds (a default task timeout is 15 minutes)."""

LOOP_STALE = 150.0
"""Seconds without a turn of the daemon's loop before ``/healthz`` calls it stuck: the loop
turns at least every 60 s (its safety rescan) when idle."""

OTHER = "other"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")

Kind = Literal["counter", "gauge", "histogram"]
Labels = tuple[str, ...]
_K = TypeVar("_K")


def label(value: str | None) -> str:
    """``value`` if it is shaped like an id, else ``other`` (see the module docstring)."""
    return value if value is not None and _ID.fullmatch(value) else OTHER


def _seconds(when: dt.datetime) -> float:
    return when.timestamp()


@dataclass
class Histogram:
    """Observations per bucket (not cumulative; :meth:`cumulative` is), their sum and count."""

    counts: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    total: float = 0.0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(DURATION_BUCKETS):
            if value <= bound:
                self.counts[i] += 1
                break
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        out: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip(DURATION_BUCKETS, self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


@dataclass(frozen=True)
class Series:
    """One metric: its name (counters without ``_total``, as the exposition adds it), kind,
    help, label names and samples (label values -> a number, or a :class:`Histogram`)."""

    name: str
    kind: Kind
    help: str
    labels: Labels
    samples: tuple[tuple[Labels, float | Histogram], ...]


@dataclass(frozen=True)
class View:
    """What is in force when the series are read: each task's target bases (last successes are
    shown for these pairs only, so a removed task or base stops alerting), the next slot of
    each enabled task, the journal's size on disk (None: unknown)."""

    targets: Mapping[str, Collection[str]] = field(default_factory=dict)
    next_slots: Mapping[str, dt.datetime] = field(default_factory=dict)
    journal_bytes: int | None = None


@dataclass
class Telemetry:
    """The bookkeeping behind the series (see the module docstring). Not thread-safe: the
    shell serialises calls."""

    loads: int = 0
    load_failures: int = 0
    last_load_ok: bool = True
    last_good_load: dt.datetime | None = None
    problems: dict[str, int] = field(default_factory=lambda: {"error": 0, "warning": 0})
    transfers: dict[tuple[str, str, str], int] = field(default_factory=dict)
    durations: dict[str, Histogram] = field(default_factory=dict)
    records: dict[tuple[str, str], int] = field(default_factory=dict)
    rejected: dict[tuple[str, str], int] = field(default_factory=dict)
    running: int = 0
    last_success: dict[tuple[str, str], dt.datetime] = field(default_factory=dict)
    slots_missed: dict[str, int] = field(default_factory=dict)
    slots_skipped: dict[str, int] = field(default_factory=dict)

    # -- feeding -----------------------------------------------------------------------------

    def seed(self, state: State) -> None:
        """Take what the journal remembers: the last success of every (task, base)."""
        for key, success in state.last_success.items():
            self._succeeded_at(key, success.when)

    def _succeeded_at(self, key: tuple[str, str], when: dt.datetime) -> None:
        old = self.last_success.get(key)
        if old is None or when > old:
            self.last_success[key] = when

    def entry(self, record: Entry) -> None:
        """One journal entry (any type; those that say nothing here are ignored)."""
        if isinstance(record, TransferSucceeded):
            task = record.task
            self._count_transfer(task, record.base, "succeeded")
            self._succeeded_at((task, record.base), record.ts)
            for kind, n in record.counts.items():
                _add(self.records, (task, label(kind)), n)
            for reason, n in record.rejected_by_reason.items():
                _add(self.rejected, (task, label(reason)), n)
        elif isinstance(record, TransferFailed):
            self._count_transfer(record.task, record.base, "failed")
        elif isinstance(record, TransferSkipped):
            self._count_transfer(record.task, record.base, "skipped")
        elif isinstance(record, SlotMissed):
            _add(self.slots_missed, record.task, 1)
        elif isinstance(record, SlotSkipped):
            _add(self.slots_skipped, record.task, 1)

    def _count_transfer(self, task: str, base: str, outcome: str) -> None:
        _add(self.transfers, (task, base, outcome), 1)

    def loaded(self, at: dt.datetime, *, start: bool, errors: int | None, warnings: int) -> None:
        """The config dir was loaded (at start, or reloaded: a change, SIGHUP, a rescan that
        found different bytes). ``errors``: problems of error severity now in force (a rejected
        file's last good version stays in force); None when the dir could not be read at all,
        which leaves the problems as they were."""
        ok = errors == 0
        if not start:
            self.loads += 1
            if not ok:
                self.load_failures += 1
        self.last_load_ok = ok
        if ok:
            self.last_good_load = at
        if errors is not None:
            self.problems = {"error": errors, "warning": warnings}

    def began(self, task: str) -> None:
        """A transfer of ``task`` started running on a worker."""
        self.running += 1

    def ended(self, task: str, seconds: float) -> None:
        """That transfer ended (any outcome) after ``seconds``."""
        self.running -= 1
        histogram = self.durations.get(task)
        if histogram is None:
            histogram = self.durations[task] = Histogram()
        histogram.observe(max(seconds, 0.0))

    def forget_tasks_but(self, tasks: Collection[str]) -> None:
        """Drop the counts of every task not in ``tasks`` (the config in force): a removed or
        renamed task's series go at the reload instead of piling up until a restart (if it
        comes back, its counters start again at 0, which Prometheus reads as a reset). Last
        successes are kept: they are the journal's, and show again for a task that returns."""
        self.transfers = {k: n for k, n in self.transfers.items() if k[0] in tasks}
        self.durations = {k: h for k, h in self.durations.items() if k in tasks}
        self.records = {k: n for k, n in self.records.items() if k[0] in tasks}
        self.rejected = {k: n for k, n in self.rejected.items() if k[0] in tasks}
        self.slots_missed = {k: n for k, n in self.slots_missed.items() if k in tasks}
        self.slots_skipped = {k: n for k, n in self.slots_skipped.items() if k in tasks}

    # -- reading -----------------------------------------------------------------------------

    def snapshot(self) -> Telemetry:
        """A copy that later feeding does not change (cheap: the shell takes it under its lock
        and builds the series from it outside)."""
        return Telemetry(
            loads=self.loads,
            load_failures=self.load_failures,
            last_load_ok=self.last_load_ok,
            last_good_load=self.last_good_load,
            problems=dict(self.problems),
            transfers=dict(self.transfers),
            durations={k: Histogram(list(h.counts), h.total) for k, h in self.durations.items()},
            records=dict(self.records),
            rejected=dict(self.rejected),
            running=self.running,
            last_success=dict(self.last_success),
            slots_missed=dict(self.slots_missed),
            slots_skipped=dict(self.slots_skipped),
        )

    def series(self, view: View) -> list[Series]:
        """Every exposed series, in README's order, label values sorted."""
        t = label
        success: dict[Labels, float] = {
            (t(task), t(base)): _seconds(when)
            for (task, base), when in self.last_success.items()
            if base in view.targets.get(task, ())
        }
        out = [
            _one("b2bd_config_last_reload_successful", "gauge",
                 "1 if the latest load of the config dir applied every file, 0 if a file was "
                 "rejected (its last good version stays in force) or the dir was unreadable",
                 float(self.last_load_ok)),
            Series("b2bd_config_last_reload_success_timestamp_seconds", "gauge",
                   "When the config dir last loaded with no error (Unix time)", (),
                   ((((), _seconds(self.last_good_load)),) if self.last_good_load else ())),
            _one("b2bd_config_reloads", "counter",
                 "Config dir reloads since the daemon started (changes, SIGHUP)",
                 float(self.loads)),
            _one("b2bd_config_reload_failures", "counter",
                 "Reloads that rejected a file or could not read the config dir",
                 float(self.load_failures)),
            _many("b2bd_config_problems", "gauge",
                  "Validation problems in the config dir now, by severity", ("severity",),
                  {(s,): n for s, n in self.problems.items()}),
            _many("b2bd_transfers", "counter",
                  "Transfers ended since the daemon started, by task, base and outcome",
                  ("task", "base", "outcome"),
                  {(t(k), t(b), o): n for (k, b, o), n in self.transfers.items()}),
            Series("b2bd_transfer_duration_seconds", "histogram",
                   "How long transfers ran (retries included), by task", ("task",),
                   tuple(sorted(((t(k),), h) for k, h in self.durations.items()))),
            _many("b2bd_records", "counter",
                  "Records delivered since the daemon started, by task and kind",
                  ("task", "kind"), {(t(k), r): n for (k, r), n in self.records.items()}),
            _many("b2bd_records_rejected", "counter",
                  "Records rejected since the daemon started, by task and reason class",
                  ("task", "reason"), {(t(k), r): n for (k, r), n in self.rejected.items()}),
            _one("b2bd_transfers_running", "gauge", "Transfers running now",
                 float(self.running)),
            _many("b2bd_task_next_slot_timestamp_seconds", "gauge",
                  "The next slot of each enabled task (Unix time)", ("task",),
                  {(t(k),): _seconds(w) for k, w in view.next_slots.items()}),
            _many("b2bd_task_last_success_timestamp_seconds", "gauge",
                  "The last successful transfer of each task to or from each base it targets "
                  "(Unix time; kept across restarts and journal compaction)",
                  ("task", "base"), success),
            _many("b2bd_slots_missed", "counter",
                  "Slots missed (the daemon was down past the starting deadline) since start",
                  ("task",), {(t(k),): n for k, n in self.slots_missed.items()}),
            _many("b2bd_slots_skipped", "counter",
                  "Slot transfers skipped because the previous one was still running, "
                  "since start", ("task",),
                  {(t(k),): n for k, n in self.slots_skipped.items()}),
            Series("b2bd_journal_bytes", "gauge", "Size of the journal on disk", (),
                   ((((), float(view.journal_bytes)),) if view.journal_bytes is not None
                    else ())),
        ]  # fmt: skip
        return out


def _add(counts: dict[_K, int], key: _K, n: int) -> None:
    counts[key] = counts.get(key, 0) + n


def _one(name: str, kind: Kind, help: str, value: float) -> Series:
    return Series(name, kind, help, (), (((), value),))


def _many(
    name: str, kind: Kind, help: str, labels: Labels, values: Mapping[Labels, float]
) -> Series:
    merged: dict[Labels, float] = {}
    for key, value in values.items():  # two values sanitised to "other" add up
        merged[key] = merged.get(key, 0) + value
    return Series(name, kind, help, labels, tuple(sorted(merged.items())))


# -- health ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vitals:
    """What ``/healthz`` looks at. ``loop_age``: seconds since the loop's last turn (None: it
    has not turned yet); ``watch_error``: why the config watcher is not running (None: it is);
    ``journal_failed``: why the journal refuses appends; ``journal_probe``: why a test write
    in the journal dir failed; ``stopping``: the daemon is shutting down."""

    loop_age: float | None
    watch_error: str | None = None
    journal_failed: str | None = None
    journal_probe: str | None = None
    stopping: bool = False


def health(v: Vitals) -> list[str]:
    """Why the daemon is not healthy (``/healthz``), one line each; empty when it is."""
    reasons: list[str] = []
    if v.stopping:
        reasons.append("the daemon is stopping")
    reasons += liveness(v)
    if v.watch_error is not None:
        reasons.append(f"the config watcher is not running: {v.watch_error}")
    if v.journal_failed is not None:
        reasons.append(f"the journal takes no more records: {v.journal_failed}")
    if v.journal_probe is not None:
        reasons.append(f"the journal is not writable: {v.journal_probe}")
    return reasons


def liveness(v: Vitals) -> list[str]:
    """Why the daemon is not alive (``/livez``): only what a restart can fix, a loop that has
    not turned. A full or read-only journal disk, a failed journal or a watcher the kernel
    refuses are still there after a restart (and a daemon started on a full disk cannot journal
    ``daemon-started``): :func:`health` reports them, for readiness and alerts, not restarts."""
    if v.loop_age is None:
        return ["the daemon's loop has not started"]
    if v.loop_age > LOOP_STALE:
        return [f"the daemon's loop has not turned for {v.loop_age:.0f} s"]
    return []
