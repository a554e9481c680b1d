from __future__ import annotations

from journaled import deployment

__all__ = ["deployment"]
