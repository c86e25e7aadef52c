"""OAuthConfig: one validated, immutable ``oauth_config`` block with its secrets resolved.

The bundled JSON Schema checks the shape; this module adds what a schema cannot:
``${ENV}`` references and secret files are resolved, ``~`` is expanded, URLs are
re-checked after resolution, and the mTLS files must exist and load as a pair.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import re
import ssl
import stat
from typing import Any, Dict, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from . import schema as _schema
from ._helpers import resolve_env
from ._jsonpath import describe as _describe, join as _join
from .exceptions import ConfigError

log = logging.getLogger(__name__)

DEFAULT_VERSION = "2.0"
DEFAULT_EXPIRY_BUFFER = 300
DEFAULT_TIMEOUT = 10.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_RETRY_BACKOFF = 2.0
DEFAULT_RETRY_AFTER_MAX = 60.0

_SECRET_KEYS = frozenset(["OAUTH_CLIENT_SECRET"])




def _https_problem(url: str, key: str, version: str) -> Optional[Tuple[str, str]]:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ("must be an absolute http(s) URL, got %r" % url, "write it like https://idp.example.com/oauth/token")
    if version == "2.1" and key == "OAUTH_TOKEN_URL":
        return ("OAuth 2.1 requires HTTPS for token_url", "use an https:// URL or set OAUTH_VERSION to \"2.0\"")
    return (
        "must be https, got %r" % url,
        "use https, or set OAUTH_ENFORCE_HTTPS to false for local tests (OAuth 2.0 only)",
    )


def _expand(path: str) -> str:
    return os.path.expanduser(path) if path else ""


def _cert_not_after(path: str) -> Optional[datetime.datetime]:
    """Return the certificate's expiry, or None when the interpreter cannot tell."""
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is None:  # pragma: no cover - CPython always has it
        return None
    try:
        not_after = decode(path)["notAfter"]
    except Exception:  # an unparsable certificate is reported by load_cert_chain instead
        return None
    return datetime.datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), datetime.timezone.utc)


def _check_tls_files(cert: str, key: str, ca: str, base: str) -> None:
    for value, label, name in (
        (cert, "Client certificate", "OAUTH_CLIENT_CERT_PATH"),
        (key, "Client key", "OAUTH_CLIENT_KEY_PATH"),
        (ca, "CA bundle", "OAUTH_CA_BUNDLE_PATH"),
    ):
        if value and not os.path.isfile(value):
            raise ConfigError(
                "%s not found: %s" % (label, value),
                _join(base, name),
                "check the path and its permissions (chmod 600)",
            )
        if value and not os.access(value, os.R_OK):
            raise ConfigError(
                "%s is not readable: %s" % (label, value),
                _join(base, name),
                "make it readable by this user (chmod 600, owned by the gateway's user)",
            )
    if ca:
        try:
            ssl.create_default_context(cafile=ca)
        except (ssl.SSLError, ValueError, OSError) as exc:
            raise ConfigError(
                "CA bundle %s holds no usable PEM certificate (%s)" % (ca, exc.__class__.__name__),
                _join(base, "OAUTH_CA_BUNDLE_PATH"),
                "point it at a PEM file of CA certificates",
            ) from None
    if not cert:
        return
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key or None)
    except (ssl.SSLError, ValueError, OSError) as exc:
        raise ConfigError(
            "client certificate %s and key %s do not load as a pair (%s)"
            % (cert, key, getattr(exc, "reason", None) or exc.__class__.__name__),
            _join(base, "OAUTH_CLIENT_KEY_PATH"),
            "use the PEM private key that belongs to this certificate, unencrypted",
        ) from None
    not_after = _cert_not_after(cert)
    if not_after is not None and not_after <= datetime.datetime.now(datetime.timezone.utc):
        raise ConfigError(
            "Client certificate expired on %s: %s" % (not_after.strftime("%Y-%m-%d %H:%M UTC"), cert),
            _join(base, "OAUTH_CLIENT_CERT_PATH"),
            "renew the certificate and register the new one with the authorization server",
        )
    if key:
        mode = os.stat(key).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning(
                "Client key %s is readable by group or others (mode %o); run chmod 600 on it",
                key,
                stat.S_IMODE(mode),
            )


def _read_secret_file(path: str, json_path: str) -> str:
    try:
        with open(path, "r", encoding="utf-8") as handle:
            secret = handle.read().strip("\r\n")
    except OSError as exc:
        raise ConfigError(
            "cannot read the secret file %s (%s)" % (path, exc.strerror or exc.__class__.__name__),
            json_path,
            "check the path and that this user may read it",
        ) from None
    if not secret:
        raise ConfigError("the secret file %s is empty" % path, json_path, "write the client secret into it")
    return secret


class OAuthConfig:
    """One server's OAuth settings, validated. Immutable, so safe to share across threads.

    Build it with :meth:`from_dict`. Attributes are the ``OAUTH_*`` keys in snake_case
    (``OAUTH_TOKEN_URL`` is ``token_url``); ``repr`` and :meth:`to_dict` mask the secret.
    """

    __slots__ = (
        "enabled",
        "is_remote",
        "version",
        "grant_type",
        "client_id",
        "client_secret",
        "token_url",
        "audience",
        "organization",
        "scope",
        "scopes",
        "resources",
        "use_basic_auth",
        "enforce_https",
        "token_in_header_only",
        "validate_scopes",
        "expiry_buffer",
        "use_mtls",
        "client_cert_path",
        "client_key_path",
        "ca_bundle_path",
        "revocation_url",
        "additional_params",
        "custom_headers",
        "timeout",
        "connect_timeout",
        "max_retries",
        "retry_backoff",
        "retry_after_max",
        "fingerprint",
    )

    def __init__(self, **values: Any):
        sets = object.__setattr__
        for name in self.__slots__:
            if name != "fingerprint":
                sets(self, name, values[name])
        sets(self, "fingerprint", self._compute_fingerprint())

    @classmethod
    def from_dict(
        cls,
        block: Any,
        json_path: str = "$",
        environ: Optional[Mapping[str, str]] = None,
    ) -> "OAuthConfig":
        """Validate an ``oauth_config`` mapping and build the config.

        Args:
            block: the ``oauth_config`` object, as parsed from JSON.
            json_path: where the block sits in its file, used in error messages.
            environ: where ``${NAME}`` references are looked up; ``os.environ`` by default.

        Returns:
            The validated config.

        Raises:
            ConfigError: the first problem found, naming its JSON path and the fix.
        """
        if not isinstance(block, dict):
            raise ConfigError(
                "oauth_config must be a JSON object, got %s" % _describe(block),
                json_path,
                'write it as {"enabled": true, "OAUTH_TOKEN_URL": "...", ...}',
            )
        _schema.raise_for_problems(_schema.validate_oauth_block(block, json_path))
        env = os.environ if environ is None else environ
        data = {k: resolve_env(v, _join(json_path, k), env) for k, v in block.items()}

        def path(key):
            return _join(json_path, key)

        enabled = data.get("enabled", False)
        version = data.get("OAUTH_VERSION", DEFAULT_VERSION)
        enforce_https = data.get("OAUTH_ENFORCE_HTTPS", True)
        secret = data.get("OAUTH_CLIENT_SECRET", "")
        if data.get("OAUTH_CLIENT_SECRET_FILE"):
            secret = _read_secret_file(_expand(data["OAUTH_CLIENT_SECRET_FILE"]), path("OAUTH_CLIENT_SECRET_FILE"))
        use_mtls = data.get("OAUTH_USE_MTLS", False)
        cert = _expand(data.get("OAUTH_CLIENT_CERT_PATH") or "")
        key = _expand(data.get("OAUTH_CLIENT_KEY_PATH") or "")
        ca = _expand(data.get("OAUTH_CA_BUNDLE_PATH") or "")
        token_url = data.get("OAUTH_TOKEN_URL", "")
        revocation_url = data.get("OAUTH_REVOCATION_URL") or ""  # the seed writes null
        resource = data.get("OAUTH_RESOURCE", "")
        resources = tuple(resource) if isinstance(resource, list) else ((resource,) if resource else ())

        if enabled:
            for name, value in (("OAUTH_CLIENT_ID", data.get("OAUTH_CLIENT_ID", "")), ("OAUTH_TOKEN_URL", token_url)):
                if not value:
                    raise ConfigError("is empty after resolving ${...} references", path(name), "set it to a value")
            if not secret and not use_mtls:
                raise ConfigError(
                    "is empty after resolving ${...} references",
                    path("OAUTH_CLIENT_SECRET"),
                    "set the secret, or use OAUTH_CLIENT_SECRET_FILE or OAUTH_USE_MTLS",
                )
        for name, url in (("OAUTH_TOKEN_URL", token_url), ("OAUTH_REVOCATION_URL", revocation_url)):
            if not url:
                continue
            problem = _https_problem(url, name, version)
            if problem and (enforce_https or urlsplit(url).scheme not in ("http", "https")):
                raise ConfigError(problem[0], path(name), problem[1])
        for i, uri in enumerate(resources):
            parts = urlsplit(uri)
            if not parts.scheme or parts.fragment or "#" in uri:
                where = path("OAUTH_RESOURCE") + ("[%d]" % i if isinstance(resource, list) else "")
                raise ConfigError(
                    "must be an absolute URI without a fragment (RFC 8707), got %r" % uri,
                    where,
                    "write it like https://api.example.com/mcp",
                )
        if enabled:
            _check_tls_files(cert if use_mtls else "", key if use_mtls else "", ca, json_path)

        scope = " ".join(data.get("OAUTH_SCOPE", "").split())
        return cls(
            enabled=enabled,
            is_remote=data.get("is_remote"),
            version=version,
            grant_type=data.get("OAUTH_GRANT_TYPE", "client_credentials"),
            client_id=data.get("OAUTH_CLIENT_ID", ""),
            client_secret=secret,
            token_url=token_url,
            audience=data.get("OAUTH_AUDIENCE", ""),
            organization=data.get("OAUTH_ORGANIZATION", ""),
            scope=scope,
            scopes=frozenset(scope.split()),
            resources=resources,
            use_basic_auth=data.get("OAUTH_USE_BASIC_AUTH", True),
            enforce_https=enforce_https,
            token_in_header_only=data.get("OAUTH_TOKEN_IN_HEADER_ONLY", True),
            validate_scopes=data.get("OAUTH_VALIDATE_SCOPES", True),
            expiry_buffer=data.get("OAUTH_TOKEN_EXPIRY_BUFFER", DEFAULT_EXPIRY_BUFFER),
            use_mtls=use_mtls,
            client_cert_path=cert,
            client_key_path=key,
            ca_bundle_path=ca,
            revocation_url=revocation_url,
            additional_params=tuple(sorted((k, _form_value(v)) for k, v in data.get("OAUTH_ADDITIONAL_PARAMS", {}).items())),
            custom_headers=tuple(sorted(data.get("OAUTH_CUSTOM_HEADERS", {}).items())),
            timeout=float(data.get("OAUTH_TIMEOUT", DEFAULT_TIMEOUT)),
            connect_timeout=float(data.get("OAUTH_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT)),
            max_retries=data.get("OAUTH_MAX_RETRIES", DEFAULT_MAX_RETRIES),
            retry_backoff=float(data.get("OAUTH_RETRY_BACKOFF", DEFAULT_RETRY_BACKOFF)),
            retry_after_max=float(data.get("OAUTH_RETRY_AFTER_MAX", DEFAULT_RETRY_AFTER_MAX)),
        )

    @property
    def auth_method(self) -> str:
        """The client authentication method: client_secret_basic, client_secret_post or tls_client_auth."""
        if self.use_mtls and not self.client_secret:
            return "tls_client_auth"
        return "client_secret_basic" if self.use_basic_auth else "client_secret_post"

    @property
    def tls_identity(self) -> Tuple[Optional[Tuple[str, str]], Any]:
        """``(cert, verify)`` as requests takes them: the client cert pair (or None) and the CA bundle (or True)."""
        cert = (self.client_cert_path, self.client_key_path) if self.use_mtls else None
        return cert, (self.ca_bundle_path or True)

    def _compute_fingerprint(self) -> str:
        material = {
            name: getattr(self, name)
            for name in (
                "version",
                "grant_type",
                "client_id",
                "token_url",
                "audience",
                "organization",
                "scope",
                "resources",
                "use_basic_auth",
                "use_mtls",
                "client_cert_path",
                "client_key_path",
                "ca_bundle_path",
                "additional_params",
                "custom_headers",
            )
        }
        material["client_secret"] = hashlib.sha256(self.client_secret.encode("utf-8")).hexdigest()
        blob = json.dumps(material, sort_keys=True, default=list).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_dict(self, show_secret: bool = False) -> Dict[str, Any]:
        """Return the config as an ``oauth_config`` mapping, the secret masked unless asked for."""
        secret = self.client_secret if show_secret else ("***" if self.client_secret else "")
        data: Dict[str, Any] = {
            "enabled": self.enabled,
            "OAUTH_VERSION": self.version,
            "OAUTH_GRANT_TYPE": self.grant_type,
            "OAUTH_CLIENT_ID": self.client_id,
            "OAUTH_CLIENT_SECRET": secret,
            "OAUTH_TOKEN_URL": self.token_url,
            "OAUTH_AUDIENCE": self.audience,
            "OAUTH_ORGANIZATION": self.organization,
            "OAUTH_SCOPE": self.scope,
            "OAUTH_RESOURCE": list(self.resources) if len(self.resources) != 1 else self.resources[0],
            "OAUTH_USE_BASIC_AUTH": self.use_basic_auth,
            "OAUTH_ENFORCE_HTTPS": self.enforce_https,
            "OAUTH_TOKEN_IN_HEADER_ONLY": self.token_in_header_only,
            "OAUTH_VALIDATE_SCOPES": self.validate_scopes,
            "OAUTH_TOKEN_EXPIRY_BUFFER": self.expiry_buffer,
            "OAUTH_USE_MTLS": self.use_mtls,
            "OAUTH_CLIENT_CERT_PATH": self.client_cert_path,
            "OAUTH_CLIENT_KEY_PATH": self.client_key_path,
            "OAUTH_CA_BUNDLE_PATH": self.ca_bundle_path,
            "OAUTH_REVOCATION_URL": self.revocation_url,
            "OAUTH_ADDITIONAL_PARAMS": dict(self.additional_params),
            "OAUTH_CUSTOM_HEADERS": dict(self.custom_headers),
            "OAUTH_TIMEOUT": self.timeout,
            "OAUTH_CONNECT_TIMEOUT": self.connect_timeout,
            "OAUTH_MAX_RETRIES": self.max_retries,
            "OAUTH_RETRY_BACKOFF": self.retry_backoff,
            "OAUTH_RETRY_AFTER_MAX": self.retry_after_max,
        }
        if self.is_remote is not None:
            data["is_remote"] = self.is_remote
        if not self.resources:
            data["OAUTH_RESOURCE"] = ""
        return data

    def __setattr__(self, name, value):
        raise AttributeError("OAuthConfig is immutable; build a new one with OAuthConfig.from_dict")

    def __delattr__(self, name):
        raise AttributeError("OAuthConfig is immutable")

    def __eq__(self, other):
        if not isinstance(other, OAuthConfig):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __hash__(self):
        return hash(self.fingerprint)

    def __reduce__(self):
        return (_restore, ({n: getattr(self, n) for n in self.__slots__ if n != "fingerprint"},))

    def __repr__(self):
        return "OAuthConfig(client_id=%r, token_url=%r, version=%r, auth_method=%r, scope=%r, client_secret=%s)" % (
            self.client_id,
            self.token_url,
            self.version,
            self.auth_method,
            self.scope,
            "'***'" if self.client_secret else "''",
        )


def _restore(values) -> OAuthConfig:
    return OAuthConfig(**values)


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
