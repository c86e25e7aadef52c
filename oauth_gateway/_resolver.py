"""The resolver: a config without ``OAUTH_TOKEN_URL`` turned into one with its endpoints, under the trust rules.

:class:`Resolver` turns a config without ``OAUTH_TOKEN_URL`` into one with its endpoints,
and holds the rules of where credentials may go: a pinned ``OAUTH_ISSUER`` or the issuer
trusted on first use (``OAUTH_TRUST_DISCOVERED_ISSUER``), endpoints on the issuer's origin,
and a client assertion's audience. Discovery itself (the documents, their checks) is
:mod:`oauth_gateway.discovery`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Protocol, Tuple

from ._helpers import redact_url
from ._http import origin_of
from ._metadata import STEP_SERVER_METADATA, AuthorizationServerMetadata, DiscoveryResult, canonical_resource_uri, show
from .client_auth import JWT_BEARER_GRANT_TYPE
from .discovery import Discoverer, Fetch, choose_auth_method
from .exceptions import DiscoveryError

if TYPE_CHECKING:  # pragma: no cover
    from .config import OAuthConfig

__all__ = (
    "MAX_CERT_BOUND",
    "Resolver",
    "STEP_TRUST",
    "TRUST_RECORD_REFRESH",
    "TRUST_RECORD_TTL",
    "TrustRecords",
    "trust_record_name",
)

log = logging.getLogger("oauth_gateway.discovery")  # the discovery logger, as before the move

STEP_TRUST = "trust"
#: Seconds a trusted-on-first-use issuer is kept in a shared cache (stores may cap it; it
#: is written again every :data:`TRUST_RECORD_REFRESH` seconds while in use).
TRUST_RECORD_TTL = 30 * 86400.0
#: Seconds after which a resolver writes a trusted issuer to the shared cache again.
TRUST_RECORD_REFRESH = 3600.0
#: Configs whose certificate-bound discovery a resolver remembers; past this it starts over.
MAX_CERT_BOUND = 1024


class TrustRecords(Protocol):
    """Where a resolver keeps trusted issuers beyond its own life: a token cache shared by processes."""

    def load_record(self, name: str) -> Optional[str]:
        """Return the value stored under ``name``, or None."""

    def store_record(self, name: str, value: str, ttl: float) -> None:
        """Store ``value`` under ``name`` for about ``ttl`` seconds."""


def trust_record_name(config: OAuthConfig) -> str:
    """The name of ``config``'s trusted issuer: a digest of its server URL and client id.

    Not the config's fingerprint: a change of timeout or scope must not open trust on
    first use again for the same credentials at the same server.
    """
    resource = config.discovery_resource or ""
    try:
        resource = canonical_resource_uri(resource)
    except ValueError:
        pass
    blob = json.dumps(["trusted-issuer", resource, config.client_id], separators=(",", ":")).encode("utf-8")
    return "trusted-issuer:" + hashlib.sha256(blob).hexdigest()


class Resolver:
    """Turns a config without ``OAUTH_TOKEN_URL`` into one with its endpoints, under the trust rules. Thread-safe.

    It holds one :class:`Discoverer` per transport (TLS identity, timeouts, retries, https
    rule), the issuers trusted on first use, and which configs get certificate-bound
    tokens. Before a resolved config is handed back, where its credentials may go is
    checked (:meth:`resolve`); nothing is sent to a token endpoint that fails a check.

    Args:
        fetch_for: returns the discovery transport (:data:`Fetch`) for a config.
        clock: monotonic seconds; deadlines are on this clock.
        records: where issuers trusted on first use are kept for other processes (a
            shared token cache); None keeps them for this resolver's life only.
    """

    def __init__(
        self,
        fetch_for: Callable[[OAuthConfig], Fetch],
        clock: Callable[[], float] = time.monotonic,
        records: Optional[TrustRecords] = None,
    ) -> None:
        self._fetch_for = fetch_for
        self._clock = clock
        self._records = records
        # Guards the three dicts; never held during a fetch or a shared-cache call.
        self._lock = threading.Lock()
        self._discoverers: Dict[Tuple[Any, ...], Discoverer] = {}
        # Trust on first use: record name -> (issuer, clock time it was last written to records).
        self._trusted: Dict[str, Tuple[str, float]] = {}
        self._cert_bound: Dict[str, bool] = {}

    def resolve(self, config: OAuthConfig, deadline: Optional[float] = None) -> OAuthConfig:
        """Return ``config`` with what discovery decides filled in; ``config`` itself when nothing is discovered.

        A config without ``OAUTH_TOKEN_URL`` is discovered from its resource URL
        (``OAUTH_RESOURCE``, pinned to ``OAUTH_ISSUER`` when set) or from ``OAUTH_ISSUER``.
        The result sets the token endpoint (its RFC 8705 mTLS alias with mTLS), the
        revocation endpoint (unless configured), the resource (the server's canonical
        URI unless ``OAUTH_RESOURCE`` says otherwise), the scope (the challenge's, else
        ``scopes_supported``, unless ``OAUTH_SCOPE`` is set), the client authentication
        method (unless ``OAUTH_TOKEN_ENDPOINT_AUTH_METHOD`` is set) and the issuer (the
        default audience of client assertions).

        Where the credentials may go: with ``OAUTH_ISSUER``, only to that issuer; with
        ``OAUTH_TRUST_DISCOVERED_ISSUER``, only to the first issuer found for the server
        (remembered here and in ``records``; logged once at WARNING); the token and
        revocation endpoints must be on the issuer's origin; with
        ``OAUTH_CLIENT_ASSERTION_AUDIENCE``, the token endpoint (or the issuer) must be it.

        Args:
            config: the server's settings.
            deadline: when (on the clock) the caller's whole fetch gives up; None for never.

        Raises:
            DiscoveryError: a discovery step or a trust rule failed; nothing was sent.
            TransportError: the network failed during discovery, or the deadline passed.
        """
        if not config.is_discovered:
            return config
        trust = config.trust_discovered_issuer and not config.issuer and config.discovery_resource is not None
        name = trust_record_name(config) if trust else ""
        remembered = self._remembered(name) if trust else None
        result = self._discoverer(config).discover(
            resource_url=config.discovery_resource,
            issuer=config.issuer or None,
            resource_metadata_url=config.resource_metadata_url,
            deadline=deadline,
            remembered_issuer=remembered,
        )
        resolved = _completed(config, result)
        _check_destinations(config, resolved, result.authorization_server)
        if trust:
            self._trust(name, resolved.issuer, config)
        if config.use_mtls and result.authorization_server.tls_client_certificate_bound_access_tokens:
            with self._lock:
                if len(self._cert_bound) >= MAX_CERT_BOUND:
                    self._cert_bound.clear()
                self._cert_bound[resolved.fingerprint] = True
        return resolved

    def is_cert_bound(self, resolved: OAuthConfig) -> bool:
        """True when the metadata of ``resolved``'s server says its tokens are certificate-bound (RFC 8705)."""
        return self._cert_bound.get(resolved.fingerprint, False)

    def forget(self, config: OAuthConfig, resource_metadata: Optional[str] = None) -> bool:
        """Drop the cached discovery of ``config``'s server, so its next fetch discovers it again.

        Called after a resource server's 401 and after a refresh the authorization server
        refused as ``invalid_client`` or ``invalid_target``: the server may have moved.
        An issuer trusted on first use is kept: a move to another one stays refused.

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

    def reset_after_fork(self) -> None:
        """Start with a fresh lock and no discoverers (their sessions are the parent's) in a forked child."""
        self._lock = threading.Lock()
        self._discoverers = {}

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
                        self._fetch_for(config), enforce_https=config.enforce_https, clock=self._clock
                    )
                    self._discoverers[transport] = discoverer
        return discoverer

    # -- trust on first use

    def _remembered(self, name: str) -> Optional[str]:
        """The issuer trusted for ``name``: this resolver's, else the shared cache's (kept here then)."""
        known = self._trusted.get(name)
        if known is not None:
            return known[0]
        if self._records is None:
            return None
        try:
            issuer = self._records.load_record(name)
        except Exception as exc:  # a shared store that is down: this process's first use decides
            log.warning("Reading the trusted issuer from the shared cache failed (%s); going on without it", exc)
            return None
        if issuer:
            with self._lock:
                self._trusted.setdefault(name, (issuer, self._clock()))
            log.info("Using the authorization server %s trusted on first use (read from the shared cache)", issuer)
        return issuer or None

    def _trust(self, name: str, issuer: str, config: OAuthConfig) -> None:
        """Remember ``issuer`` for ``name``, or refuse it when another one was trusted meanwhile."""
        now = self._clock()
        with self._lock:
            known = self._trusted.get(name)
            if known is None:
                self._trusted[name] = (issuer, now)
            elif known[0] != issuer:  # another thread trusted another issuer since we looked
                raise DiscoveryError(
                    "discovery found the authorization server %s, not %s, which was trusted on first use "
                    "(OAUTH_TRUST_DISCOVERED_ISSUER); nothing was sent to it" % (show(issuer), show(known[0])),
                    config.discovery_resource or "",
                    STEP_TRUST,
                    "if the server really moved, check the new issuer with `oauth-gateway discover URL` and "
                    "set OAUTH_ISSUER to it",
                )
            elif now - known[1] < TRUST_RECORD_REFRESH:
                return
            else:
                self._trusted[name] = (issuer, now)
        if known is None:
            log.warning(
                "Trusting the authorization server %s on first use for %s (OAUTH_TRUST_DISCOVERED_ISSUER): "
                "the credentials go to it, and a later change of authorization server is refused; "
                "pin it with OAUTH_ISSUER",
                issuer,
                redact_url(config.discovery_resource or ""),
            )
        if self._records is not None:
            try:
                self._records.store_record(name, issuer, TRUST_RECORD_TTL)
            except Exception as exc:  # the shared store is down: this process still remembers
                log.warning("Writing the trusted issuer to the shared cache failed (%s); kept in memory", exc)


def _check_destinations(config: OAuthConfig, resolved: OAuthConfig, server: AuthorizationServerMetadata) -> None:
    """Refuse a resolved config whose credentials would go somewhere the rules do not allow.

    The discovered token and revocation endpoints must be on the issuer's origin (a
    configured ``OAUTH_REVOCATION_URL`` is the operator's choice); with
    ``OAUTH_CLIENT_ASSERTION_AUDIENCE`` the token endpoint, or the issuer, must be that
    audience, so an assertion made for one server is never handed to another. Pure.

    Raises:
        DiscoveryError: a rule is broken; nothing has been sent.
    """
    where = server.metadata_url or server.issuer
    issuer_origin = origin_of(server.issuer)
    endpoints = [("token_endpoint", resolved.token_url)]
    if not config.revocation_url and resolved.revocation_url:
        endpoints.append(("revocation_endpoint", resolved.revocation_url))
    for what, url in endpoints:
        if origin_of(url) != issuer_origin:
            raise DiscoveryError(
                "the %s %s is not on the issuer's origin %s; credentials would leave the authorization server"
                % (what, show(url), show(issuer_origin)),
                where,
                STEP_SERVER_METADATA,
                "if that endpoint is right, set %s to it"
                % ("OAUTH_TOKEN_URL" if what == "token_endpoint" else "OAUTH_REVOCATION_URL"),
            )
    audience = config.client_assertion_audience
    if audience and audience not in (resolved.token_url, server.token_endpoint, server.issuer):
        raise DiscoveryError(
            "the token endpoint %s is not OAUTH_CLIENT_ASSERTION_AUDIENCE %s; the assertion is made for that "
            "server only" % (show(resolved.token_url), show(audience)),
            where,
            STEP_TRUST,
            "set OAUTH_TOKEN_URL (and OAUTH_ISSUER) to the server the audience names, or fix the audience",
        )


def _completed(config: OAuthConfig, result: DiscoveryResult) -> OAuthConfig:
    """``config`` completed with a discovery result (see :meth:`Resolver.resolve`)."""
    server = result.authorization_server
    changes: Dict[str, Any] = {
        "token_url": server.endpoint("token_endpoint", mtls=config.use_mtls) or server.token_endpoint,
        "issuer": server.issuer,
    }
    if not config.revocation_url:
        changes["revocation_url"] = server.endpoint("revocation_endpoint", mtls=config.use_mtls) or ""
    if result.resource and config.discovery_resource:
        changes["resources"] = (result.resource,)  # exactly as the resource metadata publishes it
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
                have_private_key=bool(
                    config.client_private_key_path or config.client_assertion_file or config.client_assertion_source
                ),
                have_cert=config.use_mtls,
            )
        )
    return config.replace(**changes)
