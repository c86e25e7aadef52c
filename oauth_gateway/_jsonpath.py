"""JSON paths in messages (``$.mcp_configs.abc.mcp_config[0].oauth_config``), written one way everywhere."""

from __future__ import annotations

import re
from typing import Any, Dict, Iterable

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TYPE_NAMES: Dict[type, str] = {dict: "an object", list: "an array", str: "a string"}


def format_path(root: str, segments: Iterable[Any]) -> str:
    """Return ``root`` followed by ``.key``, ``[index]`` or ``['odd key']`` per segment."""
    parts = [root]
    for segment in segments:
        if isinstance(segment, int) and not isinstance(segment, bool):
            parts.append("[%d]" % segment)
        elif isinstance(segment, str) and _IDENTIFIER.match(segment):
            parts.append("." + segment)
        else:
            escaped = str(segment).replace("\\", "\\\\").replace("'", "\\'")
            parts.append("['%s']" % escaped)
    return "".join(parts)


def join(path: str, key: Any) -> str:
    """Append one object key or array index to a JSON path."""
    return format_path(path, (key,))


def describe(value: Any) -> str:
    """Name a JSON value's type for a message: ``a string``, ``an object``, ``null``..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return _TYPE_NAMES.get(type(value), "a %s" % type(value).__name__)
