"""The narrow internal interface through which the adapters reach a TokenManager.

The auth objects of :mod:`oauth_gateway.auth` and :mod:`oauth_gateway.contrib.httpx`
need more than the public methods: the cache hit without a method call, the DPoP key of
a config and the resource servers' nonces. They get them from :func:`access`, not from
public methods added for them; nothing here is public API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .config import OAuthConfig
    from .dpop import DPoPKey, NonceStore
    from .tokens import Token


class ManagerAccess:
    """What an adapter may use of one manager. Immutable and thread-safe.

    Attributes:
        get_token: ``get_token(server_name, config, config_id)``: the manager's one cache-hit
            check (lock-free, no I/O), falling back to its single-flight slow path.
        cached: ``cached(server_name, config, config_id)``: the same hit check, None on a miss
            (for the async adapters, which fetch in a worker thread, off the event loop).
        dpop_key: ``dpop_key(config)``: the config's DPoP key, None when ``OAUTH_DPOP`` is off.
        resource_nonces: the ``DPoP-Nonce`` of each resource server, shared by the manager's
            auth objects.
        resolve: ``resolve(config)``: ``config`` with what discovery decides filled in.
        forget_discovery: ``forget_discovery(config, resource_metadata=None)``: drop the
            cached discovery of ``config``'s server (a 401 named other resource metadata).
    """

    __slots__ = ("get_token", "cached", "dpop_key", "resource_nonces", "resolve", "forget_discovery")

    get_token: Callable[[str, OAuthConfig, str], Token]
    cached: Callable[[str, OAuthConfig, str], Optional[Token]]
    dpop_key: Callable[[OAuthConfig], Optional[DPoPKey]]
    resource_nonces: NonceStore
    resolve: Callable[[OAuthConfig], OAuthConfig]
    forget_discovery: Callable[..., bool]

    def __init__(
        self,
        get_token: Callable[[str, OAuthConfig, str], Token],
        cached: Callable[[str, OAuthConfig, str], Optional[Token]],
        dpop_key: Callable[[OAuthConfig], Optional[DPoPKey]],
        resource_nonces: NonceStore,
        resolve: Callable[[OAuthConfig], OAuthConfig],
        forget_discovery: Callable[..., bool],
    ) -> None:
        sets = object.__setattr__
        sets(self, "get_token", get_token)
        sets(self, "cached", cached)
        sets(self, "dpop_key", dpop_key)
        sets(self, "resource_nonces", resource_nonces)
        sets(self, "resolve", resolve)
        sets(self, "forget_discovery", forget_discovery)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("ManagerAccess is immutable")


def access(manager: Any) -> ManagerAccess:
    """Return the internal interface of ``manager`` (a :class:`~oauth_gateway.TokenManager`)."""
    found: ManagerAccess = manager._access
    return found
