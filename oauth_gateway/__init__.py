"""oauth_gateway: OAuth 2.0 / 2.1 client-credentials tokens for MCP gateways and Python apps.

The public names are listed in ``__all__``; everything else may change without notice.
"""

from __future__ import annotations

import logging

from ._version import __version__

from .auth import TokenAuth  # noqa: E402
from .cache import MemoryTokenCache, TokenCache, cache_from_settings  # noqa: E402
from .compat import (  # noqa: E402
    OAuthService,
    get_oauth_service,
    invalidate_server_oauth_token,
    refresh_server_oauth_token,
)
from .config import OAuthConfig  # noqa: E402
from .exceptions import (  # noqa: E402
    ConfigError,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    OAuthGatewayError,
    RevocationNotConfigured,
    TokenRequestError,
    TransportError,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from .gateway import GatewayConfig, load_gateway_config  # noqa: E402
from .injection import inject_token, is_remote_server  # noqa: E402
from .manager import TokenManager  # noqa: E402
from .schema import validate_config  # noqa: E402
from .tokens import Token  # noqa: E402

__all__ = (
    "__version__",
    "ConfigError",
    "GatewayConfig",
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

logging.getLogger(__name__).addHandler(logging.NullHandler())
