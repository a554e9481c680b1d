"""load_config: a parallel load (workers > 1) says exactly what a one-process load says."""

from __future__ import annotations

import gc
import os
import threading
import time
from pathlib import Path

import pytest

from b2bd.config.load import POOL_MIN_FILES, ParseCache, load_config
from tests.support.config_dir import NOW, SETTINGS, ConfigDir

GOOD = """\
id: task-{n}
direction: from-school
bases: {{{selector}}}
data: {{type: {data}}}
cohort: {{group: ncy}}
schedule:
  weekly: {{days: [mon], times: ["06:{minute:02d}"]}}
"""

BROKEN = {
    "syntax": "id: [\n",
    "not-a-mapping": "- 1\n",
    "duplicate-key": "id: a\nid: b\n",
    "schema": GOOD.format(n="s", selector="tags: [sec]", data="snapshot", minute=0).replace(
        "from-school", "sideways"
    ),
    "unknown-base": GOOD.format(n="u", selector='ids: ["8819999"]', data="snapshot", minute=0),
    # Same id as task-0.yaml: both reported, neither loaded.
    "duplicate-id": GOOD.format(n=0, selector="all: true", data="changed", minute=1),
}


def many_files(cfg: ConfigDir, count: int) -> None:
    """``count`` task files: by id, by tag (reaching a base that fails a prerequisite: a
    warning) and all, plus every kind of broken file, spread through the listing."""
    selectors = ('ids: ["8814001"]', "tags: [sec]", "all: true", "tags: [pri, sec]")
    for n in range(count):
        cfg.write(
            f"tasks/task-{n}.yaml",
            GOOD.format(
                n=n, selector=selectors[n % 4], data=("snapshot", "changed")[n % 2], minute=n % 60
            ),
        )
    for n, (name, text) in enumerate(BROKEN.items()):
        cfg.write(f"tasks/task-{n * 37}-{name}.yaml", text)
    cfg.write("tasks/task-77-binary.yaml", b"id: \xff\xfe\n")
    os.symlink("/etc/passwd", cfg.root / "tasks" / "task-99-outside.yaml")


def test_parallel_load_equals_one_process_load(cfg: ConfigDir) -> None:
    # Enough files for three processes (one per POOL_MIN_FILES files at most).
    many_files(cfg, 2 * POOL_MIN_FILES + 60)
    alone = load_config(cfg.root, now=NOW)
    rules = {p.rule for p in alone.problems}
    assert {"yaml-syntax", "yaml-duplicate-key", "schema", "base-unknown", "id-duplicate"} <= rules
    assert {"file-unreadable", "base-prerequisites", "base-lockdown"} <= rules
    # The generated tasks and the fixture's t.yaml, but neither task-0 nor its twin.
    assert len(alone.tasks) == 2 * POOL_MIN_FILES + 60 + 1 - 1

    for workers in (2, 3):
        assert load_config(cfg.root, now=NOW, workers=workers) == alone


def test_parallel_load_with_a_cache_parses_only_what_changed(cfg: ConfigDir) -> None:
    many_files(cfg, POOL_MIN_FILES + 10)
    cache: ParseCache = {}
    first = load_config(cfg.root, now=NOW, cache=cache, workers=2)
    assert first == load_config(cfg.root, now=NOW)
    cached = dict(cache)

    cfg.write("tasks/task-5.yaml", "id: [\n")
    second = load_config(cfg.root, now=NOW, cache=cache, workers=2, last_good=first)
    assert second == load_config(cfg.root, now=NOW, last_good=first)
    changed = [key for key in cache if key not in cached]
    assert [name for name, _ in changed] == ["tasks/task-5.yaml"]
    # Every other file's document is the very object the first load parsed.
    assert all(cache[key][0] is cached[key][0] for key in cache if key in cached)


def test_small_config_loads_the_same_with_workers(cfg: ConfigDir) -> None:
    assert load_config(cfg.root, now=NOW, workers=2) == cfg.load()


def test_la_outbound_defaults_beside_the_store_and_resolves_against_the_config_dir(
    cfg: ConfigDir,
) -> None:
    settings = cfg.load().settings
    assert settings is not None and settings.la_outbound == cfg.root / "la" / "outbound"
    cfg.write("b2bd.yaml", SETTINGS.replace("path: la}", "path: la, outbound: ../changes}"))
    settings = cfg.load().settings
    assert settings is not None and settings.la_outbound == cfg.root.parent / "changes"


def test_without_state_dir_the_state_dir_is_systemds_state_directory(
    cfg: ConfigDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """systemd's StateDirectory= sets $STATE_DIRECTORY (its first entry counts); without it,
    /var/lib/b2bd."""
    cfg.write("b2bd.yaml", SETTINGS.replace("state_dir: state\n", ""))
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/b2bd-x:/var/lib/other")
    settings = cfg.load().settings
    assert settings is not None and settings.state_dir == Path("/var/lib/b2bd-x")
    monkeypatch.delenv("STATE_DIRECTORY")
    settings = cfg.load().settings
    assert settings is not None and settings.state_dir == Path("/var/lib/b2bd")


def test_missing_tasks_folder_is_an_error_not_an_empty_config(cfg: ConfigDir) -> None:
    import shutil

    shutil.rmtree(cfg.root / "tasks")
    config = cfg.load()
    assert not config.valid and config.tasks == {}
    (problem,) = config.problems
    assert (problem.file, problem.line, problem.column) == ("tasks/", 0, 0)
    assert problem.rule == "file-unreadable" and "missing" in problem.message


def test_tasks_replaced_by_a_file_on_reload_keeps_every_last_good_task(cfg: ConfigDir) -> None:
    good = cfg.load()
    assert list(good.tasks) == ["t"]
    for name in os.listdir(cfg.root / "tasks"):
        os.unlink(cfg.root / "tasks" / name)
    os.rmdir(cfg.root / "tasks")
    cfg.write("tasks", "not a folder\n")
    config = load_config(cfg.root, now=NOW, last_good=good)
    assert config.tasks == good.tasks
    (problem,) = config.problems
    assert problem.file == "tasks/" and problem.message.startswith("tasks is not a folder")


def test_an_empty_tasks_folder_is_a_valid_config_without_tasks(cfg: ConfigDir) -> None:
    os.unlink(cfg.root / "tasks" / "t.yaml")
    config = cfg.load()
    assert config.valid and config.tasks == {} and config.problems == ()


def test_a_one_process_load_leaves_other_threads_their_garbage_collector(cfg: ConfigDir) -> None:
    """The daemon loads beside its transfer threads: a load must not pause the cyclic
    collector process-wide (only forked parse workers pause it, see test_parallel.py)."""
    many_files(cfg, 100)
    seen: list[bool] = []
    loading = threading.Event()
    loading.set()

    def watch() -> None:
        while loading.is_set():
            seen.append(gc.isenabled())
            time.sleep(0)  # give the GIL back

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(3):
            load_config(cfg.root, now=NOW)
    finally:
        loading.clear()
        watcher.join()
    assert seen and all(seen)
