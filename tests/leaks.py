"""The leak registry: every secret the test servers know, and the check for them in log text.

:data:`SECRETS` collects every client secret registered and every access token issued by a
test server; :class:`LogCapture` keeps the suite's log records and :func:`find_leaks` says
where a registered secret occurs in them, never the secret itself.
"""

from __future__ import annotations

import logging
import threading
from typing import Dict, FrozenSet, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

__all__ = ("MIN_SECRET_LENGTH", "SECRETS", "LogCapture", "SecretRegistry", "find_leaks")

#: Shortest registered string the leak check looks for (shorter ones match by accident).
MIN_SECRET_LENGTH = 8


class SecretRegistry:
    """A set of secret strings. Thread-safe: every method takes one internal lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: Set[str] = set()

    def add(self, value: Optional[str]) -> None:
        """Register ``value`` (ignored when empty or None)."""
        if value:
            with self._lock:
                self._items.add(value)

    def snapshot(self) -> FrozenSet[str]:
        """Return the registered strings as they are now."""
        with self._lock:
            return frozenset(self._items)

    def __contains__(self, value: object) -> bool:
        with self._lock:
            return value in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.snapshot())

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __repr__(self) -> str:
        return "<SecretRegistry with %d secrets>" % len(self)


#: Every client secret registered and every access token issued by any AuthServer.
SECRETS = SecretRegistry()


class LogCapture(logging.Handler):
    """Keep every formatted log record with its logger name and the running test.

    Thread-safe: ``list.append`` is atomic, and ``current_test`` is a plain attribute.

    Attributes:
        entries: ``(logger_name, formatted_text, test_nodeid)`` tuples.
        current_test: node id stored with the next records.
    """

    def __init__(self, level: int = logging.DEBUG) -> None:
        super().__init__(level)
        self.entries: List[Tuple[str, str, str]] = []
        self.current_test = ""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.entries.append((record.name, self.format(record), self.current_test))
        except Exception:  # a broken record must not break the code that logged it
            self.handleError(record)


def find_leaks(
    entries: Iterable[Sequence[str]],
    secrets: Iterable[str],
    min_length: int = MIN_SECRET_LENGTH,
) -> List[Tuple[str, str]]:
    """Return where registered secrets occur in captured log text, never the secrets.

    Runs in time linear in the text: secrets are indexed by their first ``min_length``
    characters and each text is scanned once.

    Args:
        entries: ``(logger_name, text)`` or ``(logger_name, text, test_nodeid)`` items.
        secrets: candidate secret strings; those shorter than ``min_length`` are ignored.
        min_length: the shortest secret considered.

    Returns:
        Sorted unique ``(logger_name, test_nodeid)`` pairs, ``test_nodeid`` "" if unknown.
    """
    index: Dict[str, List[str]] = {}
    for secret in secrets:
        if isinstance(secret, str) and len(secret) >= min_length:
            index.setdefault(secret[:min_length], []).append(secret)
    found = set()
    if not index:
        return []
    for entry in entries:
        name, text = entry[0], entry[1]
        where = entry[2] if len(entry) > 2 else ""
        for i in range(len(text) - min_length + 1):
            candidates = index.get(text[i : i + min_length])
            if candidates and any(text.startswith(s, i) for s in candidates):
                found.add((name, where))
                break
    return sorted(found)
