"""``b2bd run``: the daemon, in the foreground (systemd runs it as Type=notify).

Exit codes are the daemon's (0, 1, 78: see :mod:`b2bd.daemon.loop`), plus 70 (EX_SOFTWARE) when
something unexpected escaped it: that is a bug, logged at critical level with its traceback (no
local variables), and the one failure systemd restarts the service for.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from b2bd import log
from b2bd.clock import clock_from_environment
from b2bd.daemon.loop import Daemon

EXIT_SOFTWARE = 70


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run the daemon in the foreground")
    p.add_argument("--now", action="store_true", help="also start every enabled task once now")
    p.add_argument(
        "--grace",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="on SIGTERM, how long running transfers may take to finish (default 600)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    log.configure()
    daemon = Daemon(args.config, clock=clock_from_environment(), run_now=args.now,
                    grace=args.grace)  # fmt: skip
    try:
        code = daemon.run()
    except Exception:
        log.get_logger("b2bd.daemon").critical("daemon-crashed", exc_info=True)
        code = EXIT_SOFTWARE
    if daemon.abandoned:
        # A worker is stuck (e.g. in a read of a share that stopped answering): the journal is
        # closed and durable, so end the process without joining that thread.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
