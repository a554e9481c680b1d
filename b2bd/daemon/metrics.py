"""``/metrics`` and ``/healthz`` over HTTP, for Prometheus and probes (opt-in: b2bd.yaml
``metrics: {listen: "127.0.0.1:9464"}``).

The bookkeeping is :mod:`b2bd.telemetry` (pure); this module is its shell: :class:`Metrics`
serialises the calls into it from the loop, the workers and the journal's appenders, and turns
its series into Prometheus metric families at scrape time, in a registry of its own (no
process or platform collectors, nothing from the client library's global registry).
:class:`MetricsServer` serves them from its own thread.

The server must never hold up or bring down the daemon: it binds before the daemon journals
``daemon-started`` (an address that cannot be used is one error line and exit 1, like the
control socket); one connection is one request (HTTP/1.0, no keep-alive); a connection has
``IO_TIMEOUT`` per read or write and ``DEADLINE`` in all, after which its socket is shut down
under whatever reads or writes it, so a client trickling its request or not reading the answer
holds a thread for at most that long; at most ``MAX_CONNECTIONS`` are served at once, and
``MAX_PER_PEER`` from one address (a peer holding connections open must not fail the kubelet's
probes and have the daemon restarted), the others closed unanswered. Out of file descriptors,
accepting is retried every half second, never in a loop spinning on a core. The server thread's
own failures are logged, never raised into the daemon.

``/healthz``: 200 ``ok`` when the loop has turned within :data:`b2bd.telemetry.LOOP_STALE`
seconds, the config watcher runs, the journal takes records and a test file can be written in
the journal dir (at most once a second; a write that hangs answers 503 to the others rather
than piling them up); otherwise 503 with each reason on a line. ``/livez``, for a liveness
probe: 200 while the loop turns, whatever the disk (a restart cannot free a full disk).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder

from b2bd.config.model import Config
from b2bd.faults import explain
from b2bd.journal.entries import Entry
from b2bd.journal.state import State
from b2bd.log import get_logger
from b2bd.statedir import running_as
from b2bd.telemetry import Histogram, Series, Telemetry, View, Vitals, health, liveness

IO_TIMEOUT = 5.0
DEADLINE = 10.0
MAX_CONNECTIONS = 16
_ACCEPT_PAUSE = 0.5  # seconds between accept() attempts while the process lacks descriptors
_ACCEPT_WARN_EVERY = 60.0  # seconds: at most one metrics-accept-failed line per minute
_SCARCE = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
MAX_PER_PEER = 4  # so one peer holding connections open cannot starve the probes and scrapes
PROBE_EVERY = 1.0
PROBE_FILE = ".healthz.tmp"  # a dot-name ending .tmp: Journal.open removes a leftover one
# More than a file system keeps inside an inode or its metadata (ext4 inline_data, btrfs
# max_inline: up to a page): the test write needs a data block, as journal appends do, so a
# disk whose blocks are gone is not taken for writable.
_PROBE_DATA = b"\0" * 8192

log = get_logger("b2bd.daemon")


class MetricsError(Exception):
    """The metrics address cannot be listened on (one line, for the log)."""


class Metrics:
    """The daemon's telemetry behind a lock, plus what ``/healthz`` needs to know.

    ``vitals`` is set by the daemon: a function returning the watcher's error, the journal's
    failure and whether the daemon is stopping (read on the server's threads)."""

    def __init__(self, journal_dir: Path, state: State) -> None:
        self._lock = threading.Lock()
        self._telemetry = Telemetry()
        self._telemetry.seed(state)
        self._journal_dir = journal_dir
        self._config: Config | None = None
        self._view = View()
        self._next: dict[str, dt.datetime] = {}
        self._beat: float | None = None
        self._probe_lock = threading.Lock()
        self._probed_at: float | None = None
        self._probe_result: str | None = None
        self._broken = False
        self.vitals: Callable[[], tuple[str | None, str | None, bool]] = lambda: (None, None, False)

    # -- fed by the daemon (any thread) ----------------------------------------------------

    def _feed(self, call: Callable[[Telemetry], None]) -> None:
        try:
            with self._lock:
                call(self._telemetry)
        except Exception as exc:  # a bug here must not fail a journal append or a transfer
            if not self._broken:
                self._broken = True
                log.error("metrics-failed", error=f"{type(exc).__name__}: {exc}")

    def entry(self, entry: Entry) -> None:
        """A journal listener (:meth:`b2bd.journal.Journal.listen`)."""
        self._feed(lambda t: t.entry(entry))

    def began(self, task: str) -> None:
        self._feed(lambda t: t.began(task))

    def ended(self, task: str, seconds: float) -> None:
        self._feed(lambda t: t.ended(task, seconds))

    def loaded(self, at: dt.datetime, *, start: bool, config: Config | None) -> None:
        """A load of the config dir (``config`` None: the dir could not be read)."""
        if config is None:
            errors, warnings = None, 0
        else:
            errors = sum(p.severity == "error" for p in config.problems)
            warnings = len(config.problems) - errors
        self._feed(lambda t: t.loaded(at, start=start, errors=errors, warnings=warnings))

    def publish(self, config: Config, next_at: Mapping[str, dt.datetime]) -> None:
        """The loop's view after a turn: the config in force and each task's next slot
        (copied only when they changed)."""
        self._beat = time.monotonic()
        if config is self._config and next_at == self._next:
            return
        # Sets: a scrape asks each (task, base) of the journal whether it is targeted.
        targets = {task.id: frozenset(task.targets) for task in config.tasks.values()}
        nxt = dict(next_at)
        with self._lock:
            if config is not self._config:  # a reload: removed tasks' series go
                self._telemetry.forget_tasks_but(config.tasks.keys())
            self._config, self._next = config, nxt
            self._view = View(targets, nxt)

    # -- read by the server's threads --------------------------------------------------------

    def series(self) -> list[Series]:
        size = _journal_bytes(self._journal_dir)
        with self._lock:
            view = View(self._view.targets, self._view.next_slots, size)
            snapshot = self._telemetry.snapshot()
        return snapshot.series(view)

    def collect(self) -> Iterator[Metric]:
        """The Prometheus collector protocol (registered in the server's own registry)."""
        for s in self.series():
            yield _family(s)

    def healthz(self) -> list[str]:
        watch_error, journal_failed, stopping = self.vitals()
        beat = self._beat
        return health(
            Vitals(
                loop_age=None if beat is None else time.monotonic() - beat,
                watch_error=watch_error,
                journal_failed=journal_failed,
                journal_probe=self._probe(),
                stopping=stopping,
            )
        )

    def livez(self) -> list[str]:
        """``/livez`` (a liveness probe): the loop turns. Reads no disk."""
        beat = self._beat
        return liveness(Vitals(loop_age=None if beat is None else time.monotonic() - beat))

    def _probe(self) -> str | None:
        if not self._probe_lock.acquire(timeout=1.0):
            return f"a test write in {self._journal_dir} has not finished (the disk is stuck?)"
        try:
            now = time.monotonic()
            if self._probed_at is None or now - self._probed_at >= PROBE_EVERY:
                self._probe_result = _try_write(self._journal_dir)
                self._probed_at = time.monotonic()
            return self._probe_result
        finally:
            self._probe_lock.release()


def _try_write(directory: Path) -> str | None:
    path = directory / PROBE_FILE
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        try:
            left = memoryview(_PROBE_DATA)
            while left:
                left = left[os.write(fd, left) :]
        finally:
            os.close(fd)
        os.unlink(path)
    except OSError as exc:
        return explain(exc, "cannot write in the journal dir", path, user=running_as())
    return None


def _journal_bytes(directory: Path) -> int | None:
    """The segments, their seals and the history file; None if the dir cannot be listed."""
    try:
        total = 0
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.endswith((".log", ".sum", ".jsonl")):
                    total += entry.stat(follow_symlinks=False).st_size
        return total
    except OSError:
        return None


def _family(s: Series) -> Metric:
    labels = list(s.labels)
    family: Any
    if s.kind == "counter":
        family = CounterMetricFamily(s.name, s.help, labels=labels)
    elif s.kind == "gauge":
        family = GaugeMetricFamily(s.name, s.help, labels=labels)
    else:
        family = HistogramMetricFamily(s.name, s.help, labels=labels)
        for values, histogram in s.samples:
            assert isinstance(histogram, Histogram)
            buckets = [(_bound(b), float(n)) for b, n in histogram.cumulative()]
            family.add_metric(list(values), buckets, histogram.total)
        return family
    for values, value in s.samples:
        assert not isinstance(value, Histogram)
        family.add_metric(list(values), value)
    return family


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else f"{bound:g}"


# -- the HTTP server ---------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # never wait for a stuck handler when the daemon stops
    allow_reuse_address = True
    request_queue_size = MAX_CONNECTIONS

    def __init__(self, address: tuple[str, int], metrics: Metrics) -> None:
        self.metrics = metrics
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(metrics)
        self._open: dict[socket.socket, float] = {}
        self._peer: dict[socket.socket, str] = {}
        self._warned_at: float | None = None
        self.pause = threading.Event()  # set when closing: no more waiting between accepts
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer's own looks the host name up (socket.getfqdn): a DNS wait at start.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def get_request(self) -> tuple[socket.socket, Any]:
        """accept(); while the process lacks descriptors, a pause before the next try: the
        connection stays in the backlog, so the socket stays readable and an immediate retry
        would spin on a core (one ``metrics-accept-failed`` error a minute at most)."""
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno in _SCARCE:
                now = time.monotonic()
                if self._warned_at is None or now - self._warned_at >= _ACCEPT_WARN_EVERY:
                    error = explain(exc, "cannot accept a metrics connection", user=running_as())
                    log.error("metrics-accept-failed", retry_every=_ACCEPT_PAUSE, error=error)
                    self._warned_at = now
                self.pause.wait(_ACCEPT_PAUSE)
            raise  # socketserver drops this attempt

    def process_request(self, request: Any, client_address: Any) -> None:
        peer = str(client_address[0]) if client_address else ""
        with self._open_lock:
            mine = sum(1 for p in self._peer.values() if p == peer)
            full = len(self._open) >= MAX_CONNECTIONS or mine >= MAX_PER_PEER
            if not full:
                self._open[request] = time.monotonic() + DEADLINE
                self._peer[request] = peer
        if full:
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def close_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.pop(request, None)
            self._peer.pop(request, None)
        super().close_request(request)

    def service_actions(self) -> None:
        """Between two waits for a connection: cut the connections past their deadline."""
        now = time.monotonic()
        with self._open_lock:
            late = [sock for sock, deadline in self._open.items() if deadline < now]
            for sock in late:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver would print a traceback to stderr; a client that went away is normal.
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError | TimeoutError):
            log.warning("metrics-request-failed", error=f"{type(exc).__name__}: {exc}")


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"
    timeout = IO_TIMEOUT
    server_version = "b2bd"
    sys_version = ""

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, *, body: bool) -> None:
        path = urlsplit(self.path).path
        content_type = "text/plain; charset=utf-8"
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            status, data = 200, encoder(self.server.registry)
        elif path in ("/healthz", "/livez"):
            metrics = self.server.metrics
            reasons = metrics.healthz() if path == "/healthz" else metrics.livez()
            status = 503 if reasons else 200
            data = ("\n".join(reasons) if reasons else "ok").encode() + b"\n"
        else:
            status, data = 404, b"not found: this server answers /metrics, /healthz and /livez\n"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log: scrapes every few seconds would drown the daemon's log


class MetricsServer:
    """The HTTP server on its own thread; :meth:`close` stops it without waiting for stuck
    connections."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self._server.timeout = 0.5  # handle_request's wait: how soon close() is seen
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="metrics", daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @classmethod
    def start(cls, address: tuple[str, int], metrics: Metrics) -> MetricsServer:
        host, port = address
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        server_class = _Server6 if ":" in host else _Server
        try:
            server = server_class(address, metrics)
        except OSError as exc:
            advice = {
                errno.EADDRINUSE: "another process listens there: stop it or change "
                "metrics.listen in b2bd.yaml",
                errno.EADDRNOTAVAIL: "no interface of this host has that address: change "
                "metrics.listen in b2bd.yaml",
                errno.EACCES: "ports below 1024 need privileges: use a higher port",
            }.get(exc.errno or 0, "")
            reason = exc.strerror or type(exc).__name__
            text = f"cannot serve metrics on {shown}: {reason}"
            raise MetricsError(f"{text} ({advice})" if advice else text) from None
        return cls(server)

    def _serve(self) -> None:
        # Not serve_forever: its shutdown() waits for it unboundedly, even before it started.
        server = self._server
        try:
            while not self._closing.is_set():
                server.handle_request()
                server.service_actions()
        except Exception as exc:  # never into the daemon: /healthz just stops answering
            log.error("metrics-server-failed", error=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        self._closing.set()
        self._server.pause.set()
        self._thread.join(timeout=5.0)
        self._server.server_close()
