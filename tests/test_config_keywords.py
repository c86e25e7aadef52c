"""OAuthConfig built from keyword arguments: Python names, validated as from_dict."""

from __future__ import annotations

import pytest

import oauth_gateway as og

URL = "https://idp.example.com/oauth/token"


def test_keywords_build_the_same_config_as_from_dict():
    by_keyword = og.OAuthConfig(client_id="gateway", client_secret="s3cr3t-value", token_url=URL, scope="read write")
    by_dict = og.OAuthConfig.from_dict(
        {
            "enabled": True,
            "OAUTH_CLIENT_ID": "gateway",
            "OAUTH_CLIENT_SECRET": "s3cr3t-value",
            "OAUTH_TOKEN_URL": URL,
            "OAUTH_SCOPE": "read write",
        }
    )
    assert by_keyword == by_dict
    assert by_keyword.scopes == frozenset({"read", "write"})
    assert "s3cr3t-value" not in repr(by_keyword)


@pytest.mark.parametrize(
    "options, where",
    [
        ({"client_id": "gateway", "client_secret": "x"}, "OAUTH_TOKEN_URL"),
        ({"client_id": "gateway", "client_secret": "x", "token_url": "http://idp/token"}, "OAUTH_TOKEN_URL"),
        ({"client_id": "gateway", "client_secret": "x", "token_url": URL, "timeout": "soon"}, "OAUTH_TIMEOUT"),
        ({"token_url": URL, "client_secret": "x"}, "OAUTH_CLIENT_ID"),
        ({}, "OAUTH_"),
    ],
)
def test_bad_or_missing_keywords_raise_config_error_never_key_error(options, where):
    with pytest.raises(og.ConfigError) as caught:
        og.OAuthConfig(**options)
    assert not isinstance(caught.value, KeyError)
    assert where in str(caught.value)


def test_an_unknown_keyword_is_a_type_error_listing_the_names():
    with pytest.raises(TypeError, match="token_uri.*token_url"):
        og.OAuthConfig(client_id="gateway", client_secret="x", token_uri=URL)
