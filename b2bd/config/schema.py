"""JSON Schema validation of config documents, with rule ids read from the schemas (pure: the
shell reads the packaged schemas, :mod:`b2bd.config.packaged`, and passes them in).

The schemas in ``schemas/`` carry their own rule ids and messages: a sub-schema with
``"x-rule": "time-format"`` turns every error raised by its keywords into that rule; an
``"x-message"`` (or ``"x-messages": {keyword: message}``) replaces jsonschema's wording. So one
table, the schema, drives both validation and what the user reads. Errors without an ``x-rule``
are reported as ``schema``.
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import jsonschema
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

from b2bd.config.build import parse_listen
from b2bd.config.publish import PUBLISHED_ONLY, TIMEZONE_FORMAT
from b2bd.config.yamlfile import Loaded, yaml11_surprise

DocumentKind = Literal["task", "bases", "b2bd"]
SCHEMA_FILES: dict[DocumentKind, str] = {
    "task": "task.schema.json",
    "bases": "bases.schema.json",
    "b2bd": "b2bd.schema.json",
}


def format_checker(known_timezone: Callable[[str], bool]) -> jsonschema.FormatChecker:
    """The checker of our formats; ``known_timezone`` says whether a zone name is one the config
    may use (:func:`b2bd.config.packaged.known_timezone`)."""
    checker = jsonschema.FormatChecker(formats=("date",))

    @checker.checks("iana-timezone", raises=(zoneinfo.ZoneInfoNotFoundError, ValueError))
    def _is_timezone(value: object) -> bool:
        if not isinstance(value, str):
            return True
        return known_timezone(value)

    checker.checks("listen-address")(_is_listen_address)
    checker.checks("local-datetime", raises=ValueError)(_is_local_datetime)
    return checker


def _is_listen_address(value: object) -> bool:
    return not isinstance(value, str) or parse_listen(value) is not None


def _is_local_datetime(value: object) -> bool:
    if isinstance(value, str):
        local = dt.datetime.strptime(value, "%Y-%m-%dT%H:%M")
        # In years 1 and 9999 a UTC offset can carry the instant outside what datetime holds.
        if not 1 < local.year < 9999:
            raise ValueError(f"year {local.year} is out of range")
    return True


def build_validator(
    kind: DocumentKind,
    schemas: Mapping[DocumentKind, dict[str, Any]],
    known_timezone: Callable[[str], bool],
) -> jsonschema.protocols.Validator:
    """The validator for one document kind, from the parsed schemas of every kind (they refer to
    each other by file name). Building one takes a while: the shell builds each once per
    process (:func:`b2bd.config.packaged.validator`) and passes it in."""
    registry: Registry[Any] = Registry().with_resources(
        (SCHEMA_FILES[k], Resource.from_contents(_for_validation(schemas[k]))) for k in SCHEMA_FILES
    )
    cls = jsonschema.validators.validator_for(schemas[kind])
    cls.check_schema(schemas[kind])
    checked = _inline_local_refs(_for_validation(schemas[kind]))
    return cls(checked, registry=registry, format_checker=format_checker(known_timezone))


def _for_validation(node: Any) -> Any:
    """The schema without what only editors read (:mod:`b2bd.config.publish`): the messages
    and hover text, and the time zone ``enum`` (the ``iana-timezone`` format checks the same
    list by a set lookup, with our message, instead of ~600 comparisons and a second error)."""
    if isinstance(node, list):
        return [_for_validation(item) for item in node]
    if not isinstance(node, dict):
        return node
    timezone = node.get("format") == TIMEZONE_FORMAT
    return {
        key: _for_validation(value)
        for key, value in node.items()
        if key not in PUBLISHED_ONLY and not (timezone and key == "enum")
    }


def _inline_local_refs(root: dict[str, Any]) -> dict[str, Any]:
    """The schema with every bare ``{"$ref": "#/$defs/name"}`` replaced by that definition.

    Same validation, same errors (``error.schema`` is the definition either way, so its
    ``x-rule`` and messages still apply), but jsonschema no longer resolves a reference through
    the registry on every descent: a third of the validation time for task files. A ``$ref``
    with sibling keywords, to another file or inside a recursive definition stays as it is.
    """
    defs = root.get("$defs", {})

    def inline(node: Any, expanding: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [inline(item, expanding) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if len(node) == 1 and isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.removeprefix("#/$defs/")
            if name in defs and "/" not in name and name not in expanding:
                return inline(defs[name], (*expanding, name))
        return {key: inline(value, expanding) for key, value in node.items()}

    inlined: dict[str, Any] = inline(root, ())
    return inlined


@dataclass(frozen=True)
class Finding:
    """A rule violation at a JSON pointer; the caller turns it into a positioned Problem.

    ``at_key`` points the position at the mapping key rather than its value (unknown keys).
    """

    pointer: str
    rule: str
    message: str
    severity: Literal["error", "warning"] = "error"
    at_key: bool = False


def check(validator: jsonschema.protocols.Validator, doc: Loaded) -> list[Finding]:
    """Every schema violation of one document (``validator`` is its kind's, built by
    :func:`build_validator`), each with its rule id."""
    findings: list[Finding] = []
    for error in validator.iter_errors(doc.data):
        findings.extend(_findings(error, doc))
    return findings


def _pointer(parts: Any) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _findings(error: ValidationError, doc: Loaded) -> Iterator[Finding]:
    pointer = _pointer(error.absolute_path)
    sub = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(sub.get("properties", {}))
        for key in error.instance:
            if key not in known:
                where = f"{pointer}/{_pointer([key])[1:]}"
                yield Finding(where, "schema", f"unknown key {key!r}", at_key=True)
        return
    if error.validator == "type":
        surprise = doc.plain.get(pointer)
        if surprise is not None and (what := yaml11_surprise(surprise)):
            yield Finding(
                pointer,
                "yaml-ambiguous",
                f"{surprise!r} is read as {_yaml_type(error.instance)} here, and YAML 1.1 tools "
                f"read it as {what}; expected {_expected(error.validator_value)}: "
                "quote it or write it unambiguously",
            )
            return
    rule = str(sub.get("x-rule", "schema"))
    message = _message_for(error) or _default_message(error)
    yield Finding(pointer, rule, message)


def _message_for(error: ValidationError) -> str | None:
    sub = error.schema if isinstance(error.schema, dict) else {}
    per_keyword = sub.get("x-messages", {})
    if error.validator in per_keyword:
        return str(per_keyword[error.validator])
    message = sub.get("x-message")
    return str(message) if message is not None else None


def _default_message(error: ValidationError) -> str:
    if error.validator == "required":
        return error.message.replace("is a required property", "is required")
    if error.validator == "enum" and isinstance(error.validator_value, list):
        options = ", ".join(json.dumps(v) for v in error.validator_value)
        return f"{json.dumps(error.instance)} is not one of {options}"
    if error.validator == "type":
        return f"expected {_expected(error.validator_value)}, got {_yaml_type(error.instance)}"
    return error.message


_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "nothing",
}


def _expected(value: Any) -> str:
    types = value if isinstance(value, list) else [value]
    return " or ".join(_TYPE_NAMES.get(str(t), str(t)) for t in types)


def _yaml_type(value: Any) -> str:
    match value:
        case bool():
            return "a boolean"
        case int():
            return "an integer"
        case float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "a list"
        case dict():
            return "a mapping"
        case None:
            return "nothing (null)"
    return type(value).__name__
