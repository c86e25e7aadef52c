"""The httpx and httpx2 auths (oauth_gateway/contrib/httpx.py, httpx2.py), sync and async, against real servers.

Tokens come from the HTTPS loopback token server (tests/servers.py), which also serves
``/resource``: it accepts only tokens it issued and still holds, and answers 401
``Bearer error="invalid_token"`` otherwise. It counts every request, so a test can say
"20 coroutines, 1 token request". The redirect tests add two small servers of
tests/loopback.py; the DPoP test uses oidc-provider and tests/dpop_servers.py.

httpx2 needs Python 3.10+: its cases are skipped, with that reason, on the 3.8 leg.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import logging
import ssl
import sys
import time
from email.message import Message
from typing import Any, Iterator, List, Tuple

import pytest

import oauth_gateway as og
from dpop_servers import DPoPResourceServer
from loopback import LoopbackServer, Reply
from oidc_provider import JWT_RESOURCE, OidcProvider, oidc_provider  # noqa: F401 (fixture)
from servers import Fault

#: Seconds a test allows any one HTTP call (a hang guard only).
TIMEOUT = 10.0
#: How long the token server holds the fetch in the ticker test, and the ticker's period.
FETCH_DELAY = 0.4
TICK = 0.01
#: The largest gap between two ticks the issue allows while a fetch is in flight.
MAX_GAP = 0.05

LIBRARIES = [
    "httpx",
    pytest.param(
        "httpx2",
        marks=pytest.mark.skipif(sys.version_info < (3, 10), reason="httpx2 needs Python 3.10+ (runs on the 3.13 leg)"),
    ),
]


@pytest.fixture(params=LIBRARIES)
def lib(request: pytest.FixtureRequest) -> Tuple[Any, Any]:
    """``(the HTTP library, its TokenAuth class)`` for httpx and for httpx2."""
    module = pytest.importorskip(request.param, reason="pip install the tests extra")
    adapter = importlib.import_module("oauth_gateway.contrib." + request.param)
    return module, adapter.TokenAuth


@pytest.fixture
def config(auth_server, make_block) -> og.OAuthConfig:
    return og.OAuthConfig.from_dict(make_block(auth_server))


def _client(lib: Tuple[Any, Any], ca_bundle: str, auth: Any, asynchronous: bool = False, **options: Any) -> Any:
    module = lib[0]
    kind = module.AsyncClient if asynchronous else module.Client
    verify = ssl.create_default_context(cafile=ca_bundle)
    return kind(auth=auth, verify=verify, timeout=TIMEOUT, trust_env=False, **options)


def _invalid_token_fault() -> Fault:
    return Fault(
        401,
        json={"error": "invalid_token"},
        headers=[("WWW-Authenticate", 'Bearer realm="test", error="invalid_token"')],
    )


# --------------------------------------------------------------------------- cache hits


def test_sync_client_fifty_requests_make_one_token_request(lib, auth_server, config, manager, ca_bundle):
    auth = lib[1](manager, "api", config)
    with _client(lib, ca_bundle, auth) as client:
        statuses = [client.get(auth_server.resource_url).status_code for _ in range(50)]

    assert statuses == [200] * 50
    assert auth_server.count("/token") == 1
    assert auth_server.count("/resource") == 50


def test_async_client_fifty_requests_make_one_token_request(lib, auth_server, config, manager, ca_bundle):
    auth = lib[1](manager, "api", config)

    async def main() -> List[int]:
        async with _client(lib, ca_bundle, auth, asynchronous=True) as client:
            return [(await client.get(auth_server.resource_url)).status_code for _ in range(50)]

    assert asyncio.run(main()) == [200] * 50
    assert auth_server.count("/token") == 1
    assert auth_server.count("/resource") == 50


class CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    """The event loop's default executor, counting the calls it is given."""

    def __init__(self) -> None:
        super().__init__(max_workers=8)
        self.submitted = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def test_twenty_coroutines_on_a_cold_cache_make_one_token_request_in_one_thread(
    lib, auth_server, config, manager, ca_bundle
):
    auth = lib[1](manager, "api", config)
    executor = CountingExecutor()
    auth_server.push_fault(Fault(delay=0.2))  # hold the fetch so every coroutine misses the cache

    async def main() -> List[int]:
        asyncio.get_running_loop().set_default_executor(executor)
        async with _client(lib, ca_bundle, auth, asynchronous=True) as client:
            answers = await asyncio.gather(*(client.get(auth_server.resource_url) for _ in range(20)))
        return [answer.status_code for answer in answers]

    try:
        assert asyncio.run(main()) == [200] * 20
    finally:
        executor.shutdown()
    assert auth_server.count("/token") == 1
    assert executor.submitted == 1, "the coroutines of one loop must share one worker thread"


def _ticker_run(lib: Any, ca_bundle: str, auth: Any, url: str) -> Tuple[int, float, List[float]]:
    """One request on a cold cache while a ticker runs; returns (status, seconds taken, gaps during it)."""
    ticks: List[float] = []

    async def ticker(stop: asyncio.Event) -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            await asyncio.sleep(TICK)

    async def main() -> Tuple[int, float, float]:
        async with _client(lib, ca_bundle, auth, asynchronous=True) as client:
            stop = asyncio.Event()
            ticking = asyncio.ensure_future(ticker(stop))
            await asyncio.sleep(TICK * 3)  # the ticker runs before the request starts
            started = time.monotonic()
            answer = await client.get(url)
            ended = time.monotonic()
            await asyncio.sleep(TICK * 3)  # and ticks once more after it
            stop.set()
            await ticking
        return answer.status_code, started, ended

    status, started, ended = asyncio.run(main())
    # The gaps between ticks that overlap the request: the ticker's own start-up is not measured.
    gaps = [b - a for a, b in zip(ticks, ticks[1:]) if b >= started and a <= ended]
    return status, ended - started, gaps


def test_a_fetch_never_blocks_the_event_loop(lib, auth_server, config, manager, ca_bundle):
    # A loop blocked by the fetch stalls FETCH_DELAY in every attempt; a busy machine may
    # preempt the whole process once, so the best of three attempts (each a cold cache) counts.
    largest: List[float] = []
    for attempt in range(3):
        auth = lib[1](manager, "api-%d" % attempt, config)
        auth_server.push_fault(Fault(delay=FETCH_DELAY))
        status, took, gaps = _ticker_run(lib, ca_bundle, auth, auth_server.resource_url)
        assert status == 200
        assert took >= FETCH_DELAY, "the token server did not hold the fetch"
        assert len(gaps) >= FETCH_DELAY / (2 * MAX_GAP), "the ticker did not run while the fetch was held"
        largest.append(max(gaps))
        if largest[-1] <= MAX_GAP:
            break

    assert auth_server.count("/token") == len(largest)
    assert min(largest) <= MAX_GAP, "the event loop stalled %s ms while a token was fetched" % [
        round(gap * 1000) for gap in largest
    ]


# --------------------------------------------------------------------------- 401 recovery


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_rejected_token_gets_one_fresh_token_and_one_retry(
    lib, auth_server, config, manager, ca_bundle, asynchronous
):
    auth = lib[1](manager, "api", config)
    first = manager.get_token("api", config)
    auth_server.expire_tokens()  # the resource server now refuses the cached token

    answer = _send(lib, ca_bundle, auth, asynchronous, "GET", auth_server.resource_url)

    assert answer.status_code == 200
    assert [item.status_code for item in answer.history] == [401]
    assert auth_server.count("/token") == 2
    assert auth_server.count("/resource") == 2
    sent = [r.headers.get("Authorization") for r in auth_server.requests_to("/resource")]
    assert sent[0] == first.authorization
    assert sent[1] == manager.get_token("api", config).authorization != first.authorization


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_second_401_reaches_the_caller(lib, auth_server, config, manager, ca_bundle, asynchronous):
    auth = lib[1](manager, "api", config)
    auth_server.set_faults([_invalid_token_fault(), _invalid_token_fault()], path="/resource")

    answer = _send(lib, ca_bundle, auth, asynchronous, "POST", auth_server.resource_url, content=b'{"a": 1}')

    assert answer.status_code == 401
    assert [item.status_code for item in answer.history] == [401]
    assert auth_server.count("/token") == 2
    assert auth_server.count("/resource") == 2
    assert [r.body for r in auth_server.requests_to("/resource")] == [b'{"a": 1}'] * 2


def test_a_401_without_invalid_token_is_not_recovered_unless_asked(lib, auth_server, config, manager, ca_bundle):
    plain_401 = Fault(401, json={"error": "nope"}, headers=[("WWW-Authenticate", 'Bearer realm="test"')])
    auth_server.set_faults([plain_401, plain_401], path="/resource")

    strict = _send(lib, ca_bundle, lib[1](manager, "api", config), False, "GET", auth_server.resource_url)
    tokens_after_strict = auth_server.count("/token")
    lenient = _send(
        lib, ca_bundle, lib[1](manager, "api", config, retry_on_any_401=True), False, "GET", auth_server.resource_url
    )

    assert (strict.status_code, strict.history) == (401, [])
    assert tokens_after_strict == 1
    assert lenient.status_code == 200
    assert auth_server.count("/token") == 2


def test_twenty_coroutines_rejected_together_share_one_new_token(lib, auth_server, config, manager, ca_bundle):
    auth = lib[1](manager, "api", config)
    manager.get_token("api", config)
    auth_server.expire_tokens()
    executor = CountingExecutor()

    async def main() -> List[int]:
        asyncio.get_running_loop().set_default_executor(executor)
        async with _client(lib, ca_bundle, auth, asynchronous=True) as client:
            answers = await asyncio.gather(*(client.get(auth_server.resource_url) for _ in range(20)))
        return [answer.status_code for answer in answers]

    try:
        assert asyncio.run(main()) == [200] * 20
    finally:
        executor.shutdown()
    assert auth_server.count("/token") == 2
    # One thread for the rejected token: the coroutines whose 401 comes while it runs await it,
    # the later ones find the new token in the cache.
    assert executor.submitted == 1


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_streamed_body_is_not_sent_again(lib, auth_server, config, manager, ca_bundle, asynchronous, caplog):
    auth = lib[1](manager, "api", config)
    auth_server.push_fault(_invalid_token_fault(), path="/resource")

    def chunks() -> Iterator[bytes]:
        yield b"once"

    async def achunks() -> Any:
        yield b"once"

    body = achunks() if asynchronous else chunks()
    with caplog.at_level(logging.WARNING, logger="oauth_gateway"):
        answer = _send(lib, ca_bundle, auth, asynchronous, "POST", auth_server.resource_url, content=body)

    assert answer.status_code == 401
    assert auth_server.count("/resource") == 1
    assert auth_server.count("/token") == 2, "the rejected token is still replaced for the next call"
    assert "its body is a stream" in caplog.text


# --------------------------------------------------------------------------- transport rules


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_no_token_over_plain_http(lib, auth_server, make_block, manager, ca_bundle, asynchronous):
    config = og.OAuthConfig.from_dict(make_block(auth_server))
    auth = lib[1](manager, "api", config)
    with LoopbackRecorder() as plain:  # plain HTTP on 127.0.0.1
        with pytest.raises(og.InsecureTransportError, match="https only"):
            _send(lib, ca_bundle, auth, asynchronous, "GET", plain.url + "/mcp")
        assert plain.seen == []
    assert auth_server.count("/token") == 0


def test_plain_http_to_loopback_when_the_config_allows_it(lib, auth_server, make_block, manager, ca_bundle):
    config = og.OAuthConfig.from_dict(make_block(auth_server, OAUTH_VERSION="2.0", OAUTH_ENFORCE_HTTPS=False))
    with LoopbackRecorder() as plain:
        answer = _send(lib, ca_bundle, lib[1](manager, "api", config), False, "GET", plain.url + "/mcp")
        seen = list(plain.seen)
    assert answer.status_code == 200
    assert seen == [manager.get_token("api", config).authorization]


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_no_token_across_origins_on_a_redirect(lib, ca, auth_server, config, manager, ca_bundle, asynchronous):
    with LoopbackRecorder(ca, status=401) as elsewhere, Redirector(ca, elsewhere.url + "/mcp") as first:
        auth = lib[1](manager, "api", config)
        answer = _send(lib, ca_bundle, auth, asynchronous, "GET", first.url + "/mcp", follow_redirects=True)
        seen = list(elsewhere.seen)

    assert answer.status_code == 401
    assert seen == [None], "the token followed a redirect to another origin"
    assert auth_server.count("/token") == 1, "a 401 from another origin must not replace the token"


def test_repr_shows_no_secret(lib, config, manager):
    auth = lib[1](manager, "api", config)
    assert repr(auth) == "TokenAuth(server_name='api', config_id='default', dpop=False)"
    assert config.client_secret not in repr(auth)
    assert auth == lib[1](manager, "api", config)
    assert auth != lib[1](manager, "other", config)


# --------------------------------------------------------------------------- DPoP


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_dpop_proof_per_request_and_one_nonce_retry(lib, ca, ca_bundle, oidc_provider, asynchronous):  # noqa: F811
    client_id, secret = oidc_provider.clients["dpop"]
    config = og.OAuthConfig(
        client_id=client_id,
        client_secret=secret,
        token_url=oidc_provider.token_url,
        ca_bundle_path=str(oidc_provider.ca_file),
        resources=[JWT_RESOURCE],
        scope="read",
        use_basic_auth=True,
        dpop=True,
    )
    with og.TokenManager() as manager, DPoPResourceServer(ca, require_nonce=True) as resource:
        auth = lib[1](manager, "dpop-api", config)
        url = resource.url + "/mcp"
        first = _send(lib, ca_bundle, auth, asynchronous, "POST", url, content=b"first")
        second = _send(lib, ca_bundle, auth, asynchronous, "GET", url)
        checked = resource.checked

    assert [first.status_code, second.status_code] == [200, 200]
    assert [item.status_code for item in first.history] == [401]
    assert [item.error for item in checked] == ["use_dpop_nonce", None, None]
    assert checked[1].nonce is not None and checked[2].nonce == checked[1].nonce
    assert repr(auth) == "TokenAuth(server_name='dpop-api', config_id='default', dpop=True)"


# --------------------------------------------------------------------------- helpers


def _send(lib, ca_bundle, auth, asynchronous, method, url, follow_redirects=False, **options) -> Any:
    """One request through a new client of ``lib``, sync or async."""
    if not asynchronous:
        with _client(lib, ca_bundle, auth, follow_redirects=follow_redirects) as client:
            return client.request(method, url, **options)

    async def main() -> Any:
        async with _client(lib, ca_bundle, auth, asynchronous=True, follow_redirects=follow_redirects) as client:
            return await client.request(method, url, **options)

    return asyncio.run(main())


class LoopbackRecorder(LoopbackServer):
    """Records the ``Authorization`` header of every request; answers ``status``."""

    def __init__(self, ca: Any = None, status: int = 200) -> None:
        super().__init__(ca)
        self.status = status

    @property
    def seen(self) -> List[Any]:
        with self._lock:
            return list(self.records)

    def respond(self, method: str, target: str, headers: Message, body: bytes) -> Reply:
        self.record(headers.get("Authorization"))
        if self.status == 401:
            return 401, [("WWW-Authenticate", 'Bearer error="invalid_token"')], b""
        return self.status, [("Content-Type", "application/json")], b"{}"


class Redirector(LoopbackServer):
    """Answers every request with a 307 to ``location``."""

    def __init__(self, ca: Any, location: str) -> None:
        super().__init__(ca)
        self.location = location

    def respond(self, method: str, target: str, headers: Message, body: bytes) -> Reply:
        return 307, [("Location", self.location)], b""


def test_under_trio_coroutines_on_a_cold_cache_share_one_anyio_worker(lib, auth_server, config, manager, ca_bundle):
    pytest.importorskip("trio", reason="the trio case needs trio (the tests extra has it on Python 3.10+)")
    import anyio

    fetches: List[int] = []

    class CountingAuth(lib[1]):  # counts the fetches it runs in a worker thread
        def _fetch(self) -> Any:
            fetches.append(1)
            return super()._fetch()

    auth = CountingAuth(manager, "api", config)
    auth_server.push_fault(Fault(delay=0.2))  # hold the fetch so every task misses the cache
    statuses: List[int] = []

    async def one(client: Any) -> None:
        statuses.append((await client.get(auth_server.resource_url)).status_code)

    async def main() -> None:
        async with _client(lib, ca_bundle, auth, asynchronous=True) as client:
            async with anyio.create_task_group() as tasks:
                for _ in range(10):
                    tasks.start_soon(one, client)

    anyio.run(main, backend="trio")

    assert statuses == [200] * 10
    assert auth_server.count("/token") == 1
    assert len(fetches) == 1, "the tasks of one trio run must share one worker thread"
    assert auth._pending == {}, "a finished fetch must not stay in the table of fetches in progress"
