"""A transfer's time limit as connectors see it: :func:`expiring` makes a
:data:`~b2bd.connectors.source.Deadline` on the monotonic clock (the clock read lives here, in
the shell; the Source interface only names the type)."""

from __future__ import annotations

import time
from collections.abc import Callable

from b2bd.connectors.source import ConnectorError, Deadline


def expiring(
    seconds: float, message: str, *, clock: Callable[[], float] = time.monotonic
) -> Deadline:
    """A :data:`Deadline` ``seconds`` from now on ``clock``: once they are gone it raises
    ``ConnectorError("timeout", message)``."""
    end = clock() + seconds

    def deadline() -> float:
        left = end - clock()
        if left < 0:
            raise ConnectorError("timeout", message)
        return left

    return deadline
