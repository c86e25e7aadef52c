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
    assert (token.expires_at_monotonic, token.refresh_at) == (3700.0, 3400.0)
    assert not token.is_stale(3399.9) and token.is_stale(3400.0)
    assert not token.is_expired(3699.9) and token.is_expired(3700.0)
    assert token.expires_in_at(3600.0) == 100.0


def test_missing_expires_in_uses_the_default_lifetime():
    token = Token(SECRET_TOKEN, expires_in=None, issued_at=0.0, expiry_buffer=300, default_lifetime=600)
    assert (token.expires_at_monotonic, token.refresh_at) == (600.0, 300.0)


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


def test_expires_at_is_epoch_seconds_and_expiry_a_utc_datetime():
    import datetime
    import time

    before = time.time()
    token = Token(SECRET_TOKEN, expires_in=600, issued_at=5.0)
    assert before + 600 <= token.expires_at <= time.time() + 600
    assert token.expires_at_monotonic == 605.0
    assert token.expiry.tzinfo is datetime.timezone.utc
    assert token.expiry.timestamp() == pytest.approx(token.expires_at, abs=1e-6)


def test_expired_is_a_property_and_is_expired_needs_no_argument():
    fresh = Token(SECRET_TOKEN, expires_in=600, issued_at=0.0)
    old = Token(SECRET_TOKEN, expires_in=60, issued_at=0.0, issued_at_epoch=1000.0)
    assert (fresh.expired, fresh.is_expired()) == (False, False)
    assert (old.expired, old.is_expired()) == (True, True)
    assert old.expires_at == 1060.0
    # The monotonic form the manager uses still takes its clock reading.
    assert not old.is_expired(59.9) and old.is_expired(60.0)


def test_to_dict_gives_iso_8601_utc_and_masks_the_token():
    token = Token(SECRET_TOKEN, expires_in=3600, issued_at=0.0, issued_at_epoch=1795812000.0, scopes=["b", "a"])
    fields = token.to_dict()
    assert fields["expires_at"] == "2026-11-27T21:40:00Z"
    assert fields["scopes"] == ["a", "b"]
    assert SECRET_TOKEN not in str(fields)
    assert token.to_dict(show_token=True)["access_token"] == SECRET_TOKEN


def test_a_token_pickled_before_expires_at_was_wall_clock_still_loads():
    from oauth_gateway.tokens import _restore

    old_state = Token(SECRET_TOKEN, expires_in=600, issued_at=0.0)._state()[:8]
    token = _restore(old_state)
    assert token.expires_at_monotonic == 600.0
    assert isinstance(token.expires_at, float)
