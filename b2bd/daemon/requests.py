"""What the daemon answers on its control socket: ``status``, ``history``, ``trigger``,
``compact`` and ``acknowledge-repairs`` (protocol: :mod:`b2bd.daemon.protocol`).

``status``, ``history`` and ``acknowledge-repairs`` are answered on the connection's own thread
from what is safe to read there: the config in force (an immutable object the loop swaps), the
journal (thread-safe) and the runs in flight. A ``trigger`` is queued for the daemon loop,
which starts it between two turns like any run: its transfers share the pool and obey the
task's ``overlap`` per (task, base) — ``skip`` refuses the whole trigger naming the run that
holds a base, ``queue`` waits behind it — and its progress and result flow back to the client.
A ``compact`` is queued for the loop too, which compacts between two turns (appends wait
meanwhile; readers on connection threads read the segments they opened before it).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from b2bd import __version__
from b2bd.daemon.control import Handler, Reply
from b2bd.daemon.protocol import PROTOCOL
from b2bd.faults import explain, shown
from b2bd.journal.reader import JournalDamaged, JournalError
from b2bd.journal.writer import JournalFailed
from b2bd.log import get_logger
from b2bd.report import history_report, iso, status_report
from b2bd.schedule import slot_name
from b2bd.statedir import running_as
from b2bd.transfer.manual import (
    TriggerRefused,
    TriggerRequest,
    check_request,
    progress_json,
    run_summary,
)

if TYPE_CHECKING:
    from b2bd.clock import Clock
    from b2bd.config.model import Config
    from b2bd.daemon.runs import Runs
    from b2bd.journal.writer import Journal
    from b2bd.transfer.engine import Engine

log = get_logger("b2bd.daemon")


@dataclass(frozen=True)
class ManualTrigger:
    """A trigger waiting for the loop: the request and where its answer goes."""

    request: TriggerRequest
    reply: Reply


@dataclass(frozen=True)
class ManualCompact:
    """A ``journal compact`` waiting for the loop, and where its answer goes."""

    reply: Reply


class Served(Protocol):
    """What the requests read of the daemon (:class:`b2bd.daemon.loop.Daemon`, which builds
    them: so they name what they need here instead of importing the loop back)."""

    clock: Clock
    config: Config | None
    stopping: bool

    @property
    def state_dir(self) -> Path: ...
    @property
    def journal(self) -> Journal: ...
    @property
    def engine(self) -> Engine: ...
    @property
    def runs(self) -> Runs: ...

    def submit(self, item: ManualTrigger | ManualCompact) -> None: ...


class ControlRequests:
    """The handlers the daemon's :class:`~b2bd.daemon.control.ControlServer` serves."""

    def __init__(self, daemon: Served) -> None:
        self.daemon = daemon
        self.started = daemon.clock.now()

    def handlers(self) -> dict[str, Handler]:
        return {
            "status": self.status,
            "history": self.history,
            "trigger": self.trigger,
            "compact": self.compact,
            "acknowledge-repairs": self.acknowledge,
        }

    def hello(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "protocol": PROTOCOL,
            "version": __version__,
            "pid": os.getpid(),
            "state_dir": str(self.daemon.state_dir),
        }

    # -- on connection threads -------------------------------------------------------------

    def status(self, request: dict[str, Any], reply: Reply) -> None:
        d = self.daemon
        config = d.config
        if config is None:
            reply.error("starting", "the daemon is starting; try again in a moment")
            return
        identity = {"pid": os.getpid(), "version": __version__, "started": iso(self.started)}
        try:
            state = d.journal.state()
        except JournalDamaged as exc:  # changed behind the daemon's back: say where, as history
            reply.error("damaged", str(exc))
            return
        except OSError as exc:
            reply.error("io-error", self._unreadable(exc))
            return
        report = status_report(
            config, state, d.clock.now(), running=d.runs.in_flight(), daemon=identity
        )
        reply.result(report)

    def history(self, request: dict[str, Any], reply: Reply) -> None:
        task = request.get("task")
        limit = request.get("limit")
        if task is not None and not isinstance(task, str):
            reply.error("bad-request", "task must be a task id")
            return
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or limit < 1
        ):
            reply.error("bad-request", "limit must be a whole number, 1 or more")
            return
        try:
            runs = history_report(self.daemon.journal.entries(with_history=True), task, limit)
        except JournalDamaged as exc:
            reply.error("damaged", str(exc))
            return
        except OSError as exc:
            reply.error("io-error", self._unreadable(exc))
            return
        config = self.daemon.config
        if task and not runs and (config is None or task not in config.tasks):
            reply.error("unknown-task", f"no task {shown(task)!r} in the config or the journal")
            return
        reply.result(runs)

    def _unreadable(self, exc: OSError) -> str:
        """A journal read that failed (not damage: the file system said no), in one line."""
        where = self.daemon.journal.directory
        return explain(exc, "cannot read the journal", where, user=running_as())

    def acknowledge(self, request: dict[str, Any], reply: Reply) -> None:
        up_to = request.get("up_to")
        if not isinstance(up_to, int) or isinstance(up_to, bool) or up_to < 1:
            reply.error("bad-request", "up_to must be the sequence number of a repair")
            return
        self.daemon.journal.append("repairs-acknowledged", up_to=up_to)
        reply.result({"up_to": up_to})

    def trigger(self, request: dict[str, Any], reply: Reply) -> None:
        try:
            wanted = TriggerRequest.from_json(request)
        except ValueError as exc:
            reply.error("bad-request", str(exc))
            return
        if self.daemon.stopping:
            reply.error("stopping", "the daemon is stopping: nothing was started")
            return
        self.daemon.submit(ManualTrigger(wanted, reply))

    def compact(self, request: dict[str, Any], reply: Reply) -> None:
        if self.daemon.stopping:
            reply.error("stopping", "the daemon is stopping: nothing was compacted")
            return
        reply.subject = "the compaction"
        self.daemon.submit(ManualCompact(reply))

    # -- on the loop thread ----------------------------------------------------------------

    def start(self, item: ManualTrigger | ManualCompact) -> None:
        """Start a queued trigger now, or refuse it (unknown task or base, busy under
        ``overlap: skip``); or compact the journal. Called by the daemon loop only."""
        if isinstance(item, ManualCompact):
            self._compact(item.reply)
            return
        d = self.daemon
        reply = item.reply
        if reply.finished:  # the client left, or the daemon is closing
            return
        assert d.config is not None
        try:
            task, bases = check_request(d.config, item.request, now=d.clock.now())
        except TriggerRefused as refused:
            reply.error(refused.code, refused.message)
            return
        holders = {b: run for b in bases if (run := d.runs.holder(task.id, b)) is not None}
        if holders and task.policy.overlap == "skip":
            busy = ", ".join(f"{base} (run {run})" for base, run in holders.items())
            others = ", or the other bases with --base" if len(holders) < len(bases) else ""
            reply.error(
                "busy",
                f"task {task.id} is still running on {busy} and its overlap policy is skip: "
                f"nothing was started; trigger again when that run has finished{others}",
            )
            log.warning("trigger-refused", task=task.id, busy=sorted(holders))
            return
        now = slot = d.clock.now().astimezone(dt.UTC).replace(microsecond=0)
        # Two triggers in one second get distinct run ids from the engine (-2, -3...).
        try:
            context = d.engine.start_run(
                task, slot, manual=True, bases=bases, as_of=item.request.as_of
            )
        except Exception as exc:  # the journal failed: the client hears it, the loop too
            reply.error("internal", f"the run could not be started: {exc}")
            raise
        reply.subject = f"run {context.run}"
        reply.send(
            {"type": "accepted", "run": context.run, "slot": slot_name(slot),
             "bases": list(bases), "queued": holders}
        )  # fmt: skip
        d.runs.add(
            context,
            dict.fromkeys(bases, now),
            on_progress=lambda event: reply.send(progress_json(event)),
            on_finished=lambda result: reply.result(run_summary(result)),
        )
        log.info("run-started", run=context.run, task=task.id, bases=len(bases),
                 queued=sorted(holders), via="control-socket")  # fmt: skip

    def _compact(self, reply: Reply) -> None:
        """``journal compact`` by the daemon, on its loop thread. A history file or checkpoint
        that cannot be written (a full disk) changes nothing (``io-error``) and the daemon
        carries on; only a checkpoint put in place whose folder cannot then be synced fails the
        journal, and the loop stops the daemon as for any write that failed."""
        d = self.daemon
        if reply.finished:
            return
        days = d.engine.settings.history_days
        try:
            done = d.journal.compact(history_days=days)
        except JournalDamaged as exc:
            log.error("journal-compact-failed", error=str(exc))
            reply.error("damaged", str(exc))
            return
        except JournalFailed as exc:  # the loop sees journal.failed next turn and stops
            reply.error("io-error", f"{exc}; the daemon stops")
            return
        except JournalError as exc:
            log.error("journal-compact-failed", error=str(exc))
            reply.error("io-error", str(exc))
            return
        except OSError as exc:  # deleting the older segments: the next open finishes it
            error = explain(
                exc, "cannot remove a compacted segment", d.journal.directory, user=running_as()
            )
            log.error("journal-compact-failed", error=error)
            reply.error("io-error", f"{error}; the checkpoint is written, so the next start "
                        "removes the older segments")  # fmt: skip
            return
        log.info("journal-compacted", checkpoint=done.checkpoint.seq, removed=len(done.removed),
                 history=done.history, history_days=days, via="control-socket")  # fmt: skip
        reply.result(
            {"checkpoint": done.checkpoint.seq, "removed": list(done.removed),
             "history": done.history, "history_days": days, "pid": os.getpid()}
        )  # fmt: skip
