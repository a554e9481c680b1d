"""Shared by every test folder: this file puts ``tests/`` on ``sys.path`` (pytest's default
``prepend`` import mode), so the support modules here (``oserrors``) import by name."""

from __future__ import annotations
