"""Keyed digests for pupils: the journal never holds a UPN in clear.

``PupilKeyer(state_dir).digest(upn)`` is HMAC-SHA256 of the UPN (stripped, upper-cased) under a
32-byte random key kept in ``<state_dir>/pupil.key``. The key is made on first use: written to a
temporary file created 0600 (whatever the umask), fsynced, then hard-linked to its name, which
fails if the name exists (``link`` is an exclusive create), so two processes starting together
agree on one complete key and nobody ever reads a half-written one. Without the key file the
digests cannot be tested against a list of UPNs; losing it means the leavers memory no longer
matches, so it belongs in the state dir's backups.

**Never silently re-keyed** (DESIGN section 7): once the journal holds a digest, the key is
made with ``create=False`` and a missing or unreadable key file is a :class:`KeyFileError`
that stops the run with a clear message; :meth:`PupilKeyer.check` finds that out before any
work starts.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import secrets
from pathlib import Path

from b2bd.confined import Folder
from b2bd.faults import ConfinedError

KEY_FILE = "pupil.key"
KEY_BYTES = 32


class KeyFileError(Exception):
    """The key cannot be used (not a key, unreadable, or missing where the journal holds
    digests made with it): refuse rather than re-key."""


class PupilKeyer:
    """Turns UPNs into stable keyed digests (64 lowercase hex characters). ``create``: whether
    a missing key file may be made (only while the journal holds no digest)."""

    def __init__(self, state_dir: Path, *, create: bool = True) -> None:
        self.path = state_dir / KEY_FILE
        self.create = create
        self._mac: hmac.HMAC | None = None

    def check(self) -> None:
        """Load the key now (making it if allowed); KeyFileError says why it cannot be."""
        if self._mac is None:
            self._mac = hmac.new(self._load_or_create(), digestmod=hashlib.sha256)

    def digest(self, upn: str) -> str:
        """The pupil's keyed digest (64 lowercase hex characters), as journal records carry it."""
        return self._mac_of(upn).hexdigest()

    def key(self, upn: str) -> int:
        """The pupil's 64-bit memory key: the first 8 bytes of :meth:`digest`, as an int
        (:func:`b2bd.journal.memory.key_of` of the digest), without the hex round trip."""
        return int.from_bytes(self._mac_of(upn).digest()[:8], "big")

    def _mac_of(self, upn: str) -> hmac.HMAC:
        mac = self._mac
        if mac is None:
            self.check()
            mac = self._mac
            assert mac is not None
        h = mac.copy()
        h.update(upn.strip().upper().encode("ascii", "replace"))
        return h

    def _load_or_create(self) -> bytes:
        try:
            key: bytes | None = self.path.read_bytes()
        except FileNotFoundError:
            key = None
        except OSError as exc:
            raise KeyFileError(
                f"{self.path} cannot be read ({exc.strerror or exc}): it holds the key of the "
                "journal's pupil digests; make it readable by the service, or restore it"
            ) from None
        if key is None:
            if not self.create:
                raise KeyFileError(
                    f"{self.path} is missing, but the journal holds pupil digests made with "
                    "it: restore it from the state dir's backup (b2bd never makes a new key "
                    "then: every leavers and cohort memory would forget every pupil)"
                )
            try:
                key = self._create()
            except OSError as exc:
                raise KeyFileError(
                    f"{self.path} cannot be created ({exc.strerror or exc}): the state dir "
                    "must be writable by the service"
                ) from None
        if len(key) != KEY_BYTES:
            raise KeyFileError(
                f"{self.path} holds {len(key)} bytes, not a {KEY_BYTES}-byte key; "
                "restore it from backup (a new key would orphan the leavers memory)"
            )
        return key

    def _create(self) -> bytes:
        key = secrets.token_bytes(KEY_BYTES)
        with Folder.open(self.path.parent, create=True, mode=0o700) as folder:
            folder.remove_leftovers()  # a temporary key of a start that was killed
            temp = folder.create_temp(KEY_FILE, mode=0o600)
            with temp:
                temp.write(key)
                try:
                    temp.commit(replace=False)  # an exclusive create: never replaces a key
                except ConfinedError as error:
                    if error.errno != errno.EEXIST:
                        raise
                    key = self.path.read_bytes()  # another process won the race; use its key
        return key


def open_keyer(state_dir: Path, *, journal_holds_digests: bool) -> PupilKeyer:
    """The keyer of a state dir, its key loaded now: made if missing only while the journal
    holds no digest; otherwise KeyFileError (never a silent new key)."""
    keyer = PupilKeyer(state_dir, create=not journal_holds_digests)
    keyer.check()
    return keyer
