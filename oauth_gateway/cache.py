"""Where tokens are kept between calls: the :class:`TokenCache` interface and its in-memory store.

A cache maps ``(server_name, config_id)`` to a :class:`CacheEntry`: the fingerprint of
the config the token was fetched with (an edited config never gets a stale token),
the token, the key's hit counter and the clock time from which the token should be
refreshed. Reads through :meth:`TokenCache.peek` take no lock and do no I/O; the
manager's single-flight logic decides who writes.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from typing import ContextManager, Dict, Iterator, NamedTuple, Optional, Tuple

import cachetools

from .tokens import Token

Key = Tuple[str, str]

#: Default bound on the number of cached tokens.
DEFAULT_MAXSIZE = 1024
#: Outer bound on how long any entry lives in the store, whatever the token says (seconds).
MAX_ENTRY_TTL = 86400.0


class CacheEntry(NamedTuple):
    """What the cache holds for one key. Immutable; a refresh stores a new entry."""

    fingerprint: str
    token: Token
    hits: "itertools.count"
    refresh_at: float


class TokenCache:
    """The interface every token store implements.

    Implementations must be thread-safe. :meth:`peek` is on the hot path of every
    call: it must not block or do I/O.
    """

    def peek(self, key: Key) -> Optional[CacheEntry]:
        """Return the entry for ``key`` from local memory, or None."""
        raise NotImplementedError

    def load(self, key: Key) -> Optional[CacheEntry]:
        """Return the entry for ``key`` from the backing store (may do I/O), or None."""
        return self.peek(key)

    def store(self, key: Key, entry: CacheEntry) -> None:
        """Keep ``entry`` for ``key``, replacing any previous one."""
        raise NotImplementedError

    def evict(self, key: Key) -> None:
        """Forget ``key``; a missing key is not an error."""
        raise NotImplementedError

    def lock(self, key: Key) -> ContextManager[None]:
        """Hold while fetching a token for ``key`` so other processes sharing the store wait.

        In-process callers are already serialised by the manager; the memory cache
        needs no lock here.
        """
        return contextlib.nullcontext()

    def keys(self) -> Iterator[Key]:
        """The keys currently held."""
        raise NotImplementedError

    def clear(self) -> None:
        """Forget every token."""
        for key in list(self.keys()):
            self.evict(key)

    def reset_after_fork(self) -> None:
        """Replace locks and connections that a forked child must not share."""


class _EvictingTTLCache(cachetools.TTLCache):
    """A TTLCache that tells its owner which keys it drops to stay within ``maxsize``."""

    def __init__(self, maxsize, ttl, timer, on_evict):
        super().__init__(maxsize, ttl, timer=timer)
        self._on_evict = on_evict

    def popitem(self):
        key, value = super().popitem()
        self._on_evict(key)
        return key, value


class MemoryTokenCache(TokenCache):
    """Tokens in this process's memory, bounded by ``maxsize``. Thread-safe.

    The store is a cachetools ``TTLCache``; a plain dict mirrors it so that a cache
    hit is one ``dict.get`` without a lock (cachetools caches are not thread-safe,
    and a lock on the hit path collapses multi-threaded throughput). Writes update
    both under one lock. Because hits do not touch the TTLCache, eviction at
    ``maxsize`` drops the least recently *stored* token.

    Args:
        maxsize: most tokens kept; the least recently stored is dropped beyond it.
        clock: monotonic seconds, the same clock the manager uses.
    """

    def __init__(self, maxsize: int = DEFAULT_MAXSIZE, clock=None):
        import time

        self._lock = threading.Lock()
        self._entries: Dict[Key, CacheEntry] = {}
        self._store = _EvictingTTLCache(maxsize, MAX_ENTRY_TTL, clock or time.monotonic, self._forget)
        # The hot path: a bound dict.get, no Python frame, no lock.
        self.peek = self._entries.get  # type: ignore[assignment]

    def _forget(self, key: Key) -> None:
        self._entries.pop(key, None)

    def store(self, key: Key, entry: CacheEntry) -> None:
        with self._lock:
            self._store[key] = entry
            self._entries[key] = entry
            if len(self._entries) > len(self._store):
                # The TTLCache expired entries on its own; drop them from the mirror too.
                for stale in [k for k in self._entries if k not in self._store]:
                    del self._entries[stale]

    def evict(self, key: Key) -> None:
        with self._lock:
            self._store.pop(key, None)
            self._entries.pop(key, None)

    def keys(self) -> Iterator[Key]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
