from __future__ import annotations

from tests.support.transfer_world import world

__all__ = ["world"]
