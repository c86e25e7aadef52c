"""oauth_gateway: OAuth 2.0 / 2.1 client-credentials tokens for MCP gateways and Python apps.

The public names are listed in ``__all__``; everything else may change without notice.

Importing the package is cheap: each public name is imported from its module on first
use (PEP 562 ``__getattr__``, as jsonschema does), so ``oauth-gateway validate`` on a
valid file loads neither ``requests`` nor ``jsonschema``. Type checkers and IDEs see
the names through the ``TYPE_CHECKING`` imports below.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any, Dict, List

from ._version import __version__

if TYPE_CHECKING:
    from .auth import TokenAuth
    from .cache import MemoryTokenCache, TokenCache
    from .compat import (
        OAuthService,
        get_oauth_service,
        invalidate_server_oauth_token,
        refresh_server_oauth_token,
    )
    from .config import OAuthConfig
    from .contrib.cache_settings import cache_from_settings
    from .exceptions import (
        ConfigError,
        DiscoveryError,
        InsecureTransportError,
        InvalidClient,
        InvalidGrant,
        InvalidRequest,
        InvalidScope,
        InvalidTarget,
        OAuthGatewayError,
        RevocationNotConfigured,
        TokenBindingError,
        TokenRequestError,
        TransportError,
        UnauthorizedClient,
        UnsupportedGrantType,
    )
    from .gateway import GatewayConfig, load_gateway_config
    from .injection import inject_token, is_remote_server
    from .manager import TokenManager
    from .schema import validate_config
    from .tokens import Token

__all__ = (
    "__version__",
    "ConfigError",
    "DiscoveryError",
    "GatewayConfig",
    "InsecureTransportError",
    "InvalidClient",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidScope",
    "InvalidTarget",
    "MemoryTokenCache",
    "OAuthConfig",
    "OAuthGatewayError",
    "OAuthService",
    "RevocationNotConfigured",
    "Token",
    "TokenAuth",
    "TokenBindingError",
    "TokenCache",
    "TokenManager",
    "TokenRequestError",
    "TransportError",
    "UnauthorizedClient",
    "UnsupportedGrantType",
    "cache_from_settings",
    "get_oauth_service",
    "inject_token",
    "invalidate_server_oauth_token",
    "is_remote_server",
    "load_gateway_config",
    "refresh_server_oauth_token",
    "validate_config",
)

# Where each public name lives: its module, relative to this package.
_MODULES = {
    "TokenAuth": ".auth",
    "MemoryTokenCache": ".cache",
    "TokenCache": ".cache",
    "OAuthService": ".compat",
    "get_oauth_service": ".compat",
    "invalidate_server_oauth_token": ".compat",
    "refresh_server_oauth_token": ".compat",
    "OAuthConfig": ".config",
    "cache_from_settings": ".contrib.cache_settings",
    "ConfigError": ".exceptions",
    "DiscoveryError": ".exceptions",
    "InsecureTransportError": ".exceptions",
    "InvalidClient": ".exceptions",
    "InvalidGrant": ".exceptions",
    "InvalidRequest": ".exceptions",
    "InvalidScope": ".exceptions",
    "InvalidTarget": ".exceptions",
    "OAuthGatewayError": ".exceptions",
    "RevocationNotConfigured": ".exceptions",
    "TokenBindingError": ".exceptions",
    "TokenRequestError": ".exceptions",
    "TransportError": ".exceptions",
    "UnauthorizedClient": ".exceptions",
    "UnsupportedGrantType": ".exceptions",
    "GatewayConfig": ".gateway",
    "load_gateway_config": ".gateway",
    "inject_token": ".injection",
    "is_remote_server": ".injection",
    "TokenManager": ".manager",
    "validate_config": ".schema",
    "Token": ".tokens",
}


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use, and keep it here (PEP 562)."""
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> List[str]:
    names: Dict[str, None] = dict.fromkeys(globals())
    names.update(dict.fromkeys(__all__))
    return sorted(names)


logging.getLogger(__name__).addHandler(logging.NullHandler())
