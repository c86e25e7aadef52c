"""Tokens shared by processes and hosts through Redis: :class:`RedisTokenCache`.

Needs the ``redis`` extra (``pip install 'oauth-gateway[redis]'``); encryption at rest
needs ``redis-encrypted`` (adds ``cryptography``). One Redis, a Redis Cluster
(``redis+cluster://``) or a master found through Sentinel (``redis+sentinel://``).

Each ``(server_name, config_id)`` is one Redis string ``<prefix>token:{<sha256>}`` that
expires with the token (``PX`` = its remaining lifetime). A process about to fetch
takes ``<prefix>lock:{<sha256>}`` with ``SET NX PX`` and a random value; a thread renews
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
has a revocation epoch ``<prefix>epoch:{<sha256>}``, incremented by every eviction,
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

The three keys of a token carry the same hash tag ``{<sha256>}``, so on a Redis
Cluster they live in one hash slot, on one master: the Lua scripts that read, store
and revoke them run there atomically, and the lock that makes one fetch across
processes is on the same node as the token it guards. The scripts run with
``EVALSHA`` (``EVAL`` where a node does not know them yet), which a cluster client
routes by the first key.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import secrets
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Type
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ("RedisTokenCache",)

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

_log = logging.getLogger("oauth_gateway")

#: Redis used when neither ``url`` nor ``client`` is given.
_DEFAULT_URL = "redis://127.0.0.1:6379/0"
#: Prefix of every key this cache writes.
_DEFAULT_PREFIX = "oauth-gateway:"
#: Seconds a lock outlives a holder that stopped renewing it (died, hung, lost Redis).
_DEFAULT_LOCK_TIMEOUT = 10.0
#: Seconds Redis is left alone after it failed to answer.
_DEFAULT_RETRY_INTERVAL = 5.0
#: Connect and read timeout of the connections made from ``url`` (seconds).
_DEFAULT_SOCKET_TIMEOUT = 2.0
#: Schemes of a Redis Cluster URL: ``redis+cluster://host:port[,host:port...]``.
_CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
#: Schemes of a Sentinel URL: ``redis+sentinel://host:port[,host:port...]/service_name[/db]``.
_SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
#: Every scheme ``url`` may have.
_URL_SCHEMES = ("redis", "rediss", "unix") + _CLUSTER_SCHEMES + _SENTINEL_SCHEMES

# What redis-py raises when a Redis, a cluster node or every Sentinel does not answer, or a
# cluster has no master for a slot (ClusterError: CLUSTERDOWN, MASTERDOWN; RedisClusterException:
# no node reachable, slot not covered). After one of these Redis is left alone for retry_interval.
_UNAVAILABLE: Tuple[Type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ClusterError,
    redis.exceptions.RedisClusterException,
)
_URL_HINT = (
    "write it like redis://127.0.0.1:6379/0, rediss://host:6380/0, unix:///run/redis.sock, "
    "redis+cluster://host:6379,host:6379 or redis+sentinel://host:26379/mymaster/0"
)
_CLUSTER_HINT = "write it like redis+cluster://10.0.0.1:6379,10.0.0.2:6379 (rediss+cluster:// for TLS)"
_SENTINEL_HINT = "write it like redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/0 (rediss+sentinel:// for TLS)"
# Query parameters of a cluster or Sentinel URL: the TLS files and checks, given to every connection.
_TLS_PARAMETERS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")


class _Script:
    """A Lua script run by its SHA1 (``EVALSHA``), sent whole (``EVAL``) where Redis does not know it yet.

    Not redis-py's ``register_script``: its script object is bound to one client when made,
    and in redis-py 4.1 needs a connection pool that ``RedisCluster`` has not. ``EVALSHA``
    and ``EVAL`` through ``execute_command`` work the same on a Redis, a Sentinel master
    client and a cluster, which sends them to the master of their first key.
    """

    def __init__(self, source: str):
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()  # noqa: S324 - the name Redis gives a script

    def __call__(self, client: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:  # a new or restarted node, or SCRIPT FLUSH
            return client.execute_command("EVAL", self.source, len(keys), *keys, *args)


# Delete the lock only if it still holds our random value (it may have expired and
# been taken by another process meanwhile).
_RELEASE = _Script("""
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
end
return 0
""")
# The entry's size, the key's revocation epoch and, when it is not too large, the entry:
# one round trip, and a value larger than ARGV[1] bytes is never sent (GETRANGE is bounded
# even if the value grew since STRLEN, which cannot happen inside a script anyway).
_READ = _Script("""
local size = redis.call("strlen", KEYS[1])
local epoch = redis.call("get", KEYS[2]) or "0"
if size == 0 or size > tonumber(ARGV[1]) then
    return {size, epoch, ""}
end
return {size, epoch, redis.call("getrange", KEYS[1], 0, tonumber(ARGV[1]))}
""")
# Store an entry only while the key's revocation epoch is still the one bound into it.
_STORE = _Script("""
local current = tonumber(redis.call("get", KEYS[2]) or "0")
if current ~= tonumber(ARGV[3]) then
    return current
end
redis.call("set", KEYS[1], ARGV[1], "px", ARGV[2])
return -1
""")
# Delete the entry and move the revocation epoch on; returns the new epoch.
_REVOKE = _Script("""
redis.call("del", KEYS[1])
local epoch = redis.call("incr", KEYS[2])
redis.call("pexpire", KEYS[2], ARGV[1])
return epoch
""")
# Put back an epoch that went backwards (flushed, restarted, or reset by someone).
_RESTORE_EPOCH = _Script("""
if tonumber(redis.call("get", KEYS[1]) or "0") < tonumber(ARGV[1]) then
    redis.call("set", KEYS[1], ARGV[1], "px", ARGV[2])
end
return 0
""")
#: Largest value read back (bytes): the size of the biggest entry the codec accepts.
_MAX_VALUE_BYTES = MAX_ENTRY_BYTES
# How long an epoch outlives its last change: longer than any entry bound to an older one.
_EPOCH_TTL_MS = int(2 * MAX_ENTRY_TTL * 1000)
# Push the lock's expiry back only while it is still ours.
_EXTEND = _Script("""
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("pexpire", KEYS[1], ARGV[2])
end
return 0
""")


class _Target(NamedTuple):
    """What a ``redis+cluster://`` or ``redis+sentinel://`` URL names."""

    kind: str  # "cluster" or "sentinel"
    nodes: Tuple[Tuple[str, int], ...]  # the cluster nodes to start from, or the Sentinels
    service_name: str  # the Sentinel service ("" for a cluster)
    db: int
    options: Dict[str, Any]  # username, password, ssl and the TLS query parameters


def _parse_target(url: str) -> _Target:
    """Parse a cluster or Sentinel URL. Pure: no I/O.

    Raises:
        ValueError: what is wrong, without the URL's credentials.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    kind = "cluster" if scheme in _CLUSTER_SCHEMES else "sentinel"
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    nodes: List[Tuple[str, int]] = []
    for item in hostlist.split(","):
        item = item.strip()
        if item.startswith("["):  # [::1]:7000
            host, _, rest = item[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else rest
        else:
            host, _, port_text = item.partition(":")
        if not host or (port_text and not port_text.isdigit()) or not 0 < int(port_text or 1) < 65536:
            raise ValueError("%r is not a host:port" % item)
        nodes.append((host, int(port_text) if port_text else (6379 if kind == "cluster" else 26379)))
    segments = [unquote(segment) for segment in parts.path.split("/")[1:] if segment]
    db = 0
    if kind == "cluster":
        service_name = ""
        if segments not in ([], ["0"]):
            raise ValueError("a Redis Cluster has only database 0; drop the path %r" % parts.path)
    else:
        if not 1 <= len(segments) <= 2:
            raise ValueError("the path must be /service_name or /service_name/db, got %r" % parts.path)
        service_name = segments[0]
        if len(segments) == 2:
            if not segments[1].isdigit():
                raise ValueError("the database must be a number, got %r" % segments[1])
            db = int(segments[1])
    options: Dict[str, Any] = {}
    if userinfo:
        username, has_password, password = userinfo.partition(":")
        if username:
            options["username"] = unquote(username)
        if has_password and password:
            options["password"] = unquote(password)
    tls = scheme.startswith("rediss")
    if tls:
        options["ssl"] = True
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in _TLS_PARAMETERS:
            raise ValueError("unknown query parameter %r (only %s)" % (name, ", ".join(_TLS_PARAMETERS)))
        if not tls:
            raise ValueError("%s needs TLS: use %s://" % (name, scheme.replace("redis", "rediss", 1)))
        options[name] = value
    return _Target(kind, tuple(nodes), service_name, db, options)


def _connector(url: str, socket_timeout: float) -> Callable[[], Any]:
    """Return a function that makes the client ``url`` names; the URL is checked now.

    Raises:
        ConfigError: a malformed URL, naming ``RedisTokenCache(url=...)``.
    """
    timeouts = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_timeout}
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme not in _CLUSTER_SCHEMES + _SENTINEL_SCHEMES:
        try:
            client = redis.Redis.from_url(url, **timeouts)
        except ValueError as exc:
            raise ConfigError(
                "%r is not a Redis URL (%s)" % (redact_url(url), exc), "RedisTokenCache(url=...)", _URL_HINT
            ) from None
        return lambda: client
    try:
        target = _parse_target(url)
    except ValueError as exc:
        raise ConfigError(
            "%r is not a Redis %s URL (%s)"
            % (redact_url(url), "Cluster" if scheme in _CLUSTER_SCHEMES else "Sentinel", exc),
            "RedisTokenCache(url=...)",
            _CLUSTER_HINT if scheme in _CLUSTER_SCHEMES else _SENTINEL_HINT,
        ) from None
    if target.kind == "sentinel":
        from redis.sentinel import Sentinel

        tls = {name: value for name, value in target.options.items() if name.startswith("ssl")}
        sentinel = Sentinel(list(target.nodes), sentinel_kwargs=dict(timeouts, **tls))
        # Connects on first use: each new connection asks the Sentinels where the master is.
        client = sentinel.master_for(target.service_name, db=target.db, **dict(timeouts, **target.options))
        return lambda: client

    def connect_cluster() -> Any:
        from redis.cluster import ClusterNode, RedisCluster

        options = dict(timeouts, **target.options)
        # One attempt per command: a node that went away costs one socket_timeout, and this
        # cache's retry_interval, not redis-py's retries, decides when to try again.
        if "retry" in inspect.signature(RedisCluster.__init__).parameters:
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            options["retry"] = Retry(NoBackoff(), 0)
        else:  # redis-py 4.1: no retry object; it also tries a node five times, 0.25 s apart
            options["cluster_error_retry_attempts"] = 1
        nodes = [ClusterNode(host, port) for host, port in target.nodes]  # type: ignore[no-untyped-call]  # unannotated in redis-py
        return RedisCluster(startup_nodes=nodes, **options)

    return connect_cluster


class RedisTokenCache(SharedTokenCache):
    """Tokens in Redis, shared by every process and host that uses the same Redis. Thread-safe.

    Args:
        url: ``redis://[[user]:password@]host:port/db``, ``rediss://`` (TLS) or
            ``unix://``; a Redis Cluster, ``redis+cluster://[[user]:password@]host:port[,host:port...]``;
            a master found by Sentinel,
            ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]``
            (``rediss+cluster://``, ``rediss+sentinel://`` for TLS, with ``?ssl_ca_certs=/path``
            and the other ``ssl_*`` files if needed). :data:`DEFAULT_URL` when neither ``url``
            nor ``client`` is given. A cluster is connected on first use, so an unreachable
            one at start-up is a cache error, not a failed constructor.
        client: a ``redis.Redis``, a ``redis.cluster.RedisCluster`` or a Sentinel master client
            (``Sentinel(...).master_for(name)``) to use instead of ``url`` (its own timeouts
            and retries apply).
        prefix: prepended to every key, to share one Redis database; no ``{`` or ``}``.
        encryption_key: Fernet key(s), comma-separated for rotation: values are encrypted
            and authenticated, so a dump of Redis holds no bearer token.
        lock_timeout: seconds the fetch lock outlives a holder that died; renewed
            every third of it while the holder is alive.
        wait_timeout: seconds to wait for another process's fetch before fetching anyway.
        retry_interval: seconds calls fail at once after Redis did not answer.
        socket_timeout: connect and read timeout of connections made from ``url``: what one
            command to a Redis or a cluster node that went away costs at most (a Sentinel
            URL: once per Sentinel asked, plus once for the master).
        maxsize: bound on the tokens kept in local memory.
        clock: monotonic seconds, the manager's clock.
        wall_clock: epoch seconds, for the times written to Redis.
        sleep: waits between attempts to take a busy lock.

    Raises:
        ConfigError: both ``url`` and ``client``, a malformed URL or encryption key, a
            prefix with a brace, or a timeout that is not positive.
    """

    store_name = "Redis cache"

    def __init__(
        self,
        url: Optional[str] = None,
        client: Optional[Any] = None,
        prefix: str = _DEFAULT_PREFIX,
        encryption_key: Any = None,
        lock_timeout: float = _DEFAULT_LOCK_TIMEOUT,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        retry_interval: float = _DEFAULT_RETRY_INTERVAL,
        socket_timeout: float = _DEFAULT_SOCKET_TIMEOUT,
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
        if "{" in prefix or "}" in prefix:
            raise ConfigError(
                "prefix must not contain { or }, got %r" % prefix,
                "RedisTokenCache(prefix=...)",
                "drop the braces: each key already ends in a hash tag {...} that keeps a token's keys "
                "in one Redis Cluster slot",
            )
        super().__init__(encryption_key=encryption_key, maxsize=maxsize, clock=clock, wall_clock=wall_clock)
        self._client: Optional[Any] = client
        self._connect: Optional[Callable[[], Any]] = None
        if client is None:
            url = url or _DEFAULT_URL
            self._connect = _connector(url, socket_timeout)
            self._where = redact_url(url)
        else:
            self._where = "the given Redis client"
        self._connecting = threading.Lock()
        self._prefix = prefix
        self._lock_timeout = float(lock_timeout)
        self._wait_timeout = float(wait_timeout)
        self._retry_interval = float(retry_interval)
        self._sleep = sleep or time.sleep
        # The highest revocation epoch seen per key; an entry is written under it.
        self._epochs: Dict[Key, int] = {}
        # Clock time until which Redis is not asked (after it failed to answer), or None.
        self._down_until: Optional[float] = None

    @property
    def client(self) -> Any:
        """The client in use: a ``redis.Redis`` (also for Sentinel) or a ``redis.cluster.RedisCluster``.

        Raises:
            redis.RedisError, redis.exceptions.RedisClusterException: a cluster named by
                ``url`` is connected now, on first use, and did not answer.
        """
        return self._redis()

    def _redis(self) -> Any:
        client = self._client
        if client is None:
            with self._connecting:  # one cluster client per cache, made by the first caller
                if self._client is None:
                    assert self._connect is not None
                    self._client = self._connect()
                client = self._client
        return client

    def _name(self, kind: str, key: Key) -> str:
        # The hash tag {digest}: a token's keys share one cluster slot (see the module docstring).
        return "%s%s:{%s}" % (self._prefix, kind, key_digest(key))

    def _call(self, operation: Callable[[Any], Any]) -> Any:
        """Run ``operation(client)``, one Redis command, failing at once while Redis is known to be down."""
        until = self._down_until
        if until is not None and self._clock() < until:
            raise ConnectionError(
                "Redis at %s did not answer; trying it again in %.1fs" % (self._where, until - self._clock())
            )
        try:
            result = operation(self._redis())
        except _UNAVAILABLE:
            if self._down_until is None:
                _log.warning(
                    "Redis at %s does not answer; tokens are fetched without it, retrying it every %.0fs",
                    self._where,
                    self._retry_interval,
                )
            self._down_until = self._clock() + self._retry_interval
            raise
        if self._down_until is not None:
            self._down_until = None
            _log.warning("Redis at %s answers again; tokens are shared through it", self._where)
        return result

    # -- the store

    def _read_with_epoch(self, key: Key) -> Tuple[Optional[bytes], int]:
        """Return the stored bytes of ``key`` (None when missing or too large) and the key's epoch."""
        keys = [self._name("token", key), self._name("epoch", key)]
        size, epoch_text, data = self._call(lambda client: _READ(client, keys, [_MAX_VALUE_BYTES]))
        size = int(size)
        epoch = int(epoch_text or 0)
        known = self._epochs.get(key, 0)
        if epoch < known:
            # Redis forgot a revocation this process saw: put it back, and trust no entry until then.
            self._call(lambda client: _RESTORE_EPOCH(client, keys[1:], [known, _EPOCH_TTL_MS]))
            _log.warning(
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
        if size > _MAX_VALUE_BYTES:
            _log.warning(
                "Ignoring the Redis cache entry for %s (config: %s): it is %d bytes, more than the %d an entry "
                "can be, so it was not read; the next fetch replaces it",
                key[0],
                key[1],
                size,
                _MAX_VALUE_BYTES,
            )
            return None, epoch
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
        keys = [self._name("token", key), self._name("epoch", key)]
        args = [data, max(1, int(min(ttl, MAX_ENTRY_TTL) * 1000)), epoch]
        current = self._call(lambda client: _STORE(client, keys, args))
        if int(current) >= 0:
            # Revoked or invalidated since this process last looked: this token may be the revoked one.
            self._epochs[key] = max(epoch, int(current))
            _log.debug("Not storing the token of %s (config: %s) in Redis: it was revoked meanwhile", *key)

    def _delete(self, key: Key) -> None:
        keys = [self._name("token", key), self._name("epoch", key)]
        epoch = self._call(lambda client: _REVOKE(client, keys, [_EPOCH_TTL_MS]))
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
            return bool(self._call(lambda client: client.set(name, owner, nx=True, px=ttl_ms)))

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
            self._call(lambda client: _RELEASE(client, [name], [owner]))

    def _renew(self, name: str, owner: str, ttl_ms: int, stop: threading.Event) -> None:
        """Keep our lock alive while its holder works; a dead holder stops renewing it."""
        while not stop.wait(self._lock_timeout / 3.0):
            try:
                if not _EXTEND(self._redis(), [name], [owner, ttl_ms]):
                    _log.warning("Lost the Redis fetch lock %s; another process may fetch too", name)
                    return
            except _UNAVAILABLE + (redis.RedisError,) as exc:
                _log.debug("Could not renew the Redis fetch lock %s: %s", name, exc)

    def reset_after_fork(self) -> None:
        super().reset_after_fork()
        self._connecting = threading.Lock()  # a parent's thread may have held it at the fork

    def __repr__(self) -> str:
        return "RedisTokenCache(%s, prefix=%r, encrypted=%r, tokens=%d)" % (
            self._where,
            self._prefix,
            self.encrypted,
            len(self),
        )
