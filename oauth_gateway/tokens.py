"""The immutable access :class:`Token` and the arithmetic of its expiry."""

from __future__ import annotations

import datetime
import hashlib
import time
from typing import Any, Dict, FrozenSet, Iterable, Mapping, Optional, Tuple

__all__ = ("Token",)

#: Lifetime given to a token whose response carried no ``expires_in`` (seconds).
DEFAULT_TOKEN_LIFETIME = 3600
#: No token is handed out with less than this left (seconds), nor with less than
#: :data:`MIN_REMAINING_FRACTION` of its lifetime left, whichever is shorter: a token
#: handed out in its last instant expires on the wire.
MIN_REMAINING = 10.0
MIN_REMAINING_FRACTION = 0.1


def refresh_buffer(buffer: float, lifetime: float) -> float:
    """Return the refresh lead time: ``buffer``, but never more than half the lifetime.

    A token that lives 60 s with the default 300 s buffer is refreshed after 30 s
    instead of never being cached at all.
    """
    return max(0.0, min(float(buffer), float(lifetime) / 2.0))


def _fingerprint(secret: str) -> str:
    """Return a short, stable, non-reversible label for a token, safe to log."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:8]


class Token:
    """An access token and when to stop using it. Immutable, so safe to share across threads.

    ``expires_at`` and ``expiry`` are wall-clock times, for people and for values that
    leave the process. The manager decides freshness on its monotonic clock instead:
    ``issued_at``, ``expires_at_monotonic`` and ``refresh_at`` are seconds on that clock,
    set once when the request was sent. ``repr`` shows a fingerprint, never the token.

    Attributes:
        access_token: the bearer token itself.
        token_type: always ``"Bearer"`` (the server's case is normalised).
        expires_in: the lifetime the server granted, or None when it sent none.
        expires_at: when the server considers the token expired, in epoch seconds (UTC,
            ``time.time()``'s clock); :attr:`expiry` is the same as a datetime.
        issued_at: monotonic clock time at which the token request was sent.
        expires_at_monotonic: monotonic clock time at which the token expires.
        refresh_at: monotonic clock time from which the token is refreshed ahead of expiry.
        scopes: the granted scopes (the requested ones when the server sent none).
        authorization: the ``Authorization`` header value, ``"Bearer <token>"``.
    """

    access_token: str
    token_type: str
    expires_in: Optional[float]
    issued_at: float
    expires_at_monotonic: float
    refresh_at: float
    scopes: FrozenSet[str]
    authorization: str
    expires_at: float

    __slots__ = (
        "access_token",
        "token_type",
        "expires_in",
        "issued_at",
        "expires_at_monotonic",
        "refresh_at",
        "scopes",
        "authorization",
        "expires_at",
    )

    def __init__(
        self,
        access_token: str,
        token_type: str = "Bearer",
        expires_in: Optional[float] = None,
        issued_at: float = 0.0,
        scopes: Iterable[str] = (),
        expiry_buffer: float = 0.0,
        default_lifetime: float = DEFAULT_TOKEN_LIFETIME,
        issued_at_epoch: Optional[float] = None,
    ) -> None:
        """Build a token from a token response.

        Args:
            access_token: the token.
            token_type: the response's ``token_type``.
            expires_in: the response's ``expires_in`` (seconds), or None.
            issued_at: monotonic clock time at which the request was sent.
            scopes: the granted scopes.
            expiry_buffer: seconds before expiry from which the token is stale
                (at most half its lifetime).
            default_lifetime: the lifetime assumed when ``expires_in`` is None.
            issued_at_epoch: the same instant as ``issued_at`` in epoch seconds;
                ``time.time()`` (now) by default.
        """
        lifetime = default_lifetime if expires_in is None else expires_in
        deadline = issued_at + lifetime
        sets = object.__setattr__
        sets(self, "access_token", access_token)
        sets(self, "token_type", "Bearer" if token_type.lower() == "bearer" else token_type)
        sets(self, "expires_in", expires_in)
        sets(self, "issued_at", issued_at)
        sets(self, "expires_at_monotonic", deadline)
        sets(self, "refresh_at", deadline - refresh_buffer(expiry_buffer, lifetime))
        sets(self, "scopes", frozenset(scopes))
        sets(self, "authorization", "%s %s" % (self.token_type, access_token))
        sets(self, "expires_at", (time.time() if issued_at_epoch is None else issued_at_epoch) + lifetime)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Token is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Token is immutable")

    def __reduce__(self) -> Tuple[Any, ...]:
        return (_restore, (self._state(),))

    def _state(self) -> Tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Token):
            return NotImplemented
        return self._state() == other._state()

    def __hash__(self) -> int:
        return hash(self._state())

    @property
    def scope(self) -> str:
        """The granted scopes as one space-separated string, sorted."""
        return " ".join(sorted(self.scopes))

    @property
    def fingerprint(self) -> str:
        """A short hash of the token, safe for logs and ``repr``."""
        return _fingerprint(self.access_token)

    @property
    def expiry(self) -> datetime.datetime:
        """:attr:`expires_at` as a timezone-aware UTC datetime."""
        return datetime.datetime.fromtimestamp(self.expires_at, datetime.timezone.utc)

    @property
    def expired(self) -> bool:
        """True once the server considers the token expired (read from the wall clock)."""
        return self.is_expired()

    def is_expired(self, now: Optional[float] = None) -> bool:
        """Return True once the server considers the token expired.

        Args:
            now: a time on the monotonic clock the token was issued on, compared with
                :attr:`expires_at_monotonic` (what the manager does). By default the wall
                clock is read and compared with :attr:`expires_at`.
        """
        if now is None:
            return time.time() >= self.expires_at
        return now >= self.expires_at_monotonic

    def is_stale(self, now: float) -> bool:
        """Return True once the token should be refreshed (still usable until expired).

        Args:
            now: a time on the monotonic clock the token was issued on.
        """
        return now >= self.refresh_at

    @property
    def usable_until(self) -> float:
        """Monotonic clock time from which the token is no longer handed out.

        ``min(MIN_REMAINING, MIN_REMAINING_FRACTION * lifetime)`` before expiry: a caller
        then waits for a new token instead of getting one that expires on the wire.
        """
        lifetime = self.expires_at_monotonic - self.issued_at
        return self.expires_at_monotonic - max(0.0, min(MIN_REMAINING, MIN_REMAINING_FRACTION * lifetime))

    def is_usable(self, now: float) -> bool:
        """Return True while the token may still be handed out (see :attr:`usable_until`).

        Args:
            now: a time on the monotonic clock the token was issued on.
        """
        return now < self.usable_until

    def expires_in_at(self, now: float) -> float:
        """Seconds left before expiry at monotonic clock time ``now`` (negative once expired)."""
        return self.expires_at_monotonic - now

    def to_dict(self, show_token: bool = False) -> Dict[str, Any]:
        """Describe the token as ``oauth-gateway token`` and Django's ``oauth_gateway_token`` print it.

        Args:
            show_token: give the access token itself instead of :meth:`masked`.

        Returns:
            ``access_token``, ``token_type``, ``scopes`` (a sorted list), ``expires_in``
            (whole seconds left now, on the wall clock) and ``expires_at`` (ISO 8601 UTC,
            like ``2026-11-27T21:32:51Z``).
        """
        return {
            "access_token": self.access_token if show_token else self.masked(),
            "token_type": self.token_type,
            "scopes": sorted(self.scopes),
            "expires_in": max(0, int(self.expires_at - time.time())),
            "expires_at": _iso8601(self.expires_at),
        }

    def masked(self) -> str:
        """The token for display: its first 4 characters (of 16 or more), its length and fingerprint."""
        text = self.access_token
        head = text[:4] if len(text) >= 16 else ""
        return "%s*** (%d characters, sha256:%s)" % (head, len(text), self.fingerprint)

    def __repr__(self) -> str:
        return "Token(token_type=%r, expires_in=%r, scopes=%r, fingerprint=%r)" % (
            self.token_type,
            self.expires_in,
            tuple(sorted(self.scopes)),
            self.fingerprint,
        )

    __str__ = __repr__


def token_from_state(state: Mapping[str, Any]) -> Token:
    """Rebuild a :class:`Token` with exactly the given attribute values, one per slot.

    The one way back from stored state (a shared cache's entry, a pickle): the
    constructor derives ``expires_at_monotonic`` and ``refresh_at`` from the lifetime,
    whereas a token read back keeps the times it was written with (already moved onto
    this process's clock), to the last bit.

    Raises:
        KeyError: a slot is missing from ``state``.
    """
    token = Token.__new__(Token)
    for name in Token.__slots__:
        object.__setattr__(token, name, state[name])
    return token


def _restore(state: Tuple[Any, ...]) -> Token:
    """Unpickle a token (pickles name this function, so it keeps its name)."""
    values = dict(zip(Token.__slots__, state))
    if len(state) < len(Token.__slots__):  # pickled before expires_at was in epoch seconds
        values["expires_at"] = time.time() + (values["expires_at_monotonic"] - time.monotonic())
    return token_from_state(values)


def describe(token: Token, server_name: str, config_id: str, show_token: bool = False) -> Dict[str, Any]:
    """The fields ``oauth-gateway token`` and Django's ``oauth_gateway_token`` print, in order.

    ``server`` and ``config_id``, then :meth:`Token.to_dict`'s fields. Both commands print
    them as ``name: value`` lines (scopes space-separated), and ``--output json`` as one
    JSON object with these keys.
    """
    fields: Dict[str, Any] = {"server": server_name, "config_id": config_id}
    fields.update(token.to_dict(show_token))
    return fields


def format_description(fields: Dict[str, Any]) -> str:
    """Render :func:`describe`'s fields as ``name: value`` lines (no final newline)."""
    lines = []
    for name, value in fields.items():
        if name == "scopes":
            value = " ".join(value) or "(none)"
        elif name == "expires_in":
            value = "%d s" % value
        lines.append("%s: %s" % (name, value))
    return "\n".join(lines)


def _iso8601(epoch: float) -> str:
    """Return epoch seconds as an ISO 8601 UTC timestamp, like ``2026-11-27T21:32:51Z``."""
    return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_scope(value: Optional[str]) -> FrozenSet[str]:
    """Split a space-separated scope string (RFC 6749 section 3.3) into a set."""
    if not value:
        return frozenset()
    return frozenset(part for part in value.split(" ") if part)
