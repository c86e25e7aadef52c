"""TokenEndpoint: where token requests for one resolved config go, and how.

Built once per resolved :class:`~oauth_gateway.config.OAuthConfig` by the token client
(requests-oauth2client's endpoint object): the URLs, the pooled session of the config's
TLS identity, the ``(connect, read)`` timeouts and the per-attempt deadline, the retry
template (a :class:`TokenRetry`, immutable, so each call starts from it), the headers
every attempt carries and the client authentication. :mod:`oauth_gateway.client` sends
what an endpoint describes; this module sends nothing.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional, Tuple

from urllib3.util import Timeout
from urllib3.util.retry import Retry

from ._helpers import masked, redact_url
from ._workload import Fetch, assertion_source
from .client_auth import (
    JWT_BEARER_GRANT_TYPE,
    AssertionFile,
    ClientAssertion,
    ClientAuth,
    JwtBearerGrant,
    build_client_auth,
)
from .config import OAuthConfig

if TYPE_CHECKING:
    import requests

#: Statuses retried with backoff (RFC 6585 429 and transient 5xx).
_RETRY_STATUSES = frozenset([429, 500, 502, 503, 504])


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

    @classmethod
    def for_config(cls, config: OAuthConfig, sleep: Callable[[float], None]) -> TokenRetry:
        """The policy of ``config``'s ``OAUTH_MAX_RETRIES``, ``OAUTH_RETRY_BACKOFF`` and ``OAUTH_RETRY_AFTER_MAX``."""
        retries = config.max_retries
        return cls(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            redirect=0,
            raise_on_redirect=False,
            raise_on_status=False,
            status_forcelist=_RETRY_STATUSES,
            allowed_methods=frozenset(["POST", "PUT", "GET"]),
            respect_retry_after_header=True,
            sleep_fn=sleep,
            backoff_base=config.retry_backoff,
            retry_after_cap=config.retry_after_max,
        )

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


class TokenEndpoint:
    """Where and how one resolved config's token requests go. Immutable; thread-safe.

    Attributes:
        url: the token endpoint (``OAUTH_TOKEN_URL``, configured or discovered).
        revocation_url: ``OAUTH_REVOCATION_URL``, or ``""``.
        issuer: the authorization server's issuer, or None (client assertions' audience).
        session: the pooled session of the config's TLS identity (shared with other
            endpoints of that identity; its adapter never retries).
        cert: the client certificate pair passed with every request, or None.
        verify: the CA bundle passed with every request (never ``True``: requests lets
            ``REQUESTS_CA_BUNDLE`` replace that).
        timeout: urllib3's ``Timeout`` (connect, read and the attempt's total).
        deadline: seconds one attempt may take, body included (:func:`attempt_deadline`).
        retry: the retry template; a call's state starts from it.
        headers: what every credential request carries (``Accept``, ``User-Agent``,
            ``OAUTH_CUSTOM_HEADERS``); a copy is made per attempt.
        client_auth: how the client proves itself, or None for a request without
            credentials (discovery).
        grant: the jwt-bearer grant's assertion source, or None.
        mtls_files: ``(path, label, config key)`` of the mTLS files checked before
            each call (fail closed: never a request without the certificate).
        redact: the secrets a server may echo (the client secret), never repeated in a message.
    """

    __slots__ = (
        "url",
        "revocation_url",
        "issuer",
        "session",
        "cert",
        "verify",
        "timeout",
        "deadline",
        "_timeouts",
        "retry",
        "headers",
        "client_auth",
        "grant",
        "mtls_files",
        "redact",
    )

    url: str
    revocation_url: str
    issuer: Optional[str]
    session: requests.Session
    cert: Optional[Tuple[str, str]]
    verify: str
    timeout: Timeout
    deadline: float
    _timeouts: Tuple[float, float]  # (connect, read), for an attempt cut short by the call's deadline
    retry: TokenRetry
    headers: Mapping[str, str]
    client_auth: Optional[ClientAuth]
    grant: Optional[JwtBearerGrant]
    mtls_files: Tuple[Tuple[str, str, str], ...]
    redact: Tuple[str, ...]

    def __init__(
        self,
        config: OAuthConfig,
        session: requests.Session,
        verify: str,
        sleep: Callable[[float], None],
        headers: Mapping[str, str],
        credentials: bool = True,
        fetch: Optional[Fetch] = None,
    ) -> None:
        """Describe ``config``'s endpoint; with ``credentials``, build its client authentication.

        Args:
            config: a resolved config (its token endpoint known, unless ``credentials`` is False).
            session: the pooled session of the config's TLS identity.
            verify: the CA bundle path.
            sleep: what the retry policy waits with.
            headers: the headers every request carries; ``OAUTH_CUSTOM_HEADERS`` are added
                when ``credentials`` (discovery sends neither).
            credentials: False for a transport that never authenticates (discovery).
            fetch: the HTTP transport of assertion sources that ask an endpoint
                (``OAUTH_CLIENT_ASSERTION_SOURCE`` github_actions, gcp_metadata).

        Raises:
            ConfigError: the client authentication cannot be built (a bad key, PyJWT missing...).
        """
        sets = object.__setattr__
        sent: Dict[str, str] = dict(headers)
        auth: Optional[ClientAuth] = None
        grant: Optional[JwtBearerGrant] = None
        if credentials:
            sent.update(config.custom_headers)
            auth, grant = _client_auth(config, fetch)
        sets(self, "url", config.token_url)
        sets(self, "revocation_url", config.revocation_url)
        sets(self, "issuer", config.issuer or None)
        sets(self, "session", session)
        sets(self, "cert", config.tls_identity[0])
        sets(self, "verify", verify)
        deadline = attempt_deadline(config)
        sets(self, "deadline", deadline)
        sets(self, "timeout", Timeout(connect=config.connect_timeout, read=config.timeout, total=deadline))
        sets(self, "_timeouts", (float(config.connect_timeout), float(config.timeout)))
        sets(self, "retry", TokenRetry.for_config(config, sleep))
        sets(self, "headers", masked(sent))  # custom headers may hold an API key
        sets(self, "client_auth", auth)
        sets(self, "grant", grant)
        files: Tuple[Tuple[str, str, str], ...] = ()
        if config.use_mtls:
            files = (
                (config.client_cert_path, "Client certificate", "OAUTH_CLIENT_CERT_PATH"),
                (config.client_key_path, "Client key", "OAUTH_CLIENT_KEY_PATH"),
            )
        sets(self, "mtls_files", files)
        sets(self, "redact", masked((config.client_secret,) if config.client_secret else ()))

    def timeout_within(self, seconds: float) -> Timeout:
        """The attempt's ``Timeout``, its total cut to ``seconds`` when less is left of the call."""
        if seconds >= self.deadline:
            return self.timeout
        connect, read = self._timeouts
        return Timeout(connect=min(connect, seconds), read=read, total=seconds)

    @property
    def max_attempts(self) -> int:
        """The first attempt plus ``OAUTH_MAX_RETRIES``."""
        return int(self.retry.total or 0) + 1

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("TokenEndpoint is immutable")

    def __repr__(self) -> str:
        return "TokenEndpoint(url=%r, client_auth=%r, cert=%r)" % (
            redact_url(self.url),
            self.client_auth,
            self.cert,
        )


def _client_auth(config: OAuthConfig, fetch: Optional[Fetch]) -> Tuple[ClientAuth, Optional[JwtBearerGrant]]:
    """The client authentication of ``config`` and its jwt-bearer grant (or None).

    Raises:
        ConfigError: the method cannot be built (a bad key, PyJWT missing...).
    """
    jwt_bearer = config.grant_type == JWT_BEARER_GRANT_TYPE
    method = config.auth_method
    spec = dict(config.client_assertion_source)
    source = assertion_source(spec, fetch) if spec else None
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
        assertion_file=None if jwt_bearer or source else (config.client_assertion_file or None),
        assertion_source=None if jwt_bearer else source,
    )
    grant: Optional[JwtBearerGrant] = None
    if jwt_bearer:
        grant = JwtBearerGrant(
            ClientAssertion(source, config.client_id)
            if source
            else AssertionFile(config.client_assertion_file, config.client_id)
        )
    return auth, grant


__all__ = ("TokenEndpoint",)
