"""The JSON Schemas and time zone names shipped with b2bd, read once per process (I/O shell).

:mod:`b2bd.config.schema` (pure) builds a validator from what is read here; the loader, migrate's
command and ``b2bd schema`` get theirs from this module, so the pure core holds no file read.
"""

from __future__ import annotations

import json
import zoneinfo
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from b2bd.config.schema import SCHEMA_FILES, DocumentKind, build_validator


@cache
def timezones() -> tuple[str, ...]:
    """Every IANA zone name the config may use, sorted: the zones of the IANA database release
    the ``tzdata`` package holds (a pinned dependency), so validation accepts the same names on
    every machine whatever its system zone files, and each of them loads (zoneinfo falls back to
    the package when the system has no such file). The published schemas list them as the
    time zone ``enum``."""
    names = (resources.files("tzdata") / "zones").read_text("utf-8").split()
    return tuple(sorted(set(names)))


@cache
def _timezone_set() -> frozenset[str]:
    return frozenset(timezones())


@cache
def known_timezone(name: str) -> bool:
    """A zone of :func:`timezones` that zoneinfo can load (``localtime`` and paths are
    refused)."""
    if name not in _timezone_set():
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def schema_text(kind: DocumentKind) -> str:
    return (resources.files("b2bd") / "schemas" / SCHEMA_FILES[kind]).read_text("utf-8")


@cache
def schema(kind: DocumentKind) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_text(kind))
    return loaded


@cache
def validator(kind: DocumentKind) -> jsonschema.protocols.Validator:
    """The validator for one document kind, built once per process and reused."""
    return build_validator(kind, {k: schema(k) for k in SCHEMA_FILES}, known_timezone)
