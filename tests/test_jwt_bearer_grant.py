"""The jwt-bearer grant (RFC 7523 section 2.1) end to end, against the suite's token server.

``OAUTH_GRANT_TYPE`` is ``urn:ietf:params:oauth:grant-type:jwt-bearer`` and the assertion
comes from ``OAUTH_CLIENT_ASSERTION_FILE`` (a Kubernetes projected token, a GitHub Actions
OIDC token written to a file...). The token server (tests/servers.py) issues a token only
for the assertions a test registers with ``accept_assertions``, so a token proves that
the file's content was sent.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any, Dict

import pytest

import oauth_gateway as og
from servers import JWT_BEARER_GRANT


def _jwt(**claims: Any) -> str:
    """An unsigned-looking JWT (the library checks shape and ``exp``; the server checks the value)."""

    def part(value: Dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims.setdefault("exp", time.time() + 600)
    claims.setdefault("sub", "system:serviceaccount:mcp:gateway")
    return "%s.%s.c2lnbmF0dXJl" % (part({"alg": "RS256", "typ": "JWT", "kid": "k1"}), part(claims))


@pytest.fixture
def bearer(auth_server, make_block, tmp_path):
    """``(config, assertion file path)`` for a client with no secret, using the jwt-bearer grant."""
    path = tmp_path / "projected" / "token"
    path.parent.mkdir()
    block = make_block(
        auth_server,
        OAUTH_GRANT_TYPE=JWT_BEARER_GRANT,
        OAUTH_CLIENT_ASSERTION_FILE=str(path),
        omit=("OAUTH_CLIENT_SECRET",),
    )
    path.write_text(_jwt(n=0))  # loading the config reads nothing, but the path must exist
    return og.OAuthConfig.from_dict(block), path


def test_the_jwt_bearer_grant_gets_a_token_for_the_assertion_in_the_file(auth_server, bearer):
    config, path = bearer
    assertion = _jwt(n=1)
    path.write_text(assertion + "\n")  # platforms often end the file with a newline
    auth_server.accept_assertions(assertion)
    assert config.auth_method == "none"

    token = og.TokenManager().get_token("workload", config)

    assert token.access_token in auth_server.issued
    (record,) = auth_server.requests_to("/token")
    assert record.grant_type == JWT_BEARER_GRANT
    assert record.first("assertion") == assertion
    assert record.basic_auth is None and record.first("client_secret") is None
    assert record.first("client_assertion") is None  # the assertion is the grant, not client auth
    assert record.first("client_id") == config.client_id


def test_a_rotated_assertion_file_is_sent_on_the_next_forced_refresh(auth_server, bearer):
    config, path = bearer
    manager = og.TokenManager()
    first, second, third = _jwt(n=1), _jwt(n=2), _jwt(n=3)
    path.write_text(first)
    auth_server.accept_assertions(first)
    tokens = [manager.get_token("workload", config)]
    for rotated in (second, third):
        path.write_text(rotated)  # the platform rotates the file ...
        auth_server.accept_assertions(rotated)  # ... and the old assertion is no longer valid
        tokens.append(manager.refresh("workload", config))
    assert [record.first("assertion") for record in auth_server.requests_to("/token")] == [first, second, third]
    assert len({token.access_token for token in tokens}) == 3
    assert all(token.access_token in auth_server.issued for token in tokens)


def test_an_expired_assertion_file_is_one_error_without_a_request_or_a_retry(auth_server, bearer, clock):
    config, path = bearer
    expired = _jwt(n=1, exp=time.time() - 30)
    path.write_text(expired)
    auth_server.accept_assertions(expired)
    slept = []
    manager = og.TokenManager(clock=clock, sleep=slept.append)

    with pytest.raises(og.ConfigError) as info:
        manager.get_token("workload", config)

    text = str(info.value)
    assert "expired" in text and str(path) in text
    assert expired not in text and expired.split(".")[1] not in text
    assert info.value.json_path.endswith("OAUTH_CLIENT_ASSERTION_FILE")
    assert auth_server.count("/token") == 0
    assert slept == []
    metrics = manager.get_metrics()
    assert metrics["token_retries"] == 0


def test_an_assertion_the_server_refuses_is_invalid_grant_after_one_request_and_no_other_grant(auth_server, bearer):
    config, path = bearer
    path.write_text(_jwt(n=1))
    auth_server.accept_assertions(_jwt(n=2))
    manager = og.TokenManager(sleep=lambda seconds: None)
    with pytest.raises(og.InvalidGrant):
        manager.get_token("workload", config)
    (record,) = auth_server.requests_to("/token")
    assert record.grant_type == JWT_BEARER_GRANT
    assert manager.get_metrics()["token_retries"] == 0


def test_the_jwt_bearer_grant_with_a_client_secret_authenticates_the_client_too(auth_server, make_block, tmp_path):
    path = tmp_path / "token"
    assertion = _jwt(n=1)
    path.write_text(assertion)
    auth_server.accept_assertions(assertion)
    config = og.OAuthConfig.from_dict(
        make_block(auth_server, OAUTH_GRANT_TYPE=JWT_BEARER_GRANT, OAUTH_CLIENT_ASSERTION_FILE=str(path))
    )
    assert og.TokenManager().get_token("workload", config).access_token in auth_server.issued
    (record,) = auth_server.requests_to("/token")
    assert record.first("assertion") == assertion
    assert record.basic_auth is not None or record.first("client_secret") is not None

    # The server checks those credentials: a wrong secret is refused although the assertion is good.
    wrong = og.OAuthConfig.from_dict(
        make_block(
            auth_server,
            OAUTH_GRANT_TYPE=JWT_BEARER_GRANT,
            OAUTH_CLIENT_ASSERTION_FILE=str(path),
            OAUTH_CLIENT_SECRET="not the secret at all",
        )
    )
    with pytest.raises(og.InvalidClient):
        og.TokenManager(sleep=lambda seconds: None).get_token("workload", wrong)
