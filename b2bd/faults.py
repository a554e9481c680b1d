"""Faults on our side of the file system, said the way an operator can act on them.

Every ``OSError`` the CLI or the daemon cannot handle ends as one line built here: what we were
doing, the path, what went wrong and what to do — never a traceback. The advice is a table by
``errno`` (a full disk needs space freed, a permission problem an owner or mode changed, a
read-only file system remounting); the caller says what it was doing (``"cannot write the
journal"``) and, where the exception carries none (``os.write`` on a descriptor), the path.

:class:`ConfinedError`, the error of :mod:`b2bd.confined`'s file access (a path, a fixed phrase
and a :data:`Kind`), is defined here, beside the wording of every other fault: explaining one
needs no I/O module.

:func:`shown` is how a value the user gave (a task or base id that is not there) appears in such
a line: cut short, so a mistyped or hostile 100,000-character id does not flood a terminal or a
job log.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Literal

SHOWN_CHARS = 64


def shown(value: str, limit: int = SHOWN_CHARS) -> str:
    """``value`` as echoed in a message: its first ``limit`` characters and "…" when longer."""
    return value if len(value) <= limit else value[:limit] + "…"


Kind = Literal["missing", "not-ours", "denied", "read-only", "full", "unreachable", "failed"]
KINDS: dict[Kind, str] = {
    "missing": "no such file or folder",
    "not-ours": "a symlink, FIFO, device or other non-regular thing where a file or folder "
    "should be (or a file where a folder should be)",
    "denied": "permission denied",
    "read-only": "read-only file system",
    "full": "no space left (or quota exceeded)",
    "unreachable": "the file system does not answer (a network share that went away)",
    "failed": "any other I/O error",
}
"""What went wrong, as a class callers map to DESIGN's reason classes."""


class ConfinedError(OSError):
    """A file or folder could not be used. ``str()`` is ``"<path>: <what>"``: the path and a
    fixed phrase (the system's error text or ours), nothing read from a file. An OSError, so
    code that handles failed file-system calls handles these too."""

    def __init__(self, path: Path, what: str, kind: Kind, errno_: int | None = None) -> None:
        super().__init__(f"{path}: {what}")
        self.path = path
        self.what = what
        self.kind: Kind = kind
        self.errno = errno_

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"


ADVICE: dict[int, str] = {
    errno.ENOSPC: "the file system is full: free space on it",
    errno.EDQUOT: "the disk quota is used up: raise it or free space",
    errno.EFBIG: "the file is larger than this process may write (RLIMIT_FSIZE, or the file "
    "system's limit)",
    errno.EACCES: "not allowed for {user}: fix its owner or mode (the service runs as user "
    "b2bd; README's install steps set the owners)",
    errno.EPERM: "not permitted for {user}: fix its owner or mode",
    errno.EROFS: "the file system is read-only: remount it read-write, or (under systemd) add "
    "the path to ReadWritePaths=",
    errno.ENOENT: "it does not exist: create it (see README's install steps)",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EISDIR: "it is a folder where a file was expected",
    errno.EIO: "the disk reported an I/O error: check the device (dmesg) before going on",
    errno.ELOOP: "a symlink loop, or a symlink where none may be: point the symlink at a real "
    "folder or file, or put one in its place",
    errno.EMFILE: "too many open files: raise LimitNOFILE=",
    errno.ENFILE: "the system's open-file table is full",
}


def explain(exc: OSError, doing: str = "", path: Path | str | None = None, *, user: str) -> str:
    """One line: ``<doing>: <path>: <what went wrong> (<advice>)``.

    ``path`` stands in for the exception's own file name when it has none (an error on a
    descriptor, from ``os.write`` or ``fsync``). ``user`` is who the process runs as, named in
    the advice on a permission error: the shell passes :func:`b2bd.statedir.running_as`.
    """
    where: Path | str | None
    if isinstance(exc, ConfinedError):  # carries its own path and wording
        where, reason = exc.path, exc.what
    else:
        where = exc.filename if exc.filename is not None else path
        reason = exc.strerror or type(exc).__name__
    parts = [doing] if doing else []
    if where is not None:
        parts.append(str(where) if exc.filename2 is None else f"{where} -> {exc.filename2}")
    parts.append(reason)
    advice = ADVICE.get(exc.errno or 0, "")
    if "{user}" in advice:
        advice = advice.format(user=user)
    text = ": ".join(parts)
    return f"{text} ({advice})" if advice else text
