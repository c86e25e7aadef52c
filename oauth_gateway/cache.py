"""Where tokens are kept between calls: the :class:`TokenCache` interface and its in-memory store.

A cache maps ``(server_name, config_id)`` to a :class:`CacheEntry`: the fingerprint of
the config the token was fetched with (an edited config never gets a stale token),
the token, the key's hit counter and the clock time from which the token should be
refreshed. Reads through :meth:`TokenCache.peek` take no lock and do no I/O; the
manager's single-flight logic decides who writes.

Caches shared by processes (the file cache and Redis) build on this interface in
:mod:`oauth_gateway.contrib.store`, and
:func:`~oauth_gateway.contrib.cache_settings.cache_from_settings` picks a cache from
the gateway file or the environment. Both are adapters: this module imports neither.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from typing import Any, Callable, ContextManager, Dict, Iterator, Optional, Tuple

import cachetools

from .tokens import Token

__all__ = ("CacheEntry", "MemoryTokenCache", "TokenCache")

#: A cache key: ``(server_name, config_id)``.
Key = Tuple[str, str]

#: Default bound on the number of cached tokens.
DEFAULT_MAXSIZE = 1024
#: Outer bound on how long any entry lives in the store, whatever the token says (seconds).
MAX_ENTRY_TTL = 86400.0


class CacheEntry:
    """What the cache holds for one key. Immutable; a refresh stores a new entry.

    A ``__slots__`` class rather than a NamedTuple: the hit path reads ``fingerprint``
    and ``refresh_at`` on every call, and a slot read is cheaper than a tuple getter.

    Attributes:
        fingerprint: fingerprint of the config the token was fetched with.
        token: the token.
        hits: the key's hit counter (``itertools.count``), kept across refreshes.
        refresh_at: clock time from which the token should be refreshed; never later than
            the token's :attr:`~oauth_gateway.tokens.Token.usable_until`, so that the hit
            check (``now < refresh_at``) never hands out a token in its last instant.
        issuer: the authorization server that issued the token ("" when not known):
            with the fingerprint, the token's identity, so a server that moved to
            another authorization server never gets the old one's token.
        principal: the digest of the identity held in files or variables at fetch time
            (see ``_principal``; "" when none): a shared entry of another is a miss.
    """

    __slots__ = ("fingerprint", "token", "hits", "refresh_at", "issuer", "principal")

    # Class-level annotations only (no values, which would clash with the slots), so
    # type checkers know the attributes that ``object.__setattr__`` sets.
    fingerprint: str
    token: Token
    hits: itertools.count[int]
    refresh_at: float
    issuer: str
    principal: str

    def __init__(
        self,
        fingerprint: str,
        token: Token,
        hits: itertools.count[int],
        refresh_at: float,
        issuer: str = "",
        principal: str = "",
    ) -> None:
        sets = object.__setattr__
        sets(self, "fingerprint", fingerprint)
        sets(self, "token", token)
        sets(self, "hits", hits)
        sets(self, "refresh_at", min(refresh_at, token.usable_until))
        sets(self, "issuer", issuer)
        sets(self, "principal", principal)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("CacheEntry is immutable; use _replace()")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("CacheEntry is immutable")

    def _values(self) -> Tuple[str, Token, itertools.count[int], float, str, str]:
        return (self.fingerprint, self.token, self.hits, self.refresh_at, self.issuer, self.principal)

    def _replace(self, **changes: Any) -> CacheEntry:
        """Return a new entry with some fields replaced."""
        values = dict(zip(self.__slots__, self._values()))
        unknown = set(changes) - set(values)
        if unknown:
            raise ValueError("unknown CacheEntry fields: %r" % sorted(unknown))
        values.update(changes)
        return CacheEntry(**values)  # type: ignore[arg-type]  # the names were checked above

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, CacheEntry):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __reduce__(self) -> Tuple[Any, Tuple[str, Token, itertools.count[int], float, str, str]]:
        return (CacheEntry, self._values())

    def __repr__(self) -> str:
        return "CacheEntry(fingerprint=%r, token=%r, hits=%r, refresh_at=%r, issuer=%r, principal=%r)" % self._values()


class TokenCache:
    """The interface every token store implements.

    Implementations must be thread-safe. :meth:`peek` is on the hot path of every
    call: it must not block or do I/O.
    """

    def peek(self, key: Key) -> Optional[CacheEntry]:
        """Return the entry for ``key`` from local memory, or None."""
        raise NotImplementedError

    def load(self, key: Key) -> Optional[CacheEntry]:
        """Return the entry for ``key`` from the backing store (may do I/O), or None.

        An entry read from a shared store is not kept in local memory by this call:
        the manager gives it its hit counter and hands it to :meth:`remember`.

        Raises:
            Exception: whatever the backing store raises when it is unreachable; the
                manager logs it, counts it in ``cache_errors`` and fetches directly.
        """
        return self.peek(key)

    def store(self, key: Key, entry: CacheEntry) -> None:
        """Keep ``entry`` for ``key``, replacing any previous one.

        A shared cache keeps it in local memory first, so the token is served even
        when the shared store then fails (and raises).
        """
        raise NotImplementedError

    def remember(self, key: Key, entry: CacheEntry) -> None:
        """Keep ``entry``, read from the backing store by :meth:`load`, in local memory only."""
        self.store(key, entry)

    def evict(self, key: Key) -> None:
        """Forget ``key``; a missing key is not an error."""
        raise NotImplementedError

    def lock(self, key: Key) -> ContextManager[None]:
        """Hold while fetching a token for ``key`` so other processes sharing the store wait.

        In-process callers are already serialised by the manager; the memory cache
        needs no lock here. Entering raises (``TimeoutError`` after a bounded wait, or
        the store's error) instead of blocking for ever; the manager then fetches
        without the lock.
        """
        return contextlib.nullcontext()

    def keys(self) -> Iterator[Key]:
        """The keys currently held."""
        raise NotImplementedError

    def load_record(self, name: str) -> Optional[str]:
        """Return a small value other processes sharing the store wrote under ``name``, or None.

        For what the manager must agree on beyond tokens (an issuer trusted on first use).
        Caches local to one process keep none (the manager remembers them itself).

        Raises:
            Exception: whatever the backing store raises when it is unreachable.
        """
        return None

    def store_record(self, name: str, value: str, ttl: float) -> None:
        """Keep ``value`` under ``name`` for other processes, for about ``ttl`` seconds (see :meth:`load_record`)."""

    # -- what the manager calls. A store that can fail never fails a caller: the shared
    # caches (:class:`oauth_gateway.contrib.store.SharedTokenCache`) log the failure, call
    # ``failed()`` (the manager counts ``cache_errors``) and go on without the store.
    # These defaults are for stores that do not fail.

    def try_load(self, key: Key, failed: Callable[[], None]) -> Optional[CacheEntry]:
        """:meth:`load`, or None when the store fails."""
        return self.load(key)

    def try_store(self, key: Key, entry: CacheEntry, failed: Callable[[], None]) -> None:
        """:meth:`store`; when the store fails, the entry is kept in local memory only."""
        self.store(key, entry)

    def try_evict(self, key: Key, failed: Callable[[], None]) -> None:
        """:meth:`evict`; when the store fails, local memory is cleared anyway."""
        self.evict(key)

    @contextlib.contextmanager
    def try_lock(self, key: Key, failed: Callable[[], None]) -> Iterator[bool]:
        """Hold :meth:`lock`, or go on without it when that fails.

        Yields:
            True when another process's fetch may have finished meanwhile: the lock was
            taken, or waiting for it timed out. False when the store failed.
        """
        with self.lock(key):
            yield True

    def clear(self) -> None:
        """Forget every token."""
        for key in list(self.keys()):
            self.evict(key)

    def reset_after_fork(self) -> None:
        """Replace locks and connections that a forked child must not share."""


class _EvictingTTLCache(cachetools.TTLCache):  # type: ignore[type-arg]  # not subscriptable at runtime before cachetools 5
    """A TTLCache that tells its owner which keys it drops to stay within ``maxsize``."""

    def __init__(self, maxsize: int, ttl: float, timer: Callable[[], float], on_evict: Callable[[Key], None]) -> None:
        super().__init__(maxsize, ttl, timer=timer)
        self._on_evict = on_evict

    def popitem(self) -> Tuple[Key, CacheEntry]:
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

    def __init__(self, maxsize: int = DEFAULT_MAXSIZE, clock: Optional[Callable[[], float]] = None) -> None:
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
