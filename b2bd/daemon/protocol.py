"""The control socket's protocol (DESIGN section 8): where the socket is, and how it talks.

Newline-delimited JSON over a Unix stream socket, one request per connection:

1. The client connects. The daemon checks the peer's credentials (``SO_PEERCRED``): root, the
   daemon's own user, or its group (primary or supplementary). Anyone else gets one line
   ``{"type": "error", "code": "refused", "message": ...}`` and the connection is closed. The
   client checks the daemon's too: root, its own user or the state dir's owner; a socket
   anyone else answers on is not the daemon's, and is left without a word.
2. The daemon sends ``{"type": "hello", "protocol": 1, "version", "pid", "state_dir"}``; a
   client that finds another state dir than its config's is talking to another daemon.
3. The client sends one request line (at most :data:`MAX_REQUEST` bytes, within
   :data:`REQUEST_TIMEOUT` seconds of connecting): ``{"op": "status"}``, ``{"op": "history",
   "task": null, "limit": 20}``, ``{"op": "trigger", "task", "bases", "as_of", "force"}``,
   ``{"op": "compact"}`` or ``{"op": "acknowledge-repairs", "up_to": SEQ}``.
4. The daemon answers with any number of ``{"type": "accepted" | "progress", ...}`` lines
   (trigger only), then exactly one final line, ``{"type": "result", "result": ...}`` or
   ``{"type": "error", "code", "message"}``, and closes the connection.

Nothing here holds a daemon's state: paths, framing and the peer check, shared by the server
(:mod:`b2bd.daemon.control`) and the CLI's client.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from b2bd.config.model import Settings

PROTOCOL = 1
SOCKET_NAME = "b2bd.sock"
SYSTEMD_RUNTIME_DIR = Path("/run/b2bd")  # RuntimeDirectory=b2bd in systemd/b2bd.service
MAX_REQUEST = 64 * 1024  # bytes in a request line
MAX_RESPONSE = 256 * 1024 * 1024  # bytes in a response line (status of thousands of tasks)
REQUEST_TIMEOUT = 10.0  # seconds a client has to send its whole request
SEND_TIMEOUT = 30.0  # seconds a response line may take to be taken by the client
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes with the terminating NUL
_SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux >= 4.13


class ProtocolError(Exception):
    """The other side broke the protocol (too long, not JSON, closed early, too slow)."""


def daemon_socket(settings: Settings, environ: Mapping[str, str] = os.environ) -> Path:
    """Where the daemon listens: b2bd.yaml ``control_socket``, else
    ``$RUNTIME_DIRECTORY/b2bd.sock`` under systemd, else ``<state_dir>/b2bd.sock``."""
    if settings.control_socket is not None:
        return settings.control_socket
    runtime = environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        return Path(runtime) / SOCKET_NAME
    return settings.state_dir / SOCKET_NAME


def client_sockets(settings: Settings, environ: Mapping[str, str] = os.environ) -> list[Path]:
    """Where the CLI looks for a running daemon, in order: the daemon's place as seen from
    here, then (unless b2bd.yaml names the socket) systemd's ``/run/b2bd/b2bd.sock`` and
    ``<state_dir>/b2bd.sock`` (the CLI does not run with the service's environment)."""
    first = daemon_socket(settings, environ)
    if settings.control_socket is not None:
        return [first]
    candidates = [first, SYSTEMD_RUNTIME_DIR / SOCKET_NAME, settings.state_dir / SOCKET_NAME]
    return list(dict.fromkeys(candidates))


def encode(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


@contextlib.contextmanager
def socket_address(path: Path) -> Iterator[str]:
    """An address for ``bind``/``connect`` that fits ``sun_path``: the path itself, or for a
    long one the same file reached through ``/proc/self/fd`` and its open directory."""
    text = os.fsencode(path)
    if len(text) <= _SUN_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


class LineReader:
    """Reads newline-terminated lines from a socket, at most ``limit`` bytes each, with one
    ``deadline`` (a ``time.monotonic`` instant, or None) for the whole line: a client sending
    a byte every few seconds gains nothing. Each byte is looked at once, so a long answer (a
    big ``history``) is read in linear time."""

    def __init__(self, sock: socket.socket, limit: int) -> None:
        self.sock = sock
        self.limit = limit
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer known to hold no newline

    def line(self, deadline: float | None = None) -> bytes | None:
        """The next line without its newline; None at a clean end of stream."""
        while True:
            end = self._buffer.find(b"\n", self._scanned)
            if end != -1:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                self._scanned = 0
                return line
            self._scanned = len(self._buffer)
            if len(self._buffer) > self.limit:
                raise ProtocolError(f"line longer than {self.limit} bytes")
            if deadline is None:
                self.sock.settimeout(None)
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ProtocolError("timed out waiting for a whole line")
                self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise ProtocolError("timed out waiting for a whole line") from None
            if not chunk:
                if self._buffer:
                    raise ProtocolError("connection closed in the middle of a line")
                return None
            self._buffer += chunk

    def message(self, deadline: float | None = None) -> dict[str, Any] | None:
        """The next line as a JSON object; None at the end of the stream."""
        line = self.line(deadline)
        if line is None:
            return None
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python goes
            raise ProtocolError("not a JSON line") from None
        if not isinstance(value, dict):
            raise ProtocolError("not a JSON object")
        return value


def peer_credentials(sock: socket.socket) -> tuple[int, int, int, tuple[int, ...]]:
    """(pid, uid, gid, supplementary groups) of the process at the other end, as the kernel
    recorded them when it connected."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    try:
        groups_raw = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERGROUPS, 4 * 256)
    except OSError:
        groups: tuple[int, ...] = ()
    else:
        groups = struct.unpack(f"{len(groups_raw) // 4}I", groups_raw)
    return pid, uid, gid, groups


def peer_allowed(uid: int, gid: int, groups: tuple[int, ...]) -> bool:
    """Root, the daemon's own user, or a member of its group."""
    own_gid = os.getegid()
    return uid in (0, os.geteuid()) or gid == own_gid or own_gid in groups


def daemon_trusted(uid: int, state_dir: Path) -> bool:
    """The check the other way round, for the CLI: the process answering is root, the CLI's
    own user, or the owner of ``state_dir`` (the user the daemon writes its journal as).
    Anyone else merely listens where a daemon might: it is not asked anything."""
    if uid in (0, os.geteuid()):
        return True
    try:
        return os.stat(state_dir).st_uid == uid
    except OSError:
        return False
