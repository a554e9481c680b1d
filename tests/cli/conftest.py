from __future__ import annotations

from tests.support.journaled import deployment
from tests.support.transfer_world import world

__all__ = ["deployment", "world"]
