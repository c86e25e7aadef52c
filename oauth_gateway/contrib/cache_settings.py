"""Choosing a token cache from the gateway file or the environment: :func:`cache_from_settings`.

The factory of the shared caches, kept apart from the core cache module: the
backends (:mod:`~oauth_gateway.contrib.file_cache`, :mod:`~oauth_gateway.contrib.redis_cache`)
are imported inside :func:`cache_from_settings`, only when a setting chooses them,
as google-auth's ``_default.py`` imports its credential types. Also available as
``oauth_gateway.cache_from_settings``.
"""

from __future__ import annotations

import logging
import os
from typing import Mapping, Optional
from urllib.parse import urlsplit

from .._helpers import redact_url, resolve_env
from ..cache import MemoryTokenCache, TokenCache
from ..exceptions import ConfigError
from .store import make_fernet

__all__ = ("cache_from_settings",)

_log = logging.getLogger("oauth_gateway")

#: Environment variable that selects the token cache; it wins over the gateway file.
CACHE_ENV = "OAUTH_GATEWAY_TOKEN_CACHE"
#: Environment variable holding the Fernet key(s) of a shared cache; it wins over the file.
_ENCRYPTION_KEY_ENV = "OAUTH_GATEWAY_TOKEN_CACHE_ENCRYPTION_KEY"
#: Key of ``common_mcp_gateway_config`` in the gateway file that selects the cache.
CACHE_SETTING = "oauth_token_cache"
#: Key of ``common_mcp_gateway_config`` holding the encryption key (usually ``${ENV}``).
ENCRYPTION_KEY_SETTING = "oauth_token_cache_encryption_key"

_SETTINGS_PATH = "$.common_mcp_gateway_config."
_CHOICES = (
    "memory, file, file:/path/to/dir, redis://host:6379/0 (rediss://, unix:// too), "
    "redis+cluster://host:6379,host:6379 or redis+sentinel://host:26379,host:26379/service_name/0 "
    "(rediss+cluster://, rediss+sentinel:// for TLS)"
)


def cache_from_settings(
    setting: Optional[str] = None,
    *,
    encryption_key: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> TokenCache:
    """Build the token cache a gateway file or the environment asks for.

    ``$OAUTH_GATEWAY_TOKEN_CACHE`` wins over ``setting`` (the gateway file's
    ``common_mcp_gateway_config.oauth_token_cache``), and
    ``$OAUTH_GATEWAY_TOKEN_CACHE_ENCRYPTION_KEY`` over ``encryption_key``
    (``oauth_token_cache_encryption_key``). Both may hold ``${ENV}`` references.

    Values: ``memory`` (the default, also for None or ""), ``file`` (a per-user
    directory), ``file:/some/dir``, or a Redis URL: one Redis (``redis://``, ``rediss://``,
    ``unix://``), a Redis Cluster (``redis+cluster://host:port[,host:port...]``) or a
    master found by Sentinel (``redis+sentinel://host:port[,host:port...]/service_name[/db]``),
    ``rediss+cluster://`` and ``rediss+sentinel://`` with TLS. The contrib modules are
    imported only when chosen.

    Args:
        setting: the configured value, or None.
        encryption_key: Fernet key(s) for a shared cache, or None.
        environ: where the environment variables and ``${ENV}`` references are read;
            ``os.environ`` by default.

    Returns:
        A new cache, ready to pass as ``TokenManager(cache=...)``.

    Raises:
        ConfigError: an unknown value or a malformed Redis URL (naming the setting it came
            from), a missing ``redis`` or ``cryptography`` package (naming the extra to
            install), a malformed encryption key, or a file cache on a platform without ``fcntl``.
    """
    env = os.environ if environ is None else environ
    where = _SETTINGS_PATH + CACHE_SETTING
    key_where = _SETTINGS_PATH + ENCRYPTION_KEY_SETTING
    if env.get(CACHE_ENV, "").strip():
        setting, where = env[CACHE_ENV], CACHE_ENV
    if env.get(_ENCRYPTION_KEY_ENV, "").strip():
        encryption_key, key_where = env[_ENCRYPTION_KEY_ENV], _ENCRYPTION_KEY_ENV
    if setting is not None and not isinstance(setting, str):
        raise ConfigError("must be a string, got %s" % type(setting).__name__, where, "use " + _CHOICES)
    if encryption_key is not None and not isinstance(encryption_key, str):
        raise ConfigError(
            "must be a string, got %s" % type(encryption_key).__name__,
            key_where,
            "use a ${ENV} reference to a Fernet key",
        )
    value = (resolve_env(setting or "", where, env) or "memory").strip()
    if encryption_key:
        encryption_key = resolve_env(encryption_key, key_where, env)
    kind = value.lower()
    if kind == "memory":
        if encryption_key:
            _log.warning("%s is ignored: the memory cache keeps tokens in this process only", key_where)
        return MemoryTokenCache()
    fernet = make_fernet(encryption_key, key_where)
    if kind == "file" or kind.startswith("file:"):
        path = value[len("file:") :] if kind.startswith("file:") else ""
        if path.startswith("//"):  # file:///var/cache/x
            path = path[2:]
        from .file_cache import FileTokenCache

        return FileTokenCache(path=os.path.expanduser(path) if path else None, encryption_key=fernet)
    scheme = urlsplit(value).scheme.lower()
    # redis+cluster, rediss+sentinel, ...: redis_cache checks which (its URL_SCHEMES).
    if scheme in ("redis", "rediss", "unix") or scheme.startswith(("redis+", "rediss+")):
        try:
            from .redis_cache import RedisTokenCache
        except ImportError as exc:
            raise ConfigError(
                "selects the Redis cache, but the redis package cannot be imported (%s)" % exc.__class__.__name__,
                where,
                "pip install 'oauth-gateway[redis]' (or 'oauth-gateway[redis-encrypted]' to encrypt tokens at rest)",
            ) from None
        try:
            return RedisTokenCache(url=value, encryption_key=fernet)
        except ConfigError as exc:  # the URL is malformed: name the setting it came from
            raise ConfigError(exc.problem, where, exc.hint) from None
    raise ConfigError("unknown token cache %r" % redact_url(value), where, "use " + _CHOICES)
