"""The metadata documents of discovery: where they are, what they hold, and how they are checked.

The RFC 9728 protected resource metadata and the RFC 8414 / OpenID authorization server
metadata as immutable types, the well-known URLs they are served at, the https rule for
the URLs they name, and the parsers that turn a fetched document into a type or a
:class:`~oauth_gateway.exceptions.DiscoveryError`. Fetching, caching and the probe are
:mod:`oauth_gateway.discovery`.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

from ._helpers import loads_bounded, redact_url
from ._http import transport_problem
from .exceptions import DiscoveryError

__all__ = (
    "MAX_DOCUMENT_BYTES",
    "STEP_AUTH_METHOD",
    "STEP_PROBE",
    "STEP_RESOURCE_METADATA",
    "STEP_SERVER_METADATA",
    "AuthorizationServerMetadata",
    "DiscoveryResult",
    "ProtectedResourceMetadata",
    "authorization_server_metadata_urls",
    "canonical_resource_uri",
    "parse_document",
    "protected_resource_metadata_urls",
    "require_https",
    "resource_metadata",
    "server_metadata",
    "show",
)

#: Largest metadata document accepted, in bytes.
MAX_DOCUMENT_BYTES = 1024 * 1024

# Steps named in error messages.
STEP_PROBE = "resource challenge"
STEP_RESOURCE_METADATA = "protected resource metadata"
STEP_SERVER_METADATA = "authorization server metadata"
STEP_AUTH_METHOD = "client authentication method"


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


def require_https(url: str, enforce_https: bool = True, step: str = "", what: str = "URL") -> None:
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


# --------------------------------------------------------------------------- document checks


def show(value: Any, limit: int = 120) -> str:
    """repr of a value from a server, shortened for a message (and redacted when a URL)."""
    if isinstance(value, str):
        value = redact_url(value)
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_document(body: bytes, url: str, step: str) -> Dict[str, Any]:
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
            "%r must be a list of strings, got %s" % (name, show(value)),
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
            "%r must be a non-empty string, got %s" % (name, show(value)),
            url,
            step,
            "the server's metadata is malformed; ask its operator, or configure the value yourself",
        )
    return value


def server_metadata(
    document: Mapping[str, Any], issuer: str, url: str, enforce_https: bool
) -> AuthorizationServerMetadata:
    step = STEP_SERVER_METADATA
    published = document.get("issuer")
    if published != issuer:
        raise DiscoveryError(
            "'issuer' is %s, but %s was asked for" % (show(published), show(issuer)),
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
            "'mtls_endpoint_aliases' must be an object of URLs, got %s" % show(aliases_raw),
            url,
            step,
            "the server's metadata is malformed; ask its operator",
        )
    for name, endpoint in [("token_endpoint", token_endpoint), ("revocation_endpoint", revocation)] + sorted(
        ("mtls_endpoint_aliases.%s" % k, v) for k, v in aliases_raw.items()
    ):
        if endpoint is not None:
            require_https(endpoint, enforce_https, step, what=name)
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


def resource_metadata(document: Mapping[str, Any], resource: str, url: str) -> ProtectedResourceMetadata:
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
            "'resource' is %s, but the server is %s" % (show(published), show(resource)),
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
