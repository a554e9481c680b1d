"""``b2bd diff``: what a config change does, for review before merge.

Both sides are loaded with the config loader (the fork pool for large dirs; files whose bytes
are the same on both sides are parsed once), the new one with the old as its last good, as a
running daemon's reload applies it; :mod:`b2bd.config.diff` compares them. ``--git REV`` takes
the old side from a git revision of the config dir (:mod:`b2bd.config.gitrev`) and the new side
from the working tree. The only clock read is the default ``--from`` (now).

Exit 0: no change in effect, 1: changes, 2: usage or I/O error (one line).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from b2bd.cli import UsageError
from b2bd.cli.plan import parse_instant
from b2bd.clock import utc_now
from b2bd.config.diff import ConfigDiff, TaskChange, TaskSide, as_json, compare
from b2bd.config.load import ConfigDirError, ParseCache, load_config
from b2bd.config.model import DEFAULT_TIMEZONE, Config, Problem

EXIT_SAME = 0
EXIT_CHANGED = 1
MARKDOWN_BUDGET = 60_000  # characters; GitHub refuses a comment over 65,536
MARKDOWN_IDS = 20  # base ids shown per table cell


def register(sub: Any) -> None:
    p = sub.add_parser(
        "diff",
        help="what a config change does: tasks, the bases they reach, next slots, problems",
        description=(
            "Compare two config dirs (OLD_DIR NEW_DIR), or the config dir at a git revision with "
            "the working tree (--git REV): tasks added, removed and changed (which fields), the "
            "bases each task gains and loses after tags, exclusions and prerequisites, bases "
            "added, removed and changed, problems introduced and fixed, and the next slots that "
            "move. Exit 0: no change, 1: changes, 2: usage or I/O error."
        ),
    )
    p.add_argument("dirs", nargs="*", type=Path, metavar="DIR", help="OLD_DIR NEW_DIR")
    p.add_argument(
        "--git",
        metavar="REV",
        help="compare the config dir (--config) at this git revision with the working tree",
    )
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    p.add_argument(
        "--from",
        dest="start",
        metavar="ISO",
        help="next slots at or after this instant instead of now; a time without an offset is "
        "read in the new b2bd.yaml's timezone",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    now = utc_now()
    with ExitStack() as stack:
        if args.git is not None:
            if args.dirs:
                raise UsageError("diff takes either OLD_DIR NEW_DIR or --git REV, not both")
            from b2bd.config.gitrev import GitRevError, config_at

            try:
                old_root = stack.enter_context(config_at(args.config, args.git))
            except GitRevError as exc:
                raise UsageError(str(exc)) from exc
            new_root = Path(args.config)
            labels = (f"{args.git}", "working tree")
        elif len(args.dirs) == 2:
            old_root, new_root = args.dirs
            labels = (str(old_root), str(new_root))
        else:
            raise UsageError("diff needs OLD_DIR NEW_DIR, or --git REV (see b2bd diff --help)")
        old, new = load_pair(old_root, new_root, now)
    start = now
    zone = _zone(new)
    if args.start:
        start = parse_instant(args.start, zone, "--from")
    diff = compare(old, new, start)
    if args.format == "json":
        out = json.dumps(as_json(diff), indent=2) + "\n"
    elif args.format == "markdown":
        out = format_markdown(diff, labels, zone)
    else:
        out = format_text(diff, labels, zone)
    print(out, end="")
    return EXIT_CHANGED if diff.changed else EXIT_SAME


def load_pair(old_root: Path, new_root: Path, now: dt.datetime) -> tuple[Config, Config]:
    """Both configs (as ``plan`` does, loaded as of now: expiry warnings are today's): the old
    alone, the new with the old as its last good; files unchanged between them parsed once.
    Every base is in view (``shard="all"``, as ``validate``): a change is reviewed for every
    instance, and CI has no shard index."""
    cache: ParseCache = {}
    options: dict[str, Any] = {"now": now, "cache": cache, "workers": _cores(), "shard": "all"}
    try:
        old = load_config(old_root.resolve(), **options)
        new = load_config(new_root.resolve(), last_good=old, **options)
    except ConfigDirError as exc:
        raise UsageError(str(exc)) from exc
    return old, new


def _zone(config: Config) -> ZoneInfo:
    return config.settings.timezone if config.settings else DEFAULT_TIMEZONE


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# --- text -------------------------------------------------------------------------------------


def clean(text: str) -> str:
    """Text from a config dir, safe on a terminal: control and format characters (escape
    sequences, newlines, bidi overrides) shown as escapes."""
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() and unicodedata.category(c) != "Cf" else repr(c)[1:-1] or "?"
        for c in text
    )


def slot_text(slot: dt.datetime | None, zone: ZoneInfo, default: ZoneInfo) -> str:
    """``Sat 2026-10-24 06:30 BST (2026-10-24 05:30 UTC)``; the zone's name when it is not the
    config's default; ``none`` for no slot (disabled, or none left)."""
    if slot is None:
        return "none"
    local = slot.astimezone(zone)
    text = (
        f"{local:%a %Y-%m-%d %H:%M} {local.tzname()} ({slot.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC)"
    )
    return text if zone.key == default.key else f"{text} [{zone.key}]"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def summary(diff: ConfigDiff) -> str:
    parts = [
        f"tasks: {len(diff.tasks_added)} added, {len(diff.tasks_removed)} removed, "
        f"{len(diff.tasks_changed)} changed",
        f"bases: {len(diff.bases_added)} added, {len(diff.bases_removed)} removed, "
        f"{len(diff.bases_changed)} changed",
        f"problems: {len(diff.problems_introduced)} introduced, {len(diff.problems_fixed)} fixed",
    ]
    if diff.settings_changed:
        parts.append(f"settings: {len(diff.settings_changed)} changed")
    return "; ".join(parts)


def no_change(diff: ConfigDiff) -> str:
    if diff.files_differing:
        return (
            f"No changes in effect ({_count(diff.files_differing, 'file')} "
            f"{'differs' if diff.files_differing == 1 else 'differ'} in comments or layout only)."
        )
    return "No changes."


def errors_warning(diff: ConfigDiff) -> str:
    return (
        f"The new config has {_count(diff.new_errors, 'error')}: a running daemon reloading it "
        "keeps each bad file's last good version in force; a daemon started on it refuses to "
        "start (exit 78)."
    )


def kept_line(task_id: str) -> str:
    return (
        f"task {task_id}: its file is invalid in the new config, so a reload keeps the old "
        "version in force (shown unchanged)"
    )


def format_text(diff: ConfigDiff, labels: tuple[str, str], zone: ZoneInfo) -> str:
    lines = [f"b2bd diff {clean(labels[0])} -> {clean(labels[1])}"]
    if not diff.changed:
        lines.append(no_change(diff))
        return "\n".join(lines) + "\n"
    lines.append(summary(diff))
    for side, word in ((diff.tasks_added, "added"), (diff.tasks_removed, "removed")):
        for t in side:
            lines.append(f"task {word}: {t.id} ({clean(t.file)})")
            lines.append(f"  bases ({len(t.targets)}): {', '.join(t.targets) or '-'}")
            lines.append(f"  next slot: {slot_text(t.next, t.zone, zone)}")
    for c in diff.tasks_changed:
        lines.append(f"task changed: {c.id}")
        if c.fields:
            lines.append(f"  fields: {', '.join(clean(f) for f in c.fields)}")
        if c.bases_added:
            lines.append(f"  bases gained ({len(c.bases_added)}): {', '.join(c.bases_added)}")
        if c.bases_removed:
            lines.append(f"  bases lost ({len(c.bases_removed)}): {', '.join(c.bases_removed)}")
        if _moved(c):
            before = slot_text(c.next_before, c.zone_before, zone)
            after = slot_text(c.next_after, c.zone_after, zone)
            lines.append(f"  next slot: {before} -> {after}")
    lines += [f"base added: {b}" for b in diff.bases_added]
    lines += [f"base removed: {b}" for b in diff.bases_removed]
    lines += [
        f"base changed: {b.id}: {', '.join(clean(f) for f in b.fields)}" for b in diff.bases_changed
    ]
    if diff.settings_changed:
        lines.append(f"settings changed: {', '.join(clean(f) for f in diff.settings_changed)}")
    lines += [f"problem introduced: {_problem_text(p)}" for p in diff.problems_introduced]
    lines += [f"problem fixed: {_problem_text(p)}" for p in diff.problems_fixed]
    lines += [f"kept: {kept_line(task_id)}" for task_id in diff.kept]
    if diff.new_errors:
        lines.append(errors_warning(diff))
    return "\n".join(lines) + "\n"


def _moved(c: TaskChange) -> bool:
    return c.next_before != c.next_after


def _problem_text(p: Problem) -> str:
    return (
        f"{clean(p.file)}:{p.line}:{p.column}: {p.severity}: {clean(p.message)} [{clean(p.rule)}]"
    )


# --- markdown ---------------------------------------------------------------------------------

# What could end a cell, open code, emphasis, a link, an image, HTML, an entity, math or a
# mention; the rest of ASCII punctuation (. - / : , ') is left readable.
_SPECIAL = frozenset("\\`*_[]<>|~@#!&(){}$^")


def md(text: str) -> str:
    """Untrusted text as literal markdown inside a table cell: markdown's active characters
    backslash-escaped (so ``|`` cannot end the cell, a backtick cannot open code, ``@team``
    mentions no one, ``<b>`` is no HTML, ``[x](y)`` no link, ``https://x`` and ``www.x`` no
    autolink; an e-mail address still becomes a mailto link, which cmark-gfm finds through any
    escape), line breaks and other control characters as spaces or escapes."""
    out: list[str] = []
    for c in clean(text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")):
        out.append(f"\\{c}" if c in _SPECIAL else c)
    # GitHub's autolinks (scheme:// and www.) would make a PR author's URL a link in the CI
    # bot's comment: an escaped ':' or '.' renders the same and links nothing.
    return _WWW.sub(r"\1\\.", "".join(out).replace("://", "\\://"))


_WWW = re.compile(r"(www)\.", re.IGNORECASE)


def _ids(ids: Sequence[str]) -> str:
    shown = ", ".join(md(i) for i in ids[:MARKDOWN_IDS])
    if len(ids) > MARKDOWN_IDS:
        shown += f" … and {len(ids) - MARKDOWN_IDS} more"
    return shown


class _Budget:
    """Characters left for table rows, so the comment stays under GitHub's limit."""

    def __init__(self, chars: int) -> None:
        self.left = chars

    def rows(self, rows: Iterable[str], total: int) -> list[str]:
        out: list[str] = []
        for row in rows:
            if len(row) + 1 > self.left:
                out.append(
                    f"\n… {total - len(out)} more not shown: run `b2bd diff --format json` "
                    "for everything"
                )
                self.left = 0
                break
            self.left -= len(row) + 1
            out.append(row)
        return out


def format_markdown(diff: ConfigDiff, labels: tuple[str, str], zone: ZoneInfo) -> str:
    heading = f"### b2bd diff: {md(labels[0])} → {md(labels[1])}"
    if not diff.changed:
        return f"{heading}\n\n{no_change(diff)}\n"
    lines = [heading, "", summary(diff) + ".", ""]
    if diff.new_errors:
        lines += [f"> **Warning:** {errors_warning(diff)}", ""]
    budget = _Budget(MARKDOWN_BUDGET)
    task_rows = [
        *(_side_row("added", t, zone) for t in diff.tasks_added),
        *(_change_row(c, zone) for c in diff.tasks_changed),
        *(_side_row("removed", t, zone) for t in diff.tasks_removed),
    ]
    if task_rows:
        lines += [
            "**Tasks**",
            "",
            "| | Task | Fields | Bases gained | Bases lost | Next slot |",
            "|---|---|---|---|---|---|",
            *budget.rows(task_rows, len(task_rows)),
            "",
        ]
    if diff.kept:  # one per broken file: a mass breakage is as long as any table
        kept = [f"- {md(kept_line(task_id))}" for task_id in diff.kept]
        lines += [*budget.rows(kept, len(kept)), ""]
    base_rows = [
        *(f"| added | {md(b)} | |" for b in diff.bases_added),
        *(
            f"| changed | {md(b.id)} | {', '.join(md(f) for f in b.fields)} |"
            for b in diff.bases_changed
        ),
        *(f"| removed | {md(b)} | |" for b in diff.bases_removed),
    ]
    if base_rows:
        lines += [
            "**Bases**",
            "",
            "| | Base | Fields |",
            "|---|---|---|",
            *budget.rows(base_rows, len(base_rows)),
            "",
        ]
    if diff.settings_changed:
        lines += [
            f"**Settings (b2bd.yaml) changed:** {', '.join(md(f) for f in diff.settings_changed)}",
            "",
        ]
    problem_rows = [
        *(_problem_row("introduced", p) for p in diff.problems_introduced),
        *(_problem_row("fixed", p) for p in diff.problems_fixed),
    ]
    if problem_rows:
        lines += [
            "**Problems**",
            "",
            "| | Severity | Where | Rule | Message |",
            "|---|---|---|---|---|",
            *budget.rows(problem_rows, len(problem_rows)),
            "",
        ]
    return "\n".join(lines).rstrip("\n") + "\n"


def _side_row(word: str, t: TaskSide, zone: ZoneInfo) -> str:
    gained, lost = (_ids(t.targets), "") if word == "added" else ("", _ids(t.targets))
    slot = slot_text(t.next, t.zone, zone) if word == "added" else ""
    return f"| {word} | {md(t.id)} | | {gained} | {lost} | {slot} |"


def _change_row(c: TaskChange, zone: ZoneInfo) -> str:
    slot = ""
    if _moved(c):
        before = slot_text(c.next_before, c.zone_before, zone)
        after = slot_text(c.next_after, c.zone_after, zone)
        slot = f"{before} → {after}"
    fields = ", ".join(md(f) for f in c.fields)
    return (
        f"| changed | {md(c.id)} | {fields} | {_ids(c.bases_added)} | {_ids(c.bases_removed)} "
        f"| {slot} |"
    )


def _problem_row(word: str, p: Problem) -> str:
    where = f"{p.file}:{p.line}:{p.column}"
    return f"| {word} | {p.severity} | {md(where)} | {md(p.rule)} | {md(p.message)} |"
