from __future__ import annotations

from deployment import deployment, notify_socket

__all__ = ["deployment", "notify_socket"]
