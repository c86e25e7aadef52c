"""Revocation wins: a token revoked or invalidated while its refresh is in flight is never served again."""

from __future__ import annotations

import collections
import json
import threading
from typing import Any, Dict, List, Optional

import pytest

import oauth_gateway as og
from loopback import LoopbackServer, Reply
from oauth_gateway.manager import DEFAULT_FAILURE_COOLDOWN

WAIT = 10.0
Record = collections.namedtuple("Record", "method path")


class HeldTokenServer(LoopbackServer):
    """A token endpoint whose answers can be held: each ``/token`` request waits for ``release``.

    ``answers`` scripts the ``/token`` statuses in order (200 issues ``tok-N``); ``arrived``
    is set when a held request has come in. ``/revoke`` answers 200 at once.
    """

    def __init__(self, ca: Any) -> None:
        super().__init__(ca)
        self.answers: List[int] = []
        self.hold = False
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.revoked: List[str] = []
        self._issued = 0

    def respond(self, method: str, target: str, headers: Any, body: bytes) -> Reply:
        path = target.split("?", 1)[0]
        self.record(Record(method, path))
        if path == "/revoke":
            form = dict(pair.split("=", 1) for pair in body.decode("ascii").split("&") if "=" in pair)
            self.revoked.append(form.get("token", ""))
            return 200, [], b""
        if self.hold:
            self.arrived.set()
            assert self.release.wait(WAIT), "the test never released the held token request"
        status = self.answers.pop(0) if self.answers else 200
        if status != 200:
            document = {"error": "temporarily_unavailable"}
        else:
            self._issued += 1
            document = {"access_token": "tok-%d" % self._issued, "token_type": "Bearer", "expires_in": 100}
        return status, [("Content-Type", "application/json")], json.dumps(document).encode("utf-8")


@pytest.fixture
def held_server(ca):
    with HeldTokenServer(ca) as server:
        yield server


def _keys(server: HeldTokenServer) -> Dict[str, Any]:
    """The block's keys for ``make_config(None, ...)``: the held server's endpoints, no retries."""
    return {
        "OAUTH_CLIENT_ID": "client",
        "OAUTH_CLIENT_SECRET": "secret",
        "OAUTH_TOKEN_URL": server.url + "/token",
        "OAUTH_REVOCATION_URL": server.url + "/revoke",
        "OAUTH_MAX_RETRIES": 0,
    }


def _refresh_held_while(manager, server, config, during) -> List[Any]:
    """Make the cached token stale, start its refresh in a thread, run ``during()`` while it is held."""
    outcome: List[Any] = []

    def call() -> None:
        try:
            outcome.append(manager.get_token("api", config))
        except og.OAuthGatewayError as exc:
            outcome.append(exc)

    server.hold = True
    thread = threading.Thread(target=call)
    thread.start()
    try:
        assert server.arrived.wait(WAIT), "the refresh never reached the token endpoint"
        during()
    finally:
        server.release.set()
        thread.join(WAIT)
    assert not thread.is_alive()
    server.hold = False
    return outcome


def test_a_token_revoked_while_its_refresh_fails_is_not_put_back(held_server, make_config, clock, sleeps):
    config = make_config(None, **_keys(held_server))
    with og.TokenManager(clock=clock, sleep=sleeps, background_refresh=False) as manager:
        first = manager.get_token("api", config)
        assert first.access_token == "tok-1"
        clock.advance(60)  # past the refresh point (half of 100 s), still valid for 40 s
        held_server.answers = [503]  # the refresh fails: stale-if-error would serve tok-1 again

        outcome = _refresh_held_while(manager, held_server, config, lambda: manager.revoke("api", config))

        assert held_server.revoked == ["tok-1"]
        assert len(outcome) == 1
        assert not isinstance(outcome[0], og.Token) or outcome[0].access_token != "tok-1"
        clock.advance(DEFAULT_FAILURE_COOLDOWN + 1)
        after = manager.get_token("api", config)
        assert after.access_token != "tok-1"
        assert held_server.count("/token") == 3  # the first, the failed refresh, a new one


def test_a_refresh_in_flight_when_the_key_is_invalidated_caches_nothing(held_server, make_config, clock, sleeps):
    config = make_config(None, **_keys(held_server))
    with og.TokenManager(clock=clock, sleep=sleeps, background_refresh=False) as manager:
        manager.get_token("api", config)
        clock.advance(60)
        outcome = _refresh_held_while(manager, held_server, config, lambda: manager.invalidate("api"))
        assert [token.access_token for token in outcome] == ["tok-2"]  # its caller still gets an answer
        fresh: Optional[og.Token] = manager.get_token("api", config)
        assert fresh is not None and fresh.access_token == "tok-3"  # tok-2 was not cached
        assert held_server.count("/token") == 3
