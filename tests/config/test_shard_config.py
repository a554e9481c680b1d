"""b2bd.yaml ``shard: {index, of}``: the loader gives each task only the bases its shard owns."""

from __future__ import annotations

import pytest

from b2bd.config.load import load_config
from b2bd.shard import Shard, shard_of
from tests.support.config_dir import NOW, ConfigDir, b2bd_yaml

# The template's task t names base 8814001, which hashmod puts on shard 1 of 2.
assert shard_of("8814001", 2) == 1


def with_shard(cfg: ConfigDir, shard: str) -> None:
    cfg.write("b2bd.yaml", b2bd_yaml(extra=f"shard: {shard}\n"))


def problems(config):
    return [(p.file, p.line, p.column, p.rule, p.severity, p.message) for p in config.problems]


def test_a_task_keeps_only_the_bases_its_shard_owns(cfg) -> None:
    with_shard(cfg, "{index: 1, of: 2}")
    config = cfg.load()
    assert config.valid, config.problems
    assert config.settings is not None and config.settings.shard == Shard(1, 2)
    assert config.tasks["t"].targets == ("8814001",)
    with_shard(cfg, "{index: 0, of: 2}")
    config = cfg.load()
    assert config.valid
    assert config.tasks["t"].targets == ()  # still a valid task: another instance runs it


def test_without_shard_an_instance_owns_every_base(cfg) -> None:
    config = cfg.load()
    assert config.settings is not None and config.settings.shard is None
    assert config.tasks["t"].targets == ("8814001",)


def test_an_index_out_of_range_is_an_error_at_the_index(cfg) -> None:
    with_shard(cfg, "{index: 2, of: 2}")
    config = cfg.load()
    assert problems(config) == [
        ("b2bd.yaml", 5, 16, "shard-index", "error",
         "shard index 2 is out of range for of: 2 (0 to 1)"),
    ]  # fmt: skip
    assert config.settings is None


@pytest.mark.parametrize(
    ("shard", "column", "message"),
    [
        ("{index: -1, of: 2}", 16, "this instance's shard: a number from 0 to of - 1, or {env: "
         "VARIABLE} (e.g. B2BD_SHARD_INDEX, the StatefulSet pod ordinal)"),
        ('{index: "1", of: 2}', 16, "this instance's shard: a number from 0 to of - 1, or {env: "
         "VARIABLE} (e.g. B2BD_SHARD_INDEX, the StatefulSet pod ordinal)"),
        ("{index: 0, of: 0}", 23, "the number of shards: 1 to 1024"),
        ("{index: 0, of: 1025}", 23, "the number of shards: 1 to 1024"),
        ("{index: {env: 1X}, of: 2}", 22,
         "the name of an environment variable, e.g. B2BD_SHARD_INDEX"),
    ],
)  # fmt: skip
def test_schema_problems_of_shard_carry_the_rule(cfg, shard, column, message) -> None:
    with_shard(cfg, shard)
    assert problems(cfg.load()) == [("b2bd.yaml", 5, column, "shard-index", "error", message)]


def test_shard_needs_index_and_of(cfg) -> None:
    with_shard(cfg, "{of: 2}")
    assert [(p.rule, p.message) for p in cfg.load().problems] == [("schema", "'index' is required")]


def test_the_index_from_the_environment(cfg) -> None:
    with_shard(cfg, "{index: {env: B2BD_SHARD_INDEX}, of: 2}")
    config = load_config(cfg.root, now=NOW, environ={"B2BD_SHARD_INDEX": "1"})
    assert config.valid
    assert config.settings is not None and config.settings.shard == Shard(1, 2)
    assert config.tasks["t"].targets == ("8814001",)
    config = load_config(cfg.root, now=NOW, environ={"B2BD_SHARD_INDEX": "0"})
    assert config.tasks["t"].targets == ()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "the environment variable B2BD_SHARD_INDEX is not set (it gives this instance's "
         "shard index)"),
        ({"B2BD_SHARD_INDEX": "2"}, "B2BD_SHARD_INDEX=2 is out of range for of: 2 (0 to 1)"),
        ({"B2BD_SHARD_INDEX": "b2bd-1"},
         "the environment variable B2BD_SHARD_INDEX is not a shard index (a number 0 to 1)"),
    ],
)  # fmt: skip
def test_a_daemon_that_cannot_tell_its_shard_has_no_settings(cfg, environ, message) -> None:
    """Not "every base": two instances would then deliver to the same schools."""
    with_shard(cfg, "{index: {env: B2BD_SHARD_INDEX}, of: 2}")
    config = load_config(cfg.root, now=NOW, environ=environ)
    assert problems(config) == [("b2bd.yaml", 5, 22, "shard-index", "error", message)]
    assert config.settings is None


def test_a_bad_environment_on_reload_keeps_the_last_good_shard(cfg) -> None:
    with_shard(cfg, "{index: {env: B2BD_SHARD_INDEX}, of: 2}")
    good = load_config(cfg.root, now=NOW, environ={"B2BD_SHARD_INDEX": "1"})
    again = load_config(cfg.root, now=NOW, environ={}, last_good=good)
    assert [p.rule for p in again.problems] == ["shard-index"]
    assert again.settings is good.settings
    assert again.tasks["t"].targets == ("8814001",)


def test_the_all_view_checks_the_config_for_every_instance(cfg) -> None:
    """``validate`` without --shard: the variable is the deployment's business, not git's."""
    with_shard(cfg, "{index: {env: B2BD_SHARD_INDEX}, of: 2}")
    config = load_config(cfg.root, now=NOW, environ={}, shard="all")
    assert config.valid, config.problems
    assert config.settings is not None and config.settings.shard is None
    assert config.tasks["t"].targets == ("8814001",)
    with_shard(cfg, "{index: 5, of: 2}")  # out of range is wrong for every instance
    assert [p.rule for p in load_config(cfg.root, now=NOW, shard="all").problems] == ["shard-index"]


def test_a_shard_asked_for_overrides_the_config(cfg) -> None:
    with_shard(cfg, "{index: 1, of: 2}")
    config = load_config(cfg.root, now=NOW, shard=Shard(0, 2))
    assert config.settings is not None and config.settings.shard == Shard(0, 2)
    assert config.tasks["t"].targets == ()
    cfg.write("b2bd.yaml", "la: {code: 1}\n")  # unusable b2bd.yaml: the view is still shard 0
    config = load_config(cfg.root, now=NOW, shard=Shard(0, 2))
    assert config.settings is None
    assert config.tasks["t"].targets == ()


BASE = """\
  - id: "{id}"
    name: School {id}
    mis: sims
    sims_version: "7.214"
    b2b_phase: 2
    services_manager: true
    endpoint: {{type: directory, path: schools/{id}}}
"""

ALL_TASK = """\
id: everyone
direction: from-school
bases: {all: true}
data: {type: snapshot}
schedule:
  weekly: {days: [mon], times: ["06:30"]}
"""


def test_a_base_added_to_the_registry_moves_no_other(cfg) -> None:
    ids = [f"881{n:04d}" for n in range(1000, 1040)]
    cfg.write("tasks/t.yaml", ALL_TASK)
    cfg.write("bases.yaml", "bases:\n" + "".join(BASE.format(id=i) for i in ids))
    before = {i: load_config(cfg.root, now=NOW, shard=Shard(i, 3)) for i in range(3)}
    cfg.write("bases.yaml", "bases:\n" + "".join(BASE.format(id=i) for i in [*ids, "8819999"]))
    after = {i: load_config(cfg.root, now=NOW, shard=Shard(i, 3)) for i in range(3)}
    owners = {}
    for i in range(3):
        old = set(before[i].tasks["everyone"].targets)
        new = set(after[i].tasks["everyone"].targets)
        assert new - old <= {"8819999"} and old <= new
        owners.update(dict.fromkeys(new, i))
    assert sorted(owners) == sorted([*ids, "8819999"])  # each base on exactly one shard
    assert all(before[i].tasks["everyone"].targets for i in range(3))
