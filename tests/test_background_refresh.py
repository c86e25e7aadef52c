"""Background refresh: no caller waits on the token endpoint while a valid token exists.

Managers run on a :class:`~fakes.FakeClock` with ``background_refresh=True`` and step
time by hand; :meth:`TokenManager.wait_for_refresh` waits for the background thread
instead of sleeping. The token endpoint is the real loopback HTTPS ``AuthServer``, slowed
down with ``latency`` or a ``Fault(delay=...)`` so that a fetch is still running while
the test looks. Two tests use real time: the default on the real clock (a 2 s token),
and a process that exits while its background fetch hangs.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from typing import Callable, List

import pytest

import oauth_gateway as og
from fakes import FakeClock, RecordingSleep
from servers import Fault, run_threads

SERVER = "oauth-api"
#: Thread names of the refresh workers (oauth_gateway._refresher.Refresher's default).
THREAD_PREFIX = "oauth-gateway-refresh"
#: Seconds from a 3600 s token's issue to inside its refresh window (300 s buffer) and past the
#: jitter of its refresh start (at most a tenth of the window, which ends 10 s before expiry: 29 s).
INTO_WINDOW = 3331


def _refresh_threads() -> List[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith(THREAD_PREFIX)]


def _wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(0.005)


@pytest.fixture
def manager(clock, sleeps):
    with og.TokenManager(clock=clock, sleep=sleeps, background_refresh=True) as made:
        yield made


@pytest.fixture
def config(auth_server, make_block):
    return og.OAuthConfig.from_dict(make_block(auth_server, OAUTH_MAX_RETRIES=0))  # expires_in 3600, buffer 300


# --------------------------------------------------------------------------- the hand-off


def test_the_caller_that_notices_the_refresh_window_gets_the_old_token_and_a_thread_fetches(
    manager, auth_server, config, clock
):
    first = manager.get_token(SERVER, config)
    auth_server.latency = 0.5
    clock.advance(INTO_WINDOW)  # inside the 300 s window, valid for 269 s more
    assert manager.get_token(SERVER, config) is first
    assert manager.wait_for_refresh(0) is False  # the fetch is still on its way
    assert manager.wait_for_refresh(10) is True
    second = manager.get_token(SERVER, config)
    assert second.access_token != first.access_token
    assert second.issued_at == clock()  # timed from the background request
    assert auth_server.count() == 2
    metrics = manager.get_metrics()
    assert (metrics["background_refreshes"], metrics["background_refresh_failures"]) == (1, 0)
    assert metrics["token_refreshes"] == 1
    assert metrics["token_cache_misses"] == 1  # only the cold start; the window call was served from the cache
    assert metrics["max_wait_seconds"] < 0.4  # the cold start waited for no latency; nothing waited 0.5 s


def test_32_threads_in_the_refresh_window_get_the_old_token_and_make_one_request(manager, auth_server, config, clock):
    first = manager.get_token(SERVER, config)
    auth_server.latency = 1.0  # every thread is served long before the fetch can end
    clock.advance(INTO_WINDOW)
    results, errors = run_threads(32, lambda i: manager.get_token(SERVER, config))
    assert errors == [None] * 32
    assert all(token is first for token in results)  # nobody waited for the new token
    assert manager.wait_for_refresh(10)
    assert auth_server.count() == 2
    assert manager.get_token(SERVER, config).access_token == auth_server.issued_history[-1]
    assert manager.get_metrics()["background_refreshes"] == 1


def test_a_foreground_miss_during_a_background_fetch_waits_for_it_without_a_request(
    manager, auth_server, config, clock
):
    first = manager.get_token(SERVER, config)
    auth_server.latency = 0.5
    clock.advance(INTO_WINDOW)
    assert manager.get_token(SERVER, config) is first
    _wait_until(lambda: auth_server.count() == 2, 10, "the background request")
    clock.advance(300)  # now expired: no valid token, the caller must wait
    second = manager.get_token(SERVER, config)
    assert second.access_token == auth_server.issued_history[-1] != first.access_token
    assert auth_server.count() == 2  # the caller joined the background fetch
    assert manager.wait_for_refresh(10)
    assert auth_server.count() == 2


def test_a_refresh_call_during_a_background_fetch_shares_it(manager, auth_server, config, clock):
    first = manager.get_token(SERVER, config)
    auth_server.latency = 0.5
    clock.advance(INTO_WINDOW)
    manager.get_token(SERVER, config)
    _wait_until(lambda: auth_server.count() == 2, 10, "the background request")
    forced = manager.refresh(SERVER, config)
    assert forced.access_token == auth_server.issued_history[-1] != first.access_token
    assert auth_server.count() == 2


# --------------------------------------------------------------------------- failures


def test_a_failed_background_refresh_serves_the_old_token_and_backs_off(manager, auth_server, config, clock, caplog):
    first = manager.get_token(SERVER, config)
    clock.advance(INTO_WINDOW)
    auth_server.set_faults([Fault(status=500), Fault(status=503)])
    with caplog.at_level(logging.WARNING, logger="oauth_gateway"):
        assert manager.get_token(SERVER, config) is first
        assert manager.wait_for_refresh(10)
    assert "serving the cached token" in caplog.text
    assert auth_server.count() == 2
    # The next attempt waits 1 s: until then every call is a plain hit, no request.
    for _ in range(5):
        assert manager.get_token(SERVER, config) is first
    assert manager.wait_for_refresh(10) and auth_server.count() == 2
    clock.advance(1.1)
    assert manager.get_token(SERVER, config) is first  # second attempt, fails again: wait 2 s
    assert manager.wait_for_refresh(10) and auth_server.count() == 3
    clock.advance(1.5)
    assert manager.get_token(SERVER, config) is first
    assert manager.wait_for_refresh(10) and auth_server.count() == 3
    clock.advance(1.0)
    assert manager.get_token(SERVER, config) is first  # third attempt succeeds, in the background
    assert manager.wait_for_refresh(10) and auth_server.count() == 4
    assert manager.get_token(SERVER, config).access_token == auth_server.issued_history[-1]
    metrics = manager.get_metrics()
    assert metrics["background_refresh_failures"] == 2
    assert metrics["token_refresh_failures_served_from_cache"] == 2
    assert metrics["background_refreshes"] == 1


def test_a_caller_waits_on_the_endpoint_only_once_no_valid_token_is_left(manager, auth_server, config, clock):
    first = manager.get_token(SERVER, config)
    clock.advance(INTO_WINDOW)
    auth_server.set_faults([Fault(status=503, json={"error": "temporarily_unavailable"})] * 50)
    assert manager.get_token(SERVER, config) is first  # fails in the background
    assert manager.wait_for_refresh(10)
    clock.advance(269)  # expired now, the server still failing
    with pytest.raises(og.TokenRequestError):
        manager.get_token(SERVER, config)  # a foreground fetch, as without background refresh
    assert manager.wait_for_refresh(10)
    requests_before = auth_server.count()
    with pytest.raises(og.TokenRequestError):
        manager.get_token(SERVER, config)  # the failure cool-down: no request
    assert auth_server.count() == requests_before
    assert manager.get_metrics()["token_fail_fast"] == 1


# --------------------------------------------------------------------------- shared caches


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_two_processes_sharing_a_cache_make_one_background_request(kind, request, tmp_path, auth_server, config):
    clock = FakeClock()
    wall = lambda: 1700000000.0 + clock()  # noqa: E731 - the store's epoch seconds, moved with the clock

    def make_cache():
        if kind == "file":
            from oauth_gateway.contrib.file_cache import FileTokenCache

            return FileTokenCache(str(tmp_path / "tokens"), clock=clock, wall_clock=wall)
        from oauth_gateway.contrib.redis_cache import RedisTokenCache

        return RedisTokenCache(request.getfixturevalue("redis_server").url, clock=clock, wall_clock=wall)

    if kind == "redis":
        client = request.getfixturevalue("redis_server").client()
        client.flushall()
        client.close()
    sleep = RecordingSleep()
    one = og.TokenManager(cache=make_cache(), clock=clock, sleep=sleep, background_refresh=True)
    two = og.TokenManager(cache=make_cache(), clock=clock, sleep=sleep, background_refresh=True)
    try:
        first = one.get_token(SERVER, config)
        assert two.get_token(SERVER, config).access_token == first.access_token  # read from the store
        assert auth_server.count() == 1
        auth_server.latency = 0.5  # both background fetches want the lock while the first one is running
        clock.advance(INTO_WINDOW)
        assert one.get_token(SERVER, config) is first
        assert two.get_token(SERVER, config).access_token == first.access_token
        assert one.wait_for_refresh(15) and two.wait_for_refresh(15)
        assert auth_server.count() == 2
        new = auth_server.issued_history[-1]
        assert one.get_token(SERVER, config).access_token == new
        assert two.get_token(SERVER, config).access_token == new
        metrics = [one.get_metrics(), two.get_metrics()]
        assert sum(m["token_acquisitions_total"] for m in metrics) == 2
        assert [m["background_refreshes"] for m in metrics] == [1, 1]  # one fetched, the other read it
    finally:
        one.close()
        two.close()


# --------------------------------------------------------------------------- threads: fork, close, exit


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_starts_its_own_refresh_thread_even_if_the_parent_was_fetching(
    manager, auth_server, config, clock
):
    first = manager.get_token(SERVER, config)
    auth_server.latency = 1.0
    clock.advance(INTO_WINDOW)
    assert manager.get_token(SERVER, config) is first
    _wait_until(lambda: auth_server.count() == 2, 10, "the parent's background request")
    pid = os.fork()  # the parent's refresh thread is in the middle of its fetch, holding the key's flight
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            assert _refresh_threads() == []  # threads do not survive fork
            assert manager.get_token(SERVER, config) is first  # still valid: handed out, refreshed by a new thread
            assert len(_refresh_threads()) == 1
            assert manager.wait_for_refresh(10)
            child_token = manager.get_token(SERVER, config)
            assert child_token.access_token != first.access_token
            assert manager.get_metrics()["background_refreshes"] == 1
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert manager.wait_for_refresh(10)
    assert auth_server.count() == 3  # the parent's refresh and the child's own
    assert manager.get_token(SERVER, config).access_token in auth_server.issued_history[1:]


def test_close_stops_the_refresh_thread_and_the_manager_stays_usable(auth_server, config, clock, sleeps):
    manager = og.TokenManager(clock=clock, sleep=sleeps, background_refresh=True)
    first = manager.get_token(SERVER, config)
    assert _refresh_threads() == []  # started lazily: no refresh yet, no thread
    auth_server.latency = 0.3
    clock.advance(INTO_WINDOW)
    assert manager.get_token(SERVER, config) is first
    assert len(_refresh_threads()) == 1
    _wait_until(lambda: auth_server.count() == 2, 10, "the background request")
    manager.close()  # lets the running fetch finish, then the thread ends
    assert _refresh_threads() == []
    assert manager.get_token(SERVER, config).access_token == auth_server.issued_history[-1]
    assert auth_server.count() == 2
    clock.advance(INTO_WINDOW)  # usable after close: a new thread on demand, ended by the context manager
    with manager:
        manager.get_token(SERVER, config)
        assert len(_refresh_threads()) == 1
        _wait_until(lambda: auth_server.count() == 3, 10, "the background request")
    assert _refresh_threads() == []  # the context manager waited for the running fetch
    assert manager.get_token(SERVER, config).access_token == auth_server.issued_history[-1]


def test_close_does_not_hang_on_a_fetch_that_hangs(auth_server, config, clock, sleeps):
    manager = og.TokenManager(clock=clock, sleep=sleeps, background_refresh=True)
    first = manager.get_token(SERVER, config)
    release = threading.Event()
    auth_server.push_fault(Fault(hold=release))  # the fetch hangs until the test lets it answer
    clock.advance(INTO_WINDOW)
    assert manager.get_token(SERVER, config) is first
    assert auth_server.wait_until(lambda: auth_server.held == 1), "the background request"
    manager.close()  # bounded by the close timeout (2 s), not by the fetch
    assert auth_server.held == 1  # close returned while the request was still held
    assert manager.get_token(SERVER, config) is first  # still valid, and the hung fetch still holds the key
    release.set()  # the hung request is answered now; its thread ends after it
    _wait_until(lambda: _refresh_threads() == [], 10, "the refresh thread to end")


def test_the_interpreter_exits_at_once_while_a_background_fetch_hangs(tmp_path, make_server, make_block):
    server = make_server(expires_in=2)  # buffer capped at 1 s: the window opens after 1 s
    block_path = str(tmp_path / "block.json")
    with open(os.open(block_path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as handle:  # holds the client secret
        json.dump(make_block(server), handle)
    release = threading.Event()  # never set: the refresh hangs until the client hangs up
    server.set_faults([Fault(), Fault(hold=release)])  # the first answer at once, the refresh hangs
    script = textwrap.dedent(
        """
        import json, sys, time
        import oauth_gateway as og
        with open(sys.argv[1]) as handle:
            config = og.OAuthConfig.from_dict(json.load(handle))
        manager = og.TokenManager()  # the default: background refresh on the real clock
        first = manager.get_token("oauth-api", config)
        time.sleep(1.2)
        started = time.monotonic()
        assert manager.get_token("oauth-api", config) is first
        print("handed out in %.3fs" % (time.monotonic() - started), flush=True)
        sys.stdin.readline()  # the test says when the refresh request is at the server; exit without close()
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, block_path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=str(tmp_path),
    )
    try:
        reached = server.wait_until(lambda: server.held == 1, timeout=20)
        # A process that waited for the hung fetch would outlive the timeout (the hold lasts 60 s).
        out, err = process.communicate(b"\n", timeout=25)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err.decode("utf-8", "replace")[-2000:]
    assert reached, "the background request never reached the server"
    assert out.startswith(b"handed out in")
    assert server.count() == 2  # the background request was made, and hung
    assert server.wait_until(lambda: server.hangups == 1)  # the exit dropped it unanswered


# --------------------------------------------------------------------------- the default


def test_background_refresh_is_on_by_default_and_off_on_an_injected_clock(auth_server, make_block, clock, sleeps):
    auth_server.expires_in = 2  # buffer capped at 1 s
    config = og.OAuthConfig.from_dict(make_block(auth_server))
    with og.TokenManager() as default:
        first = default.get_token(SERVER, config)
        auth_server.latency = 0.5
        time.sleep(1.1)
        assert default.get_token(SERVER, config) is first  # handed out; fetched behind the caller
        assert default.wait_for_refresh(10)
        assert default.get_token(SERVER, config).access_token != first.access_token
        assert default.get_metrics()["background_refreshes"] == 1
    auth_server.latency = 0.0
    with og.TokenManager(clock=clock, sleep=sleeps) as stepped:
        first = stepped.get_token(SERVER, config)
        clock.advance(1.1)
        assert stepped.get_token(SERVER, config) is not first  # refreshed in the call, as the tests expect
        assert stepped.wait_for_refresh(0) is True
        assert stepped.get_metrics()["background_refreshes"] == 0
    assert _refresh_threads() == []
