"""Discovery and client authentication through TokenManager.get_token, against real servers.

oidc-provider (tests/oidc_provider.py) serves real OpenID discovery and checks client
assertions (a replayed ``jti`` is refused); a MetadataServer (tests/metadata_servers.py)
plays the MCP server with its Protected Resource Metadata; tests/servers.py's token server
records the form fields of each request.
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any, Dict

import pytest
import trustme

import oauth_gateway as og
from metadata_servers import MetadataServer
from oauth_gateway._access import access
from oidc_provider import RESOURCE, OidcProvider, oidc_provider  # noqa: F401 - the fixture

pytest.importorskip("jwt")


def _block(provider: Any, **keys: Any) -> Dict[str, Any]:
    block: Dict[str, Any] = {"enabled": True, "OAUTH_CA_BUNDLE_PATH": str(provider.ca_file)}
    block.update(keys)
    return block


def _unsigned_jwt(claims: Dict[str, Any]) -> str:
    def part(value: Dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return "%s.%s.sig" % (part({"alg": "RS256", "typ": "JWT"}), part(claims))


class CountingManager(og.TokenManager):
    """Counts its resolver's ``resolve`` calls: discovery happens only through it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resolved = 0
        resolve = self._resolver.resolve

        def counting(config: og.OAuthConfig, deadline: Any = None) -> og.OAuthConfig:
            self.resolved += 1
            return resolve(config, deadline)

        self._resolver.resolve = counting  # type: ignore[method-assign]


# --------------------------------------------------------------------------- discovery


@pytest.mark.slow
def test_a_config_with_only_client_id_secret_and_issuer_gets_a_token_from_oidc_provider(oidc_provider):
    client_id, secret = oidc_provider.clients["basic"]
    config = og.OAuthConfig.from_dict(
        _block(oidc_provider, OAUTH_CLIENT_ID=client_id, OAUTH_CLIENT_SECRET=secret, OAUTH_ISSUER=oidc_provider.issuer)
    )
    assert config.token_url == "" and config.is_discovered
    manager = og.TokenManager()
    token = manager.get_token("oidc", config)
    assert token.access_token
    resolved = access(manager).resolve(config)
    assert resolved.token_url == oidc_provider.token_url
    assert resolved.revocation_url == oidc_provider.revocation_url
    assert resolved.auth_method == "client_secret_basic"
    assert resolved.issuer == oidc_provider.issuer
    assert manager.revoke("oidc", config) is True  # the discovered revocation endpoint


@pytest.fixture(scope="module")
def mcp_and_provider(tmp_path_factory):
    """A test MCP server whose Protected Resource Metadata names its own oidc-provider."""
    ca = trustme.CA()
    server = MetadataServer(ca=ca).start()
    mcp = server.url + "/mcp"
    prm_path = "/.well-known/oauth-protected-resource/mcp"
    try:
        with OidcProvider(ca, tmp_path_factory.mktemp("oidc-prm"), extra_resources=(mcp,)) as provider:
            server.json(prm_path, {"resource": mcp, "authorization_servers": [provider.issuer]})
            server.challenge("/mcp", resource_metadata=server.url + prm_path, scope="read")
            yield server, provider, mcp
    finally:
        server.stop()


@pytest.mark.slow
def test_discovery_through_protected_resource_metadata_gets_a_token_for_the_server(mcp_and_provider):
    server, provider, mcp = mcp_and_provider
    client_id, secret = provider.clients["basic"]
    config = og.OAuthConfig.from_dict(
        _block(
            provider,
            OAUTH_CLIENT_ID=client_id,
            OAUTH_CLIENT_SECRET=secret,
            OAUTH_RESOURCE=mcp,
            OAUTH_TRUST_DISCOVERED_ISSUER=True,  # the provider's port is random: trust it on first use
        )
    )
    manager = og.TokenManager()
    token = manager.get_token("prm", config)
    assert token.access_token
    resolved = access(manager).resolve(config)
    assert resolved.resources == (mcp,)
    assert resolved.scope == "read"  # from the 401 challenge
    assert resolved.auth_method == "client_secret_basic"  # preferred for a secret
    assert resolved.issuer == provider.issuer


@pytest.mark.slow
def test_ten_thousand_warm_get_token_calls_make_no_metadata_request(mcp_and_provider):
    server, provider, mcp = mcp_and_provider
    client_id, secret = provider.clients["post"]
    config = og.OAuthConfig.from_dict(
        _block(
            provider,
            OAUTH_CLIENT_ID=client_id,
            OAUTH_CLIENT_SECRET=secret,
            OAUTH_RESOURCE=mcp,
            OAUTH_TRUST_DISCOVERED_ISSUER=True,  # the provider's port is random: trust it on first use
        )
    )
    manager = CountingManager()
    first = manager.get_token("warm", config)
    assert manager.resolved == 1
    before = server.count()
    for _ in range(10000):
        assert manager.get_token("warm", config) is first
    assert server.count() - before == 0  # probe and resource metadata
    assert manager.resolved == 1  # and no authorization server metadata either


@pytest.mark.slow
def test_a_pinned_issuer_the_server_does_not_name_fails_closed_before_any_token_request(mcp_and_provider):
    server, provider, mcp = mcp_and_provider
    client_id, secret = provider.clients["post"]
    config = og.OAuthConfig.from_dict(
        _block(
            provider,
            OAUTH_CLIENT_ID=client_id,
            OAUTH_CLIENT_SECRET=secret,
            OAUTH_RESOURCE=mcp,
            OAUTH_ISSUER="https://elsewhere.example.com",
        )
    )
    with pytest.raises(og.DiscoveryError, match="not the configured issuer"):
        og.TokenManager().get_token("pinned", config)


# --------------------------------------------------------------------------- client authentication


@pytest.mark.slow
@pytest.mark.parametrize("name", ["jwt-ec", "jwt-rsa"])
def test_private_key_jwt_gets_tokens_and_two_forced_refreshes_in_a_row_both_succeed(oidc_provider, name):
    client_id, _ = oidc_provider.clients[name]
    config = og.OAuthConfig.from_dict(
        _block(
            oidc_provider,
            OAUTH_CLIENT_ID=client_id,
            OAUTH_ISSUER=oidc_provider.issuer,
            OAUTH_CLIENT_PRIVATE_KEY_PATH=str(oidc_provider.private_key_files[name]),
            OAUTH_CLIENT_KEY_ID=oidc_provider.key_ids[name],
        )
    )
    manager = og.TokenManager()
    assert access(manager).resolve(config).auth_method == "private_key_jwt"
    tokens = [manager.get_token(name, config), manager.refresh(name, config), manager.refresh(name, config)]
    assert len({token.access_token for token in tokens}) == 3  # a fresh jti each time


@pytest.mark.slow
def test_client_secret_jwt_gets_a_token(oidc_provider):
    client_id, secret = oidc_provider.clients["secret-jwt"]
    config = og.OAuthConfig.from_dict(
        _block(
            oidc_provider,
            OAUTH_CLIENT_ID=client_id,
            OAUTH_CLIENT_SECRET=secret,
            OAUTH_TOKEN_URL=oidc_provider.token_url,
            OAUTH_ISSUER=oidc_provider.issuer,
            OAUTH_TOKEN_ENDPOINT_AUTH_METHOD="client_secret_jwt",
        )
    )
    manager = og.TokenManager()
    assert manager.get_token("hs256", config).access_token
    assert manager.refresh("hs256", config).access_token


@pytest.mark.slow
def test_a_wrong_private_key_is_invalid_client_after_one_request(oidc_provider):
    client_id, _ = oidc_provider.clients["jwt-ec"]
    config = og.OAuthConfig.from_dict(
        _block(
            oidc_provider,
            OAUTH_CLIENT_ID=client_id,
            OAUTH_TOKEN_URL=oidc_provider.token_url,
            OAUTH_ISSUER=oidc_provider.issuer,
            OAUTH_CLIENT_PRIVATE_KEY_PATH=str(oidc_provider.private_key_files["jwt-rsa"]),
        )
    )
    manager = og.TokenManager(sleep=lambda seconds: None)
    with pytest.raises(og.InvalidClient):
        manager.get_token("wrong-key", config)
    metrics = manager.get_metrics()
    assert metrics["token_retries"] == 0
    assert metrics["token_acquisitions_total"] == 1


# --------------------------------------------------------------------------- assertion files


def test_an_assertion_file_is_read_again_for_each_fetch(auth_server, make_block, tmp_path):
    path = tmp_path / "token.jwt"
    first = _unsigned_jwt({"sub": "workload", "exp": time.time() + 600, "n": 1})
    path.write_text(first)
    block = make_block(auth_server, OAUTH_CLIENT_ASSERTION_FILE=str(path))
    block.pop("OAUTH_CLIENT_SECRET", None)
    config = og.OAuthConfig.from_dict(block)
    manager = og.TokenManager()
    with pytest.raises(og.TokenRequestError):  # the test server knows no assertions
        manager.refresh("file", config)
    second = _unsigned_jwt({"sub": "workload", "exp": time.time() + 600, "n": 2})
    path.write_text(second)  # the platform rotates the file
    with pytest.raises(og.TokenRequestError):
        manager.refresh("file", config)
    sent = [record.first("client_assertion") for record in auth_server.requests_to("/token")]
    assert sent == [first, second]
    types = {record.first("client_assertion_type") for record in auth_server.requests_to("/token")}
    assert types == {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}


def test_the_jwt_bearer_grant_sends_the_assertion_and_no_other_grant(auth_server, make_block, tmp_path):
    path = tmp_path / "token.jwt"
    assertion = _unsigned_jwt({"sub": "workload", "exp": time.time() + 600})
    path.write_text(assertion + "\n")
    block = make_block(
        auth_server,
        OAUTH_GRANT_TYPE="urn:ietf:params:oauth:grant-type:jwt-bearer",
        OAUTH_CLIENT_ASSERTION_FILE=str(path),
    )
    config = og.OAuthConfig.from_dict(block)
    with pytest.raises(og.UnsupportedGrantType):  # the test server offers only client_credentials
        og.TokenManager().get_token("bearer", config)
    records = auth_server.requests_to("/token")
    assert len(records) == 1  # no fallback to client_credentials
    assert records[0].first("grant_type") == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert records[0].first("assertion") == assertion
    assert records[0].basic_auth is not None  # the client still authenticates with its secret


def test_an_expired_assertion_file_is_one_config_error_without_a_request(auth_server, make_block, tmp_path):
    path = tmp_path / "token.jwt"
    path.write_text(_unsigned_jwt({"sub": "workload", "exp": time.time() - 10}))
    block = make_block(auth_server, OAUTH_CLIENT_ASSERTION_FILE=str(path))
    block.pop("OAUTH_CLIENT_SECRET", None)
    with pytest.raises(og.ConfigError, match="expired"):
        og.TokenManager().get_token("expired", og.OAuthConfig.from_dict(block))
    assert auth_server.count("/token") == 0


def test_a_config_with_a_private_key_needs_no_secret_and_fails_closed_on_a_missing_key(tmp_path):
    block = {
        "enabled": True,
        "OAUTH_CLIENT_ID": "c",
        "OAUTH_ISSUER": "https://idp.example.com",
        "OAUTH_CLIENT_PRIVATE_KEY_PATH": str(tmp_path / "missing.pem"),
    }
    with pytest.raises(og.ConfigError) as info:
        og.OAuthConfig.from_dict(block)
    assert info.value.json_path == "$.OAUTH_CLIENT_PRIVATE_KEY_PATH"
    assert "not found" in str(info.value)
    assert os.path.basename(block["OAUTH_CLIENT_PRIVATE_KEY_PATH"]) in str(info.value)


# --------------------------------------------------------------------------- the CLI


def _cli(*argv: str):
    import io

    from oauth_gateway.cli import main

    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out, err)
    return status, out.getvalue(), err.getvalue()


@pytest.mark.slow
def test_discover_by_issuer_prints_the_endpoints_methods_and_the_block_to_paste(oidc_provider):
    status, out, err = _cli("discover", "--issuer", oidc_provider.issuer, "--ca-bundle", str(oidc_provider.ca_file))
    assert status == 0, err
    assert "token endpoint:       %s" % oidc_provider.token_url in out
    assert "private_key_jwt" in out and "ES256" in out
    status, out, err = _cli(
        "discover", "--issuer", oidc_provider.issuer, "--ca-bundle", str(oidc_provider.ca_file), "--output", "json"
    )
    found = json.loads(out)
    assert found["revocation_endpoint"] == oidc_provider.revocation_url
    assert found["jwt_auth_methods"] == ["client_secret_jwt", "private_key_jwt"] or set(found["jwt_auth_methods"]) == {
        "client_secret_jwt",
        "private_key_jwt",
    }
    assert found["oauth_config"]["OAUTH_ISSUER"] == oidc_provider.issuer
    assert "OAUTH_TOKEN_URL" not in found["oauth_config"]


@pytest.mark.slow
def test_discover_through_the_server_url_names_its_resource_and_authorization_server(mcp_and_provider):
    server, provider, mcp = mcp_and_provider
    status, out, err = _cli("discover", mcp, "--ca-bundle", str(provider.ca_file), "--output", "json")
    assert status == 0, err
    found = json.loads(out)
    assert found["resource"] == mcp
    assert found["issuer"] == provider.issuer
    assert found["scopes"] == ["read"]
    assert found["oauth_config"]["OAUTH_RESOURCE"] == mcp


@pytest.mark.slow
def test_discover_errors_exit_1_naming_the_url_and_the_step(mcp_and_provider):
    server, provider, mcp = mcp_and_provider
    status, out, err = _cli(
        "discover", mcp, "--issuer", "https://elsewhere.example.com", "--ca-bundle", str(provider.ca_file)
    )
    assert status == 1
    assert out == ""
    assert "protected resource metadata %s" % (server.url + "/.well-known/oauth-protected-resource/mcp") in err
    assert "not the configured issuer" in err
