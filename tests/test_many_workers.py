"""Many real processes sharing one token through the file cache and Redis.

Every test starts real processes (tests/workers/token_worker.py, or gunicorn with
tests/workers/wsgi_app.py), each with its own TokenManager, all asking the one HTTPS
AuthServer of the test for a token, and a real redis-server started by the test. A
barrier (a "go" file) makes the processes start together. The assertions count the
token requests that reached the server and the tokens the processes got.

Real time is inherent here: token lifetimes of 4 s, a lock timeout of 1.5 s. Each
scenario is bounded (at most ~15 s) and the thresholds leave seconds of margin.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List

import pytest

from servers import Fault
from workers.redis_server import RedisServer, free_port, require_redis

# Slow integration test: scripts/test --fast (-m "not slow") leaves it out.
pytestmark = pytest.mark.slow

WORKERS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers")
TOKEN_WORKER = os.path.join(WORKERS_DIR, "token_worker.py")

#: Token lifetime and refresh buffer of the expiry scenarios: a refresh every 3 s.
LIFETIME, BUFFER = 4, 1
REFRESH_PERIOD = LIFETIME - BUFFER
#: Two token requests closer than this are two fetches of one refresh (a failure).
MIN_GAP = 2.0
#: Lock timeout of the Redis kill scenario (seconds).
LOCK_TIMEOUT = 1.5


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:8]


def _wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(0.01)


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def _gaps(times: List[float]) -> List[float]:
    return [later - earlier for earlier, later in zip(times, times[1:])]


class Workers:
    """``count`` token_worker processes started with one job; a context manager that kills leftovers."""

    def __init__(self, directory, job: Dict[str, Any], count: int):
        self.directory = str(directory)
        os.makedirs(os.path.join(self.directory, "ready"))
        self.go_file = os.path.join(self.directory, "go")
        job = dict(job, ready_dir=os.path.join(self.directory, "ready"), go_file=self.go_file)
        job_path = os.path.join(self.directory, "job.json")
        with open(os.open(job_path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as handle:  # holds the client secret
            json.dump(job, handle)
        self.processes: List[subprocess.Popen] = []
        for index in range(count):
            with open(self._path("out", index), "wb") as out, open(self._path("err", index), "wb") as err:
                self.processes.append(
                    subprocess.Popen([sys.executable, TOKEN_WORKER, job_path], stdout=out, stderr=err)
                )

    def _path(self, kind: str, index: int) -> str:
        return os.path.join(self.directory, "%s-%d.txt" % (kind, index))

    def _stderr(self, index: int) -> str:
        with open(self._path("err", index), "rb") as handle:
            return handle.read().decode("utf-8", "replace")[-3000:]

    def start(self, timeout: float = 30.0) -> float:
        """Wait until every process is ready, then say go; return the monotonic time of go."""
        ready = os.path.join(self.directory, "ready")

        def all_ready() -> bool:
            for index, process in enumerate(self.processes):
                if process.poll() is not None:
                    raise AssertionError("worker %d exited early:\n%s" % (index, self._stderr(index)))
            return len(os.listdir(ready)) == len(self.processes)

        _wait_until(all_ready, timeout, "the workers to be ready")
        with open(self.go_file, "w"):
            pass
        return time.monotonic()

    def results(self, timeout: float = 60.0) -> List[Dict[str, Any]]:
        """Wait for every process (bounded) and return their reports."""
        deadline = time.monotonic() + timeout
        reports = []
        for index, process in enumerate(self.processes):
            process.wait(max(0.1, deadline - time.monotonic()))
            assert process.returncode == 0, "worker %d failed:\n%s" % (index, self._stderr(index))
            with open(self._path("out", index), "rb") as handle:
                reports.append(json.loads(handle.read().decode("utf-8").strip().splitlines()[-1]))
        return reports

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(10)


def _check_clean(reports: List[Dict[str, Any]]) -> None:
    """No caller got an error, and no log record of any worker held a token."""
    assert [r["errors"] for r in reports if r["errors"]] == []
    assert sum(r["leaks"] for r in reports) == 0
    assert all(r["log_lines"] > 0 for r in reports)  # the leak check saw records


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def shared(request, tmp_path):
    """``shared(kind, **options)`` -> a worker cache spec on a clean file directory or Redis."""
    kind = request.node.callspec.params["kind"]
    redis_server = request.getfixturevalue("redis_server") if kind == "redis" else None
    if redis_server is not None:
        client = redis_server.client()
        client.flushall()
        client.close()

    def make(kind: str, **options: Any) -> Dict[str, Any]:
        if kind == "file":
            return dict({"kind": "file", "path": str(tmp_path / "cache")}, **options)
        assert redis_server is not None
        return dict({"kind": "redis", "url": redis_server.url}, **options)

    make.redis_server = redis_server  # type: ignore[attr-defined]
    return make


def _job(block: Dict[str, Any], cache: Dict[str, Any], **options: Any) -> Dict[str, Any]:
    return dict({"block": block, "cache": cache, "server_name": "oauth-api", "threads": 8}, **options)


# --------------------------------------------------------------------------- cold cache


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_8_processes_x_8_threads_on_a_cold_cache_make_one_request(kind, shared, tmp_path, auth_server, make_block):
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    if kind == "file":
        cache = {"kind": "settings", "value": "file:" + str(tmp_path / "cache")}
    else:  # through cache_from_settings too, encrypted at rest
        cache = {"kind": "settings", "value": shared.redis_server.url, "encryption_key": key}
    with Workers(tmp_path / "run", _job(make_block(auth_server), cache), 8) as workers:
        workers.start()
        reports = workers.results()

    _check_clean(reports)
    print("measured: %s cold 8x8: %d token request(s)" % (kind, auth_server.count()))
    assert auth_server.count() == 1
    (token,) = auth_server.issued_history
    assert {fp for r in reports for fp in r["fingerprints"]} == {_fingerprint(token)}
    assert sum(r["calls"] for r in reports) == 64
    assert sum(r["metrics"]["token_acquisitions_total"] for r in reports) == 1
    if kind == "redis":
        client = shared.redis_server.client()
        try:
            (stored_key,) = client.keys("oauth-gateway:token:*")
            assert token.encode() not in client.get(stored_key)  # a Redis dump holds no bearer token
        finally:
            client.close()


# --------------------------------------------------------------------------- expiry during the run


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_a_token_expiring_during_the_run_is_fetched_once_per_expiry(kind, shared, tmp_path, make_server, make_block):
    server = make_server(expires_in=LIFETIME)
    block = make_block(server, OAUTH_TOKEN_EXPIRY_BUFFER=BUFFER)
    job = _job(block, shared(kind), duration=2 * REFRESH_PERIOD + 0.5, interval=0.05)
    with Workers(tmp_path / "run", job, 8) as workers:
        workers.start()
        reports = workers.results()

    _check_clean(reports)
    times = [r.time for r in server.requests_to("/token")]
    print(
        "measured: %s expiry 8x8 over %.1fs: %d token requests, gaps %s"
        % (kind, job["duration"], len(times), _gaps(times))
    )
    # Fetched at 0 s, 3 s and 6 s: one request per refresh, never two close together.
    assert 2 <= len(times) <= 3, times
    assert min(_gaps(times)) >= MIN_GAP, _gaps(times)
    issued = {_fingerprint(token) for token in server.issued_history}
    assert {fp for r in reports for fp in r["fingerprints"]} == issued
    assert all(len(r["fingerprints"]) >= 2 for r in reports)  # every process saw a refresh


# --------------------------------------------------------------------------- a dead lock holder


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_killing_the_lock_holder_delays_the_others_at_most_the_lock_timeout(
    kind, shared, tmp_path, auth_server, make_block
):
    auth_server.push_fault(Fault(delay=30.0))  # the holder's fetch hangs until it is killed
    cache = shared(kind, wait_timeout=20.0)
    if kind == "redis":
        cache["lock_timeout"] = LOCK_TIMEOUT
    block = make_block(auth_server)
    with Workers(tmp_path / "holder", _job(block, cache, threads=1), 1) as holder:
        holder.start()
        _wait_until(lambda: auth_server.count() == 1, 15.0, "the holder's token request")
        with Workers(tmp_path / "others", _job(block, cache), 7) as others:
            others.start()
            # Longer than the lock timeout: a live holder keeps its lock (Redis renews it).
            time.sleep(LOCK_TIMEOUT + 0.5)
            assert auth_server.count() == 1
            killed_at = time.monotonic()
            holder.processes[0].send_signal(signal.SIGKILL)
            reports = others.results(timeout=30.0)

    _check_clean(reports)
    requests = auth_server.requests_to("/token")
    assert len(requests) == 2  # the killed fetch, then one for everybody else
    delay = requests[1].time - killed_at
    print("measured: %s kill: %d token requests, the others' came %.2fs after the kill" % (kind, len(requests), delay))
    limit = LOCK_TIMEOUT + 0.5 if kind == "redis" else 0.5  # flock is released by the kernel at once
    assert delay <= limit, "the others waited %.2fs after the kill" % delay
    assert {fp for r in reports for fp in r["fingerprints"]} == {_fingerprint(auth_server.issued_history[-1])}
    assert sum(r["calls"] for r in reports) == 56


# --------------------------------------------------------------------------- Redis down and back


def test_redis_stopped_mid_run_falls_back_then_recovers(tmp_path, make_server, make_block):
    redis_server = RedisServer(str(tmp_path / "redis"), require_redis()).start()
    server = make_server(expires_in=LIFETIME)
    block = make_block(server, OAUTH_TOKEN_EXPIRY_BUFFER=BUFFER)
    cache = {
        "kind": "redis",
        "url": redis_server.url,
        "retry_interval": 0.5,
        "socket_timeout": 1.0,
        "lock_timeout": 2.0,
        "wait_timeout": 5.0,
    }
    # Refreshes at 0, 3, 6, 9, 12 s; Redis is down from 4.5 s to 7.5 s (the refresh at 6 s).
    job = _job(block, cache, threads=2, duration=4 * REFRESH_PERIOD + 1.5, interval=0.05)
    try:
        with Workers(tmp_path / "run", job, 8) as workers:
            workers.start()
            _wait_until(lambda: server.count() >= 1, 15.0, "the first token request")
            first = server.requests_to("/token")[0].time
            _sleep_until(first + 1.5 * REFRESH_PERIOD)
            redis_server.stop()
            stopped_at = time.monotonic()
            _sleep_until(first + 2.5 * REFRESH_PERIOD)
            redis_server.start()
            restarted_at = time.monotonic()
            reports = workers.results(timeout=40.0)
        client = redis_server.client()
        try:
            assert client.keys("oauth-gateway:token:*") != []  # written again after the restart
        finally:
            client.close()
    finally:
        redis_server.stop()

    _check_clean(reports)
    times = [r.time for r in server.requests_to("/token")]
    before = [t for t in times if t < stopped_at]
    during = [t for t in times if stopped_at <= t < restarted_at]
    after = [t for t in times if t >= restarted_at]
    print(
        "measured: redis outage: %d requests before the stop, %d while down, %d after the restart (gaps %s); "
        "cache_errors %d"
        % (len(before), len(during), len(after), _gaps(after), sum(r["metrics"]["cache_errors"] for r in reports))
    )
    assert len(before) == 2 and min(_gaps(before)) >= MIN_GAP, before
    # Down: each process fetched for itself, at most one request per process.
    assert 2 <= len(during) <= 8, during
    assert sum(r["metrics"]["cache_errors"] for r in reports) >= 8
    # Back: shared again, one request per refresh.
    assert len(after) >= 1 and (len(after) == 1 or min(_gaps(after)) >= MIN_GAP), (restarted_at, after)


# --------------------------------------------------------------------------- gunicorn


def _get(port: int, path: str) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        assert response.status == 200, (response.status, body[:200])
        return body
    finally:
        connection.close()


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_gunicorn_with_4_workers_serving_200_requests_makes_one_token_request(
    kind, shared, tmp_path, auth_server, make_block
):
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        pytest.fail("gunicorn is missing: it is in the tests extra, pip install 'oauth-gateway[tests]'", pytrace=False)
    auth_server.latency = 0.5  # a slow first fetch: every worker gets requests before the token exists
    setting = "file:" + str(tmp_path / "cache") if kind == "file" else shared.redis_server.url
    block_path = str(tmp_path / "block.json")
    with open(os.open(block_path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as handle:
        json.dump(make_block(auth_server), handle)
    port = free_port()
    env = dict(os.environ, OAUTH_GATEWAY_TOKEN_CACHE=setting, OAUTH_GATEWAY_TEST_BLOCK=block_path)
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        "4",
        "--worker-class",
        "sync",
        "--bind",
        "127.0.0.1:%d" % port,
        "--chdir",
        WORKERS_DIR,
        "--log-level",
        "warning",
        "wsgi_app:application",
    ]
    log_path = str(tmp_path / "gunicorn.log")
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:

        def answers() -> bool:
            if process.poll() is not None:
                with open(log_path, "rb") as handle:
                    raise AssertionError("gunicorn exited:\n" + handle.read().decode("utf-8", "replace")[-3000:])
            try:
                return _get(port, "/ping") == b"pong"
            except OSError:
                return False

        _wait_until(answers, 30.0, "gunicorn to answer")
        answers_seen: List[Dict[str, Any]] = []
        guard = threading.Lock()

        def client() -> None:
            for _ in range(25):
                document = json.loads(_get(port, "/token"))
                with guard:
                    answers_seen.append(document)

        threads = [threading.Thread(target=client) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads), "a client thread is stuck"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    print(
        "measured: gunicorn %s: %d responses from %d workers, %d token request(s)"
        % (kind, len(answers_seen), len({a["pid"] for a in answers_seen}), auth_server.count())
    )
    assert len(answers_seen) == 200
    assert auth_server.count() == 1
    assert {a["fingerprint"] for a in answers_seen} == {_fingerprint(auth_server.issued_history[0])}
    assert len({a["pid"] for a in answers_seen}) >= 2  # the token really crossed processes
