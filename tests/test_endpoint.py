"""TokenEndpoint: built once per resolved config, and a short way from get_token to the wire."""

from __future__ import annotations

import sys
from typing import Any, List

import pytest
from requests.adapters import HTTPAdapter

import oauth_gateway as og
from oauth_gateway.client import TokenClient, client_credentials_form
from oauth_gateway.client_auth import ClientSecretBasic, ClientSecretPost
from oauth_gateway.endpoint import TokenEndpoint, TokenRetry
from servers import TEST_CLIENT_ID, TEST_CLIENT_SECRET

#: Library frames on the stack when a cache miss reaches ``session.request`` (issue 21: at most
#: 6). The token client's share (below ``manager._fetch``) is :data:`CLIENT_FRAMES`; the rest are
#: the manager's (get_token, the slow path, the single flight, _fetch).
MAX_FRAMES = 6
#: ``TokenClient.request_token`` and its one loop, ``_send``.
CLIENT_FRAMES = 2


class StackAdapter(HTTPAdapter):
    """An adapter that records, at each send, the oauth_gateway frames on the stack (then sends)."""

    def __init__(self) -> None:
        super().__init__(max_retries=0)
        self.stacks: List[List[str]] = []

    def send(self, request: Any, **kwargs: Any) -> Any:
        names = []
        frame = sys._getframe(1)
        while frame is not None:
            module = frame.f_globals.get("__name__", "")
            if module == "oauth_gateway" or module.startswith("oauth_gateway."):
                names.append("%s.%s" % (module, frame.f_code.co_name))
            frame = frame.f_back
        self.stacks.append(names)
        return super().send(request, **kwargs)


def test_a_cache_miss_reaches_session_request_in_few_library_frames(manager, auth_server, make_config):
    config = make_config(auth_server)
    adapter = StackAdapter()
    manager._client.endpoint(config).session.mount("https://", adapter)

    token = manager.get_token("oauth-api", config)

    assert token.access_token in auth_server.issued
    assert len(adapter.stacks) == 1
    stack = adapter.stacks[0]
    print("library frames at session.request:", len(stack), stack)
    below_manager = stack[: next(i for i, name in enumerate(stack) if name.startswith("oauth_gateway.manager."))]
    assert below_manager == ["oauth_gateway.client._send", "oauth_gateway.client.request_token"]
    assert len(below_manager) == CLIENT_FRAMES
    assert len(stack) <= MAX_FRAMES
    # A hit does not reach the wire at all.
    assert manager.get_token("oauth-api", config) is token and len(adapter.stacks) == 1


def test_an_endpoint_is_built_once_per_config(auth_server, make_block, sleeps):
    client = TokenClient(sleep=sleeps)
    block = make_block(auth_server)
    first = client.endpoint(og.OAuthConfig.from_dict(block))
    assert client.endpoint(og.OAuthConfig.from_dict(block)) is first  # an equal config, loaded again
    slower = client.endpoint(og.OAuthConfig.from_dict(dict(block, OAUTH_TIMEOUT=30)))
    assert slower is not first and slower.timeout.read_timeout == 30
    assert slower.session is first.session  # one pool per TLS identity
    client.close()
    assert client.endpoint(og.OAuthConfig.from_dict(block)) is not first


def test_the_endpoint_holds_what_every_attempt_needs(auth_server, make_block, sleeps):
    block = make_block(
        auth_server,
        OAUTH_CUSTOM_HEADERS={"X-Tenant": "t-1"},
        OAUTH_TIMEOUT=7,
        OAUTH_CONNECT_TIMEOUT=2,
        OAUTH_MAX_RETRIES=2,
        OAUTH_RETRY_BACKOFF=0.5,
        OAUTH_REVOCATION_URL=auth_server.revocation_url,
    )
    endpoint = TokenClient(sleep=sleeps).endpoint(og.OAuthConfig.from_dict(block))
    assert endpoint.url == auth_server.token_url
    assert endpoint.revocation_url == auth_server.revocation_url
    assert (endpoint.timeout.connect_timeout, endpoint.timeout.read_timeout, endpoint.deadline) == (2, 7, 16.0)
    assert isinstance(endpoint.retry, TokenRetry) and endpoint.retry.total == 2 and endpoint.max_attempts == 3
    assert endpoint.retry.backoff_base == 0.5 and endpoint.retry.sleep_fn is sleeps
    assert endpoint.headers["X-Tenant"] == "t-1" and endpoint.headers["Accept"] == "application/json"
    assert isinstance(endpoint.client_auth, ClientSecretBasic)
    assert endpoint.verify == block["OAUTH_CA_BUNDLE_PATH"] and endpoint.cert is None
    assert isinstance(
        TokenClient(sleep=sleeps)
        .endpoint(og.OAuthConfig.from_dict(dict(block, OAUTH_USE_BASIC_AUTH=False)))
        .client_auth,
        ClientSecretPost,
    )


def test_an_endpoint_is_immutable_and_its_repr_hides_the_secret(auth_server, make_config, sleeps):
    endpoint = TokenClient(sleep=sleeps).endpoint(make_config(auth_server))
    with pytest.raises(AttributeError):
        endpoint.url = "https://elsewhere.example/token"  # type: ignore[misc]
    shown = repr(endpoint) + repr(endpoint.headers) + repr(endpoint.redact)
    assert TEST_CLIENT_SECRET not in shown and TEST_CLIENT_ID in shown
    assert isinstance(endpoint, TokenEndpoint)


def test_an_endpoint_without_credentials_builds_no_client_auth(auth_server, make_block, sleeps):
    # A provider's config has no client secret: its transport (the provider's own requests) still works.
    block = make_block(
        auth_server, OAUTH_CLIENT_SECRET="", OAUTH_PROVIDER="static", OAUTH_PROVIDER_OPTIONS={"env": "OG_UNSET_TOKEN"}
    )
    client = TokenClient(sleep=sleeps)
    endpoint = client.endpoint(og.OAuthConfig.from_dict(block), credentials=False)
    assert endpoint.client_auth is None and endpoint.grant is None
    with pytest.raises(og.ConfigError, match="client_secret_basic needs a client secret"):
        client.endpoint(og.OAuthConfig.from_dict(block))


def test_the_token_client_sends_what_the_endpoint_describes(auth_server, make_config, sleeps):
    client = TokenClient(sleep=sleeps)
    config = make_config(auth_server, OAUTH_SCOPE="read", OAUTH_CUSTOM_HEADERS={"X-Tenant": "t-1"})
    response = client.request_token(client.endpoint(config), client_credentials_form(config), "oauth-api")
    assert response.access_token in auth_server.issued
    request = auth_server.requests[-1]
    assert request.form["grant_type"] == ["client_credentials"] and request.form["scope"] == ["read"]
    assert request.headers["X-Tenant"] == "t-1"
    assert request.basic_auth == (TEST_CLIENT_ID, TEST_CLIENT_SECRET)
