"""How the benchmark measures: compiled call loops, interleaved rounds, thread runs, the machine.

Every loop has a fixed count and every wait a timeout. Per-call times are the best of
several rounds, and the rows of one table are measured round by round in turn, so a
slow moment of the machine hits every row alike rather than one of them.
"""

from __future__ import annotations

import datetime
import gc
import itertools
import os
import platform
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

#: Longest a thread run may take before the benchmark gives up on it (seconds).
THREAD_TIMEOUT = 120.0


def compile_loop(stmt: str, namespace: Mapping[str, Any]) -> Callable[[int], None]:
    """Return ``loop(n)``, which runs ``stmt`` n times in one frame, like :mod:`timeit`.

    Names in ``stmt`` are globals of the loop, as with ``timeit.Timer(globals=...)``, so
    every row pays the same lookups and no wrapper call is added to what is measured.
    """
    source = "def _loop(_n):\n    for _ in _repeat(None, _n):\n        %s\n" % stmt
    scope = dict(namespace)
    scope["_repeat"] = itertools.repeat
    exec(compile(source, "<bench %s>" % stmt, "exec"), scope)  # noqa: S102 - the timed loop, from a fixed template
    return scope["_loop"]


def _timed(loop: Callable[[int], None], number: int) -> float:
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        loop(number)
        return time.perf_counter() - start
    finally:
        if enabled:
            gc.enable()


def per_call_ns(
    rows: Sequence[Tuple[str, str, Mapping[str, Any], int]], rounds: int
) -> Tuple[Dict[str, float], Dict[str, BaseException]]:
    """Time ``(name, stmt, namespace, calls per round)`` rows; return best ns per call, and failures.

    Rows are timed in turn within each round and each row keeps its best round. A row
    whose statement raises is dropped and its exception returned instead.
    """
    loops = []
    failures: Dict[str, BaseException] = {}
    for name, stmt, namespace, number in rows:
        try:
            loop = compile_loop(stmt, namespace)
            loop(min(number, 1000))  # warm up: first-call costs, specialisation
        except Exception as exc:
            failures[name] = exc
            continue
        loops.append((name, loop, number))
    best: Dict[str, float] = {}
    for _ in range(rounds):
        for name, loop, number in loops:
            if name in failures:
                continue
            try:
                seconds = _timed(loop, number)
            except Exception as exc:
                failures[name] = exc
                best.pop(name, None)
                continue
            best[name] = min(best.get(name, float("inf")), seconds / number * 1e9)
    return best, failures


class ThreadRun:
    """The outcome of :func:`run_threads`: wall time, errors and whether every thread ended."""

    def __init__(self, wall: float, errors: List[BaseException], finished: bool, results: List[Any]):
        self.wall = wall
        self.errors = errors
        self.finished = finished
        self.results = results


def run_threads(
    count: int, make_work: Callable[[int], Callable[[], Any]], timeout: float = THREAD_TIMEOUT
) -> ThreadRun:
    """Start ``count`` threads, release them together and time until the last one ends.

    Args:
        count: number of threads.
        make_work: called with the thread index before the start line; returns what
            that thread runs once released.
        timeout: seconds to wait for the start line and for the threads to end.
    """
    barrier = threading.Barrier(count + 1)
    ends = [0.0] * count
    results: List[Any] = [None] * count
    errors: List[BaseException] = []

    def worker(index: int) -> None:
        try:
            work = make_work(index)
            barrier.wait(timeout)
            results[index] = work()
        except BaseException as exc:  # reported, never raised in a thread
            errors.append(exc)
        finally:
            ends[index] = time.perf_counter()

    threads = [threading.Thread(target=worker, args=(i,), name="bench-%d" % i, daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    try:
        barrier.wait(timeout)
    except threading.BrokenBarrierError:
        pass
    start = time.perf_counter()
    deadline = start + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.perf_counter()))
    finished = not any(thread.is_alive() for thread in threads)
    wall = (max(ends) if finished else time.perf_counter()) - start
    return ThreadRun(wall, errors, finished, results)


def throughput_ratio(
    stmt: str,
    make_namespace: Callable[[], Mapping[str, Any]],
    single_ns: float,
    threads: int,
    rounds: int,
    budget: float = 0.25,
) -> Tuple[float, float, float]:
    """Compare calls per second of ``threads`` threads against one thread, on the same total count.

    The total count is fixed from the single-thread cost so that one run takes about
    ``budget`` seconds. Each thread gets its own namespace (``make_namespace()``) and
    compiled loop. Each configuration keeps its best of ``rounds``.

    Returns:
        ``(calls per second with 1 thread, with ``threads`` threads, ratio)``.
    """
    per_thread = max(200, int(budget * 1e9 / max(single_ns, 1.0) / threads))
    total = per_thread * threads
    best = {1: float("inf"), threads: float("inf")}
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for n in (1, threads):
                share = total // n
                run = run_threads(n, lambda _i, share=share: _bound(compile_loop(stmt, make_namespace()), share))
                if run.errors:
                    raise run.errors[0]
                if not run.finished:
                    raise TimeoutError("a thread run took longer than %.0fs" % THREAD_TIMEOUT)
                best[n] = min(best[n], run.wall)
    finally:
        if enabled:
            gc.enable()
    one, many = total / best[1], total / best[threads]
    return one, many, many / one


def _bound(loop: Callable[[int], None], count: int) -> Callable[[], None]:
    return lambda: loop(count)


# --------------------------------------------------------------------------- the machine


def cpu_model() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what :mod:`platform` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def machine_lines(versions: Mapping[str, Optional[str]]) -> List[str]:
    """Lines describing this run: date, Python, OS, CPU, package versions."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    python = "%s %s (%s)" % (platform.python_implementation(), platform.python_version(), sys.executable)
    lines = [
        "date:     %s" % now,
        "python:   %s" % python,
        "system:   %s %s, %d usable CPUs: %s" % (platform.system(), platform.release(), usable_cpus(), cpu_model()),
    ]
    shown = ", ".join("%s %s" % (name, version or "not installed") for name, version in versions.items())
    lines.append("packages: %s" % shown)
    lines.append("load:     %s (other work on the machine skews every figure; compare ratios)" % load_average())
    return lines


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, or "unknown"."""
    try:
        return "%.2f %.2f %.2f" % os.getloadavg()
    except (AttributeError, OSError):
        return "unknown"


# --------------------------------------------------------------------------- tables


class Table:
    """A titled table printed as a reStructuredText simple table, with notes below it."""

    def __init__(self, title: str, header: Sequence[str]):
        self.title = title
        self.header = list(header)
        self.rows: List[List[str]] = []
        self.notes: List[str] = []

    def add(self, *cells: Any) -> None:
        row = ["" if cell is None else str(cell) for cell in cells]
        row += [""] * (len(self.header) - len(row))
        self.rows.append(row)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def render(self) -> str:
        widths = [len(h) for h in self.header]
        for row in self.rows:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], len(cell))
        rule = "  ".join("=" * w for w in widths)

        def line(cells: Sequence[str]) -> str:
            out = [cells[0].ljust(widths[0])]
            out += [
                cell.rjust(widths[i]) if i < len(cells) - 1 else cell.ljust(widths[i])
                for i, cell in enumerate(cells)
                if i
            ]
            return "  ".join(out).rstrip()

        parts = [self.title, "-" * len(self.title), "", rule, line(self.header), rule]
        parts += [line(row) for row in self.rows]
        parts.append(rule)
        if self.notes:
            parts.append("")
            parts += ["* " + note for note in self.notes]
        return "\n".join(parts) + "\n"


def ns(value: Optional[float]) -> str:
    return "n/a" if value is None else "{:,.0f}".format(value)


def ratio(value: Optional[float]) -> str:
    return "n/a" if value is None else "%.2fx" % value


def ms(seconds: Optional[float]) -> str:
    return "n/a" if seconds is None else "{:,.1f}".format(seconds * 1e3)
