"""The config dir as the commands read it: a dir that cannot be read at all is a usage error
(exit 2), never a traceback; commands that need the state dir need a usable b2bd.yaml."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from b2bd.cli import UsageError
from b2bd.config.load import ConfigDirError, load_config
from b2bd.config.model import Config, Problem, Settings
from b2bd.config.rules import ShardChoice


def load(
    root: Path,
    *,
    now: dt.datetime | None = None,
    workers: int = 1,
    shard: ShardChoice = "config",
) -> Config:
    """The config at ``root`` (every problem in it reported in ``Config.problems``); raises
    UsageError when ``root`` itself cannot be read. ``now``, ``workers`` and ``shard`` as for
    :func:`~b2bd.config.load.load_config`."""
    try:
        return load_config(root, now=now, workers=workers, shard=shard)
    except ConfigDirError as exc:
        raise UsageError(str(exc)) from exc


def with_settings(root: Path) -> tuple[Config, Settings]:
    """The config and its settings; raises UsageError when b2bd.yaml is not usable (the state
    dir would be unknown)."""
    config = load(root)
    if config.settings is None:
        raise UsageError(unusable(config, root, "so the state dir is unknown"))
    return config, config.settings


def unusable(config: Config, root: Path, consequence: str) -> str:
    """Why b2bd.yaml gave no settings, as one line. An unknown shard index is named: `validate`
    checks the config for every instance without it, so pointing there would not help."""
    shard = next((p for p in config.problems if p.rule == "shard-index"), None)
    if shard is not None:
        return f"{shard_problem(shard, root)}: b2bd.yaml is not usable, {consequence}"
    return f"{root}: b2bd.yaml is not usable, {consequence} (see `b2bd validate`)"


def shard_problem(problem: Problem, root: Path) -> str:
    return (
        f"{root / problem.file}:{problem.line}:{problem.column}: {problem.message} [{problem.rule}]"
    )
