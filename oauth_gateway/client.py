"""Token and revocation requests: the only module that calls requests.

Sessions are pooled per TLS identity and retry policy, so connections are reused.
Retries run inside urllib3 (a :class:`urllib3.util.Retry` subclass mounted on the
session's adapter) with our delay schedule, a cap on ``Retry-After``, ``POST`` in
``allowed_methods`` and the manager's injectable ``sleep``. Redirects are never
followed on credential requests. requests and urllib3 exceptions become ours here.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import os
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple
from urllib.parse import quote_plus, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, ResponseError, SSLError
from urllib3.util.retry import Retry

from ._version import __version__
from .config import OAuthConfig
from .exceptions import ConfigError, TokenRequestError, TransportError, error_class_for

log = logging.getLogger("oauth_gateway")

USER_AGENT = "oauth-gateway/%s python-requests/%s" % (__version__, requests.__version__)
#: Statuses retried with backoff (RFC 6585 429 and transient 5xx).
RETRY_STATUSES = frozenset([429, 500, 502, 503, 504])
#: Longest lifetime believed from ``expires_in``; longer tokens are refreshed daily anyway.
MAX_TOKEN_LIFETIME = 86400.0
#: Longest ``error_description`` carried into an exception message.
MAX_DESCRIPTION = 200
#: Connections kept per pool; above this, extra parallel fetches open short-lived ones.
POOL_MAXSIZE = 32


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


# Who the current thread's request is for, so retry logs can name the server.
# Set and cleared around each call by TokenClient; urllib3 runs the retries in this thread.
_call = threading.local()


def _new_correlation_id() -> str:
    return uuid.uuid4().hex[:8]


def _safe_url(url: str) -> str:
    """The URL without query, fragment or user info, fit for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = "%s:%d" % (host, parts.port)
    return "%s://%s%s" % (parts.scheme, host, parts.path)


def basic_credentials(client_id: str, client_secret: str) -> str:
    """Return the ``Authorization`` value for client_secret_basic (RFC 6749 section 2.3.1).

    The id and secret are form-url-encoded before base64, which most clients forget:
    a secret containing ``:`` or ``%`` only works this way.
    """
    raw = "%s:%s" % (quote_plus(client_id), quote_plus(client_secret))
    return "Basic " + base64.b64encode(raw.encode("utf-8")).decode("ascii")


def _no_auth(request):
    """Stops requests from adding ``~/.netrc`` credentials to a credential request."""
    return request


class _TokenRetry(Retry):
    """urllib3 Retry with our backoff schedule, a Retry-After cap and an injected sleep.

    The same subclass works on urllib3 1.26 and 2.x: ``new()`` carries our extra
    attributes, and only public hooks (``increment``, ``sleep``, ``get_backoff_time``)
    are overridden.
    """

    def __init__(self, *args, sleep_fn=None, backoff_base=2.0, retry_after_cap=60.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.sleep_fn = sleep_fn
        self.backoff_base = backoff_base
        self.retry_after_cap = retry_after_cap

    def new(self, **kw):
        kw.setdefault("sleep_fn", self.sleep_fn)
        kw.setdefault("backoff_base", self.backoff_base)
        kw.setdefault("retry_after_cap", self.retry_after_cap)
        return super().new(**kw)

    def get_backoff_time(self) -> float:
        # 2 s, 4 s, 8 s: the first retry already waits (urllib3's own schedule starts at 0).
        attempts = len(self.history)
        if attempts == 0:
            return 0.0
        return self.backoff_base * (2 ** (attempts - 1))

    def _retry_after(self, response) -> Optional[float]:
        try:
            return self.get_retry_after(response)
        except Exception:  # an unparsable Retry-After falls back to our own schedule
            return None

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if response is not None:
            retry_after = self._retry_after(response)
            if retry_after is not None and retry_after > self.retry_after_cap:
                # Give the response back at once: waiting longer than the cap helps nobody.
                _call.retry_after_refused = retry_after
                raise MaxRetryError(_pool, url, ResponseError("Retry-After above the cap"))
        if isinstance(error, SSLError):
            # A certificate problem does not go away by asking again.
            raise MaxRetryError(_pool, url, error)
        new = super().increment(method, url, response=response, error=error, _pool=_pool, _stacktrace=_stacktrace)
        if response is not None:
            reason = "HTTP %d" % response.status
        else:
            reason = error.__class__.__name__ if error is not None else "error"
        on_retry = getattr(_call, "on_retry", None)
        if on_retry is not None:
            on_retry(len(new.history) + 1, reason)
        return new

    def sleep(self, response=None) -> None:
        delay = None
        if response is not None and self.respect_retry_after_header:
            delay = self._retry_after(response)
        if delay is None:
            delay = self.get_backoff_time()
        if delay > 0:
            self.sleep_fn(delay)
        clock = getattr(_call, "clock", None)
        if clock is not None:
            _call.sent_at = clock()  # the next attempt leaves now


class TokenClient:
    """Sends token and revocation requests over pooled sessions. Thread-safe.

    Args:
        sleep: called with the seconds to wait between retries (``time.sleep``).
        clock: monotonic seconds; the send time of each attempt is read from it.
        on_retry: called as ``on_retry(server_name, attempt, total, reason)`` before each retry.
    """

    def __init__(
        self,
        sleep: Callable[[float], None],
        on_retry: Optional[Callable[..., None]] = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._sleep = sleep
        self._clock = clock
        self._on_retry = on_retry
        self._lock = threading.Lock()
        self._sessions: Dict[Tuple, requests.Session] = {}

    # -- sessions -------------------------------------------------------------

    def _session(self, config: OAuthConfig) -> requests.Session:
        cert, verify = config.tls_identity
        key = (cert, verify, config.max_retries, config.retry_backoff, config.retry_after_max)
        session = self._sessions.get(key)
        if session is not None:
            return session
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                session = requests.Session()
                session.cert = cert
                session.verify = verify
                retries = config.max_retries
                retry = _TokenRetry(
                    total=retries,
                    connect=retries,
                    read=retries,
                    status=retries,
                    redirect=0,
                    raise_on_redirect=False,
                    raise_on_status=False,
                    status_forcelist=RETRY_STATUSES,
                    allowed_methods=frozenset(["POST"]),
                    respect_retry_after_header=True,
                    sleep_fn=self._sleep,
                    backoff_base=config.retry_backoff,
                    retry_after_cap=config.retry_after_max,
                )
                adapter = HTTPAdapter(max_retries=retry, pool_maxsize=POOL_MAXSIZE)
                session.mount("https://", adapter)
                session.mount("http://", adapter)
                self._sessions[key] = session
            return session

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

    # -- requests -------------------------------------------------------------

    def _post(
        self,
        config: OAuthConfig,
        url: str,
        form: List[Tuple[str, str]],
        server_name: str,
        correlation_id: str,
        what: str,
    ) -> requests.Response:
        if config.use_mtls:
            # Fail closed: never fall back to a request without the client certificate.
            for path, label, key in (
                (config.client_cert_path, "Client certificate", "OAUTH_CLIENT_CERT_PATH"),
                (config.client_key_path, "Client key", "OAUTH_CLIENT_KEY_PATH"),
            ):
                if not os.path.isfile(path):
                    raise ConfigError("%s not found: %s" % (label, path), "$.oauth_config." + key, "check the path")
        headers = {
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            "X-Correlation-ID": correlation_id,
        }
        headers.update(config.custom_headers)
        method = config.auth_method
        if method == "client_secret_basic":
            headers["Authorization"] = basic_credentials(config.client_id, config.client_secret)
        else:
            form.append(("client_id", config.client_id))
            if method == "client_secret_post":
                form.append(("client_secret", config.client_secret))
        total = config.max_retries + 1

        def on_retry(attempt, reason):
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

        _call.on_retry = on_retry
        _call.retry_after_refused = None
        _call.clock = self._clock
        _call.sent_at = self._clock()
        safe = _safe_url(url)
        try:
            cert, verify = config.tls_identity
            return self._session(config).post(
                url,
                data=form,
                headers=headers,
                auth=_no_auth,
                # Passed per call: requests lets REQUESTS_CA_BUNDLE override a Session's verify.
                cert=cert,
                verify=verify,
                timeout=(config.connect_timeout, config.timeout),
                allow_redirects=False,
            )
        except requests.exceptions.SSLError as exc:
            raise TransportError(
                "TLS with %s failed for %s (%s); check OAUTH_CA_BUNDLE_PATH and, with mTLS, the client certificate"
                % (safe, server_name, _reason(exc)),
                correlation_id=correlation_id,
                server_name=server_name,
                retryable=False,
            ) from exc
        except requests.exceptions.RequestException as exc:
            reason = _reason(exc)
            # requests reports retries exhausted by read timeouts as ConnectionError, not Timeout.
            if isinstance(exc, requests.exceptions.Timeout) or reason == "timed out":
                raise TransportError(
                    "%s to %s timed out for %s after %d attempts (%s); raise OAUTH_TIMEOUT or check the server"
                    % (what.capitalize(), safe, server_name, total, reason),
                    correlation_id=correlation_id,
                    server_name=server_name,
                ) from exc
            raise TransportError(
                "%s to %s failed for %s after %d attempts (%s)" % (what.capitalize(), safe, server_name, total, reason),
                correlation_id=correlation_id,
                server_name=server_name,
            ) from exc
        except OSError as exc:  # requests raises a bare OSError for unreadable cert files
            raise TransportError(
                "%s for %s could not start: %s" % (what.capitalize(), server_name, exc.__class__.__name__),
                correlation_id=correlation_id,
                server_name=server_name,
                retryable=False,
            ) from exc
        finally:
            _call.on_retry = _call.clock = None

    def request_token(
        self, config: OAuthConfig, server_name: str, correlation_id: Optional[str] = None
    ) -> TokenResponse:
        """Ask the token endpoint for a client-credentials token.

        Args:
            config: the server's OAuth settings.
            server_name: named in logs and errors.
            correlation_id: sent as ``X-Correlation-ID``; a new one by default.

        Returns:
            The checked response.

        Raises:
            TokenRequestError: the server refused, or answered something that is not a token.
            TransportError: the network or TLS failed.
            ConfigError: the mTLS files disappeared since the config was loaded.
        """
        correlation_id = correlation_id or _new_correlation_id()
        form: List[Tuple[str, str]] = [("grant_type", config.grant_type)]
        if config.scope:
            form.append(("scope", config.scope))
        if config.audience:
            form.append(("audience", config.audience))
        if config.organization:
            form.append(("organization", config.organization))
        for resource in config.resources:
            form.append(("resource", resource))
        form.extend(config.additional_params)
        log.debug("Token request correlation_id=%s for %s", correlation_id, server_name)
        response = self._post(config, config.token_url, form, server_name, correlation_id, "token acquisition")
        sent_at = _call.sent_at
        return parse_token_response(
            response.status_code,
            response.content,
            server_name=server_name,
            correlation_id=correlation_id,
            location=response.headers.get("Location"),
            retry_after_refused=getattr(_call, "retry_after_refused", None),
            redact=(config.client_secret,) if config.client_secret else (),
        )._replace(sent_at=sent_at)

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
        correlation_id = correlation_id or _new_correlation_id()
        form = [("token", token)]
        if token_type_hint:
            form.append(("token_type_hint", token_type_hint))
        log.debug("Revocation request correlation_id=%s for %s", correlation_id, server_name)
        response = self._post(config, config.revocation_url, form, server_name, correlation_id, "token revocation")
        if response.status_code == 200:
            return
        raise _error_from_response(
            response.status_code,
            response.content,
            "OAuth token revocation failed",
            server_name,
            correlation_id,
            response.headers.get("Location"),
            getattr(_call, "retry_after_refused", None),
            redact=tuple(secret for secret in (config.client_secret, token) if secret),
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
    return cause.__class__.__name__


def _json_object(body: bytes) -> Optional[Dict[str, Any]]:
    def refuse(value):
        raise ValueError(value)

    try:
        data = json.loads(body.decode("utf-8"), parse_constant=refuse)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


# RFC 6749 section 5.2: error codes and descriptions use %x20-21 / %x23-5B / %x5D-7E.
_ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}\Z")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


def _short(value: Any, redact: Sequence[str] = ()) -> Optional[str]:
    """Server-provided text made safe to repeat: one line, at most MAX_DESCRIPTION long, our secrets removed."""
    if not isinstance(value, str):
        return None
    value = " ".join(_UNPRINTABLE.sub(" ", value).split())
    for secret in redact:
        for form in {secret, quote_plus(secret)}:
            if len(form) >= 4:
                value = value.replace(form, "***")
    return value if len(value) <= MAX_DESCRIPTION else value[: MAX_DESCRIPTION - 3] + "..."


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
    if 300 <= status < 400:
        where = " to %s" % _safe_url(location) if location else ""
        return TokenRequestError(
            "%s: the server answered %d, a redirect%s, which is never followed with client credentials; "
            "set the URL to the final endpoint" % (prefix, status, where),
            status_code=status,
            correlation_id=correlation_id,
            server_name=server_name,
            retryable=False,
        )
    data = _json_object(body) or {}
    code = data.get("error")
    if not isinstance(code, str) or not _ERROR_CODE.match(code) or any(code == secret for secret in redact):
        code = None  # not an RFC 6749 code: never repeated
    description = _short(data.get("error_description"), redact)
    uri = data.get("error_uri") if isinstance(data.get("error_uri"), str) else None
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
    value = float(value)
    if math.isnan(value) or value <= 0:
        raise ValueError("not a positive number")
    return min(value, MAX_TOKEN_LIFETIME)


def parse_token_response(
    status: int,
    body: bytes,
    server_name: Optional[str] = None,
    correlation_id: Optional[str] = None,
    location: Optional[str] = None,
    retry_after_refused: Optional[float] = None,
    redact: Sequence[str] = (),
) -> TokenResponse:
    """Check a token endpoint response (RFC 6749 section 5.1) and return its fields.

    Args:
        status: the HTTP status code.
        body: the raw response body.
        redact: strings of the request (the client secret) that server-provided text
            may echo; they are replaced by ``***`` in messages.

    Returns:
        The access token, its type (``"Bearer"``), lifetime in seconds (None when absent;
        at most :data:`MAX_TOKEN_LIFETIME`) and the granted scope (None when absent).

    Raises:
        TokenRequestError: for an error status or a body that is not a usable token.
    """
    prefix = "OAuth token request failed"
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

    data = _json_object(body)
    if data is None:
        raise bad("its body is not a JSON object; check OAUTH_TOKEN_URL points at the token endpoint")
    if "error" in data:
        raise _error_from_response(400, body, prefix, server_name, correlation_id, redact=redact)
    access_token = data.get("access_token")
    if not isinstance(access_token, str) or not access_token.strip():
        raise bad("access_token is missing or empty")
    token_type = data.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        shown = token_type if isinstance(token_type, str) and len(token_type) < 20 else type(token_type).__name__
        raise bad("token_type is %r, not Bearer; only bearer tokens are supported" % shown)
    try:
        expires_in = _parse_expires_in(data.get("expires_in"))
    except (ValueError, OverflowError):
        raise bad("expires_in is not a positive number of seconds") from None
    scope = data.get("scope")
    if scope is not None and not isinstance(scope, str):
        raise bad("scope is not a space-separated string")
    return TokenResponse(access_token, "Bearer", expires_in, scope)

