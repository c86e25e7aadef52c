"""One leader per key: the single flight of the token cache and of discovery.

The first thread to ask for a key becomes its leader and does the work; the threads that
ask while it works wait on a :class:`threading.Condition` for at most a deadline, then get
the leader's result or a fresh copy of its error. The group's lock is held to claim a key
and to publish the outcome, never while the leader works.

A caller that must check something and claim the key atomically (the token cache: the
freshness check and the claim happen under one lock) holds :attr:`SingleFlight.lock` and
calls :meth:`SingleFlight.join`; simpler callers use :meth:`SingleFlight.run`.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from typing import Callable, Dict, Generic, Hashable, Iterator, List, Optional, Tuple, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def fresh_copy(error: BaseException) -> BaseException:
    """A copy of a stored error to raise again.

    Raising the same instance to every waiter and fail-fast caller would append each
    caller's frames to its traceback (kept alive by whoever holds the error), and would
    share one mutable traceback between threads.
    """
    try:
        clone = copy.copy(error)
    except Exception:  # an exception that cannot be copied: at least drop the old frames
        return error.with_traceback(None)
    clone.__cause__ = error.__cause__
    clone.__suppress_context__ = True
    return clone


class Flight(Generic[V]):
    """One key's work in progress; its waiters share the group's lock through ``_done``."""

    __slots__ = ("_done", "_finished", "_value", "_error", "_superseded")

    def __init__(self, lock: threading.Lock) -> None:
        self._done = threading.Condition(lock)
        self._finished = False
        self._value: Optional[V] = None
        self._error: Optional[BaseException] = None
        self._superseded = False

    def is_superseded(self) -> bool:
        """True once :meth:`SingleFlight.supersede` marked it (a revocation, an invalidation):
        its leader then keeps nothing of what it gets."""
        return self._superseded

    def wait(self, timeout: float, timed_out: Callable[[float], BaseException]) -> V:
        """Wait for the leader, at most ``timeout`` seconds, without the group's lock.

        Returns:
            The leader's result.

        Raises:
            BaseException: a fresh copy of the leader's error, or ``timed_out(timeout)``
                when the leader has not finished by then.
        """
        with self._done:
            finished = self._done.wait_for(lambda: self._finished, timeout)
        if not finished:
            raise timed_out(timeout)
        if self._error is not None:
            raise fresh_copy(self._error)
        return self._value  # type: ignore[return-value]  # set before _finished


class SingleFlight(Generic[K, V]):
    """The flights in progress, one per key. Thread-safe.

    Args:
        lock: the lock that guards the table; pass the owner's lock when it must check
            its own state and claim a key in one step.
    """

    def __init__(self, lock: Optional[threading.Lock] = None) -> None:
        self.lock = lock if lock is not None else threading.Lock()
        self._flights: Dict[K, Flight[V]] = {}

    def join(self, key: K) -> Tuple[Flight[V], bool]:
        """Return ``key``'s flight and whether the caller leads it (claiming it if none runs).

        The caller holds :attr:`lock`. A leader must then call :meth:`lead`.
        """
        flight = self._flights.get(key)
        if flight is not None:
            return flight, False
        flight = self._flights[key] = Flight(self.lock)
        return flight, True

    def busy(self, key: K) -> bool:
        """Whether a flight of ``key`` is in progress (the caller holds :attr:`lock`)."""
        return key in self._flights

    def lead(self, key: K, flight: Flight[V], work: Callable[[], V]) -> V:
        """Run ``work`` as the leader of ``flight``, without the lock, and hand its outcome to the waiters.

        Raises:
            BaseException: what ``work`` raised (the waiters get copies).
        """
        with self.leading(key, flight) as done:
            return done(work())

    @contextlib.contextmanager
    def leading(self, key: K, flight: Flight[V]) -> Iterator[Callable[[V], V]]:
        """Lead ``flight`` in the caller's own frame: ``with group.leading(key, flight) as done: return done(work())``.

        :meth:`lead` without its stack frame, for the token cache's miss path. ``done(value)``
        hands the value to the waiters and returns it; an exception leaving the block hands
        them copies of it. A block that ends without calling ``done`` is a bug: the waiters
        get a ``RuntimeError`` rather than waiting out their deadline.
        """
        finished: List[bool] = []

        def done(value: V) -> V:
            self._finish(key, flight, value, None)
            finished.append(True)
            return value

        try:
            yield done
        except BaseException as exc:
            if not finished:
                self._finish(key, flight, None, exc)
            raise
        if not finished:
            error = RuntimeError("the leader of a flight returned no value")
            self._finish(key, flight, None, error)
            raise error

    def run(self, key: K, work: Callable[[], V], timeout: float, timed_out: Callable[[float], BaseException]) -> V:
        """Lead ``key``'s work, or wait at most ``timeout`` seconds for the leader's outcome."""
        with self.lock:
            flight, leader = self.join(key)
        if leader:
            return self.lead(key, flight, work)
        return flight.wait(timeout, timed_out)

    def supersede(self, key: K) -> None:
        """Mark ``key``'s flight in progress, if any, so that its leader keeps nothing (the caller holds :attr:`lock`)."""
        flight = self._flights.get(key)
        if flight is not None:
            flight._superseded = True

    def _finish(self, key: K, flight: Flight[V], value: Optional[V], error: Optional[BaseException]) -> None:
        with flight._done:
            flight._value = value
            flight._error = error
            flight._finished = True
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight._done.notify_all()
