"""Token providers: where a server's token comes from, chosen by name in its ``oauth_config``.

A provider turns a validated :class:`~oauth_gateway.OAuthConfig` and a
:class:`ProviderContext` into a :class:`~oauth_gateway.client.TokenResponse`. Everything
around it is the manager's, the same for every provider: the cache and its fingerprint,
single flight, refresh ahead, stale-if-error, shared caches, injection, the ``requests``
auth object, metrics and secret hygiene. The manager asks a provider only on a cache
miss or a refresh; a cache hit never reaches it.

``OAUTH_PROVIDER`` names the provider (default ``client_credentials``, the built-in
OAuth client-credentials grant); ``OAUTH_PROVIDER_OPTIONS`` holds its own settings,
checked against the provider's JSON Schema fragment (:attr:`TokenProvider.options_schema`).
A name is looked up, in this order, among the built-in providers
(``BUILTIN_PROVIDERS``), the entry points of the group ``oauth_gateway.providers``
(installed distributions declare theirs in their metadata), and as ``module:attribute``.

Writing one::

    from oauth_gateway.providers import TokenProvider, TokenResponse

    class VaultProvider(TokenProvider):
        options_schema = {
            "type": "object",
            "required": ["url"],
            "properties": {"url": {"type": "string"}, "role_token": {"type": "string", "x-secret": True}},
            "additionalProperties": False,
        }

        def fetch(self, config, context):
            answer = context.send("POST", context.options["url"], json={"token": context.options["role_token"]})
            ...
            return TokenResponse(token, "Bearer", expires_in, None)

Option values marked ``"x-secret": true`` or ``"writeOnly": true`` in the fragment are
masked like ``OAUTH_CLIENT_SECRET`` in ``repr``, ``to_dict`` and messages, and enter the
fingerprint hashed.
"""

from __future__ import annotations

import abc
import copy
import hashlib
import importlib
import json
import logging
import os
import threading
import uuid
from typing import TYPE_CHECKING, Any, Callable, Dict, FrozenSet, Iterator, List, Mapping, Optional, Tuple, Union

from .. import schema as _schema
from .._jsonpath import join as _join_path
from .._printable import printable
from .._tokencheck import token_problem
from ..exceptions import ConfigError, OAuthGatewayError, TokenRequestError

if TYPE_CHECKING:  # pragma: no cover
    import requests

    from ..client import TokenClient, TokenResponse
    from ..config import OAuthConfig
    from ..dpop import DPoPKey, NonceStore

_log = logging.getLogger("oauth_gateway")

#: The entry point group installed distributions register their providers in.
ENTRY_POINT_GROUP = "oauth_gateway.providers"
#: The provider used when ``OAUTH_PROVIDER`` is absent: the OAuth client-credentials grant.
_DEFAULT_PROVIDER = "client_credentials"
#: The providers that ship with the package, as ``module:attribute``.
_BUILTIN_PROVIDERS: Mapping[str, str] = {
    "client_credentials": "oauth_gateway.providers:ClientCredentialsProvider",
    "legacy_json": "oauth_gateway.providers.legacy_json:LegacyJsonProvider",
    "static": "oauth_gateway.providers.static:StaticTokenProvider",
}
#: Schema annotations that mark an option as secret.
_SECRET_ANNOTATIONS = ("x-secret", "writeOnly")

_OPTIONS_KEY = "OAUTH_PROVIDER_OPTIONS"
_PROVIDER_KEY = "OAUTH_PROVIDER"


# --------------------------------------------------------------------------- the interface


class TokenProvider(abc.ABC):
    """Where a server's tokens come from. Implementations must be thread-safe.

    One instance serves every server that names it, from many threads at once: keep
    per-call state in locals, and guard any shared memo. The manager calls :meth:`fetch`
    only on a miss or a refresh, one call per cache key at a time.

    Attributes:
        options_schema: a draft-07 JSON Schema for ``OAUTH_PROVIDER_OPTIONS``, or None
            to accept no options. ``oauth-gateway validate`` and config loading apply it
            with the usual JSON-path messages; properties annotated ``"x-secret": true``
            or ``"writeOnly": true`` are masked and hashed like the client secret.
        identity_options: the options that name where the principal's identity is held,
            each mapped to ``"file"`` (a path) or ``"env"`` (a variable name): what they
            hold enters the config fingerprint, so two tenants with the same config text
            never share a cached token.

    Only the built-in ``client_credentials`` provider needs ``OAUTH_CLIENT_ID``,
    ``OAUTH_TOKEN_URL`` and a client secret; with any other, they are optional.
    """

    options_schema: Optional[Dict[str, Any]] = None
    identity_options: Mapping[str, str] = {}

    def check_options(self, options: Mapping[str, Any], json_path: str) -> None:
        """Check what the schema fragment cannot (files exist, ...), once, at config load.

        Args:
            options: the schema-valid options, ``${ENV}`` references resolved.
            json_path: the path of ``OAUTH_PROVIDER_OPTIONS``, for errors.

        Raises:
            ConfigError: naming ``json_path`` (or a key under it), the problem and the fix.
        """
        return None  # nothing beyond the schema by default

    @abc.abstractmethod
    def fetch(self, config: OAuthConfig, context: ProviderContext) -> TokenResponse:
        """Get a new token.

        Args:
            config: the server's validated config; ``config.provider_options`` (also
                ``context.options``) holds this provider's options.
            context: the call's server name, correlation id and the library's transport.

        Returns:
            The token: ``TokenResponse(access_token, token_type, expires_in, scope)``.
            ``expires_in`` None means the manager's default lifetime.

        Raises:
            TokenRequestError: the token source refused or answered something unusable.
            TransportError: the network failed (:meth:`ProviderContext.send` raises it).
            ConfigError: the configured source cannot be used (a missing file, ...).
        """


class ProviderContext:
    """What one :meth:`TokenProvider.fetch` call gets from the library. Not shared between calls.

    Attributes:
        config: the server's config.
        server_name: the server the token is for (for logs and errors).
        correlation_id: sent as ``X-Correlation-ID`` by :meth:`send`; quote it in errors.
        clock: the manager's monotonic clock.
        timeout: ``(connect, read)`` seconds, from ``OAUTH_CONNECT_TIMEOUT`` and ``OAUTH_TIMEOUT``.
        token_client: the library's OAuth token client (the built-in provider calls its
            ``request_token``).
        sent_at: clock time at which the first request of this call was sent, or None.
        dpop_key: with ``OAUTH_DPOP``, the key the token must be bound to (RFC 9449); a
            provider that cannot send DPoP proofs should refuse such a config.
        nonces: the server nonces for DPoP proofs, remembered per origin.
        deadline: when (on ``clock``) the whole fetch gives up, discovery included; None for never.
            :meth:`send` and the built-in provider pass it on; a provider's own calls should too.
    """

    __slots__ = (
        "config",
        "server_name",
        "correlation_id",
        "clock",
        "token_client",
        "sent_at",
        "dpop_key",
        "nonces",
        "deadline",
    )

    #: Redirects are never followed (a credential request must not be replayed elsewhere).
    allow_redirects = False

    def __init__(
        self,
        config: OAuthConfig,
        server_name: str,
        token_client: TokenClient,
        clock: Callable[[], float],
        correlation_id: Optional[str] = None,
        dpop_key: Optional[DPoPKey] = None,
        nonces: Optional[NonceStore] = None,
        deadline: Optional[float] = None,
    ) -> None:
        self.config = config
        self.deadline = deadline
        self.server_name = server_name
        self.dpop_key = dpop_key
        self.nonces = nonces
        self.token_client = token_client
        self.clock = clock
        self.correlation_id = correlation_id or uuid.uuid4().hex[:8]
        self.sent_at: Optional[float] = None

    @property
    def options(self) -> ProviderOptions:
        """The provider's options (``OAUTH_PROVIDER_OPTIONS``), ``${ENV}`` references resolved."""
        options: ProviderOptions = self.config.provider_options
        return options

    @property
    def timeout(self) -> Tuple[float, float]:
        return (self.config.connect_timeout, self.config.timeout)

    @property
    def session(self) -> requests.Session:
        """The pooled ``requests.Session`` for this config's TLS identity (CA bundle, mTLS).

        Prefer :meth:`send`, which adds the timeouts, retries and the no-redirect rule.
        """
        return self.token_client.session_for(self.config)

    def send(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        data: Union[bytes, str, None] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> requests.Response:
        """Send one request the way the library sends token requests, and return the answer.

        The config's TLS identity and timeouts apply, redirects are never followed,
        429 and transient 5xx answers and connection failures are retried per
        ``OAUTH_MAX_RETRIES`` (``Retry-After`` honoured up to ``OAUTH_RETRY_AFTER_MAX``),
        and ``OAUTH_CUSTOM_HEADERS``, ``User-Agent`` and ``X-Correlation-ID`` are sent.

        Args:
            method: ``"POST"``, ``"PUT"`` or ``"GET"``.
            url: where to send it.
            json: a JSON body (exclusive with ``data``).
            data: a raw body.
            headers: extra headers for this request.

        Returns:
            The final answer, whatever its status (a redirect is returned, not followed).

        Raises:
            TransportError: the network or TLS failed after the retries.
            ConfigError: the mTLS files disappeared since the config was loaded.
        """
        sent = dict(headers or {})
        body: Union[bytes, str, None] = data
        if json is not None:
            body = _json_dumps(json)
            sent.setdefault("Content-Type", "application/json")
        if self.sent_at is None:
            self.sent_at = self.clock()
        return self.token_client.send(
            self.config,
            method,
            url,
            server_name=self.server_name,
            correlation_id=self.correlation_id,
            headers=sent,
            body=body,
            deadline=self.deadline,
        )

    def __repr__(self) -> str:
        return "ProviderContext(server_name=%r, correlation_id=%r)" % (self.server_name, self.correlation_id)


def _json_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


class ClientCredentialsProvider(TokenProvider):
    """The OAuth 2.0 client-credentials grant (RFC 6749 section 4.4): the default provider.

    Uses ``OAUTH_TOKEN_URL``, ``OAUTH_CLIENT_ID``, the client secret or mTLS, and every
    other ``OAUTH_*`` key, through the library's ``TokenClient``. It takes
    no ``OAUTH_PROVIDER_OPTIONS``. Thread-safe (stateless).
    """

    options_schema: Optional[Dict[str, Any]] = {
        "type": "object",
        "maxProperties": 0,
        "x-message": {"maxProperties": "the client_credentials provider takes no options"},
        "x-hint": {
            "maxProperties": "remove OAUTH_PROVIDER_OPTIONS, or set OAUTH_PROVIDER to a provider that uses them"
        },
    }

    def fetch(self, config: OAuthConfig, context: ProviderContext) -> TokenResponse:
        from ..client import client_credentials_form

        client = context.token_client
        return client.request_token(
            client.endpoint(config),
            client_credentials_form(config),
            context.server_name,
            context.correlation_id,
            dpop_key=context.dpop_key,
            nonces=context.nonces,
            deadline=context.deadline,
        )


# --------------------------------------------------------------------------- options


class ProviderOptions(Mapping[str, Any]):
    """``OAUTH_PROVIDER_OPTIONS`` as loaded: an immutable mapping that masks its secrets.

    Reading a key returns a copy of its value, so the options cannot be changed through
    it. ``repr`` shows secret values as ``***``. Thread-safe (immutable).

    Attributes:
        secret_keys: the keys whose values are secret.
    """

    __slots__ = ("_data", "secret_keys")

    _data: Dict[str, Any]
    secret_keys: FrozenSet[str]

    def __init__(self, data: Optional[Mapping[str, Any]] = None, secret_keys: Any = ()) -> None:
        object.__setattr__(self, "_data", copy.deepcopy(dict(data or {})))
        object.__setattr__(self, "secret_keys", frozenset(secret_keys))

    def __getitem__(self, key: str) -> Any:
        value = self._data[key]
        return copy.deepcopy(value) if isinstance(value, (dict, list)) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("ProviderOptions is immutable")

    def to_dict(self) -> Dict[str, Any]:
        """A plain copy, secrets included."""
        return copy.deepcopy(self._data)

    def masked(self) -> Dict[str, Any]:
        """A plain copy with every secret value replaced by ``***``."""
        return {key: ("***" if key in self.secret_keys else copy.deepcopy(value)) for key, value in self._data.items()}

    def fingerprint_material(self) -> Dict[str, Any]:
        """What enters the config fingerprint: the values, secrets as their SHA-256."""
        material: Dict[str, Any] = {}
        for key, value in self._data.items():
            if key in self.secret_keys:
                blob = json.dumps(value, sort_keys=True).encode("utf-8")
                value = "sha256:" + hashlib.sha256(blob).hexdigest()
            material[key] = value
        return material

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ProviderOptions):
            return self._data == other._data and self.secret_keys == other.secret_keys
        if isinstance(other, Mapping):
            return self._data == dict(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(json.dumps(self.fingerprint_material(), sort_keys=True, default=str))

    def __reduce__(self) -> Tuple[Any, ...]:
        return (ProviderOptions, (self._data, sorted(self.secret_keys)))

    def __repr__(self) -> str:
        return "ProviderOptions(%r)" % (self.masked(),)

    __str__ = __repr__


def _secret_keys_of(fragment: Optional[Mapping[str, Any]]) -> FrozenSet[str]:
    """The top-level option keys a schema fragment marks ``x-secret`` or ``writeOnly``."""
    if not isinstance(fragment, Mapping):
        return frozenset()
    properties = fragment.get("properties")
    if not isinstance(properties, Mapping):
        return frozenset()
    return frozenset(
        key
        for key, spec in properties.items()
        if isinstance(spec, Mapping) and any(spec.get(mark) is True for mark in _SECRET_ANNOTATIONS)
    )


# --------------------------------------------------------------------------- the registry


class _Registry:
    """Names to provider instances, loaded once each. Thread-safe (one lock, never held during import)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: Dict[str, TokenProvider] = {}
        self._entry_points: Optional[Dict[str, Any]] = None

    def get(self, name: str, json_path: str = "$.oauth_config.OAUTH_PROVIDER") -> TokenProvider:
        provider = self._loaded.get(name)
        if provider is not None:
            return provider
        provider = self._load(name, json_path)
        with self._lock:
            return self._loaded.setdefault(name, provider)

    def names(self, rescan: bool = False) -> List[str]:
        return sorted(set(_BUILTIN_PROVIDERS) | set(self._entry_point_map(rescan)))

    def _entry_point_map(self, rescan: bool = False) -> Dict[str, Any]:
        found = self._entry_points
        if found is None or rescan:
            found = _scan_entry_points()
            with self._lock:
                self._entry_points = found
        return found

    def _load(self, name: str, json_path: str) -> TokenProvider:
        if name in _BUILTIN_PROVIDERS:
            return _instantiate(_import_reference(_BUILTIN_PROVIDERS[name], json_path), name, json_path)
        entry_point = self._entry_point_map().get(name)
        if entry_point is None:
            entry_point = self._entry_point_map(rescan=True).get(name)  # installed since the last scan
        if entry_point is not None:
            try:
                target = entry_point.load()
            except Exception as exc:
                raise ConfigError(
                    "the token provider %r (entry point %s) could not be loaded: %s"
                    % (name, entry_point.value, exc.__class__.__name__),
                    json_path,
                    "check that its distribution and its dependencies are installed",
                ) from exc
            return _instantiate(target, name, json_path)
        if ":" in name:
            return _instantiate(_import_reference(name, json_path), name, json_path)
        raise ConfigError(
            "unknown token provider %r" % name,
            json_path,
            "use one of the installed providers (%s), or write module:attribute" % ", ".join(self.names()),
        )

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()


def _scan_entry_points() -> Dict[str, Any]:
    from importlib import metadata

    found: Dict[str, Any] = {}
    every = metadata.entry_points()
    select = getattr(every, "select", None)
    if select is not None:  # Python 3.10+: EntryPoints.select
        group = select(group=ENTRY_POINT_GROUP)
    else:  # Python 3.8 and 3.9: a dict of group -> entry points
        group = every.get(ENTRY_POINT_GROUP, ())  # type: ignore[attr-defined,unused-ignore]
    for entry_point in group:
        found.setdefault(entry_point.name, entry_point)  # the first distribution on sys.path wins
    return found


def _import_reference(reference: str, json_path: str) -> Any:
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ConfigError(
            "token provider %r is not module:attribute" % reference,
            json_path,
            "write it like mypackage.tokens:VaultProvider",
        )
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except Exception as exc:  # whatever the module's import raised
        failure = exc.__class__.__name__
    else:
        return target
    raise ConfigError(
        "token provider %r could not be imported (%s)" % (reference, failure),
        json_path,
        "check the module is importable and defines %s" % attribute,
    )


def _instantiate(target: Any, name: str, json_path: str) -> TokenProvider:
    if isinstance(target, type):
        failure: Optional[str] = None
        try:
            target = target()
        except Exception as exc:  # a constructor's failure is the config's problem, not a traceback
            failure = exc.__class__.__name__
        if failure is not None:  # raised outside the except block: the exception's text may hold a secret
            raise ConfigError(
                "token provider %r could not be constructed (%s)" % (name, failure),
                json_path,
                "point it at a TokenProvider subclass that takes no arguments, or an instance",
            )
    if not callable(getattr(target, "fetch", None)):
        raise ConfigError(
            "token provider %r is a %s, not a TokenProvider" % (name, type(target).__name__),
            json_path,
            "point it at a TokenProvider subclass or instance (oauth_gateway.providers.TokenProvider)",
        )
    provider: TokenProvider = target
    return provider


_REGISTRY = _Registry()


def get_provider(name: str, json_path: str = "$.oauth_config.OAUTH_PROVIDER") -> TokenProvider:
    """Return the provider named ``name``, loaded on first use and kept.

    Args:
        name: a built-in name, an entry point name of ``oauth_gateway.providers``, or
            ``module:attribute``.
        json_path: the path of ``OAUTH_PROVIDER``, for errors.

    Raises:
        ConfigError: the name is unknown (the message lists the installed providers),
            or the provider could not be imported.
    """
    return _REGISTRY.get(name or _DEFAULT_PROVIDER, json_path)


def available_providers() -> List[str]:
    """The built-in providers and the installed entry points, by name (rescans the metadata)."""
    return _REGISTRY.names(rescan=True)


def is_code_reference(name: Any) -> bool:
    """True when ``name`` would be imported as ``module:attribute``: not built in, no installed entry point.

    Reads the installed distributions' metadata only; imports nothing.
    """
    if not isinstance(name, str) or ":" not in name or name in _BUILTIN_PROVIDERS:
        return False
    return name not in _REGISTRY._entry_point_map()


def uses_client_credentials(name: str) -> bool:
    """True when the provider ``name`` needs the ``OAUTH_CLIENT_*`` keys and ``OAUTH_TOKEN_URL``."""
    return not name or name == _DEFAULT_PROVIDER


# --------------------------------------------------------------------------- config support


def load_options(provider_name: str, options: Any, json_path: str, check: bool = True) -> ProviderOptions:
    """Check ``OAUTH_PROVIDER_OPTIONS`` for its provider and return them as :class:`ProviderOptions`.

    Args:
        provider_name: ``OAUTH_PROVIDER``.
        options: the options, ``${ENV}`` references resolved.
        json_path: the path of ``OAUTH_PROVIDER_OPTIONS``.
        check: False for a disabled block: the provider is not loaded, and every value
            is treated as secret.

    Raises:
        ConfigError: an unknown provider, options its schema refuses, or its
            :meth:`TokenProvider.check_options` failed.
    """
    data = dict(options or {})
    if not check:
        return ProviderOptions(data, data)
    provider_path = json_path.rsplit(".", 1)[0] + "." + _PROVIDER_KEY
    provider = get_provider(provider_name, provider_path)
    fragment = provider.options_schema
    secret = _secret_keys_of(fragment)
    if fragment is not None:
        _schema.raise_for_problems(_schema.validate_fragment(data, fragment, json_path, secret_keys=secret))
    elif data:
        raise ConfigError(
            "the token provider %r takes no options" % (provider_name or _DEFAULT_PROVIDER),
            json_path,
            "remove OAUTH_PROVIDER_OPTIONS",
        )
    loaded = ProviderOptions(data, secret)
    provider.check_options(loaded, json_path)
    return loaded


#: The warning for a ``module:attribute`` provider that checking did not import.
_NOT_CHECKED = "is not checked (code); load it with --load-providers"


def provider_problems(block: Any, json_path: str = "$", load_providers: bool = False) -> List[_schema.Problem]:
    """The problems of ``OAUTH_PROVIDER`` and ``OAUTH_PROVIDER_OPTIONS`` in one ``oauth_config`` block.

    An unknown provider, and options its schema fragment refuses, each worded like the
    bundled schema's problems. A disabled block is not checked (its provider may not be
    installed here). Checking runs no code of the file's choosing: the built-in providers
    and installed entry points are loaded, but a ``module:attribute`` provider is only
    imported with ``load_providers``; otherwise it is reported as a warning.
    """
    if not isinstance(block, dict) or block.get("enabled") is not True:
        return []
    name = block.get(_PROVIDER_KEY, _DEFAULT_PROVIDER)
    options = block.get(_OPTIONS_KEY, {})
    if name == _DEFAULT_PROVIDER and not options:
        return []  # the common case: nothing to load
    if not isinstance(name, str) or not isinstance(options, dict) or "${" in name:
        return []  # the bundled schema reports the type; a ${...} name is known only at load
    provider_path = _join_path(json_path, _PROVIDER_KEY)
    if not load_providers and is_code_reference(name):
        return [
            _schema.Problem(
                provider_path,
                "token provider %s %s" % (printable(name), _NOT_CHECKED),
                "run `oauth-gateway validate --load-providers FILE` where the module may be imported",
                "warning",
            )
        ]
    try:
        provider = get_provider(name, provider_path)
    except ConfigError as exc:
        return [_schema.Problem(exc.json_path or provider_path, exc.problem, exc.hint)]
    fragment = provider.options_schema
    options_path = _join_path(json_path, _OPTIONS_KEY)
    if fragment is None:
        if options:
            return [_schema.Problem(options_path, "the token provider %r takes no options" % name, "remove it")]
        return []
    return _schema.validate_fragment(options, fragment, options_path, secret_keys=_secret_keys_of(fragment))


def call_provider(provider: TokenProvider, config: OAuthConfig, context: ProviderContext) -> TokenResponse:
    """Call ``provider.fetch`` as the manager does: library errors pass, anything else is wrapped.

    An exception that is not an :class:`~oauth_gateway.OAuthGatewayError` (a bug in a
    provider) becomes a :class:`~oauth_gateway.TokenRequestError` naming its type only
    (its text may hold a secret), so failure cool-down and stale-if-error still apply.
    The answer is checked like a token endpoint's (b64token syntax and size, the token
    type, the lifetime, the scope syntax): a bad one is a ``TokenRequestError`` too.
    """
    try:
        response = provider.fetch(config, context)
    except OAuthGatewayError:
        raise
    except Exception as exc:
        raise TokenRequestError(
            "token provider %r failed for %s with %s [correlation_id=%s]; see the provider's documentation"
            % (config.provider, context.server_name, exc.__class__.__name__, context.correlation_id),
            correlation_id=context.correlation_id,
            server_name=context.server_name,
        ) from exc
    problem = token_problem(response.access_token, response.token_type, response.expires_in, response.scope)
    if problem is not None:
        # Checked like a token endpoint's answer: the token reaches headers and child environments.
        raise TokenRequestError(
            "token provider %r answered for %s, but %s [correlation_id=%s]; see the provider's documentation"
            % (config.provider, context.server_name, problem, context.correlation_id),
            correlation_id=context.correlation_id,
            server_name=context.server_name,
            retryable=False,
        )
    if response.sent_at is None and context.sent_at is not None:
        response = response._replace(sent_at=context.sent_at)
    return response


def __getattr__(name: str) -> Any:
    """``TokenResponse`` is importable from here, loaded (with ``requests``) on first use."""
    if name == "TokenResponse":
        from ..client import TokenResponse

        return TokenResponse
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_REGISTRY.reset_after_fork)


__all__ = (
    "ENTRY_POINT_GROUP",
    "ClientCredentialsProvider",
    "ProviderContext",
    "ProviderOptions",
    "TokenProvider",
    "TokenResponse",
    "available_providers",
    "get_provider",
)
