"""The immutable access :class:`Token` and the arithmetic of its expiry."""

from __future__ import annotations

import hashlib
from typing import Any, FrozenSet, Iterable, Optional, Tuple

#: Lifetime given to a token whose response carried no ``expires_in`` (seconds).
DEFAULT_TOKEN_LIFETIME = 3600


def refresh_buffer(buffer: float, lifetime: float) -> float:
    """Return the refresh lead time: ``buffer``, but never more than half the lifetime.

    A token that lives 60 s with the default 300 s buffer is refreshed after 30 s
    instead of never being cached at all.
    """
    return max(0.0, min(float(buffer), float(lifetime) / 2.0))


def fingerprint(secret: str) -> str:
    """Return a short, stable, non-reversible label for a token, safe to log."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:8]


class Token:
    """An access token and when to stop using it. Immutable, so safe to share across threads.

    Times are seconds on the manager's monotonic clock, set once when the request
    was sent. ``repr`` shows a fingerprint, never the token.

    Attributes:
        access_token: the bearer token itself.
        token_type: always ``"Bearer"`` (the server's case is normalised).
        expires_in: the lifetime the server granted, or None when it sent none.
        issued_at: clock time at which the token request was sent.
        expires_at: clock time at which the server considers the token expired.
        refresh_at: clock time from which the token is refreshed ahead of expiry.
        scopes: the granted scopes (the requested ones when the server sent none).
    """

    access_token: str
    token_type: str
    expires_in: Optional[float]
    issued_at: float
    expires_at: float
    refresh_at: float
    scopes: FrozenSet[str]
    authorization: str

    __slots__ = (
        "access_token",
        "token_type",
        "expires_in",
        "issued_at",
        "expires_at",
        "refresh_at",
        "scopes",
        "authorization",
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
    ) -> None:
        lifetime = default_lifetime if expires_in is None else expires_in
        expires_at = issued_at + lifetime
        sets = object.__setattr__
        sets(self, "access_token", access_token)
        sets(self, "token_type", "Bearer" if token_type.lower() == "bearer" else token_type)
        sets(self, "expires_in", expires_in)
        sets(self, "issued_at", issued_at)
        sets(self, "expires_at", expires_at)
        sets(self, "refresh_at", expires_at - refresh_buffer(expiry_buffer, lifetime))
        sets(self, "scopes", frozenset(scopes))
        sets(self, "authorization", "%s %s" % (self.token_type, access_token))

    @classmethod
    def restore(
        cls,
        access_token: str,
        token_type: str,
        expires_in: Optional[float],
        issued_at: float,
        expires_at: float,
        refresh_at: float,
        scopes: Iterable[str],
    ) -> "Token":
        """Rebuild a token from stored times, as a shared cache read it back.

        Unlike the constructor, the expiry and refresh times are taken as given (already
        moved onto this process's clock), not computed from ``expires_in``.
        """
        return _restore(
            (access_token, token_type, expires_in, issued_at, expires_at, refresh_at, frozenset(scopes),
             "%s %s" % (token_type, access_token))
        )

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
        return fingerprint(self.access_token)

    def is_expired(self, now: float) -> bool:
        """Return True once the server considers the token expired."""
        return now >= self.expires_at

    def is_stale(self, now: float) -> bool:
        """Return True once the token should be refreshed (still usable until expired)."""
        return now >= self.refresh_at

    def expires_in_at(self, now: float) -> float:
        """Seconds left before expiry at clock time ``now`` (negative once expired)."""
        return self.expires_at - now

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


def _restore(state: Tuple[Any, ...]) -> Token:
    """Unpickle a token (pickles name this function, so it keeps its name)."""
    token = Token.__new__(Token)
    for name, value in zip(Token.__slots__, state):
        object.__setattr__(token, name, value)
    return token


def parse_scope(value: Optional[str]) -> FrozenSet[str]:
    """Split a space-separated scope string (RFC 6749 section 3.3) into a set."""
    if not value:
        return frozenset()
    return frozenset(part for part in value.split(" ") if part)
