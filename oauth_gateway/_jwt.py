"""Keys and JWTs: key files, private keys, JWK and certificate thumbprints, signing.

The one home of the key-file rules (:func:`check_key_file`), the loaded key
(:class:`PrivateKey`), RFC 7638 JWK thumbprints, RFC 8705 certificate thumbprints and JWT
signing with PyJWT (imported only when needed: ``pip install 'oauth-gateway[jwt]'``).
:mod:`oauth_gateway.client_auth` and :mod:`oauth_gateway.dpop` use them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import ssl
import stat
from typing import Any, Dict, Mapping, NoReturn, Optional, Tuple, Union

from ._helpers import MAX_SECRET_FILE_BYTES, read_regular_file
from ._jsonpath import join as _join_path
from .exceptions import ConfigError

__all__ = (
    "JWT_EXTRA",
    "MAX_CERT_FILE_BYTES",
    "MIN_RSA_BITS",
    "PrivateKey",
    "SIGNING_ALGORITHMS",
    "certificate_thumbprints",
    "check_key_file",
    "import_jwt",
    "jwk_thumbprint",
    "load_private_key",
    "require_jwt",
    "sign_jwt",
)

log = logging.getLogger("oauth_gateway.client_auth")  # the client-auth logger, as before the move

#: Signing algorithms for private_key_jwt (``OAUTH_CLIENT_ASSERTION_ALG``).
SIGNING_ALGORITHMS = ("RS256", "PS256", "ES256", "ES384")
#: The fix named by every "PyJWT is missing" error.
JWT_EXTRA = "pip install 'oauth-gateway[jwt]'"
#: RSA keys shorter than this are refused (RFC 7518 section 3.3).
MIN_RSA_BITS = 2048

_CURVE_ALGS = {"secp256r1": "ES256", "secp384r1": "ES384"}
_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"
_PEM_END = "-----END CERTIFICATE-----"
#: The largest client certificate file read (a certificate and its chain).
MAX_CERT_FILE_BYTES = 1024 * 1024


# --------------------------------------------------------------------------------------
# Files: the one home of the key-file rules
# --------------------------------------------------------------------------------------


def check_key_file(path: str, field: str, json_path: str = "$", label: str = "Private key") -> bytes:
    """Check and read a private key file the way every key file is (fail closed).

    The file must exist, be a regular file (symlinks to one are fine: Kubernetes
    secrets are symlinks; a FIFO or a device is refused without blocking), hold at most
    :data:`~oauth_gateway._helpers.MAX_SECRET_FILE_BYTES` and be readable by this user;
    a file that group or others may read is a WARNING (not an error, so mounted secrets
    with mode 0644 still work).

    Args:
        path: The file path.
        field: The config key, like ``OAUTH_CLIENT_PRIVATE_KEY_PATH``.
        json_path: The JSON path of the ``oauth_config`` object holding ``field``.
        label: How messages name the file, like ``Client key``.

    Returns:
        The file's bytes (read once, after the checks).

    Raises:
        ConfigError: the file is missing, not a regular file, too large or not readable.
    """
    where = _join_path(json_path, field)
    if not os.path.exists(path):
        raise ConfigError("%s not found: %s" % (label, path), where, "check the path and its permissions (chmod 600)")
    if not os.path.isfile(path):
        raise ConfigError("%s is not a regular file: %s" % (label, path), where, "point it at the PEM file itself")
    if not os.access(path, os.R_OK):
        raise ConfigError(
            "%s is not readable: %s" % (label, path),
            where,
            "make it readable by this user (chmod 600, owned by the gateway's user)",
        )
    read, problem = read_regular_file(path, MAX_SECRET_FILE_BYTES)
    if problem is not None:
        raise ConfigError("%s %s %s" % (label, path, problem.problem), where, problem.hint)
    assert read is not None
    if read.mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "%s %s is readable by group or others (mode %o); run chmod 600 on it",
            label,
            path,
            read.mode,
        )
    return read.data


def import_jwt(where: str) -> Any:
    """Import PyJWT with its cryptography backend, or raise the error naming the extra."""
    try:
        import jwt  # noqa: F401
        from jwt.algorithms import has_crypto
    except ImportError:
        raise ConfigError(
            "signing JWTs (private_key_jwt, client_secret_jwt, DPoP) needs PyJWT, which is not installed",
            where,
            "install it with: %s" % JWT_EXTRA,
        ) from None
    if not has_crypto:
        raise ConfigError(
            "signing JWTs needs the cryptography package, which is not installed",
            where,
            "install it with: %s" % JWT_EXTRA,
        )
    return jwt


def require_jwt(where: str = "$") -> Any:
    """Import PyJWT with its cryptography backend and return the ``jwt`` module.

    For modules that sign or make keys themselves (DPoP): the one place that turns a
    missing optional extra into a :class:`ConfigError` naming ``pip install
    'oauth-gateway[jwt]'``.

    Args:
        where: The JSON path of the config key that needs signing, for the message.

    Raises:
        ConfigError: PyJWT or cryptography is not installed.
    """
    return import_jwt(where)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_int(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of a public RSA or EC JWK, base64url (DPoP's ``jkt``)."""
    members = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


class PrivateKey:
    """A loaded RSA or EC private key; its ``repr`` shows the path and type, never the key.

    Immutable and thread-safe (cryptography keys sign concurrently).

    Attributes:
        path: The file it came from, or None.
        key_type: ``"RSA"`` or ``"EC"``.
        curve: ``"P-256"`` or ``"P-384"`` for EC keys, else None.
        bits: The key size in bits.
        default_alg: RS256 for RSA, ES256 for P-256, ES384 for P-384.
    """

    def __init__(self, key: Any, path: Optional[str] = None) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        self._key = key
        self.path = path
        self.bits = getattr(key, "key_size", 0)
        if isinstance(key, rsa.RSAPrivateKey):
            self.key_type, self.curve, self.default_alg = "RSA", None, "RS256"
        elif isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _CURVE_ALGS:
            self.key_type = "EC"
            self.curve = "P-256" if key.curve.name == "secp256r1" else "P-384"
            self.default_alg = _CURVE_ALGS[key.curve.name]
        else:
            raise ValueError("unsupported key type")

    def __repr__(self) -> str:
        kind = "EC %s" % self.curve if self.key_type == "EC" else "RSA %d" % self.bits
        return "PrivateKey(path=%r, type=%r)" % (self.path, kind)

    def __reduce__(self) -> NoReturn:
        raise TypeError("a PrivateKey is not picklable; load it again from its file")

    @property
    def signing_key(self) -> Any:
        """The cryptography key object, for signing."""
        return self._key

    def public_jwk(self) -> Dict[str, str]:
        """The public key as a JWK dict (``kty``, ``n``/``e`` or ``crv``/``x``/``y``)."""
        numbers = self._key.public_key().public_numbers()
        if self.key_type == "RSA":
            return {"kty": "RSA", "n": _b64url_int(numbers.n), "e": _b64url_int(numbers.e)}
        size = (self.bits + 7) // 8
        return {
            "kty": "EC",
            "crv": self.curve or "",
            "x": _b64url(numbers.x.to_bytes(size, "big")),
            "y": _b64url(numbers.y.to_bytes(size, "big")),
        }

    def is_pair_of(self, certificate_der: bytes) -> bool:
        """True when the DER certificate holds this key's public key."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        cert_key = x509.load_der_x509_certificate(certificate_der).public_key()
        fmt = serialization.PublicFormat.SubjectPublicKeyInfo
        der = serialization.Encoding.DER
        return bool(cert_key.public_bytes(der, fmt) == self._key.public_key().public_bytes(der, fmt))


def load_private_key(
    path: str,
    password: Optional[str] = None,
    *,
    json_path: str = "$",
    field: str = "OAUTH_CLIENT_PRIVATE_KEY_PATH",
) -> PrivateKey:
    """Load a PEM RSA (2048 bits or more) or EC P-256/P-384 private key, failing closed.

    The file is checked by :func:`check_key_file` first. Messages name the file and the
    problem, never its content or the password.

    Args:
        path: The PEM file (PKCS#8 or traditional, optionally encrypted).
        password: The key's password, or None for an unencrypted key.
        json_path: The JSON path of the ``oauth_config`` object.
        field: The config key naming the file.

    Raises:
        ConfigError: the file is missing or unreadable, PyJWT/cryptography is missing,
            the password is wrong or missing, or the key type or size is not supported.
    """
    where = _join_path(json_path, field)
    import_jwt(where)
    data = check_key_file(path, field, json_path)
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(data, password.encode("utf-8") if password else None)
    except TypeError:
        # cryptography: a password for an unencrypted key, or none for an encrypted one.
        if password:
            problem, fix = "is not encrypted, but a password was given", "remove the key password"
        else:
            problem, fix = "is encrypted and no password was given", "set the key password"
        raise ConfigError("private key %s %s" % (path, problem), where, fix) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(
            "private key %s does not load: not a PEM private key, or the password is wrong" % path,
            where,
            "use a PEM RSA or EC private key (BEGIN PRIVATE KEY) and its password",
        ) from None
    try:
        loaded = PrivateKey(key, path)
    except ValueError:
        raise ConfigError(
            "private key %s is of an unsupported type (%s)" % (path, type(key).__name__.lstrip("_")),
            where,
            "use an RSA key (2048 bits or more) or an EC key on P-256 or P-384",
        ) from None
    if loaded.key_type == "RSA" and loaded.bits < MIN_RSA_BITS:
        raise ConfigError(
            "private key %s is RSA %d bits, too short to sign with" % (path, loaded.bits),
            where,
            "use an RSA key of %d bits or more, or an EC P-256 key" % MIN_RSA_BITS,
        )
    return loaded


def certificate_thumbprints(
    cert_path: str, *, json_path: str = "$", field: str = "OAUTH_CLIENT_CERT_PATH"
) -> Tuple[str, str, bytes]:
    """Read the first PEM certificate of ``cert_path``: its ``x5t``, ``x5t#S256`` and DER.

    ``x5t`` is the base64url SHA-1 of the DER certificate (Entra ID requires it),
    ``x5t#S256`` the base64url SHA-256 (RFC 7515 section 4.1.8).

    Raises:
        ConfigError: the file is missing, unreadable or holds no PEM certificate.
    """
    where = _join_path(json_path, field)
    read, problem = read_regular_file(cert_path, MAX_CERT_FILE_BYTES)
    if problem is not None:
        raise ConfigError(
            "cannot read the client certificate %s: it %s" % (cert_path, problem.problem),
            where,
            "%s; check the path and that this user may read it" % problem.hint,
        )
    assert read is not None
    text = read.data.decode("ascii", errors="replace")
    # Two plain searches, not a regular expression: linear whatever the file holds.
    begin = text.find(_PEM_BEGIN)
    end = text.find(_PEM_END, begin + len(_PEM_BEGIN)) if begin >= 0 else -1
    block = text[begin : end + len(_PEM_END)] if end >= 0 else ""
    try:
        der = ssl.PEM_cert_to_DER_cert(block) if block else b""
    except (ValueError, binascii.Error):
        der = b""
    if not der:
        raise ConfigError(
            "client certificate %s holds no PEM certificate" % cert_path,
            where,
            "point it at the PEM certificate (BEGIN CERTIFICATE) registered with the server",
        )
    # x5t is the SHA-1 thumbprint RFC 7515 section 4.1.7 defines: a certificate's name, not a
    # security check (usedforsecurity=False would say so, but needs Python 3.9).
    x5t = hashlib.sha1(der).digest()  # noqa: S324
    return _b64url(x5t), _b64url(hashlib.sha256(der).digest()), der


# --------------------------------------------------------------------------------------
# Signing
# --------------------------------------------------------------------------------------


def sign_jwt(
    header: Mapping[str, Any],
    claims: Mapping[str, Any],
    key: Union[PrivateKey, bytes],
    alg: str,
) -> str:
    """Sign ``claims`` as a compact JWS with ``alg``; ``header`` adds to ``typ``/``alg``.

    Used for client assertions here and for DPoP proofs (``typ: dpop+jwt``, ``jwk``).

    Args:
        header: Extra JOSE header members (``kid``, ``x5t#S256``, ``typ``, ``jwk``).
        claims: The JWT claims.
        key: A :class:`PrivateKey` for RS/PS/ES algorithms, or the secret bytes for HS256.
        alg: The JWS algorithm (``RS256``, ``PS256``, ``ES256``, ``ES384``, ``HS256``).

    Returns:
        The compact serialization ``header.payload.signature``.

    Raises:
        ConfigError: PyJWT or cryptography is not installed.
    """
    jwt = import_jwt("$")
    signing_key = key.signing_key if isinstance(key, PrivateKey) else key
    compact: str = jwt.encode(dict(claims), signing_key, algorithm=alg, headers=dict(header))
    return compact
