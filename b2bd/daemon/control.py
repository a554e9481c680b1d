"""The daemon's control socket server (protocol: :mod:`b2bd.daemon.protocol`).

One accept thread and one thread per connection, so nothing a client does reaches the daemon
loop: a request must arrive whole within ``REQUEST_TIMEOUT`` and within ``MAX_REQUEST`` bytes,
an answer that the client does not take within ``SEND_TIMEOUT`` ends the connection, and at
most ``MAX_CONNECTIONS`` are served at once (more get a ``busy`` error). While the process is
out of file descriptors, connections wait in the backlog and accepting is retried every
``_ACCEPT_PAUSE`` seconds (one ``control-accept-failed`` error a minute at most, however often
a freed descriptor lets one connection through in between), never in a loop spinning on a core.
Handlers run on the connection's thread and answer through a :class:`Reply`; one that must
wait for the loop (a trigger) hands its Reply over and the connection thread sends what arrives
on it, until the final line.

Binding (:meth:`ControlServer.bind`) happens after the journal lock is taken, so a second daemon
on the same journal never gets here. The socket's folder must belong to root or the daemon's
user and be writable by nobody else. The socket is made under a temporary name, given mode
0660, and renamed into place: a stale socket left by a crashed daemon (nobody accepts on it) is
replaced; a live one (another daemon, configured with the same path) or anything that is not a
socket is refused. :meth:`ControlServer.close` stops accepting, ends every open exchange with a
final error line, and removes the socket if it is still the one it made.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import select
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from b2bd.daemon.protocol import (
    MAX_REQUEST,
    REQUEST_TIMEOUT,
    SEND_TIMEOUT,
    LineReader,
    ProtocolError,
    encode,
    peer_allowed,
    peer_credentials,
    socket_address,
)
from b2bd.faults import explain
from b2bd.log import get_logger
from b2bd.statedir import running_as

MAX_CONNECTIONS = 32
SOCKET_MODE = 0o660
_FLUSH_WAIT = 5.0  # seconds close() gives connection threads to send their last line
_ACCEPT_PAUSE = 0.5  # seconds between accept() attempts while the process lacks descriptors
_ACCEPT_WARN_EVERY = 60.0  # seconds: at most one control-accept-failed line per minute
_SCARCE = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

log = get_logger("b2bd.control")

Handler = Callable[[dict[str, Any], "Reply"], None]


class ControlError(Exception):
    """The control socket cannot be set up; the message names the path and why."""


class Reply:
    """The answer to one request: lines to send, the last one final. Thread-safe; ``send``
    and ``final`` never block (a slow client holds up only its own connection thread), and
    after the final line, or once the client is gone, further lines are dropped."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[dict[str, Any], bool]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self.subject = "the request"  # what a stopping daemon says it did not finish

    @property
    def finished(self) -> bool:
        with self._lock:
            return self._closed

    def send(self, message: dict[str, Any]) -> None:
        with self._lock:
            if not self._closed:
                self._queue.put((message, False))

    def final(self, message: dict[str, Any]) -> bool:
        """Send the last line; False if the reply was already over."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            self._queue.put((message, True))
            return True

    def result(self, result: Any) -> bool:
        return self.final({"type": "result", "result": result})

    def error(self, code: str, message: str) -> bool:
        return self.final({"type": "error", "code": code, "message": message})

    def abandon(self) -> None:
        with self._lock:
            self._closed = True

    def lines(self) -> Iterator[tuple[dict[str, Any], bool]]:
        while True:
            message, last = self._queue.get()
            yield message, last
            if last:
                return


class ControlServer:
    """Serves ``handlers`` (op name -> handler) on a bound Unix socket; ``hello`` is the
    greeting an allowed peer gets first."""

    def __init__(
        self,
        listener: socket.socket,
        path: Path,
        hello: dict[str, Any],
        handlers: Mapping[str, Handler],
    ) -> None:
        self.path = path
        self._listener = listener
        self._hello = hello
        self._handlers = dict(handlers)
        self._identity = os.stat(path, follow_symlinks=False)
        self._stop_read, self._stop_write = os.pipe2(os.O_CLOEXEC)
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, Reply | None] = {}
        self._threads: set[threading.Thread] = set()
        self._accepting = threading.Thread(target=self._accept, name="control", daemon=True)
        self._closed = False

    # -- set-up ----------------------------------------------------------------------------

    @classmethod
    def bind(
        cls, path: Path, hello: dict[str, Any], handlers: Mapping[str, Handler]
    ) -> ControlServer:
        """Listen on ``path`` (see the module docstring); :class:`ControlError` if not."""
        _refuse_shared_folder(path)
        _refuse_live_or_foreign(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            with socket_address(tmp) as address:
                listener.bind(address)
            os.chmod(tmp, SOCKET_MODE)
            listener.listen(64)
            os.rename(tmp, path)
        except OSError as exc:
            listener.close()
            tmp.unlink(missing_ok=True)
            raise ControlError(f"control socket {path}: {exc.strerror or exc}") from None
        server = cls(listener, path, hello, handlers)
        server._accepting.start()
        return server

    # -- serving ---------------------------------------------------------------------------

    def _accept(self) -> None:
        warned_at: float | None = None
        while True:
            watched: list[socket.socket | int] = [self._listener, self._stop_read]
            ready, _, _ = select.select(watched, [], [])
            if self._stop_read in ready:
                return
            try:
                conn, _ = self._listener.accept()
            except OSError as exc:
                if exc.errno not in _SCARCE:
                    continue  # e.g. the client gave up between select and accept
                # The connection stays in the backlog, so the listener stays readable: retrying
                # at once would spin on a core until a descriptor is free. Say so (not again
                # within a minute, though a descriptor freed now and then lets one through); wait.
                now = time.monotonic()
                if warned_at is None or now - warned_at >= _ACCEPT_WARN_EVERY:
                    error = explain(
                        exc, "cannot accept a control connection", self.path, user=running_as()
                    )
                    log.error("control-accept-failed", error=error, retry_every=_ACCEPT_PAUSE)
                    warned_at = now
                select.select([self._stop_read], [], [], _ACCEPT_PAUSE)
                continue
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                crowded = len(self._connections) >= MAX_CONNECTIONS
                if not crowded:
                    self._connections[conn] = None
            if crowded:
                busy = "too many control connections; try again"
                _send_quietly(conn, {"type": "error", "code": "busy", "message": busy})
                conn.close()
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), name="control-conn",
                                      daemon=True)  # fmt: skip
            with self._lock:
                self._threads.add(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._exchange(conn)
        except (OSError, ProtocolError) as exc:
            log.info("control-connection-ended", reason=str(exc))
        except Exception as exc:  # our bug (an answer that is not JSON): one line, no traceback
            log.error("control-connection-failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                reply = self._connections.pop(conn, None)
                self._threads.discard(threading.current_thread())
            if reply is not None:
                reply.abandon()
            with contextlib.suppress(OSError):
                conn.close()

    def _exchange(self, conn: socket.socket) -> None:
        deadline = time.monotonic() + REQUEST_TIMEOUT
        conn.settimeout(REQUEST_TIMEOUT)
        pid, uid, gid, groups = peer_credentials(conn)
        if not peer_allowed(uid, gid, groups):
            log.warning("control-refused", pid=pid, uid=uid, gid=gid)
            message = (
                f"refused: uid {uid} (gid {gid}) is not root, the daemon's user or a member "
                "of its group"
            )
            _send(conn, {"type": "error", "code": "refused", "message": message})
            return
        _send(conn, self._hello)
        request = LineReader(conn, MAX_REQUEST).message(deadline)
        if request is None:
            return  # connected and left: a liveness probe
        reply = Reply()
        with self._lock:
            if self._closed:
                reply.error("stopping", "the daemon is stopping")
            else:
                self._connections[conn] = reply
        handler = self._handlers.get(str(request.get("op")))
        if reply.finished:
            pass
        elif handler is None:
            known = ", ".join(sorted(self._handlers))
            reply.error("bad-request", f"unknown op {request.get('op')!r} (ops: {known})")
        else:
            try:
                handler(request, reply)
            except Exception as exc:  # a handler's bug ends this request, not the daemon
                error = f"{type(exc).__name__}: {exc}"
                log.error("control-request-failed", op=request.get("op"), error=error)
                reply.error("internal", f"{type(exc).__name__} while answering the request")
        conn.settimeout(SEND_TIMEOUT)
        for answer, _last in reply.lines():
            _send(conn, answer)

    # -- stopping --------------------------------------------------------------------------

    def broadcast(self, message: dict[str, Any]) -> None:
        """Send a non-final line to every exchange still open (e.g. "the daemon is stopping")."""
        with self._lock:
            replies = [r for r in self._connections.values() if r is not None]
        for reply in replies:
            reply.send(message)

    def close(self, reason: str) -> None:
        """Stop accepting, end every open exchange with a final ``stopped`` error naming what
        it waited for and ``reason``, give the connection threads a moment to send it, and
        remove the socket if it is still ours."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            replies = [r for r in self._connections.values() if r is not None]
            threads = list(self._threads)
        os.write(self._stop_write, b"\0")
        self._accepting.join()
        self._listener.close()
        for reply in replies:
            reply.error(
                "stopped",
                f"the daemon stopped ({reason}) before {reply.subject} finished; transfers "
                "still running were cut short and are journaled as interrupted at its next start",
            )
        deadline = time.monotonic() + _FLUSH_WAIT
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        os.close(self._stop_read)
        os.close(self._stop_write)
        try:
            now = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return
        if (now.st_dev, now.st_ino) == (self._identity.st_dev, self._identity.st_ino):
            self.path.unlink(missing_ok=True)


def _refuse_shared_folder(path: Path) -> None:
    """Raise :class:`ControlError` unless ``path``'s folder belongs to root or us and nobody
    else may write in it: whoever may could swap the new socket for a symlink between its bind
    and its chmod (and the daemon, perhaps root, would chmod the symlink's target), replace it
    later, or take its name first (even with the sticky bit)."""
    folder = path.parent
    try:
        st = os.stat(folder)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except OSError as exc:
        raise ControlError(
            f"control socket {path}: {explain(exc, path=folder, user=running_as())}"
        ) from None
    if st is None or not stat.S_ISDIR(st.st_mode):
        raise ControlError(f"control socket {path}: no such directory {folder}")
    advice = "use a folder only the daemon's user (or root) can write, such as /run/b2bd"
    if st.st_uid not in (0, os.geteuid()):
        raise ControlError(
            f"control socket {path}: its folder {folder} belongs to uid {st.st_uid}, "
            f"neither root nor the daemon's user; {advice}"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ControlError(
            f"control socket {path}: other users may write in its folder {folder} "
            f"(mode {stat.S_IMODE(st.st_mode):04o}) and so take or swap the socket; {advice}"
        )


def _refuse_live_or_foreign(path: Path) -> None:
    """Raise :class:`ControlError` when ``path`` holds a socket someone accepts on, or
    anything but a socket; a socket nobody accepts on (a crashed daemon's) may be replaced."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ControlError(
            f"control socket {path}: something that is not a socket is in the way; remove it"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    probe.settimeout(2.0)
    try:
        with socket_address(path) as address:
            probe.connect(address)
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return  # stale: a crashed daemon's
        raise ControlError(f"control socket {path}: {exc.strerror or exc}") from None
    finally:
        probe.close()
    raise ControlError(f"control socket {path} is in use by another running daemon")


def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    conn.sendall(encode(message))


def _send_quietly(conn: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        conn.settimeout(1.0)
        _send(conn, message)
