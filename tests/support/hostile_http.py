"""A hostile HTTP/1.1 server on 127.0.0.1 for connector tests: every answer is written, byte by
byte if need be, by the test's own function, so it can do what no well-behaved server does
(trickle bytes, never end a body, send a gzip bomb, point ``next`` elsewhere, echo a token).

``HostileServer(answer)``: ``answer(request, send)`` is called for each request (keep-alive:
several per connection); ``send(bytes)`` writes to the socket (raising ``OSError`` once the
client has gone, which ends that connection quietly). Return True to keep the connection open
for the next request. :func:`response` builds a plain answer. Every request is kept (path,
query, headers) in :attr:`HostileServer.requests`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit


@dataclass
class Seen:
    """One request as the server read it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)


Send = Callable[[bytes], None]
Answer = Callable[[Seen, Send], bool]


def response(
    body: bytes, status: int = 200, headers: dict[str, str] | None = None, *, length: bool = True
) -> bytes:
    """An HTTP/1.1 answer: status line, headers (``Content-Length`` unless ``length`` is
    False), body."""
    head = [f"HTTP/1.1 {status} X", "Content-Type: application/json"]
    if length:
        head.append(f"Content-Length: {len(body)}")
    head.extend(f"{k}: {v}" for k, v in (headers or {}).items())
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class HostileServer:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[Seen] = []
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="hostile-http", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1.0/"

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        for conn in list(self._conns):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self._thread.join(5)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with contextlib.suppress(OSError):
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                split = urlsplit(target)
                query = {k: v[-1] for k, v in parse_qs(split.query).items()}
                seen = Seen(method, split.path, query, headers)
                self.requests.append(seen)
                if not self.answer(seen, conn.sendall):
                    return
        with contextlib.suppress(OSError):
            conn.close()
