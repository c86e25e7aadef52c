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

:class:`Resolver` turns a config without ``OAUTH_TOKEN_URL`` into one with its endpoints,
and holds the rules of where credentials may go: a pinned ``OAUTH_ISSUER`` or the issuer
trusted on first use (``OAUTH_TRUST_DISCOVERED_ISSUER``), endpoints on the issuer's origin,
and a client assertion's audience.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import threading
import time
import types
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Protocol, Tuple
from urllib.parse import urlsplit, urlunsplit

from ._helpers import loads_bounded, redact_url
from ._http import origin_of, parse_www_authenticate, resource_metadata_problem, transport_problem
from ._singleflight import SingleFlight
from .client_auth import CREDENTIALS, JWT_BEARER_GRANT_TYPE, SIGNING_METHODS, held_credentials, preferred_auth_method
from .exceptions import DiscoveryError, TransportError

if TYPE_CHECKING:  # pragma: no cover
    from .config import OAuthConfig

__all__ = (
    "AuthorizationServerMetadata",
    "DEFAULT_MAX_AGE",
    "DiscoveryError",
    "DiscoveryResult",
    "Discoverer",
    "Fetch",
    "ProtectedResourceMetadata",
    "Resolver",
    "SIGNING_METHODS",
    "authorization_server_metadata_urls",
    "canonical_resource_uri",
    "choose_auth_method",
    "parse_cache_max_age",
    "protected_resource_metadata_urls",
)

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
#: Largest metadata document accepted, in bytes.
MAX_DOCUMENT_BYTES = 1024 * 1024

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

# Steps named in error messages.
STEP_PROBE = "resource challenge"
STEP_RESOURCE_METADATA = "protected resource metadata"
STEP_SERVER_METADATA = "authorization server metadata"
STEP_AUTH_METHOD = "client authentication method"

#: ``fetch(method, url, headers, body, deadline) -> (status, headers, body_bytes)``. It must
#: not follow redirects, must time out, must give up once ``deadline`` (the caller's clock,
#: or None for no deadline) has passed, and raises ``OSError`` (requests' exceptions are
#: ``OSError`` subclasses) or :class:`TransportError` when the network fails.
Fetch = Callable[[str, str, Mapping[str, str], Optional[bytes], Optional[float]], Tuple[int, Mapping[str, str], bytes]]


# --------------------------------------------------------------------------- metadata types


def _frozen_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(value))


@dataclasses.dataclass(frozen=True)
class AuthorizationServerMetadata:
    """An authorization server's metadata (RFC 8414 or OpenID discovery). Immutable.

    Attributes:
        issuer: the issuer identifier, equal to the one that was asked for.
        token_endpoint: the token endpoint URL.
        revocation_endpoint: the RFC 7009 endpoint, or None.
        token_endpoint_auth_methods_supported: as published; ``("client_secret_basic",)``
            when the document omits it (the RFC 8414 default).
        token_endpoint_auth_signing_alg_values_supported: JWS algorithms for JWT client auth.
        scopes_supported: as published, or empty.
        mtls_endpoint_aliases: RFC 8705 endpoints to use with a client certificate.
        tls_client_certificate_bound_access_tokens: RFC 8705 certificate-bound tokens.
        dpop_signing_alg_values_supported: RFC 9449 algorithms, empty when DPoP is not offered.
        metadata_url: the URL the document came from.
        raw: the whole document, read-only.
    """

    issuer: str
    token_endpoint: str
    revocation_endpoint: Optional[str] = None
    token_endpoint_auth_methods_supported: Tuple[str, ...] = ("client_secret_basic",)
    token_endpoint_auth_signing_alg_values_supported: Tuple[str, ...] = ()
    scopes_supported: Tuple[str, ...] = ()
    mtls_endpoint_aliases: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: _frozen_mapping({}), compare=False, hash=False
    )
    tls_client_certificate_bound_access_tokens: bool = False
    dpop_signing_alg_values_supported: Tuple[str, ...] = ()
    metadata_url: str = ""
    raw: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: _frozen_mapping({}), compare=False, hash=False, repr=False
    )

    def endpoint(self, name: str, mtls: bool = False) -> Optional[str]:
        """Return an endpoint URL, its RFC 8705 mTLS alias first when ``mtls`` is true.

        Args:
            name: ``"token_endpoint"`` or ``"revocation_endpoint"``.
            mtls: the request carries a client certificate.
        """
        if mtls and name in self.mtls_endpoint_aliases:
            return self.mtls_endpoint_aliases[name]
        return getattr(self, name, None) or self.raw.get(name)


@dataclasses.dataclass(frozen=True)
class ProtectedResourceMetadata:
    """A protected resource's metadata (RFC 9728). Immutable.

    Attributes:
        resource: the resource identifier as published: the server's URL (canonically), or
            its origin when the document came from the root well-known URL.
        authorization_servers: issuer identifiers, in the server's order.
        scopes_supported: as published, or empty.
        metadata_url: the URL the document came from.
        raw: the whole document, read-only.
    """

    resource: str
    authorization_servers: Tuple[str, ...]
    scopes_supported: Tuple[str, ...] = ()
    metadata_url: str = ""
    raw: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: _frozen_mapping({}), compare=False, hash=False, repr=False
    )


@dataclasses.dataclass(frozen=True)
class DiscoveryResult:
    """What discovery decided for one server. Immutable.

    Attributes:
        resource: the RFC 8707 ``resource`` to send: the protected resource metadata's
            ``resource`` exactly as published (it names this server, canonically), or
            None when discovery started from an issuer alone.
        resource_metadata_url: where the protected resource metadata came from, or None.
        resource_metadata: that metadata, or None.
        authorization_server: the authorization server's metadata.
        challenge_scope: the 401 challenge's ``scope``, or None.
        scopes: the scopes to request: the challenge's, else the resource metadata's
            ``scopes_supported``; empty when neither names any.
    """

    resource: Optional[str]
    authorization_server: AuthorizationServerMetadata
    resource_metadata_url: Optional[str] = None
    resource_metadata: Optional[ProtectedResourceMetadata] = None
    challenge_scope: Optional[str] = None
    scopes: Tuple[str, ...] = ()

    @property
    def issuer(self) -> str:
        """The authorization server's issuer identifier."""
        return self.authorization_server.issuer

    @property
    def token_endpoint(self) -> str:
        """The token endpoint URL."""
        return self.authorization_server.token_endpoint

    @property
    def revocation_endpoint(self) -> Optional[str]:
        """The revocation endpoint URL, or None."""
        return self.authorization_server.revocation_endpoint

    @property
    def scope(self) -> str:
        """:attr:`scopes` as one space-separated ``scope`` value ("" for none)."""
        return " ".join(self.scopes)


# --------------------------------------------------------------------------- URLs


def _require_https(url: str, enforce_https: bool = True, step: str = "", what: str = "URL") -> None:
    """Refuse ``url`` unless it is https (or http on a loopback host with ``enforce_https`` off).

    Args:
        url: the URL about to be used.
        enforce_https: when false, ``http://`` to a loopback host is allowed.
        step: the discovery step, for the message.
        what: what the URL is (``"token_endpoint"``...), for the message.

    Raises:
        DiscoveryError: the URL is not absolute http(s), or is plain http where refused.
    """
    problem = transport_problem(url, enforce_https=enforce_https)
    if problem is not None:
        hint = problem.hint
        if problem.malformed:
            hint = "the server published a broken URL; set OAUTH_TOKEN_URL to skip discovery"
        raise DiscoveryError("%s %s" % (what, problem.problem), url, step, hint)


def canonical_resource_uri(url: str) -> str:
    """Return the canonical form of a server URL (MCP authorization, RFC 8707).

    The scheme and host are lowercased, a default port, the fragment and a trailing
    slash are dropped; the path and query are kept as they are.

    Raises:
        ValueError: ``url`` is not an absolute http(s) URL.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in ("http", "https") or not host:
        raise ValueError("not an absolute http(s) URL: %r" % redact_url(url))
    port = parts.port
    netloc = "[%s]" % host if ":" in host else host
    if port is not None and (scheme, port) not in (("https", 443), ("http", 80)):
        netloc = "%s:%d" % (netloc, port)
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at:
        netloc = userinfo + "@" + netloc
    path = parts.path
    while path.endswith("/"):
        path = path[:-1]
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def _origin_and_path(url: str) -> Tuple[str, str]:
    parts = urlsplit(url)
    path = parts.path
    while path.endswith("/"):
        path = path[:-1]
    return "%s://%s" % (parts.scheme, parts.netloc), path


def authorization_server_metadata_urls(issuer: str) -> List[str]:
    """Return the metadata URLs to try for ``issuer``, in the MCP specification's order.

    RFC 8414 path-insert, then OpenID Connect path-insert, then OpenID Connect
    path-append; for an issuer without a path, RFC 8414 then OpenID Connect at the root.
    """
    origin, path = _origin_and_path(issuer)
    if not path:
        return [
            origin + "/.well-known/oauth-authorization-server",
            origin + "/.well-known/openid-configuration",
        ]
    return [
        origin + "/.well-known/oauth-authorization-server" + path,
        origin + "/.well-known/openid-configuration" + path,
        origin + path + "/.well-known/openid-configuration",
    ]


def protected_resource_metadata_urls(resource_url: str) -> List[str]:
    """Return the RFC 9728 well-known URLs to try for a server: with its path, then at the root."""
    origin, path = _origin_and_path(resource_url)
    root = origin + "/.well-known/oauth-protected-resource"
    return [root + path, root] if path else [root]


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
            _show(sorted(set(supported))),
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


def _show(value: Any, limit: int = 120) -> str:
    """repr of a value from a server, shortened for a message (and redacted when a URL)."""
    if isinstance(value, str):
        value = redact_url(value)
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_document(body: bytes, url: str, step: str) -> Dict[str, Any]:
    if len(body) > MAX_DOCUMENT_BYTES:
        raise DiscoveryError(
            "the document is larger than %d bytes" % MAX_DOCUMENT_BYTES,
            url,
            step,
            "the server must serve a small JSON metadata document",
        )
    try:
        document = loads_bounded(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise DiscoveryError(
            "the answer is not JSON", url, step, "the server must serve a JSON metadata document"
        ) from None
    if not isinstance(document, dict):
        raise DiscoveryError(
            "the answer is JSON but not an object (got %s)" % type(document).__name__,
            url,
            step,
            "the server must serve a JSON object",
        )
    return document


def _strings(document: Mapping[str, Any], name: str, url: str, step: str) -> Tuple[str, ...]:
    value = document.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise DiscoveryError(
            "%r must be a list of strings, got %s" % (name, _show(value)),
            url,
            step,
            "the server's metadata is malformed; ask its operator, or configure the value yourself",
        )
    return tuple(value)


def _optional_string(document: Mapping[str, Any], name: str, url: str, step: str) -> Optional[str]:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise DiscoveryError(
            "%r must be a non-empty string, got %s" % (name, _show(value)),
            url,
            step,
            "the server's metadata is malformed; ask its operator, or configure the value yourself",
        )
    return value


def _server_metadata(
    document: Mapping[str, Any], issuer: str, url: str, enforce_https: bool
) -> AuthorizationServerMetadata:
    step = STEP_SERVER_METADATA
    published = document.get("issuer")
    if published != issuer:
        raise DiscoveryError(
            "'issuer' is %s, but %s was asked for" % (_show(published), _show(issuer)),
            url,
            step,
            "RFC 8414 requires them to be identical; check the issuer URL (a trailing slash counts)",
        )
    token_endpoint = _optional_string(document, "token_endpoint", url, step)
    if token_endpoint is None:
        raise DiscoveryError(
            "the metadata has no 'token_endpoint'",
            url,
            step,
            "the server cannot issue client-credentials tokens; set OAUTH_TOKEN_URL if it has a token endpoint",
        )
    revocation = _optional_string(document, "revocation_endpoint", url, step)
    aliases_raw = document.get("mtls_endpoint_aliases") or {}
    if not isinstance(aliases_raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in aliases_raw.items()
    ):
        raise DiscoveryError(
            "'mtls_endpoint_aliases' must be an object of URLs, got %s" % _show(aliases_raw),
            url,
            step,
            "the server's metadata is malformed; ask its operator",
        )
    for name, endpoint in [("token_endpoint", token_endpoint), ("revocation_endpoint", revocation)] + sorted(
        ("mtls_endpoint_aliases.%s" % k, v) for k, v in aliases_raw.items()
    ):
        if endpoint is not None:
            _require_https(endpoint, enforce_https, step, what=name)
    methods = _strings(document, "token_endpoint_auth_methods_supported", url, step)
    return AuthorizationServerMetadata(
        issuer=issuer,
        token_endpoint=token_endpoint,
        revocation_endpoint=revocation,
        token_endpoint_auth_methods_supported=methods or ("client_secret_basic",),
        token_endpoint_auth_signing_alg_values_supported=_strings(
            document, "token_endpoint_auth_signing_alg_values_supported", url, step
        ),
        scopes_supported=_strings(document, "scopes_supported", url, step),
        mtls_endpoint_aliases=_frozen_mapping(aliases_raw),
        tls_client_certificate_bound_access_tokens=document.get("tls_client_certificate_bound_access_tokens") is True,
        dpop_signing_alg_values_supported=_strings(document, "dpop_signing_alg_values_supported", url, step),
        metadata_url=url,
        raw=_frozen_mapping(document),
    )


def _resource_metadata(document: Mapping[str, Any], resource: str, url: str) -> ProtectedResourceMetadata:
    """Check and wrap a protected resource metadata document fetched from ``url``.

    RFC 9728 section 3.3: ``resource`` must be the identifier the metadata URL was built
    from: the server's URL, or its origin when the document sits at the origin's root
    well-known URL (the fallback that protected_resource_metadata_urls tries last).
    """
    step = STEP_RESOURCE_METADATA
    published = document.get("resource")
    origin = _origin_and_path(resource)[0]
    allowed = {resource, origin} if url == origin + "/.well-known/oauth-protected-resource" else {resource}
    try:
        matches = isinstance(published, str) and canonical_resource_uri(published) in allowed
    except ValueError:
        matches = False
    if not matches:
        raise DiscoveryError(
            "'resource' is %s, but the server is %s" % (_show(published), _show(resource)),
            url,
            step,
            "RFC 9728 requires the metadata to name the server it describes; check the server URL, "
            "or set OAUTH_TOKEN_URL to skip discovery",
        )
    servers = _strings(document, "authorization_servers", url, step)
    if not servers:
        raise DiscoveryError(
            "the metadata names no 'authorization_servers'",
            url,
            step,
            "set OAUTH_ISSUER or OAUTH_TOKEN_URL",
        )
    return ProtectedResourceMetadata(
        resource=published,  # type: ignore[arg-type]  # checked above
        authorization_servers=servers,
        scopes_supported=_strings(document, "scopes_supported", url, step),
        metadata_url=url,
        raw=_frozen_mapping(document),
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
        _require_https(resource_url, self.enforce_https, STEP_PROBE, what="the server URL")
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
                    % (_show(list(servers)), _show(pinned_issuer)),
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
                    % (_show(list(servers)), _show(remembered_issuer)),
                    entry.metadata_url,
                    STEP_RESOURCE_METADATA,
                    "credentials go only to the authorization server trusted on first use; if the server "
                    "really moved, check the new issuer with `oauth-gateway discover URL` and set OAUTH_ISSUER to it",
                )
            issuer = remembered_issuer
        else:
            issuer = servers[0]
        _require_https(issuer, self.enforce_https, STEP_RESOURCE_METADATA, what="authorization_servers entry")
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
        _require_https(issuer, self.enforce_https, step, what="the issuer")
        parts = urlsplit(issuer)
        if parts.query or parts.fragment or "#" in issuer:
            raise DiscoveryError(
                "an issuer has no query or fragment (RFC 8414), got %s" % _show(issuer),
                issuer,
                step,
                "write it like https://auth.example.com/tenant",
            )
        urls = authorization_server_metadata_urls(issuer)
        found = self._first_document(urls, step, deadline)
        if found is not None:
            document, url, headers = found
            return _server_metadata(document, issuer, url, self.enforce_https), self._max_age(headers)
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
                return _parse_document(body, url, step), url, headers
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
            _require_https(metadata_url, self.enforce_https, step, what="resource_metadata")
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
            document = _parse_document(body, metadata_url, step)
            metadata = _resource_metadata(document, resource, metadata_url)
            return _ResourceEntry(metadata, metadata_url, challenge_scope), self._max_age(headers)
        urls = protected_resource_metadata_urls(resource_url)
        found = self._first_document(urls, step, deadline)
        if found is not None:
            document, url, headers = found
            metadata = _resource_metadata(document, resource, url)
            return _ResourceEntry(metadata, url, challenge_scope), self._max_age(headers)
        raise DiscoveryError(
            "no 401 challenge with resource_metadata and no well-known document (tried %s)"
            % ", ".join(redact_url(u) for u in urls),
            resource_url,
            STEP_PROBE,
            "check the server URL, or set OAUTH_ISSUER or OAUTH_TOKEN_URL",
        )


# --------------------------------------------------------------------------- the resolver

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
                    "(OAUTH_TRUST_DISCOVERED_ISSUER); nothing was sent to it" % (_show(issuer), _show(known[0])),
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
                % (what, _show(url), _show(issuer_origin)),
                where,
                STEP_SERVER_METADATA,
                "if that endpoint is right, set %s to it"
                % ("OAUTH_TOKEN_URL" if what == "token_endpoint" else "OAUTH_REVOCATION_URL"),
            )
    audience = config.client_assertion_audience
    if audience and audience not in (resolved.token_url, server.token_endpoint, server.issuer):
        raise DiscoveryError(
            "the token endpoint %s is not OAUTH_CLIENT_ASSERTION_AUDIENCE %s; the assertion is made for that "
            "server only" % (_show(resolved.token_url), _show(audience)),
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
