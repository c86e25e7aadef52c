"""Where tokens are kept between calls: the :class:`TokenCache` interface and its in-memory store.

A cache maps ``(server_name, config_id)`` to a :class:`CacheEntry`: the fingerprint of
the config the token was fetched with (an edited config never gets a stale token),
the token, the key's hit counter and the clock time from which the token should be
refreshed. Reads through :meth:`TokenCache.peek` take no lock and do no I/O; the
manager's single-flight logic decides who writes.

Caches shared by processes (:class:`SharedTokenCache`: the file cache and Redis in
``oauth_gateway.contrib``) keep a :class:`MemoryTokenCache` in front of the shared
store, so a hit stays a dict read. They serialise entries with wall-clock times,
since each process has its own monotonic clock. :func:`cache_from_settings` picks a
cache from the gateway file or the environment.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import threading
import time
from typing import Any, Callable, ContextManager, Dict, Iterator, Mapping, Optional, Tuple
from urllib.parse import urlsplit

import cachetools

from .exceptions import ConfigError
from .tokens import Token, _restore

log = logging.getLogger("oauth_gateway")

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
        refresh_at: clock time from which the token should be refreshed.
    """

    __slots__ = ("fingerprint", "token", "hits", "refresh_at")

    def __init__(self, fingerprint: str, token: Token, hits: "itertools.count", refresh_at: float):
        sets = object.__setattr__
        sets(self, "fingerprint", fingerprint)
        sets(self, "token", token)
        sets(self, "hits", hits)
        sets(self, "refresh_at", refresh_at)

    def __setattr__(self, name, value):
        raise AttributeError("CacheEntry is immutable; use _replace()")

    def __delattr__(self, name):
        raise AttributeError("CacheEntry is immutable")

    def _values(self) -> Tuple[str, Token, "itertools.count", float]:
        return (self.fingerprint, self.token, self.hits, self.refresh_at)

    def _replace(self, **changes: Any) -> "CacheEntry":
        """Return a new entry with some fields replaced."""
        values = dict(zip(self.__slots__, self._values()))
        unknown = set(changes) - set(values)
        if unknown:
            raise ValueError("unknown CacheEntry fields: %r" % sorted(unknown))
        values.update(changes)
        return CacheEntry(**values)

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, CacheEntry):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __reduce__(self):
        return (CacheEntry, self._values())

    def __repr__(self) -> str:
        return "CacheEntry(fingerprint=%r, token=%r, hits=%r, refresh_at=%r)" % self._values()


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


# --------------------------------------------------------------------------- shared caches

#: Seconds a process waits for another process's fetch of the same key before it
#: fetches itself (shared caches).
DEFAULT_WAIT_TIMEOUT = 30.0
#: Version of the serialised entry; an entry written in another format is a miss.
_FORMAT = 1
#: Largest serialised entry read back (bytes); anything bigger is not ours.
_MAX_ENTRY_BYTES = 65536


def _key_digest(key: Key) -> str:
    """Return the name of ``key`` in a shared store: a SHA-256 of the server name and config id.

    Hashing keeps server names out of file names and Redis key listings, and gives any
    name a fixed, safe length.
    """
    blob = json.dumps([key[0], key[1]], ensure_ascii=True, separators=(",", ":")).encode("ascii")
    return hashlib.sha256(blob).hexdigest()


def _poll_delay(attempt: int) -> float:
    """Seconds to wait before polling a busy lock again: 5 ms, growing by half, at most 100 ms."""
    return min(0.005 * (1.5 ** attempt), 0.1)


def _acquire_polling(
    try_acquire: Callable[[], bool],
    wait_timeout: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    what: str,
) -> None:
    """Call ``try_acquire`` until it returns True, backing off with :func:`_poll_delay`.

    Args:
        try_acquire: one non-blocking attempt; True when the lock is now held.
        wait_timeout: seconds to keep trying.
        clock: monotonic seconds.
        sleep: waits between attempts.
        what: names the lock in the error, like ``"the Redis lock of oauth-api"``.

    Raises:
        TimeoutError: still not acquired after ``wait_timeout`` seconds.
    """
    deadline = clock() + wait_timeout
    attempt = 0
    while not try_acquire():
        now = clock()
        if now >= deadline:
            raise TimeoutError(
                "%s was still held by another process after %.1fs; fetching without it" % (what, wait_timeout)
            )
        sleep(min(_poll_delay(attempt), deadline - now))
        attempt += 1


def _make_fernet(key: Any, where: str = "encryption_key") -> Any:
    """Return a Fernet (or MultiFernet, for comma-separated keys) for ``key``, or None without one.

    Args:
        key: a Fernet key (44 url-safe base64 characters, str or bytes), several separated
            by commas (the first encrypts, all decrypt: key rotation), an object with
            ``encrypt``/``decrypt``, or None/"" for no encryption.
        where: names the setting in errors.

    Raises:
        ConfigError: cryptography is not installed, or a key is malformed (the key is never shown).
    """
    if key is None or key == "" or key == b"":
        return None
    if hasattr(key, "encrypt") and hasattr(key, "decrypt"):
        return key
    try:
        from cryptography.fernet import Fernet, MultiFernet
    except ImportError:
        raise ConfigError(
            "encrypting cached tokens needs the cryptography package, which is not installed",
            where,
            "pip install 'oauth-gateway[redis-encrypted]', or drop the encryption key",
        ) from None
    text = key.decode("ascii", "replace") if isinstance(key, bytes) else str(key)
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        fernets = [Fernet(part.encode("ascii")) for part in parts]
    except (ValueError, TypeError, UnicodeError):
        fernets = []
    if not fernets:
        raise ConfigError(
            "is not a Fernet key (32 url-safe base64-encoded bytes, 44 characters; several separated by commas)",
            where,
            'make one with: python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"',
        )
    return fernets[0] if len(fernets) == 1 else MultiFernet(fernets)


class _EntryCodec:
    """Turns a :class:`CacheEntry` into bytes for a shared store and back.

    Times leave the process as wall-clock epoch seconds and come back on this
    process's monotonic clock. With a Fernet key, the bytes are encrypted and
    authenticated, so a dump of the store holds no bearer token. The key the entry
    belongs to is stored inside and checked, so an entry copied under another key
    is refused.
    """

    def __init__(self, clock: Callable[[], float], wall_clock: Callable[[], float], fernet: Any):
        self._clock = clock
        self._wall_clock = wall_clock
        self._fernet = fernet

    @property
    def encrypted(self) -> bool:
        return self._fernet is not None

    def _offset(self) -> float:
        """Epoch seconds minus monotonic seconds, now."""
        return self._wall_clock() - self._clock()

    def encode(self, key: Key, entry: CacheEntry, epoch: int = 0) -> bytes:
        """Return the bytes of ``entry``; ``epoch`` (a store's revocation count for ``key``) is bound into them."""
        token = entry.token
        offset = self._offset()
        document = {
            "v": _FORMAT,
            "key": [key[0], key[1]],
            "fingerprint": entry.fingerprint,
            "access_token": token.access_token,
            "token_type": token.token_type,
            "expires_in": token.expires_in,
            "scopes": sorted(token.scopes),
            "issued_at": token.issued_at + offset,
            "expires_at": token.expires_at + offset,
            "refresh_at": entry.refresh_at + offset,
            "token_refresh_at": token.refresh_at + offset,
            "epoch": epoch,
        }
        data = json.dumps(document, separators=(",", ":"), sort_keys=True).encode("utf-8")
        if self._fernet is not None:
            data = self._fernet.encrypt(data)
        return data

    def decode(self, key: Key, data: bytes, epoch: int = 0) -> Optional[CacheEntry]:
        """Return the entry, or None when it has expired.

        Times that are not finite are refused; an expiry beyond :data:`MAX_ENTRY_TTL`
        from now is brought back to it. An entry bound to another ``epoch`` than the
        store's current one was written before a revocation and is refused.

        Raises:
            ValueError: the bytes are not an entry of ours for ``key``; the message
                says why and never contains the data.
        """
        if len(data) > _MAX_ENTRY_BYTES:
            raise ValueError("it is larger than %d bytes" % _MAX_ENTRY_BYTES)
        if self._fernet is not None:
            try:
                data = self._fernet.decrypt(bytes(data))
            except Exception:  # cryptography's InvalidToken, or garbage of any shape
                raise ValueError("it cannot be decrypted with the configured encryption key") from None
        try:
            document = json.loads(bytes(data).decode("utf-8"))
        except ValueError:
            raise ValueError("it is not a JSON entry (truncated, corrupt or encrypted)") from None
        if not isinstance(document, dict) or document.get("v") != _FORMAT:
            raise ValueError("it is not an entry of format %d" % _FORMAT)
        if document.get("key") != [key[0], key[1]]:
            raise ValueError("it was written for another server or config id")
        access_token = document.get("access_token")
        token_type = document.get("token_type")
        fingerprint = document.get("fingerprint")
        expires_in = document.get("expires_in")
        scopes = document.get("scopes")
        times = [document.get(name) for name in ("issued_at", "expires_at", "refresh_at", "token_refresh_at")]
        if not (
            isinstance(access_token, str)
            and access_token
            and isinstance(token_type, str)
            and isinstance(fingerprint, str)
            and (expires_in is None or _is_number(expires_in))
            and isinstance(scopes, list)
            and all(isinstance(scope, str) for scope in scopes)
            and all(_is_number(value) for value in times)
        ):
            raise ValueError("a field is missing or has the wrong type")
        if not all(math.isfinite(value) for value in times + [expires_in or 0]):
            raise ValueError("a time in it is not a finite number")
        if document.get("epoch", 0) != epoch:
            raise ValueError("it was stored before the token was last revoked or invalidated")
        offset = self._offset()
        issued_at, expires_at, refresh_at, token_refresh_at = (value - offset for value in times)
        now = self._clock()
        if now >= expires_at:
            return None
        issued_at, expires_at = min(issued_at, now), min(expires_at, now + MAX_ENTRY_TTL)
        state = {
            "access_token": access_token,
            "token_type": token_type,
            "expires_in": expires_in,
            "issued_at": issued_at,
            "expires_at": expires_at,
            "refresh_at": min(token_refresh_at, expires_at),
            "scopes": frozenset(scopes),
            "authorization": "%s %s" % (token_type, access_token),
        }
        token = _restore(tuple(state[name] for name in Token.__slots__))
        return CacheEntry(fingerprint, token, itertools.count(), min(refresh_at, expires_at))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class SharedTokenCache(TokenCache):
    """Base of the caches that processes share: a :class:`MemoryTokenCache` in front of a store.

    Thread-safe. :meth:`peek` reads local memory only, so a hit costs no I/O; the
    manager reads the store with :meth:`load` on a local miss, under :meth:`lock`
    when it is about to fetch. :meth:`store` writes local memory first, then the
    store. Subclasses implement :meth:`_read`, :meth:`_write`, :meth:`_delete` and
    :meth:`lock`.

    Args:
        encryption_key: Fernet key(s) to encrypt entries at rest (see :func:`_make_fernet`).
        maxsize: bound on the tokens kept in local memory.
        clock: monotonic seconds; the same clock as the manager's.
        wall_clock: epoch seconds (``time.time``), for the times written to the store.
    """

    #: Names the store in log messages.
    store_name = "shared cache"

    def __init__(
        self,
        *,
        encryption_key: Any = None,
        maxsize: int = DEFAULT_MAXSIZE,
        clock: Optional[Callable[[], float]] = None,
        wall_clock: Optional[Callable[[], float]] = None,
    ):
        self._clock = clock or time.monotonic
        self._wall_clock = wall_clock or time.time
        self._local = MemoryTokenCache(maxsize=maxsize, clock=self._clock)
        self._codec = _EntryCodec(self._clock, self._wall_clock, _make_fernet(encryption_key))
        # The hot path: the local layer's bound dict.get.
        self.peek = self._local.peek  # type: ignore[assignment]

    @property
    def encrypted(self) -> bool:
        """True when entries are encrypted at rest."""
        return self._codec.encrypted

    # -- the store, implemented by subclasses

    def _read(self, key: Key) -> Optional[bytes]:
        """Return the stored bytes of ``key``, or None."""
        raise NotImplementedError

    def _write(self, key: Key, data: bytes, ttl: float) -> None:
        """Store ``data`` for ``key``; it may be dropped after ``ttl`` seconds."""
        raise NotImplementedError

    def _delete(self, key: Key) -> None:
        """Remove ``key`` from the store; a missing key is not an error."""
        raise NotImplementedError

    # -- TokenCache

    def load(self, key: Key) -> Optional[CacheEntry]:
        data = self._read(key)
        if data is None:
            return None
        try:
            return self._codec.decode(key, data)
        except ValueError as exc:
            log.warning(
                "Ignoring the %s entry for %s (config: %s): %s; the next fetch replaces it",
                self.store_name,
                key[0],
                key[1],
                exc,
            )
            return None

    def remember(self, key: Key, entry: CacheEntry) -> None:
        self._local.store(key, entry)

    def store(self, key: Key, entry: CacheEntry) -> None:
        self._local.store(key, entry)
        ttl = entry.token.expires_at - self._clock()
        if ttl <= 0:
            self._delete(key)
            return
        self._write(key, self._codec.encode(key, entry), ttl)

    def evict(self, key: Key) -> None:
        self._local.evict(key)
        self._delete(key)

    def keys(self) -> Iterator[Key]:
        return self._local.keys()

    def __len__(self) -> int:
        return len(self._local)

    def reset_after_fork(self) -> None:
        self._local.reset_after_fork()


# --------------------------------------------------------------------------- choosing a cache

#: Environment variable that selects the token cache; it wins over the gateway file.
CACHE_ENV = "OAUTH_GATEWAY_TOKEN_CACHE"
#: Environment variable holding the Fernet key(s) of a shared cache; it wins over the file.
ENCRYPTION_KEY_ENV = "OAUTH_GATEWAY_TOKEN_CACHE_ENCRYPTION_KEY"
#: Key of ``common_mcp_gateway_config`` in the gateway file that selects the cache.
CACHE_SETTING = "oauth_token_cache"
#: Key of ``common_mcp_gateway_config`` holding the encryption key (usually ``${ENV}``).
ENCRYPTION_KEY_SETTING = "oauth_token_cache_encryption_key"

_SETTINGS_PATH = "$.common_mcp_gateway_config."
_CHOICES = "memory, file, file:/path/to/dir or redis://host:6379/0 (rediss://, unix:// too)"


def cache_from_settings(
    setting: Optional[str] = None,
    *,
    encryption_key: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> TokenCache:
    """Build the token cache a gateway file or the environment asks for.

    ``$OAUTH_GATEWAY_TOKEN_CACHE`` wins over ``setting`` (the gateway file's
    ``common_mcp_gateway_config.oauth_token_cache``), and
    ``$OAUTH_GATEWAY_TOKEN_CACHE_ENCRYPTION_KEY`` over ``encryption_key``
    (``oauth_token_cache_encryption_key``). Both may hold ``${ENV}`` references.

    Values: ``memory`` (the default, also for None or ""), ``file`` (a per-user
    directory), ``file:/some/dir``, or a Redis URL (``redis://``, ``rediss://``,
    ``unix://``). The contrib modules are imported only when chosen.

    Args:
        setting: the configured value, or None.
        encryption_key: Fernet key(s) for a shared cache, or None.
        environ: where the environment variables and ``${ENV}`` references are read;
            ``os.environ`` by default.

    Returns:
        A new cache, ready to pass as ``TokenManager(cache=...)``.

    Raises:
        ConfigError: an unknown value, a missing ``redis`` or ``cryptography`` package
            (naming the extra to install), a malformed encryption key, or a file cache
            on a platform without ``fcntl``.
    """
    from ._helpers import resolve_env

    env = os.environ if environ is None else environ
    where = _SETTINGS_PATH + CACHE_SETTING
    key_where = _SETTINGS_PATH + ENCRYPTION_KEY_SETTING
    if env.get(CACHE_ENV, "").strip():
        setting, where = env[CACHE_ENV], CACHE_ENV
    if env.get(ENCRYPTION_KEY_ENV, "").strip():
        encryption_key, key_where = env[ENCRYPTION_KEY_ENV], ENCRYPTION_KEY_ENV
    if setting is not None and not isinstance(setting, str):
        raise ConfigError("must be a string, got %s" % type(setting).__name__, where, "use " + _CHOICES)
    if encryption_key is not None and not isinstance(encryption_key, str):
        raise ConfigError(
            "must be a string, got %s" % type(encryption_key).__name__,
            key_where,
            "use a ${ENV} reference to a Fernet key",
        )
    value = (resolve_env(setting or "", where, env) or "memory").strip()
    if encryption_key:
        encryption_key = resolve_env(encryption_key, key_where, env)
    kind = value.lower()
    if kind == "memory":
        if encryption_key:
            log.warning("%s is ignored: the memory cache keeps tokens in this process only", key_where)
        return MemoryTokenCache()
    fernet = _make_fernet(encryption_key, key_where)
    if kind == "file" or kind.startswith("file:"):
        path = value[len("file:") :] if kind.startswith("file:") else ""
        if path.startswith("//"):  # file:///var/cache/x
            path = path[2:]
        from .contrib.file_cache import FileTokenCache

        return FileTokenCache(path=os.path.expanduser(path) if path else None, encryption_key=fernet)
    scheme = urlsplit(value).scheme.lower()
    if scheme in ("redis", "rediss", "unix"):
        try:
            from .contrib.redis_cache import RedisTokenCache
        except ImportError as exc:
            raise ConfigError(
                "selects the Redis cache, but the redis package cannot be imported (%s)" % exc.__class__.__name__,
                where,
                "pip install 'oauth-gateway[redis]' (or 'oauth-gateway[redis-encrypted]' to encrypt tokens at rest)",
            ) from None
        return RedisTokenCache(url=value, encryption_key=fernet)
    raise ConfigError("unknown token cache %r" % _redact_url(value), where, "use " + _CHOICES)


def _redact_url(url: str) -> str:
    """Return ``url`` with any user and password replaced by ``***``, for messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()
