"""A ``requests`` auth object that sends a server's token and recovers once from a 401.

:class:`TokenAuth` sets ``Authorization`` from the manager's cache on every request
(a cache hit takes no lock and does no I/O). When the server answers 401 with a Bearer
challenge saying ``error="invalid_token"`` (RFC 6750 section 3.1; or any 401 with
``retry_on_any_401=True``), it gets a new token and sends the request once more through
the same connection adapter, as requests' ``HTTPDigestAuth`` does. The replay never goes
through this hook again, so it never loops.

Many threads that get a 401 for the same token at once cause one token request:
``TokenManager.refresh(..., rejected=...)`` replaces the token only while the rejected
one is still cached, and the callers share that one fetch.

The header never follows a redirect to another origin: requests' ``rebuild_auth``
(``Session.should_strip_auth``, in every supported requests) drops ``Authorization``
when the host changes, or the port or scheme other than an http-to-https upgrade on the
default ports. The response hook recovers only a request that still carried a token of
this auth's scheme, so it never re-adds a token where requests removed it, nor where
requests put ``.netrc`` credentials for the new host.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

import requests
from requests.auth import AuthBase
from requests.cookies import extract_cookies_to_jar

from ._access import ManagerAccess, access
from ._authflow import (
    BEARER_SCHEMES,
    DPOP_SCHEMES,
    Rejection,
    authorization_headers,
    check_transport,
    read_401,
    same_origin,
    sent_scheme,
)
from ._helpers import masked, redact_url
from .dpop import DPOP_NONCE_HEADER, response_nonce

if TYPE_CHECKING:  # pragma: no cover
    from .config import OAuthConfig
    from .manager import TokenManager
    from .tokens import Token

__all__ = ("TokenAuth",)

_log = logging.getLogger(__name__)

#: Appended to ``Response.reason`` when a rejected request could not be sent again, so
#: ``raise_for_status()`` says why (the token was refreshed; the caller may retry).
_NOT_REPLAYED_REASON = "token refreshed; request not replayed: %s; send it again"
#: The same when a resource server asked for a DPoP nonce (now remembered).
_NONCE_NOT_REPLAYED_REASON = "DPoP nonce received; request not replayed: %s; send it again"

_TOKEN_SOURCE = ("manager", "server_name", "config", "config_id")
_NO_POSITION = object()  # the body is a stream whose position cannot be read
_PLAIN_BODIES = (bytes, str)  # exact classes whose bodies are sent again as they are


class TokenAuth(AuthBase):
    """Attach a server's token to requests and recover once from a rejected token. Thread-safe.

    Build it with :meth:`TokenManager.auth() <oauth_gateway.TokenManager.auth>`::

        session.auth = manager.auth("oauth-api", config, config_id="default")

    What it does on a 401:

    * The response must carry ``WWW-Authenticate: Bearer ... error="invalid_token"``
      unless ``retry_on_any_401`` is true; other 401s and every other status are returned
      unchanged.
    * The token that was sent is dropped and a new one fetched, unless another thread
      already replaced it (then that token is used, without a request).
    * The request is sent once more with the new token, through the same adapter; the
      returned response has the 401 in ``history``. A second 401 is returned as it is.
    * A body that cannot be rewound (a generator, or a file whose position cannot be
      read) is not sent again: the 401 is returned, its ``reason`` ends with
      ``token refreshed; request not replayed: <why>; send it again`` (so
      ``raise_for_status()`` says so), and a WARNING is logged. Retrying the call uses
      the new token.
    * A 401 to a request that no longer carries this auth's token is never recovered:
      requests drops the header on a redirect to another origin (and may put ``.netrc``
      credentials there instead).
    * A challenge's ``resource_metadata`` URL (the server may have moved) is followed
      only on the origin that answered 401, or when it is the config's
      ``OAUTH_RESOURCE_METADATA_URL``; another one is ignored with a WARNING and never
      fetched. At most ``MAX_CHALLENGE_LENGTH`` (16 KiB) of ``WWW-Authenticate`` is read.

    The token is sent over https only: a request to any other URL raises
    :class:`~oauth_gateway.InsecureTransportError` before a token is fetched or a header
    set (as requests-oauthlib does). Plain http is allowed to a loopback host
    (``localhost``, ``*.localhost``, ``127.0.0.0/8``, ``::1``) when the config sets ``OAUTH_ENFORCE_HTTPS``
    to false, and to any host with ``allow_insecure=True``.

    Errors while getting a token (:class:`~oauth_gateway.TokenRequestError`,
    :class:`~oauth_gateway.TransportError`, :class:`~oauth_gateway.ConfigError`)
    propagate from the ``requests`` call, before sending or during recovery.

    Args:
        manager: the token manager that caches and fetches tokens.
        server_name: the server the tokens are for (part of the cache key).
        config: its OAuth settings.
        config_id: the gateway config the server belongs to (part of the cache key).
        retry_on_any_401: recover from every 401, not only ``error="invalid_token"``
            (for servers that send no ``WWW-Authenticate`` error code).
        allow_insecure: also send the token over plain http to any host (local tests only).
    """

    #: The manager's internal interface (its hit check, DPoP keys, resource nonces).
    _internal: ManagerAccess
    #: The hit check and its arguments: ``get_token(server_name, config, config_id)``.
    _source: Tuple[Callable[[str, OAuthConfig, str], Token], str, OAuthConfig, str]
    #: The token this auth last attached (None before the first call).
    _last: Optional[Token]
    _response_hook: Callable[..., requests.Response]
    #: The ``WWW-Authenticate`` schemes whose ``error="invalid_token"`` means "get a new token".
    _challenge_schemes: Tuple[str, ...] = BEARER_SCHEMES

    def __new__(cls, *args: Any, **kwargs: Any) -> TokenAuth:
        # A DPoP config gets its own request path; the bearer one stays as short as it is.
        config = args[2] if len(args) > 2 else kwargs.get("config")
        if cls is TokenAuth and getattr(config, "dpop", False):
            cls = DPoPTokenAuth
        return super().__new__(cls)

    def __init__(
        self,
        manager: TokenManager,
        server_name: str,
        config: OAuthConfig,
        config_id: str = "default",
        retry_on_any_401: bool = False,
        allow_insecure: bool = False,
    ):
        self.manager = manager
        self.server_name = server_name
        self.config = config
        self.config_id = config_id
        self.retry_on_any_401 = bool(retry_on_any_401)
        self.allow_insecure = bool(allow_insecure)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name in _TOKEN_SOURCE and all(hasattr(self, n) for n in _TOKEN_SOURCE):
            # The manager's one hit check and its arguments, worked out once for the hot path.
            internal = access(self.manager)
            object.__setattr__(self, "_internal", internal)
            object.__setattr__(self, "_source", (internal.get_token, self.server_name, self.config, self.config_id))
            object.__setattr__(self, "_last", None)
            # One hook for every request (the request it answers is response.request): appending
            # it builds nothing. The auth refers to itself through it, a cycle the GC collects.
            object.__setattr__(self, "_response_hook", self._on_response)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        url = request.url
        # True exactly when url starts with "https://" ("0" follows "/"): two string
        # comparisons, cheaper than a startswith() call on Python 3.8.
        if url is None or not "https://" <= url < "https:/0":
            check_transport(url or "", self.server_name, self.config.enforce_https, self.allow_insecure)
        # The manager's cache hit: no lock, no I/O.
        get_token, server_name, config, config_id = self._source
        token = get_token(server_name, config, config_id)
        if token is not self._last:  # a read is cheaper than a write on every call
            object.__setattr__(self, "_last", token)
        # authorization_headers(token) without building a dict: the bearer hot path sets one header.
        request.headers["Authorization"] = token.authorization
        # What register_hook() does for one callable, without its isinstance(hook, Callable) ABC check,
        # which costs as much as the rest of this method.
        request.hooks["response"].append(self._response_hook)
        return request

    def _on_response(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        """The response hook of every request this auth prepared (and of requests' redirect copies)."""
        if response.status_code != 401:
            return response
        failed = response.request
        scheme = sent_scheme(failed.headers.get("Authorization"))
        if scheme is None:
            return response  # requests dropped the header on a redirect to another origin
        if scheme != getattr(self._last, "token_type", "").lower():
            return response  # not our token (such as .netrc credentials requests put after a redirect)
        return self._handle_response(response, failed.url, failed.body, _rewind_position(failed), kwargs)

    # -- recovery ---------------------------------------------------------------------

    def _handle_response(
        self,
        response: requests.Response,
        url: Optional[str],
        body: Any,
        position: Any,
        send_kwargs: Dict[str, Any],
        rejection: Optional[Rejection] = None,
    ) -> requests.Response:
        if response.status_code != 401:
            return response
        failed = response.request
        if not same_origin(failed.url, url):
            return response  # a redirect went elsewhere: never send our token there
        sent = failed.headers.get("Authorization")
        if not sent:
            return response
        if rejection is None:
            rejection = self._read_401(response)
        if not self.retry_on_any_401 and not rejection.invalid_token:
            return response
        where = redact_url(failed.url or "")
        if rejection.refused_metadata is not None:
            _log.warning(
                "The 401 from %s was not followed to its metadata: %s", where, rejection.refused_metadata.problem
            )
        elif rejection.resource_metadata is not None and self.config.is_discovered:
            # A challenge naming other resource metadata than the cached one: the server may have moved.
            self._internal.forget_discovery(self.config, resource_metadata=rejection.resource_metadata)
        sent = masked(sent if isinstance(sent, str) else sent.decode("latin-1"))  # frame locals may be printed
        token = self._replacement(sent)
        why = _not_replayable(failed.body, body, position, response)
        if why is not None:
            _log.warning(
                "Token for %s was rejected by %s (401); got a new token but did not send the %s request again: %s",
                self.server_name,
                where,
                failed.method,
                why,
            )
            response.reason = "%s (%s)" % (response.reason or "Unauthorized", _NOT_REPLAYED_REASON % why)
            return response
        _log.info(
            "Token for %s was rejected by %s (401); sending the %s request once more with token %s",
            self.server_name,
            where,
            failed.method,
            token.fingerprint,
        )
        return _send_again(response, body, position, send_kwargs, self._headers_for(failed, token))

    def _read_401(self, response: requests.Response) -> Rejection:
        """What the 401 ``response`` asks for (read once; the origin rule applied to its metadata URL)."""
        return read_401(
            response.headers.get("WWW-Authenticate"),
            response.request.url or "",
            self._challenge_schemes,
            self.config.resource_metadata_url,
        )

    def _headers_for(self, request: requests.PreparedRequest, token: Token) -> Dict[str, str]:
        """The headers that carry ``token`` on ``request`` (a replay of it)."""
        return authorization_headers(token)

    def _replacement(self, failed_authorization: str) -> Token:
        """Return a token to replace the one that failed; concurrent 401s for it share one request."""
        return self.manager.refresh(self.server_name, self.config, self.config_id, rejected=failed_authorization)

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, TokenAuth):
            return NotImplemented
        return (
            self.manager,
            self.server_name,
            self.config,
            self.config_id,
            self.retry_on_any_401,
            self.allow_insecure,
        ) == (
            other.manager,
            other.server_name,
            other.config,
            other.config_id,
            other.retry_on_any_401,
            other.allow_insecure,
        )

    def __repr__(self) -> str:
        return "TokenAuth(server_name=%r, config_id=%r, retry_on_any_401=%r)" % (
            self.server_name,
            self.config_id,
            self.retry_on_any_401,
        )


class DPoPTokenAuth(TokenAuth):
    """:class:`TokenAuth` for a config with ``OAUTH_DPOP``: a DPoP token and a fresh proof per request. Thread-safe.

    ``TokenAuth(...)`` and :meth:`TokenManager.auth() <oauth_gateway.TokenManager.auth>`
    return one of these for a DPoP config. Every request gets ``Authorization: DPoP
    <token>`` and a ``DPoP`` header: a proof signed by the manager's key for this config,
    with ``htm``, ``htu`` (the URL without query and fragment), ``ath`` (the token's hash)
    and the resource server's latest nonce (RFC 9449 section 7).

    On a 401 with ``WWW-Authenticate: DPoP error="use_dpop_nonce"`` and a ``DPoP-Nonce``,
    the nonce is remembered (per server, in the manager) and the request is sent once
    more with a new proof, under the rewind rules of the 401 recovery; a 401 with
    ``error="invalid_token"`` (DPoP or Bearer scheme) gets a new token, as
    :class:`TokenAuth` does. Neither replay is recovered again.
    """

    _challenge_schemes = DPOP_SCHEMES

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        url = request.url or ""
        if not url.startswith("https://"):
            check_transport(url, self.server_name, self.config.enforce_https, self.allow_insecure)
        get_token, server_name, config, config_id = self._source
        token = get_token(server_name, config, config_id)
        request.headers.update(self._proof_headers(request.method or "GET", url, token))
        body = request.body
        position = None if body is None or body.__class__ in _PLAIN_BODIES else _body_position(body)

        def handle_response(
            response: requests.Response,
            _auth: DPoPTokenAuth = self,
            _request: requests.PreparedRequest = request,
            _position: Any = position,
            _token: Token = token,
            **kwargs: Any,
        ) -> requests.Response:
            return _auth._handle_dpop_response(response, _request.url, _request.body, _position, _token, kwargs)

        request.hooks["response"].append(handle_response)
        return request

    def _proof_headers(self, method: str, url: str, token: Token, nonce: Optional[str] = None) -> Dict[str, str]:
        dpop_key = self._internal.dpop_key(self.config)
        assert dpop_key is not None  # the config has OAUTH_DPOP on
        if nonce is None:
            nonce = self._internal.resource_nonces.get(url)
        return authorization_headers(token, dpop_key, method, url, nonce)

    def _headers_for(self, request: requests.PreparedRequest, token: Token) -> Dict[str, str]:
        return self._proof_headers(request.method or "GET", request.url or "", token)

    def _handle_dpop_response(
        self,
        response: requests.Response,
        url: Optional[str],
        body: Any,
        position: Any,
        token: Token,
        send_kwargs: Dict[str, Any],
    ) -> requests.Response:
        failed = response.request
        on_origin = same_origin(failed.url, url)
        if on_origin and DPOP_NONCE_HEADER in response.headers:
            self._internal.resource_nonces.update(failed.url or "", response.headers)  # servers rotate nonces
        if response.status_code != 401 or not on_origin:
            return self._handle_response(response, url, body, position, send_kwargs)
        rejection = self._read_401(response)
        nonce = response_nonce(response.headers) if rejection.use_dpop_nonce else None
        if nonce is None:
            return self._handle_response(response, url, body, position, send_kwargs, rejection)
        why = _not_replayable(failed.body, body, position, response)
        if why is not None:
            _log.warning(
                "%s asked for a DPoP nonce (401) for %s; did not send the %s request again: %s",
                redact_url(failed.url or ""),
                self.server_name,
                failed.method,
                why,
            )
            response.reason = "%s (%s)" % (response.reason or "Unauthorized", _NONCE_NOT_REPLAYED_REASON % why)
            return response
        _log.debug(
            "%s asked for a DPoP nonce; sending the %s request once more", redact_url(failed.url or ""), failed.method
        )
        headers = self._proof_headers(failed.method or "GET", failed.url or "", token, nonce)
        return _send_again(response, body, position, send_kwargs, headers)

    def __repr__(self) -> str:
        return "DPoPTokenAuth(server_name=%r, config_id=%r, retry_on_any_401=%r)" % (
            self.server_name,
            self.config_id,
            self.retry_on_any_401,
        )


# --------------------------------------------------------------------------- helpers


def _body_position(body: Any) -> Any:
    """Where a stream body starts, to rewind it for a replay; None for bytes, str or no body."""
    if body is None or isinstance(body, (bytes, bytearray, str)):
        return None
    tell = getattr(body, "tell", None)
    if tell is None or getattr(body, "seek", None) is None:
        return _NO_POSITION
    seekable = getattr(body, "seekable", None)
    try:
        if seekable is not None and not seekable():
            return _NO_POSITION
        return tell()
    except (OSError, ValueError):
        return _NO_POSITION


def _rewind_position(request: requests.PreparedRequest) -> Any:
    """Where ``request``'s stream body starts, for a replay; None for bytes, str or no body.

    The position is the one requests records when it prepares a stream body
    (``PreparedRequest._body_position``, carried to redirect copies, which requests itself
    rewinds to before following a redirect), so preparing a request costs nothing extra.
    ``_NO_POSITION`` when the body cannot be rewound.
    """
    body: Any = request.body  # typed bytes or str, but a stream is sent as it is
    if body is None or isinstance(body, (bytes, bytearray, str)):
        return None
    position = getattr(request, "_body_position", None)
    if not isinstance(position, int) or getattr(body, "seek", None) is None:
        return _NO_POSITION
    seekable = getattr(body, "seekable", None)
    try:
        if seekable is not None and not seekable():
            return _NO_POSITION
    except (OSError, ValueError):
        return _NO_POSITION
    return position


def _send_again(
    response: requests.Response,
    body: Any,
    position: Any,
    send_kwargs: Dict[str, Any],
    headers: Dict[str, str],
) -> requests.Response:
    """Send ``response``'s request once more with ``headers`` set, through the same adapter."""
    failed = response.request
    # Read and release the 401 so the replay can reuse its connection.
    _ = response.content
    response.close()
    replay = failed.copy()
    # types-requests lists neither PreparedRequest._cookies (set by prepare_cookies, read the
    # same way by requests' own HTTPDigestAuth) nor the types of extract_cookies_to_jar.
    jar = replay._cookies  # type: ignore[attr-defined]
    if jar is not None:
        extract_cookies_to_jar(jar, failed, response.raw)  # type: ignore[no-untyped-call]
        replay.prepare_cookies(jar)
    replay.headers.update(headers)
    if failed.body is not None and failed.body is body and isinstance(position, int):
        body.seek(position)  # type: ignore[union-attr]  # _body_position saw seek()
    # The adapter sends without dispatching hooks, so the replay is never recovered again.
    answer: requests.Response = response.connection.send(replay, **send_kwargs)
    answer.history.append(response)
    answer.request = replay
    return answer


def _not_replayable(failed_body: Any, body: Any, position: Any, response: requests.Response) -> Optional[str]:
    """Return why the rejected request cannot be sent again, or None when it can."""
    if getattr(response, "connection", None) is None:
        return "the response came from an adapter that cannot send again"
    if failed_body is None or isinstance(failed_body, (bytes, bytearray, str)):
        return None
    if failed_body is body and isinstance(position, int):
        return None
    if hasattr(failed_body, "read"):
        return "its body is a file whose position cannot be read, so it cannot be rewound"
    return "its body is %s, which cannot be rewound (pass bytes or a seekable file)" % _describe_body(failed_body)


def _describe_body(body: Any) -> str:
    name = type(body).__name__
    if name == "generator":
        return "a generator"
    return "an iterator (%s)" % name
