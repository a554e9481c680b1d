"""The package's import graph: no cycles anywhere in b2bd, and the model imports light.

The graph is read from the source with :mod:`ast`, every ``import`` counted wherever it stands
(module level, inside a function, under ``TYPE_CHECKING``): an import moved into a function to
dodge a cycle is still a cycle in the design. Importing ``a.b.c`` also runs the ``__init__`` of
``a`` and ``a.b``, so those count too, except a module's own enclosing packages (which are
already being imported when it runs).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

import b2bd

PACKAGE_DIR = Path(b2bd.__file__).parent


def modules_of(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package at ``package_dir``."""
    found: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _enclosing(name: str) -> list[str]:
    """``a.b.c`` -> ``["a", "a.b"]``: the packages whose ``__init__`` runs first."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's own modules that importing ``name`` imports directly."""
    tree = ast.parse(path.read_bytes(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in modules else base)
    own = set(_enclosing(name)) | {name}
    edges: set[str] = set()
    for target in targets:
        if target not in modules:
            continue  # the standard library or a third-party package
        edges.add(target)
        edges.update(p for p in _enclosing(target) if p not in own)
    edges.discard(name)
    return edges


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    modules = modules_of(package_dir)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan), each as
    a path that returns to its start, so a failure shows the modules to untangle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: set[str] = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(_path_through(graph, component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _path_through(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A cycle inside ``component``, found by a breadth-first search back to its first node."""
    start = min(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for nxt in sorted(graph[node] & component):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if nxt not in previous:
                    previous[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {sorted(component)}")


def test_b2bd_has_no_import_cycle() -> None:
    graph = import_graph(PACKAGE_DIR)
    assert len(graph) > 40  # every module was read (a wrong root would find none)
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def _write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root / "pkg"


def test_the_checker_finds_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    package = _write_package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg.b import thing\n",
            "pkg/b.py": """\
                def thing():
                    from pkg import a  # dodges the cycle at run time, not in the design
                    return a
                """,
            "pkg/c.py": "import json\nfrom . import a\n",
        },
    )
    graph = import_graph(package)
    assert graph["pkg.c"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.a"]]


def test_the_checker_counts_a_package_init_that_imports_back(tmp_path: Path) -> None:
    """Importing ``pkg.sub.model`` runs ``pkg/sub/__init__.py``: if that imports a module that
    imports ``pkg.sub.model`` back, it is a cycle (the old calendar/config knot)."""
    package = _write_package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/sub/__init__.py": "from pkg.sub.load import load\n",
            "pkg/sub/load.py": "from pkg.calendar import slots\n",
            "pkg/sub/model.py": "",
            "pkg/calendar.py": """\
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from pkg.sub.model import Schedule
                """,
        },
    )
    found = cycles(import_graph(package))
    assert found == [["pkg.calendar", "pkg.sub", "pkg.sub.load", "pkg.calendar"]]


PURE_CORE = frozenset(
    {
        "b2bd.schedule",
        "b2bd.shard",
        "b2bd.config",
        "b2bd.config.model",
        "b2bd.config.build",
        "b2bd.config.schema",
        "b2bd.config.rules",
        "b2bd.config.diff",
        "b2bd.config.yamlfile",
        "b2bd.config.publish",
        "b2bd.connectors",
        "b2bd.connectors.source",
        "b2bd.records",
        "b2bd.records.model",
        "b2bd.records.check",
        "b2bd.records.codes",
        "b2bd.records.ncy",
        "b2bd.records.upn",
        "b2bd.records.academic",
        "b2bd.records.shapes",
        "b2bd.prerequisites",
        "b2bd.readiness",
        "b2bd.transfer.query",
        "b2bd.transfer.extract",
        "b2bd.transfer.manual",
        "b2bd.transfer.results",
        "b2bd.journal",
        "b2bd.journal.entries",
        "b2bd.journal.history",
        "b2bd.journal.memory",
        "b2bd.journal.state",
        "b2bd.daemon.due",
        "b2bd.report",
        "b2bd.run_names",
        "b2bd.plan",
        "b2bd.migrate",
        "b2bd.faults",
        "b2bd.telemetry",
    }
)
"""The modules that decide (README's architecture: no clock, no I/O)."""

KNOWN_SHELL_EDGES = {
    # Each is a debt, named so that no new one creeps in unseen.
}


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_pure_core_imports_no_shell_module() -> None:
    """Dependencies point inward: importing a core module loads no I/O module, directly or
    through another, except the listed known edges (followed no further)."""
    graph = import_graph(PACKAGE_DIR)
    assert graph.keys() >= PURE_CORE
    # Every core module's direct imports stay in the core (a known edge is cut where it leaves
    # it), so everything reachable from the core through the remaining edges is core too.
    cut = {m: {n for n in e if (m, n) not in KNOWN_SHELL_EDGES} for m, e in graph.items()}
    allowed = PURE_CORE | {"b2bd"}
    wrong = {m: sorted(cut[m] - allowed) for m in sorted(PURE_CORE) if cut[m] - allowed}
    assert not wrong, f"core modules importing the shell: {wrong}"
    assert all(reachable(cut, m) <= allowed for m in PURE_CORE)
    unused = [edge for edge in KNOWN_SHELL_EDGES if edge[1] not in graph[edge[0]]]
    assert not unused, f"known edges that are gone (remove them from the list): {unused}"


IO_MODULES = frozenset(
    {"os", "socket", "subprocess", "shutil", "signal", "select", "selectors", "fcntl", "pwd",
     "grp", "tempfile", "time", "threading", "mmap", "urllib", "http", "httpx"}
)  # fmt: skip
"""Modules whose use is I/O, the clock or the process's state (``io``'s in-memory streams are
not, nor ``sys.byteorder``)."""

IO_CALLS = frozenset(
    {"open", "print", "input", "read_text", "read_bytes", "write_text", "write_bytes", "mkdir",
     "iterdir", "exists", "is_dir", "is_file", "is_symlink", "stat", "lstat", "resolve", "glob",
     "rglob", "unlink", "touch", "rmdir", "chmod", "cwd", "home", "expanduser", "now", "today",
     "utcnow"}
)  # fmt: skip
"""Calls that read the file system or the clock, whatever they are called on (a builtin or
a method: ``path.read_text()``, ``dt.datetime.now()``)."""

KNOWN_IO_IN_CORE = {
    # Each is a debt, named so that no new one creeps in unseen.
}


PURE_OS = frozenset({"path", "sep", "fspath", "PathLike", "linesep"})
"""What of ``os`` computes without asking the system (``os.path`` joins and splits strings)."""


def io_uses(path: Path) -> set[str]:
    """The I/O modules a module uses and the I/O calls it makes (by name); of ``os``, only
    what is not in PURE_OS counts."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names if a.name.split(".")[0] != "os")
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            top = node.module.split(".")[0]
            if top != "os" or any(a.name not in PURE_OS for a in node.names):
                found.add(top)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr not in PURE_OS
        ):
            found.add("os")
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name in IO_CALLS:
                found.add(name)
    return found & (IO_MODULES | IO_CALLS)


def test_the_pure_core_does_no_io() -> None:
    """No core module imports an I/O module or calls what reads files or the clock, except the
    listed known uses: the shell does it and passes the result in."""
    modules = modules_of(PACKAGE_DIR)
    uses = {m: io_uses(modules[m]) for m in sorted(PURE_CORE)}
    wrong = {
        m: sorted(u for u in used if (m, u) not in KNOWN_IO_IN_CORE) for m, used in uses.items()
    }
    assert not {m: u for m, u in wrong.items() if u}, f"I/O in the pure core: {wrong}"
    gone = [known for known in KNOWN_IO_IN_CORE if known[1] not in uses.get(known[0], set())]
    assert not gone, f"known I/O uses that are gone (remove them from the list): {gone}"


def test_the_io_check_sees_calls_and_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import io, os\nimport datetime as dt\nfrom time import monotonic\n"
        "def f(p):\n    io.StringIO(os.path.join(p, 'x'))\n"
        "    return p.read_text(), dt.datetime.now(), open(p)\n"
    )
    assert io_uses(module) == {"time", "read_text", "now", "open"}
    module.write_text("import os\nuser = os.geteuid()\n")
    assert io_uses(module) == {"os"}


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("b2bd.config.model", ("yaml", "jsonschema", "b2bd.config.load", "b2bd.config.rules")),
        ("b2bd.schedule", ("b2bd.config", "yaml")),
        ("b2bd.connectors.source", ("httpx",)),
    ],
)
def test_importing_a_module_pulls_in_nothing_it_does_not_need(
    module: str, absent: tuple[str, ...]
) -> None:
    code = f"import sys, {module}\nprint(' '.join(m for m in {absent!r} if m in sys.modules))\n"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == ""


def test_mypy_is_strict_on_exactly_the_pure_core() -> None:
    """pyproject.toml's strict mypy override lists the modules of PURE_CORE, no more, no less
    (a module joining the core is type-checked strictly from then on)."""
    config = tomllib.loads((PACKAGE_DIR.parent / "pyproject.toml").read_text())
    overrides = config["tool"]["mypy"]["overrides"]
    strict = [o for o in overrides if o.get("disallow_untyped_defs")]
    assert len(strict) == 1
    assert set(strict[0]["module"]) == PURE_CORE
