"""Cost of reading a hostile 401: 100 ``WWW-Authenticate`` lines of 64 KiB against one, in one run.

A resource server may answer 401 with as many header lines as http.client accepts, each as
long as it accepts; requests joins them into one value with ``", "``. The auth objects read
it once with :func:`oauth_gateway._authflow.read_401` (the one parser, capped at
``MAX_CHALLENGE_LENGTH`` characters). Goal (issues 21 and 22): the cost does not grow with
the header (ratio near 1; the old auth.py parser was quadratic, 7.8 s of CPU for 761 KB).

Each line is the worst shape found for a parser: a valid Bearer ``invalid_token`` challenge
first, then one-letter schemes (``a, a, a, ...``), one challenge per 3 characters.

Usage: python bench/challenge_cost.py
"""

from __future__ import annotations

import platform
import sys
import timeit
from typing import List

from oauth_gateway._authflow import read_401
from oauth_gateway._http import MAX_CHALLENGE_LENGTH

ROUNDS = 7
NUMBER = 20
LINE = 64 * 1024
URL = "https://mcp.example.test/mcp"


def _lines(count: int) -> List[str]:
    first = ('Bearer error="invalid_token", ' + "a, " * LINE)[:LINE]
    return [first] + [("a, " * LINE)[:LINE] for _ in range(count - 1)]


def _per_call_us(header: str) -> float:
    def one() -> None:
        assert read_401(header, URL).invalid_token

    one()
    return min(timeit.repeat(one, number=NUMBER, repeat=ROUNDS)) / NUMBER * 1e6


def main() -> None:
    print("python:   %s %s" % (platform.python_implementation(), sys.version.split()[0]))
    print("cap:      MAX_CHALLENGE_LENGTH = %d characters" % MAX_CHALLENGE_LENGTH)
    one_line = ", ".join(_lines(1))
    hundred = ", ".join(_lines(100))
    # Interleaved rounds, best of each: load on the machine moves both alike.
    small, large = [], []
    for _ in range(3):
        small.append(_per_call_us(one_line))
        large.append(_per_call_us(hundred))
    print("1 x 64 KiB   (%9d chars): %8.1f us per 401" % (len(one_line), min(small)))
    print("100 x 64 KiB (%9d chars): %8.1f us per 401" % (len(hundred), min(large)))
    print(
        "ratio 100 x 64 KiB / 1 x 64 KiB: %.2fx (the input is %.0fx longer)"
        % (min(large) / min(small), len(hundred) / len(one_line))
    )


if __name__ == "__main__":
    main()
