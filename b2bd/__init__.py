"""b2bd: scheduled B2B:Student pupil-data exchange between a local authority and its schools."""

from __future__ import annotations

__version__ = "0.1.0"
