"""The same client tests against our test server and an independent one (the npm oidc-provider).

Each IdP is wrapped in a small adapter that gives an ``oauth_config`` block for a client
authentication method and answers whether a token is still active (introspection).
"""

from __future__ import annotations

import pytest
import requests

import oauth_gateway as og
from oauth_gateway.client_auth import basic_credentials
from oidc_provider import RESOURCE, OidcProvider


class _Ours:
    name = "test-server"

    def __init__(self, server, ca_bundle, client_cert):
        self.server, self.ca_bundle, self.client_cert = server, ca_bundle, client_cert

    def block(self, method, **extra):
        import servers

        block = servers.oauth_block(self.server, ca_bundle=self.ca_bundle)
        if method == "client_secret_post":
            block["OAUTH_USE_BASIC_AUTH"] = False
        if method == "tls_client_auth":
            del block["OAUTH_CLIENT_SECRET"]
            block.update(
                OAUTH_USE_MTLS=True,
                OAUTH_CLIENT_CERT_PATH=self.client_cert[0],
                OAUTH_CLIENT_KEY_PATH=self.client_cert[1],
            )
        block.update(extra)
        return block

    def is_active(self, token):
        response = requests.post(self.server.introspection_url, data={"token": token}, verify=self.ca_bundle)
        return response.json()["active"]

    def last_form(self):
        return self.server.requests[-1].form


class _OidcProvider:
    name = "oidc-provider"

    def __init__(self, provider):
        self.provider = provider

    def block(self, method, **extra):
        provider = self.provider
        kind = {"client_secret_basic": "basic", "client_secret_post": "post", "tls_client_auth": "mtls"}[method]
        client_id, secret = provider.clients[kind]
        block = {
            "enabled": True,
            "OAUTH_VERSION": "2.1",
            "OAUTH_CLIENT_ID": client_id,
            "OAUTH_TOKEN_URL": provider.token_url,
            "OAUTH_REVOCATION_URL": provider.revocation_url,
            "OAUTH_CA_BUNDLE_PATH": str(provider.ca_file),
            "OAUTH_SCOPE": "read write",
        }
        if secret:
            block["OAUTH_CLIENT_SECRET"] = secret
        if method == "client_secret_post":
            block["OAUTH_USE_BASIC_AUTH"] = False
        if method == "tls_client_auth":
            block.update(
                OAUTH_USE_MTLS=True,
                OAUTH_CLIENT_CERT_PATH=str(provider.client_cert_file),
                OAUTH_CLIENT_KEY_PATH=str(provider.client_key_file),
            )
        block.update(extra)
        return block

    def is_active(self, token):
        client_id, secret = self.provider.clients["basic"]
        response = requests.post(
            self.provider.introspection_url,
            data={"token": token},
            headers={"Authorization": basic_credentials(client_id, secret)},
            verify=str(self.provider.ca_file),
        )
        response.raise_for_status()
        return response.json()["active"]


@pytest.fixture(scope="module")
def independent_provider(tmp_path_factory):
    import trustme

    with OidcProvider(trustme.CA(), tmp_path_factory.mktemp("oidc")) as provider:
        yield provider


@pytest.fixture(params=["test-server", "oidc-provider"])
def idp(request, auth_server, ca_bundle, client_cert):
    if request.param == "test-server":
        return _Ours(auth_server, ca_bundle, client_cert)
    return _OidcProvider(request.getfixturevalue("independent_provider"))


@pytest.fixture
def manager(sleeps):
    with og.TokenManager(sleep=sleeps) as made:
        yield made


METHODS = ["client_secret_basic", "client_secret_post", "tls_client_auth"]


@pytest.mark.parametrize("method", METHODS)
def test_token_for_each_client_authentication_method(idp, manager, method):
    config = og.OAuthConfig.from_dict(idp.block(method, OAUTH_SCOPE="read write"))
    assert config.auth_method == method
    token = manager.get_token("oauth-api", config)
    assert token.token_type == "Bearer"
    assert token.scopes == frozenset(["read", "write"])
    assert idp.is_active(token.access_token)
    assert manager.get_token("oauth-api", config) is token


def test_resource_indicator(idp, manager):
    config = og.OAuthConfig.from_dict(idp.block("client_secret_basic", OAUTH_RESOURCE=RESOURCE))
    token = manager.get_token("oauth-api", config)
    assert idp.is_active(token.access_token)


@pytest.mark.parametrize("method", METHODS)
def test_revocation(idp, manager, method):
    config = og.OAuthConfig.from_dict(idp.block(method))
    token = manager.get_token("oauth-api", config)
    assert manager.revoke("oauth-api", config) is True
    assert not idp.is_active(token.access_token)
    assert manager.get_token("oauth-api", config).access_token != token.access_token


def test_wrong_secret_is_invalid_client(idp, manager):
    config = og.OAuthConfig.from_dict(idp.block("client_secret_basic", OAUTH_CLIENT_SECRET="wrong:secret%2B"))
    with pytest.raises(og.InvalidClient) as info:
        manager.get_token("oauth-api", config)
    assert info.value.status_code in (400, 401)
    assert str(info.value).startswith("OAuth token request failed: invalid_client")
