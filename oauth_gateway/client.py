"""Token and revocation requests: the only module that calls requests.

A :class:`~oauth_gateway.endpoint.TokenEndpoint` describes where a resolved config's
requests go and how (URL, pooled session and TLS identity, timeouts, retry template,
headers, client authentication); :class:`TokenClient` builds one per config, once, and
sends what it describes. Sessions are pooled per TLS identity, so connections are
reused. The session's adapter never retries (``max_retries=0``): the loop that sends
again is ours, in :meth:`TokenClient._send`, driven by the endpoint's
:class:`~oauth_gateway.endpoint.TokenRetry` through its public ``increment``,
``is_retry``, ``get_retry_after`` and ``sleep``. Each attempt's headers and form come
from a ``build_attempt()`` callable, so an attempt can carry a fresh body (a JWT
assertion with a new ``jti``, a DPoP proof). Per-call state travels in a
:class:`CallState` passed explicitly, never in a thread-local. Redirects are never
followed on credential requests. requests and urllib3 exceptions become ours here, and
ours are raised outside the ``except`` block that caught theirs, so no error of ours
keeps, as ``__context__``, a traceback whose frames hold the form or the headers.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import requests
from requests.adapters import HTTPAdapter
from requests.utils import DEFAULT_CA_BUNDLE_PATH
from urllib3.exceptions import HTTPError, MaxRetryError, SSLError

from ._helpers import masked, redact_url
from ._response import (
    MAX_TOKEN_LIFETIME,
    AttemptTooSlow,
    TokenResponse,
    error_from_response,
    json_object,
    parse_token_response,
    read_body,
)
from ._version import __version__
from .config import OAuthConfig
from .dpop import DPOP_HEADER, DPoPKey, NonceStore, token_nonce_challenge
from .endpoint import TokenEndpoint, TokenRetry
from .endpoint import attempt_deadline as attempt_deadline
from .endpoint import call_budget as call_budget
from .exceptions import ConfigError, OAuthGatewayError, TransportError

__all__ = ("MAX_TOKEN_LIFETIME", "TokenResponse", "attempt_deadline", "parse_token_response")

log = logging.getLogger("oauth_gateway")

USER_AGENT = "oauth-gateway/%s python-requests/%s" % (__version__, getattr(requests, "__version__", "?"))
#: Connections kept per pool; above this, extra parallel fetches open short-lived ones.
POOL_MAXSIZE = 32
#: Token endpoints kept (one per config; a private key is loaded once).
MAX_ENDPOINTS = 256


_BUDGET_FORMULA = "(OAUTH_MAX_RETRIES + 1) attempts of OAUTH_CONNECT_TIMEOUT + 2 x OAUTH_TIMEOUT, and the waits"


def default_ca_bundle() -> str:
    """The trust store used when ``OAUTH_CA_BUNDLE_PATH`` is empty: certifi's bundle.

    ``requests.certs.where()`` (requests' ``DEFAULT_CA_BUNDLE_PATH``), the bundle requests uses. It is passed
    explicitly on every call, so ``REQUESTS_CA_BUNDLE`` and ``CURL_CA_BUNDLE`` (which
    requests lets replace ``verify=True``) never choose who receives the client secret.
    """
    return str(DEFAULT_CA_BUNDLE_PATH)


def client_credentials_form(config: OAuthConfig) -> List[Tuple[str, str]]:
    """The form of a client-credentials request (RFC 6749 section 4.4.2) for ``config``.

    ``grant_type``, then ``scope``, ``audience``, ``organization``, every ``resource``
    (RFC 8707) and ``OAUTH_ADDITIONAL_PARAMS``; the client authentication adds its own
    fields per attempt (and the jwt-bearer grant replaces ``grant_type``).
    """
    form: List[Tuple[str, str]] = masked([("grant_type", config.grant_type)])
    if config.scope:
        form.append(("scope", config.scope))
    if config.audience:
        form.append(("audience", config.audience))
    if config.organization:
        form.append(("organization", config.organization))
    for resource in config.resources:
        form.append(("resource", resource))
    form.extend(config.additional_params)
    return form


#: ``build_attempt() -> (headers, form)``: the headers and form of one attempt, built
#: anew for each so an attempt may carry a fresh proof. The form may also be a raw body
#: (bytes or text), for :meth:`TokenClient.send`.
BuildAttempt = Callable[[], Tuple[Dict[str, str], Union[List[Tuple[str, str]], bytes, str, None]]]
#: ``on_retry(server_name, attempt, total, reason)``, called before each retry.
OnRetry = Callable[[str, int, int, str], None]


class CallState:
    """What one token or revocation call carries from attempt to attempt. Not shared.

    Made by :class:`TokenClient` for each call and passed explicitly to the retry loop,
    which fills in what the caller reads back afterwards.

    Attributes:
        server_name: named in logs and errors.
        correlation_id: sent as ``X-Correlation-ID`` with every attempt.
        what: ``"token acquisition"`` or ``"token revocation"``, for messages.
        max_attempts: the first attempt plus ``OAUTH_MAX_RETRIES``.
        attempts: attempts sent so far.
        sent_at: clock time at which the latest attempt was sent.
        retry_after_refused: a ``Retry-After`` (seconds) above ``OAUTH_RETRY_AFTER_MAX``
            that ended the call, or None.
        on_retry: called as ``on_retry(attempt, reason)`` before each retry.
        deadline: when (on the client's clock) the caller's whole fetch gives up, discovery
            and token request together; None for no deadline beyond the attempts' own.
    """

    __slots__ = (
        "server_name",
        "correlation_id",
        "what",
        "max_attempts",
        "attempts",
        "sent_at",
        "retry_after_refused",
        "on_retry",
        "deadline",
    )

    server_name: str
    correlation_id: str
    what: str
    max_attempts: int
    attempts: int
    sent_at: Optional[float]
    retry_after_refused: Optional[float]
    on_retry: Optional[Callable[[int, str], None]]
    deadline: Optional[float]

    def __init__(
        self,
        server_name: str,
        correlation_id: str,
        what: str,
        max_attempts: int,
        on_retry: Optional[Callable[[int, str], None]] = None,
        deadline: Optional[float] = None,
    ) -> None:
        self.server_name = server_name
        self.deadline = deadline
        self.correlation_id = correlation_id
        self.what = what
        self.max_attempts = max_attempts
        self.attempts = 0
        self.sent_at = None
        self.retry_after_refused = None
        self.on_retry = on_retry


def _new_correlation_id() -> str:
    return uuid.uuid4().hex[:8]


def _no_auth(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """Stops requests from adding ``~/.netrc`` credentials to a credential request."""
    return request


def _retry_cause(exc: requests.exceptions.RequestException) -> Optional[HTTPError]:
    """The urllib3 error under a requests connection error or timeout, which Retry classifies."""
    if isinstance(exc, requests.exceptions.SSLError) or not isinstance(
        exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)
    ):
        return None  # a certificate problem does not go away by asking again
    cause: Any = exc.args[0] if exc.args else None
    for _ in range(4):
        if not isinstance(cause, MaxRetryError):
            break
        cause = cause.reason
    if not isinstance(cause, HTTPError) or isinstance(cause, SSLError):
        return None
    return cause


def _increment(
    retry: TokenRetry, url: str, response: Any = None, error: Any = None, method: str = "POST"
) -> Optional[TokenRetry]:
    """The policy's next state after a failed attempt, or None when no attempt is left."""
    try:
        following: TokenRetry = retry.increment(method=method, url=url, response=response, error=error)
        return following
    except HTTPError:  # MaxRetryError when exhausted; the error itself when it is never retried
        return None


def _transport_error(exc: BaseException, call: CallState, url: str) -> OAuthGatewayError:
    """Our error for a failed attempt (built, not raised: the caller raises it outside its except block).

    The message carries the cause's reason, never the cause: the requests and urllib3
    frames under it hold the form and the headers as locals.
    """
    safe = redact_url(url)
    what, server_name, correlation_id = call.what.capitalize(), call.server_name, call.correlation_id
    if isinstance(exc, requests.exceptions.SSLError):
        return TransportError(
            "TLS with %s failed for %s (%s); check OAUTH_CA_BUNDLE_PATH and, with mTLS, the client certificate"
            % (safe, server_name, _reason(exc)),
            correlation_id=correlation_id,
            server_name=server_name,
            retryable=False,
        )
    if isinstance(exc, AttemptTooSlow):
        return TransportError(
            "%s to %s did not finish within its deadline of %.1f s for %s after %d attempts "
            "(the body was still arriving); the deadline is OAUTH_CONNECT_TIMEOUT + 2 x OAUTH_TIMEOUT, "
            "check the server" % (what, safe, exc.deadline, server_name, call.attempts),
            correlation_id=correlation_id,
            server_name=server_name,
        )
    if isinstance(exc, requests.exceptions.RequestException):
        reason = _reason(exc)
        # A read timeout may come back as ConnectionError, not Timeout.
        if isinstance(exc, requests.exceptions.Timeout) or reason == "timed out":
            return TransportError(
                "%s to %s timed out for %s after %d attempts (%s); raise OAUTH_TIMEOUT or check the server"
                % (what, safe, server_name, call.attempts, reason),
                correlation_id=correlation_id,
                server_name=server_name,
            )
        return TransportError(
            "%s to %s failed for %s after %d attempts (%s)" % (what, safe, server_name, call.attempts, reason),
            correlation_id=correlation_id,
            server_name=server_name,
        )
    # requests raises a bare OSError for unreadable cert files
    return TransportError(
        "%s for %s could not start: %s" % (what, server_name, exc.__class__.__name__),
        correlation_id=correlation_id,
        server_name=server_name,
        retryable=False,
    )


class TokenClient:
    """Sends token and revocation requests over pooled sessions. Thread-safe.

    Args:
        sleep: called with the seconds to wait between retries (``time.sleep``).
        on_retry: called as ``on_retry(server_name, attempt, total, reason)`` before each retry.
        clock: monotonic seconds; the send time of each attempt is read from it.
        wall_clock: seconds since the epoch, for the ``iat`` and ``exp`` of client assertions.
    """

    def __init__(
        self,
        sleep: Callable[[float], None],
        on_retry: Optional[OnRetry] = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._on_retry = on_retry
        self._lock = threading.Lock()
        self._sessions: Dict[Tuple[Any, ...], requests.Session] = {}
        self._endpoints: Dict[Tuple[OAuthConfig, bool], TokenEndpoint] = {}

    # -- endpoints and sessions -----------------------------------------------

    def endpoint(self, config: OAuthConfig, credentials: bool = True) -> TokenEndpoint:
        """The :class:`~oauth_gateway.endpoint.TokenEndpoint` of a resolved ``config``, built once and kept.

        Args:
            config: the resolved config (its token endpoint known).
            credentials: False for an endpoint without client authentication (a
                token provider's own requests, discovery).

        Raises:
            ConfigError: the client authentication cannot be built (a bad key, PyJWT missing...).
        """
        key = (config, credentials)
        found = self._endpoints.get(key)
        if found is not None:
            return found
        verify = config.ca_bundle_path or default_ca_bundle()
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        # Assertion sources that ask an HTTP endpoint go through the discovery transport.
        fetch = self.discovery_fetch(config) if credentials and config.client_assertion_source else None
        made = TokenEndpoint(
            config, self._session(config.tls_identity[0], verify), verify, self._sleep, headers, credentials, fetch
        )
        with self._lock:
            if len(self._endpoints) >= MAX_ENDPOINTS:
                self._endpoints.clear()
            return self._endpoints.setdefault(key, made)

    def session_for(self, config: OAuthConfig) -> requests.Session:
        """The pooled session for ``config``'s TLS identity (its adapter never retries itself)."""
        return self.endpoint(config, credentials=False).session

    def _session(self, cert: Optional[Tuple[str, str]], verify: str) -> requests.Session:
        key = (cert, verify)
        session = self._sessions.get(key)
        if session is not None:
            return session
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                session = requests.Session()
                session.cert = cert
                session.verify = verify
                # The adapter never retries: _send does, so each attempt can be built anew.
                adapter = HTTPAdapter(max_retries=0, pool_maxsize=POOL_MAXSIZE)
                session.mount("https://", adapter)
                session.mount("http://", adapter)
                self._sessions[key] = session
            return session

    def close(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            sessions, self._sessions, self._endpoints = list(self._sessions.values()), {}, {}
        for session in sessions:
            session.close()

    def reset_after_fork(self) -> None:
        """Forget the parent's sockets and lock in a forked child (the manager calls this)."""
        self._lock = threading.Lock()
        self._sessions = {}
        self._endpoints = {}

    # -- discovery ------------------------------------------------------------

    def discovery_fetch(
        self, config: OAuthConfig
    ) -> Callable[
        [str, str, Mapping[str, str], Optional[bytes], Optional[float]], Tuple[int, Mapping[str, str], bytes]
    ]:
        """Return a discovery transport (:data:`oauth_gateway.discovery.Fetch`) for ``config``.

        It uses the pooled session of the config's TLS identity, the same timeouts and
        retry policy as token requests, never follows redirects and never sends
        credentials (no ``Authorization``, no netrc, no custom headers).
        """
        endpoint = self.endpoint(config, credentials=False)

        def fetch(
            method: str, url: str, headers: Mapping[str, str], body: Optional[bytes], deadline: Optional[float]
        ) -> Tuple[int, Mapping[str, str], bytes]:
            call = self._new_call(
                endpoint, redact_url(url), _new_correlation_id(), "discovery", deadline
            )  # logs name the URL
            sent = dict(headers)
            sent["User-Agent"] = USER_AGENT

            def build_attempt() -> Tuple[Dict[str, str], Any]:
                return dict(sent), body

            response = self._send(endpoint, url, build_attempt, call, method=method)
            return response.status_code, response.headers, response.content

        return fetch

    # -- requests -------------------------------------------------------------

    def _new_call(
        self,
        endpoint: TokenEndpoint,
        server_name: str,
        correlation_id: str,
        what: str,
        deadline: Optional[float] = None,
    ) -> CallState:
        total = endpoint.max_attempts

        def on_retry(attempt: int, reason: str) -> None:
            log.warning(
                "Retrying %s for %s, attempt %d/%d (%s) correlation_id=%s",
                what,
                server_name,
                attempt,
                total,
                reason,
                correlation_id,
            )
            if self._on_retry is not None:
                self._on_retry(server_name, attempt, total, reason)

        return CallState(server_name, correlation_id, what, total, on_retry, deadline)

    def _authenticated(
        self, endpoint: TokenEndpoint, form: List[Tuple[str, str]], call: CallState, url: str
    ) -> BuildAttempt:
        """Return the ``build_attempt`` that adds the endpoint's client authentication to ``form``.

        The headers and form are built anew for every attempt, so a JWT assertion carries
        a fresh ``jti`` and ``iat`` and an assertion file is read again. The assertion's
        audience comes from the endpoint's issuer (configured or discovered), else its URL.

        Raises:
            ConfigError: from ``build_attempt``: the credential cannot be used (an expired
                assertion file...); the call ends without a retry.
        """
        auth, grant, token_url, issuer = endpoint.client_auth, endpoint.grant, endpoint.url, endpoint.issuer

        def build_attempt() -> Tuple[Dict[str, str], List[Tuple[str, str]]]:
            headers = dict(endpoint.headers)
            headers["X-Correlation-ID"] = call.correlation_id
            now = self._wall_clock()
            added: Dict[str, str] = {}
            if grant is not None and any(name == "grant_type" for name, _ in form):
                grant.apply(added, headers, token_endpoint=token_url, issuer=issuer, now=now)
            if auth is not None:
                auth.apply(added, headers, token_endpoint=token_url, issuer=issuer, now=now)
            fields = [
                (name, added.pop(name)) if name == "grant_type" and name in added else (name, value)
                for name, value in form
            ]
            fields.extend(added.items())
            return headers, fields

        return build_attempt

    def _send(
        self, endpoint: TokenEndpoint, url: str, build_attempt: BuildAttempt, call: CallState, method: str = "POST"
    ) -> requests.Response:
        """Send attempts until one is final; return its response.

        Our loop, driven by a call state made from the endpoint's :class:`TokenRetry`:
        ``is_retry`` says whether an answer is retried, ``increment`` counts (and ends the
        call when exhausted) and ``sleep`` waits (``Retry-After`` first, capped). The last
        answer is returned as it is.

        Raises:
            TransportError: the last attempt failed in transport (raised outside the
                ``except`` block, so its ``__context__`` is None).
            ConfigError: the mTLS files disappeared since the config was loaded.
        """
        for path, label, key in endpoint.mtls_files:
            if not os.path.isfile(path):
                # Fail closed: never fall back to a request without the client certificate.
                raise ConfigError("%s not found: %s" % (label, path), "$.oauth_config." + key, "check the path")
        retry = endpoint.retry
        failure: Optional[OAuthGatewayError] = None
        for _ in range(endpoint.max_attempts):  # bounded; the policy normally ends it first
            # Each attempt has its own deadline, never past the whole call's.
            seconds = min(endpoint.deadline, self._left(call, url))
            call.attempts += 1
            # Masked: these locals hold the secret, and tracebacks may print frame locals.
            headers, form = (masked(part) for part in build_attempt())
            headers.setdefault("Accept-Encoding", "gzip, deflate")
            call.sent_at = self._clock()
            started = time.monotonic()  # real time: the deadline bounds real I/O
            try:
                response = endpoint.session.request(
                    method,
                    url,
                    data=form,
                    headers=headers,
                    auth=_no_auth,
                    cert=endpoint.cert,
                    # An explicit bundle, passed per call: requests lets REQUESTS_CA_BUNDLE replace verify=True.
                    verify=endpoint.verify,
                    # requests takes urllib3's Timeout as it is
                    timeout=endpoint.timeout_within(seconds),  # type: ignore[arg-type]
                    allow_redirects=False,
                    stream=True,
                )
                read_body(response, url, started + seconds, seconds, call)
            except OSError as exc:  # requests' errors are OSErrors; so is an unreadable cert file
                error = _retry_cause(exc) if isinstance(exc, requests.exceptions.RequestException) else None
                following = None if error is None else _increment(retry, url, error=error, method=method)
                if following is None:  # exhausted, or never retried
                    failure = _transport_error(exc, call, url)
                    break
                retry, reason = following, _reason(exc)  # a plain reason: "connection refused", "timed out"
                if retry.get_backoff_time() >= self._remaining(call):
                    failure = _transport_error(exc, call, url)  # the wait would end past the call's deadline
                    break
            else:
                raw = response.raw
                if not retry.is_retry(method, response.status_code, "Retry-After" in response.headers):
                    return response
                retry_after = retry.retry_after(raw)
                if retry_after is not None and retry_after > retry.retry_after_cap:
                    # Give the answer back at once: waiting longer than the cap helps nobody.
                    call.retry_after_refused = retry_after
                    return response
                following = _increment(retry, url, response=raw, method=method)
                if following is None:
                    return response  # exhausted: the last answer is the result
                wait = retry_after if retry_after is not None else following.get_backoff_time()
                if wait >= self._remaining(call):
                    return response  # the wait would end past the call's deadline: this answer is the result
                retry = following
                response.close()  # its body is read already: the connection goes back to the pool
                self._announce(call, "HTTP %d" % response.status_code)
                retry.sleep(raw)
                continue
            self._announce(call, reason)
            retry.sleep()
        if failure is not None:
            raise failure  # outside the except block: nothing of requests' in __context__
        return response

    def _remaining(self, call: CallState) -> float:
        """Seconds left before ``call``'s deadline: infinite without one, 0 or less once it passed."""
        return math.inf if call.deadline is None else call.deadline - self._clock()

    def _left(self, call: CallState, url: str) -> float:
        """:meth:`_remaining`, for an attempt about to be sent.

        Raises:
            TransportError: the deadline has passed; no further attempt is sent.
        """
        left = self._remaining(call)
        if left <= 0:
            raise TransportError(
                "%s to %s for %s stopped after %d attempts: the deadline of the whole fetch (discovery and "
                "token request together, %s) passed; raise OAUTH_TIMEOUT or check the servers"
                % (call.what.capitalize(), redact_url(url), call.server_name, call.attempts, _BUDGET_FORMULA),
                correlation_id=call.correlation_id,
                server_name=call.server_name,
            )
        return left

    @staticmethod
    def _announce(call: CallState, reason: str) -> None:
        if call.on_retry is not None:
            call.on_retry(call.attempts + 1, reason)

    def send(
        self,
        config: OAuthConfig,
        method: str,
        url: str,
        *,
        server_name: str,
        correlation_id: Optional[str] = None,
        headers: Optional[Dict[str, str]] = None,
        body: Union[bytes, str, None] = None,
        deadline: Optional[float] = None,
    ) -> requests.Response:
        """Send one request with the token requests' transport, for a token provider.

        The same session (TLS identity), timeouts, retry policy and no-redirect rule as
        :meth:`request_token`; ``OAUTH_CUSTOM_HEADERS``, ``User-Agent`` and
        ``X-Correlation-ID`` are sent, then ``headers``. No client authentication.

        Returns:
            The final response, whatever its status; a redirect is returned, never followed.

        Raises:
            TransportError: the network or TLS failed after the retries.
            ConfigError: the mTLS files disappeared since the config was loaded.
        """
        endpoint = self.endpoint(config, credentials=False)
        call = self._new_call(
            endpoint, server_name, correlation_id or _new_correlation_id(), "token acquisition", deadline
        )

        def build_attempt() -> Tuple[Dict[str, str], Union[bytes, str, None]]:
            sent = dict(endpoint.headers)
            sent["X-Correlation-ID"] = call.correlation_id
            sent.update(headers or {})
            return sent, body

        log.debug("Provider request correlation_id=%s for %s", call.correlation_id, server_name)
        return self._send(endpoint, url, build_attempt, call, method=method.upper())

    def request_token(
        self,
        endpoint: TokenEndpoint,
        form: List[Tuple[str, str]],
        server_name: str,
        correlation_id: Optional[str] = None,
        dpop_key: Optional[DPoPKey] = None,
        nonces: Optional[NonceStore] = None,
        deadline: Optional[float] = None,
    ) -> TokenResponse:
        """Ask the token endpoint for a token with ``form`` (the grant's fields).

        The endpoint's client authentication is added to every attempt. With
        ``dpop_key`` every attempt carries a fresh DPoP proof (RFC 9449 section 5) with
        the server's latest nonce from ``nonces``; a ``use_dpop_nonce`` answer is sent
        once more with the nonce it carried (outside ``OAUTH_MAX_RETRIES``), and the
        response must say ``token_type`` ``DPoP``.

        Args:
            endpoint: from :meth:`endpoint`.
            form: the grant's fields, like :func:`client_credentials_form`'s.
            server_name: named in logs and errors.
            correlation_id: sent as ``X-Correlation-ID``; a new one by default.
            dpop_key: the DPoP key when ``OAUTH_DPOP`` is on, else None.
            nonces: where the servers' ``DPoP-Nonce`` values are kept (a new store
                by default, so nothing is remembered between calls).
            deadline: when (on the client's clock) the whole fetch gives up; no attempt
                is sent, and no retry waits, past it. None: the attempts' own deadlines only.

        Returns:
            The checked response, with ``sent_at`` set to when the attempt that succeeded
            was sent.

        Raises:
            TokenRequestError: the server refused, or answered something that is not a token.
            TokenBindingError: with DPoP, the server answered a token that is not DPoP-bound.
            TransportError: the network or TLS failed.
            ConfigError: the mTLS files disappeared since the config was loaded.
        """
        call = self._new_call(
            endpoint, server_name, correlation_id or _new_correlation_id(), "token acquisition", deadline
        )
        url = endpoint.url
        build_attempt = self._authenticated(endpoint, form, call, url)
        log.debug("Token request correlation_id=%s for %s", call.correlation_id, server_name)
        if dpop_key is not None:
            key, store = dpop_key, NonceStore() if nonces is None else nonces
            authenticated = build_attempt

            def build_attempt() -> Tuple[Dict[str, str], Union[List[Tuple[str, str]], bytes, str, None]]:
                headers, fields = authenticated()
                headers[DPOP_HEADER] = key.proof("POST", url, now=self._wall_clock(), nonce=store.get(url))
                return headers, fields

        response = self._send(endpoint, url, build_attempt, call)
        if dpop_key is not None:
            store.update(url, response.headers)
            if token_nonce_challenge(response.status_code, response.headers, json_object(response.content)):
                # RFC 9449 section 8: once more with the server's nonce, outside the retry count.
                log.debug("Token endpoint of %s asked for a DPoP nonce; sending once more", server_name)
                response.close()
                response = self._send(endpoint, url, build_attempt, call)
                store.update(url, response.headers)
        parsed = parse_token_response(
            response.status_code,
            response.content,
            server_name=server_name,
            correlation_id=call.correlation_id,
            location=response.headers.get("Location"),
            retry_after_refused=call.retry_after_refused,
            redact=endpoint.redact,
            dpop=dpop_key is not None,
        )
        return parsed._replace(sent_at=call.sent_at)

    def revoke_token(
        self,
        endpoint: TokenEndpoint,
        token: str,
        token_type_hint: Optional[str],
        server_name: str,
        correlation_id: Optional[str] = None,
    ) -> None:
        """Revoke a token at the endpoint's ``OAUTH_REVOCATION_URL`` (RFC 7009).

        Raises:
            TokenRequestError: the server answered with an error.
            TransportError: the network or TLS failed.
        """
        token = masked(token)  # frame locals may be printed with a traceback
        call = self._new_call(endpoint, server_name, correlation_id or _new_correlation_id(), "token revocation")
        form = masked([("token", token)])
        if token_type_hint:
            form.append(("token_type_hint", token_type_hint))
        log.debug("Revocation request correlation_id=%s for %s", call.correlation_id, server_name)
        url = endpoint.revocation_url
        response = self._send(endpoint, url, self._authenticated(endpoint, form, call, url), call)
        if response.status_code == 200:
            return
        raise error_from_response(
            response.status_code,
            response.content,
            "OAuth token revocation failed",
            server_name,
            call.correlation_id,
            response.headers.get("Location"),
            call.retry_after_refused,
            redact=masked(tuple(endpoint.redact) + (token,)),
        )


def _reason(exc: BaseException) -> str:
    """A short cause for a requests exception, without URLs or bodies."""
    cause: Any = exc
    seen = 0
    while seen < 6:
        inner = getattr(cause, "reason", None) or (cause.args[0] if getattr(cause, "args", None) else None)
        if isinstance(inner, BaseException):
            cause, seen = inner, seen + 1
            continue
        break
    text = str(cause)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "certificate verify failed"
    for marker in ("Connection refused", "Connection reset", "timed out", "Remote end closed", "Name or service"):
        if marker in text:
            return marker.lower()
    return str(cause.__class__.__name__)
