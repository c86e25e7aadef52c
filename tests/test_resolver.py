"""_resolver.Resolver: the manager's discovery, and one deadline for a leader's whole slow path.

Real loopback servers: a :class:`~metadata_servers.MetadataServer` plays the MCP server, its
authorization server and the token endpoint on one origin; :class:`Stalling` answers the
first requests to each path with 503 and ``Retry-After``, the way a struggling server does.
Time moves only through the recording ``sleep`` (it advances the fake clock), so each test
asserts the requests made, the waits asked for and the error, never elapsed time.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Dict, List

import pytest
import requests

import oauth_gateway as og
from metadata_servers import MetadataServer, Route, requests_fetch
from oauth_gateway._access import access
from oauth_gateway._resolver import Resolver, trust_record_name
from oauth_gateway.client import TokenClient, call_budget, client_credentials_form
from oauth_gateway.contrib.file_cache import FileTokenCache
from servers import Fault

TOKEN = {"access_token": "at-1", "token_type": "Bearer", "expires_in": 3600}


class Stalling(MetadataServer):
    """A MetadataServer that answers the first ``failures`` requests to each path with 503 and ``Retry-After``."""

    def __init__(self, ca: Any, failures: int = 0, retry_after: int = 60) -> None:
        super().__init__(ca)
        self.failures = failures
        self.retry_after = retry_after
        self._seen: Dict[str, int] = collections.Counter()
        self._seen_lock = threading.Lock()

    def respond(self, method: str, target: str, headers: Any, body: bytes) -> Any:
        reply = super().respond(method, target, headers, body)  # records the request
        path = target.split("?", 1)[0]
        with self._seen_lock:
            self._seen[path] += 1
            seen = self._seen[path]
        if seen <= self.failures:
            return 503, [("Retry-After", str(self.retry_after))], b""
        return reply


def _publish(server: MetadataServer) -> Dict[str, str]:
    urls = server.publish(as_document=server.as_document(token_endpoint=server.url + "/token"))
    server.route("/token", Route(json=TOKEN), method="POST")
    return urls


def _keys(server: MetadataServer, **keys: Any) -> Dict[str, Any]:
    """The block's keys for ``make_config(None, ...)``: discovery from ``server``, ``keys`` on top."""
    block: Dict[str, Any] = {
        "OAUTH_CLIENT_ID": "client",
        "OAUTH_CLIENT_SECRET": "secret",
        "OAUTH_RESOURCE": server.url + "/mcp",
        "OAUTH_TRUST_DISCOVERED_ISSUER": True,
        "OAUTH_CA_BUNDLE_PATH": server.ca_bundle,
        "OAUTH_MAX_RETRIES": 3,
        "OAUTH_RETRY_AFTER_MAX": 60,
    }
    block.update(keys)
    return block


def _paths(server: MetadataServer) -> List[str]:
    return [record.path for record in server.requests]


# --------------------------------------------------------------------------- the resolver itself


def test_the_manager_resolves_through_one_resolver_that_works_on_its_own(ca, make_config):
    with MetadataServer(ca) as server:
        urls = _publish(server)
        config = make_config(None, **_keys(server))
        with requests.Session() as session:
            session.verify = server.ca_bundle
            resolver = Resolver(lambda config: requests_fetch(session))
            alone = resolver.resolve(config)
        assert alone.token_url == server.url + "/token" and alone.issuer == urls["issuer"]
        assert alone.resources == (urls["mcp"],) and alone.auth_method == "client_secret_basic"
        manager = og.TokenManager()
        assert access(manager).resolve(config) == alone
        before = server.count()
        assert manager.get_token("mcp", config).access_token == "at-1"
        assert server.count() - before == 1  # the token request only: the discovery was cached
        assert access(manager).forget_discovery(config) is True
        assert access(manager).resolve(config) == alone and server.count(urls["prm_path"]) == 3


def test_a_config_with_a_token_url_is_returned_as_it_is(ca, make_config):
    with MetadataServer(ca) as server:
        config = make_config(None, **_keys(server, OAUTH_TOKEN_URL=server.url + "/token"))
        resolver = Resolver(lambda config: pytest.fail("no discovery for a configured token URL"))
        assert resolver.resolve(config) is config
        assert resolver.forget(config) is False and server.count() == 0


def test_forgetting_the_discovery_keeps_the_issuer_trusted_on_first_use(ca, make_config):
    with MetadataServer(ca) as server, MetadataServer(ca) as other:
        _publish(server)
        config = make_config(None, **_keys(server))
        manager = og.TokenManager()
        access(manager).resolve(config)
        server.json(
            "/.well-known/oauth-protected-resource/mcp",
            {"resource": server.url + "/mcp", "authorization_servers": [other.url]},
        )
        access(manager).forget_discovery(config)
        with pytest.raises(og.DiscoveryError, match="first trusted"):
            access(manager).resolve(config)
        assert other.count() == 0


def test_the_trusted_issuer_record_round_trips_through_a_file_cache_and_is_no_token(ca, make_config, tmp_path, clock):
    with MetadataServer(ca) as server:
        urls = _publish(server)
        config = make_config(None, **_keys(server))
        cache = FileTokenCache(str(tmp_path / "tokens"), clock=clock)
        access(og.TokenManager(cache=cache, clock=clock)).resolve(config)
        again = FileTokenCache(str(tmp_path / "tokens"), clock=clock)
        assert again.load_record(trust_record_name(config)) == urls["issuer"]
        assert list(again.keys()) == [] and list(cache.keys()) == []  # not a token: no key, no metric
        # The record is named by the server and client, not by the whole config: another
        # timeout is the same trust, another client id is not.
        assert trust_record_name(config) == trust_record_name(config.replace(timeout=3.0))
        assert trust_record_name(config) != trust_record_name(config.replace(client_id="other"))


# --------------------------------------------------------------------------- one deadline


def test_a_slow_discovery_and_token_request_share_one_deadline(ca, make_config, clock, sleeps):
    """Each call succeeds only on its fourth attempt, after three ``Retry-After: 60`` answers."""
    with Stalling(ca, failures=3) as server:
        _publish(server)
        config = make_config(None, **_keys(server))
        budget = call_budget(config)
        manager = og.TokenManager(clock=clock, sleep=sleeps)
        with pytest.raises((og.DiscoveryError, og.TransportError)):
            manager.get_token("mcp", config)
        # The probe took its four attempts and three waits; the resource metadata two
        # attempts and one wait, then the next wait would have ended past the deadline.
        assert _paths(server) == ["/mcp"] * 4 + ["/.well-known/oauth-protected-resource/mcp"] * 2
        assert sleeps.calls == [60.0] * 4 and sum(sleeps.calls) <= budget
        assert server.count("/token") == 0  # nothing was left for the token request


def test_without_stalls_the_same_fetch_succeeds(ca, make_config, clock, sleeps):
    with Stalling(ca, failures=0) as server:
        _publish(server)
        manager = og.TokenManager(clock=clock, sleep=sleeps)
        assert manager.get_token("mcp", make_config(None, **_keys(server))).access_token == "at-1"
        assert server.count("/token") == 1 and sleeps.calls == []


def test_one_stall_per_call_fits_the_deadline(ca, make_config, clock, sleeps):
    with Stalling(ca, failures=1) as server:
        _publish(server)
        manager = og.TokenManager(clock=clock, sleep=sleeps)
        assert manager.get_token("mcp", make_config(None, **_keys(server))).access_token == "at-1"
        assert server.count("/token") == 2 and sleeps.calls == [60.0] * 4  # probe, PRM, AS, token


def test_a_passed_deadline_sends_no_token_request(auth_server, make_config, clock, sleeps):
    config = make_config(auth_server)
    client = TokenClient(sleep=sleeps, clock=clock)
    with pytest.raises(og.TransportError, match="deadline of the whole fetch"):
        client.request_token(client.endpoint(config), client_credentials_form(config), "api", deadline=clock() - 1)
    assert auth_server.count("/token") == 0


def test_a_retry_wait_past_the_deadline_is_not_waited(auth_server, make_config, clock, sleeps):
    config = make_config(auth_server, OAUTH_MAX_RETRIES=3)
    auth_server.push_fault(Fault(503, json={"error": "temporarily_unavailable"}, headers={"Retry-After": "10"}))
    client = TokenClient(sleep=sleeps, clock=clock)
    with pytest.raises(og.TokenRequestError) as refused:
        client.request_token(client.endpoint(config), client_credentials_form(config), "api", deadline=clock() + 5)
    assert refused.value.status_code == 503
    assert auth_server.count("/token") == 1 and sleeps.calls == []
    # Control: with room for the wait, the retry is sent and succeeds.
    auth_server.push_fault(Fault(503, json={"error": "temporarily_unavailable"}, headers={"Retry-After": "10"}))
    assert client.request_token(
        client.endpoint(config), client_credentials_form(config), "api", deadline=clock() + 60
    ).access_token
    assert auth_server.count("/token") == 3 and sleeps.calls == [10.0]
