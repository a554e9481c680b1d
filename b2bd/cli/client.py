"""The CLI's side of the control socket (protocol: :mod:`b2bd.daemon.protocol`): find the
daemon serving this config's journal, send it one request, read its answer.

:func:`find_daemon` tries the socket places in order. No socket file, or one nobody accepts on
(the stale socket of a crashed daemon), means no daemon there; a daemon greeting with another
state dir is another deployment's, and a process of another user than root, ours or the state
dir's owner is no daemon of ours (it is sent nothing): either way the search goes on. A socket
the caller may not use, a refusal, or a daemon that does not greet in time is a
:class:`~b2bd.cli.UsageError`: there is a daemon, and quietly working on its journal behind its
back is not an option. A place the caller may not look into (an operator in the group b2bd
cannot enter the 0700 state dir, where the socket is without systemd) does not end the search:
the next place (systemd's /run/b2bd) may answer; only when none does is it that error.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from b2bd.cli import EXIT_USAGE, UsageError
from b2bd.config.model import Settings
from b2bd.daemon.protocol import (
    MAX_RESPONSE,
    LineReader,
    ProtocolError,
    client_sockets,
    daemon_trusted,
    encode,
    peer_credentials,
    socket_address,
)
from b2bd.faults import explain
from b2bd.statedir import running_as

CONNECT_TIMEOUT = 5.0
ANSWER_TIMEOUT = 60.0  # for the first answer line; a running trigger then streams as it goes


EXIT_DAMAGED = 1  # README's exit codes: a damaged journal


def error_exit(code: str) -> int:
    """The exit code for the daemon's final ``error`` line ``code``, as README's table has it:
    1 for a damaged journal; 2 for the rest (``io-error``, ``internal``, ``starting``,
    ``bad-request``...: an I/O or usage error, as the same fault without a daemon)."""
    return EXIT_DAMAGED if code == "damaged" else EXIT_USAGE


class DaemonError(Exception):
    """The daemon's final ``error`` line: ``code`` and its message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class DaemonLink:
    """One connection to a running daemon, greeted and checked (see :func:`find_daemon`)."""

    def __init__(
        self, sock: socket.socket, path: Path, reader: LineReader, hello: dict[str, Any]
    ) -> None:
        self.sock = sock
        self.path = path
        self.hello = hello
        self._reader = reader

    def request(self, op: str, **fields: Any) -> Iterator[dict[str, Any]]:
        """Send the request; yield the daemon's lines up to and including the final one
        (``result`` or ``error``). The connection is closed afterwards."""
        try:
            self.sock.sendall(encode({"op": op, **fields}))
            deadline: float | None = time.monotonic() + ANSWER_TIMEOUT
            while True:
                try:
                    line = self._reader.message(deadline)
                except (ProtocolError, OSError) as exc:
                    raise UsageError(
                        f"the daemon at {self.path} stopped answering: {exc}"
                    ) from None
                if line is None:
                    raise UsageError(
                        f"the daemon at {self.path} closed the connection without an answer"
                    )
                deadline = None  # it answers: a long run may take its time
                yield line
                if line.get("type") in ("result", "error"):
                    return
        finally:
            self.close()

    def ask(self, op: str, **fields: Any) -> Any:
        """A request with one answer: its ``result``, or :class:`DaemonError`."""
        for line in self.request(op, **fields):
            if line.get("type") == "result":
                return line.get("result")
            if line.get("type") == "error":
                raise DaemonError(str(line.get("code")), str(line.get("message")))
        raise UsageError(f"the daemon at {self.path} sent no answer")  # pragma: no cover

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> DaemonLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def find_daemon(settings: Settings) -> DaemonLink | None:
    """A greeted connection to the daemon serving ``settings.state_dir``, or None when none is
    running (see the module docstring)."""
    denied: UsageError | None = None
    for path in client_sockets(settings):
        try:
            link = _connect(path, settings.state_dir)
        except SocketDenied as exc:
            # A place this user may not look into (an operator in the group b2bd and the
            # state dir, 0700, where the socket would be without systemd): try the others.
            denied = denied or exc
            continue
        if link is None:
            continue
        if _same_dir(link.hello.get("state_dir"), settings.state_dir):
            return link
        link.close()
    if denied is not None:
        raise denied  # a daemon may listen where we may not look: never act as if none did
    return None


class SocketDenied(UsageError):
    """Connecting to a candidate socket was refused by the file system (EACCES)."""


def _connect(path: Path, state_dir: Path) -> DaemonLink | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(CONNECT_TIMEOUT)
    try:
        with socket_address(path) as address:
            sock.connect(address)
        _, uid, _, _ = peer_credentials(sock)
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
        sock.close()
        return None  # no daemon here (or a crashed one's socket file)
    except PermissionError:
        sock.close()
        raise SocketDenied(
            f"cannot use the daemon's control socket {path}: permission denied (it serves "
            "root, the daemon's user and members of its group)"
        ) from None
    except OSError as exc:
        sock.close()
        raise UsageError(explain(exc, "cannot reach the daemon", path, user=running_as())) from None
    if not daemon_trusted(uid, state_dir):
        sock.close()
        return None  # another user listens where a daemon might: not ours, told nothing
    reader = LineReader(sock, MAX_RESPONSE)
    try:
        hello = reader.message(time.monotonic() + ANSWER_TIMEOUT)
    except (ProtocolError, OSError) as exc:
        sock.close()
        raise UsageError(f"the daemon at {path} did not greet: {exc}") from None
    if hello is None or hello.get("type") == "error":
        sock.close()
        why = "closed the connection" if hello is None else hello.get("message")
        raise UsageError(f"the daemon at {path}: {why}")
    return DaemonLink(sock, path, reader, hello)


def _same_dir(theirs: object, ours: Path) -> bool:
    if not isinstance(theirs, str):
        return False
    return Path(theirs).resolve() == ours.resolve()
