"""What a TokenManager remembers of failed acquisitions: fail-fast during a cool-down, growing retry waits."""

from __future__ import annotations

import logging
import threading
from typing import Callable, Dict, Hashable, Optional

from ._singleflight import Flight, fresh_copy
from .cache import CacheEntry, Key
from .config import OAuthConfig
from .exceptions import OAuthGatewayError
from .metrics import Metrics
from .tokens import Token

log = logging.getLogger("oauth_gateway")

#: Seconds a key fails fast with its last error after an acquisition failed.
DEFAULT_FAILURE_COOLDOWN = 5.0
#: First wait before retrying a failed proactive refresh while the old token is served.
STALE_RETRY_INITIAL = 1.0
#: Longest wait between refresh attempts while the old token is served.
STALE_RETRY_MAX = 60.0


class _Failure:
    __slots__ = ("fingerprint", "error", "until", "count")

    def __init__(self, fingerprint: str, error: BaseException, until: float, count: int):
        self.fingerprint = fingerprint
        self.error = error
        self.until = until
        self.count = count


class Failures:
    """The last failed acquisition of each key. Not thread-safe: its owner holds its own lock.

    Args:
        cooldown: seconds a key answers with its last error, without a request.
    """

    def __init__(self, cooldown: float = DEFAULT_FAILURE_COOLDOWN) -> None:
        self._cooldown = cooldown
        self._failures: Dict[Hashable, _Failure] = {}

    def record(self, key: Hashable, fingerprint: str, error: BaseException, now: float) -> float:
        """Remember that ``key`` failed with ``error``.

        Returns:
            Seconds to wait before the next attempt while an old token is served: 1 s,
            doubling with each failure in a row of the same config, at most 60 s.
        """
        previous = self._failures.get(key)
        count = previous.count + 1 if previous is not None and previous.fingerprint == fingerprint else 1
        self._failures[key] = _Failure(fingerprint, error, now + self._cooldown, count)
        return min(STALE_RETRY_INITIAL * 2.0 ** (count - 1), STALE_RETRY_MAX)

    def repeat(self, key: Hashable, fingerprint: str, now: float) -> Optional[BaseException]:
        """The error to raise instead of a request during ``key``'s cool-down, or None.

        A copy of the last error (see :func:`~oauth_gateway._singleflight.fresh_copy`) that
        says no request was made, and when the next one will be.
        """
        failure = self._failures.get(key)
        if failure is None or failure.fingerprint != fingerprint or not now < failure.until:
            return None
        clone = fresh_copy(failure.error)
        if clone.args and isinstance(clone.args[0], str):
            clone.args = (
                "%s; no request was made: this repeats the last failure during its cool-down, "
                "and a call in %.1f s or later makes a new request" % (clone.args[0], max(0.0, failure.until - now)),
            ) + tuple(clone.args[1:])
        return clone

    def forget(self, key: Hashable) -> None:
        """Forget ``key``'s failure (it succeeded, or was invalidated)."""
        self._failures.pop(key, None)


def serve_stale_or_raise(
    failures: Failures,
    lock: threading.Lock,
    now: float,
    flight: Flight[Token],
    key: Key,
    config: OAuthConfig,
    usable: Optional[CacheEntry],
    exc: OAuthGatewayError,
    keep: Callable[[CacheEntry], None],
    metrics: Metrics,
) -> Token:
    """Record ``exc`` for ``key``; then serve ``usable``'s still valid token (kept by ``keep``), or raise ``exc``."""
    server_name = key[0]
    with lock:
        wait = failures.record(key, config.fingerprint, exc, now)
    if usable is not None and usable.token.is_usable(now) and not flight.is_superseded():
        # Serve the old token (never one revoked or invalidated meanwhile); try again after
        # a short, growing wait, never past its last usable instant (the entry sees to that).
        retry_at = now + wait
        keep(usable._replace(refresh_at=retry_at))
        metrics.add(server_name, "token_refresh_failures_served_from_cache")
        log.warning(
            "Token refresh for %s failed (%s); serving the cached token, valid for %ds more, next attempt in %.0fs",
            server_name,
            exc,
            usable.token.expires_at_monotonic - now,
            retry_at - now,
        )
        return usable.token
    log.error("Token acquisition for %s failed: %s", server_name, exc)
    raise exc
