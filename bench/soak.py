"""Soak: 64 threads, 8 servers, 3-second tokens, an IdP that fails 20 % of requests and stalls.

Run it for as long as you like and read the figures::

    python bench/soak.py --duration 600

``tests/test_soak.py`` imports this module, runs :func:`run_soak` for about 25 seconds and
asserts on the :class:`SoakReport`; there is one copy of the driver.

What runs:

* ``keys`` loopback HTTPS authorization servers (:class:`FlakyAuthServer`, one per server
  name), each issuing tokens that live ``expires_in`` seconds. Each token request is, by a
  seeded random draw, a failure (500, 502, 503, 504 or a connection reset) with
  probability ``failure_rate``, else a 2-second stall followed by a token with probability
  ``stall_rate``, else a token at once. From the middle of the run, the first server
  (``api-0``) fails every request for ``outage_seconds`` (6 s, longer than a token lives),
  so its callers meet an expired token and a failing IdP. Every request and its outcome is
  recorded with its ``X-Correlation-ID``.
* One :class:`oauth_gateway.TokenManager` on the real monotonic clock (tokens really
  expire), whose ``sleep`` waits a tenth of the delay asked for; ``OAUTH_RETRY_BACKOFF`` 1
  and ``OAUTH_MAX_RETRIES`` 2, so an acquisition is up to 3 attempts, 0.1 s and 0.2 s apart.
* ``threads`` callers, each calling ``get_token`` for a random server name in a loop with
  pauses of 0 to 20 ms, recording every exception (with its time, server name and
  correlation id) and every token received after its ``expires_at``.

What the report checks (:meth:`SoakReport.violations`):

* No caller receives an expired token: ``token.expires_at_monotonic > time.monotonic()`` right after
  ``get_token`` returns, give or take :data:`LATE_TOLERANCE` (0.1 s). The manager serves a
  token until the last microsecond of its life (during a slow or failing refresh), and a
  caller thread may be descheduled between the manager's look at the clock and ours; such
  "edge receipts" are counted and printed, not failed. A token that expired before the
  call began is always a violation.
* Every exception a caller gets is explained by the servers' records: all attempts of its
  correlation id (``OAUTH_MAX_RETRIES + 1`` of them) were failed by the server; and no
  token received before the call was still valid after it.
* Metrics add up exactly: ``success + failure == total``; per server name, the server's
  request count equals ``token_acquisitions_total + token_retries``, and the server's
  failures equal ``token_retries + token_acquisitions_failure``.
* Token requests stay within the bound below.
* Library memory (tracemalloc, allocations made in oauth_gateway, requests, urllib3 and
  cachetools, after a garbage collection) and the thread count do not grow between the end
  of the first third and the end of the run. A handler keeps the latest 1000 WARNING and
  ERROR records of ``oauth_gateway``, arguments included, as error reporters and test
  runners do, so that what a log record holds on to is counted too.

The bound on token requests (see :func:`request_bound`): the manager refreshes a token at
``expires_at - min(buffer, lifetime / 2)``, so a 3-second token is refreshed 1.5 s after it
was requested. Two successful acquisitions of one key therefore start at least
``lifetime / 2`` apart (a failed refresh only delays the next one), so in a run of ``D``
seconds a key has at most ``floor(D / (lifetime / 2)) + 1`` successful acquisitions: the
ideal, plus one. Every other request the server sees is one it failed (a retry, or the
last attempt of an acquisition that failed), so::

    requests(key) <= floor(D / (lifetime / 2)) + 1 + failed_requests(key)

where ``failed_requests`` is the server's own count (about a quarter of the ideal at a
20 % failure rate, more for the key with the outage).

The slowest acquisition that still succeeds (two failures, the 0.1 s and 0.2 s between
them, then a stalled answer: about 2.3 s) stays below the 3-second lifetime on purpose: an
acquisition slower than the lifetime returns a token that is already expired
(``tests/test_time.py::test_a_token_is_never_expired_when_it_arrives``, a known bug).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import gc
import logging
import math
import os
import random
import sys
import tempfile
import threading
import time
import tracemalloc
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

try:  # under pytest, tests/ is already on sys.path and `servers` imported by conftest
    import servers
except ImportError:  # run as a script: use the test suite's loopback server
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    import servers

try:
    import oauth_gateway as og
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import oauth_gateway as og

#: The kinds of failure the server draws from, with equal weight.
FAILURE_KINDS = ("500", "502", "503", "504", "reset")
#: Where library allocations are made (the innermost frame), for the memory figure.
_LIBRARY_FILES = ("*/oauth_gateway/*", "*/requests/*", "*/urllib3/*", "*/cachetools/*")
#: A token received this long after its ``expires_at`` is a violation. Less is counted as an
#: "edge" receipt: the manager hands out a token until the last microsecond of its life, and
#: the caller thread may be descheduled between the manager's look at the clock and ours.
LATE_TOLERANCE = 0.1
#: How many WARNING and ERROR records of ``oauth_gateway`` the run keeps, as error reporters do.
KEPT_RECORDS = 1000


class _KeptRecords(logging.Handler):
    """Keeps the latest WARNING+ records, arguments and all, like an error reporter's breadcrumbs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: Deque[logging.LogRecord] = collections.deque(maxlen=KEPT_RECORDS)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class FlakyAuthServer(servers.AuthServer):
    """An AuthServer whose token endpoint fails and stalls at random, and records how it answered.

    Thread-safe. The draw for each request is made when the request is recorded, on the
    connection's own thread, from one seeded ``random.Random`` under a lock.

    Args:
        ca: the trustme CA (see :class:`servers.AuthServer`).
        seed: seeds the draws.
        failure_rate: probability that a token request fails.
        stall_rate: probability that a token request waits ``stall_seconds`` first.
        stall_seconds: how long a stall lasts (real seconds).
        **kwargs: passed to :class:`servers.AuthServer` (``expires_in`` ...).

    Attributes:
        outcomes: ``(monotonic time, correlation id, kind)`` per token request, kind being
            ``"ok"``, ``"stall"`` or one of :data:`FAILURE_KINDS`.
    """

    def __init__(
        self,
        ca: Any,
        *,
        seed: int = 0,
        failure_rate: float = 0.2,
        stall_rate: float = 0.05,
        stall_seconds: float = 2.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(ca, **kwargs)
        #: ``(start, end)`` on ``time.monotonic``: every token request in it fails.
        self.outage: Optional[Tuple[float, float]] = None
        self.failure_rate = failure_rate
        self.stall_rate = stall_rate
        self.stall_seconds = stall_seconds
        self.outcomes: List[Tuple[float, Optional[str], str]] = []
        self._random = random.Random(seed)
        self._draw_lock = threading.Lock()
        self._planned = threading.local()

    def _draw(self) -> Tuple[Optional[servers.Fault], str]:
        with self._draw_lock:
            roll = self._random.random()
            kind = self._random.choice(FAILURE_KINDS)
        outage = self.outage
        if outage is not None and outage[0] <= time.monotonic() < outage[1]:
            roll = 0.0
        if roll < self.failure_rate:
            if kind == "reset":
                return servers.Fault(reset=True), kind
            return servers.Fault(status=int(kind), json={"error": "temporarily_unavailable"}), kind
        if roll < self.failure_rate + self.stall_rate:
            return servers.Fault(delay=self.stall_seconds), "stall"
        return None, "ok"

    def _record(self, handler: Any, body: bytes) -> servers.RecordedRequest:
        record = super()._record(handler, body)
        if record.path == "/token":
            fault, kind = self._draw()
            self._planned.fault = fault
            with self._draw_lock:
                self.outcomes.append((record.time, record.correlation_id, kind))
        return record

    def _next_fault(self, path: str) -> Optional[servers.Fault]:
        if path == "/token":
            fault, self._planned.fault = getattr(self._planned, "fault", None), None
            return fault
        return super()._next_fault(path)

    def failed_requests(self) -> int:
        """Token requests answered with a failure (a stall is a slow success)."""
        with self._draw_lock:
            return sum(1 for _, _, kind in self.outcomes if kind in FAILURE_KINDS)


@dataclasses.dataclass
class CallerError:
    """One exception a caller received."""

    started: float
    ended: float
    key: str
    kind: str
    correlation_id: Optional[str]
    message: str


@dataclasses.dataclass
class LateToken:
    """A token a caller received after its ``expires_at`` (monotonic seconds)."""

    key: str
    started: float
    received: float
    expires_at: float


@dataclasses.dataclass
class KeyFigures:
    """What happened for one server name."""

    key: str
    requests: int
    failed_requests: int
    stalls: int
    acquisitions: int
    successes: int
    failures: int
    retries: int
    served_stale: int
    fail_fast: int
    ideal: float
    bound: int
    caller_errors: int


@dataclasses.dataclass
class SoakReport:
    """Everything a soak run measured; :meth:`violations` lists what broke a promise."""

    duration: float
    wall_time: float
    threads: int
    keys: int
    expires_in: float
    max_retries: int
    outage_seconds: float
    calls: int
    per_key: List[KeyFigures]
    metrics: Dict[str, Any]
    errors: List[CallerError]
    late_tokens: List[LateToken]
    edge_receipts: int
    unexplained_errors: List[str]
    errors_while_valid: List[str]
    slowest_call: float
    library_bytes: Tuple[int, int]
    threads_alive: Tuple[int, int]
    other_threads_alive: Tuple[int, int]

    @property
    def requests(self) -> int:
        return sum(k.requests for k in self.per_key)

    @property
    def served_stale(self) -> int:
        return int(self.metrics["token_refresh_failures_served_from_cache"])

    def violations(self, memory_slack: int = 256 * 1024) -> List[str]:
        """Return one line per broken promise (empty when the run was clean)."""
        found: List[str] = []
        for late in self.late_tokens:
            found.append(
                "%s: a caller received a token %.3f s after it expired" % (late.key, late.received - late.expires_at)
            )
        found.extend(self.unexplained_errors)
        found.extend(self.errors_while_valid)
        m = self.metrics
        if m["token_acquisitions_success"] + m["token_acquisitions_failure"] != m["token_acquisitions_total"]:
            found.append("metrics: success + failure != total: %r" % (m,))
        for k in self.per_key:
            if k.requests != k.acquisitions + k.retries:
                found.append(
                    "%s: server saw %d token requests, metrics say %d acquisitions + %d retries"
                    % (k.key, k.requests, k.acquisitions, k.retries)
                )
            if k.failed_requests != k.retries + k.failures:
                found.append(
                    "%s: server failed %d requests, metrics say %d retries + %d failed acquisitions"
                    % (k.key, k.failed_requests, k.retries, k.failures)
                )
            if k.requests > k.bound:
                found.append("%s: %d token requests, above the bound %d" % (k.key, k.requests, k.bound))
        first, last = self.library_bytes
        if last > first + memory_slack:
            found.append("memory: library allocations grew from %d to %d bytes" % (first, last))
        if self.other_threads_alive[1] > self.other_threads_alive[0]:
            found.append("threads: %d -> %d threads besides the servers'" % self.other_threads_alive)
        if self.threads_alive[1] > self.threads_alive[0] + self.keys:
            found.append("threads: active_count grew from %d to %d" % self.threads_alive)
        return found

    def summary(self) -> str:
        """The figures, one per line, for people."""
        lines = [
            "soak: %d threads, %d server names, %g s tokens, OAUTH_MAX_RETRIES %d, %g s outage of api-0, "
            "%g s run (wall time %.1f s)"
            % (
                self.threads,
                self.keys,
                self.expires_in,
                self.max_retries,
                self.outage_seconds,
                self.duration,
                self.wall_time,
            ),
            "calls: %d get_token calls, slowest %.3f s" % (self.calls, self.slowest_call),
            "token requests: %d in all; per key (requests / ideal / bound, failed by the server, retries, "
            "failed acquisitions, served stale, fail-fast, caller errors):" % self.requests,
        ]
        for k in self.per_key:
            lines.append(
                "  %-8s %4d / %6.1f / %4d   failed %3d  retries %3d  acq-failed %2d  stale %2d  fail-fast %4d  errors %4d"
                % (
                    k.key,
                    k.requests,
                    k.ideal,
                    k.bound,
                    k.failed_requests,
                    k.retries,
                    k.failures,
                    k.served_stale,
                    k.fail_fast,
                    k.caller_errors,
                )
            )
        lines.append(
            "errors: %d received by callers (%d unexplained, %d while a valid token was cached)"
            % (len(self.errors), len(self.unexplained_errors), len(self.errors_while_valid))
        )
        lines.append("served stale: %d failed refreshes answered with the cached token" % self.served_stale)
        lines.append(
            "expired tokens received: %d more than %g s after expiry; %d within it (edge receipts)"
            % (len(self.late_tokens), LATE_TOLERANCE, self.edge_receipts)
        )
        lines.append(
            "library memory: %d -> %d bytes (end of first third -> end); threads: %d -> %d (%d -> %d besides servers)"
            % (self.library_bytes + self.threads_alive + self.other_threads_alive)
        )
        return "\n".join(lines)


def request_bound(duration: float, lifetime: float, failed_requests: int) -> int:
    """The most token requests one key may cause in ``duration`` seconds (see the module doc)."""
    return int(math.floor(duration / (lifetime / 2.0))) + 1 + failed_requests


class _Caller(threading.Thread):
    """Calls get_token in a loop until told to stop; keeps what it saw."""

    def __init__(self, index: int, manager: og.TokenManager, configs: Dict[str, og.OAuthConfig], seed: int, stop):
        super().__init__(name="soak-caller-%d" % index, daemon=True)
        self.manager = manager
        self.configs = configs
        self.names = sorted(configs)
        self.random = random.Random(seed)
        self.stop = stop
        self.calls = 0
        self.slowest = 0.0
        self.errors: List[CallerError] = []
        self.late: List[LateToken] = []
        self.edge = 0
        # The first time this thread saw each token: (key, expires_at) -> received.
        self.tokens: Dict[Tuple[str, float], float] = {}

    def run(self) -> None:
        clock = time.monotonic
        while not self.stop.is_set():
            key = self.random.choice(self.names)
            started = clock()
            try:
                token = self.manager.get_token(key, self.configs[key])
            except og.OAuthGatewayError as exc:
                ended = clock()
                self.errors.append(
                    CallerError(
                        started,
                        ended,
                        key,
                        type(exc).__name__,
                        getattr(exc, "correlation_id", None),
                        # A copy made here: the soak keeps every message, and memory held by
                        # the soak must not count as the library's.
                        str(exc)[:200].encode("utf-8").decode("utf-8"),
                    )
                )
            else:
                ended = clock()
                if token.expires_at_monotonic <= ended - LATE_TOLERANCE or token.expires_at_monotonic <= started:
                    self.late.append(LateToken(key, started, ended, token.expires_at_monotonic))
                elif token.expires_at_monotonic <= ended:
                    self.edge += 1
                # One fetch, one expiry; no allocation in the library. Kept with the end of the token's
                # usable life: in its last min(10 s, 10 %) it is never handed out again.
                seen = (key, token.usable_until)
                if seen not in self.tokens:
                    self.tokens[seen] = ended
            self.calls += 1
            self.slowest = max(self.slowest, ended - started)
            self.stop.wait(self.random.uniform(0.0, 0.02))


def _library_bytes() -> int:
    gc.collect()  # count what is kept, not garbage that a collection would free
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, p) for p in _LIBRARY_FILES])
    return sum(stat.size for stat in snapshot.statistics("filename"))


def _thread_counts() -> Tuple[int, int]:
    """All threads, and those that are neither the servers' nor the refresh pool's.

    The pool starts its workers on demand, up to ``refresh_workers``, so one more may have
    started since the first count; it never grows past that bound (tests/test_refresher.py).
    """
    names = [t.name for t in threading.enumerate()]
    return len(names), sum(1 for n in names if not n.startswith(("auth-server", "oauth-gateway-refresh")))


def _explain_errors(
    errors: Sequence[CallerError],
    outcomes: Dict[str, Dict[str, List[str]]],
    tokens: Dict[str, List[Tuple[float, float]]],
    attempts: int,
) -> Tuple[List[str], List[str]]:
    """Check each caller error against the servers' records and the tokens callers held.

    Returns:
        ``(unexplained, while_valid)``: errors whose token requests the server did not
        fail, every attempt, and errors raised while a token received before the call
        was still valid after it.
    """
    unexplained: List[str] = []
    while_valid: List[str] = []
    seen = set()
    for error in errors:
        if error.kind not in ("TokenRequestError", "TransportError"):
            unexplained.append("%s: unexpected %s: %s" % (error.key, error.kind, error.message))
            continue
        kinds = outcomes.get(error.key, {}).get(error.correlation_id or "", [])
        if (error.key, error.correlation_id) not in seen:
            seen.add((error.key, error.correlation_id))
            if len(kinds) != attempts or any(kind not in FAILURE_KINDS for kind in kinds):
                unexplained.append(
                    "%s: %s correlation_id=%s, but the server answered %r"
                    % (error.key, error.kind, error.correlation_id, kinds)
                )
        for received, usable_until in tokens.get(error.key, ()):
            if received < error.started and usable_until > error.ended:
                while_valid.append(
                    "%s: %s at %.3f while a token usable until %.3f was cached"
                    % (error.key, error.kind, error.ended, usable_until)
                )
                break
    return unexplained, while_valid


def run_soak(
    duration: float = 30.0,
    threads: int = 64,
    keys: int = 8,
    expires_in: float = 3.0,
    failure_rate: float = 0.2,
    stall_rate: float = 0.05,
    stall_seconds: float = 2.0,
    sleep_scale: float = 0.1,
    retry_backoff: float = 1.0,
    max_retries: int = 2,
    outage_seconds: float = 6.0,
    seed: int = 20240601,
    ca: Any = None,
) -> SoakReport:
    """Run the soak and return what it measured.

    Args:
        duration: seconds the callers run.
        threads: caller threads.
        keys: server names, each with its own :class:`FlakyAuthServer`.
        expires_in: lifetime of issued tokens (seconds).
        failure_rate: probability that a token request fails.
        stall_rate: probability that a token request stalls ``stall_seconds`` first.
        stall_seconds: length of a stall.
        sleep_scale: the manager's ``sleep`` waits this fraction of the asked delay.
        retry_backoff: ``OAUTH_RETRY_BACKOFF`` (the first retry delay asked for).
        max_retries: ``OAUTH_MAX_RETRIES``.
        outage_seconds: the first server fails every request for this long from the middle
            of the run (0 for none), so that tokens expire while their IdP fails.
        seed: seeds the servers' draws and the callers' choices.
        ca: a trustme CA; a new one by default.

    Returns:
        The report; :meth:`SoakReport.violations` is empty when every promise held.
    """
    ca = ca or servers.trustme.CA()
    workdir = tempfile.mkdtemp(prefix="oauth-soak-")
    bundle = os.path.join(workdir, "ca.pem")
    ca.cert_pem.write_to_path(bundle)
    flaky: Dict[str, FlakyAuthServer] = {}
    stop = threading.Event()
    callers: List[_Caller] = []
    started_tracing = not tracemalloc.is_tracing()
    if started_tracing:
        tracemalloc.start(1)
    manager = og.TokenManager(sleep=lambda seconds: time.sleep(seconds * sleep_scale))
    kept = _KeptRecords()
    library_log = logging.getLogger("oauth_gateway")
    library_log.addHandler(kept)
    try:
        configs = {}
        for i in range(keys):
            name = "api-%d" % i
            server = FlakyAuthServer(
                ca,
                seed=seed + i,
                failure_rate=failure_rate,
                stall_rate=stall_rate,
                stall_seconds=stall_seconds,
                expires_in=expires_in,
            )
            server.register_client(servers.TEST_CLIENT_ID, servers.TEST_CLIENT_SECRET)
            flaky[name] = server.start()
            configs[name] = og.OAuthConfig.from_dict(
                servers.oauth_block(
                    server,
                    ca_bundle=bundle,
                    OAUTH_RETRY_BACKOFF=retry_backoff,
                    OAUTH_MAX_RETRIES=max_retries,
                )
            )
        callers = [_Caller(i, manager, configs, seed * 1000 + i, stop) for i in range(threads)]
        began = time.monotonic()
        if outage_seconds > 0:
            flaky["api-0"].outage = (began + duration / 2.0, began + duration / 2.0 + outage_seconds)
        for caller in callers:
            caller.start()
        stop.wait(duration / 3.0)
        first_bytes, first_threads = _library_bytes(), _thread_counts()
        stop.wait(max(0.0, began + duration - time.monotonic()))
        last_bytes, last_threads = _library_bytes(), _thread_counts()
        stop.set()
        for caller in callers:
            caller.join(30)
        stuck = [c.name for c in callers if c.is_alive()]
        if stuck:
            raise RuntimeError("soak: callers still running after 30 s: %s" % ", ".join(stuck))
        # A background refresh started just before the end may still be at the server:
        # let it finish, so the metrics count every request the servers saw.
        manager.wait_for_refresh(timeout=30)
        ended = time.monotonic()
        metrics = manager.get_metrics()
    finally:
        stop.set()
        library_log.removeHandler(kept)
        kept.records.clear()
        manager.close()
        for server in flaky.values():
            server.stop()
        if started_tracing:
            tracemalloc.stop()

    errors = [e for c in callers for e in c.errors]
    tokens: Dict[str, List[Tuple[float, float]]] = collections.defaultdict(list)
    for caller in callers:
        for (key, usable_until), received in caller.tokens.items():
            tokens[key].append((received, usable_until))
    outcomes: Dict[str, Dict[str, List[str]]] = {}
    for name, server in flaky.items():
        by_id: Dict[str, List[str]] = collections.defaultdict(list)
        for _, correlation_id, kind in server.outcomes:
            by_id[correlation_id or ""].append(kind)
        outcomes[name] = by_id
    unexplained, while_valid = _explain_errors(errors, outcomes, tokens, max_retries + 1)

    span = ended - began
    per_key = []
    for name, server in sorted(flaky.items()):
        row = metrics["servers"].get(name, {})
        failed = server.failed_requests()
        per_key.append(
            KeyFigures(
                key=name,
                requests=server.count(),
                failed_requests=failed,
                stalls=sum(1 for _, _, kind in server.outcomes if kind == "stall"),
                acquisitions=row.get("token_acquisitions_total", 0),
                successes=row.get("token_acquisitions_success", 0),
                failures=row.get("token_acquisitions_failure", 0),
                retries=row.get("token_retries", 0),
                served_stale=row.get("token_refresh_failures_served_from_cache", 0),
                fail_fast=row.get("token_fail_fast", 0),
                ideal=span / (expires_in / 2.0),
                bound=request_bound(span, expires_in, failed),
                caller_errors=sum(1 for e in errors if e.key == name),
            )
        )
    return SoakReport(
        duration=duration,
        wall_time=span,
        threads=threads,
        keys=keys,
        expires_in=expires_in,
        max_retries=max_retries,
        outage_seconds=outage_seconds,
        calls=sum(c.calls for c in callers),
        per_key=per_key,
        metrics=metrics,
        errors=errors,
        late_tokens=[late for c in callers for late in c.late],
        edge_receipts=sum(c.edge for c in callers),
        unexplained_errors=unexplained,
        errors_while_valid=while_valid,
        slowest_call=max(c.slowest for c in callers),
        library_bytes=(first_bytes, last_bytes),
        threads_alive=(first_threads[0], last_threads[0]),
        other_threads_alive=(first_threads[1], last_threads[1]),
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the soak from the command line, print the figures, exit 1 if a promise broke."""
    parser = argparse.ArgumentParser(prog="bench/soak.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds the callers run (default 30)")
    parser.add_argument("--threads", type=int, default=64, help="caller threads (default 64)")
    parser.add_argument("--keys", type=int, default=8, help="server names, one server each (default 8)")
    parser.add_argument("--expires-in", type=float, default=3.0, help="token lifetime in seconds (default 3)")
    parser.add_argument("--failure-rate", type=float, default=0.2, help="share of failed requests (default 0.2)")
    parser.add_argument("--stall-rate", type=float, default=0.05, help="share of stalled requests (default 0.05)")
    parser.add_argument("--stall", type=float, default=2.0, help="stall length in seconds (default 2)")
    parser.add_argument("--max-retries", type=int, default=2, help="OAUTH_MAX_RETRIES (default 2)")
    parser.add_argument("--outage", type=float, default=6.0, help="seconds api-0 fails everything (default 6)")
    parser.add_argument("--seed", type=int, default=20240601, help="random seed")
    args = parser.parse_args(argv)
    report = run_soak(
        duration=args.duration,
        threads=args.threads,
        keys=args.keys,
        expires_in=args.expires_in,
        failure_rate=args.failure_rate,
        stall_rate=args.stall_rate,
        stall_seconds=args.stall,
        max_retries=args.max_retries,
        outage_seconds=args.outage,
        seed=args.seed,
    )
    print(report.summary())
    problems = report.violations()
    for line in problems[:50]:
        print("VIOLATION " + line)
    if len(problems) > 50:
        print("... and %d more" % (len(problems) - 50))
    print("result: %s" % ("ok" if not problems else "%d violations" % len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
