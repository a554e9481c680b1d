"""National Curriculum Year codes (notes/domain.md section 5).

``M`` (mixed-year class) is a class code in the census, never a pupil's NCY, so it is not here.
"""

from __future__ import annotations

NCY_CODES: tuple[str, ...] = ("E1", "E2", "N1", "N2", "R", *map(str, range(1, 15)), "X")
NCY_SET: frozenset[str] = frozenset(NCY_CODES)


def normalise_ncy(value: object) -> str | None:
    """The canonical string code for an NCY given as an int or a string, or None if invalid.

    Integers and their strings are both accepted (``7`` and ``"7"``); booleans are not.
    """
    if isinstance(value, bool):
        return None
    text = str(value).strip().upper() if isinstance(value, int | str) else None
    if text is not None and text.isdigit():
        text = str(int(text))
    return text if text in NCY_SET else None
