"""The daemon: one loop that decides, everything else only marks or wakes it.

Signal handlers set flags; the config watcher marks the dir dirty; finished transfers wake the
loop. Each turn the loop (1) reloads if asked to, (2) starts what is due, (3) sleeps on one
event until the earliest of: the next slot or jittered transfer, the end of the reload quiet
period, the 60 s safety rescan, the next watchdog ping. There is no fixed-interval polling.

The control socket (:mod:`b2bd.daemon.control`, answers in :mod:`b2bd.daemon.requests`) is
served on its own threads once the journal lock is held; a trigger through it is queued with
:meth:`Daemon.submit` and started by the loop between two turns.

Exit codes: 0 after a graceful stop; 78 (EX_CONFIG) for an invalid or unreadable config at
start; 1 when the state cannot be used: the journal cannot be opened (damaged, held by another
daemon, not readable or writable for us, a torn tail that cannot be repaired for lack of space,
a state dir of another user's while we run as root: :mod:`b2bd.statedir`)
or stops taking writes while running (a full disk), the pupil key cannot be read, or the
control socket cannot be set up. Each ends as one error line naming the path and what to do;
none of them is cured by restarting, so the unit lists 1 and 78 in
``RestartPreventExitStatus=``.

Stopping (SIGTERM): no new transfers; running ones get the grace period (``--grace``) to finish.
Whatever is still running then is journaled as failed ("interrupted"), its run finished, and
``daemon-stopped`` written; the journal is closed (every record of it already fsynced) and
:attr:`Daemon.abandoned` tells the caller how many worker threads were left behind: a thread
stuck in a read the OS does not interrupt (a network share that stopped answering) cannot be
joined, so ``b2bd run`` then ends the process with ``os._exit`` instead of waiting for it.
"""

from __future__ import annotations

import datetime as dt
import os
import queue
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from b2bd import __version__
from b2bd.clock import Clock, SystemClock
from b2bd.config.load import TASKS_DIR, ConfigDirError, ParseCache, file_digests, load_config
from b2bd.config.model import Config, Problem, Task
from b2bd.daemon.control import ControlError, ControlServer
from b2bd.daemon.due import due, idle, journal_cursors, next_look, reconfigure
from b2bd.daemon.metrics import Metrics, MetricsError, MetricsServer
from b2bd.daemon.notify import Notifier
from b2bd.daemon.protocol import daemon_socket
from b2bd.daemon.requests import ControlRequests, ManualCompact, ManualTrigger
from b2bd.daemon.runs import Runs
from b2bd.daemon.wake import Waker
from b2bd.daemon.watcher import ConfigWatcher
from b2bd.faults import explain
from b2bd.journal.keys import KeyFileError, open_keyer
from b2bd.journal.reader import JOURNAL_DIR, JournalError, repair_message
from b2bd.journal.state import State, running_tasks
from b2bd.journal.writer import Journal, JournalFailed
from b2bd.log import get_logger
from b2bd.schedule import jitter_offset
from b2bd.statedir import root_refusal, running_as
from b2bd.transfer.engine import Engine
from b2bd.transfer.results import outcome_of

EXIT_OK = 0
EXIT_JOURNAL = 1
EXIT_CONFIG = 78

QUIET = 0.1  # seconds without file events before a rescan (a git checkout is one burst)
RESCAN = 60.0  # safety rescan: network filesystems, lost events
FAR = dt.datetime.max.replace(tzinfo=dt.UTC)

log = get_logger("b2bd.daemon")


@dataclass
class _Flags:
    """Set by signal handlers (and nothing else happens in them)."""

    stop: int | None = None
    reload: bool = False


@dataclass(frozen=True)
class _Serving:
    """What the daemon builds once its journal is open, all at once."""

    state_dir: Path
    journal: Journal
    engine: Engine
    runs: Runs
    requests: ControlRequests


class Daemon:
    def __init__(
        self,
        root: Path,
        *,
        clock: Clock | None = None,
        notifier: Notifier | None = None,
        run_now: bool = False,
        grace: float = 600.0,
    ) -> None:
        self.root = root
        self.clock = clock or SystemClock()
        self.notifier = notifier or Notifier()
        self.run_now = run_now
        self.grace = grace
        self.wake = Waker()  # signal-safe, unlike threading.Event
        self.flags = _Flags()
        self.cache: ParseCache = {}
        self.config: Config | None = None
        self.cursor: dict[str, dt.datetime] = {}
        self.next_at: dict[str, dt.datetime] = {}
        self.rejected: tuple[Problem, ...] = ()
        self.warned: frozenset[Problem] = frozenset()
        self.applied_digests: dict[str, str] = {}
        self.watcher = ConfigWatcher(root, self.wake)
        self.triggers: queue.SimpleQueue[ManualTrigger | ManualCompact] = queue.SimpleQueue()
        self.stopping = False  # read by control-socket threads
        self.control: ControlServer | None = None
        self.metrics: Metrics | None = None
        self.metrics_server: MetricsServer | None = None
        self._watch_error: str | None = None
        self._listening: tuple[str, int] | None = None  # metrics.listen as bound at start
        self._listen_told: tuple[str, int] | None = None
        self.abandoned = 0
        """Transfers still running when the grace period ended (their threads left behind)."""
        self._serving: _Serving | None = None  # once the journal is open (run())

    # -- what exists once the journal is open ----------------------------------------------

    def _served(self) -> _Serving:
        if self._serving is None:
            raise RuntimeError("the daemon is not running: its journal is not open")
        return self._serving

    @property
    def state_dir(self) -> Path:
        """The state dir whose journal this daemon holds (a reload does not move it)."""
        return self._served().state_dir

    @property
    def journal(self) -> Journal:
        return self._served().journal

    @property
    def engine(self) -> Engine:
        return self._served().engine

    @property
    def runs(self) -> Runs:
        return self._served().runs

    @property
    def requests(self) -> ControlRequests:
        return self._served().requests

    # -- start and stop --------------------------------------------------------------------

    def run(self) -> int:
        try:
            config = load_config(self.root, now=self.clock.now(), cache=self.cache)
        except ConfigDirError as exc:
            log.error("config-unusable", error=str(exc))
            return EXIT_CONFIG
        if not config.valid or config.settings is None:
            for p in config.problems:
                level = log.error if p.severity == "error" else log.warning
                level("config-invalid", file=p.file, line=p.line, column=p.column,
                      rule=p.rule, severity=p.severity, message=p.message)  # fmt: skip
            return EXIT_CONFIG
        state_dir = config.settings.state_dir
        if (refusal := root_refusal(state_dir, "run", via_daemon=False)) is not None:
            log.error("state-unusable", error=refusal)  # root's files would lock the service out
            return EXIT_JOURNAL
        try:
            journal = Journal.open(state_dir, clock=self.clock.now)
        except JournalError as exc:
            log.error("journal-unusable", error=str(exc), state_dir=str(state_dir))
            return EXIT_JOURNAL
        try:
            with journal:
                return self._serve(config, journal)
        except KeyFileError as exc:
            log.error("pupil-key-unusable", error=str(exc), state_dir=str(state_dir))
        except JournalFailed as exc:
            log.error("journal-write-failed", error=str(exc), state_dir=str(state_dir))
        except JournalError as exc:
            log.error("journal-unusable", error=str(exc), state_dir=str(state_dir))
        except OSError as exc:  # the state dir, outside the journal's own handling
            log.error(
                "state-unusable",
                error=explain(exc, "cannot use the state dir", state_dir, user=running_as()),
            )
        return EXIT_JOURNAL

    def _serve(self, config: Config, journal: Journal) -> int:
        """Run on an open journal until stopped; raises what makes the state unusable."""
        assert config.settings is not None
        settings = config.settings
        for repair in journal.repairs:
            level = log.error if repair.records else log.warning
            level("journal-repaired", message=repair_message(repair), segment=repair.segment,
                  offset=repair.offset, records_cut=repair.records)  # fmt: skip
        pool = ThreadPoolExecutor(settings.concurrency, "transfer")
        try:
            self._install_signals()  # from here on a SIGTERM is a graceful stop
            state = journal.state()
            # A key that cannot be used raises KeyFileError: run() logs it, exit 1.
            keyer = open_keyer(settings.state_dir, journal_holds_digests=state.holds_digests)
            # The engine (watermarks, memories) and the metrics (counts) start from the state
            # replayed above: what _close_interrupted_runs journals below changes neither.
            self._listening = self._listen_told = settings.metrics_listen
            if settings.metrics_listen is not None:
                self.metrics = Metrics(settings.state_dir / JOURNAL_DIR, state)
            engine = Engine(config, journal, keyer, state=state, pool=pool, clock=self.clock.now)
            runs = Runs(engine, pool, self.wake.set, self.metrics)
            requests = ControlRequests(self)
            self._serving = _Serving(settings.state_dir, journal, engine, runs, requests)
            try:  # only now: the journal lock keeps a second daemon from taking the socket
                self.control = ControlServer.bind(
                    daemon_socket(settings), requests.hello(), requests.handlers()
                )
            except ControlError as exc:
                log.error("control-socket-unusable", error=str(exc))
                return EXIT_JOURNAL
            if self.metrics is not None and settings.metrics_listen is not None:
                self.metrics.vitals = self._vitals
                try:
                    self.metrics_server = MetricsServer.start(settings.metrics_listen, self.metrics)
                except MetricsError as exc:
                    log.error("metrics-unusable", error=str(exc))
                    self.control.close("the daemon could not start")
                    return EXIT_JOURNAL
                journal.listen(self.metrics.entry)
            journal.append("daemon-started", pid=os.getpid(), version=__version__)
            _close_interrupted_runs(journal, state)
            self._apply(config, state, first=True)
            if self.metrics is not None:
                self.metrics.loaded(self.clock.now(), start=True, config=config)
                # What is in force, before READY=1: a scrape right after it sees every series
                # (the loop publishes again after each turn).
                self.metrics.publish(config, self.next_at)
            self._watch(first=True)
            self.notifier.ready(self._status())
            log.info("daemon-ready", tasks=len(config.tasks), version=__version__)
            if self.run_now:
                self._start_all_now()
            try:
                self._loop()
            finally:
                self.watcher.stop()
                try:
                    self._shutdown()
                finally:
                    self.control.close("the daemon exited")
        finally:
            if self.metrics_server is not None:  # also when the start failed half-way
                self.metrics_server.close()
            # Never wait for a stuck worker: abandoned threads are left to the caller.
            pool.shutdown(wait=not self.abandoned, cancel_futures=True)
        return EXIT_OK

    def _watch(self, *, first: bool = False) -> None:
        """Start the config watcher, or restart it if its thread died. If the kernel refuses
        (inotify instance or watch limits), say so once: changes then apply at the 60 s rescan
        and on SIGHUP."""
        try:
            if first:
                self.watcher.start()
            elif self.watcher.ensure_running():
                log.warning("watcher-restarted", restarts=self.watcher.restarts)
        except OSError as exc:
            error = explain(exc, "cannot watch the config dir", self.root, user=running_as())
            if error != self._watch_error:
                log.error("config-watch-failed", error=error,
                          fallback="changes apply at the 60 s rescan and on SIGHUP")  # fmt: skip
            self._watch_error = error
            return
        self._watch_error = None

    def _vitals(self) -> tuple[str | None, str | None, bool]:
        """For /healthz (a server thread): why the watcher is not running, why the journal
        takes no records, whether the daemon is stopping."""
        watch = self._watch_error
        if watch is None and not self.watcher.alive():
            watch = "its thread is not running"
        return watch, self.journal.failed, self.stopping

    def _install_signals(self) -> None:
        def on_stop(signum: int, _frame: FrameType | None) -> None:
            self.flags.stop = signum
            self.wake.set()

        def on_reload(_signum: int, _frame: FrameType | None) -> None:
            self.flags.reload = True
            self.wake.set()

        if threading.current_thread() is not threading.main_thread():
            return  # embedded (tests): the owner stops it with request_stop()
        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_reload)
        signal.set_wakeup_fd(self.wake.write_fd, warn_on_full_buffer=False)

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """What SIGTERM does, for an embedding caller."""
        self.flags.stop = signum
        self.wake.set()

    def request_reload(self) -> None:
        """What SIGHUP does, for an embedding caller."""
        self.flags.reload = True
        self.wake.set()

    def submit(self, item: ManualTrigger | ManualCompact) -> None:
        """Queue a trigger or a compaction from the control socket for the loop (any
        thread)."""
        self.triggers.put(item)
        self.wake.set()

    def _take_triggers(self) -> None:
        while True:
            try:
                trigger = self.triggers.get_nowait()
            except queue.Empty:
                return
            if self.stopping:
                what = "compacted" if isinstance(trigger, ManualCompact) else "started"
                trigger.reply.error("stopping", f"the daemon is stopping: nothing was {what}")
            else:
                self.requests.start(trigger)

    def _shutdown(self) -> None:
        """Stop taking work and let running transfers finish (up to the grace period); then
        journal ``daemon-stopped``, or, when the journal failed, raise its failure."""
        failed = self.journal.failed
        name = signal.Signals(self.flags.stop).name if self.flags.stop else "loop ended"
        if failed is not None:
            name = "journal failed"
        self.stopping = True
        self._take_triggers()  # refuses what is still queued
        self.notifier.stopping(f"stopping ({name}): letting running transfers finish")
        log.info("daemon-stopping", signal=name, running=self.runs.running_pairs())
        assert self.control is not None
        self.control.broadcast({"type": "progress", "event": "stopping", "message":
                                f"the daemon is stopping ({name}): transfers running now "
                                "finish, waiting ones are skipped"})  # fmt: skip
        if failed is None:
            self.runs.drop_waiting("daemon stopping")
        # No new attempts: a transfer waiting out a retry backoff ends now with its failure;
        # transfers that are moving data carry on until done or the grace period ends.
        self.engine.stop.set()
        deadline = time.monotonic() + self.grace
        while self.runs.active and time.monotonic() < deadline:
            self.wake.clear()
            self.wake.wait(min(1.0, max(deadline - time.monotonic(), 0.0)))
        if failed is not None:
            self.abandoned = self.runs.running_pairs()  # nothing can be journaled: do not wait
            raise JournalFailed(failed)
        if self.runs.active:
            self.abandoned = self.runs.abandon(
                f"interrupted: still running when the daemon stopped ({self.grace:g} s grace "
                "period over)"
            )
        cut = f"; {self.abandoned} transfer(s) interrupted" if self.abandoned else ""
        reason = f"signal {name}{cut}"
        self.journal.append("daemon-stopped", reason=reason)
        self.control.close(f"signal {name}")
        log.info("daemon-stopped", reason=reason)

    # -- the loop --------------------------------------------------------------------------

    def _loop(self) -> None:
        last_rescan = time.monotonic()
        watchdog_every = self.notifier.watchdog_interval
        last_ping = time.monotonic()
        while True:
            # Clear first, then look at the flags: a signal that lands in between is seen now,
            # one that lands later sets the waker again and ends this turn's wait.
            self.wake.clear()
            # A journal that failed (a worker's append, say) stops the loop; one that fails in
            # this thread raises out of it. Either way _shutdown raises the failure.
            if self.flags.stop is not None or self.journal.failed is not None:
                break
            mono = time.monotonic()
            self._watch()
            changed_at = self.watcher.changed_at
            quiet = changed_at is not None and mono - changed_at >= QUIET
            if self.flags.reload or quiet or mono - last_rescan >= RESCAN:
                forced, self.flags.reload = self.flags.reload, False
                if forced:
                    log.info("reload-requested")  # SIGHUP (systemctl reload)
                self.watcher.clear(changed_at)
                # After file events, load at once: the digest pre-check would read and hash
                # every file a second time (load_config does it anyway); it is for the safety
                # rescan, where nothing has usually changed.
                self._reload(forced=forced or quiet)
                last_rescan = time.monotonic()
            now = self.clock.now()
            self._start_due(now)
            self._take_triggers()  # and compactions asked for (the journal stays consistent)
            self.runs.dispatch(now)
            if watchdog_every is not None and mono - last_ping >= watchdog_every:
                self.notifier.watchdog()
                last_ping = mono
            if self.metrics is not None:
                assert self.config is not None
                self.metrics.publish(self.config, self.next_at)
            timeout = self._sleep_for(now, mono, last_rescan, changed_at, watchdog_every, last_ping)
            self.clock.wait(self.wake, timeout)

    def _sleep_for(
        self,
        now: dt.datetime,
        mono: float,
        last_rescan: float,
        changed_at: float | None,
        watchdog_every: float | None,
        last_ping: float,
    ) -> float:
        wake_at = min(min(self.next_at.values(), default=FAR), self.runs.next_due() or FAR)
        waits = [(wake_at - now).total_seconds(), last_rescan + RESCAN - mono]
        if changed_at is not None:
            waits.append(changed_at + QUIET - mono)
        if watchdog_every is not None:
            waits.append(last_ping + watchdog_every - mono)
        return max(min(waits), 0.0)

    # -- scheduling ------------------------------------------------------------------------

    def _start_due(self, now: dt.datetime) -> None:
        assert self.config is not None
        for task_id, when in list(self.next_at.items()):
            if when > now:
                continue
            task = self.config.tasks[task_id]
            decision = due(task.schedule, task.policy, self.cursor[task_id], now)
            for slot in decision.missed:
                self.journal.append("slot-missed", task=task_id, slot=slot)
                log.warning("slot-missed", task=task_id, slot=slot.isoformat())
            for i, slot in enumerate(decision.run):
                # Slots caught up together are one backlog: each waits for the one before
                # instead of being skipped as an overlap with it.
                self._start(task, slot, manual=False, queue=i > 0)
            if decision.cursor is not None:
                self.cursor[task_id] = decision.cursor
            self._plan(task)

    def _start(self, task: Task, slot: dt.datetime, *, manual: bool, queue: bool = False) -> None:
        free: list[str] = []
        skip = task.policy.overlap == "skip" and not queue
        for base_id in task.targets:
            if skip and self.runs.busy(task.id, base_id):
                reason = "previous transfer still running"
                self.journal.append("slot-skipped", task=task.id, slot=slot, base=base_id,
                                    reason=reason)  # fmt: skip
                log.warning("slot-skipped", task=task.id, base=base_id, slot=slot.isoformat())
            else:
                free.append(base_id)
        if not free:
            return
        context = self.engine.start_run(task, slot, manual=manual, bases=free)
        # Jitter spreads scheduled load over the bases; a manual start means now.
        jitter = dt.timedelta(0) if manual else task.policy.jitter
        due_at = {b: slot + jitter_offset(task.id, b, jitter) for b in free}
        self.runs.add(context, due_at)
        log.info("run-started", run=context.run, task=task.id, bases=len(free))

    def _start_all_now(self) -> None:
        assert self.config is not None
        now = self.clock.now()
        for task in self.config.tasks.values():
            if task.enabled:
                self._start(task, now, manual=True)
        for task_id, task in sorted(self.config.tasks.items()):
            upcoming = self.next_at.get(task_id)
            log.info("next-slot", task=task_id, enabled=task.enabled,
                     slot=upcoming.isoformat() if upcoming else None)  # fmt: skip

    def _plan(self, task: Task) -> None:
        """When the loop next has to look at this task (:func:`b2bd.daemon.due.next_look`)."""
        upcoming = next_look(task, self.cursor[task.id])
        if upcoming is None:
            self.next_at.pop(task.id, None)
        else:
            self.next_at[task.id] = upcoming

    # -- config ----------------------------------------------------------------------------

    def _reload(self, *, forced: bool) -> None:
        assert self.config is not None
        if not forced and self._digests_unchanged():
            return
        self.notifier.reloading()
        try:
            config = load_config(
                self.root, now=self.clock.now(), last_good=self.config, cache=self.cache
            )
        except ConfigDirError as exc:
            log.error("config-unusable", error=str(exc))
            if self.metrics is not None:
                self.metrics.loaded(self.clock.now(), start=False, config=None)
            self.notifier.ready(self._status())
            return
        self._apply(config, None, first=False)
        if self.metrics is not None:
            # The config now in force first (a removed task's series go), then the reload's
            # count: a scrape never sees the reload counted beside series it removed.
            self.metrics.publish(config, self.next_at)
            self.metrics.loaded(self.clock.now(), start=False, config=config)
        self._tell_listen_change(config)
        self.notifier.ready(self._status())

    def _tell_listen_change(self, config: Config) -> None:
        """The metrics server is bound at start: a reload cannot move, add or remove it. Say so
        once per new value, rather than leave the operator scraping an address never bound."""
        wanted = config.settings.metrics_listen if config.settings else self._listen_told
        if wanted == self._listen_told:
            return
        self._listen_told = wanted
        if wanted == self._listening:
            return  # changed back: nothing to say

        def shown(listen: tuple[str, int] | None) -> str:
            if listen is None:
                return "off"
            host, port = listen
            return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

        log.warning("metrics-listen-changed", serving=shown(self._listening),
                    configured=shown(wanted),
                    message="metrics.listen applies at start: restart the daemon to apply "
                    "it")  # fmt: skip

    def _digests_unchanged(self) -> bool:
        """Cheap check for the safety rescan: same files with the same bytes as last time."""
        assert self.config is not None
        try:
            return file_digests(self.root) == self.config.digests
        except (ConfigDirError, OSError):
            return False

    def _apply(self, config: Config, state: State | None, *, first: bool) -> None:
        now = self.clock.now()
        old = self.config
        errors = tuple(p for p in config.problems if p.severity == "error")
        if errors != self.rejected:
            if errors:
                self.journal.append("config-rejected", problems=[_problem(p) for p in errors])
                for p in errors:
                    log.error("config-rejected", file=p.file, line=p.line, column=p.column,
                              rule=p.rule, message=p.message)  # fmt: skip
            self.rejected = errors
        self._log_warnings(config)
        in_force = _in_force_digests(config, old)
        task_ids = sorted(config.tasks)
        # Which tasks are idle here is journaled too: a restart counts a task that came back
        # (resumed, given a base of this shard) from then, as reconfigure() does below.
        idle_ids = [t for t in task_ids if idle(config.tasks[t])]
        if (
            first
            or in_force != self.applied_digests
            or (old and sorted(old.tasks) != task_ids)
            or (old and [t for t in sorted(old.tasks) if idle(old.tasks[t])] != idle_ids)
        ):
            record = self.journal.append(
                "config-applied",
                files=in_force,
                commit=_git_commit(self.root),
                tasks=task_ids,
                problems=[_problem(p) for p in errors],
                idle=idle_ids,
            )
            self.applied_digests = in_force
            now = record.ts  # what a restart's replay takes as the time it came into force
            log.info("config-applied", tasks=len(task_ids), problems=len(errors))
        self.config = config
        self.engine.reconfigure(config)
        if state is not None:
            applied = state.applied_config
            self.cursor = journal_cursors(
                state.last_slot_decided,
                running_tasks(state),
                applied.when if applied else None,
                state.running_since,
            )
        change = reconfigure(old.tasks if old else None, config.tasks, self.cursor, now)
        for task_id in change.removed:
            self.runs.drop_waiting("task removed", task_id)
        for task_id in change.dropped:
            self.next_at.pop(task_id, None)
        self.cursor = change.cursors
        for task in config.tasks.values():
            self._plan(task)

    def _log_warnings(self, config: Config) -> None:
        """Config warnings (excluded bases, expired schedules...) once each: all of them at
        start, then the ones a reload brings."""
        warnings = frozenset(p for p in config.problems if p.severity == "warning")
        for p in sorted(warnings - self.warned):
            log.warning("config-warning", file=p.file, line=p.line, column=p.column,
                        rule=p.rule, message=p.message)  # fmt: skip
        self.warned = warnings

    def _status(self) -> str:
        assert self.config is not None
        upcoming = min(self.next_at.values(), default=None)
        nxt = upcoming.strftime("%Y-%m-%dT%H:%MZ") if upcoming else "none"
        return (
            f"{len(self.config.tasks)} tasks loaded, {len(self.rejected)} config problems; "
            f"next slot {nxt}"
        )


def _close_interrupted_runs(journal: Journal, state: State) -> None:
    """Runs a previous daemon (or a ``trigger``) started and never finished (it was killed):
    their transfers without an outcome failed, unless a later run has journaled an outcome for
    that base since (then it stays the latest, and this run shows no outcome there). The slot
    is not started again (it was decided); the watermark did not move, so the next run of a
    changed-data task covers what was not delivered."""
    for run in state.runs_in_progress.values():
        outcomes = []
        journaled = dict(run.outcomes)  # not last_outcome: a later run may have the base since
        for base in run.bases:
            done = journaled.get(base)
            last = state.last_outcome.get((run.task, base))
            if done is None and last is not None and last.run == run.run:
                done = last.outcome  # a checkpoint written before RunInProgress.outcomes
            if done is not None:
                outcomes.append(done)
                continue
            if last is not None and last.when > run.started:
                # A later run has news of this base since: an 'interrupted' failure journaled
                # now would become its latest outcome. The run shows the base without one.
                outcomes.append("failed")
                continue
            journal.append(
                "transfer-failed",
                run=run.run,
                task=run.task,
                base=base,
                reason="internal",
                attempts=0,
                message="interrupted: the daemon stopped before the transfer ended",
            )
            outcomes.append("failed")
        outcome = outcome_of(outcomes)
        journal.append("run-finished", run=run.run, task=run.task, outcome=outcome)
        level = log.error if outcome == "failed" else log.warning  # a failed run is an error
        level("run-interrupted", run=run.run, outcome=outcome)


def _in_force_digests(config: Config, old: Config | None) -> dict[str, str]:
    """The digest of each file as it is in force: a rejected file keeps its last good one, and
    an unusable ``tasks/`` folder keeps every last good task file."""
    bad = {p.file for p in config.problems if p.severity == "error"}
    digests: dict[str, str] = {}
    for name, digest in config.digests.items():
        if name in bad:
            if old is not None and name in old.digests:
                digests[name] = old.digests[name]
        else:
            digests[name] = digest
    if TASKS_DIR + "/" in bad and old is not None:
        digests.update((n, d) for n, d in old.digests.items() if n.startswith(TASKS_DIR + "/"))
    return digests


def _problem(p: Problem) -> dict[str, Any]:
    return {
        "file": p.file,
        "line": p.line,
        "column": p.column,
        "rule": p.rule,
        "message": p.message,
    }


def _git_commit(root: Path) -> str | None:
    """The commit checked out in the config dir, when it is a git checkout and git exists."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) >= 40 else None
