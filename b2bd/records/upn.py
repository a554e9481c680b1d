"""Unique Pupil Numbers: shape and check letter (notes/domain.md section 4, DfE UPN guide 1.2).

A UPN is 13 characters: check letter, 3-digit LA number, 4-digit establishment number, 2-digit
issue year and a 3-digit serial. A *temporary* UPN ends in a letter instead of the serial's last
digit. The check letter is ``sum(char[i] * i for i in 2..13) mod 23`` mapped onto the 23 letters
without I, O and S; in a temporary UPN the final letter counts as its index in that same table.
"""

from __future__ import annotations

import random
import re
from typing import Literal

LETTERS = "ABCDEFGHJKLMNPQRTUVWXYZ"
"""The 23 check letters; a letter's index is its value (A=0 ... Z=22)."""

_VALUE = {ch: i for i, ch in enumerate(LETTERS)} | {str(d): d for d in range(10)}
_SHAPE = re.compile(r"[A-HJ-NP-RT-Z]\d{11}[0-9A-HJ-NP-RT-Z]")

UpnProblem = Literal["upn-format", "upn-check-letter"]


def check_letter(body: str) -> str:
    """The check letter for the 12 characters after it (digits, the last may be a letter).

    Raises ValueError if ``body`` is not 11 digits followed by a digit or check-table letter.
    """
    if len(body) != 12 or not body[:11].isdigit() or body[11] not in _VALUE:
        raise ValueError("a UPN body is 11 digits and a digit or letter")
    total = sum(_VALUE[ch] * weight for weight, ch in enumerate(body, start=2))
    return LETTERS[total % 23]


def upn_problem(upn: str) -> UpnProblem | None:
    """None for a valid UPN (permanent or temporary), else which rule it breaks."""
    if not _SHAPE.fullmatch(upn):
        return "upn-format"
    return None if check_letter(upn[1:]) == upn[0] else "upn-check-letter"


def is_valid_upn(upn: str) -> bool:
    return upn_problem(upn) is None


def is_temporary(upn: str) -> bool:
    """Whether a (well-formed) UPN is a temporary one: its last character is a letter."""
    return upn[-1:].isalpha()


def make_upn(la: str, estab: str, year: int, serial: int, *, temporary: bool = False) -> str:
    """A valid UPN issued by school ``la``+``estab`` in two-digit ``year`` with ``serial``.

    Permanent: serial 0..999. Temporary: serial 0..99 followed by a letter chosen by the serial
    (so distinct serials give distinct UPNs).
    """
    if len(la) != 3 or len(estab) != 4 or not (la + estab).isdigit():
        raise ValueError("la is 3 digits and estab 4 digits")
    if temporary:
        body = f"{la}{estab}{year % 100:02d}{serial % 100:02d}{LETTERS[serial // 100 % 23]}"
    else:
        body = f"{la}{estab}{year % 100:02d}{serial % 1000:03d}"
    return check_letter(body) + body


def random_upn(rng: random.Random, laestab: str, *, temporary: bool = False) -> str:
    """A valid UPN for school ``laestab`` drawn from ``rng`` (not guaranteed unique)."""
    year = rng.randrange(0, 100)
    serial = rng.randrange(0, 100 * 23 if temporary else 1000)
    return make_upn(laestab[:3], laestab[3:], year, serial, temporary=temporary)
