"""What a TokenManager writes to, and reads from, its cache: the generation check, the shared-store read."""

from __future__ import annotations

import logging
from typing import Callable, Optional

from ._singleflight import Flight
from .cache import CacheEntry, Key, TokenCache
from .config import OAuthConfig
from .metrics import Metrics
from .tokens import Token

log = logging.getLogger("oauth_gateway")


def keep(
    cache: TokenCache,
    flight: Flight[Token],
    key: Key,
    entry: CacheEntry,
    failed: Callable[[], None],
    local: bool = False,
) -> None:
    """Cache ``entry`` unless ``key`` was revoked or invalidated since ``flight`` started.

    Checked before and after the write, which takes no manager lock: an invalidation
    that comes while it is written is followed by this eviction, or by its own.
    """
    if flight.is_superseded():
        return
    if local:
        cache.remember(key, entry)  # DPoP tokens, and entries read from the store
    else:
        cache.try_store(key, entry, failed)
    if flight.is_superseded():
        cache.try_evict(key, failed)


def load_shared(
    cache: TokenCache,
    clock: Callable[[], float],
    metrics: Metrics,
    flight: Flight[Token],
    key: Key,
    config: OAuthConfig,
    issuer: str,
    principal: str,
    failed: Callable[[], None],
) -> Optional[Token]:
    """Return the token of a fresh entry of the backing store for ``key`` (kept locally), or None.

    The entry must come from the same config, authorization server and principal.
    """
    shared = cache.try_load(key, failed)
    if (
        shared is None
        or shared.fingerprint != config.fingerprint
        or shared.issuer != issuer
        or shared.principal != principal
        or not clock() < shared.refresh_at
    ):
        return None
    if shared is not cache.peek(key):
        # Read from the shared store: keep it locally, with this manager's hit counter.
        keep(cache, flight, key, shared._replace(hits=metrics.hit_counter(key)), failed, local=True)
        log.debug("Token for %s (config: %s) read from the shared cache", key[0], key[1])
    return shared.token
