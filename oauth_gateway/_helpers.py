"""Shared internals, written once: URL redaction and ``${ENV}`` references.

Private to the package; the adapters and the core both import from here, and this
module imports nothing of the package but exceptions and JSON paths.
"""

from __future__ import annotations

import re
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

from ._jsonpath import join as _join_path
from .exceptions import ConfigError

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def redact_url(url: str) -> str:
    """Return ``url`` fit for a message or a log line.

    User info becomes ``***@``, every query value becomes ``***`` (a query may carry a
    ``code``, a ``key`` or a signature under any name) and the fragment is dropped. The
    work is linear in the length of ``url``; text that is not a URL comes back unchanged.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme or not parts.netloc:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = parts.query
    if query:
        query = "&".join(
            (name + "=***") if sep else name
            for name, sep, _ in (field.partition("=") for field in query.split("&"))
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def resolve_env(value: Any, json_path: str, environ: Mapping[str, str]) -> Any:
    """Replace every ``${NAME}`` in the strings of ``value`` (recursively) from ``environ``.

    Raises:
        ConfigError: a referenced variable is not set; names ``json_path`` and the variable.
    """
    if isinstance(value, str):
        if "${" not in value:
            return value

        def substitute(match: "re.Match[str]") -> str:
            name = match.group(1)
            if name not in environ:
                raise ConfigError(
                    "refers to the environment variable %s, which is not set" % name,
                    json_path,
                    "export %s before loading the config, or write the value directly" % name,
                )
            return environ[name]

        return _ENV_REF.sub(substitute, value)
    if isinstance(value, list):
        return [resolve_env(item, "%s[%d]" % (json_path, i), environ) for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {k: resolve_env(v, _join_path(json_path, k), environ) for k, v in value.items()}
    return value
