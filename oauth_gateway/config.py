"""OAuthConfig: one validated, immutable ``oauth_config`` block with its secrets resolved.

The bundled JSON Schema checks the shape; this module adds what a schema cannot:
``${ENV}`` references and secret files are resolved, ``~`` is expanded, URLs are
re-checked after resolution, and the mTLS files must exist and load as a pair.

Every key is declared once, in :data:`FIELDS`: its file key, attribute, how it is
loaded and written back, whether it is secret or a URL, how it enters the
fingerprint and an optional check against the other keys. ``from_dict``, keyword
construction, ``to_dict``, ``repr``, equality, pickling and the fingerprint are all
derived from that table. Defaults are not declared here: they are read from the
bundled JSON Schema's ``default`` annotations, the one place they live.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, NamedTuple, Optional, Tuple, Union
from urllib.parse import urlsplit

from . import schema as _schema
from ._config_files import check_tls_files, expand_path, read_secret_file
from ._helpers import redact_url, resolve_env
from ._http import credential_problem, transport_problem
from ._jsonpath import describe as _describe
from ._jsonpath import join as _join
from ._jwt import check_key_file
from ._key_checks import block_path, check_custom_headers, check_dpop, check_grant, load_identity_assertion
from ._principal import config_principal
from .client_auth import CREDENTIALS, JWT_BEARER_GRANT_TYPE, auth_problem, default_auth_method, held_credentials
from .exceptions import ConfigError
from .grants import TOKEN_EXCHANGE_GRANT_TYPE, IdentityAssertion
from .providers import ProviderOptions, load_options, uses_client_credentials

__all__ = ("FIELDS", "Field", "OAuthConfig")

log = logging.getLogger(__name__)

#: The ``oauth_config`` properties of the bundled schema, whose ``default`` annotations
#: are the defaults of every key (read once, here).
_PROPERTIES: Dict[str, Any] = _schema.load_schema("oauth-config")["properties"]


# --------------------------------------------------------------------------- the field table

#: ``Field.fingerprint`` values: the value itself enters the fingerprint, a SHA-256 of it
#: (secrets), or nothing (settings that do not change which token the server issues).
IN_FINGERPRINT = "value"
HASHED_IN_FINGERPRINT = "sha256"
NOT_IN_FINGERPRINT = "no"

_Values = Dict[str, Any]
_PathOf = Callable[[str], str]
_OMIT: Any = object()  # returned by a Field.dump: to_dict leaves the key out


def _same(value: Any, where: str) -> Any:
    return value


def _text(value: Any, where: str) -> str:
    return "" if value is None else str(value)  # the seed writes null for unset strings


def _path(value: Any, where: str) -> str:
    return expand_path(value or "")


def _float(value: Any, where: str) -> float:
    return float(value)


def _scope(value: Any, where: str) -> str:
    return " ".join(str(value).split())


def _pairs(value: Any, where: str) -> Tuple[Tuple[str, str], ...]:
    return tuple(sorted((str(k), _form_value(v)) for k, v in dict(value or {}).items()))


def _resources(value: Any, where: str) -> Tuple[str, ...]:
    resources = tuple(value) if isinstance(value, list) else ((value,) if value else ())
    for i, uri in enumerate(resources):
        parts = urlsplit(uri)
        if not parts.scheme or parts.fragment or "#" in uri:
            raise ConfigError(
                "must be an absolute URI without a fragment (RFC 8707), got %r" % redact_url(uri),
                where + ("[%d]" % i if isinstance(value, list) else ""),
                "write it like https://api.example.com/mcp",
            )
    return resources


def _dump_same(value: Any) -> Any:
    return value


def _dump_unless_none(value: Any) -> Any:
    return _OMIT if value is None else value


def _dump_never(value: Any) -> Any:
    return _OMIT


def _dump_pairs(value: Any) -> Dict[str, str]:
    return dict(value)


def _options(value: Any, where: str) -> ProviderOptions:
    # Every value counts as secret until _check_provider reads the provider's schema.
    data = dict(value or {})
    return ProviderOptions(data, data)


def _dump_options(value: ProviderOptions) -> Dict[str, Any]:
    return value.to_dict()


def _mask_options(value: ProviderOptions) -> Dict[str, Any]:
    return value.masked()


def _fingerprint_default(value: Any) -> Any:
    """How ``json.dumps`` writes a non-JSON value into the fingerprint material."""
    if isinstance(value, (ProviderOptions, IdentityAssertion)):
        return value.fingerprint_material()  # secrets as their SHA-256
    return list(value)


def _dump_resources(value: Tuple[str, ...]) -> Union[str, List[str]]:
    if not value:
        return ""
    return value[0] if len(value) == 1 else list(value)


class Field(NamedTuple):
    """One ``oauth_config`` key: how it is read, written, shown and compared.

    Attributes:
        key: the key in the file (``OAUTH_TOKEN_URL``); messages use it.
        name: the attribute of :class:`OAuthConfig` (``token_url``).
        type: the attribute's Python type after loading.
        fingerprint: ``IN_FINGERPRINT``, ``HASHED_IN_FINGERPRINT`` or
            ``NOT_IN_FINGERPRINT``.
        secret: masked as ``***`` by ``repr`` and ``to_dict`` (unless asked).
        is_url: a URL (checked for https after ``${ENV}`` resolution).
        in_repr: shown by ``repr``.
        load: ``load(file_value, json_path) -> attribute value``; checks the key alone and
            may raise :class:`~oauth_gateway.ConfigError`.
        dump: ``dump(attribute value) -> file value`` for ``to_dict`` (``_OMIT`` leaves it out).
        mask: ``mask(attribute value) -> shown value`` for ``repr`` and ``to_dict`` (unless
            the secret is asked for), for a value only parts of which are secret.
        check: ``check(values, path_of)``, run once every key is loaded, in table order,
            for rules that involve other keys. ``values`` maps attribute names to loaded
            values (a check may complete values derived from its key, as the secret file
            does); ``path_of(key)`` gives a key's JSON path for the error.

    The default of every key is the ``default`` of its property in the bundled schema.
    """

    key: str
    name: str
    type: Any
    fingerprint: str = NOT_IN_FINGERPRINT
    secret: bool = False
    is_url: bool = False
    in_repr: bool = False
    load: Callable[[Any, str], Any] = _same
    dump: Callable[[Any], Any] = _dump_same
    check: Optional[Callable[[_Values, _PathOf], None]] = None
    mask: Optional[Callable[[Any], Any]] = None

    @property
    def default(self) -> Any:
        """The key's default, from the bundled schema."""
        return _PROPERTIES[self.key]["default"]


def _needs_client_credentials(values: _Values) -> bool:
    """True when enabled with the client-credentials provider (another provider brings its own)."""
    return bool(values["enabled"]) and uses_client_credentials(values["provider"])


def _check_provider(values: _Values, path_of: _PathOf) -> None:
    options = values["provider_options"]
    values["provider_options"] = load_options(
        values["provider"], options.to_dict(), path_of("OAUTH_PROVIDER_OPTIONS"), check=bool(values["enabled"])
    )


def _check_required(key: str, name: str) -> Callable[[_Values, _PathOf], None]:
    def check(values: _Values, path_of: _PathOf) -> None:
        if _needs_client_credentials(values) and not values[name]:
            raise ConfigError("is empty after resolving ${...} references", path_of(key), "set it to a value")

    return check


def _held(values: _Values) -> FrozenSet[str]:
    """The kinds of credentials the block holds (client_auth's table names them)."""
    return held_credentials(
        secret=bool(values["client_secret"]),
        key=bool(values["client_private_key_path"]),
        assertion=bool(values["client_assertion_file"] or values["client_assertion_source"]),
        certificate=bool(values["use_mtls"]),
    )


def _auth_method(values: _Values) -> str:
    jwt_bearer = values["grant_type"] == JWT_BEARER_GRANT_TYPE
    held = _held(values)
    if not held and values["grant_type"] == TOKEN_EXCHANGE_GRANT_TYPE:
        return values["token_endpoint_auth_method"] or "none"  # the subject token is the grant: a public client
    return values["token_endpoint_auth_method"] or default_auth_method(
        held, use_basic_auth=bool(values["use_basic_auth"]), jwt_bearer=jwt_bearer
    )


def _check_secret(values: _Values, path_of: _PathOf) -> None:
    if values["client_secret_file"]:
        values["client_secret"] = read_secret_file(values["client_secret_file"], path_of("OAUTH_CLIENT_SECRET_FILE"))
    if not _needs_client_credentials(values) or values["client_secret"]:
        return
    problem = auth_problem(_auth_method(values), _held(values))
    if problem is not None and problem.key == "OAUTH_CLIENT_SECRET":
        others = " or ".join(CREDENTIALS[kind].keys for kind in CREDENTIALS if kind != "secret")
        raise ConfigError(
            "is empty after resolving ${...} references",
            path_of("OAUTH_CLIENT_SECRET"),
            "set the secret (or OAUTH_CLIENT_SECRET_FILE), or authenticate with %s instead" % others,
        )


def _check_https(key: str, name: str) -> Callable[[_Values, _PathOf], None]:
    def check(values: _Values, path_of: _PathOf) -> None:
        url = values[name]
        if not url:
            return
        problem = credential_problem(url) or transport_problem(
            url, enforce_https=values["enforce_https"], any_http_host=True
        )
        if problem is None:
            return
        message, hint = problem.problem, problem.hint
        if not problem.malformed and values["version"] == "2.1" and key == "OAUTH_TOKEN_URL":
            message, hint = (
                "OAuth 2.1 requires HTTPS for token_url",
                'use an https:// URL; for a local test server over plain http set OAUTH_VERSION to "2.0" '
                "and OAUTH_ENFORCE_HTTPS to false",
            )
        raise ConfigError(message, path_of(key), hint)

    return check


def discovery_resource(resources: Tuple[str, ...]) -> Optional[str]:
    """The server URL discovery starts from: a single http(s) ``OAUTH_RESOURCE``, or None."""
    if len(resources) == 1 and urlsplit(resources[0]).scheme in ("http", "https"):
        return resources[0]
    return None


def _check_token_url(values: _Values, path_of: _PathOf) -> None:
    if _needs_client_credentials(values) and not values["token_url"]:
        if not values["issuer"] and discovery_resource(values["resources"]) is None:
            raise ConfigError(
                "is required when enabled is true and neither OAUTH_ISSUER nor OAUTH_RESOURCE is set",
                path_of("OAUTH_TOKEN_URL"),
                "set OAUTH_TOKEN_URL to the token endpoint, or let it be discovered: set OAUTH_ISSUER to the "
                "authorization server's issuer, or OAUTH_RESOURCE to the MCP server's URL",
            )
    _check_https("OAUTH_TOKEN_URL", "token_url")(values, path_of)


_CREDENTIAL_RULE = _schema.credential_rule()
#: The keys that hold a credential, one line each in the schema's rule (a client secret or its
#: file, a private key, an assertion file, mTLS): with one set, a config needs OAUTH_TOKEN_URL
#: or OAUTH_ISSUER, so that discovery cannot send it to a server the operator did not name.
_CREDENTIAL_KEYS: Tuple[str, ...] = tuple(
    key for option in _CREDENTIAL_RULE["if"]["anyOf"] for key in option["required"]
)


def _check_credential_destination(values: _Values, path_of: _PathOf) -> None:
    """The schema's credential-destination rule, again on the values after ``${...}`` resolution.

    A ``${TOKEN_URL}`` that resolves to nothing passes the schema but leaves discovery to
    choose where the credential goes.
    """
    if not _needs_client_credentials(values) or values["token_url"] or values["issuer"]:
        return
    if values["trust_discovered_issuer"]:
        return
    if any(values[_BY_KEY[key].name] for key in _CREDENTIAL_KEYS):
        then = _CREDENTIAL_RULE["then"]
        raise ConfigError(then["x-message"], path_of("OAUTH_ISSUER"), then["x-hint"])


def _check_client_auth(values: _Values, path_of: _PathOf) -> None:
    """The chosen method has what it needs; the key file exists (fail closed)."""
    if not _needs_client_credentials(values):
        return
    key_path, assertion_file = values["client_private_key_path"], values["client_assertion_file"]
    if assertion_file and values["client_assertion_source"]:
        raise ConfigError(
            'OAUTH_CLIENT_ASSERTION_FILE is the short form of OAUTH_CLIENT_ASSERTION_SOURCE {"type": "file"}',
            path_of("OAUTH_CLIENT_ASSERTION_SOURCE"),
            "set one of them",
        )
    assertion_file = assertion_file or bool(values["client_assertion_source"])
    problem = auth_problem(_auth_method(values), _held(values))
    if problem is not None and problem.key != "OAUTH_CLIENT_SECRET":  # a missing secret is _check_secret's
        raise ConfigError(problem.message, path_of(problem.key), problem.hint)
    if values["grant_type"] == JWT_BEARER_GRANT_TYPE and not assertion_file:
        raise ConfigError(
            "is required with the jwt-bearer grant",
            path_of("OAUTH_CLIENT_ASSERTION_FILE"),
            "set it to the file holding the platform's JWT, or set OAUTH_CLIENT_ASSERTION_SOURCE",
        )
    if key_path:
        check_key_file(key_path, "OAUTH_CLIENT_PRIVATE_KEY_PATH", block_path(path_of), label="Client assertion key")


def _check_mtls(values: _Values, path_of: _PathOf) -> None:
    if values["enabled"]:
        use_mtls = values["use_mtls"]
        check_tls_files(
            values["client_cert_path"] if use_mtls else "",
            values["client_key_path"] if use_mtls else "",
            values["ca_bundle_path"],
            path_of,
        )


def _identity_assertion(value: Any, where: str) -> Optional[IdentityAssertion]:
    return load_identity_assertion(value, where)


def _dump_identity_assertion(value: Optional[IdentityAssertion]) -> Any:
    return _OMIT if value is None else value.to_dict(show_secret=True)


def _mask_identity_assertion(value: Optional[IdentityAssertion]) -> Any:
    return None if value is None else value.to_dict()


def _check_grant(values: _Values, path_of: _PathOf) -> None:
    if _needs_client_credentials(values):
        check_grant(values, path_of, _CREDENTIAL_RULE["then"]["x-hint"])


#: Every ``oauth_config`` key, in the schema's order. A new key is one entry here plus its
#: schema property (a test holds the two together) and its annotation on OAuthConfig.
FIELDS: Tuple[Field, ...] = (
    Field("enabled", "enabled", bool),
    Field("is_remote", "is_remote", object, dump=_dump_unless_none),
    Field("OAUTH_VERSION", "version", str, IN_FINGERPRINT, in_repr=True),
    Field("OAUTH_GRANT_TYPE", "grant_type", str, IN_FINGERPRINT),
    Field("OAUTH_PROVIDER", "provider", str, IN_FINGERPRINT, in_repr=True),
    # Loaded as all-secret; _check_provider applies the provider's schema and learns which are.
    Field(
        "OAUTH_PROVIDER_OPTIONS",
        "provider_options",
        ProviderOptions,
        IN_FINGERPRINT,
        in_repr=True,
        load=_options,
        dump=_dump_options,
        check=_check_provider,
        mask=_mask_options,
    ),
    Field(
        "OAUTH_CLIENT_ID",
        "client_id",
        str,
        IN_FINGERPRINT,
        in_repr=True,
        check=_check_required("OAUTH_CLIENT_ID", "client_id"),
    ),
    Field(
        "OAUTH_CLIENT_SECRET",
        "client_secret",
        str,
        HASHED_IN_FINGERPRINT,
        secret=True,
        in_repr=True,
        check=_check_secret,
    ),
    # Read into client_secret by _check_secret; the secret's hash covers its content.
    Field("OAUTH_CLIENT_SECRET_FILE", "client_secret_file", str, load=_path, dump=_dump_never),
    Field("OAUTH_TOKEN_URL", "token_url", str, IN_FINGERPRINT, is_url=True, in_repr=True, check=_check_token_url),
    Field(
        "OAUTH_ISSUER",
        "issuer",
        str,
        IN_FINGERPRINT,
        is_url=True,
        in_repr=True,
        load=_text,
        check=_check_https("OAUTH_ISSUER", "issuer"),
    ),
    Field(
        "OAUTH_TRUST_DISCOVERED_ISSUER",
        "trust_discovered_issuer",
        bool,
        IN_FINGERPRINT,
        check=_check_credential_destination,
    ),
    Field(
        "OAUTH_RESOURCE_METADATA_URL",
        "resource_metadata_url",
        str,
        IN_FINGERPRINT,
        is_url=True,
        load=_text,
        check=_check_https("OAUTH_RESOURCE_METADATA_URL", "resource_metadata_url"),
    ),
    Field("OAUTH_TOKEN_ENDPOINT_AUTH_METHOD", "token_endpoint_auth_method", str, IN_FINGERPRINT, load=_text),
    Field("OAUTH_AUDIENCE", "audience", str, IN_FINGERPRINT),
    Field("OAUTH_ORGANIZATION", "organization", str, IN_FINGERPRINT),
    Field("OAUTH_SCOPE", "scope", str, IN_FINGERPRINT, in_repr=True, load=_scope),
    Field("OAUTH_RESOURCE", "resources", tuple, IN_FINGERPRINT, load=_resources, dump=_dump_resources),
    Field("OAUTH_USE_BASIC_AUTH", "use_basic_auth", bool, IN_FINGERPRINT),
    Field("OAUTH_ENFORCE_HTTPS", "enforce_https", bool),
    # Accepted from the seed gateway's files; read by nothing: tokens never go in a query string.
    Field("OAUTH_TOKEN_IN_HEADER_ONLY", "token_in_header_only", bool),
    Field("OAUTH_VALIDATE_SCOPES", "validate_scopes", bool),
    Field("OAUTH_TOKEN_EXPIRY_BUFFER", "expiry_buffer", int),
    Field("OAUTH_USE_MTLS", "use_mtls", bool, IN_FINGERPRINT, check=_check_mtls),
    Field("OAUTH_CLIENT_CERT_PATH", "client_cert_path", str, IN_FINGERPRINT, load=_path),
    Field("OAUTH_CLIENT_KEY_PATH", "client_key_path", str, IN_FINGERPRINT, load=_path),
    Field("OAUTH_CA_BUNDLE_PATH", "ca_bundle_path", str, IN_FINGERPRINT, load=_path),
    Field(
        "OAUTH_CLIENT_PRIVATE_KEY_PATH",
        "client_private_key_path",
        str,
        IN_FINGERPRINT,
        load=_path,
        check=_check_client_auth,
    ),
    Field("OAUTH_CLIENT_PRIVATE_KEY_PASSWORD", "client_private_key_password", str, secret=True, load=_text),
    Field("OAUTH_CLIENT_ASSERTION_ALG", "client_assertion_alg", str, IN_FINGERPRINT, load=_text),
    Field("OAUTH_CLIENT_KEY_ID", "client_key_id", str, IN_FINGERPRINT, load=_text),
    Field("OAUTH_CLIENT_ASSERTION_AUDIENCE", "client_assertion_audience", str, IN_FINGERPRINT, load=_text),
    Field("OAUTH_CLIENT_ASSERTION_FILE", "client_assertion_file", str, IN_FINGERPRINT, load=_path),
    Field(
        "OAUTH_CLIENT_ASSERTION_SOURCE", "client_assertion_source", tuple, IN_FINGERPRINT, load=_pairs, dump=_dump_pairs
    ),
    Field("OAUTH_DPOP", "dpop", bool, IN_FINGERPRINT),
    Field("OAUTH_DPOP_KEY_PATH", "dpop_key_path", str, IN_FINGERPRINT, load=_path, check=check_dpop),
    Field(
        "OAUTH_REVOCATION_URL",
        "revocation_url",
        str,
        is_url=True,
        load=_text,
        check=_check_https("OAUTH_REVOCATION_URL", "revocation_url"),
    ),
    Field("OAUTH_ADDITIONAL_PARAMS", "additional_params", tuple, IN_FINGERPRINT, load=_pairs, dump=_dump_pairs),
    Field(
        "OAUTH_CUSTOM_HEADERS",
        "custom_headers",
        tuple,
        IN_FINGERPRINT,
        load=_pairs,
        dump=_dump_pairs,
        check=check_custom_headers,
    ),
    Field("OAUTH_TIMEOUT", "timeout", float, load=_float),
    Field("OAUTH_CONNECT_TIMEOUT", "connect_timeout", float, load=_float),
    Field("OAUTH_MAX_RETRIES", "max_retries", int),
    Field("OAUTH_RETRY_BACKOFF", "retry_backoff", float, load=_float),
    Field("OAUTH_RETRY_AFTER_MAX", "retry_after_max", float, load=_float),
    # Acting for a user (token exchange, enterprise-managed authorization): _check_grant.
    Field("OAUTH_SUBJECT_TOKEN_FILE", "subject_token_file", str, IN_FINGERPRINT, load=_path),
    Field("OAUTH_SUBJECT_TOKEN_TYPE", "subject_token_type", str, IN_FINGERPRINT, load=_text),
    Field("OAUTH_ACTOR_TOKEN_FILE", "actor_token_file", str, IN_FINGERPRINT, load=_path),
    Field("OAUTH_ACTOR_TOKEN_TYPE", "actor_token_type", str, IN_FINGERPRINT, load=_text),
    Field("OAUTH_REQUESTED_TOKEN_TYPE", "requested_token_type", str, IN_FINGERPRINT, load=_text),
    Field(
        "OAUTH_IDENTITY_ASSERTION",
        "identity_assertion",
        object,
        IN_FINGERPRINT,
        load=_identity_assertion,
        dump=_dump_identity_assertion,
        mask=_mask_identity_assertion,
        check=_check_grant,
    ),
)

_BY_NAME: Dict[str, Field] = {field.name: field for field in FIELDS}
_BY_KEY: Dict[str, Field] = {field.key: field for field in FIELDS}
#: Attributes computed from the fields: the scope as a set, and the fingerprint.
_DERIVED = ("scopes", "fingerprint")
_FINGERPRINTED = tuple(field for field in FIELDS if field.fingerprint != NOT_IN_FINGERPRINT)


def _load(block: Mapping[str, Any], json_path: str, environ: Mapping[str, str]) -> _Values:
    """Resolve, load and check a schema-valid block; return the attribute values."""

    def path_of(key: str) -> str:
        return _join(json_path, key)

    values: _Values = {}
    for field in FIELDS:
        where = path_of(field.key)
        raw = resolve_env(block[field.key], where, environ) if field.key in block else field.default
        values[field.name] = field.load(raw, where)
    for field in FIELDS:
        if field.check is not None:
            field.check(values, path_of)
    return values


class OAuthConfig:
    """One server's OAuth settings, validated. Immutable, so safe to share across threads.

    Build it from a file's block with :meth:`from_dict`, or with keyword arguments named
    like the attributes::

        OAuthConfig(client_id="gateway", client_secret="...", token_url="https://idp/token")

    Keyword construction is ``from_dict`` of the same keys (``enabled`` defaults to
    true there), validated the same way. Attributes are the ``OAUTH_*`` keys in
    snake_case (``OAUTH_TOKEN_URL`` is ``token_url``; :data:`FIELDS` lists them all);
    ``repr`` and :meth:`to_dict` mask the secret.

    Raises:
        ConfigError: a value is invalid (named by its ``OAUTH_*`` key).
        TypeError: an unknown keyword argument.
    """

    __slots__ = tuple(field.name for field in FIELDS) + _DERIVED

    # One annotation per field (a test holds them against FIELDS), for type checkers.
    enabled: bool
    is_remote: Optional[bool]
    version: str
    grant_type: str
    provider: str
    provider_options: ProviderOptions
    client_id: str
    client_secret: str
    client_secret_file: str
    token_url: str
    issuer: str
    trust_discovered_issuer: bool
    resource_metadata_url: str
    token_endpoint_auth_method: str
    audience: str
    organization: str
    scope: str
    resources: Tuple[str, ...]
    use_basic_auth: bool
    enforce_https: bool
    token_in_header_only: bool
    validate_scopes: bool
    expiry_buffer: int
    use_mtls: bool
    client_cert_path: str
    client_key_path: str
    ca_bundle_path: str
    client_private_key_path: str
    client_private_key_password: str
    client_assertion_alg: str
    client_key_id: str
    client_assertion_audience: str
    client_assertion_file: str
    client_assertion_source: Tuple[Tuple[str, str], ...]
    dpop: bool
    dpop_key_path: str
    revocation_url: str
    additional_params: Tuple[Tuple[str, str], ...]
    custom_headers: Tuple[Tuple[str, str], ...]
    timeout: float
    connect_timeout: float
    max_retries: int
    retry_backoff: float
    retry_after_max: float
    subject_token_file: str
    subject_token_type: str
    actor_token_file: str
    actor_token_type: str
    requested_token_type: str
    identity_assertion: Optional[IdentityAssertion]
    scopes: FrozenSet[str]
    fingerprint: str

    def __init__(self, **options: Any) -> None:
        block: Dict[str, Any] = {"enabled": True}
        for name, value in options.items():
            field = _BY_NAME.get(name)
            if field is None:
                raise TypeError(
                    "OAuthConfig() got an unexpected keyword argument %r; use one of: %s"
                    % (name, ", ".join(sorted(_BY_NAME)))
                )
            block[field.key] = _file_value(field, value)
        self._set(self._check_block(block, "$", None))

    @classmethod
    def from_dict(
        cls,
        block: Any,
        json_path: str = "$",
        environ: Optional[Mapping[str, str]] = None,
    ) -> OAuthConfig:
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
        config = cls.__new__(cls)
        config._set(cls._check_block(block, json_path, environ))
        return config

    @staticmethod
    def _check_block(block: Any, json_path: str, environ: Optional[Mapping[str, str]]) -> _Values:
        if not isinstance(block, dict):
            raise ConfigError(
                "oauth_config must be a JSON object, got %s" % _describe(block),
                json_path,
                'write it as {"enabled": true, "OAUTH_TOKEN_URL": "...", ...}',
            )
        _schema.raise_for_problems(_schema.validate_oauth_block(block, json_path))
        return _load(block, json_path, os.environ if environ is None else environ)

    def _set(self, values: Mapping[str, Any]) -> None:
        sets = object.__setattr__
        for field in FIELDS:
            sets(self, field.name, values[field.name])
        sets(self, "scopes", frozenset(self.scope.split()))
        sets(self, "fingerprint", self._compute_fingerprint())

    @property
    def auth_method(self) -> str:
        """The client authentication method (an RFC 8414 name).

        ``OAUTH_TOKEN_ENDPOINT_AUTH_METHOD`` when set; otherwise private_key_jwt with a
        private key or an assertion file (for the client_credentials grant),
        tls_client_auth with mTLS and no secret, none for the jwt-bearer grant without
        a secret, else client_secret_basic or client_secret_post (``OAUTH_USE_BASIC_AUTH``).
        A discovered config without the key takes the first of these the server supports.
        """
        held = held_credentials(
            secret=bool(self.client_secret),
            key=bool(self.client_private_key_path),
            assertion=bool(self.client_assertion_file or self.client_assertion_source),
            certificate=self.use_mtls,
        )
        jwt_bearer = self.grant_type == JWT_BEARER_GRANT_TYPE
        if not held and self.grant_type == TOKEN_EXCHANGE_GRANT_TYPE:
            return self.token_endpoint_auth_method or "none"  # a public client exchanging a subject token
        return self.token_endpoint_auth_method or default_auth_method(
            held, use_basic_auth=self.use_basic_auth, jwt_bearer=jwt_bearer
        )

    @property
    def is_discovered(self) -> bool:
        """True when the token endpoint is not configured and must be discovered.

        Never for another token provider than ``client_credentials``: it brings its own.
        """
        return not self.token_url and uses_client_credentials(self.provider)

    @property
    def discovery_resource(self) -> Optional[str]:
        """The MCP server URL discovery starts from (a single http(s) ``OAUTH_RESOURCE``), or None."""
        return discovery_resource(self.resources)

    def replace(self, **changes: Any) -> OAuthConfig:
        """Return a copy with some attributes replaced (by attribute name).

        For values learned at run time (a discovered token endpoint, issuer, resource,
        scope or authentication method): each value is loaded by its field, but the
        checks that involve other keys are not run again and no file is read.

        Raises:
            TypeError: an unknown attribute name.
        """
        values = {field.name: getattr(self, field.name) for field in FIELDS}
        for name, value in changes.items():
            field = _BY_NAME.get(name)
            if field is None:
                raise TypeError("OAuthConfig.replace() got an unexpected keyword argument %r" % name)
            values[name] = field.load(_file_value(field, value), field.key)
        config = OAuthConfig.__new__(OAuthConfig)
        config._set(values)
        return config

    @property
    def tls_identity(self) -> Tuple[Optional[Tuple[str, str]], Union[str, bool]]:
        """``(cert, verify)`` as requests takes them: the client cert pair (or None) and the CA bundle (or True)."""
        cert = (self.client_cert_path, self.client_key_path) if self.use_mtls else None
        return cert, (self.ca_bundle_path or True)

    def _compute_fingerprint(self) -> str:
        material: Dict[str, Any] = {}
        for field in _FINGERPRINTED:
            value = getattr(self, field.name)
            if field.fingerprint == HASHED_IN_FINGERPRINT:
                value = hashlib.sha256(str(value).encode("utf-8")).hexdigest()
            material[field.name] = value
        principal = config_principal(self)  # what the named files and variables hold
        if principal:
            material["principal"] = principal
        blob = json.dumps(material, sort_keys=True, default=_fingerprint_default).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_dict(self, show_secret: bool = False) -> Dict[str, Any]:
        """Return the config as an ``oauth_config`` mapping, the secret masked unless asked for."""
        data: Dict[str, Any] = {}
        for field in FIELDS:
            value = field.dump(getattr(self, field.name))
            if value is _OMIT:
                continue
            if field.mask is not None and not show_secret:
                value = field.mask(getattr(self, field.name))
            elif field.secret and not show_secret:
                value = "***" if value else ""
            data[field.key] = value
        return data

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("OAuthConfig is immutable; build a new one with OAuthConfig.from_dict")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("OAuthConfig is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OAuthConfig):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in FIELDS)

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __reduce__(self) -> Tuple[Any, ...]:
        return (_restore, ({f.name: getattr(self, f.name) for f in FIELDS},))

    def __repr__(self) -> str:
        shown = []
        for field in FIELDS:
            if not field.in_repr:
                continue
            value = getattr(self, field.name)
            if field.mask is not None:
                value = field.mask(value)
            if field.is_url and value:
                value = redact_url(value)
            shown.append("%s=%s" % (field.name, ("'***'" if value else "''") if field.secret else repr(value)))
            if field.name == "version":
                shown.append("auth_method=%r" % self.auth_method)
        return "OAuthConfig(%s)" % ", ".join(shown)


def _restore(values: Mapping[str, Any]) -> OAuthConfig:
    """Unpickle a config; a key that an older pickle lacks takes its default."""
    config = OAuthConfig.__new__(OAuthConfig)
    complete = {f.name: values[f.name] if f.name in values else f.load(f.default, f.key) for f in FIELDS}
    config._set(complete)
    return config


def _file_value(field: Field, value: Any) -> Any:
    """A keyword argument in the form its file key takes (tuples as lists, pairs as an object)."""
    if isinstance(value, (tuple, list, set, frozenset)):
        if _PROPERTIES[field.key].get("type") == "object":
            return dict(value)
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
