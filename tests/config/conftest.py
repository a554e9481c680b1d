from __future__ import annotations

from config_dir import cfg

__all__ = ["cfg"]
