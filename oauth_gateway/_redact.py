"""The URL redactor: below exceptions and _helpers, which both use it. Imports nothing of ours."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


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
            (name + "=***") if sep else name for name, sep, _ in (field.partition("=") for field in query.split("&"))
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
