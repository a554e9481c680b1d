"""Property tests: whatever bytes a task file holds, loading never raises and always reports
well-formed problems (a known rule id, a severity, a relative file, a position inside the file,
a message), and ``b2bd validate --format json`` always prints parseable JSON with exit 0 or 1.

Inputs: binary junk, invalid UTF-8, NUL bytes, BOMs, long lines, deep nesting, huge numbers,
alias bombs and recursive aliases, merge keys, explicit tags, several documents, empty files,
line-level mutations of the shipped example tasks and value-level mutations of their documents.

``B2BD_FUZZ_SCALE=20`` multiplies the number of examples for a longer hunt; the default run
stays within a few tens of seconds.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from b2bd.config.load import load_config, read_text
from b2bd.config.model import Config, Problem
from b2bd.config.packaged import schema
from b2bd.config.yamlfile import FileProblem, parse

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config"
NOW = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
SCALE = int(os.environ.get("B2BD_FUZZ_SCALE", "1"))

# Every rule id of the DESIGN section 3 table; nothing else may ever be reported.
RULES = frozenset(
    {
        "yaml-syntax",
        "yaml-duplicate-key",
        "yaml-ambiguous",
        "file-unreadable",
        "yaml-too-complex",
        "schema",
        "id-format",
        "id-duplicate",
        "base-unknown",
        "base-selector-empty",
        "base-prerequisites",
        "base-lockdown",
        "to-school-changed-only",
        "to-school-ncy-only",
        "attendance-kind-required",
        "attendance-kind-unexpected",
        "months-attendance-only",
        "sims-primary-only",
        "ncy-code",
        "ncy-unexpected",
        "time-format",
        "timezone-unknown",
        "schedule-expired",
        "months-heavy",
        "la-prerequisites",
        "bases-file",
        # Beyond the DESIGN table (README's rules table lists them):
        "wonde-to-school",
        "wonde-tls-unverified",
    }
)
FILE_RULES = frozenset({"yaml-syntax", "yaml-duplicate-key", "file-unreadable", "yaml-too-complex"})
EXAMPLE_TASKS = sorted(p.name for p in (EXAMPLE / "tasks").glob("*.yaml"))
TARGET = "tasks/fuzzed.yaml"

_FUZZ = settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
        HealthCheck.large_base_example,
    ],
)


def fuzz(examples: int) -> settings:
    """Settings for one property: no deadline (a shared 2-core box is noisy), scaled examples."""
    return settings(_FUZZ, max_examples=examples * SCALE)


# ---------------------------------------------------------------------------------------------
# Checking a result


def line_count(raw: bytes) -> int:
    """Lines as YAML counts them (every break character starts one), generously: a CRLF counts
    twice, so the bound is an upper one."""
    text = raw.decode("utf-8", errors="replace")
    breaks = sum(text.count(c) for c in ("\n", "\r", "\x85", "\u2028", "\u2029"))
    return breaks + 1


def assert_well_formed(problem: Problem, root: Path) -> None:
    assert problem.rule in RULES, problem
    assert problem.severity in ("error", "warning"), problem
    assert problem.file and not Path(problem.file).is_absolute(), problem
    assert ".." not in Path(problem.file).parts, problem
    assert isinstance(problem.line, int) and problem.line >= 0, problem
    assert isinstance(problem.column, int) and problem.column >= 0, problem
    assert isinstance(problem.message, str) and problem.message.strip(), problem
    path = root / problem.file
    if path.is_file() and not path.is_symlink():
        assert problem.line <= line_count(path.read_bytes()) + 1, problem


def assert_config(config: Config, root: Path) -> None:
    for problem in config.problems:
        assert_well_formed(problem, root)
    assert list(config.problems) == sorted(config.problems)
    # A file refused as a whole has exactly that one problem; its task is never loaded.
    loaded_files = {task.file for task in config.tasks.values()}
    for problem in config.problems:
        if problem.rule in FILE_RULES:
            assert problem.file not in loaded_files, problem
        if problem.severity == "error" and problem.file.startswith("tasks/"):
            assert problem.file not in loaded_files, problem
    json.dumps([p.message for p in config.problems])  # messages are plain text


def check_parse(raw: bytes, tmp: Path) -> None:
    """read_text + parse on one file: a document or a FileProblem, nothing else."""
    path = tmp / "doc.yaml"
    path.write_bytes(raw)
    try:
        text = read_text(path, tmp)
        doc = parse(text, "doc.yaml")
    except FileProblem as exc:
        assert exc.rule in FILE_RULES, exc.rule
        assert exc.message.strip()
        assert 0 <= exc.line <= line_count(raw) + 1
        assert exc.column >= 0
        return
    assert isinstance(doc.data, dict)
    for pos in (*doc.values.values(), *doc.keys.values()):
        assert 1 <= pos.line <= line_count(raw) + 1
        assert pos.column >= 1


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the example config; each example writes one extra task file into it."""
    root = tmp_path_factory.mktemp("fuzz") / "config"
    shutil.copytree(EXAMPLE, root)
    yield root


def load_with(root: Path, raw: bytes, name: str = TARGET) -> Config:
    path = root / name
    original = path.read_bytes() if path.exists() else None
    path.write_bytes(raw)
    try:
        config = load_config(root, now=NOW)
        assert_config(config, root)
        return config
    finally:
        if original is None:
            path.unlink()
        else:
            path.write_bytes(original)


# ---------------------------------------------------------------------------------------------
# Strategies


SPECIAL_SCALARS = [
    "12:30",
    "06:30",
    "24:00",
    "7:5",
    "on",
    "off",
    "NO",
    "yes",
    "y",
    "~",
    "null",
    "true",
    "False",
    "010",
    "0o17",
    "0x1F",
    "08",
    "1.10",
    "1e3",
    "1e999",
    "-1e999",
    ".inf",
    "-.inf",
    ".nan",
    "2026-12-01",
    "2026-12-01T06:30",
    "2026-02-30",
    "0001-01-01T00:00",
    "9999-12-31T23:59",
    "Europe/London",
    "Mars/Phobos",
    "localtime",
    "../../etc/passwd",
    "8814001",
    '"8814001"',
    "'x'",
    '"\\u0000"',
    '"\\x85"',
    "=",
    "<<",
    "!",
    "&",
    "*",
    "|",
    ">",
    "- ",
    "? ",
    "#",
    "%",
    "@",
    "`",
    '"',
    "'",
    "{",
    "}",
    "[",
    "]",
    ",",
    "1" * 5000,
    "0x" + "f" * 5000,
    "0o" + "7" * 6000,
    "-" + "9" * 4299,
    "9" * 4301,
    "1" + "0" * 400 + ".5",
    "0." + "0" * 5000 + "1",
    "1e-99999",
    "99999999999999999999d",
    "!!binary aGVsbG8=",
    "!!set {a, b}",
    "!!timestamp 2026-01-01",
    "!!timestamp 2026-01-01 10:00",
    "!!omap [a: 1, b: 2]",
    "!!pairs [a: 1, a: 2]",
    "!!python/object:os.system {}",
    "!!python/name:os.system",
    "!!int abc",
    "!!float x",
    "!!bool maybe",
    "!!null x",
    "!!str 5",
    "!!int 0x" + "f" * 5000,
    "!!float " + "9" * 5000,
    "!foo bar",
    "!<tag:x> y",
    "!!map []",
    "!!seq {}",
    "!!merge x",
    "!!value",
    "\ufeff",
    "\x00",
    "\t",
    "\u2028",
]

plain_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20
)  # any code point but lone surrogates (they cannot be written as UTF-8)

scalar_text = st.one_of(
    st.sampled_from(SPECIAL_SCALARS),
    plain_text,
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    plain_text.map(json.dumps),
)


@st.composite
def yaml_text(draw: st.DrawFn) -> str:
    """Random YAML-ish text: block and flow collections, anchors, aliases and merge keys built
    from random and troublesome scalars (often invalid YAML, which is the point)."""
    anchors: list[str] = []

    def node(depth: int, indent: int) -> str:
        choice = draw(st.integers(0, 9)) if depth < 6 else 0
        prefix = ""
        if draw(st.integers(0, 5)) == 0:
            name = f"a{len(anchors)}"
            anchors.append(name)
            prefix = f"&{name} "
        if choice <= 3:
            if anchors and draw(st.booleans()):
                return f"*{draw(st.sampled_from(anchors))}"
            return prefix + draw(scalar_text)
        if choice <= 5:
            items = draw(st.integers(0, 4))
            keys = [draw(scalar_text) for _ in range(items)]
            if anchors and draw(st.booleans()):
                keys.append("<<")
            pad = " " * (indent + 2)
            body = "".join(f"\n{pad}{k}: {node(depth + 1, indent + 2)}" for k in keys)
            return prefix + (body if body else "{}")
        if choice <= 7:
            items = draw(st.integers(0, 4))
            pad = " " * (indent + 2)
            body = "".join(f"\n{pad}- {node(depth + 1, indent + 4)}" for _ in range(items))
            return prefix + (body if body else "[]")
        if choice == 8:
            parts = ", ".join(
                f"{draw(scalar_text)}: {node(depth + 1, indent)}"
                for _ in range(draw(st.integers(0, 3)))
            )
            return prefix + "{" + parts + "}"
        parts = ", ".join(node(depth + 1, indent) for _ in range(draw(st.integers(0, 3))))
        return prefix + "[" + parts + "]"

    keys = draw(st.lists(st.one_of(st.sampled_from(_TASK_KEYS), scalar_text), max_size=6))
    text = "".join(f"{k}: {node(1, 0)}\n" for k in keys)
    if draw(st.booleans()):
        text = (
            draw(st.sampled_from(["", "---\n", "%YAML 1.1\n---\n", "\ufeff", "--- !!map\n"])) + text
        )
    if draw(st.integers(0, 4)) == 0:
        text += draw(st.sampled_from(["---\n", "...\n", "--- x\n", "---\na: 1\n"]))
    return text


_TASK_KEYS = [
    "id",
    "description",
    "enabled",
    "direction",
    "bases",
    "data",
    "cohort",
    "schedule",
    "policy",
]


def billion_laughs(levels: int, width: int) -> str:
    lines = ["a0: &a0 [lol]"]
    for i in range(1, levels + 1):
        refs = ", ".join([f"*a{i - 1}"] * width)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


@st.composite
def hostile(draw: st.DrawFn) -> bytes:
    """Hand-made attack shapes with random sizes."""
    kind = draw(st.integers(0, 11))
    n = draw(st.integers(1, 300))
    if kind == 0:
        text = billion_laughs(draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    elif kind == 1:
        text = "a: " + "[" * n + "]" * draw(st.sampled_from([0, n]))
    elif kind == 2:
        text = "a:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, n)) + " " * n + "x"
    elif kind == 3:
        text = "a: " + "{b: " * n + "c" + "}" * n
    elif kind == 4:
        digits = draw(st.integers(1, 12000))
        sign = draw(st.sampled_from(["", "-", "+"]))
        body = draw(
            st.sampled_from(
                [
                    "9" * digits,
                    "0x" + "f" * digits,
                    "0o" + "7" * digits,
                    "1" + "0" * digits + ".0",
                    "1e" + "9" * min(digits, 50),
                ]
            )
        )
        text = f"id: x\ndata: {{type: attendance, months: {sign}{body}}}\n"
    elif kind == 5:
        text = draw(
            st.sampled_from(
                [
                    "a: &a [*a]\n",
                    "a: &a {b: *a}\n",
                    "a: &a {<<: *a}\n",
                    "a: &a\n  b: *a\n",
                    "&a [*a]\n",
                    "a: &a [1, &b [*a, *b]]\n",
                    "a: &a\n  <<: *a\n  b: 1\n",
                ]
            )
        )
    elif kind == 6:
        tag = draw(
            st.sampled_from(
                [
                    "!!python/object:os.system",
                    "!!python/object/apply:os.system",
                    "!!binary",
                    "!!set",
                    "!!timestamp",
                    "!!omap",
                    "!!pairs",
                    "!!int",
                    "!!float",
                    "!!bool",
                    "!!str",
                    "!!null",
                    "!!map",
                    "!!seq",
                    "!!merge",
                    "!!value",
                    "!!yaml",
                    "!local",
                ]
            )
        )
        value = draw(
            st.sampled_from(
                ["", "x", "1", "2026-01-01", "aGVsbG8=", "[a]", "{a: 1}", "[a: 1]", "{a, b}", "0x1"]
            )
        )
        where = draw(st.sampled_from(["id", "data", "schedule", "description", "bases"]))
        text = f"{where}: {tag} {value}\n"
    elif kind == 7:
        docs = draw(st.integers(2, 5))
        text = "".join(f"---\nid: d{i}\n" for i in range(docs))
    elif kind == 8:
        text = draw(
            st.sampled_from(
                [
                    "",
                    " ",
                    "\n",
                    "#\n",
                    "---\n",
                    "...\n",
                    "~\n",
                    "null\n",
                    "- a\n",
                    "a\n",
                    "'a'\n",
                    "[]\n",
                    "{}\n",
                    "\ufeff",
                    "\ufeff\ufeff",
                    "\x00",
                    "\ufeffid: x\n",
                    "a: b\x00c\n",
                ]
            )
        )
    elif kind == 9:
        text = "id: " + "x" * draw(st.integers(1000, 200_000)) + "\n"
    elif kind == 10:
        base = "b: &b {x: 1, y: 2}\n"
        text = base + draw(
            st.sampled_from(
                [
                    "c: {<<: *b, x: 3}\n",
                    "c: {x: 3, <<: *b}\n",
                    "c: {<<: [*b, *b]}\n",
                    "c: {<<: 1}\n",
                    "c: {<<: [1]}\n",
                    "c: {<<: *b, <<: *b}\n",
                    "c:\n  <<: *b\n  x: 1\n  x: 2\n",
                    "m: &m {<<: *b, x: 2}\nc: {<<: *m}\n",
                    "c: {<<: &m {<<: *b, x: 2}, d: *m}\n",
                ]
            )
        )
    else:
        text = "\n".join(f"k{i}: {'a' * n}" for i in range(draw(st.integers(1, 4000)))) + "\n"
    raw = text.encode("utf-8")
    if draw(st.integers(0, 4)) == 0:
        at = draw(st.integers(0, len(raw)))
        raw = (
            raw[:at]
            + draw(st.sampled_from([b"\x00", b"\xff", b"\xef\xbb\xbf", b"\xc3", b"\r"]))
            + raw[at:]
        )
    return raw


def _example_lines() -> list[list[str]]:
    return [
        (EXAMPLE / "tasks" / n).read_text("utf-8").splitlines(keepends=True) for n in EXAMPLE_TASKS
    ]


EXAMPLE_LINES = _example_lines()


@st.composite
def mutated_example(draw: st.DrawFn) -> bytes:
    """One of the shipped task files with a few line-level edits."""
    lines = list(draw(st.sampled_from(EXAMPLE_LINES)))
    for _ in range(draw(st.integers(1, 5))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.integers(0, 6))
        if op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[i])
        elif op == 2:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 3:
            delta = draw(st.sampled_from([-4, -2, -1, 1, 2, 4]))
            stripped = lines[i].lstrip(" ")
            indent = max(0, len(lines[i]) - len(stripped) + delta)
            lines[i] = " " * indent + stripped
        elif op == 4 and ":" in lines[i]:
            head = lines[i].split(":", 1)[0]
            lines[i] = f"{head}: {draw(scalar_text)}\n"
        elif op == 5:
            line = lines[i]
            at = draw(st.integers(0, len(line)))
            lines[i] = (
                line[:at]
                + draw(
                    st.sampled_from(
                        ["\t", "'", '"', "{", "[", "&a ", "*a", "!!binary ", "<<: ", " #", "- "]
                    )
                )
                + line[at:]
            )
        else:
            lines[i] = lines[i].replace("\n", "\r\n")
    return "".join(lines).encode("utf-8")


def _schema_values() -> list[Any]:
    """Every enum/const value of the schemas: mutations that stay close to valid documents."""
    found: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "enum" and isinstance(value, list):
                    found.extend(value)
                elif key == "const":
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for kind in ("task", "bases", "b2bd"):
        walk(schema(kind))
    return found


VALUES: list[Any] = [
    *_schema_values(),
    "06:30",
    "23:59",
    "24:00",
    "6:30",
    "2026-12-01T06:30",
    "2025-01-01T00:00",
    "0001-01-01T00:30",
    "9999-12-31T23:59",
    "2026-02-29T06:30",
    "2024-02-29T06:30",
    "2027-07-31",
    "2020-01-01",
    "9999-12-31",
    "0001-01-01",
    "Europe/London",
    "America/New_York",
    "Pacific/Kiritimati",
    "Etc/GMT+12",
    "UTC",
    "Mars/Phobos",
    "8814001",
    "8812002",
    "8815005",
    "9999999",
    "881400",
    "secondary",
    "primary",
    "north",
    "nope",
    "30s",
    "1h30m",
    "0s",
    "1d",
    "999999d",
    "99999999999999999999d",
    "9" * 30 + "s",
    "last",
    "all",
    0,
    1,
    -1,
    6,
    7,
    13,
    14,
    29,
    30,
    31,
    32,
    10**20,
    -(10**20),
    16**1200,
    1.5,
    float("inf"),
    True,
    False,
    None,
    "",
    [],
    {},
    ["mon"],
    ["06:30", "06:30"],
    [29],
    ["last"],
    {"all": True},
    {"ids": ["8814001"]},
]
VALUES = [v for v in VALUES if isinstance(v, (str, int, float, bool, list, dict, type(None)))]


def _example_docs() -> list[dict[str, Any]]:
    docs = []
    for name in EXAMPLE_TASKS:
        docs.append(parse((EXAMPLE / "tasks" / name).read_text("utf-8"), name).data)
    return docs


EXAMPLE_DOCS = _example_docs()


@st.composite
def mutated_document(draw: st.DrawFn) -> bytes:
    """An example task document with values replaced, keys removed or added, then written back
    as YAML: this reaches the model builder and the cross-file rules, not just the parser."""
    doc = copy.deepcopy(draw(st.sampled_from(EXAMPLE_DOCS)))
    value = st.sampled_from(VALUES).map(copy.deepcopy)  # shared lists must not grow

    def containers(node: Any) -> list[tuple[Any, Any]]:
        out: list[tuple[Any, Any]] = []
        if isinstance(node, dict):
            for k, v in node.items():
                out.append((node, k))
                out.extend(containers(v))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                out.append((node, i))
                out.extend(containers(v))
        return out

    for _ in range(draw(st.integers(1, 4))):
        places = containers(doc)
        if not places:
            break
        parent, key = draw(st.sampled_from(places))
        op = draw(st.integers(0, 4))
        if op <= 2:
            parent[key] = draw(value)
        elif op == 3:
            del parent[key]
        elif isinstance(parent, dict):
            parent[
                draw(
                    st.sampled_from(
                        [
                            *_TASK_KEYS,
                            "weekly",
                            "monthly",
                            "once",
                            "expires",
                            "starts",
                            "timezone",
                            "ncy",
                            "months",
                            "attendance",
                            "tags",
                            "ids",
                            "all",
                            "jitter",
                            "timeout",
                            "x",
                        ]
                    )
                )
            ] = draw(value)
        else:
            parent.append(draw(value))
    dumped = yaml.safe_dump(doc, default_flow_style=draw(st.booleans()), allow_unicode=True)
    return dumped.encode("utf-8")


junk = st.one_of(
    st.binary(max_size=2000),
    plain_text.map(lambda s: s.encode("utf-8")),
    st.binary(max_size=200).map(lambda b: b"id: x\n" + b + b"\ndata: {type: snapshot}\n"),
    st.sampled_from(
        [
            b"\xef\xbb\xbf",
            b"\xff\xfe",
            b"\xfe\xff",
            b"\x00\x00\xfe\xff",
            b"\xed\xa0\x80",
            b"\xc0\x80",
            b"\xf4\x90\x80\x80",
        ]
    ).map(lambda b: b + b"id: x\n"),
)

anything = st.one_of(
    junk,
    yaml_text().map(lambda s: s.encode("utf-8")),
    hostile(),
    mutated_example(),
    mutated_document(),
)


# ---------------------------------------------------------------------------------------------
# Properties


@fuzz(150)
@given(raw=st.one_of(junk, yaml_text().map(lambda s: s.encode("utf-8")), hostile()))
@example(raw=billion_laughs(9, 9).encode())
@example(raw=b"a: &a [*a]\n")
@example(raw=b"\xff\xfe\x00i\x00d")
@example(raw=b"a: " + b"[" * 100_000)
@example(raw=b"a: 0x" + b"f" * 5000)
@example(raw=b"")
@example(raw=b"id: x\x00\n")
def test_parse_never_raises(raw: bytes, tmp_path: Path) -> None:
    check_parse(raw, tmp_path)


@fuzz(350)
@given(raw=anything)
@example(raw=billion_laughs(12, 10).encode())
@example(raw=("id: x\n" + "y" * 1_100_000).encode())
@example(raw=b"---\nid: a\n---\nid: b\n")
@example(raw=b"(: !!map [(]")  # a collection tag on the wrong kind of node
def test_load_config_never_raises(raw: bytes, config_dir: Path) -> None:
    config = load_with(config_dir, raw)
    # The example tasks are untouched, so they still load whatever the extra file holds
    # (unless it steals one of their ids, which takes both out).
    if not any(p.rule == "id-duplicate" for p in config.problems):
        assert len(config.tasks) >= len(EXAMPLE_TASKS)


@fuzz(300)
@given(raw=st.one_of(mutated_example(), mutated_document()), name=st.sampled_from(EXAMPLE_TASKS))
def test_mutated_example_task_never_raises(raw: bytes, name: str, config_dir: Path) -> None:
    load_with(config_dir, raw, f"tasks/{name}")


@fuzz(60)
@given(
    raw=st.one_of(junk, yaml_text().map(lambda s: s.encode("utf-8")), hostile()),
    name=st.sampled_from(["b2bd.yaml", "bases.yaml"]),
)
def test_fuzzed_settings_and_bases_never_raise(raw: bytes, name: str, config_dir: Path) -> None:
    load_with(config_dir, raw, name)


def _line_mutations(name: str) -> st.SearchStrategy[bytes]:
    lines = (EXAMPLE / name).read_text("utf-8").splitlines(keepends=True)

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        out = list(lines)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(out) - 1))
            if ":" in out[i] and draw(st.booleans()):
                head = out[i].split(":", 1)[0]
                out[i] = f"{head}: {draw(scalar_text)}\n"
            elif draw(st.booleans()):
                del out[i]
            else:
                out.insert(i, out[i])
            if not out:
                break
        return "".join(out).encode("utf-8")

    return mutate()


@fuzz(60)
@given(
    name_raw=st.sampled_from(["b2bd.yaml", "bases.yaml"]).flatmap(
        lambda n: st.tuples(st.just(n), _line_mutations(n))
    )
)
def test_mutated_settings_and_bases_never_raise(
    name_raw: tuple[str, bytes], config_dir: Path
) -> None:
    name, raw = name_raw
    load_with(config_dir, raw, name)


# ---------------------------------------------------------------------------------------------
# Regressions: crashes the fuzzing found, pinned with the problem users now see


# ---------------------------------------------------------------------------------------------
# Regressions: inputs that once crashed loading, pinned with the problem users now see


ATTAINMENT = (EXAMPLE / "tasks" / "termly-attainment.yaml").read_text("utf-8")
MONTHLY = 'monthly: {days: [15], months: [jan, jul], times: ["02:30"]}'
REGRESSIONS = {
    # ValueError printing an int over 4,300 digits (hex/octal ints are not limited on input)
    "hex-int-months": (
        "tasks/termly-attainment.yaml",
        ATTAINMENT.replace(
            "{type: attainment}", "{type: attainment, months: 0x" + "f" * 4000 + "}"
        ),
        "yaml-syntax",
        6,
        34,
    ),
    "octal-int-id": (
        "tasks/termly-attainment.yaml",
        ATTAINMENT.replace("id: termly-attainment", "id: 0o" + "7" * 5000),
        "yaml-syntax",
        2,
        5,
    ),
    # TypeError: json.dumps(datetime.date) in the enum message
    "timestamp-tag-in-enum": (
        "tasks/termly-attainment.yaml",
        ATTAINMENT.replace("{type: attainment}", "{type: !!timestamp 2026-01-01}"),
        "yaml-syntax",
        6,
        14,
    ),
    # AttributeError / IndexError / KeyError inside PyYAML's tagged-scalar constructors
    "empty-timestamp-tag": ("tasks/termly-attainment.yaml", "(: !!timestamp", "yaml-syntax", 1, 4),
    "empty-float-tag": ("tasks/termly-attainment.yaml", "(: !!float", "yaml-syntax", 1, 4),
    "unreadable-bool-tag": (
        "tasks/termly-attainment.yaml",
        "a: !!bool maybe\n",
        "yaml-syntax",
        1,
        4,
    ),
    # OverflowError: a once slot in year 1 east of UTC is before datetime.min
    "once-year-1": (
        "tasks/termly-attainment.yaml",
        ATTAINMENT.replace(MONTHLY, 'once: "0001-01-01T00:30"').replace(
            "Europe/London", "Asia/Tokyo"
        ),
        "schema",
        9,
        9,
    ),
    # OverflowError: timedelta(seconds=...) of a duration with 20 digits
    "huge-duration": (
        "tasks/termly-attainment.yaml",
        ATTAINMENT + "policy: {timeout: 99999999999999999999d}\n",
        "schema",
        11,
        19,
    ),
    # ValueError: int() of a 5,000-digit version component in version_tuple
    "huge-one-version": (
        "b2bd.yaml",
        (EXAMPLE / "b2bd.yaml").read_text("utf-8").replace('"3.83"', '"3.' + "8" * 5000 + '"'),
        "la-prerequisites",
        4,
        14,
    ),
}


@pytest.mark.parametrize("case", sorted(REGRESSIONS))
def test_regression_is_a_problem_not_a_crash(case: str, config_dir: Path) -> None:
    name, text, rule, line, column = REGRESSIONS[case]
    config = load_with(config_dir, text.encode("utf-8"), name)
    found = [(p.rule, p.line, p.column) for p in config.problems if p.file == name]
    assert (rule, line, column) in found, found


def _bases_yaml(count: int) -> str:
    entries = "".join(
        f'  - id: "{881_0000 + n}"\n    name: School {n}\n    mis: sims\n'
        f'    sims_version: "7.214"\n'
        f"    b2b_phase: 2\n    services_manager: true\n    tags: [north, secondary]\n"
        f"    endpoint: {{type: directory, path: schools/{n}}}\n"
        for n in range(count)
    )
    return "bases:\n" + entries


def test_a_registry_of_600_bases_is_not_too_complex(config_dir: Path) -> None:
    # ~20 nodes a base: 600 bases are over the 10,000 nodes a task file may have.
    config = load_with(config_dir, _bases_yaml(600).encode(), "bases.yaml")
    assert not [p for p in config.problems if p.file == "bases.yaml" and p.severity == "error"]
    assert len(config.bases) == 600


def test_alias_bombs_are_refused_in_bases_yaml_too(config_dir: Path) -> None:
    config = load_with(config_dir, billion_laughs(9, 10).encode(), "bases.yaml")
    assert [(p.rule, p.line) for p in config.problems if p.file == "bases.yaml"] == [
        ("yaml-too-complex", 1)
    ]


def test_chained_aliases_count_their_full_depth(config_dir: Path) -> None:
    # Each anchor nests the previous one 30 levels down: 5 of them are 150 levels deep.
    lines = [f"a{i}: &a{i} " + "[" * 30 + (f"*a{i - 1}" if i else "x") + "]" * 30 for i in range(5)]
    config = load_with(config_dir, "\n".join(lines).encode())
    assert [p.rule for p in config.problems if p.file == TARGET] == ["yaml-too-complex"]


# ---------------------------------------------------------------------------------------------
# The CLI


def run_validate(root: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "b2bd", "--config", str(root), "validate", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 1), (proc.returncode, proc.stderr)
    result: dict[str, Any] = json.loads(proc.stdout)
    assert result["valid"] is (proc.returncode == 0)
    return result


CLI_CASES = {
    "binary-junk": bytes(range(256)) * 4,
    "invalid-utf8": b"id: caf\xe9\n",
    "billion-laughs": billion_laughs(12, 10).encode(),
    "recursive-alias": b"id: &a [*a]\n",
    "merge-keys": b"b: &b {x: 1}\nid: {<<: *b, x: 2}\n",
    "python-tag": b"id: !!python/object/apply:os.system [echo owned]\n",
    "huge-hex": b"id: x\ndata: {months: 0x" + b"f" * 5000 + b"}\n",
    "nul-bom": b"\xef\xbb\xbfid: a\x00b\n",
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_validate_json_for_hostile_task(case: str, tmp_path: Path) -> None:
    root = tmp_path / "config"
    shutil.copytree(EXAMPLE, root)
    (root / TARGET).write_bytes(CLI_CASES[case])
    result = run_validate(root)
    assert result["valid"] is False
    ours = [p for p in result["problems"] if p["file"] == TARGET]
    assert ours and all(p["severity"] == "error" and p["rule"] in RULES for p in ours)
    for p in result["problems"]:
        assert p["line"] >= 0 and p["column"] >= 0 and p["message"]
    assert result["tasks"] == len(EXAMPLE_TASKS)
