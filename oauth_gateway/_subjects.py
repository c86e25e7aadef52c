"""Tokens per subject: what a manager got by acting for a user (token exchange, ID-JAG).

A subject token is a user's credential: it is never a cache key, a log field, a metric
label or part of a message. Entries are keyed by a keyed digest of it (HMAC-SHA-256 with
a random key made per manager, so a digest seen elsewhere says nothing and cannot be
matched across processes), held in memory only (never in a shared store: a user's token
in Redis is a user's token on the network), and end with the subject token itself (its
``exp`` when it is a JWT). Each ``(server_name, config_id)`` keeps at most
``max_subjects`` subjects, the least recently used going first.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from typing import Callable, Dict, NamedTuple, Optional, Tuple

from ._exchange import acts_for_a_subject
from ._helpers import masked
from ._singleflight import WAIT_MARGIN, SingleFlight, waited_too_long
from .config import OAuthConfig
from .dpop import DPoPKey
from .endpoint import call_budget
from .exceptions import ConfigError, OAuthGatewayError
from .metrics import Metrics
from .tokens import Token

log = logging.getLogger("oauth_gateway")

#: Subjects kept per ``(server_name, config_id)``: past this the least recently used is forgotten.
DEFAULT_MAX_SUBJECTS = 1000

_Server = Tuple[str, str]
_FlightKey = Tuple[str, str, str, str]  # server_name, config_id, config fingerprint, subject digest


class _Entry(NamedTuple):
    fingerprint: str
    token: Token
    #: Monotonic time from which the entry is not handed out: the token's refresh point, or
    #: the subject token's expiry when that comes first.
    refresh_at: float


def subject_expiry(subject_token: str) -> Optional[float]:
    """The ``exp`` (seconds since the epoch) of a JWT subject token, None for an opaque one. Pure.

    The signature is not checked: the server that receives the token does that. This only
    bounds how long a token obtained with it is kept.
    """
    parts = subject_token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, (int, float)) or not math.isfinite(exp):
        return None
    return float(exp)


class SubjectTokens:
    """The tokens a manager obtained for subjects. Thread-safe.

    A hit reads two dicts and the clock, without a lock; a miss runs ``fetch`` once per
    ``(server_name, config_id, config, subject)`` however many threads ask (the others
    wait for its token or a copy of its error).

    Args:
        clock: the manager's monotonic clock.
        max_subjects: subjects kept per ``(server_name, config_id)``.
        wall_clock: seconds since the epoch, to place a JWT subject's ``exp`` on ``clock``.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        max_subjects: int = DEFAULT_MAX_SUBJECTS,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if max_subjects < 1:
            raise ValueError("max_subjects must be at least 1, got %r" % (max_subjects,))
        self._clock = clock
        self._wall_clock = wall_clock
        self._max = max_subjects
        self._key = os.urandom(32)
        self._lock = threading.Lock()
        self._servers: Dict[_Server, OrderedDict[str, _Entry]] = {}
        # Moved on by forget(): a fetch that started before keeps nothing.
        self._generations: Dict[_Server, int] = {}
        self._flights: SingleFlight[_FlightKey, Token] = SingleFlight(self._lock)

    def digest(self, subject_token: str) -> str:
        """The keyed digest that stands for ``subject_token`` (never reversible, never the same in two managers)."""
        return hmac.new(self._key, subject_token.encode("utf-8"), hashlib.sha256).hexdigest()

    def get(
        self,
        server_name: str,
        config_id: str,
        fingerprint: str,
        subject_token: str,
        fetch: Callable[[], Token],
        wait: float,
        timed_out: Callable[[float], BaseException],
        force: bool = False,
    ) -> Token:
        """Return the subject's cached token, or the one ``fetch`` gets (single flight).

        Args:
            fingerprint: the config's fingerprint; an edited config never gets the old one's token.
            fetch: gets a new token for this subject (called by the leader only).
            wait: seconds a waiter waits for the leader at most.
            timed_out: builds the error of a waiter that waited ``wait`` seconds.
            force: fetch even when a fresh token is cached (after a resource server refused it).
        """
        digest = self.digest(subject_token)
        server = (server_name, config_id)
        if not force:
            token = self._hit(server, digest, fingerprint)
            if token is not None:
                return token
        key = (server_name, config_id, fingerprint, digest)
        with self._lock:
            if not force:
                token = self._hit(server, digest, fingerprint)  # fetched meanwhile
                if token is not None:
                    return token
            flight, leader = self._flights.join(key)
            generation = self._generations.get(server, 0)
        if not leader:
            return flight.wait(wait, timed_out)

        def work() -> Token:
            token = fetch()
            ends = subject_expiry(subject_token)
            refresh_at = token.refresh_at
            if ends is not None:
                refresh_at = min(refresh_at, self._clock() + (ends - self._wall_clock()))
            self._keep(server, generation, digest, _Entry(fingerprint, token, refresh_at))
            return token

        return self._flights.lead(key, flight, work)

    def cached(self, server_name: str, config_id: str, fingerprint: str, subject_token: str) -> Optional[Token]:
        """The subject's fresh cached token, or None (no lock, no I/O)."""
        return self._hit((server_name, config_id), self.digest(subject_token), fingerprint)

    def _hit(self, server: _Server, digest: str, fingerprint: str) -> Optional[Token]:
        entries = self._servers.get(server)
        entry = entries.get(digest) if entries is not None else None
        if entry is None or entry.fingerprint != fingerprint or not self._clock() < entry.refresh_at:
            return None
        try:
            entries.move_to_end(digest)  # type: ignore[union-attr]  # entries holds entry
        except KeyError:  # evicted meanwhile: the token is still good for this call
            pass
        return entry.token

    def _keep(self, server: _Server, generation: int, digest: str, entry: _Entry) -> None:
        with self._lock:
            if self._generations.get(server, 0) != generation:
                return  # forgotten while it was fetched
            entries = self._servers.get(server)
            if entries is None:
                entries = self._servers[server] = OrderedDict()
            entries[digest] = entry
            entries.move_to_end(digest)
            while len(entries) > self._max:
                entries.popitem(last=False)

    def forget(self, server_name: str, config_id: str) -> None:
        """Drop every subject's token of ``(server_name, config_id)``; fetches in flight keep nothing."""
        with self._lock:
            server = (server_name, config_id)
            self._servers.pop(server, None)
            self._generations[server] = self._generations.get(server, 0) + 1

    def count(self, server_name: str, config_id: str) -> int:
        """How many subjects ``(server_name, config_id)`` holds tokens for."""
        entries = self._servers.get((server_name, config_id))
        return len(entries) if entries is not None else 0

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._flights = SingleFlight(self._lock)

    def __repr__(self) -> str:
        return "SubjectTokens(servers=%d, max_subjects=%d)" % (len(self._servers), self._max)


class SubjectFlow:
    """A manager's way to a subject's token: the config checks, the subjects' cache, one fetch per subject. Thread-safe.

    Args:
        tokens: the subjects' cache.
        clock: the manager's monotonic clock.
        resolve: the manager's resolver (discovery), as ``resolve(config, deadline)``.
        key_for: the DPoP key of a config, or None.
        fetch: the manager's fetch, as ``fetch(server_name, config, deadline, dpop_key, subject_token)``.
        metrics: the manager's counters.
    """

    def __init__(
        self,
        tokens: SubjectTokens,
        clock: Callable[[], float],
        resolve: Callable[[OAuthConfig, Optional[float]], OAuthConfig],
        key_for: Callable[[OAuthConfig], Optional[DPoPKey]],
        fetch: Callable[[str, OAuthConfig, Optional[float], Optional[DPoPKey], Optional[str]], Token],
        metrics: Metrics,
    ) -> None:
        self._tokens = tokens
        self._clock = clock
        self._resolve = resolve
        self._key_for = key_for
        self._fetch = fetch
        self._metrics = metrics

    def cached(self, server_name: str, config: OAuthConfig, config_id: str, subject_token: str) -> Optional[Token]:
        """The subject's fresh cached token, or None (the hit check's subject branch)."""
        return self._tokens.cached(server_name, config_id, config.fingerprint, subject_token)

    def get(
        self, server_name: str, config: OAuthConfig, config_id: str, subject_token: str, force: bool = False
    ) -> Token:
        """A token for ``subject_token``: from the subjects' cache, else one fetch per subject."""
        subject_token = masked(subject_token)  # frame locals may be printed with a traceback
        if not config.enabled:
            raise ConfigError(
                "OAuth is disabled for server %r" % server_name, "$.oauth_config.enabled", "set enabled to true"
            )
        if not acts_for_a_subject(config):
            raise ConfigError(
                "a subject_token was given for server %r, whose config does not act for a user" % server_name,
                "$.oauth_config.OAUTH_GRANT_TYPE",
                'set OAUTH_GRANT_TYPE to "urn:ietf:params:oauth:grant-type:token-exchange", or add '
                "OAUTH_IDENTITY_ASSERTION; or call without subject_token",
            )

        def fetch() -> Token:
            self._metrics.add(server_name, "token_cache_misses")
            try:
                # One deadline per leg: the ID-JAG flow makes two calls.
                deadline = self._clock() + 2 * call_budget(config)
                resolved = self._resolve(config, deadline)
                return self._fetch(server_name, resolved, deadline, self._key_for(config), subject_token)
            except OAuthGatewayError as exc:
                log.error("Token acquisition for %s (a subject's) failed: %s", server_name, exc)
                raise

        # Two legs with ID-JAG, each within its own budget.
        budget = 2 * call_budget(config) + WAIT_MARGIN
        return self._tokens.get(
            server_name,
            config_id,
            config.fingerprint,
            subject_token,
            fetch,
            budget,
            functools.partial(waited_too_long, server_name),
            force=force,
        )
