"""Who may write the state dir: root must not write into a state dir that belongs to another
user (the service user, ``b2bd`` under systemd). Files root creates there — a journal segment,
its seal, the history file, the lock, the pupil key, a ``.broken`` file — would belong to root,
and the service, which runs as its own user, could then no longer write its journal: it would
stop (exit 1) at its next write or start.

So every command that writes the state dir directly (``run``, ``trigger`` and ``journal
compact`` without a daemon, ``journal verify``'s acknowledgement) asks :func:`root_refusal`
first, and refuses with its one line: run it as that user, or (``trigger``, ``compact``, the
acknowledgement) with the service running, which does the writing itself. Reading is never
refused.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

JOURNAL_DIR = "journal"  # b2bd.journal.reader.JOURNAL_DIR (not imported: this module stays light)


def _owner(path: Path) -> int | None:
    try:
        return path.stat().st_uid
    except OSError:
        return None  # not there yet (it is created as ours) or unreadable (which says so later)


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def running_as() -> str:
    """Who this process acts as on the file system, as :func:`b2bd.faults.explain`'s advice
    names it: ``name, uid N`` (``uid N`` when the user database has no name for it)."""
    uid = os.geteuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name}, uid {uid}"
    except KeyError:
        return f"uid {uid}"


def foreign_owner(state_dir: Path) -> int | None:
    """The uid that owns ``state_dir`` (or its journal folder) when we run as root and it is
    not root's; None when there is nothing to refuse."""
    if os.geteuid() != 0:
        return None  # another user's state dir refuses us by its modes
    for path in (state_dir / JOURNAL_DIR, state_dir):
        owner = _owner(path)
        if owner not in (None, 0):
            return owner
    return None


def root_refusal(state_dir: Path, command: str, *, via_daemon: bool = True) -> str | None:
    """The one-line refusal for ``b2bd COMMAND`` run as root on a state dir that belongs to
    another user, or None. ``via_daemon``: the running daemon could do it instead."""
    owner = foreign_owner(state_dir)
    if owner is None:
        return None
    user = user_name(owner)
    instead = "; or start the service, and the same command goes through it" if via_daemon else ""
    return (
        f"{state_dir} belongs to {user}: as root, b2bd {command} would leave files there that "
        f"the service cannot write; run it as that user (runuser -u {user} -- b2bd {command}, "
        f"or sudo -u {user} b2bd {command}){instead}"
    )
