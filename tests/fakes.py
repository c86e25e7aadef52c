"""Fakes of time for code under test: a clock that moves only when told, a sleep that records.

:class:`FakeClock` replaces ``time.monotonic`` and :class:`RecordingSleep` replaces
``time.sleep`` (cachetools' test ``Timer`` in spirit): time moves with ``advance()``, and a
sleep records its delay, advancing the clock, instead of waiting.
"""

from __future__ import annotations

import threading
from typing import List, Optional

__all__ = ("FakeClock", "RecordingSleep")


class FakeClock:
    """A monotonic clock that moves only when told to. Thread-safe.

    Calling it returns the current time in seconds, like ``time.monotonic()``.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._lock = threading.Lock()
        self._now = float(start)

    def __call__(self) -> float:
        with self._lock:
            return self._now

    @property
    def now(self) -> float:
        """The current time in seconds."""
        return self()

    def advance(self, seconds: float) -> float:
        """Move the clock forward.

        Args:
            seconds: how far; must not be negative (the clock is monotonic).

        Returns:
            The new time.

        Raises:
            ValueError: if ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError("FakeClock.advance: seconds must be >= 0, got %r" % (seconds,))
        with self._lock:
            self._now += float(seconds)
            return self._now

    def __repr__(self) -> str:
        return "FakeClock(%r)" % (self(),)


class RecordingSleep:
    """A ``sleep`` that records each delay and never waits. Thread-safe.

    Attributes:
        calls: the delays asked for, in order.
        clock: the :class:`FakeClock` advanced by each delay, or None.
    """

    def __init__(self, clock: Optional[FakeClock] = None) -> None:
        self._lock = threading.Lock()
        self.calls: List[float] = []
        self.clock = clock

    def __call__(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("sleep length must be non-negative, got %r" % (seconds,))
        with self._lock:
            self.calls.append(seconds)
            if self.clock is not None:
                self.clock.advance(seconds)

    @property
    def total(self) -> float:
        """The sum of all recorded delays."""
        with self._lock:
            return float(sum(self.calls))

    def __repr__(self) -> str:
        return "RecordingSleep(calls=%r)" % (self.calls,)
