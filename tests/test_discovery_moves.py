"""A server that moves to another authorization server never gets the old server's token.

The MCP server (a :class:`~metadata_servers.MetadataServer`) publishes Protected Resource
Metadata naming AS-1, then AS-2: two separate :class:`~servers.AuthServer` instances, each
serving its own metadata (its token endpoint on its issuer's origin), so each token
request is counted at the server that got it. Time moves on a :class:`~fakes.FakeClock`.

The client is a public one (``client_id`` only, method ``none``): a config that holds no
credential may follow a server to another authorization server. One that holds a
credential may not (tests/test_trust_discovery.py): it is pinned by ``OAUTH_ISSUER``, or
trusts the first issuer found and refuses any other.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, Tuple

import pytest
import requests

import oauth_gateway as og
from metadata_servers import MetadataServer, Route
from oauth_gateway._access import access
from oauth_gateway.contrib.file_cache import FileTokenCache
from servers import PUBLIC_AUTH_METHOD, Fault

PRM = "/.well-known/oauth-protected-resource/mcp"
#: Seconds the MCP server lets clients keep its resource metadata.
PRM_MAX_AGE = 60
#: The token lifetime both authorization servers grant, and the refresh buffer.
LIFETIME, BUFFER = 3600, 300


class Moving:
    """An MCP server whose resource metadata names AS-1 until :meth:`move` names AS-2."""

    def __init__(self, meta: MetadataServer, as1: Any, as2: Any) -> None:
        self.meta, self.as1, self.as2 = meta, as1, as2
        self.mcp = meta.url + "/mcp"
        self.issuers = {as1: as1.publish_metadata(), as2: as2.publish_metadata()}
        meta.challenge("/mcp", resource_metadata=meta.url + PRM)
        self.publish(as1)

    def publish(self, server: Any) -> None:
        document = {"resource": self.mcp, "authorization_servers": [self.issuers[server]]}
        self.meta.route(PRM, Route(json=document, headers=[("Cache-Control", "max-age=%d" % PRM_MAX_AGE)]))

    def move(self) -> None:
        self.publish(self.as2)


PUBLIC_CLIENT = "public-client"


@pytest.fixture
def moving(ca, make_server) -> Iterator[Moving]:
    as1, as2 = make_server(), make_server()
    for server in (as1, as2):
        server.register_client(PUBLIC_CLIENT, None, auth_methods=(PUBLIC_AUTH_METHOD,))
    with MetadataServer(ca) as meta:
        yield Moving(meta, as1, as2)


def _keys(moving: Moving) -> Dict[str, Any]:
    """The block's keys for ``make_config(None, ...)``: discovery from the moving resource."""
    return {
        "OAUTH_CLIENT_ID": PUBLIC_CLIENT,
        "OAUTH_TOKEN_ENDPOINT_AUTH_METHOD": "none",  # no credential: nothing to keep from another server
        "OAUTH_RESOURCE": moving.mcp,
        "OAUTH_TOKEN_EXPIRY_BUFFER": BUFFER,
    }


def _counts(moving: Moving) -> Tuple[int, int]:
    return moving.as1.count("/token"), moving.as2.count("/token")


def test_after_a_move_a_failing_refresh_never_falls_back_to_the_old_servers_token(moving, make_config, clock, sleeps):
    config = make_config(None, **_keys(moving))
    manager = og.TokenManager(clock=clock, sleep=sleeps)
    old = manager.get_token("mcp", config)
    assert old.access_token in moving.as1.issued and _counts(moving) == (1, 0)

    moving.move()
    moving.as2.push_fault(Fault(401, json={"error": "invalid_client"}))
    clock.advance(LIFETIME - BUFFER + 10)  # the old token is stale but valid; the metadata expired
    assert not old.is_expired(clock())
    with pytest.raises(og.InvalidClient):
        manager.get_token("mcp", config)  # AS-2 said no: AS-1's token is not served in its place
    assert _counts(moving) == (1, 1)

    # The same failure at the same authorization server serves the cached token: the
    # test above fails closed because of the move, not because every failure does.
    assert access(manager).resolve(config).issuer == moving.issuers[moving.as2]
    clock.advance(og.manager.DEFAULT_FAILURE_COOLDOWN + 1)
    new = manager.get_token("mcp", config)
    assert new.access_token in moving.as2.issued and _counts(moving) == (1, 2)
    moving.as2.push_fault(Fault(401, json={"error": "invalid_client"}))
    clock.advance(LIFETIME - BUFFER + 10)
    assert manager.get_token("mcp", config) is new  # served while still valid, after the failed refresh
    assert _counts(moving) == (1, 3)


def test_after_a_move_a_forced_refresh_goes_to_the_new_server_and_the_old_token_is_gone(moving, make_config, clock):
    config = make_config(None, **_keys(moving))
    manager = og.TokenManager(clock=clock)
    old = manager.get_token("mcp", config)
    moving.move()
    clock.advance(PRM_MAX_AGE + 1)
    new = manager.refresh("mcp", config)
    assert new.access_token in moving.as2.issued and new.access_token != old.access_token
    assert _counts(moving) == (1, 1)
    assert manager.get_token("mcp", config) is new
    assert _counts(moving) == (1, 1)


def test_a_shared_file_cache_never_hands_one_servers_token_to_a_manager_that_found_the_other(
    moving, make_config, clock, tmp_path
):
    config = make_config(None, **_keys(moving))
    directory = str(tmp_path / "tokens")
    first = og.TokenManager(cache=FileTokenCache(directory, clock=clock), clock=clock)
    second = og.TokenManager(cache=FileTokenCache(directory, clock=clock), clock=clock)
    old = first.get_token("mcp", config)
    assert _counts(moving) == (1, 0)
    clock.advance(1000)

    # A second process that starts after the move finds AS-2: the file's AS-1 token is not for it.
    moving.move()
    fresh = second.get_token("mcp", config)
    assert fresh.access_token in moving.as2.issued and fresh.access_token != old.access_token
    assert _counts(moving) == (1, 1)

    # The first process keeps its (still fresh) token until it looks again; when its
    # token goes stale its metadata has expired too: it finds AS-2 and takes the
    # second process's AS-2 token from the file, without a request.
    assert first.get_token("mcp", config) is old
    clock.advance(LIFETIME - BUFFER - 1000 + 10)
    assert first.get_token("mcp", config).access_token == fresh.access_token
    assert _counts(moving) == (1, 1)

    # The server moves back: a third process that finds AS-1 does not take AS-2's token.
    moving.publish(moving.as1)
    third = og.TokenManager(cache=FileTokenCache(directory, clock=clock), clock=clock)
    back = third.get_token("mcp", config)
    assert back.access_token in moving.as1.issued
    assert _counts(moving) == (2, 1)


def test_a_shared_file_cache_serves_another_managers_token_when_both_found_the_same_server(
    moving, make_config, clock, tmp_path
):
    config = make_config(None, **_keys(moving))
    directory = str(tmp_path / "tokens")
    first = og.TokenManager(cache=FileTokenCache(directory, clock=clock), clock=clock)
    second = og.TokenManager(cache=FileTokenCache(directory, clock=clock), clock=clock)
    token = first.get_token("mcp", config)
    assert second.get_token("mcp", config).access_token == token.access_token
    assert _counts(moving) == (1, 0)  # the control: the issuer check above is what refused


# --------------------------------------------------------------------------- dropping the metadata


def test_a_401_naming_other_resource_metadata_makes_the_recovery_discover_again(moving, ca_bundle, make_config, clock):
    config = make_config(None, **_keys(moving))
    manager = og.TokenManager(clock=clock)
    old = manager.get_token("mcp", config)
    # The server moves to AS-2 and publishes that at a new metadata URL, well within the
    # old document's max-age: only its 401 challenge tells the client.
    moved = "/.well-known/oauth-protected-resource/mcp-v2"
    document = {"resource": moving.mcp, "authorization_servers": [moving.issuers[moving.as2]]}
    moving.meta.route(moved, Route(json=document, headers=[("Cache-Control", "max-age=%d" % PRM_MAX_AGE)]))
    moving.meta.challenge("/mcp", resource_metadata=moving.meta.url + moved)

    with requests.Session() as session:
        session.verify = ca_bundle
        answer = session.post(
            moving.mcp, json={"jsonrpc": "2.0", "id": 1}, auth=manager.auth("mcp", config), verify=ca_bundle
        )
    assert answer.status_code == 401 and len(answer.history) == 1  # recovered once, then the test server said no
    assert answer.request.headers["Authorization"] != old.authorization
    assert _counts(moving) == (1, 1)  # the replacement came from AS-2
    assert moving.meta.count(moved) == 1
    assert access(manager).resolve(config).issuer == moving.issuers[moving.as2]


def test_a_401_naming_the_same_resource_metadata_keeps_the_cached_discovery(moving, ca_bundle, make_config, clock):
    config = make_config(None, **_keys(moving))
    manager = og.TokenManager(clock=clock)
    manager.get_token("mcp", config)
    before = moving.meta.count(PRM)
    with requests.Session() as session:
        session.verify = ca_bundle
        answer = session.post(
            moving.mcp, json={"jsonrpc": "2.0", "id": 1}, auth=manager.auth("mcp", config), verify=ca_bundle
        )
    assert len(answer.history) == 1
    assert moving.meta.count(PRM) == before  # no metadata request: the cached document still holds
    assert _counts(moving) == (2, 0)


@pytest.mark.parametrize("error, raised", [("invalid_client", og.InvalidClient), ("invalid_target", og.InvalidTarget)])
def test_a_refresh_refused_as_invalid_client_or_target_drops_the_metadata(moving, make_config, clock, error, raised):
    config = make_config(None, **_keys(moving))
    manager = og.TokenManager(clock=clock, sleep=lambda seconds: None)
    manager.get_token("mcp", config)
    moving.move()  # the cached document (60 s) still names AS-1
    moving.as1.push_fault(Fault(400 if error == "invalid_target" else 401, json={"error": error}))
    with pytest.raises(raised):
        manager.refresh("mcp", config)
    assert _counts(moving) == (2, 0)
    clock.advance(og.manager.DEFAULT_FAILURE_COOLDOWN + 1)  # well within the document's max-age
    assert manager.refresh("mcp", config).access_token in moving.as2.issued
    assert _counts(moving) == (2, 1)


def test_other_refusals_keep_the_cached_metadata(moving, make_config, clock):
    config = make_config(None, **_keys(moving))
    manager = og.TokenManager(clock=clock, sleep=lambda seconds: None)
    manager.get_token("mcp", config)
    moving.move()
    moving.as1.push_fault(Fault(400, json={"error": "invalid_scope"}))
    with pytest.raises(og.InvalidScope):
        manager.refresh("mcp", config)
    clock.advance(og.manager.DEFAULT_FAILURE_COOLDOWN + 1)
    assert manager.refresh("mcp", config).access_token in moving.as1.issued  # the 60 s document holds
    assert _counts(moving) == (3, 0)
