"""Parsing one YAML config file: bytes in, (document, positions) or a FileProblem out. Pure:
the file is read by :mod:`b2bd.config.load` (:func:`~b2bd.config.load.read_bytes`).

The loader types scalars the YAML 1.2 core way, so nothing changes silently behind the
author's back: ``12:30`` stays the string ``"12:30"`` (YAML 1.1 reads base-60 750), ``on``/``NO``
stay strings (1.1 booleans), ``010`` is ten (1.1 octal eight) and ``2026-12-01`` stays a string
(1.1 timestamp). Where such a scalar then meets a schema that wanted another type, the schema
layer reports ``yaml-ambiguous`` using :func:`yaml11_surprise`.

Refused outright, each with its rule id: unreadable files (``file-unreadable``: not UTF-8 here;
over 1 MiB, not a regular file, a symlink leaving the config dir where it is read), syntax
errors and anything but one mapping document (``yaml-syntax``), duplicate keys with both lines
(``yaml-duplicate-key``), and documents over 10,000 nodes once aliases are expanded or nested
deeper than 64 (``yaml-too-complex``), checked on the node graph before anything is
constructed.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

import yaml
import yaml.constructor
import yaml.resolver
from yaml._yaml import CParser  # libyaml's parser: what yaml.cyaml re-exports (the stubs do not)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_BYTES = 1024 * 1024
MAX_NODES = 10_000
MAX_REGISTRY_NODES = 200_000  # bases.yaml: ~25 nodes a base, so room for ~8,000 bases
MAX_DEPTH = 64
MAX_INT_DIGITS = 1000

_MERGE = "tag:yaml.org,2002:merge"
_STR = "tag:yaml.org,2002:str"
_DEFAULT_TAGS: dict[type[Node], str] = {
    ScalarNode: _STR,
    SequenceNode: "tag:yaml.org,2002:seq",
    MappingNode: "tag:yaml.org,2002:map",
}


class CoreResolver(yaml.resolver.BaseResolver):
    """YAML 1.2 core schema implicit types: no yes/no/on/off, no base-60, no timestamps.

    The parser asks it about every node of every file, so it answers directly: no path
    resolvers are registered (the bookkeeping for them is skipped) and none for any first
    character (no wildcard list to append).
    """

    def descend_resolver(self, current_node: Node | None, current_index: Any) -> None:
        pass

    def ascend_resolver(self) -> None:
        pass

    def resolve(self, kind: type[Node], value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode and implicit[0]:
            resolvers: list[tuple[str, re.Pattern[str]]] = self.yaml_implicit_resolvers.get(
                value[:1], ()
            )
            for tag, regexp in resolvers:
                if regexp.match(value):
                    return tag
        return _DEFAULT_TAGS[kind]


for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("merge", r"^(?:<<)$", "<"),
):
    CoreResolver.add_implicit_resolver(
        f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list(_first)
    )


class DuplicateKey(yaml.constructor.ConstructorError):
    def __init__(self, key: str, first: yaml.Mark, second: yaml.Mark) -> None:
        super().__init__(None, None, f"duplicate key {key!r}", second)
        self.key = key
        self.first = first


class StrictConstructor(yaml.constructor.SafeConstructor):
    """SafeConstructor that refuses duplicate keys and keeps keys as their source text.

    Only JSON's types come out (str, int, float, bool, None, list, dict): the schemas are JSON
    Schemas, so explicit ``!!timestamp``, ``!!binary``, ``!!set``, ``!!omap`` and ``!!pairs`` are
    refused, and a scalar PyYAML cannot read under its explicit tag (``!!bool maybe``,
    ``!!float ''``) is a syntax error at that scalar, not an exception.
    """

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, LookupError, TypeError, AttributeError, OverflowError) as exc:
            # PyYAML's scalar constructors fail with plain exceptions on text they cannot read.
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this {_tag_name(node.tag)} value: {exc}", node.start_mark
            ) from exc

    def construct_non_json(self, node: Node) -> Any:
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"{_tag_name(node.tag)} is not allowed: config values are strings, numbers, "
            "true/false, lists and mappings",
            node.start_mark,
        )

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, MappingNode):  # `!!map [a]`: PyYAML's own check, kept
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"{_tag_name(node.tag)} on a value that is not a mapping",
                node.start_mark,
            )
        # Checked before flatten_mapping() rewrites node.value: merged pairs may legitimately
        # be overridden by local keys, so merge keys are skipped here.
        seen: dict[str, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue
            key = self._key_text(key_node)
            if key in seen:
                raise DuplicateKey(key, seen[key], key_node.start_mark)
            seen[key] = key_node.start_mark
        self.flatten_mapping(node)
        return {
            self._key_text(key_node): self.construct_object(value_node, deep=deep)
            for key_node, value_node in node.value
        }

    @staticmethod
    def _key_text(node: Node) -> str:
        if not isinstance(node, ScalarNode):
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain scalar", node.start_mark
            )
        return str(node.value)

    def construct_yaml_int(self, node: ScalarNode) -> int:
        text = str(self.construct_scalar(node)).replace("_", "")
        sign = -1 if text.startswith("-") else 1
        body = text.lstrip("+-")
        if len(body) > MAX_INT_DIGITS:
            # Python refuses to print ints over 4,300 decimal digits (and so any message
            # quoting one would fail); hex and octal ints are not limited on the way in.
            raise ValueError(f"an integer of more than {MAX_INT_DIGITS:,} digits")
        if body.startswith("0o"):
            return sign * int(body[2:], 8)
        if body.lower().startswith("0x"):
            return sign * int(body[2:], 16)
        return sign * int(body, 10)


# The ignores below: the stubs take only PyYAML's own loader classes as the constructor's
# first argument; ours is a constructor that _Loader mixes into libyaml's parser.
StrictConstructor.add_constructor(
    "tag:yaml.org,2002:int",
    StrictConstructor.construct_yaml_int,  # type: ignore[type-var]
)
for _tag in ("timestamp", "binary", "set", "omap", "pairs"):
    StrictConstructor.add_constructor(
        f"tag:yaml.org,2002:{_tag}",
        StrictConstructor.construct_non_json,  # type: ignore[type-var]
    )


def _tag_name(tag: str | None) -> str:
    prefix = "tag:yaml.org,2002:"
    return "!!" + tag[len(prefix) :] if tag and tag.startswith(prefix) else str(tag)


class _Loader(CParser, StrictConstructor, CoreResolver):
    def __init__(self, stream: io.StringIO) -> None:
        CParser.__init__(self, stream)
        StrictConstructor.__init__(self)
        CoreResolver.__init__(self)


class Position(NamedTuple):
    """1-based. A named tuple, not a dataclass: a config has a hundred thousand of them, built on
    every load and, for a parallel load, pickled between processes."""

    line: int
    column: int


@dataclass(frozen=True)
class Loaded:
    """A parsed document with a position for every JSON pointer (values and keys)."""

    data: Any
    values: dict[str, Position]
    keys: dict[str, Position]
    plain: dict[str, str]  # pointer -> source text of plain (unquoted) scalars

    def value_at(self, pointer: str) -> Position:
        """Where the value at ``pointer`` starts; falls back to the nearest ancestor."""
        while pointer not in self.values and pointer:
            pointer = pointer.rsplit("/", 1)[0]
        return self.values.get(pointer, Position(1, 1))

    def key_at(self, pointer: str) -> Position:
        return self.keys.get(pointer) or self.value_at(pointer)

    def __reduce__(self) -> tuple[Any, ...]:
        # A parallel load pickles thousands of documents between processes: positions travel
        # as flat ints, which pickle in half the time of one named tuple each.
        return _unpickle_loaded, (
            self.data,
            tuple(self.values),
            tuple(n for position in self.values.values() for n in position),
            tuple(self.keys),
            tuple(n for position in self.keys.values() for n in position),
            self.plain,
        )


def _unpickle_loaded(
    data: Any,
    value_pointers: tuple[str, ...],
    value_positions: tuple[int, ...],
    key_pointers: tuple[str, ...],
    key_positions: tuple[int, ...],
    plain: dict[str, str],
) -> Loaded:
    def positions(pointers: tuple[str, ...], flat: tuple[int, ...]) -> dict[str, Position]:
        pairs = zip(pointers, flat[0::2], flat[1::2], strict=True)
        return {pointer: Position(line, column) for pointer, line, column in pairs}

    return Loaded(
        data,
        positions(value_pointers, value_positions),
        positions(key_pointers, key_positions),
        plain,
    )


class FileProblem(Exception):
    """The file cannot become a document: carries the rule id and a 1-based position."""

    def __init__(self, rule: str, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message
        self.line = line
        self.column = column


def decode(raw: bytes) -> str:
    """UTF-8 text, or FileProblem(file-unreadable) pointing at the first bad byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise FileProblem("file-unreadable", "not valid UTF-8", line, column) from exc


def parse(text: str, name: str, max_nodes: int = MAX_NODES) -> Loaded:
    """Parse one YAML document that must be a mapping; raise FileProblem otherwise.

    ``max_nodes`` bounds the document with aliases expanded: MAX_NODES for a task file,
    MAX_REGISTRY_NODES for bases.yaml, whose 500-odd bases legitimately exceed 10,000 nodes.
    """
    stream = io.StringIO(text)
    stream.name = name  # CParser reads the mark name from the stream at init
    loader = _Loader(stream)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            raise _syntax(exc) from exc
        except yaml.YAMLError as exc:
            raise FileProblem("yaml-syntax", str(exc).splitlines()[0], 1, 1) from exc
        if node is None:
            raise FileProblem("yaml-syntax", "empty file: expected a mapping", 1, 1)
        if not isinstance(node, MappingNode):
            mark = node.start_mark
            raise FileProblem(
                "yaml-syntax",
                "expected a mapping at the top of the file",
                mark.line + 1,
                mark.column + 1,
            )
        _check_complexity(node, max_nodes)
        try:
            data = loader.construct_document(node)
        except DuplicateKey as exc:
            mark = exc.problem_mark
            raise FileProblem(
                "yaml-duplicate-key",
                f"duplicate key {exc.key!r} (first given at line {exc.first.line + 1})",
                mark.line + 1 if mark else 1,
                mark.column + 1 if mark else 1,
            ) from exc
        except yaml.MarkedYAMLError as exc:
            raise _syntax(exc) from exc
        except (ValueError, OverflowError) as exc:
            mark = node.start_mark
            raise FileProblem("yaml-syntax", f"bad value: {exc}", mark.line + 1, 1) from exc
    finally:
        loader.dispose()
    return Loaded(data, *_positions(node))


def _syntax(exc: yaml.MarkedYAMLError) -> FileProblem:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "invalid YAML"
    if mark is None:
        return FileProblem("yaml-syntax", problem, 1, 1)
    return FileProblem("yaml-syntax", problem, mark.line + 1, mark.column + 1)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _positions(
    root: Node,
) -> tuple[dict[str, Position], dict[str, Position], dict[str, str]]:
    """Where every value and every key starts, by JSON pointer, and the source text of plain
    scalars: one iterative pre-order walk, aliases expanded (bounded by MAX_DEPTH).

    After construction a mapping node may list a key twice (merged pairs first, then the local
    override); later pairs overwrite earlier ones in the result dicts, matching dict semantics.
    """
    values: dict[str, Position] = {}
    keys: dict[str, Position] = {}
    plain: dict[str, str] = {}
    stack: list[tuple[str, Node | None, Node, int]] = [("", None, root, 0)]
    pop, extend = stack.pop, stack.extend
    while stack:
        pointer, key_node, node, depth = pop()
        if key_node is not None:
            mark = key_node.start_mark
            keys[pointer] = Position(mark.line + 1, mark.column + 1)
        mark = node.start_mark
        values[pointer] = Position(mark.line + 1, mark.column + 1)
        if isinstance(node, ScalarNode):
            if not node.style:
                plain[pointer] = str(node.value)
            continue
        if depth >= MAX_DEPTH:
            continue
        depth += 1
        if isinstance(node, MappingNode):
            extend(
                [
                    (f"{pointer}/{_escape(str(k.value))}", k, v, depth)
                    for k, v in reversed(node.value)
                    if isinstance(k, ScalarNode) and k.tag != _MERGE
                ]
            )
        elif isinstance(node, SequenceNode):
            extend(
                [
                    (f"{pointer}/{i}", None, v, depth)
                    for i, v in reversed(list(enumerate(node.value)))
                ]
            )
    return values, keys, plain


def _check_complexity(root: Node, max_nodes: int = MAX_NODES) -> None:
    """Refuse alias bombs, cycles and deep nesting before constructing anything.

    Sizes and heights are counted with aliases expanded (a node reachable twice counts twice)
    but computed once per distinct node, so a billion-laughs document is refused in
    microseconds. The recursion is bounded: it never goes below MAX_DEPTH levels.
    """
    _Complexity(root, max_nodes).count(root, 1)


class _Complexity:
    """The state of one complexity check. A class rather than a recursive closure: a closure
    that calls itself is a reference cycle, which would keep the node graph alive until the
    cyclic garbage collector runs."""

    def __init__(self, root: Node, max_nodes: int) -> None:
        self.root = root
        self.max_nodes = max_nodes
        self.counted: dict[int, tuple[int, int]] = {}  # id(collection) -> (size, height)
        self.active: set[int] = set()  # the collections on the path from the root

    def count(self, node: Node, level: int) -> tuple[int, int]:
        if level > MAX_DEPTH:
            _too_complex(node, f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, ScalarNode):
            return 1, 1
        key = id(node)
        known = self.counted.get(key)
        if known is not None:  # an alias of a collection counted before
            if level + known[1] - 1 > MAX_DEPTH:
                _too_complex(node, f"nested deeper than {MAX_DEPTH} levels")
            return known
        if key in self.active:
            _too_complex(node, "an alias refers to a node containing itself")
        self.active.add(key)
        children = (
            [n for pair in node.value for n in pair]
            if isinstance(node, MappingNode)
            else node.value
        )
        size, height = 1, 0
        for child in children:
            if isinstance(child, ScalarNode) and level < MAX_DEPTH:
                size += 1  # what count(child, level + 1) would say, without the call
                height = max(height, 1)
                continue
            child_size, child_height = self.count(child, level + 1)
            size += child_size
            height = max(height, child_height)
        if size > self.max_nodes:
            _too_complex(self.root, f"more than {self.max_nodes:,} nodes once aliases are expanded")
        self.active.discard(key)
        self.counted[key] = (size, height + 1)
        return size, height + 1


def _too_complex(node: Node, message: str) -> None:
    raise FileProblem(
        "yaml-too-complex", message, node.start_mark.line + 1, node.start_mark.column + 1
    )


_YAML11_BOOL = re.compile(r"^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$")
_YAML11_SEXAGESIMAL = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
_YAML11_OCTAL = re.compile(r"^[-+]?0[0-7_]+$")
_YAML11_DATE = re.compile(r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt ].*)?$")


def yaml11_surprise(text: str) -> str | None:
    """What a YAML 1.1 parser would silently turn this plain scalar into, if anything."""
    if _YAML11_BOOL.match(text):
        return "a boolean"
    if _YAML11_SEXAGESIMAL.match(text):
        return "a base-60 number"
    if _YAML11_OCTAL.match(text):
        return "an octal number"
    if _YAML11_DATE.match(text):
        return "a date"
    return None
