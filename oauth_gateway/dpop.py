"""Sender-constrained tokens: DPoP proofs (RFC 9449) and binding checks (RFC 8705 section 3).

A DPoP-bound access token is useless without the private key it was bound to: every
request, to the token endpoint and to the resource server, carries a fresh *proof*, a
small JWT signed by that key (:func:`make_proof`). This module holds the pieces that
do not send anything:

* :class:`DPoPKey`: the key pair (EC P-256 made in memory by default, or a PEM file with
  the same rules as every other key file) and its RFC 7638 thumbprint ``jkt``.
* :func:`make_proof`: one proof for one request attempt.
* :class:`NonceStore`: the latest ``DPoP-Nonce`` of each server, by origin.
* :func:`token_nonce_challenge` and :func:`resource_nonce_challenge`: recognise a
  server asking for a nonce (``use_dpop_nonce``) and return the nonce to retry with.
* :func:`token_confirmation`, :func:`check_binding`, :func:`check_token_binding` and
  :func:`check_dpop_token_type`: check, before a token is used, that it is bound to OUR
  key or certificate.
* :class:`DPoPKeyring`: a manager's keys, one per config.

Signing needs PyJWT with its crypto extra (``pip install 'oauth-gateway[jwt]'``), imported
only when a key is made or loaded. Reading a token's ``cnf`` needs only the standard
library. Nothing here logs, and no message, ``repr`` or attribute holds an access token,
a proof or a private key: keys show their type and a short ``jkt``.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import secrets
import threading
from typing import TYPE_CHECKING, Any, Dict, Mapping, NoReturn, Optional
from urllib.parse import urlsplit, urlunsplit

from ._helpers import loads_bounded
from ._http import origin_of, parse_www_authenticate
from ._jsonpath import join as _join_path
from ._jwt import PrivateKey, certificate_thumbprints, jwk_thumbprint, load_private_key, require_jwt, sign_jwt
from .exceptions import TokenBindingError

if TYPE_CHECKING:  # pragma: no cover
    from .config import OAuthConfig

#: The ``typ`` header of every DPoP proof (RFC 9449 section 4.2).
_DPOP_JWT_TYPE = "dpop+jwt"
#: The algorithm of the default key.
_DEFAULT_DPOP_ALG = "ES256"
#: The request and response header carrying a proof, and the one carrying a nonce.
DPOP_HEADER = "DPoP"
DPOP_NONCE_HEADER = "DPoP-Nonce"
#: The error code of a server that wants a (new) nonce (RFC 9449 sections 8 and 9).
USE_DPOP_NONCE = "use_dpop_nonce"
#: The ``token_type`` of a DPoP-bound access token, and the ``Authorization`` scheme.
DPOP_TOKEN_TYPE = "DPoP"
#: Servers remembered by a :class:`NonceStore` before the least recently used goes.
_DEFAULT_MAX_NONCES = 256
#: A nonce longer than this is ignored (RFC 9449 gives no limit; real ones are < 100).
_MAX_NONCE_LENGTH = 1024
#: DPoP keys a :class:`DPoPKeyring` keeps (one per config); past this the oldest is
#: forgotten, and the tokens bound to it are replaced when a resource server refuses them.
_MAX_DPOP_KEYS = 1024
#: The config key of a persistent DPoP key, for messages.
_DPOP_KEY_FIELD = "OAUTH_DPOP_KEY_PATH"

# RFC 9449 section 8.1: nonce = 1*NQCHAR, NQCHAR = %x21 / %x23-5B / %x5D-7E
_NQCHAR = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "\\"}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _short(thumbprint: Optional[str]) -> str:
    # Thumbprints are public, but 43 characters make messages hard to read.
    return "none" if not thumbprint else "%s..." % thumbprint[:8]


# --------------------------------------------------------------------------------------
# The key
# --------------------------------------------------------------------------------------


class DPoPKey:
    """The key pair that proves possession: a private key, its public JWK and ``jkt``.

    Immutable and thread-safe (signing is). Not picklable: a DPoP-bound token must stay
    with the process holding its key, and the key is not written anywhere by us.

    Attributes:
        alg: The JWS algorithm of the proofs (``ES256`` for the default key).
        jkt: The RFC 7638 SHA-256 thumbprint of the public key (base64url), what a
            bound token's ``cnf.jkt`` holds.
        path: The PEM file the key came from, or None for a key made in memory.
    """

    def __init__(self, key: PrivateKey, alg: Optional[str] = None) -> None:
        """Wrap a loaded key; use :meth:`generate` or :meth:`from_file` to get one.

        Args:
            key: From ``oauth_gateway.client_auth.load_private_key``.
            alg: The algorithm; default from the key (ES256, ES384 or RS256).
        """
        self._key = key
        self.alg = alg or key.default_alg
        self.path = key.path
        jwk = key.public_jwk()
        self.jkt = jwk_thumbprint(jwk)
        # Built once: every proof of this key has the same header.
        self._header: Dict[str, Any] = {"typ": _DPOP_JWT_TYPE, "jwk": jwk}

    @classmethod
    def generate(cls, *, json_path: str = "$") -> DPoPKey:
        """Make a new EC P-256 key in memory (lost when the process ends).

        Args:
            json_path: The JSON path of the ``oauth_config`` object, for the message.

        Raises:
            ConfigError: PyJWT or cryptography is not installed.
        """
        require_jwt(_join_path(json_path, "OAUTH_DPOP"))
        from cryptography.hazmat.primitives.asymmetric import ec

        return cls(PrivateKey(ec.generate_private_key(ec.SECP256R1())), _DEFAULT_DPOP_ALG)

    @classmethod
    def from_file(cls, path: str, password: Optional[str] = None, *, json_path: str = "$") -> DPoPKey:
        """Load a persistent key (``OAUTH_DPOP_KEY_PATH``) with the rules of every key file.

        EC P-256 (ES256) is the one every DPoP server supports; EC P-384 (ES384) and RSA
        2048+ (RS256) load too.

        Args:
            path: The PEM private key file.
            password: Its password, or None.
            json_path: The JSON path of the ``oauth_config`` object, for messages.

        Raises:
            ConfigError: the file is missing, unreadable, encrypted without a password,
                or not a supported key; or PyJWT is not installed.
        """
        return cls(load_private_key(path, password, json_path=json_path, field=_DPOP_KEY_FIELD))

    @property
    def public_jwk(self) -> Dict[str, Any]:
        """A copy of the public key as a JWK (what each proof's ``jwk`` header carries)."""
        return dict(self._header["jwk"])

    def proof(
        self,
        htm: str,
        htu: str,
        *,
        now: float,
        nonce: Optional[str] = None,
        access_token: Optional[str] = None,
    ) -> str:
        """Same as :func:`make_proof` with this key."""
        return make_proof(self, htm, htu, now=now, nonce=nonce, access_token=access_token)

    def __repr__(self) -> str:
        kind = "EC %s" % self._key.curve if self._key.key_type == "EC" else "RSA %d" % self._key.bits
        return "DPoPKey(path=%r, type=%r, jkt=%r)" % (self.path, kind, _short(self.jkt))

    def __reduce__(self) -> NoReturn:
        raise TypeError("a DPoPKey is not picklable; keep DPoP tokens in the process that holds the key")


# --------------------------------------------------------------------------------------
# Proofs
# --------------------------------------------------------------------------------------


def _htu_of(url: str) -> str:
    """The ``htu`` of a request URL: the URL without its query and fragment.

    Args:
        url: The request URL as sent.

    Returns:
        Scheme, authority and path, as given (servers compare them after parsing).
    """
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _access_token_hash(access_token: str) -> str:
    """The ``ath`` claim: base64url (no padding) SHA-256 of the access token (RFC 9449 4.2)."""
    return _b64url(hashlib.sha256(access_token.encode("utf-8")).digest())


def make_proof(
    key: DPoPKey,
    htm: str,
    htu: str,
    *,
    now: float,
    nonce: Optional[str] = None,
    access_token: Optional[str] = None,
) -> str:
    """Sign a DPoP proof for ONE request attempt (RFC 9449 section 4.2).

    Call it again for every attempt and every retry: each proof has a new ``jti`` and
    servers refuse a proof they have seen.

    Args:
        key: The DPoP key.
        htm: The HTTP method (upper-cased here).
        htu: The request URL; its query and fragment are dropped.
        now: Wall-clock seconds since the epoch (``time.time()``), for ``iat``.
        nonce: The server's latest ``DPoP-Nonce``, or None.
        access_token: The access token the request carries (resource requests): adds
            ``ath``. None for token requests.

    Returns:
        The compact JWS, for the ``DPoP`` request header. Never log it.

    Raises:
        ConfigError: PyJWT or cryptography is not installed.
    """
    claims: Dict[str, Any] = {
        "jti": secrets.token_urlsafe(16),
        "htm": htm.upper(),
        "htu": _htu_of(htu),
        "iat": int(now),
    }
    if nonce is not None:
        claims["nonce"] = nonce
    if access_token is not None:
        claims["ath"] = _access_token_hash(access_token)
    return sign_jwt(key._header, claims, key._key, key.alg)


# --------------------------------------------------------------------------------------
# Nonces
# --------------------------------------------------------------------------------------


def _is_valid_nonce(value: Any) -> bool:
    """True when ``value`` is an RFC 9449 nonce (1 to 1024 NQCHARs)."""
    return isinstance(value, str) and 0 < len(value) <= _MAX_NONCE_LENGTH and all(char in _NQCHAR for char in value)


def _header(headers: Mapping[str, str], name: str) -> Optional[str]:
    value = headers.get(name)  # requests' headers are case-insensitive already
    if value is not None:
        return value
    lowered = name.lower()
    for key, item in headers.items():
        if key.lower() == lowered:
            return item
    return None


def response_nonce(headers: Mapping[str, str]) -> Optional[str]:
    """The valid ``DPoP-Nonce`` of a response, or None (missing or malformed)."""
    value = _header(headers, DPOP_NONCE_HEADER)
    if value is None:
        return None
    value = value.strip()
    return value if _is_valid_nonce(value) else None


class NonceStore:
    """The latest ``DPoP-Nonce`` of each server, by origin, least recently used evicted.

    Thread-safe: one lock, held only for a dictionary operation. Nonces are not secrets
    (servers send them in clear to anyone), but they are not logged either.
    """

    def __init__(self, max_entries: int = _DEFAULT_MAX_NONCES) -> None:
        """Make an empty store.

        Args:
            max_entries: How many servers to remember (at least 1).
        """
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._nonces: collections.OrderedDict[str, str] = collections.OrderedDict()

    def get(self, url: str) -> Optional[str]:
        """The nonce to send to ``url``'s server, or None when it never sent one."""
        origin = origin_of(url)
        with self._lock:
            nonce = self._nonces.get(origin)
            if nonce is not None:
                self._nonces.move_to_end(origin)
            return nonce

    def remember(self, url: str, nonce: str) -> bool:
        """Remember ``nonce`` for ``url``'s server; False (and nothing stored) if invalid."""
        if not _is_valid_nonce(nonce):
            return False
        origin = origin_of(url)
        with self._lock:
            self._nonces[origin] = nonce
            self._nonces.move_to_end(origin)
            while len(self._nonces) > self.max_entries:
                self._nonces.popitem(last=False)
        return True

    def update(self, url: str, headers: Mapping[str, str]) -> Optional[str]:
        """Remember the ``DPoP-Nonce`` of any response from ``url`` (servers rotate them).

        Returns:
            The nonce remembered, or None when the response carried no valid one.
        """
        nonce = response_nonce(headers)
        if nonce is not None:
            self.remember(url, nonce)
        return nonce

    def forget(self, url: str) -> None:
        """Drop ``url``'s server's nonce."""
        with self._lock:
            self._nonces.pop(origin_of(url), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._nonces)

    def __repr__(self) -> str:
        return "NonceStore(servers=%d, max_entries=%d)" % (len(self), self.max_entries)


def token_nonce_challenge(status_code: int, headers: Mapping[str, str], body: Any) -> Optional[str]:
    """The nonce to retry a token request with, when the server asked for one.

    RFC 9449 section 8: HTTP 400, a JSON body with ``error`` ``use_dpop_nonce`` and a
    ``DPoP-Nonce`` header. Retry once with a new proof carrying this nonce.

    Args:
        status_code: The response status.
        headers: The response headers.
        body: The parsed JSON body (anything; non-objects never match).

    Returns:
        The nonce, or None when this is not a valid nonce challenge (then the response
        is an ordinary error).
    """
    if status_code != 400 or not isinstance(body, dict) or body.get("error") != USE_DPOP_NONCE:
        return None
    return response_nonce(headers)


def _resource_nonce_challenge(status_code: int, headers: Mapping[str, str]) -> Optional[str]:
    """The nonce to repeat a resource request with, when the resource server asked for one.

    RFC 9449 section 9: HTTP 401 with ``WWW-Authenticate: DPoP error="use_dpop_nonce"``
    (other challenges may come with it) and a ``DPoP-Nonce`` header. Repeat once.

    Returns:
        The nonce, or None when this is not a valid nonce challenge.
    """
    if status_code != 401:
        return None
    value = _header(headers, "WWW-Authenticate")
    if not value:
        return None
    for challenge in parse_www_authenticate(value):
        if challenge.scheme.lower() == "dpop" and challenge.get("error") == USE_DPOP_NONCE:
            return response_nonce(headers)
    return None


# --------------------------------------------------------------------------------------
# Binding checks
# --------------------------------------------------------------------------------------


def _segment(part: str) -> Any:
    padded = part + "=" * (-len(part) % 4)
    return loads_bounded(base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8"))


def _token_claims(access_token: str) -> Optional[Dict[str, Any]]:
    """The claims of a JWT access token, NOT verified; None for an opaque token.

    Only for reading ``cnf`` before use: the signature is the resource server's job, and
    nothing here trusts the claims beyond comparing them to our own thumbprints.
    """
    parts = access_token.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        return None
    try:
        header, claims = _segment(parts[0]), _segment(parts[1])
    except (ValueError, binascii.Error, UnicodeError):
        return None
    if not isinstance(header, dict) or "alg" not in header or not isinstance(claims, dict):
        return None
    return claims


def _token_confirmation(access_token: str) -> Optional[Dict[str, Any]]:
    """The ``cnf`` claim of a JWT access token (RFC 7800), read WITHOUT verifying it.

    Args:
        access_token: The token as received.

    Returns:
        The ``cnf`` object (``{"jkt": ...}`` for DPoP, ``{"x5t#S256": ...}`` for mTLS), or
        None when the token is opaque, not a JWT, or has no ``cnf`` object.
    """
    claims = _token_claims(access_token)
    if claims is None:
        return None
    cnf = claims.get("cnf")
    return dict(cnf) if isinstance(cnf, dict) else None


def _check_binding(
    cnf: Optional[Mapping[str, Any]],
    *,
    dpop_jkt: Optional[str] = None,
    cert_x5t_s256: Optional[str] = None,
) -> None:
    """Check that a token's ``cnf`` binds it to our DPoP key or client certificate.

    Rules: a ``cnf.jkt`` must equal ``dpop_jkt`` (and is an error when DPoP is off); when
    DPoP is on, a ``cnf`` without ``jkt`` is an error (the token is bound to something
    else). A ``cnf["x5t#S256"]`` must equal ``cert_x5t_s256`` (and is an error without a
    client certificate). A certificate used only for client authentication with a
    token that has no ``x5t#S256`` is fine. ``cnf`` None (opaque token, or no ``cnf``)
    checks nothing: use :func:`check_dpop_token_type` and introspection for those.

    Args:
        cnf: From :func:`token_confirmation` or an introspection response.
        dpop_jkt: :attr:`DPoPKey.jkt` when DPoP is on, else None.
        cert_x5t_s256: The ``x5t#S256`` of our client certificate when mTLS is on
            (:func:`~oauth_gateway.client_auth.certificate_thumbprints`), else None.

    Raises:
        TokenBindingError: the token is bound to another key or certificate, or to one
            we do not use.
    """
    if not cnf:
        return
    jkt = cnf.get("jkt")
    if jkt is not None or dpop_jkt is not None:
        if dpop_jkt is None:
            raise TokenBindingError(
                "the access token is bound to a DPoP key (cnf.jkt %s), but OAUTH_DPOP is off; "
                "turn OAUTH_DPOP on, or ask the server for bearer tokens for this client" % _short(jkt),
                "jkt",
                None,
                jkt,
            )
        if jkt != dpop_jkt:
            raise TokenBindingError(
                "the access token is bound to another DPoP key: cnf.jkt is %s, our key's "
                "thumbprint is %s; the server bound it to a key we do not hold, so it cannot "
                "be used. Check the authorization server's DPoP support (and OAUTH_DPOP_KEY_PATH)"
                % (_short(jkt if isinstance(jkt, str) else None), _short(dpop_jkt)),
                "jkt",
                dpop_jkt,
                jkt if isinstance(jkt, str) else None,
            )
    x5t = cnf.get("x5t#S256")
    if x5t is not None:
        if cert_x5t_s256 is None:
            raise TokenBindingError(
                "the access token is bound to a client certificate (cnf x5t#S256 %s), but no "
                "client certificate is configured; set OAUTH_CLIENT_CERT_PATH and "
                "OAUTH_CLIENT_KEY_PATH to the certificate registered with the server" % _short(x5t),
                "x5t#S256",
                None,
                x5t,
            )
        if x5t != cert_x5t_s256:
            raise TokenBindingError(
                "the access token is bound to another client certificate: cnf x5t#S256 is %s, "
                "our certificate's is %s; check OAUTH_CLIENT_CERT_PATH and that the token "
                "request went out with that certificate"
                % (_short(x5t if isinstance(x5t, str) else None), _short(cert_x5t_s256)),
                "x5t#S256",
                cert_x5t_s256,
                x5t if isinstance(x5t, str) else None,
            )


def check_token_binding(
    config: OAuthConfig, access_token: str, key: Optional[DPoPKey], cert_bound: bool = False
) -> Optional[str]:
    """Check, before use, that a JWT access token's ``cnf`` binds it to our key or certificate.

    Args:
        config: the resolved config the token was fetched with (its client certificate).
        access_token: the token; an opaque one checks nothing (only the resource server,
            or introspection, can tell).
        key: our DPoP key when ``OAUTH_DPOP`` is on, else None.
        cert_bound: the authorization server's metadata says
            ``tls_client_certificate_bound_access_tokens``.

    Returns:
        A warning to log when the server said it binds tokens to the certificate and this
        one is not bound; None otherwise.

    Raises:
        TokenBindingError: it is bound to another key or certificate.
        ConfigError: the client certificate cannot be read.
    """
    claims = _token_claims(access_token)
    if claims is None:
        return None
    cnf = claims.get("cnf")
    cnf = cnf if isinstance(cnf, dict) else None
    cert_x5t = None
    if config.use_mtls and config.client_cert_path:
        # Read each time: a certificate renewed on disk is the one checked.
        cert_x5t = certificate_thumbprints(config.client_cert_path, json_path="$.oauth_config")[1]
    _check_binding(cnf, dpop_jkt=key.jkt if key is not None else None, cert_x5t_s256=cert_x5t)
    if (cnf is None or "x5t#S256" not in cnf) and cert_bound:
        return (
            "the token is not bound to the client certificate (no cnf x5t#S256), although the "
            "authorization server's metadata says tls_client_certificate_bound_access_tokens; "
            "check the client's registration at the server"
        )
    return None


class DPoPKeyring:
    """The DPoP keys of one manager: one per config, made or loaded on first use. Thread-safe.

    Held in memory only: a key is never pickled or written to a cache (a DPoP-bound token
    is useless without it, so such tokens stay in this process too).

    Args:
        max_keys: keys kept; past this the oldest is forgotten.
    """

    def __init__(self, max_keys: int = _MAX_DPOP_KEYS) -> None:
        self._lock = threading.Lock()
        self._keys: Dict[str, DPoPKey] = {}
        self._max_keys = max_keys

    def key_for(self, config: OAuthConfig) -> Optional[DPoPKey]:
        """Return the DPoP key of ``config``, or None when ``OAUTH_DPOP`` is off.

        Loaded from ``OAUTH_DPOP_KEY_PATH``, else a new EC P-256 key made in memory.

        Raises:
            ConfigError: the key file cannot be loaded, or PyJWT is not installed.
        """
        if not config.dpop:
            return None
        found = self._keys.get(config.fingerprint)
        if found is not None:
            return found
        with self._lock:  # held while making or loading the key: one key per config
            found = self._keys.get(config.fingerprint)
            if found is None:
                if config.dpop_key_path:
                    found = DPoPKey.from_file(config.dpop_key_path, json_path="$.oauth_config")
                else:
                    found = DPoPKey.generate(json_path="$.oauth_config")
                while len(self._keys) >= self._max_keys:
                    del self._keys[next(iter(self._keys))]
                self._keys[config.fingerprint] = found
            return found

    def reset_after_fork(self) -> None:
        """A lock held by another thread at fork time would never be released in the child."""
        self._lock = threading.Lock()


def check_dpop_token_type(token_type: Any) -> None:
    """Check that a token response to a DPoP token request says ``token_type`` ``DPoP``.

    RFC 9449 section 5: a server that ignored the proof answers ``Bearer``; that token is
    not bound, and sending it as DPoP would fail at the resource server.

    Raises:
        TokenBindingError: the ``token_type`` is anything else (compared case-insensitively).
    """
    if isinstance(token_type, str) and token_type.lower() == DPOP_TOKEN_TYPE.lower():
        return
    shown = token_type if isinstance(token_type, str) and len(token_type) <= 32 else type(token_type).__name__
    raise TokenBindingError(
        "the token response has token_type %r, not 'DPoP': the authorization server did "
        "not bind the token to our DPoP key; enable DPoP for this client at the server, or "
        "turn OAUTH_DPOP off" % shown,
        "token_type",
        DPOP_TOKEN_TYPE,
        shown,
    )


__all__ = ("DPoPKey", "NonceStore", "TokenBindingError", "make_proof")
