"""Tokens shared by processes and hosts through Redis: :class:`RedisTokenCache`.

Needs the ``redis`` extra (``pip install 'oauth-gateway[redis]'``); encryption at rest
needs ``redis-encrypted`` (adds ``cryptography``).

Each ``(server_name, config_id)`` is one Redis string ``<prefix>token:<sha256>`` that
expires with the token (``PX`` = its remaining lifetime). A process about to fetch
takes ``<prefix>lock:<sha256>`` with ``SET NX PX`` and a random value; a thread renews
it while the fetch runs, a Lua compare-and-delete releases only our own lock, and a
holder that dies stops renewing, so its lock expires after ``lock_timeout``. Others
poll the lock with a growing delay for at most ``wait_timeout``, then read the token
the holder stored, or fetch themselves if it never came.

A local :class:`~oauth_gateway.cache.MemoryTokenCache` serves hits without a round trip.
When Redis does not answer, the calls raise (the manager then fetches directly and
counts ``cache_errors``), and for ``retry_interval`` seconds fail at once without
waiting on the network; after that Redis is tried again.

What is read back is checked: a value's size is asked with ``STRLEN`` first and a
value larger than an entry can be is never read (a miss, logged without content);
times that are not finite are refused and an expiry more than a day away is cut to a
day. A revoked or invalidated token cannot come back from a replayed entry: each key
has a revocation epoch ``<prefix>epoch:<sha256>``, incremented by every eviction,
and every entry carries the epoch it was written under inside its (encrypted,
authenticated) bytes. An entry of another epoch is refused, and a write is made only
if the epoch has not moved since this process last read it, so a token fetched
before a revocation is not stored after it. A counter rather than Fernet's timestamp
against a revocation time: it does not depend on the hosts' clocks agreeing, and it
works the same without encryption. Each process also remembers the highest epoch it
saw and puts it back when Redis shows a lower one (a flushed or restarted Redis, or
someone resetting the key), refusing the entry found with it. Someone who can write
to Redis can still roll back everything for a process that never saw the revocation;
keep Redis private.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from typing import Any, Callable, Dict, Iterator, Optional, Tuple, Union

try:
    import redis
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "oauth_gateway.contrib.redis_cache needs the redis package: pip install 'oauth-gateway[redis]'"
    ) from exc

from .._helpers import redact_url
from ..cache import DEFAULT_MAXSIZE, MAX_ENTRY_TTL, Key
from ..exceptions import ConfigError
from .store import DEFAULT_WAIT_TIMEOUT, MAX_ENTRY_BYTES, SharedTokenCache, acquire_polling, key_digest

log = logging.getLogger("oauth_gateway")

#: Redis used when neither ``url`` nor ``client`` is given.
DEFAULT_URL = "redis://127.0.0.1:6379/0"
#: Prefix of every key this cache writes.
DEFAULT_PREFIX = "oauth-gateway:"
#: Seconds a lock outlives a holder that stopped renewing it (died, hung, lost Redis).
DEFAULT_LOCK_TIMEOUT = 10.0
#: Seconds Redis is left alone after it failed to answer.
DEFAULT_RETRY_INTERVAL = 5.0
#: Connect and read timeout of the connections made from ``url`` (seconds).
DEFAULT_SOCKET_TIMEOUT = 2.0

# Delete the lock only if it still holds our random value (it may have expired and
# been taken by another process meanwhile).
_RELEASE = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
end
return 0
"""
# Store an entry only while the key's revocation epoch is still the one bound into it.
_STORE = """
local current = tonumber(redis.call("get", KEYS[2]) or "0")
if current ~= tonumber(ARGV[3]) then
    return current
end
redis.call("set", KEYS[1], ARGV[1], "px", ARGV[2])
return -1
"""
# Delete the entry and move the revocation epoch on; returns the new epoch.
_REVOKE = """
redis.call("del", KEYS[1])
local epoch = redis.call("incr", KEYS[2])
redis.call("pexpire", KEYS[2], ARGV[1])
return epoch
"""
# Put back an epoch that went backwards (flushed, restarted, or reset by someone).
_RESTORE_EPOCH = """
if tonumber(redis.call("get", KEYS[1]) or "0") < tonumber(ARGV[1]) then
    redis.call("set", KEYS[1], ARGV[1], "px", ARGV[2])
end
return 0
"""
#: Largest value read back (bytes): the size of the biggest entry the codec accepts.
MAX_VALUE_BYTES = MAX_ENTRY_BYTES
# How long an epoch outlives its last change: longer than any entry bound to an older one.
_EPOCH_TTL_MS = int(2 * MAX_ENTRY_TTL * 1000)
# Push the lock's expiry back only while it is still ours.
_EXTEND = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("pexpire", KEYS[1], ARGV[2])
end
return 0
"""


class RedisTokenCache(SharedTokenCache):
    """Tokens in Redis, shared by every process and host that uses the same Redis. Thread-safe.

    Args:
        url: ``redis://[[user]:password@]host:port/db``, ``rediss://`` (TLS) or
            ``unix://``; :data:`DEFAULT_URL` when neither ``url`` nor ``client`` is given.
        client: a ``redis.Redis`` to use instead of ``url`` (its own timeouts apply).
        prefix: prepended to every key, to share one Redis database.
        encryption_key: Fernet key(s), comma-separated for rotation: values are encrypted
            and authenticated, so a dump of Redis holds no bearer token.
        lock_timeout: seconds the fetch lock outlives a holder that died; renewed
            every third of it while the holder is alive.
        wait_timeout: seconds to wait for another process's fetch before fetching anyway.
        retry_interval: seconds calls fail at once after Redis did not answer.
        socket_timeout: connect and read timeout of connections made from ``url``.
        maxsize: bound on the tokens kept in local memory.
        clock: monotonic seconds, the manager's clock.
        wall_clock: epoch seconds, for the times written to Redis.
        sleep: waits between attempts to take a busy lock.

    Raises:
        ConfigError: both ``url`` and ``client``, a malformed URL or encryption key,
            or a timeout that is not positive.
    """

    store_name = "Redis cache"

    def __init__(
        self,
        url: Optional[str] = None,
        client: Optional[Any] = None,
        prefix: str = DEFAULT_PREFIX,
        encryption_key: Any = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        *,
        maxsize: int = DEFAULT_MAXSIZE,
        clock: Optional[Callable[[], float]] = None,
        wall_clock: Optional[Callable[[], float]] = None,
        sleep: Optional[Callable[[float], None]] = None,
    ):
        if url and client is not None:
            raise ConfigError("got both url and client", "RedisTokenCache", "pass one of them")
        for name, value in (("lock_timeout", lock_timeout), ("wait_timeout", wait_timeout)):
            if not value > 0:
                raise ConfigError("%s must be > 0, got %r" % (name, value), "RedisTokenCache", "use seconds, like 10")
        super().__init__(encryption_key=encryption_key, maxsize=maxsize, clock=clock, wall_clock=wall_clock)
        if client is None:
            url = url or DEFAULT_URL
            try:
                client = redis.Redis.from_url(url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout)
            except ValueError as exc:
                raise ConfigError(
                    "%r is not a Redis URL (%s)" % (redact_url(url), exc),
                    "RedisTokenCache(url=...)",
                    "write it like redis://127.0.0.1:6379/0, rediss://host:6380/0 or unix:///run/redis.sock",
                ) from None
            self._where = redact_url(url)
        else:
            self._where = "the given Redis client"
        self._client = client
        self._prefix = prefix
        self._lock_timeout = float(lock_timeout)
        self._wait_timeout = float(wait_timeout)
        self._retry_interval = float(retry_interval)
        self._sleep = sleep or time.sleep
        self._release = client.register_script(_RELEASE)
        self._extend = client.register_script(_EXTEND)
        self._store_script = client.register_script(_STORE)
        self._revoke = client.register_script(_REVOKE)
        self._restore_epoch = client.register_script(_RESTORE_EPOCH)
        # The highest revocation epoch seen per key; an entry is written under it.
        self._epochs: Dict[Key, int] = {}
        # Clock time until which Redis is not asked (after it failed to answer), or None.
        self._down_until: Optional[float] = None

    @property
    def client(self) -> Any:
        """The ``redis.Redis`` client in use."""
        return self._client

    def _name(self, kind: str, key: Key) -> str:
        return "%s%s:%s" % (self._prefix, kind, key_digest(key))

    def _call(self, operation: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one Redis command, failing at once while Redis is known to be down."""
        until = self._down_until
        if until is not None and self._clock() < until:
            raise ConnectionError(
                "Redis at %s did not answer; trying it again in %.1fs" % (self._where, until - self._clock())
            )
        try:
            result = operation(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError):
            if self._down_until is None:
                log.warning(
                    "Redis at %s does not answer; tokens are fetched without it, retrying it every %.0fs",
                    self._where,
                    self._retry_interval,
                )
            self._down_until = self._clock() + self._retry_interval
            raise
        if self._down_until is not None:
            self._down_until = None
            log.warning("Redis at %s answers again; tokens are shared through it", self._where)
        return result

    # -- the store

    def _read_with_epoch(self, key: Key) -> Tuple[Optional[bytes], int]:
        """Return the stored bytes of ``key`` (None when missing or too large) and the key's epoch."""
        name = self._name("token", key)
        pipe = self._client.pipeline(transaction=False)
        pipe.strlen(name)
        pipe.get(self._name("epoch", key))
        size, epoch_text = self._call(pipe.execute)
        epoch = int(epoch_text or 0)
        known = self._epochs.get(key, 0)
        if epoch < known:
            # Redis forgot a revocation this process saw: put it back, and trust no entry until then.
            self._call(self._restore_epoch, keys=[self._name("epoch", key)], args=[known, _EPOCH_TTL_MS])
            log.warning(
                "The Redis revocation epoch of %s (config: %s) went back from %d to %d; restored it and "
                "ignored the entry found",
                key[0],
                key[1],
                known,
                epoch,
            )
            return None, known
        self._epochs[key] = epoch
        if not size:
            return None, epoch
        if size > MAX_VALUE_BYTES:
            log.warning(
                "Ignoring the Redis cache entry for %s (config: %s): it is %d bytes, more than the %d an entry "
                "can be, so it was not read; the next fetch replaces it",
                key[0],
                key[1],
                size,
                MAX_VALUE_BYTES,
            )
            return None, epoch
        # GETRANGE, not GET: bounded even if the value grew since STRLEN.
        data: Union[bytes, str, None] = self._call(self._client.getrange, name, 0, MAX_VALUE_BYTES)
        if isinstance(data, str):  # a client made with decode_responses=True
            data = data.encode("utf-8")
        return data or None, epoch

    def _read(self, key: Key) -> Optional[bytes]:
        return self._read_with_epoch(key)[0]

    def _epoch(self, key: Key) -> int:
        return self._epochs.get(key, 0)

    def _write(self, key: Key, data: bytes, ttl: float) -> None:
        self._write_at(key, data, ttl, self._epoch(key))

    def _write_at(self, key: Key, data: bytes, ttl: float, epoch: int) -> None:
        current = self._call(
            self._store_script,
            keys=[self._name("token", key), self._name("epoch", key)],
            args=[data, max(1, int(min(ttl, MAX_ENTRY_TTL) * 1000)), epoch],
        )
        if int(current) >= 0:
            # Revoked or invalidated since this process last looked: this token may be the revoked one.
            self._epochs[key] = max(epoch, int(current))
            log.debug("Not storing the token of %s (config: %s) in Redis: it was revoked meanwhile", *key)

    def _delete(self, key: Key) -> None:
        epoch = self._call(
            self._revoke, keys=[self._name("token", key), self._name("epoch", key)], args=[_EPOCH_TTL_MS]
        )
        self._epochs[key] = max(self._epochs.get(key, 0), int(epoch))

    @contextlib.contextmanager
    def lock(self, key: Key) -> Iterator[None]:
        """Hold the Redis lock of ``key`` while fetching; renewed until released.

        Raises:
            TimeoutError: another process held it for longer than ``wait_timeout``.
            redis.RedisError, ConnectionError: Redis did not answer.
        """
        name = self._name("lock", key)
        owner = secrets.token_hex(16)
        ttl_ms = max(1, int(self._lock_timeout * 1000))

        def attempt() -> bool:
            return bool(self._call(self._client.set, name, owner, nx=True, px=ttl_ms))

        acquire_polling(
            attempt, self._wait_timeout, self._clock, self._sleep, "the Redis lock of %s (config: %s)" % key
        )
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(name, owner, ttl_ms, stop), name="oauth-gateway-redis-lock", daemon=True
        )
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join(self._lock_timeout)  # bounded: a renewal stuck on a dead socket ends anyway
            self._call(self._release, keys=[name], args=[owner])

    def _renew(self, name: str, owner: str, ttl_ms: int, stop: threading.Event) -> None:
        """Keep our lock alive while its holder works; a dead holder stops renewing it."""
        while not stop.wait(self._lock_timeout / 3.0):
            try:
                if not self._extend(keys=[name], args=[owner, ttl_ms]):
                    log.warning("Lost the Redis fetch lock %s; another process may fetch too", name)
                    return
            except redis.RedisError as exc:
                log.debug("Could not renew the Redis fetch lock %s: %s", name, exc)

    def __repr__(self) -> str:
        return "RedisTokenCache(%s, prefix=%r, encrypted=%r, tokens=%d)" % (
            self._where,
            self._prefix,
            self.encrypted,
            len(self),
        )
