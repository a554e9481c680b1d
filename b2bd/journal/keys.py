"""Keyed digests for pupils: the journal never holds a UPN in clear.

``PupilKeyer(state_dir).digest(upn)`` is HMAC-SHA256 of the UPN (stripped, upper-cased) under a
32-byte random key kept in ``<state_dir>/pupil.key``. The key is made on first use: written to a
temporary file created 0600 (whatever the umask), fsynced, then hard-linked to its name, which
fails if the name exists (``link`` is an exclusive create), so two processes starting together
agree on one complete key and nobody ever reads a half-written one. Without the key file the
digests cannot be tested against a list of UPNs; losing it means the leavers memory no longer
matches, so it belongs in the state dir's backups.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import secrets
from pathlib import Path

from b2bd.confined import ConfinedError, Folder

KEY_FILE = "pupil.key"
KEY_BYTES = 32


class KeyFileError(Exception):
    """The key file exists but is not a key (wrong size): refuse rather than re-key."""


class PupilKeyer:
    """Turns UPNs into stable keyed digests (64 lowercase hex characters)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / KEY_FILE
        self._mac: hmac.HMAC | None = None

    def digest(self, upn: str) -> str:
        mac = self._mac
        if mac is None:
            mac = self._mac = hmac.new(self._load_or_create(), digestmod=hashlib.sha256)
        h = mac.copy()
        h.update(upn.strip().upper().encode("ascii", "replace"))
        return h.hexdigest()

    def _load_or_create(self) -> bytes:
        try:
            key = self.path.read_bytes()
        except FileNotFoundError:
            key = self._create()
        if len(key) != KEY_BYTES:
            raise KeyFileError(
                f"{self.path} holds {len(key)} bytes, not a {KEY_BYTES}-byte key; "
                "restore it from backup (a new key would orphan the leavers memory)"
            )
        return key

    def _create(self) -> bytes:
        key = secrets.token_bytes(KEY_BYTES)
        with (
            Folder.open(self.path.parent, create=True, mode=0o700) as folder,
            folder.create_temp(KEY_FILE, mode=0o600) as temp,
        ):
            temp.write(key)
            try:
                temp.commit(replace=False)  # an exclusive create: never replaces a key
            except ConfinedError as error:
                if error.errno != errno.EEXIST:
                    raise
                key = self.path.read_bytes()  # another process won the race; use its key
        return key
