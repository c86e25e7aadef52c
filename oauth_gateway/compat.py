"""The seed gateway's documented calls, synchronous, returning ``(value, error)`` tuples.

Code written against the seed gateway's documentation runs unchanged once its
``await`` is dropped::

    from oauth_gateway import get_oauth_service, refresh_server_oauth_token

    token, error = refresh_server_oauth_token("oauth-api", server_entry, "config-id")
    headers = {"Authorization": f"Bearer {token}"}
    metrics = get_oauth_service().get_metrics()

As in the seed, ``refresh_server_oauth_token`` and ``OAuthService.get_access_token``
return the access token itself, a string; :class:`~oauth_gateway.TokenManager` returns a
:class:`~oauth_gateway.Token` (which never prints its value). Errors come back as their
message (never a secret); new code should prefer the manager, which raises.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple, Union

from .config import OAuthConfig
from .exceptions import OAuthGatewayError
from .injection import entry_oauth_block
from .manager import TokenManager

if TYPE_CHECKING:
    from .cache import TokenCache

__all__ = (
    "OAuthService",
    "get_oauth_service",
    "invalidate_server_oauth_token",
    "refresh_server_oauth_token",
)

_ConfigLike = Union[OAuthConfig, Mapping[str, Any]]

_log = logging.getLogger("oauth_gateway")

_default_lock = threading.Lock()
_default_service: Optional[OAuthService] = None


def _as_config(config: _ConfigLike, json_path: str = "$.oauth_config") -> OAuthConfig:
    if isinstance(config, OAuthConfig):
        return config
    return OAuthConfig.from_dict(dict(config) if isinstance(config, Mapping) else config, json_path)


def _entry_config(server_entry: Mapping[str, Any]) -> OAuthConfig:
    if isinstance(server_entry, OAuthConfig):
        return server_entry
    if not isinstance(server_entry, Mapping) or "oauth_config" not in server_entry:
        raise OAuthGatewayError("the server entry has no oauth_config block; add one to its entry in the gateway file")
    # A remote server without a token URL or resource is discovered from its mcp-remote URL.
    return _as_config(entry_oauth_block(dict(server_entry)))


class OAuthService:
    """The seed's OAuth service object, backed by a :class:`TokenManager`. Thread-safe.

    Attributes:
        manager: the TokenManager doing the work, for code that wants exceptions.
    """

    def __init__(self, manager: Optional[TokenManager] = None):
        self.manager = manager if manager is not None else TokenManager(cache=_default_cache())

    def get_access_token(
        self, server_name: str, oauth_config: _ConfigLike, config_id: str = "default"
    ) -> Tuple[Optional[str], Optional[str]]:
        """Return ``(access_token, None)``, or ``(None, message)`` when no token can be had.

        The access token is the string to send (``f"Bearer {token}"``), as the seed returns it.
        """
        try:
            return self.manager.get_token(server_name, _as_config(oauth_config), config_id).access_token, None
        except OAuthGatewayError as exc:
            return None, str(exc)

    def revoke_token(
        self,
        server_name: str,
        token: Optional[str],
        oauth_config: _ConfigLike,
        token_type_hint: str = "access_token",
        config_id: str = "default",
    ) -> Tuple[bool, Optional[str]]:
        """Revoke a token (RFC 7009); return ``(True, None)`` or ``(False, message)``."""
        try:
            revoked = self.manager.revoke(server_name, _as_config(oauth_config), config_id, token, token_type_hint)
        except OAuthGatewayError as exc:
            return False, str(exc)
        return (True, None) if revoked else (False, "no token to revoke for %s" % server_name)

    def invalidate_token(self, server_name: str, config_id: str = "default") -> Tuple[bool, Optional[str]]:
        """Drop a cached token; always ``(True, None)``."""
        self.manager.invalidate(server_name, config_id)
        return True, None

    def get_metrics(self) -> Dict[str, Any]:
        """The metrics dict, with the seed's names."""
        return self.manager.get_metrics()

    def __repr__(self) -> str:
        return "OAuthService(%r)" % (self.manager,)


def _default_cache() -> TokenCache:
    """The cache the environment or the gateway file asks for; memory when neither says.

    A gateway file that is missing or broken does not stop the service: it falls back
    to the memory cache (with a warning for a broken file), which never writes a token
    anywhere.
    """
    from ._helpers import resolve_config_path
    from .contrib.cache_settings import CACHE_ENV, cache_from_settings
    from .exceptions import ConfigError
    from .gateway import load_gateway_config

    path, _ = resolve_config_path()
    if os.environ.get(CACHE_ENV, "").strip() or not os.path.exists(path):
        return cache_from_settings()
    try:
        gateway = load_gateway_config(path)
    except ConfigError as exc:
        _log.warning("Using the memory token cache: the gateway file could not be loaded (%s)", exc)
        return cache_from_settings()
    return gateway.token_cache()


def get_oauth_service() -> OAuthService:
    """Return the process-wide service, created on first use (thread-safe)."""
    global _default_service
    service = _default_service
    if service is None:
        with _default_lock:
            if _default_service is None:
                _default_service = OAuthService()
            service = _default_service
    return service


def refresh_server_oauth_token(
    server_name: str, server_entry: Mapping[str, Any], config_id: str = "default"
) -> Tuple[Optional[str], Optional[str]]:
    """Force a new token for a server entry; return ``(access_token, None)`` or ``(None, message)``.

    The access token is the string to send (``f"Bearer {token}"``), as the seed returns it.
    """
    try:
        token = get_oauth_service().manager.refresh(server_name, _entry_config(server_entry), config_id)
        return token.access_token, None
    except OAuthGatewayError as exc:
        return None, str(exc)


def invalidate_server_oauth_token(server_name: str, config_id: str = "default") -> Tuple[bool, Optional[str]]:
    """Drop the cached token of a server; always ``(True, None)``."""
    return get_oauth_service().invalidate_token(server_name, config_id)
