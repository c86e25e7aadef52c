"""Background refresh: a small pool of daemon threads, earliest deadline first, with jitter.

:class:`Refresher` is the worker behind ``TokenManager(background_refresh=True)``. The
manager submits "refresh this key" jobs, each with its deadline (when the key's token
expires); the refresher keeps them in one heap ordered by deadline and runs them on at
most ``workers`` daemon threads, started on first use. Whichever thread is free takes
the job with the earliest deadline, so under load the token closest to its end is
refreshed first, and no key ever has a thread of its own: a thousand keys share the
same few threads (google-auth's single ``_refresh_worker``, widened to a pool). A key
is never queued twice nor run twice at once.

Single flight proper (one fetch per key, foreground and background alike) stays in the
manager: a job claims the key's flight when it starts, so a caller that needs a token
while the job fetches waits for that fetch, and a caller whose token ran out before its
job started fetches in the foreground, after which the job finds the key fresh and ends.

Tokens fetched together would enter their refresh windows together; :meth:`Refresher.refresh_start`
moves each token's start a random fraction (at most :data:`JITTER`) into its window, so
their refreshes spread out instead of queueing at one instant.

Threads are daemons, so they never keep the interpreter alive; an idle thread ends by
itself after :data:`IDLE_TIMEOUT` seconds. :meth:`Refresher.close` drops queued jobs
and waits a bounded time for running ones. After ``os.fork()`` the child gets a new,
empty refresher state (its parent's threads do not exist there), and threads start
again on the first job.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import random
import threading
import time
from typing import TYPE_CHECKING, Callable, Dict, Hashable, List, Optional, Set, Tuple

from .exceptions import OAuthGatewayError
from .tokens import Token

if TYPE_CHECKING:  # pragma: no cover
    from .cache import CacheEntry
    from .metrics import Metrics

log = logging.getLogger("oauth_gateway")

#: Most background refreshes that run at once (different keys): ``TokenManager(refresh_workers=...)``.
DEFAULT_WORKERS = 4
#: Largest fraction of a token's refresh window (refresh time to last use) by which its refresh
#: start is moved later, at random: keys fetched together then refresh a little apart.
JITTER = 0.1
#: Seconds an idle background thread waits for work before it ends.
IDLE_TIMEOUT = 30.0
#: Seconds :meth:`Refresher.close` waits for a refresh that is running.
CLOSE_TIMEOUT = 2.0


class Refresher:
    """Runs refresh jobs on a few lazily started daemon threads, earliest deadline first. Thread-safe.

    Args:
        workers: most jobs running at once (at least 1).
        name: prefix of the threads' names.
        jitter: largest fraction of a refresh window by which :meth:`refresh_start` delays.
        random: returns a float in [0, 1) for the jitter (``random.Random(seed).random``
            makes it repeatable); a private ``random.Random`` by default.
        idle_timeout: seconds an idle thread lives.

    Raises:
        ValueError: ``workers`` is below 1 or ``jitter`` outside [0, 1].
    """

    def __init__(
        self,
        workers: int = DEFAULT_WORKERS,
        name: str = "oauth-gateway-refresh",
        jitter: float = JITTER,
        random: Optional[Callable[[], float]] = None,
        idle_timeout: float = IDLE_TIMEOUT,
    ):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError("refresh_workers: must be an integer of at least 1, got %r; use 1 or more" % (workers,))
        if not 0.0 <= jitter <= 1.0:
            raise ValueError("jitter: must be between 0 and 1, got %r" % (jitter,))
        self._workers = workers
        self._name = name
        self._jitter = float(jitter)
        self._own_random = random is None  # reseeded after fork, so children do not repeat the parent
        self._random = random if random is not None else _new_random()
        self._idle_timeout = idle_timeout
        self._reset()

    def _reset(self) -> None:
        # Guards everything below; never held while a job runs.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        # Queued keys by (deadline, arrival): the heap is the schedule. Each key is in it at most once.
        self._heap: List[Tuple[float, int, Hashable]] = []
        self._arrivals = itertools.count()
        self._jobs: Dict[Hashable, Callable[[], None]] = {}
        self._running: Set[Hashable] = set()
        # Each thread with the generation it serves.
        self._threads: Dict[threading.Thread, int] = {}
        # Idle threads per generation: only the current one's can take new jobs.
        self._idle: Dict[int, int] = {}
        # close() moves to a new generation: threads of an older one end after their job.
        self._generation = 0
        self._pid = os.getpid()

    def refresh_start(self, refresh_at: float, window_end: float) -> float:
        """Return when a token's background refresh should start: ``refresh_at``, plus jitter.

        The start is drawn uniformly from the first :data:`JITTER` fraction of the window
        ``[refresh_at, window_end)`` (``window_end``: when the token stops being handed
        out), so it is never earlier than the token's refresh time and leaves at least
        nine tenths of the window for the refresh itself.
        """
        span = max(0.0, window_end - refresh_at) * self._jitter
        return refresh_at + span * self._random()

    def submit(self, key: Hashable, job: Callable[[], None], deadline: float) -> bool:
        """Queue ``job`` to run on a background thread, unless a job of ``key`` is queued or running.

        Args:
            key: the job's key; one job per key at a time.
            job: what to run; it handles its own errors.
            deadline: when the job must be done at the latest (when the token stops being
                handed out); the earliest deadline runs first.

        Returns:
            True when a job of ``key`` is queued or running now; False when no thread
            could be started (interpreter shutdown): run it yourself.
        """
        if self._pid != os.getpid():  # forked without the at-fork hook (a C-level fork)
            self.reset_after_fork()
        if key in self._jobs or key in self._running:
            # Read without the lock (one dict or set lookup): every caller that finds a stale
            # token asks again until its refresh lands, and must not queue on the lock for it.
            return True
        with self._lock:
            if key in self._jobs or key in self._running:
                return True
            self._jobs[key] = job
            heapq.heappush(self._heap, (deadline, next(self._arrivals), key))
            generation = self._generation
            serving = sum(1 for served in self._threads.values() if served == generation)
            if self._idle.get(generation, 0) >= len(self._heap) or serving >= self._workers:
                # An idle thread takes it, or every thread is busy and the first one free
                # takes the earliest deadline: the heap waits, no thread of its own.
                self._changed.notify_all()  # wait() shares the condition: wake every thread
                return True
            thread = threading.Thread(
                target=self._work, args=(generation,), name="%s-%d" % (self._name, len(self._threads) + 1)
            )
            thread.daemon = True  # never keeps the interpreter alive
            self._threads[thread] = generation  # counted now, so that no other caller starts one too
        try:
            # Outside the lock: start() waits for the new thread to run, and callers that
            # submit meanwhile must not wait for that.
            thread.start()
        except RuntimeError as exc:  # "can't create new thread at interpreter shutdown", or no more threads
            with self._lock:
                self._threads.pop(thread, None)
                if self._threads:
                    return True  # another thread will take it
                if self._jobs.pop(key, None) is not None:
                    self._heap = [item for item in self._heap if item[2] != key]
                    heapq.heapify(self._heap)
            log.debug("No background refresh thread (%s); refreshing in the caller", exc)
            return False
        return True

    def _work(self, generation: int) -> None:
        me = threading.current_thread()
        with self._lock:
            try:
                while True:
                    if not self._heap:
                        self._idle[generation] = self._idle.get(generation, 0) + 1
                        try:
                            self._changed.wait_for(
                                lambda: self._heap or generation != self._generation, self._idle_timeout
                            )
                        finally:
                            self._idle[generation] -= 1
                            if not self._idle[generation] and generation != self._generation:
                                del self._idle[generation]
                    if generation != self._generation or not self._heap:
                        return  # closed, or idle for idle_timeout
                    _, _, key = heapq.heappop(self._heap)  # the earliest deadline
                    job = self._jobs.pop(key)
                    self._running.add(key)
                    self._lock.release()  # never held while a job runs
                    try:
                        job()
                    except Exception:  # a job handles its own errors; this is a bug: keep the thread
                        log.exception("Background token refresh failed unexpectedly")
                    finally:
                        self._lock.acquire()
                        self._running.discard(key)
                        self._changed.notify_all()
            finally:
                self._threads.pop(me, None)
                self._changed.notify_all()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until no job is queued or running.

        Returns:
            True when idle, False when ``timeout`` seconds passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._heap or self._running:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def close(self, timeout: float = CLOSE_TIMEOUT) -> bool:
        """Drop queued jobs, let running ones finish, and end every thread.

        Waits at most ``timeout`` seconds in all for running jobs; one still running then
        finishes on its daemon thread, which ends after it. A later :meth:`submit`
        starts threads again.

        Returns:
            True when no thread is left.
        """
        with self._lock:
            self._generation += 1
            self._jobs.clear()
            self._heap.clear()
            self._changed.notify_all()
            threads = [thread for thread in self._threads if thread is not threading.current_thread()]
        deadline = time.monotonic() + timeout
        for thread in threads:
            try:
                thread.join(max(0.0, deadline - time.monotonic()))
            except RuntimeError:  # being started by submit() right now: it ends at once
                pass
        return not any(thread.is_alive() for thread in threads)

    @property
    def threads(self) -> int:
        """How many background threads are alive."""
        with self._lock:
            return len(self._threads)

    def reset_after_fork(self) -> None:
        """Forget the parent's threads, jobs and lock: the child starts threads on its first job."""
        if self._own_random:
            self._random = _new_random()
        self._reset()

    def __repr__(self) -> str:
        return "Refresher(workers=%d, threads=%d, queued=%d, running=%d)" % (
            self._workers,
            len(self._threads),
            len(self._heap),
            len(self._running),
        )


def _new_random() -> Callable[[], float]:
    return random.Random().random


def refresh_start(refresher: Optional[Refresher], token: Token) -> float:
    """When the hit check first sends ``token``'s key to the refresh path (a cache entry's ``refresh_at``).

    With background refresh, the token's refresh time plus a small random part of its
    window (:meth:`Refresher.refresh_start`), so keys fetched together refresh apart;
    without it (``refresher`` None), the token's refresh time.
    """
    if refresher is None:
        return token.refresh_at
    return refresher.refresh_start(token.refresh_at, token.usable_until)


def run_refresh(lead: Callable[[], Token], stale: Token, metrics: Metrics, key: Tuple[str, str]) -> None:
    """The body of a background refresh of ``key``, whose flight is claimed: ``lead`` fetches; counted and logged.

    Args:
        lead: fetches as the key's leader (the manager's slow path; it logs an OAuth failure).
        stale: the token being replaced.
    """
    server_name, config_id = key
    token: Optional[Token] = None
    try:
        token = lead()
    except BaseException as exc:  # handed to the waiters, if any; the slow path logged an OAuth failure
        if not isinstance(exc, OAuthGatewayError):
            log.warning("Background token refresh for %s failed (%s)", server_name, type(exc).__name__)
    if token is None or token is stale:  # the failure policy kept the old token (and logged a WARNING)
        metrics.add(server_name, "background_refresh_failures")
    elif token.access_token != stale.access_token:
        metrics.add(server_name, "background_refreshes")
        log.debug("Token for %s (config: %s) refreshed in the background", server_name, config_id)


def hand_off(
    refresher: Refresher,
    entry: Optional[CacheEntry],
    fingerprint: str,
    clock: Callable[[], float],
    key: Hashable,
    job: Callable[[], None],
) -> Optional[Token]:
    """``entry``'s stale but valid token, handed out once ``job`` (its refresh) is queued; else None.

    Args:
        entry: the cached entry of ``key``; it must be of the config whose ``fingerprint`` is given.
    """
    if entry is None or entry.fingerprint != fingerprint or not entry.token.is_usable(clock()):
        return None
    # Earliest deadline first. No manager lock here: the job claims the key's flight itself,
    # and submit() queues one job per key at a time.
    if not refresher.submit(key, job, entry.token.usable_until):
        return None
    next(entry.hits)
    return entry.token
