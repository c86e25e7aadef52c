"""TokenManager: cached, single-flight client-credentials tokens for many servers."""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import os
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, FrozenSet, Iterator, NamedTuple, Optional, Tuple

from ._helpers import masked
from ._refresher import DEFAULT_WORKERS, Refresher
from .cache import CacheEntry, Key, MemoryTokenCache, TokenCache
from .client import TokenClient, TokenResponse, call_budget, safe_text
from .client_auth import JWT_BEARER_GRANT_TYPE, certificate_thumbprints
from .config import OAuthConfig
from .discovery import Discoverer, DiscoveryResult, choose_auth_method
from .dpop import DPoPKey, NonceStore, check_binding, token_claims
from .exceptions import (
    ConfigError,
    InvalidClient,
    InvalidScope,
    InvalidTarget,
    OAuthGatewayError,
    RevocationNotConfigured,
    TransportError,
)
from .metrics import Metrics
from .providers import ProviderContext, call_provider, get_provider
from .tokens import DEFAULT_TOKEN_LIFETIME, Token, parse_scope

if TYPE_CHECKING:  # pragma: no cover
    from .auth import TokenAuth

log = logging.getLogger("oauth_gateway")

#: Seconds a key fails fast with its last error after an acquisition failed.
DEFAULT_FAILURE_COOLDOWN = 5.0
#: First wait before retrying a failed proactive refresh while the old token is served.
STALE_RETRY_INITIAL = 1.0
#: Longest wait between refresh attempts while the old token is served.
STALE_RETRY_MAX = 60.0
#: Seconds a waiting thread allows, beyond the leader's whole call (``client.call_budget``),
#: for the leader's shared-cache reads and lock (whose own wait is bounded by the cache).
WAIT_MARGIN = 60.0
#: DPoP keys a manager keeps (one per config); past this the oldest is forgotten, and
#: the tokens bound to it are replaced when a resource server refuses them.
MAX_DPOP_KEYS = 1024


class HitProbe(NamedTuple):
    """One key's cache hit, for reading inline (see :meth:`oauth_gateway.TokenManager.hit_probe`)."""

    peek: Callable[[Key], Optional[CacheEntry]]
    key: Key
    fingerprint: str
    clock: Callable[[], float]
    fetch: Callable[[], Token]


class _Flight:
    """One in-progress fetch that other threads wait on."""

    __slots__ = ("done", "token", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.token: Optional[Token] = None
        self.error: Optional[BaseException] = None


class _Failure:
    """The last failed acquisition of a key, for fail-fast and growing refresh retries."""

    __slots__ = ("fingerprint", "error", "until", "count")

    def __init__(self, fingerprint: str, error: BaseException, until: float, count: int):
        self.fingerprint = fingerprint
        self.error = error
        self.until = until
        self.count = count


class TokenManager:
    """Gets, caches, refreshes and revokes client-credentials tokens. Thread-safe.

    A cache hit reads one dict and the clock: no lock, no I/O. A miss makes exactly
    one token request per key, however many threads ask; the others wait for that
    request's token or its error. Different keys fetch in parallel.

    With a cache shared by processes (file, Redis), a local miss first reads the
    shared store, then takes the store's per-key lock, reads again and only then
    fetches, so many processes make one request per key too. When the shared store
    fails, the manager logs a warning, counts ``cache_errors`` and fetches directly;
    it uses the store again as soon as it answers.

    Args:
        cache: where tokens are kept; a :class:`~oauth_gateway.cache.MemoryTokenCache` by default.
        clock: monotonic seconds (``time.monotonic``); tests pass a fake.
        sleep: waits between retries (``time.sleep``); tests pass a recorder.
        maxsize: bound on cached tokens when ``cache`` is not given.
        failure_cooldown: seconds a key answers with its last error, without a request,
            after an acquisition failed.
        default_lifetime: lifetime assumed for a token whose response has no ``expires_in``.
        background_refresh: when a cached token enters its refresh window, hand it out at
            once and fetch its replacement on a background daemon thread, so no caller waits
            on the token endpoint while a valid token exists. None (the default) turns it on
            unless ``clock`` is given: a manager on an injected clock is a test that steps
            time by hand and expects the call that notices to refresh (pass True and call
            :meth:`wait_for_refresh` to test the background path on a fake clock).
        on_retry: called as ``on_retry(server_name, attempt, total, reason)`` before each
            retried request (``attempt`` is the one about to be sent, ``reason`` like
            ``"HTTP 503"``); the wait follows through ``sleep``. The command line prints
            its progress line from here.
        refresh_workers: most background refreshes running at once (default 4), on that
            many shared daemon threads: no key has a thread of its own. Refreshes that wait
            for a free thread run earliest expiry first, and each token's refresh starts at
            a small random delay into its window, so tokens fetched together refresh apart.

    Raises:
        ValueError: ``refresh_workers`` is not an integer of at least 1.
    """

    def __init__(
        self,
        cache: Optional[TokenCache] = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        maxsize: int = 1024,
        failure_cooldown: float = DEFAULT_FAILURE_COOLDOWN,
        default_lifetime: float = DEFAULT_TOKEN_LIFETIME,
        background_refresh: Optional[bool] = None,
        on_retry: Optional[Callable[[str, int, int, str], None]] = None,
        refresh_workers: int = DEFAULT_WORKERS,
    ):
        self._clock = clock
        self._cache = cache if cache is not None else MemoryTokenCache(maxsize=maxsize, clock=clock)
        self._peek = self._cache.peek
        self._failure_cooldown = failure_cooldown
        self._default_lifetime = default_lifetime
        self._metrics = Metrics()
        self._retry_hook = on_retry
        self._client = TokenClient(sleep=sleep, on_retry=self._on_retry, clock=clock)
        # Guards _flights and _failures; held while checking and claiming, never during HTTP.
        self._lock = threading.Lock()
        self._flights: Dict[Key, _Flight] = {}
        self._failures: Dict[Key, _Failure] = {}
        if background_refresh is None:
            background_refresh = clock is time.monotonic
        # Started on the first refresh it is given; None means refreshes run in the caller.
        refresher = Refresher(workers=refresh_workers)  # checks refresh_workers even when unused
        self._refresher: Optional[Refresher] = refresher if background_refresh else None
        # Discovery, used only on the slow path: one Discoverer per transport (TLS identity,
        # timeouts, retries, https rule), created on first use under self._lock.
        self._discoverers: Dict[Tuple[Any, ...], Discoverer] = {}
        # DPoP (OAUTH_DPOP): one key per config, made or loaded on first use and held here
        # only (never pickled, never written to a cache); the nonces of token endpoints,
        # and those of resource servers for TokenAuth.
        self._dpop_lock = threading.Lock()
        self._dpop_keys: Dict[str, DPoPKey] = {}
        self._token_nonces = NonceStore()
        self._resource_nonces = NonceStore()
        # Resolved configs whose discovered metadata says tokens are certificate-bound.
        self._cert_bound: Dict[str, bool] = {}
        _MANAGERS.add(self)
        if type(self).get_token is TokenManager.get_token:
            # The cache hit as a plain function on the instance: its cells are read faster
            # than attributes of self, and the call binds no method. Same behaviour.
            self.__dict__["get_token"] = self._hit_path()

    # -- the hot path ---------------------------------------------------------

    def get_token(self, server_name: str, config: OAuthConfig, config_id: str = "default") -> Token:
        """Return a valid token for a server, from the cache when it is fresh.

        Args:
            server_name: the MCP server the token is for (part of the cache key).
            config: its OAuth settings; an edited config never gets the old config's token.
            config_id: the gateway config the server belongs to (part of the cache key).

        Returns:
            A token that is not expired.

        Raises:
            ConfigError: OAuth is disabled in ``config``.
            TokenRequestError: the server refused and no valid token is cached.
            TransportError: the network failed and no valid token is cached.
        """
        entry = self._peek((server_name, config_id))
        if entry is not None and entry.fingerprint == config.fingerprint and self._clock() < entry.refresh_at:
            next(entry.hits)
            return entry.token
        return self._acquire(server_name, config, config_id, force=False)

    def hit_probe(self, server_name: str, config: OAuthConfig, config_id: str = "default") -> HitProbe:
        """Return what a caller needs to read this key's cache hit inline, without a call.

        For :class:`~oauth_gateway.auth.TokenAuth`, whose hook runs on every request. A hit
        is exactly :meth:`get_token`'s: with ``peek, key, fingerprint, clock, fetch`` the
        probe's fields, ``entry = peek(key)`` is a hit when ``entry is not None and
        entry.fingerprint == fingerprint and clock() < entry.refresh_at``; then count it
        with ``next(entry.hits)`` and use ``entry.token``. Otherwise call ``fetch()``.
        """
        acquire = self._acquire

        def fetch() -> Token:
            return acquire(server_name, config, config_id, False)

        return HitProbe(self._peek, (server_name, config_id), config.fingerprint, self._clock, fetch)

    def _hit_path(self) -> Callable[..., Token]:
        """Return :meth:`get_token` as a function whose cache hit reads only its own cells."""
        peek = self._peek
        clock = self._clock
        # A strong reference: ``TokenManager().get_token(...)`` must keep its manager alive
        # for the call. The manager keeps this function too; the collector frees the cycle.
        acquire = self._acquire

        def get_token(server_name: str, config: OAuthConfig, config_id: str = "default") -> Token:
            entry = peek((server_name, config_id))
            if entry is not None and entry.fingerprint == config.fingerprint and clock() < entry.refresh_at:
                next(entry.hits)
                return entry.token
            return acquire(server_name, config, config_id, False)

        get_token.__doc__ = TokenManager.get_token.__doc__
        return get_token

    # -- the slow path --------------------------------------------------------

    def refresh(
        self,
        server_name: str,
        config: OAuthConfig,
        config_id: str = "default",
        rejected: Optional[str] = None,
    ) -> Token:
        """Fetch a new token now, whatever is cached (single-flight too).

        Args:
            rejected: the ``Authorization`` value a resource server refused. The token is
                replaced only while that is still the cached one, so many callers that saw
                the same rejection make one request; a later caller gets the replacement.

        Raises:
            TokenRequestError, TransportError: the fetch failed; the cached token is kept.
        """
        return self._acquire(server_name, config, config_id, force=True, rejected=rejected)

    def invalidate(self, server_name: str, config_id: str = "default") -> None:
        """Forget the cached token of a server and its failure cool-down."""
        key = (server_name, config_id)
        with self._lock:
            self._failures.pop(key, None)
        try:
            self._cache.evict(key)
        except Exception as exc:  # a shared store that is down; local memory is cleared first
            self._cache_error(server_name, "evict", exc)
        log.debug("Token invalidated for %s (config: %s)", server_name, config_id)

    def _acquire(
        self, server_name: str, config: OAuthConfig, config_id: str, force: bool, rejected: Optional[str] = None
    ) -> Token:
        """Everything past the cache hit: the background refresh hand-off, else the single-flight slow path.

        A ``get_token`` that gets here is timed for the ``max_wait_seconds`` gauge: only
        here, so the hit path pays nothing for it.
        """
        if force:
            return self._acquire_slow(server_name, config, config_id, force, rejected)
        started = time.perf_counter()
        try:
            refresher = self._refresher
            if refresher is not None and config.enabled:
                key = (server_name, config_id)
                entry = self._peek(key)
                if (
                    entry is not None
                    and entry.fingerprint == config.fingerprint
                    and not entry.token.is_expired(self._clock())
                ):
                    # Stale but valid: hand it out now, and have a background thread fetch the
                    # replacement, earliest expiry first (no manager lock here: the job claims
                    # the key's flight itself, and submit() queues one job per key at a time).
                    job = functools.partial(self._refresh_in_background, key, server_name, config, config_id)
                    if refresher.submit(key, job, entry.token.expires_at_monotonic):
                        next(entry.hits)
                        return entry.token
            return self._acquire_slow(server_name, config, config_id, force, rejected)
        finally:
            self._metrics.waited(server_name, time.perf_counter() - started)

    def _acquire_slow(
        self, server_name: str, config: OAuthConfig, config_id: str, force: bool, rejected: Optional[str] = None
    ) -> Token:
        if not config.enabled:
            raise ConfigError(
                "OAuth is disabled for server %r" % server_name, "$.oauth_config.enabled", "set enabled to true"
            )
        key = (server_name, config_id)
        fingerprint = config.fingerprint
        rejected = masked(rejected)  # an Authorization value; frame locals may be printed
        with self._lock:
            now = self._clock()
            entry = self._peek(key)
            usable = entry if entry is not None and entry.fingerprint == fingerprint else None
            if (
                rejected is not None
                and usable is not None
                and usable.token.authorization != rejected
                and not usable.token.is_expired(now)
            ):
                next(usable.hits)  # the rejected token was replaced already
                return usable.token
            if usable is not None and not force and now < usable.refresh_at:
                next(usable.hits)
                return usable.token
            flight = self._flights.get(key)
            if flight is None:
                failure = self._failures.get(key)
                if (
                    not force
                    and failure is not None
                    and failure.fingerprint == fingerprint
                    and now < failure.until
                    and (usable is None or usable.token.is_expired(now))
                ):
                    self._metrics.add(server_name, "token_fail_fast")
                    raise _fail_fast(failure.error, failure.until - now)
                flight = self._flights[key] = _Flight()
                leader = True
            else:
                leader = False
                if usable is not None and not usable.token.is_expired(now) and not force:
                    # Someone is already refreshing ahead of expiry: the old token is still good.
                    next(usable.hits)
                    return usable.token
            self._metrics.add(server_name, "token_cache_misses")
        if not leader:
            # Bounded: the leader's call has a deadline per attempt, so it ends within its budget.
            budget = call_budget(config) + WAIT_MARGIN
            if not flight.done.wait(budget):
                raise TransportError(
                    "waited %.0f s for another thread's token request for %s, which has not finished; "
                    "check the token endpoint and OAUTH_TIMEOUT" % (budget, server_name),
                    server_name=server_name,
                )
            if flight.error is not None:
                raise _fresh(flight.error)
            assert flight.token is not None
            return flight.token
        try:
            token = self._lead(key, server_name, config, config_id, usable, force)
            flight.token = token
            return token
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()

    def _lead(
        self,
        key: Key,
        server_name: str,
        config: OAuthConfig,
        config_id: str,
        usable: Optional[CacheEntry],
        force: bool,
    ) -> Token:
        """Fetch as the one thread responsible for ``key``; no manager lock is held here."""
        try:
            # Discovery happens here, on the slow path only (its documents are cached).
            resolved = self.resolve(config)
        except OAuthGatewayError as exc:
            return self._after_failure(key, server_name, config, None if force else usable, exc)
        if usable is not None and usable.issuer != resolved.issuer:
            usable = None  # another authorization server's token is never served again
        if config.dpop:
            # A DPoP-bound token is useless without our key: it never goes to, or comes
            # from, a store shared with other processes (they hold other keys).
            try:
                token = self._fetch(server_name, resolved, self.dpop_key(config))
            except OAuthGatewayError as exc:
                if isinstance(exc, (InvalidClient, InvalidTarget)):
                    self.forget_discovery(config)  # the server may have moved: look again next time
                return self._after_failure(key, server_name, config, None if force else usable, exc)
            entry = CacheEntry(
                config.fingerprint, token, self._metrics.hit_counter(key), self._refresh_start(token), resolved.issuer
            )
            self._cache.remember(key, entry)
        else:
            if not force:
                # Another process sharing the store may have fetched already: no lock needed to see it.
                shared = self._load_shared(key, server_name, config, resolved.issuer)
                if shared is not None:
                    return shared.token
            with self._shared_lock(key, server_name) as waited:
                if waited and not force:
                    # Another process may have fetched while we waited for the lock.
                    shared = self._load_shared(key, server_name, config, resolved.issuer)
                    if shared is not None:
                        return shared.token
                try:
                    token = self._fetch(server_name, resolved)
                except OAuthGatewayError as exc:
                    if isinstance(exc, (InvalidClient, InvalidTarget)):
                        self.forget_discovery(config)  # the server may have moved: look again next time
                    return self._after_failure(key, server_name, config, None if force else usable, exc)
                hits = self._metrics.hit_counter(key)
                entry = CacheEntry(config.fingerprint, token, hits, self._refresh_start(token), resolved.issuer)
                self._store(key, server_name, entry)
        with self._lock:
            self._failures.pop(key, None)
        if usable is not None:
            self._metrics.add(server_name, "token_refreshes")
        log.debug("Token cached for %s (config: %s)", server_name, config_id)
        return token

    # -- background refresh ------------------------------------------------------

    def _refresh_start(self, token: Token) -> float:
        """When the hit check first sends ``token``'s key to the refresh path (a cache entry's ``refresh_at``).

        With background refresh, the token's refresh time plus a small random part of its
        window (:meth:`Refresher.refresh_start`), so keys fetched together refresh apart;
        without it, the token's refresh time.
        """
        refresher = self._refresher
        if refresher is None:
            return token.refresh_at
        return refresher.refresh_start(token.refresh_at, token.expires_at_monotonic)

    def _refresh_in_background(self, key: Key, server_name: str, config: OAuthConfig, config_id: str) -> None:
        """A background thread's job: fetch the replacement of ``key``'s stale token, single-flight.

        It claims the key's flight like a foreground miss, so a caller whose token expires
        meanwhile waits for this fetch instead of making its own; and it fetches through
        :meth:`_lead`, so a shared cache's cross-process lock and the failure back-off
        apply as they do in the foreground.
        """
        with self._lock:
            now = self._clock()
            entry = self._peek(key)
            usable = entry if entry is not None and entry.fingerprint == config.fingerprint else None
            if usable is None or now < usable.refresh_at or key in self._flights:
                return  # refreshed, evicted or edited meanwhile, or another caller is fetching it
            flight = self._flights[key] = _Flight()
        token: Optional[Token] = None
        try:
            token = self._lead(key, server_name, config, config_id, usable, False)
            flight.token = token
        except BaseException as exc:  # handed to the waiters, if any; _lead logged an OAuth failure
            flight.error = exc
            if not isinstance(exc, OAuthGatewayError):
                log.warning("Background token refresh for %s failed (%s)", server_name, type(exc).__name__)
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()
        if token is None or token is usable.token:  # _after_failure kept the old token (and logged a WARNING)
            self._metrics.add(server_name, "background_refresh_failures")
        elif token.access_token != usable.token.access_token:
            self._metrics.add(server_name, "background_refreshes")
            log.debug("Token for %s (config: %s) refreshed in the background", server_name, config_id)

    def wait_for_refresh(self, timeout: Optional[float] = None) -> bool:
        """Wait until no background refresh is queued or running (for tests, benchmarks and shutdown).

        Args:
            timeout: seconds to wait at most; None waits until done.

        Returns:
            True when no refresh is pending, False when ``timeout`` passed first.
        """
        if self._refresher is None:
            return True
        return self._refresher.wait(timeout)

    # -- the cache's shared store: failures there never fail a caller ---------

    def _load_shared(self, key: Key, server_name: str, config: OAuthConfig, issuer: str = "") -> Optional[CacheEntry]:
        """Return a fresh entry of the backing store for ``key`` (kept locally), or None.

        The entry must come from the same config and the same authorization server.
        """
        try:
            shared = self._cache.load(key)
        except Exception as exc:
            self._cache_error(server_name, "read", exc)
            return None
        if (
            shared is None
            or shared.fingerprint != config.fingerprint
            or shared.issuer != issuer
            or not self._clock() < shared.refresh_at
        ):
            return None
        if shared is not self._peek(key):
            # Read from the shared store: keep it locally, with this manager's hit counter.
            shared = shared._replace(hits=self._metrics.hit_counter(key))
            self._cache.remember(key, shared)
            log.debug("Token for %s (config: %s) read from the shared cache", server_name, key[1])
        return shared

    def _store(self, key: Key, server_name: str, entry: CacheEntry) -> None:
        try:
            self._cache.store(key, entry)
        except Exception as exc:  # shared caches keep the entry locally before writing the store
            self._cache_error(server_name, "write", exc)

    @contextlib.contextmanager
    def _shared_lock(self, key: Key, server_name: str) -> Iterator[bool]:
        """Hold the cache's cross-process lock of ``key``, or go on without it when that fails.

        Yields:
            True when another process's fetch may have finished meanwhile: the lock
            was taken, or waiting for it timed out. False when the store failed.
        """
        held = self._cache.lock(key)
        try:
            held.__enter__()
        except Exception as exc:  # the store is down, or the holder took too long: fetch anyway
            self._cache_error(server_name, "lock", exc)
            yield isinstance(exc, TimeoutError)
            return
        try:
            yield True
        except BaseException:
            try:
                suppressed = held.__exit__(*sys.exc_info())
            except Exception as exc:
                self._cache_error(server_name, "unlock", exc)
                suppressed = False
            if not suppressed:
                raise
        else:
            try:
                held.__exit__(None, None, None)
            except Exception as exc:
                self._cache_error(server_name, "unlock", exc)

    def _cache_error(self, server_name: str, operation: str, exc: BaseException) -> None:
        self._metrics.add(server_name, "cache_errors")
        log.warning(
            "Token cache %s failed for %s (%s: %s); going on without the shared cache",
            operation,
            server_name,
            type(exc).__name__,
            exc,
        )

    # -- discovery (slow path only) -------------------------------------------

    def resolve(self, config: OAuthConfig) -> OAuthConfig:
        """Return ``config`` with what discovery decides filled in; ``config`` itself when nothing is discovered.

        A config without ``OAUTH_TOKEN_URL`` is discovered from its resource URL
        (``OAUTH_RESOURCE``, pinned to ``OAUTH_ISSUER`` when set) or from ``OAUTH_ISSUER``.
        The result sets the token endpoint (its RFC 8705 mTLS alias with mTLS), the
        revocation endpoint (unless configured), the resource (the server's canonical
        URI unless ``OAUTH_RESOURCE`` says otherwise), the scope (the challenge's, else
        ``scopes_supported``, unless ``OAUTH_SCOPE`` is set), the client authentication
        method (unless ``OAUTH_TOKEN_ENDPOINT_AUTH_METHOD`` is set) and the issuer (the
        default audience of client assertions). Metadata is cached by the manager's
        discoverer; :meth:`get_token`'s cache hit never calls this.

        Raises:
            DiscoveryError: a discovery step failed its check; no token request is made.
            TransportError: the network failed during discovery.
        """
        if not config.is_discovered:
            return config
        result = self._discoverer(config).discover(resource_url=config.discovery_resource, issuer=config.issuer or None)
        resolved = _resolved(config, result)
        if config.use_mtls and result.authorization_server.tls_client_certificate_bound_access_tokens:
            if len(self._cert_bound) >= MAX_DPOP_KEYS:
                self._cert_bound.clear()
            self._cert_bound[resolved.fingerprint] = True
        return resolved

    # -- sender-constrained tokens -----------------------------------------------

    def dpop_key(self, config: OAuthConfig) -> Optional[DPoPKey]:
        """Return the DPoP key of ``config``, or None when ``OAUTH_DPOP`` is off.

        One key per manager and config: loaded from ``OAUTH_DPOP_KEY_PATH``, else a new
        EC P-256 key made in memory on first use. The manager holds it; it is never
        pickled or written to a cache.

        Raises:
            ConfigError: the key file cannot be loaded, or PyJWT is not installed.
        """
        if not config.dpop:
            return None
        found = self._dpop_keys.get(config.fingerprint)
        if found is not None:
            return found
        with self._dpop_lock:  # held while making or loading the key: one key per config
            found = self._dpop_keys.get(config.fingerprint)
            if found is None:
                if config.dpop_key_path:
                    found = DPoPKey.from_file(config.dpop_key_path, json_path="$.oauth_config")
                else:
                    found = DPoPKey.generate(json_path="$.oauth_config")
                while len(self._dpop_keys) >= MAX_DPOP_KEYS:
                    del self._dpop_keys[next(iter(self._dpop_keys))]
                self._dpop_keys[config.fingerprint] = found
            return found

    @property
    def resource_nonces(self) -> NonceStore:
        """The ``DPoP-Nonce`` of each resource server, shared by this manager's auth objects."""
        return self._resource_nonces

    def _check_binding(self, server_name: str, config: OAuthConfig, access_token: str, key: Optional[DPoPKey]) -> None:
        """Check, before use, that a JWT access token's ``cnf`` binds it to our key or certificate.

        Raises:
            TokenBindingError: it is bound to another key or certificate.
            ConfigError: the client certificate cannot be read.
        """
        claims = token_claims(access_token)
        if claims is None:
            return  # opaque: only the resource server (or introspection) can tell
        cnf = claims.get("cnf")
        cnf = cnf if isinstance(cnf, dict) else None
        cert_x5t = None
        if config.use_mtls and config.client_cert_path:
            # Read each time: a certificate renewed on disk is the one checked.
            cert_x5t = certificate_thumbprints(config.client_cert_path, json_path="$.oauth_config")[1]
        check_binding(cnf, dpop_jkt=key.jkt if key is not None else None, cert_x5t_s256=cert_x5t)
        if (cnf is None or "x5t#S256" not in cnf) and self._cert_bound.get(config.fingerprint):
            log.warning(
                "Token for %s is not bound to the client certificate (no cnf x5t#S256), although the "
                "authorization server's metadata says tls_client_certificate_bound_access_tokens; "
                "check the client's registration at the server",
                server_name,
            )

    def forget_discovery(self, config: OAuthConfig, resource_metadata: Optional[str] = None) -> bool:
        """Drop the cached discovery of ``config``'s server, so its next fetch discovers it again.

        Called after a resource server's 401 and after a refresh the authorization server
        refused as ``invalid_client`` or ``invalid_target``: the server may have moved.

        Args:
            resource_metadata: the ``resource_metadata`` URL of the resource server's 401
                challenge; the server's metadata is dropped only when it came from another
                URL. Without it, the server's metadata and its authorization server's go.

        Returns:
            True when something was dropped (False for a config with a token URL).
        """
        if not config.is_discovered:
            return False
        discoverer = self._discoverer(config)
        dropped = False
        if config.discovery_resource:
            dropped = discoverer.forget(config.discovery_resource, metadata_url=resource_metadata)
        if config.issuer and resource_metadata is None:
            dropped = discoverer.forget(config.issuer) or dropped
        return dropped

    def _discoverer(self, config: OAuthConfig) -> Discoverer:
        cert, verify = config.tls_identity
        transport = (
            cert,
            verify,
            config.enforce_https,
            config.connect_timeout,
            config.timeout,
            config.max_retries,
            config.retry_backoff,
            config.retry_after_max,
        )
        discoverer = self._discoverers.get(transport)
        if discoverer is None:
            with self._lock:
                discoverer = self._discoverers.get(transport)
                if discoverer is None:
                    discoverer = Discoverer(
                        self._client.discovery_fetch(config), enforce_https=config.enforce_https, clock=self._clock
                    )
                    self._discoverers[transport] = discoverer
        return discoverer

    # -- fetching --------------------------------------------------------------

    def _fetch(self, server_name: str, config: OAuthConfig, dpop_key: Optional[DPoPKey] = None) -> Token:
        started = time.perf_counter()
        try:
            # Every token comes from a provider; the default one is the client-credentials grant.
            context = ProviderContext(
                config, server_name, self._client, self._clock, dpop_key=dpop_key, nonces=self._token_nonces
            )
            response = call_provider(get_provider(config.provider), config, context)
            self._check_binding(server_name, config, response.access_token, dpop_key)
            granted = self._check_scopes(config, response)
        except OAuthGatewayError:
            self._metrics.acquisition(server_name, False, (time.perf_counter() - started) * 1000.0, config.provider)
            raise
        self._metrics.acquisition(server_name, True, (time.perf_counter() - started) * 1000.0, config.provider)
        # From when the attempt that succeeded was sent, not when its answer was parsed.
        issued_at = response.sent_at if response.sent_at is not None else self._clock()
        token = Token(
            response.access_token,
            response.token_type,
            expires_in=response.expires_in,
            issued_at=issued_at,
            scopes=granted,
            expiry_buffer=config.expiry_buffer,
            default_lifetime=self._default_lifetime,
            issued_at_epoch=time.time() - (self._clock() - issued_at),
        )
        if response.expires_in is None:
            log.debug(
                "Successfully obtained token for %s, no expires_in: assuming %ds", server_name, self._default_lifetime
            )
        else:
            log.debug("Successfully obtained token for %s, expires in %ds", server_name, response.expires_in)
        return token

    @staticmethod
    def _check_scopes(config: OAuthConfig, response: TokenResponse) -> FrozenSet[str]:
        if response.scope is None:
            return config.scopes  # RFC 6749 section 5.1: omitted means granted as requested
        granted = parse_scope(response.scope)
        if config.validate_scopes and config.scopes and not config.scopes <= granted:
            raise InvalidScope(
                "Token scopes validation failed. Requested: %s, Received: %s"
                % (" ".join(sorted(config.scopes)), safe_text(" ".join(sorted(granted))) or "(none)"),
                error="invalid_scope",
                retryable=False,
            )
        return granted

    def _after_failure(
        self,
        key: Key,
        server_name: str,
        config: OAuthConfig,
        usable: Optional[CacheEntry],
        exc: OAuthGatewayError,
    ) -> Token:
        now = self._clock()
        with self._lock:
            previous = self._failures.get(key)
            count = previous.count + 1 if previous is not None and previous.fingerprint == config.fingerprint else 1
            self._failures[key] = _Failure(config.fingerprint, exc, now + self._failure_cooldown, count)
        if usable is not None and not usable.token.is_expired(now):
            # Serve the old token; try again after a short, growing wait, never past its expiry.
            wait = min(STALE_RETRY_INITIAL * (2 ** (count - 1)), STALE_RETRY_MAX)
            retry_at = min(now + wait, usable.token.expires_at_monotonic)
            if config.dpop:
                self._cache.remember(key, usable._replace(refresh_at=retry_at))  # DPoP tokens stay local
            else:
                self._store(key, server_name, usable._replace(refresh_at=retry_at))
            self._metrics.add(server_name, "token_refresh_failures_served_from_cache")
            log.warning(
                "Token refresh for %s failed (%s); serving the cached token, valid for %ds more, next attempt in %.0fs",
                server_name,
                exc,
                usable.token.expires_at_monotonic - now,
                retry_at - now,
            )
            return usable.token
        log.error("Token acquisition for %s failed: %s", server_name, exc)
        raise exc

    def _on_retry(self, server_name: str, attempt: int, total: int, reason: str) -> None:
        self._metrics.add(server_name, "token_retries")
        if self._retry_hook is not None:
            self._retry_hook(server_name, attempt, total, reason)

    def auth(self, server_name: str, config: OAuthConfig, config_id: str = "default", **options: Any) -> TokenAuth:
        """Return a ``requests`` auth object that sends this server's token (see :mod:`oauth_gateway.auth`)."""
        from .auth import TokenAuth

        return TokenAuth(self, server_name, config, config_id, **options)

    # -- revocation and metrics ----------------------------------------------

    def revoke(
        self,
        server_name: str,
        config: OAuthConfig,
        config_id: str = "default",
        token: Optional[str] = None,
        token_type_hint: Optional[str] = "access_token",
    ) -> bool:
        """Revoke a token at ``OAUTH_REVOCATION_URL`` (RFC 7009) and drop it from the cache.

        Args:
            token: the token string to revoke; the cached token of the server by default.
            token_type_hint: sent as ``token_type_hint``; None sends none.

        Returns:
            True when a token was revoked, False when there was none to revoke.

        Raises:
            RevocationNotConfigured: the config has no ``OAUTH_REVOCATION_URL``.
            TokenRequestError, TransportError: the revocation failed (the cache is cleared anyway).
        """
        config = self.resolve(config)  # a discovered config: the revocation endpoint too
        if not config.revocation_url:
            raise RevocationNotConfigured(
                "%s: no OAUTH_REVOCATION_URL is configured, so tokens cannot be revoked; "
                "add the server's RFC 7009 revocation endpoint to its oauth_config" % server_name
            )
        key = (server_name, config_id)
        if token is None:
            entry = self._peek(key)
            if entry is None:
                try:  # a token fetched by another process sharing the store
                    entry = self._cache.load(key)
                except Exception as exc:
                    self._cache_error(server_name, "read", exc)
            token = entry.token.access_token if entry is not None else None
        token = masked(token)  # frame locals may be printed with a traceback
        self.invalidate(server_name, config_id)
        if token is None:
            log.debug("No cached token to revoke for %s (config: %s)", server_name, config_id)
            return False
        try:
            self._client.revoke_token(config, token, token_type_hint, server_name)
        except OAuthGatewayError:
            self._metrics.add(server_name, "token_revocation_failures")
            raise
        self._metrics.add(server_name, "token_revocations")
        log.info("Token revoked for %s (config: %s)", server_name, config_id)
        return True

    def get_metrics(self) -> Dict[str, Any]:
        """Return the counters: the seed gateway's names, extras, and a ``servers`` breakdown.

        ``cache_errors`` counts the failed reads, writes and locks of a shared cache
        (each one was followed by a direct fetch or a local-only store).
        """
        now = self._clock()
        active = 0
        for key in self._cache.keys():
            entry = self._peek(key)
            if entry is not None and not entry.token.is_expired(now):
                active += 1
        return self._metrics.snapshot(active)

    def close(self) -> None:
        """Stop the background refresh threads and close pooled connections.

        Queued background refreshes are dropped; one that is running gets a couple of
        seconds to finish (then it finishes on its daemon thread). The manager stays
        usable: it reconnects, and starts a refresh thread, on demand.
        """
        if self._refresher is not None:
            self._refresher.close()
        self._client.close()

    def __enter__(self) -> TokenManager:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _after_fork(self) -> None:
        # A lock held by another thread at fork time would never be released in the child.
        self._lock = threading.Lock()
        self._dpop_lock = threading.Lock()
        self._flights = {}
        if self._refresher is not None:
            self._refresher.reset_after_fork()  # the parent's threads are not here; start anew on use
        self._discoverers = {}
        self._client.reset_after_fork()
        self._metrics.reset_after_fork()
        self._cache.reset_after_fork()

    def __repr__(self) -> str:
        return "TokenManager(cache=%s, tokens=%d)" % (type(self._cache).__name__, len(list(self._cache.keys())))


def _resolved(config: OAuthConfig, result: DiscoveryResult) -> OAuthConfig:
    """``config`` completed with a discovery result (see :meth:`TokenManager.resolve`)."""
    server = result.authorization_server
    changes: Dict[str, Any] = {
        "token_url": server.endpoint("token_endpoint", mtls=config.use_mtls) or server.token_endpoint,
        "issuer": server.issuer,
    }
    if not config.revocation_url:
        changes["revocation_url"] = server.endpoint("revocation_endpoint", mtls=config.use_mtls) or ""
    if result.resource and config.discovery_resource:
        changes["resources"] = (result.resource,)  # the canonical form of the server's URL
    if not config.scope and result.scope:
        changes["scope"] = result.scope
    if not config.token_endpoint_auth_method:
        secretless_bearer = config.grant_type == JWT_BEARER_GRANT_TYPE and not (
            config.client_secret or config.client_private_key_path or config.use_mtls
        )
        changes["token_endpoint_auth_method"] = (
            "none"
            if secretless_bearer
            else choose_auth_method(
                server,
                have_secret=bool(config.client_secret),
                have_private_key=bool(config.client_private_key_path or config.client_assertion_file),
                have_cert=config.use_mtls,
            )
        )
    return config.replace(**changes)


def _fresh(error: BaseException) -> BaseException:
    """A copy of a stored error to raise again.

    Raising the same instance to every waiter and fail-fast caller would append each
    caller's frames to its traceback (kept alive by whoever holds the error), and would
    share one mutable traceback between threads.
    """
    try:
        clone = copy.copy(error)
    except Exception:  # an exception that cannot be copied: at least drop the old frames
        return error.with_traceback(None)
    clone.__cause__ = error.__cause__
    clone.__suppress_context__ = True
    return clone


def _fail_fast(error: BaseException, wait: float) -> BaseException:
    """A copy of a key's last error that says no request was made, and when the next one will be."""
    clone = _fresh(error)
    if clone.args and isinstance(clone.args[0], str):
        clone.args = (
            "%s; no request was made: this repeats the last failure during its cool-down, "
            "and a call in %.1f s or later makes a new request" % (clone.args[0], max(0.0, wait)),
        ) + tuple(clone.args[1:])
    return clone


_MANAGERS: weakref.WeakSet[TokenManager] = weakref.WeakSet()


def _reset_managers_after_fork() -> None:
    for manager in list(_MANAGERS):
        manager._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_managers_after_fork)
