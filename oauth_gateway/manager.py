"""TokenManager: cached, single-flight client-credentials tokens for many servers."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

from ._access import ManagerAccess
from ._exchange import IdpConfigs, acts_for_a_subject, check_sendable, fetch_for_subject
from ._failures import DEFAULT_FAILURE_COOLDOWN, Failures, serve_stale_or_raise
from ._helpers import masked
from ._hitcheck import hit_check, no_token
from ._principal import config_principal
from ._refresher import DEFAULT_WORKERS, Refresher, hand_off, refresh_start, run_refresh
from ._resolver import Resolver
from ._response import build_token, granted_scopes
from ._revocation import revoke as _revoke
from ._shared import keep, load_shared
from ._singleflight import WAIT_MARGIN, Flight, SingleFlight, waited_too_long
from ._subjects import DEFAULT_MAX_SUBJECTS, SubjectFlow, SubjectTokens
from .cache import CacheEntry, Key, MemoryTokenCache, TokenCache
from .client import TokenClient, call_budget, client_credentials_form
from .config import OAuthConfig
from .dpop import DPoPKey, DPoPKeyring, NonceStore, check_token_binding
from .exceptions import (
    ConfigError,
    InvalidClient,
    InvalidTarget,
    OAuthGatewayError,
)
from .metrics import Metrics
from .providers import ProviderContext, call_provider, get_provider, uses_client_credentials
from .tokens import DEFAULT_TOKEN_LIFETIME, Token

if TYPE_CHECKING:  # pragma: no cover
    from .auth import TokenAuth

__all__ = ("TokenManager",)

log = logging.getLogger("oauth_gateway")


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

        max_subjects: subjects whose tokens are kept per server and config id
            (``get_token(..., subject_token=...)``); past this the least recently used is
            forgotten.

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
        max_subjects: int = DEFAULT_MAX_SUBJECTS,
    ):
        self._clock = clock
        self._cache = cache if cache is not None else MemoryTokenCache(maxsize=maxsize, clock=clock)
        self._peek = self._cache.peek
        self._default_lifetime = default_lifetime
        self._metrics = Metrics()
        self._retry_hook = on_retry
        self._client = TokenClient(sleep=sleep, on_retry=self._on_retry, clock=clock)
        # Guards _flights and _failures; held while checking and claiming, never during HTTP.
        self._lock = threading.Lock()
        self._flights: SingleFlight[Key, Token] = SingleFlight(self._lock)
        self._failures = Failures(failure_cooldown)
        if background_refresh is None:
            background_refresh = clock is time.monotonic
        # Started on the first refresh it is given; None means refreshes run in the caller.
        refresher = Refresher(workers=refresh_workers)  # checks refresh_workers even when unused
        self._refresher: Optional[Refresher] = refresher if background_refresh else None
        # Discovery and its trust rules, on the slow path only; issuers trusted on first use
        # are kept in the cache too, so processes sharing it trust the same one.
        self._resolver = Resolver(self._client.discovery_fetch, clock=clock, records=self._cache)
        # DPoP (OAUTH_DPOP): one key per config; the nonces of token endpoints.
        self._dpop_keys = DPoPKeyring()
        self._token_nonces = NonceStore()
        _MANAGERS.add(self)
        # The one cache-hit check; the same check, missing with None, re-checks under the lock.
        # The manager keeps a strong reference to itself through it (its miss is a bound
        # method), so ``TokenManager().get_token(...)`` keeps it alive; the collector frees the cycle.
        # Tokens got for a subject (token exchange, ID-JAG): memory only, keyed by a keyed digest.
        self._subjects = SubjectTokens(clock, max_subjects)
        self._idp_configs = IdpConfigs()
        self._for_subject = SubjectFlow(
            self._subjects,
            clock,
            self._resolver.resolve,
            self._dpop_keys.key_for,
            self._fetch,
            self._metrics,
        )
        self._get = hit_check(self._peek, clock, self._acquire, self._for_subject.get)
        self._hit_or_none = hit_check(self._peek, clock, no_token, self._for_subject.cached)
        self._access = ManagerAccess(
            self._get,
            self._hit_or_none,
            self._dpop_keys.key_for,
            NonceStore(),
            self._resolver.resolve,
            self._resolver.forget,
        )
        if type(self).get_token is TokenManager.get_token:
            # The hit check as a plain function on the instance: the call binds no method.
            self.__dict__["get_token"] = self._get

    # -- the hot path ---------------------------------------------------------

    def get_token(
        self, server_name: str, config: OAuthConfig, config_id: str = "default", subject_token: Optional[str] = None
    ) -> Token:
        """Return a valid token for a server, from the cache when it is fresh.

        Args:
            server_name: the MCP server the token is for (part of the cache key).
            config: its OAuth settings; an edited config never gets the old config's token.
            config_id: the gateway config the server belongs to (part of the cache key).
            subject_token: the token of the user to act for (token exchange, or the
                identity assertion of ``OAUTH_IDENTITY_ASSERTION``). Tokens are cached per
                subject, in memory only, under a keyed digest of it, until the subject
                token expires at the latest; at most ``max_subjects`` per server.

        Returns:
            A token that is not expired.

        Raises:
            ConfigError: OAuth is disabled in ``config``.
            TokenRequestError: the server refused and no valid token is cached.
            TransportError: the network failed and no valid token is cached.
        """
        return self._get(server_name, config, config_id, subject_token)

    # -- the slow path --------------------------------------------------------

    def refresh(
        self,
        server_name: str,
        config: OAuthConfig,
        config_id: str = "default",
        rejected: Optional[str] = None,
        subject_token: Optional[str] = None,
    ) -> Token:
        """Fetch a new token now, whatever is cached (single-flight too).

        Args:
            rejected: the ``Authorization`` value a resource server refused. The token is
                replaced only while that is still the cached one, so many callers that saw
                the same rejection make one request; a later caller gets the replacement.
            subject_token: the subject whose token is replaced (see :meth:`get_token`).

        Raises:
            TokenRequestError, TransportError: the fetch failed; the cached token is kept.
        """
        if subject_token is not None:
            return self._for_subject.get(server_name, config, config_id, subject_token, force=True)
        return self._acquire(server_name, config, config_id, force=True, rejected=rejected)

    def invalidate(self, server_name: str, config_id: str = "default") -> None:
        """Forget the cached token of a server and its failure cool-down.

        A fetch of that key already in flight still answers its callers, but caches
        nothing (nor puts the old token back): revocation and invalidation win.
        """
        key = (server_name, config_id)
        self._subjects.forget(server_name, config_id)
        with self._lock:
            self._failures.forget(key)
            self._flights.supersede(key)  # the key's generation moves on
        self._cache.try_evict(key, self._cache_failed(server_name))
        log.debug("Token invalidated for %s (config: %s)", server_name, config_id)

    def _acquire(
        self, server_name: str, config: OAuthConfig, config_id: str, force: bool = False, rejected: Optional[str] = None
    ) -> Token:
        """Everything past the cache hit: the background refresh hand-off, else the single-flight slow path.

        A ``get_token`` that gets here is timed for the ``max_wait_seconds`` gauge: only
        here, so the hit path pays nothing for it.
        """
        started = time.perf_counter()
        try:
            if not force:
                handed = self._hand_off(server_name, config, config_id)
                if handed is not None:
                    return handed
            if not config.enabled:
                raise ConfigError(
                    "OAuth is disabled for server %r" % server_name, "$.oauth_config.enabled", "set enabled to true"
                )
            key = (server_name, config_id)
            fingerprint = config.fingerprint
            rejected = masked(rejected)  # an Authorization value; frame locals may be printed
            with self._lock:
                if not force:
                    token = self._hit_or_none(server_name, config, config_id)  # fetched meanwhile
                    if token is not None:
                        return token
                now = self._clock()
                entry = self._peek(key)
                usable = entry if entry is not None and entry.fingerprint == fingerprint else None
                if (
                    rejected is not None
                    and usable is not None
                    and usable.token.authorization != rejected
                    and usable.token.is_usable(now)
                ):
                    next(usable.hits)  # the rejected token was replaced already
                    return usable.token
                if not force and not self._flights.busy(key) and (usable is None or not usable.token.is_usable(now)):
                    repeated = self._failures.repeat(key, fingerprint, now)
                    if repeated is not None:
                        self._metrics.add(server_name, "token_fail_fast")
                        raise repeated
                flight, leader = self._flights.join(key)
                if not leader and usable is not None and usable.token.is_usable(now) and not force:
                    # Someone is already refreshing ahead of expiry: the old token is still good.
                    next(usable.hits)
                    return usable.token
                self._metrics.add(server_name, "token_cache_misses")
            if leader:
                with self._flights.leading(key, flight) as done:  # in this frame: one fewer on the miss path
                    return done(self._lead(flight, key, server_name, config, config_id, usable, force))
            # Bounded: the leader's call has a deadline per attempt, so it ends within its budget.
            return flight.wait(call_budget(config) + WAIT_MARGIN, functools.partial(waited_too_long, server_name))
        finally:
            if not force:
                self._metrics.waited(server_name, time.perf_counter() - started)

    def _hand_off(self, server_name: str, config: OAuthConfig, config_id: str) -> Optional[Token]:
        """A stale but valid token, handed out while a background thread fetches its replacement; else None."""
        if self._refresher is None or not config.enabled:
            return None
        key = (server_name, config_id)
        job = functools.partial(self._refresh_in_background, key, server_name, config, config_id)
        return hand_off(self._refresher, self._peek(key), config.fingerprint, self._clock, key, job)

    def _lead(
        self,
        flight: Flight[Token],
        key: Key,
        server_name: str,
        config: OAuthConfig,
        config_id: str,
        usable: Optional[CacheEntry],
        force: bool,
    ) -> Token:
        """Fetch as the one thread responsible for ``key``; no manager lock is held here."""
        # One deadline for discovery and the token request together; waiters allow as much.
        deadline = self._clock() + call_budget(config)
        try:
            # Discovery happens here, on the slow path only (its documents are cached).
            resolved = self._resolver.resolve(config, deadline)
        except OAuthGatewayError as exc:
            return self._after_failure(flight, key, server_name, config, None if force else usable, exc)
        if usable is not None and usable.issuer != resolved.issuer:
            usable = None  # another authorization server's token is never served again
        failed = self._cache_failed(server_name)
        # A DPoP-bound token is useless without our key: it never goes to, or comes from, a
        # store shared with other processes (they hold other keys).
        shared_store = not config.dpop
        # Who the files and variables name now (re-read, slow path only): recorded with the
        # token, and a shared entry fetched for another principal is a miss.
        principal = config_principal(config)
        if shared_store and not force:
            # Another process sharing the store may have fetched already: no lock needed to see it.
            shared = load_shared(
                self._cache, self._clock, self._metrics, flight, key, config, resolved.issuer, principal, failed
            )
            if shared is not None:
                return shared
        with self._cache.try_lock(key, failed) if shared_store else contextlib.nullcontext(False) as waited:
            if waited and not force:
                # Another process may have fetched while we waited for the lock.
                shared = load_shared(
                    self._cache, self._clock, self._metrics, flight, key, config, resolved.issuer, principal, failed
                )
                if shared is not None:
                    return shared
            try:
                token = self._fetch(server_name, resolved, deadline, self._dpop_keys.key_for(config))
            except OAuthGatewayError as exc:
                if isinstance(exc, (InvalidClient, InvalidTarget)):
                    self._resolver.forget(config)  # the server may have moved: look again next time
                return self._after_failure(flight, key, server_name, config, None if force else usable, exc)
            keep(
                self._cache,
                flight,
                key,
                self._entry(key, config, token, resolved.issuer, principal),
                failed,
                local=config.dpop,
            )
        with self._lock:
            self._failures.forget(key)
        if usable is not None:
            self._metrics.add(server_name, "token_refreshes")
        log.debug("Token fetched for %s (config: %s)", server_name, config_id)
        return token

    def _entry(self, key: Key, config: OAuthConfig, token: Token, issuer: str, principal: str) -> CacheEntry:
        hits = self._metrics.hit_counter(key)
        return CacheEntry(config.fingerprint, token, hits, refresh_start(self._refresher, token), issuer, principal)

    def _cache_failed(self, server_name: str) -> Callable[[], None]:
        """What a shared cache calls when it failed: the ``cache_errors`` counter of ``server_name``."""
        return functools.partial(self._metrics.add, server_name, "cache_errors")

    # -- background refresh ------------------------------------------------------

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
            if usable is None or now < usable.refresh_at or self._flights.busy(key):
                return  # refreshed, evicted or edited meanwhile, or another caller is fetching it
            flight, _ = self._flights.join(key)
        lead = functools.partial(self._lead, flight, key, server_name, config, config_id, usable, False)
        run_refresh(functools.partial(self._flights.lead, key, flight, lead), usable.token, self._metrics, key)

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

    # -- fetching --------------------------------------------------------------

    def _fetch(
        self,
        server_name: str,
        config: OAuthConfig,
        deadline: Optional[float] = None,
        dpop_key: Optional[DPoPKey] = None,
        subject_token: Optional[str] = None,
    ) -> Token:
        started = time.perf_counter()
        try:
            if acts_for_a_subject(config) and uses_client_credentials(config.provider):
                response = fetch_for_subject(
                    self._client,
                    config,
                    server_name,
                    subject_token,
                    self._resolver.resolve,
                    self._idp_configs,
                    dpop_key=dpop_key,
                    nonces=self._token_nonces,
                    deadline=deadline,
                )
            elif uses_client_credentials(config.provider):  # the default provider, without its two frames
                client = self._client
                form = client_credentials_form(config)
                response = client.request_token(
                    client.endpoint(config),
                    form,
                    server_name,
                    dpop_key=dpop_key,
                    nonces=self._token_nonces,
                    deadline=deadline,
                )
            else:
                context = ProviderContext(
                    config,
                    server_name,
                    self._client,
                    self._clock,
                    dpop_key=dpop_key,
                    nonces=self._token_nonces,
                    deadline=deadline,
                )
                response = call_provider(get_provider(config.provider), config, context)
            warning = check_token_binding(config, response.access_token, dpop_key, self._resolver.is_cert_bound(config))
            if warning is not None:
                log.warning("Token for %s: %s", server_name, warning)
            granted = granted_scopes(config, response)
        except OAuthGatewayError:
            self._metrics.acquisition(server_name, False, (time.perf_counter() - started) * 1000.0, config.provider)
            raise
        self._metrics.acquisition(server_name, True, (time.perf_counter() - started) * 1000.0, config.provider)
        # From when the attempt that succeeded was sent, not when its answer was parsed.
        issued_at = response.sent_at if response.sent_at is not None else self._clock()
        epoch = time.time() - (self._clock() - issued_at)  # the one wall-clock read: Token.expires_at
        return build_token(response, granted, config, issued_at, epoch, self._default_lifetime, server_name)

    def _after_failure(
        self,
        flight: Flight[Token],
        key: Key,
        server_name: str,
        config: OAuthConfig,
        usable: Optional[CacheEntry],
        exc: OAuthGatewayError,
    ) -> Token:
        keep_usable = functools.partial(
            keep, self._cache, flight, key, failed=self._cache_failed(server_name), local=config.dpop
        )
        return serve_stale_or_raise(
            self._failures, self._lock, self._clock(), flight, key, config, usable, exc, keep_usable, self._metrics
        )

    def _on_retry(self, server_name: str, attempt: int, total: int, reason: str) -> None:
        self._metrics.add(server_name, "token_retries")
        if self._retry_hook is not None:
            self._retry_hook(server_name, attempt, total, reason)

    def auth(
        self,
        server_name: str,
        config: OAuthConfig,
        config_id: str = "default",
        subject_token: Optional[str] = None,
        **options: Any,
    ) -> TokenAuth:
        """Return a ``requests`` auth object that sends this server's token (see :mod:`oauth_gateway.auth`).

        Args:
            subject_token: the user to act for (see :meth:`get_token`): the auth sends that
                user's token, and its 401 recovery replaces that user's token only.

        Raises:
            ConfigError: ``OAUTH_REQUESTED_TOKEN_TYPE`` asks for a token that is not an
                access token (an ID-JAG, an ID token...): such a token is never sent as Bearer.
        """
        from .auth import TokenAuth

        check_sendable(config)
        if subject_token is not None:
            options["subject_token"] = subject_token
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
        config = self._resolver.resolve(config)  # a discovered config: the revocation endpoint too
        return _revoke(
            self._client,
            self._metrics,
            self._cache,
            self._cache_failed,
            self.invalidate,
            server_name,
            config,
            config_id,
            token,
            token_type_hint,
        )

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
        self._subjects.reset_after_fork()
        self._flights = SingleFlight(self._lock)
        self._dpop_keys.reset_after_fork()
        if self._refresher is not None:
            self._refresher.reset_after_fork()  # the parent's threads are not here; start anew on use
        self._resolver.reset_after_fork()
        self._client.reset_after_fork()
        self._metrics.reset_after_fork()
        self._cache.reset_after_fork()

    def __repr__(self) -> str:
        return "TokenManager(cache=%s, tokens=%d)" % (type(self._cache).__name__, len(list(self._cache.keys())))


_MANAGERS: weakref.WeakSet[TokenManager] = weakref.WeakSet()


def _reset_managers_after_fork() -> None:
    for manager in list(_MANAGERS):
        manager._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_managers_after_fork)
