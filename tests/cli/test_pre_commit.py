"""The pre-commit hooks of .pre-commit-hooks.yaml, run by pre-commit itself on a temporary git
repository of config files that names this repository as its hook repository (a local path, as
`repo:` may be), exactly as an LA's config repository would.

pre-commit builds the hook's Python environment with pip (b2bd and its dependencies, from the
index this machine's pip is configured for): a few seconds once per test session, reused by
every test here through one PRE_COMMIT_HOME.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.config_dir import BASES, SETTINGS, TASK

REPO = Path(__file__).resolve().parents[2]
PRE_COMMIT = [sys.executable, "-m", "pre_commit"]
BROKEN = TASK.replace("data: {type: snapshot}", "data: {type: snapshot, months: 3}")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.org",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.org",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(
    cwd: Path, *args: str, check: bool = True, home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """git; ``home``: the PRE_COMMIT_HOME a commit's hook uses."""
    env = {**os.environ, **GIT_ENV}
    if home is not None:
        env["PRE_COMMIT_HOME"] = str(home)
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=check, timeout=600, env=env
    )


@pytest.fixture(scope="module")
def hook_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """This working tree's package as a git repository (pre-commit clones a hook repository at
    a commit, so uncommitted changes here are tested too): its path and that commit."""
    repo = tmp_path_factory.mktemp("hooks") / "b2bd"
    repo.mkdir()
    for name in ("pyproject.toml", "README.md", ".pre-commit-hooks.yaml"):
        shutil.copy2(REPO / name, repo / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "schemas", repo / "schemas", ignore=ignore)
    shutil.copytree(REPO / "b2bd", repo / "b2bd", symlinks=True, ignore=ignore)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "b2bd")
    return repo, git(repo, "rev-parse", "HEAD").stdout.strip()


@pytest.fixture(scope="module")
def pre_commit_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pre-commit-home")


def config_repo(root: Path, hook_repo: tuple[Path, str], hook: str, args: str) -> Path:
    """A config repository: config/ (b2bd.yaml, bases.yaml, tasks/t.yaml), a README and a
    .pre-commit-config.yaml naming the hook, all committed."""
    path, rev = hook_repo
    root.mkdir()
    git(root, "init", "-q")
    for name, text in {
        "config/b2bd.yaml": SETTINGS,
        "config/bases.yaml": BASES,
        "config/tasks/t.yaml": TASK,
        "README.md": "our tasks\n",
        ".pre-commit-config.yaml": (
            f"repos:\n  - repo: {path}\n    rev: {rev}\n    hooks:\n"
            f"      - id: {hook}\n        args: {args}\n"
        ),
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "config")
    return root


def pre_commit(
    root: Path, home: Path, *args: str, path: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **GIT_ENV, "PRE_COMMIT_HOME": str(home), "PIP_RETRIES": "5"}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [*PRE_COMMIT, *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def test_hook_passes_a_good_config_and_stops_a_commit_of_a_broken_task(
    tmp_path: Path, hook_repo: tuple[Path, str], pre_commit_home: Path
) -> None:
    root = config_repo(tmp_path / "la-config", hook_repo, "b2bd-validate", "[--config, config]")
    result = pre_commit(root, pre_commit_home, "run", "--all-files")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "b2bd validate" in result.stdout and "Passed" in result.stdout

    # As a commit meets it: pre-commit installed as the repository's git hook.
    assert pre_commit(root, pre_commit_home, "install").returncode == 0
    (root / "config/tasks/t.yaml").write_text(BROKEN)
    git(root, "add", "config/tasks/t.yaml")
    commit = git(root, "commit", "-m", "widen t", check=False, home=pre_commit_home)
    assert commit.returncode == 1
    output = commit.stdout + commit.stderr
    assert "Failed" in output, output
    assert (
        "config/tasks/t.yaml:4:32: error: data.months is only allowed with data.type: attendance "
        "[months-attendance-only]"
    ) in output
    assert "config: 3 files, 0 tasks, 4 bases: INVALID (1 errors, 0 warnings)" in output
    assert git(root, "log", "--format=%s").stdout.split("\n")[0] == "config"  # not committed

    # A commit that touches no config file does not run it; a fixed task commits.
    git(root, "reset", "-q", "HEAD", "config/tasks/t.yaml")
    (root / "README.md").write_text("our tasks, reviewed\n")
    git(root, "add", "README.md")
    skipped = git(root, "commit", "-m", "readme", home=pre_commit_home)
    assert "(no files to check)Skipped" in skipped.stdout + skipped.stderr
    (root / "config/tasks/t.yaml").write_text(TASK.replace("mon]", "tue]"))
    git(root, "add", "config/tasks/t.yaml")
    fixed = git(root, "commit", "-m", "move t to tuesday", check=False, home=pre_commit_home)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "Initializing environment" not in fixed.stdout + fixed.stderr  # built once, reused


def test_system_hook_uses_the_installed_b2bd_with_its_options(
    tmp_path: Path, hook_repo: tuple[Path, str], pre_commit_home: Path
) -> None:
    """`b2bd-validate-system` runs the b2bd on PATH (here this test's own, with the packages
    of this working tree); validate's options pass through `args`."""
    root = config_repo(
        tmp_path / "la-config",
        hook_repo,
        "b2bd-validate-system",
        "[--config, config, --strict]",
    )
    venv_bin = str(Path(sys.executable).parent)
    assert shutil.which("b2bd", path=venv_bin) is not None
    path = f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"
    assert pre_commit(root, pre_commit_home, "run", "--all-files", path=path).returncode == 0
    # Tag sec reaches a base below SIMS 7.166: a warning, which --strict refuses.
    (root / "config/tasks/t.yaml").write_text(TASK.replace('{ids: ["8814001"]}', "{tags: [sec]}"))
    result = pre_commit(root, pre_commit_home, "run", "--all-files", path=path)
    assert result.returncode == 1
    assert "config/tasks/t.yaml:3:16: warning: " in result.stdout
    assert "[base-prerequisites]" in result.stdout
