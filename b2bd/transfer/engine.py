"""The transfer engine: one run of a task fans out into one transfer per base.

API (for the daemon and ``b2bd trigger``)::

    engine = Engine(config, journal, keyer, pool=None, clock=utc_now)
    result = engine.run(task, slot, manual=False, bases=None, on_progress=None)   # RunResult

or, for a caller that schedules each (task, base) itself (overlap rules, jitter)::

    run = engine.start_run(task, slot, manual=False, bases=None)    # journals run-started
    result = engine.run_transfer(run, base_id)                      # TransferResult, journaled
    engine.skip_transfer(run, base_id, reason)                      # journals transfer-skipped
    engine.finish_run(run, results)                                 # journals run-finished

The engine makes no scheduling decision: it runs what it is given, now.

Guarantees:

- **Bounded concurrency**: transfers run on ``pool`` (a ``concurrent.futures.Executor``); by
  default the engine's own thread pool of b2bd.yaml ``concurrency`` workers, shared by every
  run this engine makes. A daemon passes one pool for all tasks. :meth:`Engine.run` waits for
  its transfers, so call it from outside that pool.
- **Isolation**: every failure is caught per transfer and becomes that base's outcome; one base
  never delays (beyond sharing the pool) or fails another.
- **Retries**: only transient reasons (``unreachable``, ``timeout``) are retried, up to the
  task's ``policy.retries`` more attempts, waiting ``retry_backoff * 2**(n-1)`` before retry n.
  The wait is interruptible (``stop`` event): a stopping daemon does not sit out a backoff.
- **Timeout**: each attempt has ``policy.timeout``; the connector checks it as bytes arrive
  (per MiB read, per response) and the filters between batches. A read that blocks forever
  inside the OS (a network share that stopped answering) cannot be interrupted by a thread: the
  daemon's grace period is the backstop, after which it exits regardless.
- **Local failures** (``local``: the LA store, the state dir or a delivery folder refusing a
  write, a symlink where our folder should be) fail at once with the path, never retried.
- **Durability order**: delivery committed (files fsynced, renamed, folder fsynced) *before*
  ``transfer-succeeded`` is journaled; the watermark and leavers memory advance only from that
  record. A crash in between re-delivers the same slot next time (at-least-once), never skips.
- **Children's data**: messages and journal records hold paths, counts, reason classes and
  keyed digests (:class:`~b2bd.journal.keys.PupilKeyer`), never a UPN, name or date of birth.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from b2bd import run_names
from b2bd.clock import Now, utc_now
from b2bd.config.model import Base, Config, Settings, Task
from b2bd.confined import Folder
from b2bd.connectors.deadline import expiring
from b2bd.connectors.source import (
    TRANSIENT,
    ConnectorError,
    FailureReason,
    Manifest,
    Source,
)
from b2bd.connectors.table import open_outbound, open_source
from b2bd.faults import ConfinedError
from b2bd.journal.entries import TransferOutcome
from b2bd.journal.memory import BaseMemory, bits_of, encode_bits, key_of, keys_of
from b2bd.journal.state import State
from b2bd.prerequisites import Verdict, not_registered, unmet, verdict
from b2bd.records.ncy import NCY_CODES
from b2bd.schedule import slot_name
from b2bd.transfer.delivery import DeliveryError, DeliveryPlace, DeliveryWriter
from b2bd.transfer.extract import Tally, extract, future_horizon
from b2bd.transfer.query import Query, advance_watermark, build_query, reference_date
from b2bd.transfer.results import (
    OnProgress,
    Progress,
    RunResult,
    TransferResult,
    run_outcome,
)

PROGRESS_EVERY = 1 << 16
PROBE_WAIT = 5.0
"""Seconds a manual run waits for a target folder to say whether its name is taken."""


class JournalWriter(Protocol):
    def append(self, type: str, **fields: Any) -> object: ...

    def state(self) -> State: ...


class Keyer(Protocol):
    def digest(self, upn: str) -> str: ...

    def key(self, upn: str) -> int: ...


class Abandoned(Exception):
    """The engine was frozen (:meth:`Engine.freeze`): a transfer that ends afterwards is not
    journaled (the daemon already journaled it as interrupted)."""


class TransferFailure(Exception):
    """A transfer attempt failed with a reason class and an operator message (no pupil data)."""

    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(message)
        self.reason: FailureReason = reason
        self.message = message


@dataclass(frozen=True)
class RunContext:
    """A started run: its id, task, slot, delivery name, reference date and bases."""

    run: str
    task: Task
    slot: dt.datetime
    manual: bool
    name: str
    day: dt.date
    bases: tuple[str, ...]
    as_of: bool = False  # day was given (trigger --as-of), not the slot's local date


@dataclass(frozen=True)
class InForce:
    """The config and the settings a transfer works with: one value, so that
    :meth:`Engine.reconfigure` swaps both at once and a worker thread never sees a new config
    with the old settings (or the reverse)."""

    config: Config
    settings: Settings


def backoff_delays(retries: int, backoff: dt.timedelta) -> list[float]:
    """Seconds to wait before retry 1..retries: ``backoff * 2**(n-1)``."""
    base = backoff.total_seconds()
    return [base * (2**n) for n in range(retries)]


class Engine:
    """Runs transfers (see the module docstring). ``state`` seeds the watermarks and leavers
    memory (``b2bd.journal.state.State``; default: replayed from ``journal``); afterwards the engine
    keeps them current from the successes it journals itself."""

    def __init__(
        self,
        config: Config,
        journal: JournalWriter,
        keyer: Keyer,
        *,
        state: State | None = None,
        pool: Executor | None = None,
        clock: Now = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        stop: threading.Event | None = None,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        if config.settings is None:
            raise ValueError("the engine needs usable settings (b2bd.yaml)")
        self._in_force = InForce(config, config.settings)
        self.journal = journal
        self.keyer = keyer
        self.clock = clock
        self.monotonic = monotonic
        self.stop = stop or threading.Event()
        self._wait = wait or self.stop.wait
        self._own_pool = pool is None
        self._pool = pool
        self._lock = threading.Lock()
        # Outcomes are journaled under this lock, so freeze() knows exactly which were.
        self._outcome_lock = threading.Lock()
        self._frozen = False
        self._journaled: dict[tuple[str, str], TransferOutcome] = {}
        if state is None:
            state = journal.state()
        self._watermarks: dict[tuple[str, str], str | None] = dict(state.watermark)
        self._last_manual: dict[str, str] = dict(state.last_manual)
        # The pupil memories, owned from here on (a replayed state is the engine's to change);
        # one lock per base keeps their journal order and their in-memory order the same.
        self._memory: dict[str, BaseMemory] = dict(state.memory)
        self._base_locks: dict[str, threading.Lock] = {}

    def reconfigure(self, config: Config) -> None:
        """Work with ``config`` from now on (the daemon applied it): its tasks, bases and
        settings. A config without settings (it cannot carry a rejected b2bd.yaml's: a reload
        keeps the last good ones) leaves the engine's in force. One assignment: a transfer
        attempt reads :attr:`in_force` once and works with that pair throughout."""
        self._in_force = InForce(config, config.settings or self._in_force.settings)

    @property
    def in_force(self) -> InForce:
        """The config and settings in force now (read once per transfer attempt)."""
        return self._in_force

    @property
    def config(self) -> Config:
        return self._in_force.config

    @property
    def settings(self) -> Settings:
        return self._in_force.settings

    # -- pool ------------------------------------------------------------------------------

    @property
    def pool(self) -> Executor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.settings.concurrency, thread_name_prefix="transfer"
                )
            return self._pool

    def close(self) -> None:
        """Shut down the engine's own pool (a pool passed in is the caller's to close)."""
        if self._own_pool and self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- state the engine keeps ----------------------------------------------------------------

    def watermark(self, task_id: str, base_id: str) -> str | None:
        with self._lock:
            return self._watermarks.get((task_id, base_id))

    def leavers(self, base_id: str) -> frozenset[int]:
        """The base's leavers memory (memory keys)."""
        with self._base_lock(base_id):
            memory = self._memory.get(base_id)
            return memory.leavers() if memory is not None else frozenset()

    def members(self, task_id: str, base_id: str) -> frozenset[int]:
        """What ``task_id`` remembers delivering at the base (its cohort memory)."""
        with self._base_lock(base_id):
            memory = self._memory.get(base_id)
            return memory.cohort(task_id) if memory is not None else frozenset()

    def _base_lock(self, base_id: str) -> threading.Lock:
        with self._lock:
            lock = self._base_locks.get(base_id)
            if lock is None:
                lock = self._base_locks[base_id] = threading.Lock()
            return lock

    # -- a whole run ---------------------------------------------------------------------------

    def run(
        self,
        task: Task,
        slot: dt.datetime,
        *,
        manual: bool = False,
        bases: Sequence[str] | None = None,
        on_progress: OnProgress | None = None,
        as_of: dt.date | None = None,
    ) -> RunResult:
        """Run ``task`` for ``slot`` on ``bases`` (default: the task's targets), in parallel on
        the pool, and journal it from ``run-started`` to ``run-finished``."""
        context = self.start_run(task, slot, manual=manual, bases=bases, as_of=as_of)
        futures: dict[Future[TransferResult], str] = {
            self.pool.submit(self.run_transfer, context, base_id, on_progress): base_id
            for base_id in context.bases
        }
        results: dict[str, TransferResult] = {}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
        ordered = [results[base_id] for base_id in context.bases]
        return self.finish_run(context, ordered)

    def start_run(
        self,
        task: Task,
        slot: dt.datetime,
        *,
        manual: bool = False,
        bases: Sequence[str] | None = None,
        as_of: dt.date | None = None,
    ) -> RunContext:
        """Journal ``run-started``. A manual run is named ``<task>/manual-<slot>`` (``-2``,
        ``-3``... when that is taken: :mod:`b2bd.run_names`) and writes deliveries of that
        name, which never replace another's; ``slot`` must be timezone-aware. The reference
        date D is the slot's local date, or ``as_of`` (a manual run "as it would have run on
        that date": cohort, windows, academic year), which the journal records. A base that
        bases.yaml no longer lists is not refused here: its transfer fails the run-time
        guard."""
        chosen = tuple(task.targets if bases is None else bases)
        name = self._manual_name(task, slot, chosen) if manual else slot_name(slot)
        context = RunContext(
            run=f"{task.id}/{name}",
            task=task,
            slot=slot.astimezone(dt.UTC),
            manual=manual,
            name=name,
            day=as_of if as_of is not None else reference_date(slot, task.schedule.timezone),
            bases=chosen,
            as_of=as_of is not None,
        )
        extra = {"as_of": as_of.isoformat()} if as_of is not None else {}
        self.journal.append(
            "run-started",
            run=context.run,
            task=task.id,
            slot=context.slot,
            manual=manual,
            bases=list(chosen),
            **extra,
        )
        return context

    def _manual_name(self, task: Task, slot: dt.datetime, bases: Sequence[str]) -> str:
        """A manual run name no run of this journal had and no target folder holds. Runs
        started at once (the daemon's control socket, a ``--now``) get distinct ones: the name
        is claimed under the engine's lock, and chosen again if another run claimed one in
        between. The folders are looked at outside the lock, each for at most
        :data:`PROBE_WAIT` seconds: a school's share that stopped answering must hold neither
        other transfers (they take the lock) nor the daemon's loop. A folder that does not
        answer is taken to hold nothing: the exclusive commit of a manual delivery still never
        replaces one that is there."""
        silent: set[str] = set()  # bases whose folder did not answer: not asked again

        def delivered(name: str) -> bool:
            for base_id in bases:
                if base_id in silent:
                    continue
                held = _within(
                    PROBE_WAIT, functools.partial(self._holds_delivery, task, base_id, name)
                )
                if held is None:
                    silent.add(base_id)
                elif held:
                    return True
            return False

        while True:
            with self._lock:
                last = self._last_manual.get(task.id)
            name = run_names.manual_name(slot, last, delivered)
            with self._lock:
                if self._last_manual.get(task.id) == last:
                    self._last_manual[task.id] = name
                    return name

    def _holds_delivery(self, task: Task, base_id: str, name: str) -> bool:
        """Whether the base's delivery folder for ``task`` has a delivery called ``name`` (a
        folder that cannot be opened holds none: that transfer fails on its own)."""
        in_force = self._in_force
        base = in_force.config.bases.get(base_id)
        if base is None:
            return False
        try:
            root, below = self._delivery_folder(task, base, in_force.settings)
            with Folder.open(root) as top, top.descend(*below) as folder:
                return folder.exists(f"{name}.jsonl") or folder.exists(f"{name}.manifest.json")
        except (TransferFailure, OSError):
            return False

    def finish_run(self, context: RunContext, results: Sequence[TransferResult]) -> RunResult:
        outcome = run_outcome(results)
        with self._outcome_lock:
            if self._frozen:
                raise Abandoned(context.run)
            self.journal.append(
                "run-finished", run=context.run, task=context.task.id, outcome=outcome
            )
            for base_id in context.bases:
                self._journaled.pop((context.run, base_id), None)
        return RunResult(
            run=context.run,
            task=context.task.id,
            slot=context.slot,
            manual=context.manual,
            outcome=outcome,
            transfers=tuple(results),
            day=context.day,
            as_of=context.as_of,
        )

    def skip_transfer(
        self, context: RunContext, base_id: str, reason: str, message: str = ""
    ) -> TransferResult:
        self._journal_outcome(
            "skipped", "transfer-skipped", context, base_id, reason=reason, message=message
        )
        return TransferResult(
            context.task.id, base_id, "skipped", reason=reason, message=message or reason
        )

    # -- one transfer --------------------------------------------------------------------------

    def run_transfer(
        self, context: RunContext, base_id: str, on_progress: OnProgress | None = None
    ) -> TransferResult:
        """One (task, base) transfer with its retries; journals its outcome. Never raises for
        a transfer failure (only if the journal itself cannot be written)."""
        task = context.task
        notify = on_progress or _ignore
        notify(Progress(context.run, base_id, "started"))
        guard = self.guard(task, base_id, in_force=self._in_force)
        if guard.outcome != "run":
            if guard.outcome == "skipped":
                result = self.skip_transfer(context, base_id, str(guard.reason), guard.message)
            else:
                result = self._failed(
                    context, base_id, 1, TransferFailure("prerequisite", guard.message)
                )
            notify(Progress(context.run, base_id, "finished", 0, result))
            return result
        policy = task.policy
        delays = backoff_delays(policy.retries, policy.retry_backoff)
        attempt = 0
        while True:
            attempt += 1
            try:
                result = self._attempt(context, base_id, attempt, notify)
                break
            except TransferFailure as failure:
                retry = failure.reason in TRANSIENT and attempt <= len(delays)
                if retry and not self.stop.is_set():
                    wait = delays[attempt - 1]
                    notify(Progress(context.run, base_id, "retry", attempt=attempt, wait=wait,
                                    reason=failure.reason, message=failure.message))  # fmt: skip
                    # _wait returns True when the engine is stopping: then no more attempts.
                    if not self._wait(wait):
                        continue
                result = self._failed(context, base_id, attempt, failure)
                break
        notify(Progress(context.run, base_id, "finished", result.records, result))
        return result

    def freeze(self) -> dict[tuple[str, str], TransferOutcome]:
        """Journal no more outcomes or run ends (a transfer ending later raises
        :class:`Abandoned` in its worker instead): for a daemon that stops while transfers are
        still running. Returns the (run, base) outcomes journaled for runs not yet finished."""
        with self._outcome_lock:
            self._frozen = True
            return dict(self._journaled)

    def _journal_outcome(
        self,
        outcome: TransferOutcome,
        type: str,
        context: RunContext,
        base_id: str,
        **fields: Any,
    ) -> None:
        with self._outcome_lock:
            if self._frozen:
                raise Abandoned(f"{context.run} {base_id}")
            self.journal.append(type, run=context.run, task=context.task.id, base=base_id,
                                **fields)  # fmt: skip
            self._journaled[(context.run, base_id)] = outcome

    def _failed(
        self, context: RunContext, base_id: str, attempts: int, failure: TransferFailure
    ) -> TransferResult:
        self._journal_outcome(
            "failed",
            "transfer-failed",
            context,
            base_id,
            reason=failure.reason,
            message=failure.message,
            attempts=attempts,
        )
        return TransferResult(
            context.task.id,
            base_id,
            "failed",
            attempts=attempts,
            reason=failure.reason,
            message=failure.message,
        )

    def _attempt(
        self, context: RunContext, base_id: str, attempt: int, notify: OnProgress
    ) -> TransferResult:
        task = context.task
        in_force = self._in_force  # once: this attempt's config and settings agree throughout
        base, settings = in_force.config.bases[base_id], in_force.settings
        query = build_query(
            task,
            base_id,
            context.day,
            watermark=self.watermark(task.id, base_id),
            leavers=self.leavers(base_id) if task.direction == "from-school" else frozenset(),
            year_start=settings.academic_year_start,
            members=self.members(task.id, base_id),
        )
        timeout = task.policy.timeout
        deadline = expiring(
            timeout.total_seconds(), f"transfer took longer than {timeout}", clock=self.monotonic
        )

        def progress(records: int) -> None:
            notify(Progress(context.run, base_id, "records", records))

        source: Source | None = None
        try:
            source, root, below = self._endpoints(task, base, settings)
            manifest = source.manifest(deadline=deadline)
            guard = self.guard(task, base_id, manifest, in_force=in_force)
            if guard.outcome != "run":
                raise TransferFailure("prerequisite", guard.message)
            not_after = future_horizon(manifest.exported_at, self.clock())
            deadline()
            place = DeliveryPlace(
                root,
                below,
                context.name,
                create_root=task.direction == "from-school",
                replace=not context.manual,  # a slot's retry replaces its own attempt only
            )
            with DeliveryWriter(place) as writer:
                tally = extract(
                    source,
                    query,
                    writer.write,
                    self.keyer.key,
                    deadline=deadline,
                    progress=progress,
                    not_after=not_after,
                )
                new_watermark = advance_watermark(query.watermark, tally.high or None)
                figures = tally_figures(tally)
                described = self._manifest(context, query, tally, figures, new_watermark)
                delivered = writer.commit(described)
        except TransferFailure:
            raise
        except ConnectorError as error:
            raise TransferFailure(error.reason, error.message) from None
        except DeliveryError as error:
            raise TransferFailure(error.reason, str(error)) from None
        except ConfinedError as error:
            # Reads of a school's folder and deliveries say what they are themselves; what is
            # left is our own side (the state dir's key file): the LA's to fix.
            raise TransferFailure("local", str(error)) from None
        except Exception as error:  # isolation: one base's bug never takes the run down
            raise TransferFailure(
                "internal", f"unexpected {type(error).__name__} in the transfer"
            ) from None
        finally:
            if source is not None:
                source.close()
        return self._succeeded(
            context, query, attempt, tally, figures, new_watermark, delivered.data_path
        )

    def _succeeded(
        self,
        context: RunContext,
        query: Query,
        attempt: int,
        tally: Tally,
        figures: dict[str, Any],
        watermark: str | None,
        delivery: Path,
    ) -> TransferResult:
        task = context.task
        with self._base_lock(query.base):
            memory = self._memory.get(query.base) or BaseMemory()
            added, joined, left = _memory_delta(memory, query, tally, self.keyer.digest)
            self._journal_outcome(
                "succeeded",
                "transfer-succeeded",
                context,
                query.base,
                direction=task.direction,
                data_type=task.data.type,
                cohort_group=task.cohort.group,
                **figures,
                watermark=watermark,
                pupils=added,
                joined=joined,
                left=left,
            )
            if added or joined or left:
                memory.apply(task.id, keys_of(added), joined, left)
                self._memory[query.base] = memory
        with self._lock:
            self._watermarks[(task.id, query.base)] = watermark
        return TransferResult(
            task.id,
            query.base,
            "succeeded",
            attempts=attempt,
            **figures,
            watermark=watermark,
            delivery=delivery,
            joined=len(tally.joined_keys),
            left=len(tally.left_keys),
        )

    # -- endpoints and prerequisites ---------------------------------------------------------

    def _endpoints(
        self, task: Task, base: Base, settings: Settings
    ) -> tuple[Source, Path, tuple[str, ...]]:
        """The source to read and where the delivery goes (a configured root and the folders
        below it), per direction (DESIGN section 6): from-school reads the school, delivers to
        ``<la_store>/<base>/<task>/``; to-school reads ``<la outbound>/<base>/`` (b2bd.yaml
        ``la_store.outbound``, default ``<la_store>/outbound``), delivers to
        ``<school path>/inbound/<task>/``. Nothing below a configured path is followed if it
        is a symlink."""
        endpoint = base.endpoint
        root, below = self._delivery_folder(task, base, settings)
        if task.direction == "from-school":
            return open_source(endpoint, base.id, settings), root, below
        assert endpoint.path is not None
        if not endpoint.path.is_dir():
            # Never create a school's folder: a share that is not mounted would otherwise
            # receive the delivery on the local disk under its mount point.
            raise TransferFailure("unreachable", f"{endpoint.path}: no such folder")
        return open_outbound(settings, base.id), root, below

    def _delivery_folder(
        self, task: Task, base: Base, settings: Settings
    ) -> tuple[Path, tuple[str, ...]]:
        """Where a transfer of ``task`` for ``base`` delivers: a configured root and the
        folders below it (``<la_store>/<base>/<task>/``, ``<school>/inbound/<task>/``)."""
        store = settings.la_store
        if store.type != "directory" or store.path is None:
            raise TransferFailure("internal", f"LA store type {store.type!r} is not supported")
        if task.direction == "from-school":
            return store.path, (base.id, task.id)
        endpoint = base.endpoint
        if endpoint.type != "directory" or endpoint.path is None:
            raise TransferFailure(
                "internal", f"to-school delivery to a {endpoint.type} endpoint is not supported"
            )
        return endpoint.path, ("inbound", task.id)

    def guard(
        self,
        task: Task,
        base_id: str,
        manifest: Manifest | None = None,
        *,
        in_force: InForce | None = None,
    ) -> Verdict:
        """The run-time guard (DESIGN section 5): ``task`` against the base as bases.yaml
        registers it *now* (``in_force``, default the engine's) and, given, against its live
        manifest, through the one check that ``validate`` and ``preflight`` make
        (:func:`b2bd.prerequisites.unmet`). A task version kept in force after a rejected edit
        meets the registry as it is now, not as it was."""
        in_force = in_force or self._in_force
        base = in_force.config.bases.get(base_id)
        if base is None:
            return verdict((not_registered(base_id),))
        return verdict(unmet(task, base, in_force.settings, manifest))

    def _manifest(
        self,
        context: RunContext,
        query: Query,
        tally: Tally,
        figures: dict[str, Any],
        watermark: str | None,
    ) -> dict[str, Any]:
        task = context.task
        dates = query.dates
        return {
            "run": context.run,
            "task": task.id,
            "base": query.base,
            "slot": context.slot.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "manual": context.manual,
            "direction": task.direction,
            "data_type": task.data.type,
            "attendance": task.data.attendance,
            "months": task.data.months,
            "cohort": {
                "group": task.cohort.group,
                "ncy": _ncy_list(task.cohort.ncy) if task.cohort.group == "ncy" else None,
                "reference_date": query.day,
                "as_of": context.as_of,
                "joined": len(tally.joined_keys),
                "left": len(tally.left_keys),
            },
            "window": {
                "updated_since": query.since,
                "changed_before": query.until,
                "dates": None if dates is None else {"first": dates.first, "last": dates.last},
            },
            **figures,
            "watermark": watermark,
            "created_at": self.clock().astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


def tally_figures(tally: Tally) -> dict[str, Any]:
    """What a success reports of its tally, built once for its journal record, its
    :class:`TransferResult` and its delivery manifest (in the manifest's key order)."""
    return {
        "counts": dict(tally.counts),
        "rejected": tally.rejected_total,
        "rejected_by_reason": dict(sorted(tally.rejected.items())),
        "dropped": dict(sorted(tally.dropped.items())),
        "missing": tally.missing,
        "read": tally.read,
    }


def _memory_delta(
    memory: BaseMemory, query: Query, tally: Tally, digest: Callable[[str], str]
) -> tuple[list[str], str, str]:
    """What a success changes in the base's memories (:mod:`b2bd.journal.memory`): the hex
    digests new to the leavers memory (non-leavers transfers), and for a transfer following the
    cohort's edge the ``joined`` and ``left`` bitmaps of the task's cohort memory (positions
    in the leavers memory once the new digests are added: every joiner was delivered, so it
    is there; every leaver was remembered, so it was already). Remembered pupils the source
    no longer holds stay remembered: they never got their leaving details."""
    place = memory.index()
    added: list[str] = []
    if query.remember:
        added = sorted({d for d in map(digest, tally.pupils) if key_of(d) not in place})
        place.update((key_of(d), len(memory.keys) + i) for i, d in enumerate(added))
    if query.members is None:
        return added, "", ""
    joined = bits_of(place[k] for k in tally.joined_keys if k in place)
    left = bits_of(place[k] for k in tally.left_keys if k in place)
    return added, encode_bits(joined), encode_bits(left)


def _within(seconds: float, call: Callable[[], bool]) -> bool | None:
    """``call()`` on a thread of its own, or None when it has not answered in ``seconds`` (it
    is then left to finish, or to stay blocked in the kernel, on a daemon thread that never
    holds up the process's exit)."""
    answer: list[bool] = []
    probe = threading.Thread(target=lambda: answer.append(call()), name="probe", daemon=True)
    probe.start()
    probe.join(seconds)
    return answer[0] if answer else None


def _ncy_list(ncy: frozenset[str] | None) -> list[str] | str:
    """A cohort's NCYs in curriculum order, or ``"all"`` (X included)."""
    return "all" if ncy is None else [code for code in NCY_CODES if code in ncy]


def _ignore(_event: Progress) -> None:
    pass
