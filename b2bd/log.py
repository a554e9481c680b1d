"""Logging set-up: structlog JSON lines off a TTY (journald, pipelines), console on a TTY.

Standard-library loggers (watchdog's among them) go through the same processors, so every line
on stdout has one format. Tracebacks are rendered without local variables, which could hold
pupil data or tokens.

journald: when stdout is the stream systemd connected to the journal (``$JOURNAL_STREAM`` names
its device and inode, sd-daemon(3)), each line starts with the syslog priority of its level,
``<3>{"event": ...}`` for an error, which journald strips and stores as the entry's PRIORITY
(``SyslogLevelPrefix=yes``, the default). So ``journalctl -u b2bd -p warning`` shows warnings
and errors only, and the message stays one JSON object (``journalctl -o cat | jq``). A pipe or a
file someone redirected stdout to gets plain JSON lines.

A stdout that can no longer be written (journald gone, a pipe whose reader closed, a full disk
under a redirect) costs the logs, not the daemon: :class:`LogOutput` says so once on stderr and
drops every log line from then on, never Python's ``--- Logging error ---`` traceback per line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


PRIORITY: dict[str, int] = {
    "critical": 2,
    "exception": 3,
    "error": 3,
    "warning": 4,
    "warn": 4,
    "notice": 5,
    "info": 6,
    "debug": 7,
}
"""Log level -> syslog priority (sd-daemon(3): ``<3>`` SD_ERR ... ``<7>`` SD_DEBUG)."""


def journal_stream(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``stream`` is the journal stream systemd gave us: ``$JOURNAL_STREAM`` is
    ``<device>:<inode>`` of it (a redirected stdout inherits the variable but not the inode)."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # no descriptor behind it (a test's buffer)
        return False
    return (info.st_dev, info.st_ino) == (int(device), int(inode))


Renderer = Callable[[Any, str, Any], str]


class LogOutput(logging.StreamHandler[TextIO]):
    """The log lines' handler: a :class:`logging.StreamHandler` that, once a write fails with
    an ``OSError``, says so in one line on stderr (if stderr still takes it) and drops every
    line after. The stream's descriptor is pointed at /dev/null, so what is still buffered and
    the interpreter's final flush do not fail again."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.lost = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.lost:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handleError(record)
            return
        self.lost = True
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self.stream.fileno())
            finally:
                os.close(devnull)
        with contextlib.suppress(Exception):
            print(
                f"b2bd: cannot write to stdout ({exc.strerror or exc}): log lines are lost from "
                "now on; the daemon carries on (restart it to have logs again)",
                file=sys.stderr,
                flush=True,
            )


def with_priority(render: Renderer) -> Renderer:
    """``render``'s line prefixed with the sd-daemon priority of the event's level."""

    def prefixed(logger: Any, method: str, event: Any) -> str:
        priority = PRIORITY.get(str(event.get("level", method)).lower(), 6)
        return f"<{priority}>{render(logger, method, event)}"

    return prefixed


def configure(
    stream: TextIO | None = None,
    *,
    json: bool | None = None,
    level: int = logging.INFO,
    environ: Mapping[str, str] | None = None,
) -> None:
    stream = stream or sys.stdout
    use_json = not stream.isatty() if json is None else json
    renderer: Any
    if use_json:
        renderer = structlog.processors.JSONRenderer()
        if journal_stream(stream, environ):
            renderer = with_priority(renderer)
        final: list[Any] = [
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            renderer,
        ]
    else:
        final = [structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = LogOutput(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("watchdog").setLevel(logging.WARNING)
    # Python warnings (a library's RuntimeWarning) become log lines too, not bare stderr text.
    logging.captureWarnings(True)
    # httpx logs every request line at INFO (a Wonde transfer makes one per page).
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            *_SHARED,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str = "b2bd") -> Any:
    return structlog.get_logger(name)
