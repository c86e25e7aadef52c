"""Every exception the library raises, rooted at :class:`OAuthGatewayError`.

The branches follow what the caller does next: fix the file (:class:`ConfigError`),
accept the server's answer (:class:`TokenRequestError` and its RFC 6749 subclasses),
or try again later (:class:`TransportError`). Every error pickles and none carries
a secret or a token in its message or attributes. Imports only :mod:`._redact`.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Type

from ._redact import redact_url

__all__ = (
    "ConfigError",
    "DiscoveryError",
    "InsecureTransportError",
    "InvalidClient",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidScope",
    "InvalidTarget",
    "OAuthGatewayError",
    "RevocationNotConfigured",
    "TokenBindingError",
    "TokenRequestError",
    "TransportError",
    "UnauthorizedClient",
    "UnsupportedGrantType",
)


class OAuthGatewayError(Exception):
    """Root of every error raised by oauth_gateway.

    Attributes:
        retryable: True when the same call may succeed later without a change.
    """

    retryable = False

    def __reduce__(self) -> Tuple[Any, Tuple[Any, ...]]:  # pragma: no cover - exercised through pickle in tests
        return (_rebuild, (type(self), self.args, self.__dict__.copy()))


def _rebuild(cls: Type[BaseException], args: Tuple[Any, ...], state: Dict[str, Any]) -> BaseException:
    obj = cls.__new__(cls)
    Exception.__init__(obj, *args)
    obj.__dict__.update(state)
    return obj


class ConfigError(OAuthGatewayError, ValueError):
    """A configuration value is missing, malformed or unsafe: fix the file.

    Attributes:
        json_path: where the problem is, like ``$.oauth_config.OAUTH_TOKEN_URL``.
        hint: how to fix it, or None.
    """

    def __init__(self, message: str, json_path: str = "$", hint: Optional[str] = None):
        text = "%s: %s" % (json_path, message) if json_path else message
        if hint:
            text = "%s; %s" % (text, hint)
        super().__init__(text)
        self.json_path = json_path
        self.hint = hint
        self.problem = message


class TokenRequestError(OAuthGatewayError):
    """The authorization server refused or garbled a token or revocation request.

    Attributes:
        error: the RFC 6749 ``error`` code, or None when the server sent none.
        error_description: the server's ``error_description``, shortened, or None.
        error_uri: the server's ``error_uri``, or None.
        status_code: the HTTP status, or None when no response was parsed.
        correlation_id: the id sent as ``X-Correlation-ID`` with the request.
        server_name: the MCP server name the token was for, or None.
    """

    def __init__(
        self,
        message: str,
        error: Optional[str] = None,
        error_description: Optional[str] = None,
        error_uri: Optional[str] = None,
        status_code: Optional[int] = None,
        correlation_id: Optional[str] = None,
        server_name: Optional[str] = None,
        retryable: Optional[bool] = None,
    ):
        super().__init__(message)
        self.error = error
        self.error_description = error_description
        self.error_uri = error_uri
        self.status_code = status_code
        self.correlation_id = correlation_id
        self.server_name = server_name
        if retryable is not None:
            self.retryable = retryable
        elif status_code is not None:
            self.retryable = status_code == 429 or status_code >= 500


class InvalidRequest(TokenRequestError):
    """``invalid_request``: the request is malformed (RFC 6749 section 5.2)."""


class InvalidClient(TokenRequestError):
    """``invalid_client``: client authentication failed; check the id and secret."""


class InvalidGrant(TokenRequestError):
    """``invalid_grant``: the grant is invalid or expired."""


class UnauthorizedClient(TokenRequestError):
    """``unauthorized_client``: this client may not use the client_credentials grant."""


class UnsupportedGrantType(TokenRequestError):
    """``unsupported_grant_type``: the server does not offer client_credentials."""


class InvalidScope(TokenRequestError):
    """``invalid_scope``, or a token that lacks a requested scope."""


class InvalidTarget(TokenRequestError):
    """``invalid_target``: the server refused a resource indicator (RFC 8707)."""


class _UnsupportedTokenType(TokenRequestError):
    """``unsupported_token_type``: the server cannot revoke this token type (RFC 7009)."""


class RevocationNotConfigured(OAuthGatewayError):
    """``revoke`` was called for a config without ``OAUTH_REVOCATION_URL``."""


class TransportError(OAuthGatewayError):
    """The network failed before the server answered: connection, TLS or timeout.

    Raised ``from`` the underlying requests exception.

    Attributes:
        correlation_id: the id sent as ``X-Correlation-ID``, or None.
        server_name: the MCP server name the token was for, or None.
    """

    retryable = True

    def __init__(
        self,
        message: str,
        correlation_id: Optional[str] = None,
        server_name: Optional[str] = None,
        retryable: Optional[bool] = None,
    ):
        super().__init__(message)
        self.correlation_id = correlation_id
        self.server_name = server_name
        if retryable is not None:
            self.retryable = retryable


class DiscoveryError(OAuthGatewayError):
    """Discovery found no usable token endpoint, or a server's answer failed a check.

    The message names the step, the (redacted) URL, the problem and the fix.

    Attributes:
        url: the URL involved, redacted with the URL redactor (no credentials, query or fragment).
        step: which part of discovery failed, e.g. ``"protected resource metadata"``.
        hint: how to fix it, or None.
    """

    def __init__(
        self,
        problem: str,
        url: str = "",
        step: str = "",
        hint: Optional[str] = None,
        retryable: bool = False,
    ):
        shown = redact_url(url) if url else ""
        text = problem
        if shown:
            text = "%s %s: %s" % (step or "discovery", shown, problem)
        elif step:
            text = "%s: %s" % (step, problem)
        if hint:
            text = "%s; %s" % (text, hint)
        super().__init__(text)
        self.url = shown
        self.step = step
        self.hint = hint
        self.problem = problem
        self.retryable = retryable


class InsecureTransportError(OAuthGatewayError, ValueError):
    """A bearer token would have been sent over plain http: nothing was sent.

    Raised by the ``requests`` auth object for a URL that is not https (loopback http is
    allowed when ``OAUTH_ENFORCE_HTTPS`` is false, or with ``allow_insecure=True``).
    """


class TokenBindingError(OAuthGatewayError):
    """An access token is not bound to our DPoP key or client certificate.

    Raised before the token is used (and before it is cached): the resource server
    would refuse it, or the authorization server was misconfigured and handed out a
    token someone else may use. Messages and attributes hold thumbprints (hashes of
    public keys), never the token.

    Attributes:
        confirmation: What was checked: ``"jkt"`` (DPoP), ``"x5t#S256"`` (mTLS) or
            ``"token_type"``.
        expected: Our thumbprint (or ``"DPoP"``), or None when we have none.
        actual: What the token or response carries, or None when it carries nothing.
    """

    def __init__(
        self,
        message: str,
        confirmation: str,
        expected: Optional[str] = None,
        actual: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.confirmation = confirmation
        self.expected = expected
        self.actual = actual


#: RFC 6749 / 7009 / 8707 ``error`` codes and the class raised for each.
#: A code missing here raises plain :class:`TokenRequestError`.
_ERROR_CLASSES: Dict[str, Type[TokenRequestError]] = {
    "invalid_request": InvalidRequest,
    "invalid_client": InvalidClient,
    "invalid_grant": InvalidGrant,
    "unauthorized_client": UnauthorizedClient,
    "unsupported_grant_type": UnsupportedGrantType,
    "invalid_scope": InvalidScope,
    "invalid_target": InvalidTarget,
    "unsupported_token_type": _UnsupportedTokenType,
}


def error_class_for(code: Any) -> Type[TokenRequestError]:
    """Return the exception class for an RFC 6749 ``error`` code."""
    if isinstance(code, str):
        return _ERROR_CLASSES.get(code, TokenRequestError)
    return TokenRequestError
