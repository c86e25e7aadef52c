"""What the caches shared by processes have in common: :class:`SharedTokenCache` and its store machinery.

:class:`SharedTokenCache` keeps a :class:`~oauth_gateway.cache.MemoryTokenCache` in
front of a shared store (files, Redis), so a hit stays a dict read. ``EntryCodec``
turns a :class:`~oauth_gateway.cache.CacheEntry` into bytes with wall-clock times
(each process has its own monotonic clock), encrypted when a Fernet key is given
(:func:`make_fernet`). :func:`key_digest` names a key in a store and
:func:`acquire_polling` waits for a lock that another process holds.

The backends, :mod:`oauth_gateway.contrib.file_cache` and
:mod:`oauth_gateway.contrib.redis_cache`, build on this module; the core never imports it.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import math
import sys
import time
from typing import Any, Callable, Iterator, Optional, Tuple

from .._helpers import loads_bounded
from ..cache import DEFAULT_MAXSIZE, MAX_ENTRY_TTL, CacheEntry, Key, MemoryTokenCache, TokenCache
from ..exceptions import ConfigError
from ..tokens import token_from_state

__all__ = ("SharedTokenCache",)

_log = logging.getLogger("oauth_gateway")

#: Seconds a process waits for another process's fetch of the same key before it
#: fetches itself (shared caches).
DEFAULT_WAIT_TIMEOUT = 30.0
#: Version of the serialised entry; an entry written in another format is a miss.
_FORMAT_VERSION = 1
#: Largest serialised entry read back (bytes); anything bigger is not ours.
MAX_ENTRY_BYTES = 65536


def key_digest(key: Key) -> str:
    """Return the name of ``key`` in a shared store: a SHA-256 of the server name and config id.

    Hashing keeps server names out of file names and Redis key listings, and gives any
    name a fixed, safe length.
    """
    blob = json.dumps([key[0], key[1]], ensure_ascii=True, separators=(",", ":")).encode("ascii")
    return hashlib.sha256(blob).hexdigest()


def _poll_delay(attempt: int) -> float:
    """Seconds to wait before polling a busy lock again: 5 ms, growing by half, at most 100 ms."""
    return min(0.005 * (1.5**attempt), 0.1)


def acquire_polling(
    try_acquire: Callable[[], bool],
    wait_timeout: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    what: str,
) -> None:
    """Call ``try_acquire`` until it returns True, backing off with :func:`poll_delay`.

    The wait ends after ``wait_timeout`` seconds by ``clock``, or once the delays given to
    ``sleep`` add up to ``wait_timeout``, whichever comes first: a clock that does not move
    (a test's fake clock, a stalled timer) cannot make it endless.

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
    slept = 0.0
    while not try_acquire():
        now = clock()
        if now >= deadline or slept >= wait_timeout:
            raise TimeoutError(
                "%s was still held by another process after %.1fs; fetching without it" % (what, wait_timeout)
            )
        delay = min(_poll_delay(attempt), deadline - now, wait_timeout - slept)
        sleep(delay)
        slept += delay
        attempt += 1


def make_fernet(key: Any, where: str = "encryption_key") -> Any:
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
            "v": _FORMAT_VERSION,
            "key": [key[0], key[1]],
            "fingerprint": entry.fingerprint,
            "issuer": entry.issuer,
            "principal": entry.principal,
            "access_token": token.access_token,
            "token_type": token.token_type,
            "expires_in": token.expires_in,
            "scopes": sorted(token.scopes),
            "issued_at": token.issued_at + offset,
            "expires_at": token.expires_at_monotonic + offset,
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

        Times that are not finite are refused; an expiry beyond
        :data:`~oauth_gateway.cache.MAX_ENTRY_TTL` from now is brought back to it. An
        entry bound to another ``epoch`` than the store's current one was written
        before a revocation and is refused.

        Raises:
            ValueError: the bytes are not an entry of ours for ``key``; the message
                says why and never contains the data.
        """
        if len(data) > MAX_ENTRY_BYTES:
            raise ValueError("it is larger than %d bytes" % MAX_ENTRY_BYTES)
        if self._fernet is not None:
            try:
                data = self._fernet.decrypt(bytes(data))
            except Exception:  # cryptography's InvalidToken, or garbage of any shape
                raise ValueError("it cannot be decrypted with the configured encryption key") from None
        try:
            document = loads_bounded(bytes(data).decode("utf-8"))
        except ValueError:
            raise ValueError("it is not a JSON entry (truncated, corrupt or encrypted)") from None
        if not isinstance(document, dict) or document.get("v") != _FORMAT_VERSION:
            raise ValueError("it is not an entry of format %d" % _FORMAT_VERSION)
        if document.get("key") != [key[0], key[1]]:
            raise ValueError("it was written for another server or config id")
        access_token = document.get("access_token")
        token_type = document.get("token_type")
        fingerprint = document.get("fingerprint")
        issuer = document.get("issuer", "")  # absent from entries written before discovery
        principal = document.get("principal", "")  # absent from older entries: a miss where one is held
        expires_in = document.get("expires_in")
        scopes = document.get("scopes")
        times = [document.get(name) for name in ("issued_at", "expires_at", "refresh_at", "token_refresh_at")]
        if not (
            isinstance(access_token, str)
            and access_token
            and isinstance(token_type, str)
            and isinstance(fingerprint, str)
            and isinstance(issuer, str)
            and isinstance(principal, str)
            and (expires_in is None or _is_number(expires_in))
            and isinstance(scopes, list)
            and all(isinstance(scope, str) for scope in scopes)
            and all(_is_number(value) for value in times)
        ):
            raise ValueError("a field is missing or has the wrong type")
        if not all(math.isfinite(value) for value in times + [expires_in or 0]):  # type: ignore[arg-type]  # numbers, checked above
            raise ValueError("a time in it is not a finite number")
        if document.get("epoch", 0) != epoch:
            raise ValueError("it was stored before the token was last revoked or invalidated")
        offset = self._offset()
        issued_at, expires_at, refresh_at, token_refresh_at = (float(value) - offset for value in times)  # type: ignore[arg-type]  # numbers, checked above
        now = self._clock()
        if now >= expires_at:
            return None
        issued_at, expires_at = min(issued_at, now), min(expires_at, now + MAX_ENTRY_TTL)
        state = {
            "access_token": access_token,
            "token_type": token_type,
            "expires_in": expires_in,
            "issued_at": issued_at,
            "expires_at_monotonic": expires_at,
            "refresh_at": min(token_refresh_at, expires_at),
            "scopes": frozenset(scopes),
            "authorization": "%s %s" % (token_type, access_token),
            "expires_at": expires_at + offset,  # epoch seconds, as written (or capped above)
        }
        token = token_from_state(state)
        return CacheEntry(fingerprint, token, itertools.count(), min(refresh_at, expires_at), issuer, principal)

    def encode_record(self, name: str, value: str, ttl: float) -> bytes:
        """Return the bytes of a small record (see :meth:`SharedTokenCache.store_record`), encrypted with a key."""
        document = {"v": _FORMAT_VERSION, "record": name, "value": value, "expires_at": self._wall_clock() + ttl}
        data = json.dumps(document, separators=(",", ":"), sort_keys=True).encode("utf-8")
        return self._fernet.encrypt(data) if self._fernet is not None else data

    def decode_record(self, name: str, data: bytes) -> Optional[str]:
        """Return a record's value, or None when it has expired.

        Raises:
            ValueError: the bytes are not a record of ours named ``name``.
        """
        if len(data) > MAX_ENTRY_BYTES:
            raise ValueError("it is larger than %d bytes" % MAX_ENTRY_BYTES)
        if self._fernet is not None:
            try:
                data = self._fernet.decrypt(bytes(data))
            except Exception:
                raise ValueError("it cannot be decrypted with the configured encryption key") from None
        try:
            document = loads_bounded(bytes(data).decode("utf-8"))
        except ValueError:
            raise ValueError("it is not a JSON record") from None
        if not isinstance(document, dict) or document.get("v") != _FORMAT_VERSION or document.get("record") != name:
            raise ValueError("it is not a record of format %d for this name" % _FORMAT_VERSION)
        value, expires_at = document.get("value"), document.get("expires_at")
        if not isinstance(value, str) or not _is_number(expires_at):
            raise ValueError("a field is missing or has the wrong type")
        return value if self._wall_clock() < float(expires_at) else None  # type: ignore[arg-type]  # a number, checked above


def _record_key(name: str) -> Key:
    """Where a record lives in a store: a key no server's token can have (a NUL in its config id)."""
    return (name, "\0record")


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
        encryption_key: Fernet key(s) to encrypt entries at rest (see :func:`make_fernet`).
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
        self._codec = _EntryCodec(self._clock, self._wall_clock, make_fernet(encryption_key))
        # The hot path: the local layer's bound dict.get.
        self.peek = self._local.peek  # type: ignore[method-assign]

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

    def _read_with_epoch(self, key: Key) -> Tuple[Optional[bytes], int]:
        """Return :meth:`_read` and the key's revocation epoch (0 for stores without one)."""
        return self._read(key), 0

    def _epoch(self, key: Key) -> int:
        """The revocation epoch written into a new entry of ``key`` (0 without epochs)."""
        return 0

    # -- TokenCache

    def load(self, key: Key) -> Optional[CacheEntry]:
        data, epoch = self._read_with_epoch(key)
        if data is None:
            return None
        try:
            return self._codec.decode(key, data, epoch)
        except ValueError as exc:
            _log.warning(
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
        ttl = entry.token.expires_at_monotonic - self._clock()
        if ttl <= 0:
            self._delete(key)
            return
        self._write(key, self._codec.encode(key, entry, self._epoch(key)), ttl)

    def evict(self, key: Key) -> None:
        self._local.evict(key)
        self._delete(key)

    def load_record(self, name: str) -> Optional[str]:
        data = self._read(_record_key(name))
        if data is None:
            return None
        try:
            return self._codec.decode_record(name, data)
        except ValueError as exc:
            _log.warning("Ignoring the %s record %s: %s", self.store_name, name.partition(":")[0], exc)
            return None

    def store_record(self, name: str, value: str, ttl: float) -> None:
        self._write(_record_key(name), self._codec.encode_record(name, value, ttl), ttl)

    def keys(self) -> Iterator[Key]:
        return self._local.keys()

    def __len__(self) -> int:
        return len(self._local)

    def reset_after_fork(self) -> None:
        self._local.reset_after_fork()

    # -- the failure policy: the store failing never fails a caller. Each failure is
    # logged, counted through ``failed()`` and followed by a direct fetch or a local-only
    # store; the store is used again as soon as it answers.

    def try_load(self, key: Key, failed: Callable[[], None]) -> Optional[CacheEntry]:
        try:
            return self.load(key)
        except Exception as exc:
            self._failed(key, "read", exc, failed)
            return None

    def try_store(self, key: Key, entry: CacheEntry, failed: Callable[[], None]) -> None:
        try:
            self.store(key, entry)
        except Exception as exc:  # local memory was written before the store
            self._failed(key, "write", exc, failed)

    def try_evict(self, key: Key, failed: Callable[[], None]) -> None:
        try:
            self.evict(key)
        except Exception as exc:  # local memory was cleared before the store
            self._failed(key, "evict", exc, failed)

    @contextlib.contextmanager
    def try_lock(self, key: Key, failed: Callable[[], None]) -> Iterator[bool]:
        held = self.lock(key)
        try:
            held.__enter__()
        except Exception as exc:  # the store is down, or the holder took too long: fetch anyway
            self._failed(key, "lock", exc, failed)
            yield isinstance(exc, TimeoutError)
            return
        try:
            yield True
        except BaseException:
            try:
                suppressed = held.__exit__(*sys.exc_info())
            except Exception as exc:
                self._failed(key, "unlock", exc, failed)
                suppressed = False
            if not suppressed:
                raise
        else:
            try:
                held.__exit__(None, None, None)
            except Exception as exc:
                self._failed(key, "unlock", exc, failed)

    def _failed(self, key: Key, operation: str, exc: BaseException, failed: Callable[[], None]) -> None:
        failed()
        _log.warning(
            "Token cache %s failed for %s (%s: %s); going on without the shared cache",
            operation,
            key[0],
            type(exc).__name__,
            exc,
        )
