"""Revocation (RFC 7009) for a TokenManager: find the token, evict it, send the revocation."""

from __future__ import annotations

import logging
from typing import Callable, Optional

from ._helpers import masked
from .cache import TokenCache
from .client import TokenClient
from .config import OAuthConfig
from .exceptions import OAuthGatewayError, RevocationNotConfigured
from .metrics import Metrics

log = logging.getLogger("oauth_gateway")


def revoke(
    client: TokenClient,
    metrics: Metrics,
    cache: TokenCache,
    cache_failed: Callable[[str], Callable[[], None]],
    invalidate: Callable[[str, str], None],
    server_name: str,
    config: OAuthConfig,
    config_id: str,
    token: Optional[str],
    token_type_hint: Optional[str],
) -> bool:
    """What ``TokenManager.revoke`` does, for a ``config`` resolved already (discovery done).

    Args:
        cache_failed: what the shared cache calls when it failed, for a server name.
        invalidate: ``TokenManager.invalidate``: the key is forgotten before the request.
    """
    if not config.revocation_url:
        raise RevocationNotConfigured(
            "%s: no OAUTH_REVOCATION_URL is configured, so tokens cannot be revoked; "
            "add the server's RFC 7009 revocation endpoint to its oauth_config" % server_name
        )
    if token is None:
        key = (server_name, config_id)
        entry = cache.peek(key)
        if entry is None:  # a token fetched by another process sharing the store
            entry = cache.try_load(key, cache_failed(server_name))
        token = entry.token.access_token if entry is not None else None
    token = masked(token)  # frame locals may be printed with a traceback
    invalidate(server_name, config_id)
    if token is None:
        log.debug("No cached token to revoke for %s (config: %s)", server_name, config_id)
        return False
    try:
        client.revoke_token(client.endpoint(config), token, token_type_hint, server_name)
    except OAuthGatewayError:
        metrics.add(server_name, "token_revocation_failures")
        raise
    metrics.add(server_name, "token_revocations")
    log.info("Token revoked for %s (config: %s)", server_name, config_id)
    return True
