"""Time: tokens are judged on the injected monotonic clock; the wall clock never matters.

``time.time`` (and ``time.time_ns``) are replaced by a clock that jumps forward and back,
by up to ten years, on every call. A run of the manager through cache hits, refreshes,
a failed refresh served from the cache, expiry with a failing server, the fail-fast
cool-down and recovery, on a :class:`~fakes.FakeClock`, must make the same requests and
hand out tokens with the same times as the same run with the real wall clock. The
replacement also notes every caller that lives in ``oauth_gateway``: there must be none.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
import types
from typing import Any, Iterator, List, Tuple

import pytest

import oauth_gateway as og
from fakes import FakeClock, RecordingSleep
from servers import Fault

YEAR = 365 * 86400.0
#: Offsets from the real wall clock, one per call, cycling: forward and back, small and huge.
JUMPS = (0.0, 10 * YEAR, -YEAR, 3600.0, -86400.0, 30 * 86400.0, -10 * YEAR + 1, 0.5, -0.5, 2 * YEAR)


class _JumpingWallClock:
    """Stands in for ``time.time`` and ``time.time_ns``. Thread-safe.

    Attributes:
        library_callers: module names inside ``oauth_gateway`` that read it.
        calls: how many times anything read it.
    """

    def __init__(self, offsets=JUMPS) -> None:
        self._real = time.time
        self._lock = threading.Lock()
        self._offsets = itertools.cycle(offsets)
        self.library_callers: List[str] = []
        self.calls = 0

    def _offset(self) -> float:
        caller = sys._getframe(2).f_globals.get("__name__", "")
        with self._lock:
            self.calls += 1
            if caller.split(".")[0] == "oauth_gateway":
                self.library_callers.append(caller)
            return next(self._offsets)

    def time(self) -> float:
        return self._real() + self._offset()

    def time_ns(self) -> int:
        return int((self._real() + self._offset()) * 1e9)


@pytest.fixture
def jumping(monkeypatch) -> Iterator[_JumpingWallClock]:
    wall = _JumpingWallClock()
    monkeypatch.setattr(time, "time", wall.time)
    monkeypatch.setattr(time, "time_ns", wall.time_ns)
    yield wall


def _timeline(server, make_block) -> List[Tuple[Any, ...]]:
    """Drive a manager on a FakeClock through every time-dependent path; return what happened.

    Each step is ``(step, token requests so far, outcome)``; a token outcome gives its
    order among distinct tokens and its times relative to the start.
    """
    clock = FakeClock()
    start = clock()
    config = og.OAuthConfig.from_dict(make_block(server, OAUTH_MAX_RETRIES=0))
    seen: List[str] = []
    steps: List[Tuple[Any, ...]] = []
    with og.TokenManager(clock=clock, sleep=RecordingSleep(clock)) as manager:

        def step(name: str, advance: float = 0.0) -> None:
            clock.advance(advance)
            try:
                token = manager.get_token("oauth-api", config)
            except og.OAuthGatewayError as exc:
                steps.append((name, server.count(), type(exc).__name__))
                return
            assert not token.is_expired(clock()), "%s: an expired token was handed out" % name
            if token.access_token not in seen:
                seen.append(token.access_token)
            order = seen.index(token.access_token)
            steps.append((name, server.count(), order, token.issued_at - start, token.expires_at_monotonic - start))

        step("first")
        step("cached until the refresh point", 3299.0)
        step("refreshed at expiry minus 300 s", 2.0)
        step("cached again", 1000.0)
        server.set_faults([Fault(status=503)] * 3)
        step("failed refresh serves the cached token", 2300.0)
        step("no new attempt before the retry wait", 0.5)
        step("second failed attempt still serves it", 0.6)
        step("expired, server failing: raises", 300.0)
        step("cool-down: fails fast without a request", 4.0)
        step("after the cool-down: a new token", 1.0)
        step("cached", 60.0)
        metrics = manager.get_metrics()
    steps.append(
        (
            "metrics",
            metrics["token_acquisitions_total"],
            metrics["token_refresh_failures_served_from_cache"],
            metrics["token_fail_fast"],
            metrics["token_cache_hits"],
        )
    )
    return steps


EXPECTED = [
    ("first", 1, 0, 0.0, 3600.0),
    ("cached until the refresh point", 1, 0, 0.0, 3600.0),
    ("refreshed at expiry minus 300 s", 2, 1, 3301.0, 6901.0),
    ("cached again", 2, 1, 3301.0, 6901.0),
    ("failed refresh serves the cached token", 3, 1, 3301.0, 6901.0),
    ("no new attempt before the retry wait", 3, 1, 3301.0, 6901.0),
    ("second failed attempt still serves it", 4, 1, 3301.0, 6901.0),
    ("expired, server failing: raises", 5, "TokenRequestError"),
    ("cool-down: fails fast without a request", 5, "TokenRequestError"),
    ("after the cool-down: a new token", 6, 2, 6907.1, 10507.1),
    ("cached", 6, 2, 6907.1, 10507.1),
    ("metrics", 6, 2, 1, 4),
]


def _rounded(steps):
    return [tuple(round(v, 6) if isinstance(v, float) else v for v in row) for row in steps]


def test_the_timeline_on_the_real_wall_clock(auth_server, make_block):
    assert _rounded(_timeline(auth_server, make_block)) == EXPECTED


def test_wall_clock_jumps_change_nothing(auth_server, make_block, jumping):
    assert _rounded(_timeline(auth_server, make_block)) == EXPECTED
    assert jumping.calls > 0, "nothing read the wall clock: the replacement was not in effect"
    # The manager reads it once per fetched token, only to label Token.expires_at (epoch
    # seconds, for people); every decision above was taken on the monotonic clock.
    assert set(jumping.library_callers) <= {"oauth_gateway.manager"}
    assert len(jumping.library_callers) == 3  # the three tokens fetched


def test_no_library_module_holds_its_own_reference_to_the_wall_clock():
    # `from time import time` would escape the monkeypatch above; make sure nobody did.
    wall_clocks = (time.time, time.time_ns)
    for name, module in sorted(sys.modules.items()):
        if name.split(".")[0] != "oauth_gateway" or not isinstance(module, types.ModuleType):
            continue
        for attribute, value in vars(module).items():
            assert not any(value is clock for clock in wall_clocks), "%s.%s is the wall clock" % (name, attribute)


@pytest.mark.parametrize("jump", [YEAR, -YEAR], ids=["forward", "back"])
def test_a_wall_clock_jump_neither_refetches_nor_serves_an_expired_token(
    auth_server, make_block, monkeypatch, clock, sleeps, jump
):
    real = time.time
    with og.TokenManager(clock=clock, sleep=sleeps) as manager:
        config = og.OAuthConfig.from_dict(make_block(auth_server))
        first = manager.get_token("oauth-api", config)
        monkeypatch.setattr(time, "time", lambda: real() + jump)
        clock.advance(10.0)
        assert manager.get_token("oauth-api", config) is first  # no needless refetch
        assert auth_server.count() == 1
        clock.advance(3600.0)  # expired on the monotonic clock, whatever the wall clock says
        second = manager.get_token("oauth-api", config)
        assert second.access_token != first.access_token
        assert not second.is_expired(clock())
        assert auth_server.count() == 2


def test_a_token_is_never_expired_when_it_arrives(auth_server, make_block, clock, sleeps):
    auth_server.expires_in = 5
    auth_server.set_faults([Fault(status=503), Fault(status=503)])  # 2 s + 4 s of back-off > 5 s
    with og.TokenManager(clock=clock, sleep=sleeps) as manager:
        try:
            token = manager.get_token("oauth-api", og.OAuthConfig.from_dict(make_block(auth_server)))
        except og.OAuthGatewayError:
            return  # refusing a token that cannot be used is acceptable too
    assert sleeps.calls == [2.0, 4.0]
    assert not token.is_expired(clock()), "get_token returned a token that expired %.0f s ago" % (
        clock() - token.expires_at_monotonic
    )
