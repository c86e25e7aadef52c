"""The one cache-hit check of a :class:`~oauth_gateway.TokenManager`, written once.

:func:`hit_check` builds it over the cache's ``peek`` and the manager's clock;
``get_token``, the auth objects (through :class:`~oauth_gateway._access.ManagerAccess`)
and the slow path all use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional, TypeVar, Union

if TYPE_CHECKING:  # pragma: no cover
    from .cache import CacheEntry, Key
    from .config import OAuthConfig
    from .tokens import Token

__all__ = ("hit_check", "no_token")

_Miss = TypeVar("_Miss")


def hit_check(
    peek: Callable[[Key], Optional[CacheEntry]],
    clock: Callable[[], float],
    miss: Callable[[str, OAuthConfig, str], _Miss],
) -> Callable[[str, OAuthConfig, str], Union[Token, _Miss]]:
    """The cache hit, written once: :meth:`TokenManager.get_token`, the auth objects and the slow path use it.

    A hit is an entry of the same config whose ``refresh_at`` (never later than the
    token's ``usable_until``) is still ahead: one dict read and the clock, no lock, no
    I/O. Otherwise the result is ``miss(server_name, config, config_id)``. The values are
    the function's cells: read faster than attributes, and the call binds no method.
    """

    def get_token(server_name: str, config: OAuthConfig, config_id: str = "default") -> Union[Token, _Miss]:
        entry = peek((server_name, config_id))
        if entry is not None and entry.fingerprint == config.fingerprint and clock() < entry.refresh_at:
            next(entry.hits)
            return entry.token
        return miss(server_name, config, config_id)

    return get_token


def no_token(server_name: str, config: OAuthConfig, config_id: str) -> None:
    return None
