"""The background refresher: a bounded pool, earliest deadline first, jitter, no thread per key.

The unit tests drive :class:`oauth_gateway._refresher.Refresher` with plain jobs gated by
events. The manager tests use the real loopback HTTPS ``AuthServer`` on a
:class:`~fakes.FakeClock`; :class:`GatedServer` holds every token request until the test
opens its gate and counts the requests in flight, so "at most N refreshes at once" is
observed where it matters, at the token endpoint.
"""

from __future__ import annotations

import random
import threading
from typing import Any, List

import pytest

import oauth_gateway as og
from oauth_gateway._refresher import DEFAULT_WORKERS, JITTER, Refresher
from servers import AuthServer

#: Thread names of the refresh workers (Refresher's default).
THREAD_PREFIX = "oauth-gateway-refresh"
#: Seconds a test waits for something that happens at once on a healthy machine.
PATIENCE = 20.0
#: A 3600 s token with the 300 s buffer: its window opens at 3300, its jittered start before 3329
#: (a tenth of the window, which ends 10 s before expiry).
PAST_JITTER = 3331


def _refresh_threads() -> List[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith(THREAD_PREFIX)]


class GatedServer(AuthServer):
    """AuthServer whose ``/token`` answers wait for ``gate`` and count the requests in flight. Thread-safe."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.gate.set()
        self._flight = threading.Condition()
        self.in_flight = 0
        self.most_in_flight = 0

    def _answer(self, record: Any) -> Any:
        if record.path != "/token":
            return super()._answer(record)
        with self._flight:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self._flight.notify_all()
        try:
            self.gate.wait(PATIENCE)
            return super()._answer(record)
        finally:
            with self._flight:
                self.in_flight -= 1
                self._flight.notify_all()

    def wait_in_flight(self, count: int, timeout: float) -> bool:
        """Wait until at least ``count`` token requests are held at the gate."""
        with self._flight:
            return self._flight.wait_for(lambda: self.in_flight >= count, timeout)


@pytest.fixture
def gated(make_server):
    server = make_server(GatedServer)
    try:
        yield server
    finally:
        server.gate.set()  # never leave a request hanging past the test


@pytest.fixture
def config(gated, make_block):
    return og.OAuthConfig.from_dict(make_block(gated, OAUTH_MAX_RETRIES=0))  # expires_in 3600, buffer 300


def _names(count: int) -> List[str]:
    return ["server-%04d" % index for index in range(count)]


# --------------------------------------------------------------------------- the Refresher alone


def test_jobs_waiting_for_a_worker_run_earliest_deadline_first():
    refresher = Refresher(workers=1)
    release = threading.Event()
    started = threading.Event()
    order: List[str] = []

    def blocker() -> None:
        started.set()
        release.wait(PATIENCE)

    try:
        assert refresher.submit("first", blocker, deadline=100.0)
        assert started.wait(PATIENCE)  # the only worker is busy: everything below queues
        for name, deadline in [("e", 50.0), ("a", 10.0), ("d", 40.0), ("b", 20.0), ("c", 30.0)]:
            assert refresher.submit(name, lambda name=name: order.append(name), deadline=deadline)
        assert refresher.submit("a", lambda: order.append("a again"), deadline=1.0)  # queued already: not twice
        release.set()
        assert refresher.wait(PATIENCE)
        assert order == ["a", "b", "c", "d", "e"]
    finally:
        release.set()
        refresher.close()


def test_the_refresh_start_is_inside_the_first_tenth_of_the_window_and_repeats_with_a_seed():
    one = Refresher(random=random.Random(7).random)
    two = Refresher(random=random.Random(7).random)
    starts = [one.refresh_start(1000.0, 1300.0) for _ in range(2000)]
    assert starts == [two.refresh_start(1000.0, 1300.0) for _ in range(2000)]  # deterministic with a seed
    assert JITTER == 0.1
    assert all(1000.0 <= start < 1030.0 for start in starts)  # never before the window, never past its tenth
    assert min(starts) < 1001.0 and max(starts) > 1029.0  # spread over the whole tenth
    assert len(set(starts)) == len(starts)
    assert Refresher(jitter=0.0).refresh_start(1000.0, 1300.0) == 1000.0
    assert Refresher().refresh_start(1000.0, 900.0) == 1000.0  # an empty window: no jitter


@pytest.mark.parametrize("workers", [0, -1, 2.5, True, "4"])
def test_refresh_workers_must_be_a_positive_integer(workers):
    with pytest.raises(ValueError, match="refresh_workers: must be an integer of at least 1"):
        og.TokenManager(refresh_workers=workers)


# --------------------------------------------------------------------------- the manager's pool


@pytest.mark.parametrize("workers", [1, 3])
def test_with_n_workers_at_most_n_refreshes_are_in_flight_and_callers_never_wait(workers, gated, config, clock, sleeps):
    names = _names(8)
    with og.TokenManager(clock=clock, sleep=sleeps, background_refresh=True, refresh_workers=workers) as manager:
        first = {name: manager.get_token(name, config) for name in names}
        assert gated.count() == 8
        gated.gate.clear()
        clock.advance(PAST_JITTER)
        for name in names:  # every key is stale at once, the pool is far smaller
            assert manager.get_token(name, config) is first[name]  # handed out at once, none waits
        assert gated.wait_in_flight(workers, PATIENCE)
        assert not gated.wait_in_flight(workers + 1, 0.5)  # the rest wait in the heap, not at the server
        assert len(_refresh_threads()) == workers
        for name in names:  # still valid: a busy pool never sends a caller to the endpoint
            assert manager.get_token(name, config) is first[name]
        assert gated.count() == 8 + workers
        gated.gate.set()
        assert manager.wait_for_refresh(PATIENCE)
        assert gated.most_in_flight == workers
        assert gated.count() == 16  # one request per key
        assert all(manager.get_token(name, config).access_token != first[name].access_token for name in names)
        metrics = manager.get_metrics()
        assert metrics["background_refreshes"] == 8
        assert metrics["token_cache_misses"] == 8  # the cold starts only


def test_the_pool_refreshes_the_token_closest_to_expiry_first(gated, config, clock, sleeps):
    with og.TokenManager(clock=clock, sleep=sleeps, background_refresh=True, refresh_workers=1) as manager:
        manager.get_token("blocker", config)
        late = []
        for name in ["c", "a", "b"]:
            clock.advance(10)  # fetched 10 s apart: "c" expires first, then "a", then "b"
            late.append(manager.get_token(name, config))
        clock.advance(PAST_JITTER)
        gated.gate.clear()
        manager.get_token("blocker", config)  # takes the only worker
        assert gated.wait_in_flight(1, PATIENCE)
        for name in ["b", "a", "c"]:  # submitted latest-expiry first
            manager.get_token(name, config)
        gated.gate.set()
        assert manager.wait_for_refresh(PATIENCE)
        assert gated.count() == 8
        # Tokens are issued in request order: the refresh order is the order of the new tokens.
        new = {name: manager.get_token(name, config).access_token for name in ["a", "b", "c"]}
        history = gated.issued_history
        assert sorted(new, key=lambda name: history.index(new[name])) == ["c", "a", "b"]


def test_keys_fetched_together_start_their_refreshes_spread_over_the_window(gated, config, clock, sleeps):
    names = _names(60)
    with og.TokenManager(clock=clock, sleep=sleeps, background_refresh=True) as manager:
        first = {name: manager.get_token(name, config) for name in names}  # one fake instant
        clock.advance(3300 - 0.001)  # just before the window: plain hits
        for name in names:
            assert manager.get_token(name, config) is first[name]
        assert manager.wait_for_refresh(PATIENCE) and gated.count() == 60
        clock.advance(15.001)  # half-way through the jitter
        for name in names:
            manager.get_token(name, config)
        assert manager.wait_for_refresh(PATIENCE)
        early = gated.count() - 60
        assert 0 < early < 60  # some keys started, the others are still plain hits (binomial, p = 1/2)
        clock.advance(15.1)  # past the jitter: every key starts
        for name in names:
            manager.get_token(name, config)
        assert manager.wait_for_refresh(PATIENCE)
        assert gated.count() == 120  # still one request per key


def test_a_thousand_keys_share_the_pool_no_thread_per_key(gated, config, clock, sleeps):
    names = _names(1000)
    assert DEFAULT_WORKERS == 4  # the documented default of refresh_workers, used here
    with og.TokenManager(clock=clock, sleep=sleeps, background_refresh=True) as manager:
        for name in names:
            manager.get_token(name, config)
        baseline = threading.active_count()
        gated.gate.clear()
        clock.advance(PAST_JITTER)
        for name in names:
            manager.get_token(name, config)
        assert gated.wait_in_flight(DEFAULT_WORKERS, PATIENCE)
        # Server threads serve one pooled connection per worker; the pool adds its workers.
        assert len(_refresh_threads()) == DEFAULT_WORKERS
        assert threading.active_count() <= baseline + 2 * DEFAULT_WORKERS
        gated.gate.set()
        assert manager.wait_for_refresh(60)
        assert gated.count() == 2000
        assert gated.most_in_flight == DEFAULT_WORKERS
        assert manager.get_metrics()["background_refreshes"] == 1000


def test_close_joins_every_worker_and_drops_the_queue(gated, config, clock, sleeps):
    names = _names(10)
    manager = og.TokenManager(clock=clock, sleep=sleeps, background_refresh=True, refresh_workers=3)
    for name in names:
        manager.get_token(name, config)
    gated.gate.clear()
    clock.advance(PAST_JITTER)
    for name in names:
        manager.get_token(name, config)
    assert gated.wait_in_flight(3, PATIENCE)
    workers = _refresh_threads()
    assert len(workers) == 3
    closing = threading.Thread(target=manager.close)
    closing.start()
    gated.gate.set()  # the three running refreshes finish; the seven queued ones never start
    closing.join(PATIENCE)
    assert not closing.is_alive()
    assert not any(thread.is_alive() for thread in workers)  # joined, not left running
    assert _refresh_threads() == []
    assert gated.count() == 13
    assert manager.wait_for_refresh(0)  # nothing queued any more
    with manager:  # usable after close: the pool starts again on demand
        for name in names:
            manager.get_token(name, config)
        assert manager.wait_for_refresh(PATIENCE)
        assert gated.count() == 20
    assert _refresh_threads() == []
