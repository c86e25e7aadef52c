"""The single-flight helper: one leader per key, waiters with a deadline and a copy of the error."""

from __future__ import annotations

import threading

import pytest

from oauth_gateway._singleflight import SingleFlight, fresh_copy

WAIT = 10.0  # generous deadline for waiters that must not time out


def _timed_out(timeout):
    return TimeoutError("waited %.1f s" % timeout)


def _gather(flights, key, count, work):
    """``count`` threads join ``key`` (all before the leader's work may end), then lead or wait.

    Returns ``(results, errors, leaders)``, one slot per thread.
    """
    results = [None] * count
    errors = [None] * count
    leaders = [False] * count
    joined = [0]
    all_joined = threading.Event()

    def held_work():
        assert all_joined.wait(WAIT), "not every thread joined"
        return work()

    def run(i):
        with flights.lock:
            flight, leader = flights.join(key)
            joined[0] += 1
            if joined[0] == count:
                all_joined.set()
        leaders[i] = leader
        try:
            if leader:
                results[i] = flights.lead(key, flight, held_work)
            else:
                results[i] = flight.wait(WAIT, _timed_out)
        except BaseException as exc:
            errors[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck"
    return results, errors, leaders


def test_one_leader_works_and_every_waiter_gets_its_result():
    flights = SingleFlight()
    calls = []
    result = object()

    def work():
        calls.append(1)
        return result

    results, errors, leaders = _gather(flights, "k", 16, work)
    assert calls == [1]
    assert leaders.count(True) == 1
    assert errors == [None] * 16
    assert all(value is result for value in results)
    with flights.lock:
        assert not flights.busy("k")


def test_waiters_get_fresh_copies_of_the_leaders_error():
    flights = SingleFlight()
    raised = []

    def work():
        error = ValueError("the token endpoint said no")
        raised.append(error)
        raise error

    results, errors, leaders = _gather(flights, "k", 8, work)
    assert all(isinstance(error, ValueError) for error in errors)
    assert all(error.args == ("the token endpoint said no",) for error in errors)
    leader_error = errors[leaders.index(True)]
    assert leader_error is raised[0]  # the leader's own call raises the original
    waiter_errors = [error for error, leader in zip(errors, leaders) if not leader]
    assert len({id(error) for error in waiter_errors}) == 7
    assert all(error is not raised[0] for error in waiter_errors)
    # Each copy carries only its own thread's frames.
    tracebacks = {id(error.__traceback__) for error in waiter_errors}
    assert len(tracebacks) == 7


def test_a_waiter_gives_up_at_its_deadline_while_the_leader_works():
    flights = SingleFlight()
    release = threading.Event()
    started = threading.Event()
    outcome = []

    def work():
        started.set()
        assert release.wait(WAIT)
        return "late"

    leader = threading.Thread(target=lambda: outcome.append(flights.run("k", work, WAIT, _timed_out)))
    leader.start()
    try:
        assert started.wait(WAIT)
        with pytest.raises(TimeoutError, match="waited 0.1 s"):
            flights.run("k", lambda: "second", 0.1, _timed_out)
    finally:
        release.set()
        leader.join(WAIT)
    assert outcome == ["late"]


def test_different_keys_run_at_the_same_time_and_no_lock_is_held_while_working():
    flights = SingleFlight()
    release_a = threading.Event()
    a_started = threading.Event()
    lock_free = []

    def work_a():
        a_started.set()
        assert release_a.wait(WAIT)
        return "a"

    def work_b():
        got = flights.lock.acquire(blocking=False)
        lock_free.append(got)
        if got:
            flights.lock.release()
        return "b"

    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(flights.run("a", work_a, WAIT, _timed_out)))
    thread.start()
    try:
        assert a_started.wait(WAIT)
        assert flights.run("b", work_b, WAIT, _timed_out) == "b"  # while "a" is still in flight
        with flights.lock:
            assert flights.busy("a")
    finally:
        release_a.set()
        thread.join(WAIT)
    assert outcome == ["a"]
    assert lock_free == [True]


def test_a_finished_flight_is_not_reused_and_supersede_marks_the_running_one():
    flights = SingleFlight()
    calls = []
    assert flights.run("k", lambda: calls.append(1) or len(calls), WAIT, _timed_out) == 1
    assert flights.run("k", lambda: calls.append(1) or len(calls), WAIT, _timed_out) == 2
    with flights.lock:
        flight, leader = flights.join("k")
        flights.supersede("k")
        flights.supersede("other")  # no flight: nothing to mark
    assert leader and flight.is_superseded()
    assert flights.lead("k", flight, lambda: 3) == 3
    with flights.lock:
        again, leader = flights.join("k")
    assert leader and not again.is_superseded()


def test_fresh_copy_keeps_the_cause_and_drops_the_context():
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError as exc:
        original = exc
    clone = fresh_copy(original)
    assert clone is not original and isinstance(clone, RuntimeError)
    assert clone.__cause__ is original.__cause__
    assert clone.__suppress_context__
    assert clone.__traceback__ is None
