"""Where to get tokens, learned from the servers: RFC 9728, RFC 8414 and OpenID discovery.

An MCP server that wants a token answers an unauthenticated request with 401 and
``WWW-Authenticate: Bearer resource_metadata="..."``. Its Protected Resource Metadata
(RFC 9728) names the authorization servers; their metadata (RFC 8414, or OpenID Connect
discovery) names the token endpoint and the client authentication methods. This module
follows that chain and checks every link: the resource metadata must describe the server
that was asked, the authorization server metadata must carry the issuer that was asked
for, and every URL must be https (loopback http only when ``enforce_https`` is off).
A check that fails raises :class:`DiscoveryError` before anything more is sent.

The HTTP calls go through a transport callable, ``fetch(method, url, headers, body) ->
(status, headers, body_bytes)``, so the token client can hand over its own session (same
TLS settings, timeouts, retry policy and redirect refusal). Discovery never sends
credentials.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from ._helpers import redact_url
from ._http import parse_www_authenticate, resource_metadata_problem
from ._metadata import (
    STEP_AUTH_METHOD,
    STEP_PROBE,
    STEP_RESOURCE_METADATA,
    STEP_SERVER_METADATA,
    AuthorizationServerMetadata,
    DiscoveryResult,
    ProtectedResourceMetadata,
    authorization_server_metadata_urls,
    canonical_resource_uri,
    parse_document,
    protected_resource_metadata_urls,
    require_https,
    resource_metadata,
    server_metadata,
    show,
)
from ._singleflight import SingleFlight
from .client_auth import CREDENTIALS, held_credentials, preferred_auth_method
from .client_auth import SIGNING_METHODS as SIGNING_METHODS  # cli and the tests read it here
from .exceptions import DiscoveryError, TransportError

__all__ = ("DiscoveryError",)

log = logging.getLogger(__name__)

#: Seconds a metadata document is kept when its response has no ``Cache-Control: max-age``.
DEFAULT_MAX_AGE = 3600.0
#: Upper bound on how long any document is kept, whatever its ``max-age`` says.
MAX_MAX_AGE = 86400.0
#: Upper bound on cached documents (least recently used ones go first).
DEFAULT_MAX_ENTRIES = 256
#: Seconds a thread waits for another thread's lookup of the same document (each of the
#: leader's requests has its own timeout, so the lookup ends well before this).
DEFAULT_WAIT_TIMEOUT = 300.0

#: The protocol version named in the unauthenticated ``initialize`` probe.
PROBE_PROTOCOL_VERSION = "2025-06-18"
_PROBE_BODY = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": PROBE_PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "oauth-gateway-discovery", "version": "1"},
        },
    },
    separators=(",", ":"),
).encode("utf-8")
_PROBE_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
}
_JSON_HEADERS = {"Accept": "application/json"}


#: ``fetch(method, url, headers, body, deadline) -> (status, headers, body_bytes)``. It must
#: not follow redirects, must time out, must give up once ``deadline`` (the caller's clock,
#: or None for no deadline) has passed, and raises ``OSError`` (requests' exceptions are
#: ``OSError`` subclasses) or :class:`TransportError` when the network fails.
Fetch = Callable[[str, str, Mapping[str, str], Optional[bytes], Optional[float]], Tuple[int, Mapping[str, str], bytes]]


# --------------------------------------------------------------------------- Cache-Control


def parse_cache_max_age(
    cache_control: Optional[str], default: float = DEFAULT_MAX_AGE, limit: float = MAX_MAX_AGE
) -> float:
    """Return how many seconds a response may be kept, from its ``Cache-Control`` value.

    ``no-store`` and ``no-cache`` give 0; ``max-age=N`` gives N, capped at ``limit``;
    anything else (or no header) gives ``default``.
    """
    if not cache_control:
        return min(default, limit)
    max_age: Optional[float] = None
    for directive in cache_control[:1024].split(","):
        name, _, arg = directive.strip().partition("=")
        name = name.strip().lower()
        if name in ("no-store", "no-cache"):
            return 0.0
        if name == "max-age" and max_age is None:
            arg = arg.strip().strip('"')
            if arg.isdigit():
                max_age = float(arg)
    if max_age is None:
        return min(default, limit)
    return min(max_age, limit)


# --------------------------------------------------------------------------- auth method


def choose_auth_method(
    metadata: AuthorizationServerMetadata,
    have_secret: bool,
    have_private_key: bool = False,
    have_cert: bool = False,
) -> str:
    """Pick the client authentication method for an authorization server.

    Among the methods the server lists in ``token_endpoint_auth_methods_supported`` (RFC
    8414 default: ``client_secret_basic``), pick the first that the credentials allow, in
    the order of client_auth's method table (``private_key_jwt`` first).

    Args:
        metadata: the authorization server's metadata.
        have_secret: a client secret is configured.
        have_private_key: a private key for JWT client assertions is configured.
        have_cert: a client certificate is configured.

    Returns:
        The method name.

    Raises:
        DiscoveryError: the server supports none of the methods the credentials allow.
    """
    supported = metadata.token_endpoint_auth_methods_supported
    held = held_credentials(secret=have_secret, key=have_private_key, certificate=have_cert)
    method = preferred_auth_method(supported, held)
    if method is not None:
        return method
    raise DiscoveryError(
        "the server supports %s, and none of them works with %s"
        % (
            show(sorted(set(supported))),
            " and ".join(CREDENTIALS[kind].label for kind in CREDENTIALS if kind in held) or "no credentials",
        ),
        metadata.metadata_url or metadata.issuer,
        STEP_AUTH_METHOD,
        "configure credentials for one of those methods, or set OAUTH_TOKEN_ENDPOINT_AUTH_METHOD",
    )


# --------------------------------------------------------------------------- document checks


def _waited_too_long(url: str, timeout: float) -> BaseException:
    return TransportError(
        "waited %.0f s for another thread's discovery of %s, which has not finished; "
        "check the server and OAUTH_TIMEOUT" % (timeout, redact_url(url))
    )


# --------------------------------------------------------------------------- the discoverer


@dataclasses.dataclass(frozen=True)
class _ResourceEntry:
    metadata: ProtectedResourceMetadata
    metadata_url: str
    challenge_scope: Optional[str]


class Discoverer:
    """Finds and caches the metadata of protected resources and authorization servers.

    Thread-safe: one lock guards the cache and the in-flight table, and is never held
    during HTTP. Each lookup (an issuer, a server URL) is fetched by one thread at a time;
    the others wait, until their deadline, for that thread's answer or a copy of its error.
    Answers are cached for their ``Cache-Control: max-age`` (default :data:`DEFAULT_MAX_AGE`,
    at most ``max_age_limit``), errors are not cached.

    Args:
        fetch: the transport, see :data:`Fetch`.
        enforce_https: when false, plain http to loopback hosts is allowed.
        clock: monotonic seconds (``time.monotonic``); tests pass a fake.
        default_max_age: seconds to keep a document that has no ``max-age``.
        max_age_limit: longest time any document is kept.
        max_entries: bound on cached lookups.
        wait_timeout: seconds a thread waits for another thread's lookup of the same
            document before it gives up with a :class:`TransportError`.
    """

    def __init__(
        self,
        fetch: Fetch,
        *,
        enforce_https: bool = True,
        clock: Callable[[], float] = time.monotonic,
        default_max_age: float = DEFAULT_MAX_AGE,
        max_age_limit: float = MAX_MAX_AGE,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
    ) -> None:
        if max_entries < 1:
            raise ValueError("Discoverer: max_entries must be >= 1, got %r" % (max_entries,))
        self._fetch = fetch
        self.enforce_https = bool(enforce_https)
        self._clock = clock
        self._default_max_age = float(default_max_age)
        self._max_age_limit = float(max_age_limit)
        self._max_entries = int(max_entries)
        # Guards _entries and the flights (one lock: the cache check and the claim are one
        # step); never held during a fetch.
        self._lock = threading.Lock()
        self._entries: OrderedDict[Tuple[str, str], Tuple[Any, float]] = OrderedDict()
        self._flights: SingleFlight[Tuple[str, str], Any] = SingleFlight(self._lock)
        self._wait_timeout = float(wait_timeout)

    # -- public lookups

    def authorization_server(self, issuer: str, deadline: Optional[float] = None) -> AuthorizationServerMetadata:
        """Return the metadata of the authorization server ``issuer`` (cached).

        Tries RFC 8414, then OpenID discovery (path-insert, then path-append). The first
        document found must carry ``issuer`` exactly; otherwise nothing more is sent.

        Args:
            issuer: the issuer identifier.
            deadline: when (on this discoverer's clock) the caller gives up; None for never.

        Raises:
            DiscoveryError: no document, a document that is not a JSON object, an issuer
                mismatch, no token endpoint, or an URL that is not https.
            TransportError: the network failed.
        """
        metadata: AuthorizationServerMetadata = self._cached(
            ("as", issuer), lambda: self._load_server(issuer, deadline), deadline
        )
        return metadata

    def protected_resource(
        self,
        resource_url: str,
        pinned_issuer: Optional[str] = None,
        resource_metadata_url: str = "",
        deadline: Optional[float] = None,
        remembered_issuer: Optional[str] = None,
    ) -> DiscoveryResult:
        """Discover everything needed to get a token for the MCP server at ``resource_url``.

        An unauthenticated ``initialize`` POST gives the 401 challenge and its
        ``resource_metadata`` URL; without one, the RFC 9728 well-known URLs are tried.
        The metadata must name this server; its first authorization server is followed,
        or ``pinned_issuer``, which must be listed. A challenge's ``resource_metadata``
        must be on the server's origin unless it is ``resource_metadata_url``.

        Args:
            resource_url: the MCP server's URL.
            pinned_issuer: the only authorization server the caller trusts (``OAUTH_ISSUER``), or None.
            resource_metadata_url: ``OAUTH_RESOURCE_METADATA_URL``: the metadata URL to use
                when the challenge names none, and the one allowed off the server's origin.
            deadline: when (on this discoverer's clock) the caller gives up; None for never.
            remembered_issuer: the authorization server trusted on first use for this
                server (``OAUTH_TRUST_DISCOVERED_ISSUER``): it must still be listed.

        Raises:
            DiscoveryError: a step failed its check (see :class:`DiscoveryError`).
            TransportError: the network failed.
        """
        require_https(resource_url, self.enforce_https, STEP_PROBE, what="the server URL")
        try:
            resource = canonical_resource_uri(resource_url)
        except ValueError as exc:
            raise DiscoveryError(str(exc), resource_url, STEP_PROBE, "write it like https://mcp.example.com/mcp")
        entry: _ResourceEntry = self._cached(
            ("prm", resource),
            lambda: self._load_resource(resource_url, resource, resource_metadata_url, deadline),
            deadline,
        )
        servers = entry.metadata.authorization_servers
        if pinned_issuer is not None:
            if pinned_issuer not in servers:
                raise DiscoveryError(
                    "the server names the authorization servers %s, not the configured issuer %s"
                    % (show(list(servers)), show(pinned_issuer)),
                    entry.metadata_url,
                    STEP_RESOURCE_METADATA,
                    "OAUTH_ISSUER pins where the secret may go; fix OAUTH_ISSUER or ask the server's operator",
                )
            issuer = pinned_issuer
        elif remembered_issuer is not None:
            if remembered_issuer not in servers:
                raise DiscoveryError(
                    "the server names the authorization servers %s, not %s, which it named when it was first "
                    "trusted (OAUTH_TRUST_DISCOVERED_ISSUER); nothing was sent to them"
                    % (show(list(servers)), show(remembered_issuer)),
                    entry.metadata_url,
                    STEP_RESOURCE_METADATA,
                    "credentials go only to the authorization server trusted on first use; if the server "
                    "really moved, check the new issuer with `oauth-gateway discover URL` and set OAUTH_ISSUER to it",
                )
            issuer = remembered_issuer
        else:
            issuer = servers[0]
        require_https(issuer, self.enforce_https, STEP_RESOURCE_METADATA, what="authorization_servers entry")
        server = self.authorization_server(issuer, deadline)
        if entry.challenge_scope:
            scopes = tuple(entry.challenge_scope.split())
        else:
            scopes = entry.metadata.scopes_supported
        return DiscoveryResult(
            # Exactly as published (MCP: the token request's resource is the metadata's).
            resource=entry.metadata.resource,
            authorization_server=server,
            resource_metadata_url=entry.metadata_url,
            resource_metadata=entry.metadata,
            challenge_scope=entry.challenge_scope,
            scopes=scopes,
        )

    def discover(
        self,
        resource_url: Optional[str] = None,
        issuer: Optional[str] = None,
        resource_metadata_url: str = "",
        deadline: Optional[float] = None,
        remembered_issuer: Optional[str] = None,
    ) -> DiscoveryResult:
        """Discover from a server URL (pinned to ``issuer`` when given), else from ``issuer`` alone.

        ``deadline`` and ``remembered_issuer`` are as in :meth:`protected_resource`.

        Raises:
            ValueError: neither is given.
            DiscoveryError, TransportError: as :meth:`protected_resource` and
                :meth:`authorization_server`.
        """
        if resource_url:
            return self.protected_resource(
                resource_url, issuer, resource_metadata_url, deadline=deadline, remembered_issuer=remembered_issuer
            )
        if issuer:
            return DiscoveryResult(resource=None, authorization_server=self.authorization_server(issuer, deadline))
        raise ValueError("Discoverer.discover: give resource_url or issuer")

    def forget(self, url: str, metadata_url: Optional[str] = None) -> bool:
        """Drop what is cached for a server URL or an issuer, so the next lookup fetches it again.

        Args:
            url: a protected resource's URL (its metadata goes, with the cached metadata
                of the authorization servers it names), or an issuer (its metadata goes).
            metadata_url: the ``resource_metadata`` URL of a resource server's new 401
                challenge: then only the server's metadata goes, and only when it came
                from another URL.

        Returns:
            True when something was dropped.
        """
        try:
            resource_key: Optional[Tuple[str, str]] = ("prm", canonical_resource_uri(url))
        except ValueError:
            resource_key = None
        dropped = False
        with self._lock:
            hit = self._entries.get(resource_key) if resource_key is not None else None
            if hit is not None and (metadata_url is None or hit[0].metadata_url != metadata_url):
                del self._entries[resource_key]  # type: ignore[arg-type]  # not None when hit is not
                dropped = True
                if metadata_url is None:
                    for issuer in hit[0].metadata.authorization_servers:
                        dropped = self._entries.pop(("as", issuer), None) is not None or dropped
            if metadata_url is None:
                dropped = self._entries.pop(("as", url), None) is not None or dropped
        if dropped:
            log.debug("discovery: forgot the metadata of %s", redact_url(url))
        return dropped

    def clear(self) -> None:
        """Forget every cached document (in-flight lookups finish as they are)."""
        with self._lock:
            self._entries.clear()

    @property
    def cached(self) -> int:
        """How many lookups are cached now (expired ones included until they are asked for)."""
        with self._lock:
            return len(self._entries)

    def __repr__(self) -> str:
        return "Discoverer(enforce_https=%r, cached=%d)" % (self.enforce_https, self.cached)

    # -- cache and single flight

    def _cached(self, key: Tuple[str, str], load: Callable[[], Tuple[Any, float]], deadline: Optional[float]) -> Any:
        with self._lock:  # the cache check and the claim in one step
            hit = self._entries.get(key)
            if hit is not None:
                if self._clock() < hit[1]:
                    self._entries.move_to_end(key)
                    return hit[0]
                del self._entries[key]
            flight, leader = self._flights.join(key)
        if not leader:
            # At most wait_timeout, and never past the caller's deadline.
            wait = self._wait_timeout if deadline is None else min(self._wait_timeout, deadline - self._clock())
            return flight.wait(max(0.0, wait), functools.partial(_waited_too_long, key[1]))
        return self._flights.lead(key, flight, functools.partial(self._load_and_keep, key, load))

    def _load_and_keep(self, key: Tuple[str, str], load: Callable[[], Tuple[Any, float]]) -> Any:
        value, max_age = load()
        if max_age > 0:
            with self._lock:
                self._entries[key] = (value, self._clock() + max_age)
                self._entries.move_to_end(key)
                while len(self._entries) > self._max_entries:
                    self._entries.popitem(last=False)
        return value

    # -- loaders (run by the leader, without the lock)

    def _call(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: Optional[bytes],
        step: str,
        deadline: Optional[float],
    ) -> Tuple[int, Dict[str, str], bytes]:
        log.debug("discovery: %s %s (%s)", method, redact_url(url), step)
        try:
            status, answer_headers, content = self._fetch(method, url, dict(headers), body, deadline)
        except TransportError:
            raise
        except OSError as exc:
            raise TransportError(
                "%s %s: the request failed (%s); check the URL and the network"
                % (step, redact_url(url), type(exc).__name__)
            ) from exc
        lowered = {str(k).lower(): str(v) for k, v in dict(answer_headers).items()}
        return int(status), lowered, bytes(content or b"")

    def _max_age(self, headers: Mapping[str, str]) -> float:
        return parse_cache_max_age(headers.get("cache-control"), self._default_max_age, self._max_age_limit)

    def _load_server(self, issuer: str, deadline: Optional[float]) -> Tuple[AuthorizationServerMetadata, float]:
        step = STEP_SERVER_METADATA
        require_https(issuer, self.enforce_https, step, what="the issuer")
        parts = urlsplit(issuer)
        if parts.query or parts.fragment or "#" in issuer:
            raise DiscoveryError(
                "an issuer has no query or fragment (RFC 8414), got %s" % show(issuer),
                issuer,
                step,
                "write it like https://auth.example.com/tenant",
            )
        urls = authorization_server_metadata_urls(issuer)
        found = self._first_document(urls, step, deadline)
        if found is not None:
            document, url, headers = found
            return server_metadata(document, issuer, url, self.enforce_https), self._max_age(headers)
        raise DiscoveryError(
            "no metadata document for this issuer (tried %s)" % ", ".join(redact_url(u) for u in urls),
            issuer,
            step,
            "check the issuer URL, or set OAUTH_TOKEN_URL",
        )

    def _first_document(
        self, urls: List[str], step: str, deadline: Optional[float]
    ) -> Optional[Tuple[Dict[str, Any], str, Dict[str, str]]]:
        """GET the well-known ``urls`` in order; return the first JSON object found, its URL and headers.

        A 4xx answer moves on to the next URL; any other answer that is not 200 stops the
        search (a 5xx is retryable). None when every URL answered 4xx.
        """
        for url in urls:
            status, headers, body = self._call("GET", url, _JSON_HEADERS, None, step, deadline)
            if status == 200:
                return parse_document(body, url, step), url, headers
            if not 400 <= status < 500:
                raise DiscoveryError(
                    "the server answered HTTP %d" % status,
                    url,
                    step,
                    "try again later" if status >= 500 else "the metadata URL must answer 200 without redirects",
                    retryable=status >= 500,
                )
        return None

    def _load_resource(
        self, resource_url: str, resource: str, configured: str, deadline: Optional[float]
    ) -> Tuple[_ResourceEntry, float]:
        status, headers, _ = self._call("POST", resource_url, _PROBE_HEADERS, _PROBE_BODY, STEP_PROBE, deadline)
        metadata_url: Optional[str] = None
        challenge_scope: Optional[str] = None
        if status == 401:
            for challenge in parse_www_authenticate(headers.get("www-authenticate", "")):
                if challenge.scheme.lower() in ("bearer", "dpop"):
                    metadata_url = metadata_url or challenge.resource_metadata
                    challenge_scope = challenge_scope or challenge.scope
        step = STEP_RESOURCE_METADATA
        metadata_url = metadata_url or configured or None
        if metadata_url is not None:
            require_https(metadata_url, self.enforce_https, step, what="resource_metadata")
            # Before any request to it: a challenge must not make us fetch another origin's URL.
            refused = resource_metadata_problem(resource_url, metadata_url, configured)
            if refused is not None:
                raise DiscoveryError(refused.problem, resource_url, step, refused.hint)
            status, headers, body = self._call("GET", metadata_url, _JSON_HEADERS, None, step, deadline)
            if status != 200:
                raise DiscoveryError(
                    "the challenge's resource_metadata URL answered HTTP %d" % status,
                    metadata_url,
                    step,
                    "the server's 401 challenge points to a missing document; ask its operator",
                    retryable=status >= 500,
                )
            document = parse_document(body, metadata_url, step)
            metadata = resource_metadata(document, resource, metadata_url)
            return _ResourceEntry(metadata, metadata_url, challenge_scope), self._max_age(headers)
        urls = protected_resource_metadata_urls(resource_url)
        found = self._first_document(urls, step, deadline)
        if found is not None:
            document, url, headers = found
            metadata = resource_metadata(document, resource, url)
            return _ResourceEntry(metadata, url, challenge_scope), self._max_age(headers)
        raise DiscoveryError(
            "no 401 challenge with resource_metadata and no well-known document (tried %s)"
            % ", ".join(redact_url(u) for u in urls),
            resource_url,
            STEP_PROBE,
            "check the server URL, or set OAUTH_ISSUER or OAUTH_TOKEN_URL",
        )
