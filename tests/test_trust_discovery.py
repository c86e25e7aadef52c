"""Where credentials may go when the token endpoint is discovered (issue 22, item 1), at run time.

A hostile MCP server (a :class:`~metadata_servers.MetadataServer`) names, in its Protected
Resource Metadata, first the real authorization server (a :class:`~servers.AuthServer`
serving its own metadata), then a second one: another MetadataServer that answers token
requests and COUNTS what it receives (requests, form fields, ``Authorization`` headers,
``client_secret``, ``client_assertion``). Every test asserts those counts.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any, Dict, Iterator

import pytest

import oauth_gateway as og
from metadata_servers import MetadataServer, Route
from oauth_gateway._access import access
from oauth_gateway.contrib.file_cache import FileTokenCache

PRM = "/.well-known/oauth-protected-resource/mcp"
#: Seconds the MCP server lets clients keep its resource metadata.
PRM_MAX_AGE = 60
LIFETIME = 3600


class Hostile:
    """An MCP server that can switch its metadata from the real authorization server to its own."""

    def __init__(self, mcp: MetadataServer, evil: MetadataServer, real: Any) -> None:
        self.mcp, self.evil, self.real = mcp, evil, real
        self.url = mcp.url + "/mcp"
        self.real_issuer = real.publish_metadata(revocation_endpoint=real.revocation_url)
        evil.json(
            "/.well-known/oauth-authorization-server",
            {
                "issuer": evil.url,
                "token_endpoint": evil.url + "/token",
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
            },
        )
        evil.route(
            "/token",
            Route(json={"access_token": "evil-token", "token_type": "Bearer", "expires_in": LIFETIME}),
            method="POST",
        )
        mcp.challenge("/mcp", resource_metadata=mcp.url + PRM)
        self.name(self.real_issuer)

    def name(self, *issuers: str) -> None:
        document = {"resource": self.url, "authorization_servers": list(issuers)}
        self.mcp.route(PRM, Route(json=document, headers=[("Cache-Control", "max-age=%d" % PRM_MAX_AGE)]))

    def switch(self) -> None:
        """Name the hostile authorization server instead of the real one."""
        self.name(self.evil.url)

    def received(self) -> Dict[str, int]:
        """What the hostile authorization server got: requests, and credentials among them."""
        counts = {"requests": 0, "token_requests": 0, "authorization": 0, "client_secret": 0, "client_assertion": 0}
        for record in self.evil.requests:
            counts["requests"] += 1
            if record.path == "/token":
                counts["token_requests"] += 1
            form = urllib.parse.parse_qs(record.body.decode("utf-8", "replace"))
            counts["authorization"] += "authorization" in record.headers
            counts["client_secret"] += "client_secret" in form
            counts["client_assertion"] += "client_assertion" in form
        return counts

    def credentials(self) -> int:
        counts = self.received()
        return counts["authorization"] + counts["client_secret"] + counts["client_assertion"]


@pytest.fixture
def hostile(ca, make_server) -> Iterator[Hostile]:
    real = make_server()
    with MetadataServer(ca) as mcp, MetadataServer(ca) as evil:
        yield Hostile(mcp, evil, real)


def _block(hostile: Hostile, ca_bundle: str, **keys: Any) -> Dict[str, Any]:
    client_id, secret = next(iter(hostile.real.clients.items()))
    block: Dict[str, Any] = {
        "enabled": True,
        "OAUTH_CLIENT_ID": client_id,
        "OAUTH_CLIENT_SECRET": secret,
        "OAUTH_RESOURCE": hostile.url,
        "OAUTH_CA_BUNDLE_PATH": ca_bundle,
    }
    block.update(keys)
    return {k: v for k, v in block.items() if v is not None}


def _trusting(hostile: Hostile, ca_bundle: str, **keys: Any) -> og.OAuthConfig:
    return og.OAuthConfig.from_dict(_block(hostile, ca_bundle, OAUTH_TRUST_DISCOVERED_ISSUER=True, **keys))


# --------------------------------------------------------------------------- without the opt-in


def test_without_the_opt_in_a_credential_whose_destination_discovery_would_choose_is_refused(hostile, ca_bundle):
    hostile.switch()
    with pytest.raises(og.ConfigError) as refused:
        og.OAuthConfig.from_dict(_block(hostile, ca_bundle))
    assert refused.value.json_path == "$.OAUTH_ISSUER"
    assert hostile.received()["requests"] == 0 and hostile.mcp.count() == 0  # nothing was sent anywhere


# --------------------------------------------------------------------------- trust on first use


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_the_first_issuer_is_trusted_and_after_a_change_nothing_reaches_the_new_one(
    hostile, ca_bundle, clock, sleeps, caplog, method
):
    config = _trusting(hostile, ca_bundle, OAUTH_TOKEN_ENDPOINT_AUTH_METHOD=method)
    manager = og.TokenManager(clock=clock, sleep=sleeps)
    with caplog.at_level(logging.WARNING, logger="oauth_gateway"):
        first = manager.get_token("mcp", config)
        manager.refresh("mcp", config)
    assert first.access_token in hostile.real.issued_history and hostile.real.count("/token") == 2
    trusted = [r for r in caplog.records if "on first use" in r.getMessage()]
    assert len(trusted) == 1 and trusted[0].levelno == logging.WARNING  # once, for two fetches
    assert hostile.real_issuer in trusted[0].getMessage()

    hostile.switch()
    clock.advance(LIFETIME + 1)  # the token and the metadata have expired
    with pytest.raises(og.DiscoveryError, match="trusted"):
        manager.get_token("mcp", config)
    clock.advance(og.manager.DEFAULT_FAILURE_COOLDOWN + 1)
    with pytest.raises(og.DiscoveryError):
        manager.refresh("mcp", config)
    access(manager).forget_discovery(config)  # what a 401 or an invalid_client refusal does: still refused
    with pytest.raises(og.DiscoveryError):
        manager.refresh("mcp", config)
    assert hostile.credentials() == 0
    assert hostile.received()["requests"] == 0  # not even its metadata was asked for
    assert hostile.real.count("/token") == 2


def test_the_trusted_issuer_is_kept_while_the_server_still_lists_it(hostile, ca_bundle, clock, sleeps):
    config = _trusting(hostile, ca_bundle)
    manager = og.TokenManager(clock=clock, sleep=sleeps)
    manager.get_token("mcp", config)
    hostile.name(hostile.evil.url, hostile.real_issuer)  # the hostile one first now
    clock.advance(LIFETIME + 1)
    token = manager.get_token("mcp", config)
    assert token.access_token in hostile.real.issued_history and hostile.real.count("/token") == 2
    assert hostile.received()["requests"] == 0


def test_a_private_key_jwt_assertion_never_reaches_the_new_issuer(hostile, ca_bundle, clock, sleeps, tmp_path):
    jwt = pytest.importorskip("jwt")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "key.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    assert jwt  # PyJWT signs the assertion
    hostile.real.publish_metadata(token_endpoint_auth_methods_supported=["private_key_jwt"])
    config = _trusting(hostile, ca_bundle, OAUTH_CLIENT_SECRET=None, OAUTH_CLIENT_PRIVATE_KEY_PATH=str(path))
    manager = og.TokenManager(clock=clock, sleep=sleeps)
    assert access(manager).resolve(config).auth_method == "private_key_jwt"  # the first use, at the real server
    hostile.switch()
    clock.advance(PRM_MAX_AGE + 1)
    with pytest.raises(og.DiscoveryError):
        manager.get_token("mcp", config)
    assert hostile.received()["client_assertion"] == 0 and hostile.received()["requests"] == 0


def test_processes_sharing_a_file_cache_trust_the_issuer_the_first_one_found(hostile, ca_bundle, clock, tmp_path):
    config = _trusting(hostile, ca_bundle)
    directory = str(tmp_path / "tokens")
    first = og.TokenManager(cache=FileTokenCache(directory, clock=clock), clock=clock)
    first.get_token("mcp", config)
    hostile.switch()
    # A process that starts after the switch reads the trusted issuer from the shared cache.
    second = og.TokenManager(cache=FileTokenCache(directory, clock=clock), clock=clock)
    with pytest.raises(og.DiscoveryError, match="trusted"):
        second.get_token("other-name", config)
    assert hostile.credentials() == 0 and hostile.received()["requests"] == 0
    # Control: a process with its own memory cache only has nothing to go by.
    assert access(og.TokenManager(clock=clock)).resolve(config).issuer == hostile.evil.url


def test_processes_sharing_redis_trust_the_issuer_the_first_one_found(hostile, ca_bundle, clock, redis_server):
    pytest.importorskip("redis")
    from oauth_gateway.contrib.redis_cache import RedisTokenCache

    config = _trusting(hostile, ca_bundle)
    first = og.TokenManager(cache=RedisTokenCache(redis_server.url, clock=clock), clock=clock)
    first.get_token("mcp", config)
    hostile.switch()
    second = og.TokenManager(cache=RedisTokenCache(redis_server.url, clock=clock), clock=clock)
    with pytest.raises(og.DiscoveryError, match="trusted"):
        second.get_token("mcp", config)
    assert hostile.credentials() == 0 and hostile.received()["requests"] == 0


def test_a_pinned_issuer_the_resource_does_not_name_sends_nothing(hostile, ca_bundle):
    hostile.switch()
    config = og.OAuthConfig.from_dict(_block(hostile, ca_bundle, OAUTH_ISSUER=hostile.real_issuer))
    with pytest.raises(og.DiscoveryError, match="not the configured issuer"):
        og.TokenManager().get_token("mcp", config)
    assert hostile.received()["requests"] == 0 and hostile.real.count("/token") == 0


# --------------------------------------------------------------------------- endpoints and audience


@pytest.mark.parametrize("pinned", [False, True])
def test_a_token_endpoint_off_the_issuers_origin_is_refused(hostile, ca_bundle, pinned):
    hostile.real.publish_metadata(token_endpoint=hostile.evil.url + "/token")
    keys = {"OAUTH_ISSUER": hostile.real_issuer} if pinned else {"OAUTH_TRUST_DISCOVERED_ISSUER": True}
    config = og.OAuthConfig.from_dict(_block(hostile, ca_bundle, **keys))
    with pytest.raises(og.DiscoveryError, match="not on the issuer's origin") as refused:
        og.TokenManager().get_token("mcp", config)
    assert "OAUTH_TOKEN_URL" in str(refused.value)
    assert hostile.received()["requests"] == 0 and hostile.real.count("/token") == 0


def test_a_revocation_endpoint_off_the_issuers_origin_is_refused_unless_configured(hostile, ca_bundle):
    hostile.real.publish_metadata(revocation_endpoint=hostile.evil.url + "/revoke")
    manager = og.TokenManager()
    with pytest.raises(og.DiscoveryError, match="revocation_endpoint"):
        manager.get_token("mcp", _trusting(hostile, ca_bundle))
    configured = _trusting(hostile, ca_bundle, OAUTH_REVOCATION_URL=hostile.real.revocation_url)
    assert manager.get_token("configured", configured).access_token in hostile.real.issued
    assert manager.revoke("configured", configured) is True
    assert hostile.received()["requests"] == 0 and hostile.real.count("/revoke") == 1


@pytest.mark.parametrize("audience, allowed", [("token_endpoint", True), ("issuer", True), ("elsewhere", False)])
def test_a_configured_assertion_audience_must_be_the_discovered_token_endpoint(hostile, ca_bundle, audience, allowed):
    value = {
        "token_endpoint": hostile.real.token_url,
        "issuer": hostile.real_issuer,
        "elsewhere": "https://idp.example.com/token",
    }[audience]
    config = _trusting(hostile, ca_bundle, OAUTH_CLIENT_ASSERTION_AUDIENCE=value)
    manager = og.TokenManager()
    if allowed:
        assert access(manager).resolve(config).token_url == hostile.real.token_url
    else:
        with pytest.raises(og.DiscoveryError, match="OAUTH_CLIENT_ASSERTION_AUDIENCE"):
            manager.get_token("mcp", config)
        assert hostile.real.count("/token") == 0
