"""API tokens: where they are read from, and a type that keeps them out of every message.

A base names its token by credential name (bases.yaml ``token: {credential: NAME}``); the token
itself is never in a task, bases or settings file. :func:`read_token` looks for it, first match
wins:

1. ``$CREDENTIALS_DIRECTORY/NAME``: systemd's ``LoadCredential=`` (the shipped unit's way);
2. b2bd.yaml ``credentials: {NAME: {path: FILE}}``: a file the service user can read;
3. b2bd.yaml ``credentials: {NAME: {env: VARIABLE}}``: an environment variable.

A token is one run of printable ASCII without spaces (a file's surrounding whitespace and final
newline are dropped): anything else is refused, because an HTTP library quotes an illegal header
value in its exception. Every refusal is ``ConnectorError("auth")`` naming the credential and
where it was looked for, never quoting what was read.

:class:`Secret` holds a token: its ``repr``/``str`` are ``Secret('***')``, it cannot be pickled,
and only :meth:`Secret.reveal` (called where the Authorization header is built) gives it back.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from b2bd.config.model import CredentialSource
from b2bd.connectors.source import ConnectorError

MAX_TOKEN_BYTES = 4096
_TOKEN = re.compile(r"[!-~]{1,4096}")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


class Secret:
    """A token that never shows itself (see the module docstring)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret is not pickled")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def read_token(
    name: str,
    fallbacks: Mapping[str, CredentialSource],
    environ: Mapping[str, str] | None = None,
) -> Secret:
    """The token of credential ``name`` (lookup order in the module docstring)."""
    env = os.environ if environ is None else environ
    if not _NAME.fullmatch(name):
        _refuse(name, "is not a credential name")
    directory = env.get("CREDENTIALS_DIRECTORY")
    if directory:
        path = Path(directory) / name
        text = _read_file(name, path, missing_ok=True)
        if text is not None:
            return _token(name, text, f"$CREDENTIALS_DIRECTORY/{name}")
    source = fallbacks.get(name)
    if source is not None and source.path is not None:
        text = _read_file(name, source.path, missing_ok=False)
        assert text is not None
        return _token(name, text, str(source.path))
    if source is not None and source.env is not None:
        value = env.get(source.env)
        if value is None:
            _refuse(name, f"names environment variable {source.env}, which is not set")
        return _token(name, value, f"${source.env}")
    where = "$CREDENTIALS_DIRECTORY is not set" if not directory else f"no {directory}/{name}"
    _refuse(name, f"not found: {where}, and b2bd.yaml has no credentials.{name}")


def _read_file(name: str, path: Path, *, missing_ok: bool) -> str | None:
    """A credential file's text, read without blocking (a FIFO is refused, not waited on)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        if missing_ok:
            return None
        _refuse(name, f"{path} does not exist")
    except OSError as error:
        _refuse(name, f"{path}: {error.strerror or 'cannot be opened'}")
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            _refuse(name, f"{path} is not a regular file")
        data = os.read(fd, MAX_TOKEN_BYTES + 1)
    except OSError as error:
        _refuse(name, f"{path}: {error.strerror or 'cannot be read'}")
    finally:
        os.close(fd)
    if len(data) > MAX_TOKEN_BYTES:
        _refuse(name, f"{path} is larger than {MAX_TOKEN_BYTES} bytes")
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        _refuse(name, f"{path} is not a token (not ASCII)")


def _token(name: str, text: str, where: str) -> Secret:
    token = text.strip()
    if not _TOKEN.fullmatch(token):
        _refuse(name, f"{where} is not a token (empty, or spaces or control characters inside)")
    return Secret(token)


def _refuse(name: str, why: str) -> NoReturn:
    raise ConnectorError("auth", f"credential {name}: {why}")
