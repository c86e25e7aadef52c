"""Background refresh: a few daemon threads that run one job per key at a time.

:class:`Refresher` is the worker behind ``TokenManager(background_refresh=True)``. The
manager submits "refresh this key" jobs; the refresher runs each on a daemon thread,
started on first use, and never runs two jobs of one key at once or queues one twice.
Single flight proper (one fetch per key, foreground and background alike) stays in the
manager: a job claims the manager's flight slot when it starts, so a caller that needs
a token while the job fetches waits for that fetch.

Threads are daemons, so they never keep the interpreter alive; an idle thread ends by
itself after :data:`IDLE_TIMEOUT` seconds. :meth:`Refresher.close` drops queued jobs
and waits a bounded time for running ones. After ``os.fork()`` the child gets a new,
empty refresher state (its parent's threads do not exist there), and threads start
again on the first job.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from typing import Callable, Deque, Dict, Hashable, Optional, Set

log = logging.getLogger("oauth_gateway")

#: Most background refreshes that run at once (different keys). One thread keeps the thread
#: count flat; while it is busy with one key, another key's refresh runs in its caller, as
#: without background refresh, rather than queue behind a slow fetch.
DEFAULT_MAX_THREADS = 1
#: Seconds an idle background thread waits for work before it ends.
IDLE_TIMEOUT = 30.0
#: Seconds :meth:`Refresher.close` waits for a refresh that is running.
CLOSE_TIMEOUT = 2.0


class Refresher:
    """Runs refresh jobs on lazily started daemon threads, one job per key at a time. Thread-safe.

    Args:
        name: prefix of the threads' names.
        max_threads: most jobs running at once.
        idle_timeout: seconds an idle thread lives.
    """

    def __init__(
        self,
        name: str = "oauth-gateway-refresh",
        max_threads: int = DEFAULT_MAX_THREADS,
        idle_timeout: float = IDLE_TIMEOUT,
    ):
        self._name = name
        self._max_threads = max(1, int(max_threads))
        self._idle_timeout = idle_timeout
        self._reset()

    def _reset(self) -> None:
        # Guards everything below; never held while a job runs.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: Deque[Hashable] = collections.deque()
        self._jobs: Dict[Hashable, Callable[[], None]] = {}
        self._running: Set[Hashable] = set()
        # Each thread with the generation it serves.
        self._threads: Dict[threading.Thread, int] = {}
        # Idle threads per generation: only the current one's can take new jobs.
        self._idle: Dict[int, int] = {}
        # close() moves to a new generation: threads of an older one end after their job.
        self._generation = 0
        self._pid = os.getpid()

    def submit(self, key: Hashable, job: Callable[[], None]) -> bool:
        """Run ``job`` soon on a background thread, unless a job of ``key`` is queued or running.

        Returns:
            True when a job of ``key`` is queued or running now; False when every thread
            is busy with other keys or none could be started (interpreter shutdown):
            run it yourself.
        """
        if self._pid != os.getpid():  # forked without the at-fork hook (a C-level fork)
            self.reset_after_fork()
        with self._lock:
            if key in self._jobs or key in self._running:
                return True
            idle = self._idle.get(self._generation, 0)
            serving = sum(1 for generation in self._threads.values() if generation == self._generation)
            if idle <= len(self._queue) and serving >= self._max_threads:
                # Every thread is busy with another key: no queue behind a slow fetch (the token
                # could expire there); the caller refreshes, as without background refresh.
                return False
            self._jobs[key] = job
            self._queue.append(key)
            if idle >= len(self._queue):
                self._changed.notify_all()  # an idle thread takes it
                return True
            thread = threading.Thread(
                target=self._work, args=(self._generation,), name="%s-%d" % (self._name, len(self._threads) + 1)
            )
            thread.daemon = True  # never keeps the interpreter alive
            self._threads[thread] = self._generation  # counted now, so that no other caller starts one too
        try:
            # Outside the lock: start() waits for the new thread to run, and callers that
            # submit meanwhile must not wait for that.
            thread.start()
        except RuntimeError as exc:  # "can't create new thread at interpreter shutdown", or no more threads
            with self._lock:
                self._threads.pop(thread, None)
                if self._jobs.pop(key, None) is not None:
                    self._queue.remove(key)
            log.debug("No background refresh thread (%s); refreshing in the caller", exc)
            return False
        return True

    def _work(self, generation: int) -> None:
        me = threading.current_thread()
        with self._lock:
            try:
                while True:
                    if not self._queue:
                        self._idle[generation] = self._idle.get(generation, 0) + 1
                        try:
                            self._changed.wait_for(
                                lambda: self._queue or generation != self._generation, self._idle_timeout
                            )
                        finally:
                            self._idle[generation] -= 1
                            if not self._idle[generation] and generation != self._generation:
                                del self._idle[generation]
                    if generation != self._generation or not self._queue:
                        return  # closed, or idle for idle_timeout
                    key = self._queue.popleft()
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
            while self._queue or self._running:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def close(self, timeout: float = CLOSE_TIMEOUT) -> bool:
        """Drop queued jobs, let running ones finish, and end every thread.

        Waits at most ``timeout`` seconds for running jobs; one still running then
        finishes on its daemon thread, which ends after it. A later :meth:`submit`
        starts threads again.

        Returns:
            True when no thread is left.
        """
        with self._lock:
            self._generation += 1
            for key in self._queue:
                self._jobs.pop(key, None)
            self._queue.clear()
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
        self._reset()

    def __repr__(self) -> str:
        return "Refresher(threads=%d, queued=%d, running=%d)" % (
            len(self._threads),
            len(self._queue),
            len(self._running),
        )
