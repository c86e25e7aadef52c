"""No call hands out a token with less than min(10 s, 10 % of its lifetime) left: the caller waits for a new one."""

from __future__ import annotations

import pytest
import requests

import oauth_gateway as og
from oauth_gateway.tokens import MIN_REMAINING, MIN_REMAINING_FRACTION
from servers import Fault


@pytest.mark.parametrize(("lifetime", "margin"), [(3600, 10.0), (100, 10.0), (50, 5.0), (4, 0.4)])
def test_usable_until_is_the_shorter_of_10_s_and_a_tenth_of_the_lifetime(lifetime, margin):
    token = og.Token("t" * 20, "Bearer", expires_in=lifetime, issued_at=1000.0)
    assert token.usable_until == pytest.approx(1000.0 + lifetime - margin)
    assert margin == pytest.approx(min(MIN_REMAINING, MIN_REMAINING_FRACTION * lifetime))
    assert token.is_usable(token.usable_until - 0.001)
    assert not token.is_usable(token.usable_until)
    assert not token.is_expired(token.usable_until)  # not expired yet: just too close to it


def test_a_token_in_its_last_10_seconds_is_replaced_even_without_a_refresh_buffer(
    manager, auth_server, make_config, clock
):
    auth_server.expires_in = 100
    config = make_config(auth_server, OAUTH_MAX_RETRIES=0, OAUTH_TOKEN_EXPIRY_BUFFER=0)
    first = manager.get_token("oauth-api", config)
    clock.advance(89)
    assert manager.get_token("oauth-api", config) is first  # 11 s left: still handed out
    clock.advance(2)
    second = manager.get_token("oauth-api", config)  # 9 s left: the caller waits for a new one
    assert second.access_token != first.access_token
    assert auth_server.count() == 2
    assert second.expires_in_at(clock()) > MIN_REMAINING


def test_stale_if_error_never_serves_a_token_in_its_last_instant(manager, auth_server, make_config, clock):
    auth_server.expires_in = 100
    config = make_config(auth_server, OAUTH_MAX_RETRIES=0)
    manager.get_token("oauth-api", config)
    clock.advance(60)  # stale (buffer capped at half the lifetime): a failed refresh serves the old token
    auth_server.set_faults([Fault(status=503, json={"error": "temporarily_unavailable"})])
    served = manager.get_token("oauth-api", config)
    assert served.expires_in_at(clock()) == pytest.approx(40)
    clock.advance(35)  # 5 s left: less than min(10 s, 10 s)
    auth_server.set_faults([Fault(status=503, json={"error": "temporarily_unavailable"})] * 2)
    with pytest.raises(og.TokenRequestError):
        manager.get_token("oauth-api", config)
    assert auth_server.count() == 3


def test_the_auth_object_gets_a_fresh_token_too(manager, auth_server, make_config, clock):
    auth_server.expires_in = 100
    config = make_config(auth_server, OAUTH_MAX_RETRIES=0, OAUTH_TOKEN_EXPIRY_BUFFER=0)
    auth = manager.auth("oauth-api", config)
    first = requests.Request("GET", "https://127.0.0.1:1/x").prepare()
    auth(first)
    clock.advance(91)
    second = requests.Request("GET", "https://127.0.0.1:1/x").prepare()
    auth(second)
    assert second.headers["Authorization"] != first.headers["Authorization"]
    assert auth_server.count() == 2
