"""Token: expiry arithmetic, immutability and masking (pure, no server)."""

from __future__ import annotations

import pickle

import pytest

from oauth_gateway.tokens import Token, parse_scope, refresh_buffer

SECRET_TOKEN = "tok-0123456789abcdefghijklmnop"


def test_refresh_buffer_is_capped_at_half_the_lifetime():
    assert refresh_buffer(300, 3600) == 300
    assert refresh_buffer(300, 60) == 30
    assert refresh_buffer(0, 60) == 0
    assert refresh_buffer(-5, 60) == 0


def test_expiry_and_staleness():
    token = Token(SECRET_TOKEN, "bearer", expires_in=3600, issued_at=100.0, expiry_buffer=300)
    assert token.token_type == "Bearer"
    assert token.authorization == "Bearer " + SECRET_TOKEN
    assert (token.expires_at, token.refresh_at) == (3700.0, 3400.0)
    assert not token.is_stale(3399.9) and token.is_stale(3400.0)
    assert not token.is_expired(3699.9) and token.is_expired(3700.0)
    assert token.expires_in_at(3600.0) == 100.0


def test_missing_expires_in_uses_the_default_lifetime():
    token = Token(SECRET_TOKEN, expires_in=None, issued_at=0.0, expiry_buffer=300, default_lifetime=600)
    assert (token.expires_at, token.refresh_at) == (600.0, 300.0)


def test_token_is_immutable_and_never_shows_itself():
    token = Token(SECRET_TOKEN, expires_in=60, scopes=["b", "a"])
    with pytest.raises(AttributeError):
        token.access_token = "other"
    for text in (repr(token), str(token), token.masked()):
        assert SECRET_TOKEN not in text
        assert SECRET_TOKEN[-8:] not in text
    assert token.scope == "a b"
    assert pickle.loads(pickle.dumps(token)) == token


def test_parse_scope():
    assert parse_scope("read  write") == frozenset(["read", "write"])
    assert parse_scope("") == frozenset()
    assert parse_scope(None) == frozenset()
