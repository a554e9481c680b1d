"""``b2bd journal verify|compact|cat``, and reading the journal for ``status`` and ``history``
(:func:`records`, :func:`damaged`).

The journal is found through ``state_dir`` in b2bd.yaml. ``cat`` only reads (safe while the
daemon runs: a record being written at that moment is left out rather than reported). ``verify``
reads too, and when the journal is intact acknowledges the repairs ``status`` shows (a
``repairs-acknowledged`` record, written by the daemon when it runs). ``compact`` asks the
running daemon to compact (it does so in its loop); without one it takes the journal's lock and
compacts here. Run as root, what would write the state dir here refuses a state dir that
belongs to another user (:mod:`b2bd.statedir`). Exit codes: 0 fine, 1 the journal is damaged,
2 usage and I/O errors (a full disk, a read-only folder, a journal held by a process that does
not answer as a daemon, a state dir root must not write, repairs that could not be
acknowledged).
"""

from __future__ import annotations

import argparse
import errno
import os
import stat
import sys
from pathlib import Path
from typing import Any

from b2bd.cli import EXIT_USAGE, UsageError
from b2bd.cli.client import DaemonError, error_exit, find_daemon
from b2bd.cli.configdir import with_settings
from b2bd.config.model import Settings
from b2bd.faults import explain
from b2bd.journal.entries import Codec, Repair
from b2bd.journal.reader import (
    JOURNAL_DIR,
    JournalDamaged,
    JournalError,
    read_journal,
    read_state,
    scan_journal_retrying,
    verify_history,
)
from b2bd.journal.writer import Journal, JournalBusy
from b2bd.report import iso
from b2bd.statedir import root_refusal, running_as

EXIT_OK = 0
EXIT_DAMAGED = 1


def register(sub: Any) -> None:
    p = sub.add_parser(
        "journal",
        help="check, compact or print the run journal",
        description="Check (verify), compact or print (cat) the run journal in the state dir.",
    )
    actions = p.add_subparsers(dest="journal_command", required=True, metavar="ACTION")
    verify = actions.add_parser(
        "verify",
        help="check every record; exit 1 naming segment and byte offset if damaged",
    )
    verify.set_defaults(func=run_verify)
    compact = actions.add_parser(
        "compact",
        help="write a checkpoint and delete older segments (done by the daemon when it runs)",
    )
    compact.set_defaults(func=run_compact)
    cat = actions.add_parser("cat", help="print records as JSON lines (for jq)")
    cat.add_argument(
        "--type",
        dest="types",
        action="append",
        metavar="T",
        help="only records of this type (repeatable), e.g. transfer-failed",
    )
    cat.set_defaults(func=run_cat)


def has_journal(state_dir: Path) -> bool:
    """Whether the state dir has a journal folder; False only when there is none yet. Anything
    else in its place (a file, a symlink loop, a folder we may not search) is an ``OSError``,
    one line from ``main`` (exit 2), rather than an empty journal that lets ``status`` say all
    is well while the daemon cannot start."""
    directory = state_dir / JOURNAL_DIR
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(directory))
    return True


def damaged(exc: JournalDamaged) -> int:
    """Journal damage as one line on stderr; exit 1."""
    print(f"b2bd: {exc}", file=sys.stderr)
    return EXIT_DAMAGED


# -- journal verify|compact|cat --------------------------------------------------------------------


def run_verify(args: argparse.Namespace) -> int:
    _, settings = with_settings(args.config)
    directory = settings.state_dir / JOURNAL_DIR
    if not has_journal(settings.state_dir):
        print(f"no journal yet in {directory}")
        return EXIT_OK
    scan = scan_journal_retrying(directory, deep=True)  # the daemon may compact meanwhile
    damage = [*scan.damage]
    if (history := verify_history(directory)) is not None:
        damage.append(history)
    for d in damage:
        print(f"damaged: segment {d.segment}, byte {d.offset}: {d.what}")
    if scan.tail is not None:
        t = scan.tail
        print(
            f"damaged: segment {t.segment}, byte {t.offset}: {t.what} (the torn last record: "
            "opening the journal for writing cuts it off and keeps its bytes in a .broken file; "
            "if the daemon is running, it may be a record being written)"
        )
    if damage or scan.tail is not None:
        return EXIT_DAMAGED
    first = scan.segments[0].first_seq if scan.segments else 0
    print(
        f"journal intact: records {first}..{scan.next_seq - 1} in {len(scan.segments)} "
        f"segment(s) under {directory}"
    )
    repairs = read_state(settings.state_dir).repairs
    if repairs and not _acknowledge(settings, repairs):
        return EXIT_USAGE
    return EXIT_OK


def _acknowledge(settings: Settings, repairs: tuple[Repair, ...]) -> bool:
    """Show the repairs ``status`` has been showing and journal that they were seen; False
    (said on stderr) when that could not be journaled."""
    for r in repairs:
        print(f"repaired on {iso(r.when)}: {_repair_text(r)}")
    up_to = max(r.seq for r in repairs)
    try:
        link = find_daemon(settings)
        if link is not None:  # the daemon holds the journal: it writes the record
            link.ask("acknowledge-repairs", up_to=up_to)
        else:
            if (refusal := root_refusal(settings.state_dir, "journal verify")) is not None:
                raise UsageError(refusal)
            with Journal.open(settings.state_dir) as journal:
                journal.append("repairs-acknowledged", up_to=up_to)
    except (DaemonError, UsageError, JournalError, OSError) as exc:
        print(f"b2bd: repairs not acknowledged: {exc}", file=sys.stderr)
        return False
    print(f"acknowledged {len(repairs)} repair(s): status no longer shows them")
    return True


def _repair_text(r: Repair) -> str:
    return (
        f"segment {r.segment} cut at byte {r.offset}, {r.length} damaged byte(s) kept in "
        f"{r.broken_file}"
    )


def run_compact(args: argparse.Namespace) -> int:
    _, settings = with_settings(args.config)
    link = find_daemon(settings)
    if link is not None:  # the daemon holds the journal: it compacts, in its loop
        try:
            done = link.ask("compact")
        except DaemonError as exc:
            print(f"b2bd: {exc.message}", file=sys.stderr)
            return error_exit(exc.code)
        by = f" by the running daemon (pid {done['pid']})"
        _print_compacted(by, done["checkpoint"], len(done["removed"]), done["history"],
                         done["history_days"])  # fmt: skip
        return EXIT_OK
    if (refusal := root_refusal(settings.state_dir, "journal compact")) is not None:
        raise UsageError(refusal)
    try:
        with Journal.open(settings.state_dir) as journal:
            result = journal.compact(history_days=settings.history_days)
    except JournalDamaged as exc:
        return damaged(exc)
    except JournalBusy as exc:
        raise UsageError(
            f"cannot compact: {exc}; a process holds the journal but answers on none of the "
            "control socket places (a `trigger` running without the daemon: try again when it "
            "has finished)"
        ) from None
    except JournalError as exc:  # cannot open, or cannot write: the message names the path
        raise UsageError(f"cannot compact: {exc}") from None
    except OSError as exc:  # removing the older segments (the next open finishes that)
        raise UsageError(
            explain(exc, "cannot compact", settings.state_dir / JOURNAL_DIR, user=running_as())
            + "; the checkpoint is written, so the next open removes the older segments"
        ) from None
    _print_compacted("", result.checkpoint.seq, len(result.removed), result.history,
                     settings.history_days)  # fmt: skip
    return EXIT_OK


def _print_compacted(by: str, checkpoint: int, removed: int, history: int, days: int) -> None:
    print(
        f"compacted{by}: checkpoint is record {checkpoint}; removed {removed} older "
        f"segment(s); history keeps {history} record(s) of the last {days} day(s)"
    )


def run_cat(args: argparse.Namespace) -> int:
    _, settings = with_settings(args.config)
    wanted = frozenset(args.types) if args.types else None
    try:
        kept = records(settings.state_dir)
        out = sys.stdout.buffer
        encode = Codec.encoder.encode
        for record in kept:
            if wanted is None or record.type in wanted:
                out.write(encode(record) + b"\n")
        out.flush()  # `b2bd journal cat | head`: BrokenPipeError, handled quietly by main
    except JournalDamaged as exc:
        return damaged(exc)
    return EXIT_OK


def records(state_dir: Path) -> Any:
    """Every record kept: the compactions' history, then the live journal."""
    if not has_journal(state_dir):
        return ()
    return read_journal(state_dir, with_history=True)
