"""The config dir: YAML files -> validated, frozen model (see DESIGN sections 2 and 3)."""

from __future__ import annotations

from b2bd.config.load import ConfigDirError, load_config
from b2bd.config.model import Config, Problem

__all__ = ["Config", "ConfigDirError", "Problem", "load_config"]
