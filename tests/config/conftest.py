from __future__ import annotations

from tests.support.config_dir import cfg

__all__ = ["cfg"]
