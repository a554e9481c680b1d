"""The JSON Schemas as editors get them (pure): our own messages, hover text and zone list.

The schemas carry their rule ids and messages for ``validate`` (``x-rule``, ``x-message``,
``x-messages``; see :mod:`b2bd.config.schema`). Editors using the YAML language server (VS Code's
YAML extension, and others built on it) read other keywords, so the published schemas add, on
each sub-schema that has them:

- ``errorMessage``: ``MESSAGE [rule-id]``, exactly the end of the line ``validate`` prints for a
  problem there (the language server shows it for a wrong type, enum, const or pattern);
  ``patternErrorMessage`` likewise where only the pattern has its own message (``x-messages``);
- ``markdownDescription`` where ``validate`` has its own message: the description, then that
  message and its rule id, shown on hover;
- on the time zone sub-schemas (``"format": "iana-timezone"``) an ``enum`` of every zone the
  loader accepts (:func:`b2bd.config.packaged.timezones`), for completion and checking as one types.

``validate`` reads these same files and ignores what is added here (the loader's validator drops
it: see :func:`b2bd.config.schema.build_validator`). Publishing is idempotent: the files in
``schemas/`` are its own output (``b2bd schema --out schemas`` rewrites them unchanged; a test
keeps it so).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

PUBLISHED_ONLY = ("errorMessage", "patternErrorMessage", "markdownDescription")
"""Keywords only editors read: the loader's validator leaves them out."""

TIMEZONE_FORMAT = "iana-timezone"


def error_message(message: str, rule: str) -> str:
    """What ``validate`` prints after ``error:`` (or ``warning:``) for this message and rule."""
    return f"{message} [{rule}]"


def published(schema: Any, zones: Sequence[str]) -> Any:
    """``schema`` (a parsed JSON Schema document) with the editor keywords added (a new object;
    the argument is left as it was)."""
    if isinstance(schema, list):
        return [published(item, zones) for item in schema]
    if not isinstance(schema, dict):
        return schema
    node = {key: published(value, zones) for key, value in schema.items()}
    rule = str(node.get("x-rule", "schema"))
    message = node.get("x-message")
    per_keyword = node.get("x-messages") or {}
    if message is not None:
        node["errorMessage"] = error_message(str(message), rule)
    elif "pattern" in per_keyword:
        node["patternErrorMessage"] = error_message(str(per_keyword["pattern"]), rule)
    hover = _hover(node, rule, message, per_keyword)
    if hover:
        node["markdownDescription"] = hover
    if node.get("format") == TIMEZONE_FORMAT:
        node["enum"] = list(zones)
    return node


def _hover(node: dict[str, Any], rule: str, message: Any, per_keyword: dict[str, Any]) -> str:
    """The description and what ``validate`` checks here; "" where it checks nothing of its own
    (the plain description is then shown as it is)."""
    checks = [str(message)] if message is not None else [str(m) for m in per_keyword.values()]
    if not checks:
        return ""
    said = f"`b2bd validate`: {'; '.join(checks)} [`{rule}`]"
    description = node.get("description")
    return f"{description}\n\n{said}" if isinstance(description, str) else said


def render(schema: Any) -> str:
    """The file text: two-space indents, UTF-8 as is, one final newline."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
