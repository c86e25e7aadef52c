"""Timing a function on growing inputs, to show it is linear (not quadratic) in their size."""

from __future__ import annotations

import time
from typing import Any, Callable, List, Sequence, Tuple

#: Each size is ten times the one before: a linear function takes about ten times as long,
#: a quadratic one a hundred times. 20x leaves room for a busy machine.
SIZES = (10_000, 100_000, 1_000_000)
MAX_RATIO = 20.0
#: Time below which a measurement is noise: ratios are taken against at least this much.
FLOOR = 0.01
#: No single run may take this long (a 1 MB input, generously).
MAX_SECONDS = 2.0


def best_time(function: Callable[[Any], Any], argument: Any, repeat: int = 3) -> float:
    """The fastest of ``repeat`` runs, in seconds (the least disturbed by other processes)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function(argument)
        best = min(best, time.perf_counter() - start)
        if best > MAX_SECONDS:  # failing anyway: do not wait for more runs
            break
    return best


def assert_linear(
    function: Callable[[Any], Any], make_input: Callable[[int], Any], label: str, sizes: Sequence[int] = SIZES
) -> List[Tuple[int, float]]:
    """Fail as soon as one step up in size costs more than :data:`MAX_RATIO` times the last.

    Smallest size first, so a quadratic function fails on a small input and quickly.

    Returns:
        ``(size, seconds)`` per size.
    """
    timings: List[Tuple[int, float]] = []
    for size in sizes:
        seconds = best_time(function, make_input(size), repeat=3 if size < 1_000_000 else 1)
        assert seconds < MAX_SECONDS, "%s: %d characters took %.2f s" % (label, size, seconds)
        if timings:
            previous = max(timings[-1][1], FLOOR)
            assert seconds < MAX_RATIO * previous, "%s: %d -> %d characters took %.4f -> %.4f s (%.0fx)" % (
                label,
                timings[-1][0],
                size,
                timings[-1][1],
                seconds,
                seconds / previous,
            )
        timings.append((size, seconds))
    return timings
