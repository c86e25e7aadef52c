"""How the client proves itself to the token endpoint, once per request attempt.

Each method is a small object with one call, :meth:`ClientAuth.apply`, which adds its
fields to the form and headers of ONE token request attempt. The caller calls it again
for every attempt, retries included, so signed assertions always carry a fresh ``jti``
and ``iat`` and a platform-issued assertion file is re-read each time.

Methods: :class:`ClientSecretBasic` (RFC 6749 section 2.3.1), :class:`ClientSecretPost`,
:class:`TlsClientAuth` (RFC 8705), :class:`PrivateKeyJwt` and :class:`ClientSecretJwt`
(RFC 7523 section 2.2, OpenID Connect Core section 9), :class:`AssertionFile` (a JWT the
platform issued to the workload), and :class:`JwtBearerGrant` (RFC 7523 section 2.1).

JWT signing needs PyJWT with its crypto extra (``pip install 'oauth-gateway[jwt]'``); it
is imported only when a JWT method is built, and its absence is a :class:`ConfigError`
that names the extra. Reading an assertion file needs only the standard library.

Secrets (client secrets, private keys, assertions) never appear in a ``repr``, a message
or a log line: objects show the ``client_id``, file paths and key types only.
"""

from __future__ import annotations

import abc
import base64
import logging
import secrets
import threading
from typing import Any, Callable, Dict, FrozenSet, Iterable, Mapping, NamedTuple, Optional, Set, Tuple
from urllib.parse import quote_plus

from ._helpers import redact_url
from ._jsonpath import join as _join_path
from ._jwt import SIGNING_ALGORITHMS, PrivateKey, certificate_thumbprints, import_jwt, load_private_key, sign_jwt
from ._workload import ASSERTION_MIN_REMAINING, AssertionSource, FileSource
from .exceptions import ConfigError

log = logging.getLogger(__name__)

#: RFC 7523 section 2.2: ``client_assertion_type`` for a JWT client assertion.
JWT_BEARER_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: RFC 7523 section 2.1: ``grant_type`` of the JWT bearer grant.
JWT_BEARER_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: Seconds between ``iat`` and ``exp`` of the assertions we sign (the upper bound too).
ASSERTION_LIFETIME = 60
#: An assertion file whose ``exp`` is closer than this is treated as expired: it would
#: expire in flight, and a healthy platform rotates its files long before.
ASSERTION_FILE_MIN_REMAINING = ASSERTION_MIN_REMAINING


# --------------------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------------------


class ClientAuth(abc.ABC):
    """How the client proves itself: adds its fields to one token request attempt.

    Implementations are immutable after construction and thread-safe: ``apply`` keeps
    no per-call state on the object.

    Attributes:
        method: The RFC 8414 ``token_endpoint_auth_method`` name.
        client_id: The client's id, or None when the method does not need one.
    """

    method = ""
    client_id: Optional[str] = None

    @abc.abstractmethod
    def apply(
        self,
        form: Dict[str, str],
        headers: Dict[str, str],
        *,
        token_endpoint: str,
        issuer: Optional[str],
        now: float,
    ) -> None:
        """Add this method's fields to ``form`` and ``headers`` of one request attempt.

        Called for every attempt, retries included.

        Args:
            form: The form body being built; changed in place.
            headers: The request headers being built; changed in place.
            token_endpoint: The URL the request goes to.
            issuer: The authorization server's issuer identifier, or None when unknown.
            now: Wall-clock seconds since the epoch (``time.time()``), for ``iat``/``exp``.

        Raises:
            ConfigError: the credential cannot be used (an expired assertion file, ...).
        """

    def __repr__(self) -> str:
        return "%s(client_id=%r)" % (type(self).__name__, self.client_id)


# --------------------------------------------------------------------------------------
# Shared secrets and mTLS
# --------------------------------------------------------------------------------------


def basic_credentials(client_id: str, client_secret: str) -> str:
    """Return the ``Authorization`` value for client_secret_basic (RFC 6749 section 2.3.1).

    The id and secret are form-url-encoded before base64, which most clients forget: a
    secret containing ``:`` or ``%`` only works this way.
    """
    raw = "%s:%s" % (quote_plus(client_id), quote_plus(client_secret))
    return "Basic " + base64.b64encode(raw.encode("utf-8")).decode("ascii")


class ClientSecretBasic(ClientAuth):
    """client_secret_basic: the form-encoded id and secret in HTTP Basic. Thread-safe."""

    method = "client_secret_basic"

    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id = client_id
        self._secret = client_secret

    def apply(  # noqa: D102
        self, form: Dict[str, str], headers: Dict[str, str], *, token_endpoint: str, issuer: Optional[str], now: float
    ) -> None:
        headers["Authorization"] = basic_credentials(self.client_id or "", self._secret)


class ClientSecretPost(ClientAuth):
    """client_secret_post: ``client_id`` and ``client_secret`` in the form. Thread-safe."""

    method = "client_secret_post"

    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id = client_id
        self._secret = client_secret

    def apply(  # noqa: D102
        self, form: Dict[str, str], headers: Dict[str, str], *, token_endpoint: str, issuer: Optional[str], now: float
    ) -> None:
        form["client_id"] = self.client_id or ""
        form["client_secret"] = self._secret


class TlsClientAuth(ClientAuth):
    """tls_client_auth (RFC 8705): ``client_id`` in the form; the TLS layer proves the rest.

    The certificate is not sent by ``apply``: the caller puts :attr:`cert` on the session
    (``requests``' ``cert=(cert_path, key_path)``). Thread-safe.

    Attributes:
        cert: ``(certificate path, key path)`` for the session.
    """

    method = "tls_client_auth"

    def __init__(self, client_id: str, cert_path: str, key_path: str) -> None:
        self.client_id = client_id
        self.cert = (cert_path, key_path)

    def apply(  # noqa: D102
        self, form: Dict[str, str], headers: Dict[str, str], *, token_endpoint: str, issuer: Optional[str], now: float
    ) -> None:
        form["client_id"] = self.client_id or ""


class NoClientAuth(ClientAuth):
    """none: the client does not authenticate; sends ``client_id`` when it has one."""

    method = "none"

    def __init__(self, client_id: Optional[str] = None) -> None:
        self.client_id = client_id

    def apply(  # noqa: D102
        self, form: Dict[str, str], headers: Dict[str, str], *, token_endpoint: str, issuer: Optional[str], now: float
    ) -> None:
        if self.client_id:
            form["client_id"] = self.client_id


# --------------------------------------------------------------------------------------
# Audience (CVE-2025-27370 / CVE-2025-27371)
# --------------------------------------------------------------------------------------


class AudienceChoice(NamedTuple):
    """The ``aud`` of a client assertion and why it was chosen.

    Attributes:
        audience: The value for ``aud``.
        source: ``"configured"``, ``"issuer"`` or ``"token_endpoint"``.
        warning: A message to log at WARNING, or None.
    """

    audience: str
    source: str
    warning: Optional[str]


def assertion_audience(
    token_endpoint: str, issuer: Optional[str] = None, configured: Optional[str] = None
) -> AudienceChoice:
    """Choose the ``aud`` of a client assertion. Pure: no I/O, no logging.

    The configured ``OAUTH_CLIENT_ASSERTION_AUDIENCE`` wins (Entra ID and Okta want the
    token endpoint URL). Otherwise the authorization server's issuer, so an assertion
    made for one server cannot be replayed at another (CVE-2025-27370/27371). Without a
    known issuer, the token endpoint URL, with a warning that names both.

    Args:
        token_endpoint: The token endpoint URL the assertion is sent to.
        issuer: The issuer from ``OAUTH_ISSUER`` or discovery, or None.
        configured: ``OAUTH_CLIENT_ASSERTION_AUDIENCE``, or None.

    Returns:
        The audience, its source and a warning message (or None).
    """
    if configured:
        return AudienceChoice(configured, "configured", None)
    if issuer:
        return AudienceChoice(issuer, "issuer", None)
    warning = (
        "client assertion audience is the token endpoint %s, not an issuer: the "
        "authorization server's issuer is unknown. Set OAUTH_ISSUER (or use discovery) so "
        "the audience is the issuer, or OAUTH_CLIENT_ASSERTION_AUDIENCE to choose it" % redact_url(token_endpoint)
    )
    return AudienceChoice(token_endpoint, "token_endpoint", warning)


def _warn_once(seen: Set[str], lock: threading.Lock, choice: AudienceChoice) -> None:
    if choice.warning is None:
        return
    with lock:
        if choice.audience in seen:
            return
        seen.add(choice.audience)
    log.warning("%s", choice.warning)


class _JwtClientAuth(ClientAuth):
    """Shared part of private_key_jwt and client_secret_jwt: one fresh assertion per attempt."""

    def __init__(self, client_id: str, audience: Optional[str], lifetime: int) -> None:
        if not 1 <= lifetime <= ASSERTION_LIFETIME:
            raise ValueError("lifetime must be 1 to %d seconds" % ASSERTION_LIFETIME)
        self.client_id = client_id
        self.audience = audience
        self.lifetime = lifetime
        self._warned: Set[str] = set()
        self._warned_lock = threading.Lock()

    def _sign(self, header: Dict[str, Any], claims: Dict[str, Any]) -> str:
        raise NotImplementedError

    def assertion(self, *, token_endpoint: str, issuer: Optional[str], now: float) -> str:
        """Return a new signed assertion: ``iss`` = ``sub`` = client_id, fresh ``jti``."""
        choice = assertion_audience(token_endpoint, issuer, self.audience)
        _warn_once(self._warned, self._warned_lock, choice)
        iat = int(now)
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": choice.audience,
            "iat": iat,
            "exp": iat + self.lifetime,
            "jti": secrets.token_urlsafe(24),
        }
        return self._sign({}, claims)

    def apply(  # noqa: D102
        self, form: Dict[str, str], headers: Dict[str, str], *, token_endpoint: str, issuer: Optional[str], now: float
    ) -> None:
        form["client_id"] = self.client_id or ""
        form["client_assertion_type"] = JWT_BEARER_ASSERTION_TYPE
        form["client_assertion"] = self.assertion(token_endpoint=token_endpoint, issuer=issuer, now=now)


class PrivateKeyJwt(_JwtClientAuth):
    """private_key_jwt: an assertion signed with the client's private key. Thread-safe.

    Attributes:
        alg: The signing algorithm.
        kid: The ``kid`` header, or None.
        audience: The configured audience, or None (then the issuer, else the endpoint).
        x5t, x5t_s256: Certificate thumbprints for the header, or None.
    """

    method = "private_key_jwt"

    def __init__(
        self,
        client_id: str,
        key: PrivateKey,
        alg: Optional[str] = None,
        kid: Optional[str] = None,
        audience: Optional[str] = None,
        certificate_path: Optional[str] = None,
        *,
        lifetime: int = ASSERTION_LIFETIME,
        json_path: str = "$",
    ) -> None:
        """Check the algorithm against the key and read the certificate's thumbprints.

        Args:
            client_id: ``iss`` and ``sub`` of every assertion.
            key: From :func:`load_private_key`.
            alg: One of :data:`SIGNING_ALGORITHMS`; default from the key.
            kid: The ``kid`` header (the key's id at the server), or None.
            audience: ``OAUTH_CLIENT_ASSERTION_AUDIENCE``, or None.
            certificate_path: A PEM certificate of the key (Entra ID): adds ``x5t#S256``
                and ``x5t`` to the header.
            lifetime: Seconds from ``iat`` to ``exp``, at most 60.
            json_path: The JSON path of the ``oauth_config`` object, for messages.

        Raises:
            ConfigError: the algorithm is unknown or does not fit the key, or the
                certificate is unreadable or belongs to another key.
        """
        super().__init__(client_id, audience, lifetime)
        alg = alg or key.default_alg
        where = _join_path(json_path, "OAUTH_CLIENT_ASSERTION_ALG")
        if alg not in SIGNING_ALGORITHMS:
            raise ConfigError(
                "unknown signing algorithm %r" % alg, where, "use one of %s" % ", ".join(SIGNING_ALGORITHMS)
            )
        fits = alg[:2] in ("RS", "PS") if key.key_type == "RSA" else alg == key.default_alg
        if not fits:
            raise ConfigError(
                "%s does not fit the %s key" % (alg, "RSA" if key.key_type == "RSA" else "EC %s" % key.curve),
                where,
                "use %s, or leave OAUTH_CLIENT_ASSERTION_ALG out to take it from the key"
                % ("RS256 or PS256" if key.key_type == "RSA" else key.default_alg),
            )
        self.alg = alg
        self.kid = kid
        self._key = key
        self.x5t: Optional[str] = None
        self.x5t_s256: Optional[str] = None
        if certificate_path:
            self.x5t, self.x5t_s256, der = certificate_thumbprints(certificate_path, json_path=json_path)
            if not key.is_pair_of(der):
                raise ConfigError(
                    "client certificate %s does not belong to the private key %s" % (certificate_path, key.path),
                    _join_path(json_path, "OAUTH_CLIENT_CERT_PATH"),
                    "use the certificate made from this key (the one registered with the server)",
                )

    def __repr__(self) -> str:
        return "PrivateKeyJwt(client_id=%r, alg=%r, kid=%r, key=%r)" % (
            self.client_id,
            self.alg,
            self.kid,
            self._key,
        )

    def _sign(self, header: Dict[str, Any], claims: Dict[str, Any]) -> str:
        if self.kid:
            header["kid"] = self.kid
        if self.x5t_s256:
            header["x5t#S256"] = self.x5t_s256
            header["x5t"] = self.x5t
        return sign_jwt(header, claims, self._key, self.alg)


class ClientSecretJwt(_JwtClientAuth):
    """client_secret_jwt: an HS256 assertion keyed with the client secret. Thread-safe."""

    method = "client_secret_jwt"

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        audience: Optional[str] = None,
        *,
        lifetime: int = ASSERTION_LIFETIME,
        json_path: str = "$",
    ) -> None:
        """Check that PyJWT is installed; a secret under 32 bytes is a WARNING (RFC 7518 3.2).

        The table (:func:`auth_problem`) refuses an empty secret before this is built.

        Raises:
            ConfigError: PyJWT is not installed.
        """
        import_jwt(_join_path(json_path, "OAUTH_TOKEN_ENDPOINT_AUTH_METHOD"))
        super().__init__(client_id, audience, lifetime)
        self._secret = client_secret.encode("utf-8")
        if len(self._secret) < 32:
            log.warning(
                "client_secret_jwt for %s: the client secret is %d bytes, shorter than the 32 "
                "that HS256 needs (RFC 7518 section 3.2); ask the server for a longer one",
                client_id,
                len(self._secret),
            )

    def _sign(self, header: Dict[str, Any], claims: Dict[str, Any]) -> str:
        import warnings

        with warnings.catch_warnings():
            # PyJWT 2.10+ warns on short HMAC keys; we warned once at construction.
            warnings.simplefilter("ignore")
            return sign_jwt(header, claims, self._secret, "HS256")


# --------------------------------------------------------------------------------------
# Assertions issued by the platform
# --------------------------------------------------------------------------------------


class ClientAssertion(ClientAuth):
    """A JWT the platform issued to the workload, sent as ``client_assertion``.

    The JWT comes from an :class:`~oauth_gateway._workload.AssertionSource` (a file, the
    Kubernetes token, GitHub Actions, a cloud metadata server) for every attempt; the
    source checks its ``exp`` (never its signature: that is the server's job). Sent with
    the jwt-bearer assertion type. Thread-safe.

    Attributes:
        source: Where the JWT comes from.
        client_id: Sent as ``client_id`` when set.
    """

    method = "private_key_jwt"

    def __init__(self, source: AssertionSource, client_id: Optional[str] = None) -> None:
        self.source = source
        self.client_id = client_id or None

    def __repr__(self) -> str:
        return "%s(source=%r, client_id=%r)" % (type(self).__name__, self.source, self.client_id)

    def read(self, now: float) -> str:
        """Return the source's JWT after its checks (see :meth:`AssertionSource.assertion`).

        Args:
            now: Wall-clock seconds since the epoch.

        Raises:
            ConfigError: no usable JWT (unreadable, not a JWT, no numeric ``exp``, or
                expiring within :data:`ASSERTION_FILE_MIN_REMAINING` seconds). The
                message names the source, never the JWT.
        """
        return self.source.assertion(now).text

    def apply(  # noqa: D102
        self, form: Dict[str, str], headers: Dict[str, str], *, token_endpoint: str, issuer: Optional[str], now: float
    ) -> None:
        assertion = self.read(now)
        if self.client_id:
            form["client_id"] = self.client_id
        form["client_assertion_type"] = JWT_BEARER_ASSERTION_TYPE
        form["client_assertion"] = assertion


class AssertionFile(ClientAssertion):
    """:class:`ClientAssertion` from a file (``OAUTH_CLIENT_ASSERTION_FILE``), read again for every attempt.

    Attributes:
        path: The file.
    """

    def __init__(self, path: str, client_id: Optional[str] = None, *, json_path: str = "$") -> None:
        super().__init__(FileSource(path, _join_path(json_path, "OAUTH_CLIENT_ASSERTION_FILE")), client_id)
        self.path = path

    def __repr__(self) -> str:
        return "AssertionFile(path=%r, client_id=%r)" % (self.path, self.client_id)


class JwtBearerGrant:
    """The jwt-bearer grant (RFC 7523 section 2.1): the platform's JWT as ``assertion``.

    ``apply`` has the :class:`ClientAuth` signature; it sets ``grant_type`` and
    ``assertion`` and the client authentication (often :class:`NoClientAuth`) applies
    after it. No fallback to another grant. Thread-safe.
    """

    grant_type = JWT_BEARER_GRANT_TYPE

    def __init__(self, source: ClientAssertion) -> None:
        self.source = source

    def __repr__(self) -> str:
        return "JwtBearerGrant(source=%r)" % (self.source.source,)

    def apply(
        self,
        form: Dict[str, str],
        headers: Dict[str, str],
        *,
        token_endpoint: str,
        issuer: Optional[str],
        now: float,
    ) -> None:
        """Set ``grant_type`` and ``assertion`` (from the source, now) in ``form``."""
        form["grant_type"] = JWT_BEARER_GRANT_TYPE
        form["assertion"] = self.source.read(now)


# --------------------------------------------------------------------------------------
# From config keys
# --------------------------------------------------------------------------------------


class Credential(NamedTuple):
    """One kind of credential a client authentication method may need.

    Attributes:
        label: How messages name it (``"a client secret"``).
        keys: The config keys that provide it, as a hint names them.
    """

    label: str
    keys: str


#: The credentials methods need, by kind: the one home of the words messages use for them.
CREDENTIALS: Mapping[str, Credential] = {
    "secret": Credential("a client secret", "OAUTH_CLIENT_SECRET (or OAUTH_CLIENT_SECRET_FILE)"),
    "key": Credential("a private key", "OAUTH_CLIENT_PRIVATE_KEY_PATH"),
    "assertion": Credential("an assertion file", "OAUTH_CLIENT_ASSERTION_FILE"),
    "certificate": Credential(
        "a client certificate", "OAUTH_USE_MTLS to true with OAUTH_CLIENT_CERT_PATH and OAUTH_CLIENT_KEY_PATH"
    ),
}


class AuthSettings(NamedTuple):
    """What a method's builder may use, named after the config keys (empty when unset).

    Attributes:
        client_id: ``OAUTH_CLIENT_ID``.
        client_secret: ``OAUTH_CLIENT_SECRET``.
        private_key_path: ``OAUTH_CLIENT_PRIVATE_KEY_PATH``.
        private_key_password: ``OAUTH_CLIENT_PRIVATE_KEY_PASSWORD``.
        alg: ``OAUTH_CLIENT_ASSERTION_ALG``.
        kid: ``OAUTH_CLIENT_KEY_ID``.
        audience: ``OAUTH_CLIENT_ASSERTION_AUDIENCE``.
        cert_path: ``OAUTH_CLIENT_CERT_PATH``.
        key_path: ``OAUTH_CLIENT_KEY_PATH`` (the mTLS key).
        assertion_file: ``OAUTH_CLIENT_ASSERTION_FILE``.
        json_path: The JSON path of the ``oauth_config`` object, for messages.
        assertion_source: ``OAUTH_CLIENT_ASSERTION_SOURCE``, built, or None.
    """

    client_id: str = ""
    client_secret: str = ""
    private_key_path: str = ""
    private_key_password: str = ""
    alg: str = ""
    kid: str = ""
    audience: str = ""
    cert_path: str = ""
    key_path: str = ""
    assertion_file: str = ""
    json_path: str = "$"
    assertion_source: Optional[AssertionSource] = None


def _private_key_jwt(settings: AuthSettings) -> ClientAuth:
    if settings.private_key_path and settings.assertion_file:
        raise ConfigError(
            "private_key_jwt takes a private key or an assertion file, not both",
            _join_path(settings.json_path, "OAUTH_CLIENT_ASSERTION_FILE"),
            "remove OAUTH_CLIENT_ASSERTION_FILE or OAUTH_CLIENT_PRIVATE_KEY_PATH",
        )
    if settings.assertion_source is not None:
        return ClientAssertion(settings.assertion_source, settings.client_id)
    if settings.assertion_file:
        return AssertionFile(settings.assertion_file, settings.client_id, json_path=settings.json_path)
    key = load_private_key(
        settings.private_key_path, settings.private_key_password or None, json_path=settings.json_path
    )
    return PrivateKeyJwt(
        settings.client_id,
        key,
        settings.alg or None,
        settings.kid or None,
        settings.audience or None,
        settings.cert_path or None,
        json_path=settings.json_path,
    )


class AuthMethod(NamedTuple):
    """One row of :data:`AUTH_METHOD_TABLE`: a method, what it needs and how it is built.

    Attributes:
        name: The RFC 8414 ``token_endpoint_auth_method`` name.
        needs: Kinds of :data:`CREDENTIALS`, any one of which is enough; empty for none.
        signs: It sends a signed JWT (RFC 7523), so it needs PyJWT.
        build: Makes the :class:`ClientAuth` once its needs are met.
    """

    name: str
    needs: Tuple[str, ...]
    signs: bool
    build: Callable[[AuthSettings], ClientAuth]


#: Every client authentication method, in the order discovery prefers them. A new method
#: is one row here and its class.
AUTH_METHOD_TABLE: Tuple[AuthMethod, ...] = (
    AuthMethod("private_key_jwt", ("key", "assertion"), True, _private_key_jwt),
    AuthMethod("client_secret_basic", ("secret",), False, lambda s: ClientSecretBasic(s.client_id, s.client_secret)),
    AuthMethod("client_secret_post", ("secret",), False, lambda s: ClientSecretPost(s.client_id, s.client_secret)),
    AuthMethod(
        "client_secret_jwt",
        ("secret",),
        True,
        lambda s: ClientSecretJwt(s.client_id, s.client_secret, s.audience or None, json_path=s.json_path),
    ),
    AuthMethod(
        "tls_client_auth", ("certificate",), False, lambda s: TlsClientAuth(s.client_id, s.cert_path, s.key_path)
    ),
    AuthMethod("none", (), False, lambda s: NoClientAuth(s.client_id or None)),
)
_BY_NAME: Mapping[str, AuthMethod] = {row.name: row for row in AUTH_METHOD_TABLE}
#: The client authentication methods (``OAUTH_TOKEN_ENDPOINT_AUTH_METHOD``).
AUTH_METHODS = tuple(row.name for row in AUTH_METHOD_TABLE)
#: The methods that send a signed JWT assertion (RFC 7523).
SIGNING_METHODS = tuple(row.name for row in AUTH_METHOD_TABLE if row.signs)


class AuthProblem(NamedTuple):
    """Why a method cannot be used: the message, the config key to point at and the fix."""

    message: str
    key: str
    hint: str


def held_credentials(
    *, secret: bool = False, key: bool = False, assertion: bool = False, certificate: bool = False
) -> FrozenSet[str]:
    """The kinds of :data:`CREDENTIALS` a client holds, from what is configured."""
    held = (("secret", secret), ("key", key), ("assertion", assertion), ("certificate", certificate))
    return frozenset(kind for kind, present in held if present)


def auth_problem(method: str, held: FrozenSet[str]) -> Optional[AuthProblem]:
    """What stops ``method`` with the credentials ``held``, or None. Pure: no I/O.

    Every "method X needs Y" message of the library comes from here: a missing secret
    points at ``OAUTH_CLIENT_SECRET``, anything else at ``OAUTH_TOKEN_ENDPOINT_AUTH_METHOD``.
    """
    row = _BY_NAME.get(method)
    if row is None:
        return AuthProblem(
            "unknown client authentication method %r" % method,
            "OAUTH_TOKEN_ENDPOINT_AUTH_METHOD",
            "use one of %s" % ", ".join(AUTH_METHODS),
        )
    if not row.needs or held.intersection(row.needs):
        return None
    hint = "set %s, or choose another OAUTH_TOKEN_ENDPOINT_AUTH_METHOD" % " or ".join(
        CREDENTIALS[kind].keys for kind in row.needs
    )
    key = "OAUTH_CLIENT_SECRET" if row.needs == ("secret",) else "OAUTH_TOKEN_ENDPOINT_AUTH_METHOD"
    labels = " or ".join(CREDENTIALS[kind].label for kind in row.needs)
    return AuthProblem("%s needs %s" % (method, labels), key, hint)


def default_auth_method(held: FrozenSet[str], *, use_basic_auth: bool = True, jwt_bearer: bool = False) -> str:
    """The method used when ``OAUTH_TOKEN_ENDPOINT_AUTH_METHOD`` is not set. Pure.

    private_key_jwt with a private key or an assertion file (with the jwt-bearer grant
    the file is the grant's, not the client's), tls_client_auth with a certificate and
    no secret, none for the jwt-bearer grant without a secret, else client_secret_basic
    or client_secret_post (``OAUTH_USE_BASIC_AUTH``).
    """
    if "key" in held or ("assertion" in held and not jwt_bearer):
        return "private_key_jwt"
    if "secret" not in held and "certificate" in held:
        return "tls_client_auth"
    if "secret" not in held and jwt_bearer:
        return "none"
    return "client_secret_basic" if use_basic_auth else "client_secret_post"


def preferred_auth_method(supported: Iterable[str], held: FrozenSet[str]) -> Optional[str]:
    """The first method of the table that the server supports and ``held`` allows, or None.

    ``none`` is never chosen this way: a client with credentials uses them.
    """
    offered = set(supported)
    for row in AUTH_METHOD_TABLE:
        if row.needs and row.name in offered and held.intersection(row.needs):
            return row.name
    return None


def build_client_auth(
    method: str,
    client_id: str,
    *,
    client_secret: Optional[str] = None,
    private_key_path: Optional[str] = None,
    private_key_password: Optional[str] = None,
    alg: Optional[str] = None,
    kid: Optional[str] = None,
    audience: Optional[str] = None,
    cert_path: Optional[str] = None,
    key_path: Optional[str] = None,
    assertion_file: Optional[str] = None,
    json_path: str = "$",
    assertion_source: Optional[AssertionSource] = None,
) -> ClientAuth:
    """Build the :class:`ClientAuth` for ``OAUTH_TOKEN_ENDPOINT_AUTH_METHOD`` from its table row.

    Args mirror the config keys (see :class:`AuthSettings`). For private_key_jwt exactly
    one of ``private_key_path`` and ``assertion_file`` is given.

    Raises:
        ConfigError: an unknown method, a missing or conflicting key, a bad key file,
            or PyJWT missing for a signing method.
    """
    settings = AuthSettings(
        client_id,
        client_secret or "",
        private_key_path or "",
        private_key_password or "",
        alg or "",
        kid or "",
        audience or "",
        cert_path or "",
        key_path or "",
        assertion_file or "",
        json_path,
        assertion_source,
    )
    held = held_credentials(
        secret=bool(settings.client_secret),
        key=bool(settings.private_key_path),
        assertion=bool(settings.assertion_file) or settings.assertion_source is not None,
        certificate=bool(settings.cert_path and settings.key_path),
    )
    problem = auth_problem(method, held)
    if problem is not None:
        raise ConfigError(problem.message, _join_path(settings.json_path, problem.key), problem.hint)
    return _BY_NAME[method].build(settings)


__all__ = ("PrivateKey",)
