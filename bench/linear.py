"""How the package's content patterns scale: time ratios on growing adversarial inputs, one run.

The tests check these patterns statically (tests/linear.py); this measures them. For every
pattern of ``content_regexes()`` and every adversarial input, it times the pattern as the
package applies it (``match()``, or ``finditer()`` for every start position) at each size and
prints the worst ratio between one size and the next, ten times larger: about 10 is linear,
about 100 quadratic. The old legacy_json url pattern is measured too, as a reference that
shows what a quadratic row looks like (at smaller sizes, or it would run for minutes)::

    .venvs/py313-newest/bin/python bench/linear.py
    .venvs/py313-newest/bin/python bench/linear.py --sizes 10000,100000,1000000
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(BENCH_DIR), "tests"))

from linear import ANCHORED_USE, content_regexes  # noqa: E402

#: Inputs that make a backtracking pattern quadratic: a long run that almost matches and
#: then fails at its end, or many starts that each scan to the end.
ADVERSARIAL: Dict[str, Callable[[int], str]] = {
    "url-then-space": lambda n: "https://" + "a" * n + " ",
    "many-reference-openings": lambda n: "${" * (n // 2),
    "unterminated-reference": lambda n: "${" + "a" * n,
    "scope-then-backslash": lambda n: "a" * n + "\\",
    "scope-words-then-two-spaces": lambda n: "ab " * (n // 3) + " ",
    "uri-then-fragment": lambda n: "x:" + "a" * n + "#",
    "escaped-quotes-unterminated": lambda n: '"' + '\\"' * (n // 2),
    "dots": lambda n: "." * n + "cmdx",
    "brackets-in-a-string": lambda n: '["' + "[" * n,
}

#: The legacy_json url pattern before e6ed092, quadratic on "url-then-space".
REFERENCE = {"old legacy_json url (quadratic)": re.compile(r"^https://[^\s/?#]+[^\s]*$|\$\{[A-Za-z_][A-Za-z0-9_]*\}")}
REFERENCE_SIZES = (1_000, 10_000)


def best_time(function: Callable[[str], Any], text: str, repeat: int = 3) -> float:
    """The fastest of ``repeat`` runs, in seconds (the least disturbed by other processes)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function(text)
        best = min(best, time.perf_counter() - start)
    return best


def applied(name: str, regex: re.Pattern[str]) -> Callable[[str], Any]:
    if name in ANCHORED_USE:
        return regex.match
    return lambda text: [m.end() for m in regex.finditer(text)]


def worst_ratio(function: Callable[[str], Any], sizes: Sequence[int]) -> Tuple[float, str, float]:
    """The largest time ratio between consecutive sizes over the inputs: (ratio, input, seconds)."""
    worst = (0.0, "", 0.0)
    for label, make in ADVERSARIAL.items():
        times = [best_time(function, make(size)) for size in sizes]
        for before, after in zip(times, times[1:]):
            ratio = after / max(before, 1e-6)  # below a microsecond is noise
            if ratio > worst[0]:
                worst = (ratio, label, times[-1])
    return worst


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/linear.py", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated input sizes (default 10000,100000)")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    rows: List[Tuple[str, Tuple[float, str, float]]] = []
    for name, regex in content_regexes().items():
        rows.append((name, worst_ratio(applied(name, regex), sizes)))
    for name, regex in REFERENCE.items():
        rows.append((name, worst_ratio(applied(name, regex), REFERENCE_SIZES)))
    print(
        "sizes %s (reference: %s); ratio per 10x in size, ~10 linear, ~100 quadratic" % (sizes, list(REFERENCE_SIZES))
    )
    print("%7s  %9s  %-28s  %s" % ("ratio", "largest s", "worst input", "pattern"))
    for name, (ratio, label, seconds) in sorted(rows, key=lambda row: -row[1][0]):
        print("%7.1f  %9.4f  %-28s  %s" % (ratio, seconds, label, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
