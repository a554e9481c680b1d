from __future__ import annotations

from tests.support.deployment import deployment, notify_socket
from tests.support.slow_school import slow_schools

__all__ = ["deployment", "notify_socket", "slow_schools"]
