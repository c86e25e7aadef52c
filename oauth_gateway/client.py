"""Token and revocation requests: the only module that calls requests.

Sessions are pooled per TLS identity, so connections are reused. The session's adapter
never retries (``max_retries=0``): the loop that sends again is ours, in
:meth:`TokenClient._send`, driven by a per-call :class:`urllib3.util.Retry` (our delay
schedule, a cap on ``Retry-After``, ``POST`` in ``allowed_methods``, the manager's
injectable ``sleep``) through its public ``increment``, ``is_retry``, ``get_retry_after``
and ``sleep``. Each attempt's headers and form come from a ``build_attempt(attempt)``
callable, so an attempt can carry a fresh body (a JWT assertion with a new ``jti``, a
DPoP proof). Per-call state travels in a :class:`CallState` passed explicitly, never
in a thread-local. Redirects are never followed on credential requests. requests and
urllib3 exceptions become ours here.
"""

from __future__ import annotations

import http.client
import logging
import math
import os
import re
import threading
import time
import uuid
import zlib
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union
from urllib.parse import quote_plus

import requests
from requests.adapters import HTTPAdapter
from requests.utils import DEFAULT_CA_BUNDLE_PATH
from urllib3.exceptions import HTTPError, MaxRetryError, ProtocolError, ReadTimeoutError, SSLError
from urllib3.util import Timeout
from urllib3.util.retry import Retry

from ._helpers import loads_bounded, masked, redact_url
from ._version import __version__
from .client_auth import JWT_BEARER_GRANT_TYPE, AssertionFile, ClientAuth, JwtBearerGrant, build_client_auth
from .config import OAuthConfig
from .dpop import DPOP_HEADER, DPOP_TOKEN_TYPE, DPoPKey, NonceStore, check_dpop_token_type, token_nonce_challenge
from .exceptions import ConfigError, TokenRequestError, TransportError, error_class_for

log = logging.getLogger("oauth_gateway")

USER_AGENT = "oauth-gateway/%s python-requests/%s" % (__version__, getattr(requests, "__version__", "?"))
#: Statuses retried with backoff (RFC 6585 429 and transient 5xx).
RETRY_STATUSES = frozenset([429, 500, 502, 503, 504])
#: Longest lifetime believed from ``expires_in``; longer tokens are refreshed daily anyway.
MAX_TOKEN_LIFETIME = 86400.0
#: Longest ``error_description`` carried into an exception message.
MAX_DESCRIPTION = 200
#: Connections kept per pool; above this, extra parallel fetches open short-lived ones.
POOL_MAXSIZE = 32
#: Client authentication objects kept (one per config; a private key is loaded once).
MAX_CLIENT_AUTHS = 256
#: Largest token or revocation response body read, after gzip or deflate is undone (bytes).
MAX_RESPONSE_BYTES = 256 * 1024
#: Bytes asked of the socket per read while a body streams in.
READ_CHUNK = 16 * 1024
#: Longest granted ``scope`` accepted (characters).
MAX_SCOPE_LENGTH = 4096
#: Longest ``Location`` or ``error_uri`` repeated in a message or kept on an error.
MAX_URI = 200


def attempt_deadline(config: OAuthConfig) -> float:
    """Seconds one attempt may take in all: ``OAUTH_CONNECT_TIMEOUT + 2 * OAUTH_TIMEOUT``.

    The ``(connect, read)`` timeouts bound each socket operation; this bounds the
    attempt, so a server that sends its body a byte at a time, or a chunked body that
    never ends, cannot hold a caller (and every thread waiting for that key) longer.
    The defaults (5 s, 10 s) give 25 s. The deadline is real time (``time.monotonic``),
    whatever clock the manager was given.
    """
    return float(config.connect_timeout) + 2.0 * float(config.timeout)


def call_budget(config: OAuthConfig) -> float:
    """Longest a whole token call may take: every attempt's deadline and every wait between them.

    Threads waiting for another thread's fetch of the same key wait at most this long
    (plus the manager's margin for a shared cache).
    """
    retries = int(config.max_retries)
    waits = sum(max(config.retry_backoff * (2**i), config.retry_after_max) for i in range(retries))
    return float((retries + 1) * attempt_deadline(config) + waits)


def default_ca_bundle() -> str:
    """The trust store used when ``OAUTH_CA_BUNDLE_PATH`` is empty: certifi's bundle.

    ``requests.certs.where()`` (requests' ``DEFAULT_CA_BUNDLE_PATH``), the bundle requests uses. It is passed
    explicitly on every call, so ``REQUESTS_CA_BUNDLE`` and ``CURL_CA_BUNDLE`` (which
    requests lets replace ``verify=True``) never choose who receives the client secret.
    """
    return str(DEFAULT_CA_BUNDLE_PATH)


def _verify(config: OAuthConfig) -> str:
    return config.ca_bundle_path or default_ca_bundle()


class TokenResponse(NamedTuple):
    """A successful, checked token endpoint response.

    ``sent_at`` is the clock time at which the attempt that succeeded was sent (None
    from :func:`parse_token_response`, which sees no request).
    """

    access_token: str
    token_type: str
    expires_in: Optional[float]
    scope: Optional[str]
    sent_at: Optional[float] = None

    def __repr__(self) -> str:
        return "TokenResponse(access_token='***', token_type=%r, expires_in=%r, scope=%r, sent_at=%r)" % (
            self.token_type,
            self.expires_in,
            self.scope,
            self.sent_at,
        )


#: ``build_attempt(attempt) -> (headers, form)``: the headers and form of one attempt
#: (1 for the first), built anew for each so an attempt may carry a fresh proof. The
#: form may also be a raw body (bytes or text), for :meth:`TokenClient.send`.
BuildAttempt = Callable[[int], Tuple[Dict[str, str], Union[List[Tuple[str, str]], bytes, str, None]]]
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
    )

    server_name: str
    correlation_id: str
    what: str
    max_attempts: int
    attempts: int
    sent_at: Optional[float]
    retry_after_refused: Optional[float]
    on_retry: Optional[Callable[[int, str], None]]

    def __init__(
        self,
        server_name: str,
        correlation_id: str,
        what: str,
        max_attempts: int,
        on_retry: Optional[Callable[[int, str], None]] = None,
    ) -> None:
        self.server_name = server_name
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


class TokenRetry(Retry):
    """urllib3's Retry with our backoff schedule, a Retry-After cap and an injected sleep.

    Immutable like its base: ``increment()`` returns the next state and ``new()`` carries
    the extra attributes. Only public hooks (``new``, ``get_backoff_time``, ``sleep``) are
    overridden, so it works on urllib3 1.26 and 2.x.

    Args:
        sleep_fn: called with the seconds to wait.
        backoff_base: the first retry's wait; each later one doubles it.
        retry_after_cap: the longest ``Retry-After`` honoured, in seconds.
    """

    def __init__(
        self,
        *args: Any,
        sleep_fn: Callable[[float], None] = time.sleep,
        backoff_base: float = 2.0,
        retry_after_cap: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.sleep_fn = sleep_fn
        self.backoff_base = backoff_base
        self.retry_after_cap = retry_after_cap

    def new(self, **kw: Any) -> TokenRetry:
        kw.setdefault("sleep_fn", self.sleep_fn)
        kw.setdefault("backoff_base", self.backoff_base)
        kw.setdefault("retry_after_cap", self.retry_after_cap)
        new: TokenRetry = super().new(**kw)
        return new

    def get_backoff_time(self) -> float:
        # 2 s, 4 s, 8 s: the first retry already waits (urllib3's own schedule starts at 0).
        attempts = len(self.history)
        if attempts == 0:
            return 0.0
        return float(self.backoff_base * (2 ** (attempts - 1)))

    def retry_after(self, response: Any) -> Optional[float]:
        """The response's ``Retry-After`` in seconds, or None when absent or unparsable."""
        try:
            value = self.get_retry_after(response)
        except Exception:  # an unparsable Retry-After falls back to our own schedule
            return None
        return None if value is None else float(value)

    def sleep(self, response: Any = None) -> None:
        delay = None
        if response is not None and self.respect_retry_after_header:
            delay = self.retry_after(response)
        if delay is None:
            delay = self.get_backoff_time()
        if delay > 0:
            self.sleep_fn(delay)


class _AttemptTooSlow(requests.exceptions.Timeout):
    """An attempt's body was still arriving when its deadline passed; retried like a read timeout."""

    def __init__(self, url: str, deadline: float) -> None:
        reason = "the attempt's deadline of %.1f s passed" % deadline
        super().__init__(ReadTimeoutError(None, url, reason))  # type: ignore[arg-type]  # no pool: ours
        self.deadline = deadline


_DECODED_ENCODINGS = frozenset(["gzip", "x-gzip", "deflate"])


def _read_body(response: requests.Response, url: str, deadline: float, seconds: float, call: CallState) -> None:
    """Read a streamed response's body into ``response.content``, bounded in time and size.

    One socket read at a time (``read1``), the clock checked between reads, gzip and
    deflate inflated here, incrementally, with the output capped at
    :data:`MAX_RESPONSE_BYTES`: a body that drips, never ends, or inflates to gigabytes
    stops early, with little memory used.

    Raises:
        _AttemptTooSlow: ``deadline`` (``time.monotonic``) passed while reading.
        requests.exceptions.ConnectionError, requests.exceptions.Timeout: the read failed.
        TokenRequestError: the body is too large or uses an encoding we do not undo.
    """
    raw = response.raw
    read1 = getattr(raw, "read1", None)
    if read1 is not None:  # urllib3 2.x

        def read() -> bytes:
            return bytes(read1(READ_CHUNK, decode_content=False) or b"")

    else:  # urllib3 1.26 has no read1: http.client's response below it does one socket read at a time
        source = raw._fp

        def read() -> bytes:
            if source is None:
                return b""
            data = source.read1(READ_CHUNK)
            if not data:
                # At the end, read() marks http.client's response closed (3.8's read1 does not),
                # so the connection can carry the next request; a body cut short raises here.
                data = source.read()
            return bytes(data or b"")

    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity") and encoding not in _DECODED_ENCODINGS:
        response.close()
        raise _refusal(call, response.status_code, "its Content-Encoding is not gzip or deflate")
    decoder = zlib.decompressobj(32 + zlib.MAX_WBITS) if encoding in _DECODED_ENCODINGS else None
    parts: List[bytes] = masked([])  # masked: the body may hold a token, and locals may be printed
    size = received = 0
    try:
        while True:
            if time.monotonic() > deadline:
                response.close()  # not consumed: the connection is closed, never reused
                raise _AttemptTooSlow(url, seconds)
            chunk = masked(read())
            if not chunk:
                break
            received += len(chunk)
            if decoder is not None:
                chunk = masked(decoder.decompress(chunk, MAX_RESPONSE_BYTES + 1 - size))
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES or received > MAX_RESPONSE_BYTES:
                response.close()
                raise _refusal(call, response.status_code, "its body is larger than %d bytes" % MAX_RESPONSE_BYTES)
            parts.append(chunk)
    except requests.exceptions.RequestException:  # ours, above (requests' errors are OSErrors)
        raise
    except zlib.error:
        response.close()
        raise _refusal(call, response.status_code, "its %s body is corrupt" % encoding) from None
    except (HTTPError, OSError, http.client.HTTPException) as exc:
        response.close()
        if isinstance(exc, (ReadTimeoutError, TimeoutError)) or "timed out" in str(exc):
            timed_out = ReadTimeoutError(None, url, "Read timed out.")  # type: ignore[arg-type]  # no pool
            raise requests.exceptions.ReadTimeout(timed_out) from None
        raise requests.exceptions.ConnectionError(ProtocolError("Connection broken", exc.__class__.__name__)) from None
    if decoder is not None:
        try:
            parts.append(decoder.flush())
        except zlib.error:
            parts = masked([])
    response._content = b"".join(parts)  # what requests stores after reading the body itself
    response._content_consumed = True  # type: ignore[attr-defined]
    release = getattr(raw, "release_conn", None)
    if release is not None:
        release()  # the whole body was read: the connection goes back to the pool


def _refusal(call: CallState, status: int, problem: str) -> TokenRequestError:
    return TokenRequestError(
        "OAuth %s failed: the server answered %d but %s; check the endpoint URL [correlation_id=%s]"
        % (call.what, status, problem, call.correlation_id),
        status_code=status,
        correlation_id=call.correlation_id,
        server_name=call.server_name,
        retryable=False,
    )


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
        self._auths: Dict[str, Tuple[ClientAuth, Optional[JwtBearerGrant]]] = {}

    # -- sessions and the retry policy ----------------------------------------

    def session_for(self, config: OAuthConfig) -> requests.Session:
        """The pooled session for ``config``'s TLS identity (its adapter never retries itself)."""
        return self._session(config)

    def _session(self, config: OAuthConfig) -> requests.Session:
        cert, _ = config.tls_identity
        verify = _verify(config)
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

    def retry_policy(self, config: OAuthConfig) -> TokenRetry:
        """Return a fresh retry state for one call under ``config``'s settings."""
        retries = config.max_retries
        return TokenRetry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            redirect=0,
            raise_on_redirect=False,
            raise_on_status=False,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset(["POST", "PUT", "GET"]),
            respect_retry_after_header=True,
            sleep_fn=self._sleep,
            backoff_base=config.retry_backoff,
            retry_after_cap=config.retry_after_max,
        )

    def close(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.close()

    def reset_after_fork(self) -> None:
        """Forget the parent's sockets and lock in a forked child (the manager calls this)."""
        self._lock = threading.Lock()
        self._sessions = {}
        self._auths = {}

    # -- discovery ------------------------------------------------------------

    def discovery_fetch(
        self, config: OAuthConfig
    ) -> Callable[[str, str, Mapping[str, str], Optional[bytes]], Tuple[int, Mapping[str, str], bytes]]:
        """Return a discovery transport (:data:`oauth_gateway.discovery.Fetch`) for ``config``.

        It uses the pooled session of the config's TLS identity, the same timeouts and
        retry policy as token requests, never follows redirects and never sends
        credentials (no ``Authorization``, no netrc, no custom headers).
        """

        def fetch(
            method: str, url: str, headers: Mapping[str, str], body: Optional[bytes]
        ) -> Tuple[int, Mapping[str, str], bytes]:
            call = self._new_call(config, redact_url(url), _new_correlation_id(), "discovery")  # logs name the URL
            sent = dict(headers)
            sent["User-Agent"] = USER_AGENT

            def build_attempt(attempt: int) -> Tuple[Dict[str, str], Any]:
                return dict(sent), body

            response = self._send(config, url, build_attempt, call, method=method)
            return response.status_code, response.headers, response.content

        return fetch

    # -- client authentication ------------------------------------------------

    def client_auth(self, config: OAuthConfig) -> Tuple[ClientAuth, Optional[JwtBearerGrant]]:
        """Return the :class:`~oauth_gateway.client_auth.ClientAuth` of ``config`` and its jwt-bearer grant (or None).

        Built once per config (a private key is loaded once) and kept.

        Raises:
            ConfigError: the method cannot be built (a bad key, PyJWT missing...).
        """
        found = self._auths.get(config.fingerprint)
        if found is not None:
            return found
        jwt_bearer = config.grant_type == JWT_BEARER_GRANT_TYPE
        method = config.auth_method
        auth = build_client_auth(
            method,
            config.client_id,
            client_secret=config.client_secret or None,
            private_key_path=config.client_private_key_path or None,
            private_key_password=config.client_private_key_password or None,
            alg=config.client_assertion_alg or None,
            kid=config.client_key_id or None,
            audience=config.client_assertion_audience or None,
            # The certificate of the signing key (Entra ID's x5t) is the mTLS one only for tls_client_auth.
            cert_path=(config.client_cert_path or None) if (config.use_mtls or method == "private_key_jwt") else None,
            key_path=(config.client_key_path or None) if config.use_mtls else None,
            assertion_file=None if jwt_bearer else (config.client_assertion_file or None),
        )
        grant = JwtBearerGrant(AssertionFile(config.client_assertion_file, config.client_id)) if jwt_bearer else None
        with self._lock:
            if len(self._auths) >= MAX_CLIENT_AUTHS:
                self._auths.clear()
            self._auths[config.fingerprint] = (auth, grant)
        return auth, grant

    # -- requests -------------------------------------------------------------

    def _new_call(self, config: OAuthConfig, server_name: str, correlation_id: str, what: str) -> CallState:
        total = config.max_retries + 1

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

        return CallState(server_name, correlation_id, what, total, on_retry)

    def client_auth_attempt(self, config: OAuthConfig, form: List[Tuple[str, str]], call: CallState) -> BuildAttempt:
        """Return the ``build_attempt`` that adds client authentication to ``form``.

        The headers and form are built anew for every attempt, so a JWT assertion carries
        a fresh ``jti`` and ``iat`` and an assertion file is read again. The assertion's
        audience comes from ``config.issuer`` (configured or discovered), else the token endpoint.

        Raises:
            ConfigError: from ``build_attempt``: the credential cannot be used (an expired
                assertion file...); the call ends without a retry.
        """
        auth, grant = self.client_auth(config)
        endpoint = config.token_url
        issuer = config.issuer or None

        def build_attempt(attempt: int) -> Tuple[Dict[str, str], List[Tuple[str, str]]]:
            headers = {
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
                "X-Correlation-ID": call.correlation_id,
            }
            headers.update(config.custom_headers)
            now = self._wall_clock()
            added: Dict[str, str] = {}
            if grant is not None and any(name == "grant_type" for name, _ in form):
                grant.apply(added, headers, token_endpoint=endpoint, issuer=issuer, now=now)
            auth.apply(added, headers, token_endpoint=endpoint, issuer=issuer, now=now)
            fields = [
                (name, added.pop(name)) if name == "grant_type" and name in added else (name, value)
                for name, value in form
            ]
            fields.extend(added.items())
            return headers, fields

        return build_attempt

    def _send(
        self, config: OAuthConfig, url: str, build_attempt: BuildAttempt, call: CallState, method: str = "POST"
    ) -> requests.Response:
        """Send attempts until one is final; return its response.

        Our loop, driven by a per-call :class:`TokenRetry`: ``is_retry`` says whether an
        answer is retried, ``increment`` counts (and ends the call when exhausted) and
        ``sleep`` waits (``Retry-After`` first, capped). The last answer is returned as it
        is; the last connection error or timeout is raised.

        Raises:
            requests.exceptions.RequestException: the last attempt failed in transport.
        """
        retry = self.retry_policy(config)
        session = self._session(config)
        cert, _ = config.tls_identity
        # An explicit bundle, passed per call: requests lets REQUESTS_CA_BUNDLE replace verify=True.
        verify = _verify(config)
        deadline = attempt_deadline(config)
        timeout = Timeout(connect=config.connect_timeout, read=config.timeout, total=deadline)
        for _ in range(config.max_retries + 1):  # bounded; the policy normally ends it first
            call.attempts += 1
            # Masked: these locals hold the secret, and tracebacks may print frame locals.
            headers, form = (masked(part) for part in build_attempt(call.attempts))
            headers.setdefault("Accept-Encoding", "gzip, deflate")
            call.sent_at = self._clock()
            started = time.monotonic()  # real time: the deadline bounds real I/O
            try:
                response = session.request(
                    method,
                    url,
                    data=form,
                    headers=headers,
                    auth=_no_auth,
                    cert=cert,
                    verify=verify,
                    timeout=timeout,  # type: ignore[arg-type]  # requests takes urllib3's Timeout as it is
                    allow_redirects=False,
                    stream=True,
                )
                _read_body(response, url, started + deadline, deadline, call)
            except requests.exceptions.RequestException as exc:
                error = _retry_cause(exc)
                if error is None:
                    raise
                following = _increment(retry, url, error=error, method=method)
                if following is None:
                    raise  # exhausted: the last transport error is the result
                retry = following
                self._announce(call, _reason(error))  # a plain reason: "connection refused", "timed out"
                retry.sleep()
                continue
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
            retry = following
            response.close()  # its body is read already: the connection goes back to the pool
            self._announce(call, "HTTP %d" % response.status_code)
            retry.sleep(raw)
        return response

    @staticmethod
    def _announce(call: CallState, reason: str) -> None:
        if call.on_retry is not None:
            call.on_retry(call.attempts + 1, reason)

    def _post(
        self,
        config: OAuthConfig,
        url: str,
        form: List[Tuple[str, str]],
        call: CallState,
        build_attempt: Optional[BuildAttempt] = None,
        method: str = "POST",
    ) -> requests.Response:
        if config.use_mtls:
            # Fail closed: never fall back to a request without the client certificate.
            for path, label, key in (
                (config.client_cert_path, "Client certificate", "OAUTH_CLIENT_CERT_PATH"),
                (config.client_key_path, "Client key", "OAUTH_CLIENT_KEY_PATH"),
            ):
                if not os.path.isfile(path):
                    raise ConfigError("%s not found: %s" % (label, path), "$.oauth_config." + key, "check the path")
        if build_attempt is None:
            build_attempt = self.client_auth_attempt(config, form, call)
        safe = redact_url(url)
        what, server_name, correlation_id = call.what, call.server_name, call.correlation_id
        try:
            return self._send(config, url, build_attempt, call, method)
        # Each error is raised "from None" with the cause's reason in its message: the
        # requests and urllib3 frames under a cause hold the form and headers as locals.
        except requests.exceptions.SSLError as exc:
            raise TransportError(
                "TLS with %s failed for %s (%s); check OAUTH_CA_BUNDLE_PATH and, with mTLS, the client certificate"
                % (safe, server_name, _reason(exc)),
                correlation_id=correlation_id,
                server_name=server_name,
                retryable=False,
            ) from None
        except _AttemptTooSlow as exc:
            raise TransportError(
                "%s to %s did not finish within its deadline of %.1f s for %s after %d attempts "
                "(the body was still arriving); the deadline is OAUTH_CONNECT_TIMEOUT + 2 x OAUTH_TIMEOUT, "
                "check the server" % (what.capitalize(), safe, exc.deadline, server_name, call.attempts),
                correlation_id=correlation_id,
                server_name=server_name,
            ) from None
        except requests.exceptions.RequestException as exc:
            reason = _reason(exc)
            # A read timeout may come back as ConnectionError, not Timeout.
            if isinstance(exc, requests.exceptions.Timeout) or reason == "timed out":
                raise TransportError(
                    "%s to %s timed out for %s after %d attempts (%s); raise OAUTH_TIMEOUT or check the server"
                    % (what.capitalize(), safe, server_name, call.attempts, reason),
                    correlation_id=correlation_id,
                    server_name=server_name,
                ) from None
            raise TransportError(
                "%s to %s failed for %s after %d attempts (%s)"
                % (what.capitalize(), safe, server_name, call.attempts, reason),
                correlation_id=correlation_id,
                server_name=server_name,
            ) from None
        except OSError as exc:  # requests raises a bare OSError for unreadable cert files
            raise TransportError(
                "%s for %s could not start: %s" % (what.capitalize(), server_name, exc.__class__.__name__),
                correlation_id=correlation_id,
                server_name=server_name,
                retryable=False,
            ) from None

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
    ) -> requests.Response:
        """Send one request with the token requests' transport, for a token provider.

        The same session (TLS identity), timeouts, retry policy and no-redirect rule as
        :meth:`request_token`; ``OAUTH_CUSTOM_HEADERS``, ``User-Agent`` and
        ``X-Correlation-ID`` are sent, then ``headers``.

        Returns:
            The final response, whatever its status; a redirect is returned, never followed.

        Raises:
            TransportError: the network or TLS failed after the retries.
            ConfigError: the mTLS files disappeared since the config was loaded.
        """
        call = self._new_call(config, server_name, correlation_id or _new_correlation_id(), "token acquisition")

        def build_attempt(attempt: int) -> Tuple[Dict[str, str], Union[bytes, str, None]]:
            sent = {"Accept": "application/json", "User-Agent": USER_AGENT, "X-Correlation-ID": call.correlation_id}
            sent.update(config.custom_headers)
            sent.update(headers or {})
            return sent, body

        log.debug("Provider request correlation_id=%s for %s", call.correlation_id, server_name)
        return self._post(config, url, [], call, build_attempt, method=method.upper())

    def request_token(
        self,
        config: OAuthConfig,
        server_name: str,
        correlation_id: Optional[str] = None,
        dpop_key: Optional[DPoPKey] = None,
        nonces: Optional[NonceStore] = None,
    ) -> TokenResponse:
        """Ask the token endpoint for a client-credentials token.

        With ``dpop_key`` every attempt carries a fresh DPoP proof (RFC 9449 section 5)
        with the server's latest nonce from ``nonces``; a ``use_dpop_nonce`` answer is
        sent once more with the nonce it carried (outside ``OAUTH_MAX_RETRIES``), and
        the response must say ``token_type`` ``DPoP``.

        Args:
            config: the server's OAuth settings.
            server_name: named in logs and errors.
            correlation_id: sent as ``X-Correlation-ID``; a new one by default.
            dpop_key: the DPoP key when ``OAUTH_DPOP`` is on, else None.
            nonces: where the servers' ``DPoP-Nonce`` values are kept (a new store
                by default, so nothing is remembered between calls).

        Returns:
            The checked response, with ``sent_at`` set to when the attempt that succeeded
            was sent.

        Raises:
            TokenRequestError: the server refused, or answered something that is not a token.
            TokenBindingError: with DPoP, the server answered a token that is not DPoP-bound.
            TransportError: the network or TLS failed.
            ConfigError: the mTLS files disappeared since the config was loaded.
        """
        call = self._new_call(config, server_name, correlation_id or _new_correlation_id(), "token acquisition")
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
        log.debug("Token request correlation_id=%s for %s", call.correlation_id, server_name)
        if dpop_key is None:
            response = self._post(config, config.token_url, form, call)
        else:
            response = self._post_with_dpop(config, form, call, dpop_key, NonceStore() if nonces is None else nonces)
        parsed = parse_token_response(
            response.status_code,
            response.content,
            server_name=server_name,
            correlation_id=call.correlation_id,
            location=response.headers.get("Location"),
            retry_after_refused=call.retry_after_refused,
            redact=masked((config.client_secret,) if config.client_secret else ()),
            dpop=dpop_key is not None,
        )
        return parsed._replace(sent_at=call.sent_at)

    def _post_with_dpop(
        self, config: OAuthConfig, form: List[Tuple[str, str]], call: CallState, key: DPoPKey, nonces: NonceStore
    ) -> requests.Response:
        """POST to the token endpoint with a fresh proof per attempt; answer one nonce challenge."""
        url = config.token_url
        base = self.client_auth_attempt(config, form, call)

        def build_attempt(attempt: int) -> Tuple[Dict[str, str], Union[List[Tuple[str, str]], bytes, str, None]]:
            headers, fields = base(attempt)
            headers[DPOP_HEADER] = key.proof("POST", url, now=self._wall_clock(), nonce=nonces.get(url))
            return headers, fields

        response = self._post(config, url, form, call, build_attempt)
        nonces.update(url, response.headers)
        if token_nonce_challenge(response.status_code, response.headers, _json_object(response.content)) is None:
            return response
        # RFC 9449 section 8: once more with the server's nonce, outside the retry count.
        log.debug("Token endpoint of %s asked for a DPoP nonce; sending once more", call.server_name)
        response.close()
        response = self._post(config, url, form, call, build_attempt)
        nonces.update(url, response.headers)
        return response

    def revoke_token(
        self,
        config: OAuthConfig,
        token: str,
        token_type_hint: Optional[str],
        server_name: str,
        correlation_id: Optional[str] = None,
    ) -> None:
        """Revoke a token at ``OAUTH_REVOCATION_URL`` (RFC 7009).

        Raises:
            TokenRequestError: the server answered with an error.
            TransportError: the network or TLS failed.
        """
        token = masked(token)  # frame locals may be printed with a traceback
        call = self._new_call(config, server_name, correlation_id or _new_correlation_id(), "token revocation")
        form = masked([("token", token)])
        if token_type_hint:
            form.append(("token_type_hint", token_type_hint))
        log.debug("Revocation request correlation_id=%s for %s", call.correlation_id, server_name)
        response = self._post(config, config.revocation_url, form, call)
        if response.status_code == 200:
            return
        raise _error_from_response(
            response.status_code,
            response.content,
            "OAuth token revocation failed",
            server_name,
            call.correlation_id,
            response.headers.get("Location"),
            call.retry_after_refused,
            redact=masked(tuple(secret for secret in (config.client_secret, token) if secret)),
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


def _json_object(body: bytes) -> Optional[Dict[str, Any]]:
    def refuse(value: str) -> Any:
        raise ValueError(value)

    try:
        data: Any = loads_bounded(body.decode("utf-8"), parse_constant=refuse)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


# RFC 6749 section 5.2: error codes and descriptions use %x20-21 / %x23-5B / %x5D-7E.
_ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}\Z")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: RFC 6750 section 2.1: the characters of a bearer token (b64token).
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*\Z")
#: RFC 6749 section 3.3: scope tokens of %x21 / %x23-5B / %x5D-7E, separated by spaces.
_SCOPE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*\Z")


def _short(value: Any, redact: Sequence[str] = (), limit: int = MAX_DESCRIPTION) -> Optional[str]:
    """Server-provided text made safe to repeat: one line, at most ``limit`` long, our secrets removed."""
    if not isinstance(value, str):
        return None
    value = value[: limit * 4]  # the rest is never shown: no work on a megabyte
    text = " ".join(_UNPRINTABLE.sub(" ", value).split())
    for secret in redact:
        for form in {secret, quote_plus(secret)}:
            if len(form) >= 4:
                text = text.replace(form, "***")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def safe_text(value: Any, limit: int = MAX_DESCRIPTION) -> str:
    """Server-provided text made safe for a message or a log line.

    Control characters (ESC sequences, CR/LF that would forge a log line) become
    spaces, runs of spaces one, and the text is cut to ``limit`` characters.
    """
    return _short(value if isinstance(value, str) else str(value), (), limit) or ""


def _safe_uri(value: Any, redact: Sequence[str] = ()) -> Optional[str]:
    """A server-provided URI (``Location``, ``error_uri``) fit to repeat: redacted, one line, short."""
    if not isinstance(value, str):
        return None
    return _short(redact_url(_UNPRINTABLE.sub("", value[: MAX_URI * 4])), redact, MAX_URI)


def _error_from_response(
    status: int,
    body: bytes,
    prefix: str,
    server_name: Optional[str],
    correlation_id: Optional[str],
    location: Optional[str] = None,
    retry_after_refused: Optional[float] = None,
    redact: Sequence[str] = (),
) -> TokenRequestError:
    body, redact = masked(body), masked(redact)  # frame locals may be printed with a traceback
    if 300 <= status < 400:
        shown = _safe_uri(location, redact)
        where = " to %s" % shown if shown else ""
        return TokenRequestError(
            "%s: the server answered %d, a redirect%s, which is never followed with client credentials; "
            "set the URL to the final endpoint" % (prefix, status, where),
            status_code=status,
            correlation_id=correlation_id,
            server_name=server_name,
            retryable=False,
        )
    data = masked(_json_object(body) or {})
    code = data.get("error")
    if not isinstance(code, str) or not _ERROR_CODE.match(code) or any(code == secret for secret in redact):
        code = None  # not an RFC 6749 code: never repeated
    description = _short(data.get("error_description"), redact)
    uri = _safe_uri(data.get("error_uri"), redact)
    message = "%s: %s" % (prefix, code or "HTTP %d" % status)
    if description:
        message += " (%s)" % description
    if code is None and status < 400:
        message = "%s: unexpected HTTP %d" % (prefix, status)
    if retry_after_refused is not None:
        message += "; the server asked to wait %.0f s, longer than OAUTH_RETRY_AFTER_MAX" % retry_after_refused
    if correlation_id:
        message += " [correlation_id=%s]" % correlation_id
    return error_class_for(code)(
        message,
        error=code,
        error_description=description,
        error_uri=uri,
        status_code=status,
        correlation_id=correlation_id,
        server_name=server_name,
    )


def _parse_expires_in(value: Any) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("a boolean")
    if isinstance(value, str):
        value = float(value.strip())
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError("not a number")
    seconds = float(value)
    if math.isnan(seconds) or seconds <= 0:
        raise ValueError("not a positive number")
    return min(seconds, MAX_TOKEN_LIFETIME)


def parse_token_response(
    status: int,
    body: bytes,
    server_name: Optional[str] = None,
    correlation_id: Optional[str] = None,
    location: Optional[str] = None,
    retry_after_refused: Optional[float] = None,
    redact: Sequence[str] = (),
    dpop: bool = False,
) -> TokenResponse:
    """Check a token endpoint response (RFC 6749 section 5.1) and return its fields.

    Args:
        status: the HTTP status code.
        body: the raw response body.
        redact: strings of the request (the client secret) that server-provided text
            may echo; they are replaced by ``***`` in messages.
        dpop: the request carried a DPoP proof: the ``token_type`` must be ``DPoP``.

    Returns:
        The access token, its type (``"Bearer"``, or ``"DPoP"`` with ``dpop``), lifetime
        in seconds (None when absent; at most :data:`MAX_TOKEN_LIFETIME`) and the
        granted scope (None when absent).

    Raises:
        TokenRequestError: for an error status or a body that is not a usable token.
        TokenBindingError: with ``dpop``, a ``token_type`` other than ``DPoP``.
    """
    prefix = "OAuth token request failed"
    body, redact = masked(body), masked(redact)  # frame locals may be printed with a traceback
    if status != 200:
        raise _error_from_response(
            status, body, prefix, server_name, correlation_id, location, retry_after_refused, redact
        )

    def bad(problem: str) -> TokenRequestError:
        suffix = " [correlation_id=%s]" % correlation_id if correlation_id else ""
        return TokenRequestError(
            "%s: the token endpoint answered 200 but %s%s" % (prefix, problem, suffix),
            status_code=status,
            correlation_id=correlation_id,
            server_name=server_name,
            retryable=False,
        )

    data = masked(_json_object(body))
    if data is None:
        raise bad("its body is not a JSON object; check OAUTH_TOKEN_URL points at the token endpoint")
    if "error" in data:
        raise _error_from_response(400, body, prefix, server_name, correlation_id, redact=redact)
    access_token = masked(data.get("access_token"))
    if not isinstance(access_token, str) or not access_token.strip():
        raise bad("access_token is missing or empty")
    if not _B64TOKEN.match(access_token):
        # Never repeated: CR/LF would reach a header or a child's environment.
        raise bad("access_token holds characters outside RFC 6750's b64token syntax ([A-Za-z0-9-._~+/]+=*)")
    token_type = data.get("token_type")
    if dpop:
        check_dpop_token_type(token_type)
    elif not isinstance(token_type, str) or token_type.lower() != "bearer":
        shown = token_type if isinstance(token_type, str) and len(token_type) < 20 else type(token_type).__name__
        raise bad("token_type is %r, not Bearer; only bearer tokens are supported" % shown)
    try:
        expires_in = _parse_expires_in(data.get("expires_in"))
    except (ValueError, OverflowError):
        raise bad("expires_in is not a positive number of seconds") from None
    scope = data.get("scope")
    if scope is not None and not isinstance(scope, str):
        raise bad("scope is not a space-separated string")
    if scope is not None and scope != "" and (len(scope) > MAX_SCOPE_LENGTH or not _SCOPE.match(scope)):
        raise bad(
            "scope is not an RFC 6749 scope (printable ASCII tokens separated by spaces, "
            "at most %d characters)" % MAX_SCOPE_LENGTH
        )
    # A plain str for the caller.
    return TokenResponse(str(access_token), DPOP_TOKEN_TYPE if dpop else "Bearer", expires_in, scope)
