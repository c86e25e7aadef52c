"""RedisTokenCache against a real redis-server the tests start: sharing, TTL, locks, encryption, outages.

Two managers with two caches stand for two processes here; tests/test_many_workers.py
runs real processes. redis-server comes from Debian's package; without it these tests
fail with a message saying so (or skip with OAUTH_GATEWAY_SKIP_REDIS=1).
"""

from __future__ import annotations

import itertools
import json
import logging
import sys
import time
import warnings

import pytest

import oauth_gateway as og
from fakes import FakeClock, RecordingSleep
from oauth_gateway import cache_from_settings
from oauth_gateway.cache import CacheEntry
from oauth_gateway.contrib.store import key_digest
from workers.redis_server import RedisServer, free_port, require_redis

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*no longer supported.*")
    from cryptography.fernet import Fernet

KEY = ("oauth-api", "default")


@pytest.fixture
def raw(redis_server):
    """A plain redis client on a flushed server."""
    client = redis_server.client()
    client.flushall()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def make_cache(redis_server, raw):
    from oauth_gateway.contrib.redis_cache import RedisTokenCache

    def make(**options):
        options.setdefault("url", redis_server.url)
        return RedisTokenCache(**options)

    return make


@pytest.fixture
def config(auth_server, make_block):
    return og.OAuthConfig.from_dict(make_block(auth_server))


def _token_key(prefix="oauth-gateway:"):
    return ("%stoken:{%s}" % (prefix, key_digest(KEY))).encode()


def _lock_key(prefix="oauth-gateway:"):
    return ("%slock:{%s}" % (prefix, key_digest(KEY))).encode()


# --------------------------------------------------------------------------- sharing


def test_a_second_process_reads_the_token_from_redis(make_cache, config, auth_server, raw):
    first = og.TokenManager(cache=make_cache()).get_token("oauth-api", config)
    other = og.TokenManager(cache=make_cache())
    second = other.get_token("oauth-api", config)
    assert second.access_token == first.access_token and auth_server.count() == 1
    assert raw.keys("*") == [_token_key()]  # hashed: no server name in the key
    # The token lives as long as it is valid.
    assert 3590 * 1000 < raw.pttl(_token_key()) <= 3600 * 1000


def test_hits_are_served_from_local_memory(make_cache, config, auth_server, raw):
    manager = og.TokenManager(cache=make_cache())
    token = manager.get_token("oauth-api", config)
    raw.flushall()  # a Redis read now would miss and fetch
    assert manager.get_token("oauth-api", config) is token
    assert auth_server.count() == 1


def test_the_ttl_follows_a_short_token(make_server, make_block, make_cache, raw):
    server = make_server(expires_in=5)
    og.TokenManager(cache=make_cache()).get_token("oauth-api", og.OAuthConfig.from_dict(make_block(server)))
    assert 3000 < raw.pttl(_token_key()) <= 5000


def test_prefixes_keep_caches_apart(make_cache, config, auth_server, raw):
    og.TokenManager(cache=make_cache(prefix="team-a:")).get_token("oauth-api", config)
    og.TokenManager(cache=make_cache(prefix="team-b:")).get_token("oauth-api", config)
    assert auth_server.count() == 2
    assert sorted(raw.keys("*")) == sorted([_token_key("team-a:"), _token_key("team-b:")])


def test_invalidate_deletes_the_redis_entry(make_cache, config, raw):
    manager = og.TokenManager(cache=make_cache())
    manager.get_token("oauth-api", config)
    manager.invalidate("oauth-api")
    assert raw.exists(_token_key()) == 0


def test_a_client_that_decodes_responses_works(redis_server, make_cache, config, auth_server):
    import redis

    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    og.TokenManager(cache=make_cache(url=None, client=client)).get_token("oauth-api", config)
    og.TokenManager(cache=make_cache(url=None, client=client)).get_token("oauth-api", config)
    assert auth_server.count() == 1


# --------------------------------------------------------------------------- encryption


def test_encrypted_values_hold_no_token(make_cache, config, auth_server, raw):
    key = Fernet.generate_key().decode()
    token = og.TokenManager(cache=make_cache(encryption_key=key)).get_token("oauth-api", config)
    stored = raw.get(_token_key())
    assert stored and token.access_token.encode() not in stored
    assert b"access_token" not in stored and b"oauth-api" not in stored
    again = og.TokenManager(cache=make_cache(encryption_key=key)).get_token("oauth-api", config)
    assert again.access_token == token.access_token and auth_server.count() == 1


def test_unencrypted_values_are_plain_json(make_cache, config, raw):
    token = og.TokenManager(cache=make_cache()).get_token("oauth-api", config)
    assert token.access_token.encode() in raw.get(_token_key())  # what encryption prevents


def test_another_key_or_plaintext_is_ignored_and_replaced(make_cache, config, auth_server, caplog):
    og.TokenManager(cache=make_cache()).get_token("oauth-api", config)  # plaintext entry
    key = Fernet.generate_key().decode()
    with caplog.at_level(logging.WARNING, logger="oauth_gateway"):
        og.TokenManager(cache=make_cache(encryption_key=key)).get_token("oauth-api", config)
        og.TokenManager(cache=make_cache(encryption_key=Fernet.generate_key())).get_token("oauth-api", config)
    assert auth_server.count() == 3
    warnings_seen = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("cannot be decrypted with the configured encryption key" in m for m in warnings_seen)
    assert any("Ignoring the Redis cache entry for oauth-api" in m for m in warnings_seen)


# --------------------------------------------------------------------------- what is read back


def _epoch_key(prefix="oauth-gateway:"):
    return ("%sepoch:{%s}" % (prefix, key_digest(KEY))).encode()


def _rewrite_plain_entry(raw, **changes):
    """Replace fields of the (unencrypted) stored entry, as someone with write access to Redis could."""
    document = json.loads(raw.get(_token_key()))
    document.update(changes)
    raw.set(_token_key(), json.dumps(document).encode(), px=3600 * 1000)


@pytest.mark.parametrize("field", ["expires_at", "refresh_at", "token_refresh_at", "issued_at", "expires_in"])
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_a_time_that_is_not_finite_is_refused(make_cache, config, auth_server, raw, field, value, caplog):
    first = og.TokenManager(cache=make_cache()).get_token("oauth-api", config)
    _rewrite_plain_entry(raw, **{field: value})  # json writes Infinity / NaN, which json reads back
    with caplog.at_level(logging.WARNING, logger="oauth_gateway"):
        again = og.TokenManager(cache=make_cache()).get_token("oauth-api", config)
    assert again.access_token != first.access_token and auth_server.count() == 2
    assert any("a time in it is not a finite number" in r.getMessage() for r in caplog.records)


def test_an_expiry_years_away_is_cut_to_one_day(make_cache, config, raw):
    og.TokenManager(cache=make_cache()).get_token("oauth-api", config)
    years = time.time() + 10 * 365 * 86400.0
    _rewrite_plain_entry(raw, expires_at=years, refresh_at=years, token_refresh_at=years)
    clock = FakeClock(500.0)
    entry = make_cache(clock=clock).load(KEY)
    assert entry is not None
    assert entry.token.expires_at_monotonic <= 500.0 + 86400.0
    assert entry.refresh_at <= 500.0 + 86400.0 and entry.token.refresh_at <= 500.0 + 86400.0


def test_an_oversized_value_is_not_read_and_not_logged(make_cache, config, auth_server, raw, caplog):
    marker = b"BIG-VALUE-MARKER"
    raw.set(_token_key(), marker * (300 * 1024 // len(marker)), px=3600 * 1000)  # 300 KB
    raw.config_resetstat()
    sent_before = int(raw.info("stats")["total_net_output_bytes"])
    cache = make_cache()
    with caplog.at_level(logging.DEBUG, logger="oauth_gateway"):
        assert cache.load(KEY) is None
    sent = int(raw.info("stats")["total_net_output_bytes"]) - sent_before
    assert sent < 16 * 1024, "Redis sent %d bytes: the value was read" % sent
    messages = [r.getMessage() for r in caplog.records]
    assert any("it is 307200 bytes, more than the 65536 an entry can be, so it was not read" in m for m in messages)
    assert not any("BIG-VALUE" in m for m in messages)
    # The next fetch replaces it.
    token = og.TokenManager(cache=cache).get_token("oauth-api", config)
    assert og.TokenManager(cache=make_cache()).get_token("oauth-api", config).access_token == token.access_token
    assert auth_server.count() == 1


def test_a_revoked_token_does_not_come_back_from_a_replayed_entry(make_cache, auth_server, make_block, raw):
    key = Fernet.generate_key().decode()
    config = og.OAuthConfig.from_dict(make_block(auth_server, OAUTH_REVOCATION_URL=auth_server.revocation_url))
    revoker = og.TokenManager(cache=make_cache(encryption_key=key))
    revoked = revoker.get_token("oauth-api", config)
    saved = raw.get(_token_key())  # someone with access to Redis keeps the encrypted entry ...
    revoker.revoke("oauth-api", config)
    assert revoked.access_token in auth_server.revoked and raw.exists(_token_key()) == 0
    raw.set(_token_key(), saved, px=3600 * 1000)  # ... and puts it back after the revocation
    other = og.TokenManager(cache=make_cache(encryption_key=key))  # a process started afterwards
    fresh = other.get_token("oauth-api", config)
    assert fresh.access_token != revoked.access_token and auth_server.count("/token") == 2
    # The revoker does not take it back either, and the new entry is shared.
    raw.set(_token_key(), saved, px=3600 * 1000)
    assert revoker.get_token("oauth-api", config).access_token != revoked.access_token


def test_a_rolled_back_epoch_is_restored_by_a_process_that_saw_it(make_cache, config, auth_server, raw, caplog):
    manager = og.TokenManager(cache=make_cache())
    old = manager.get_token("oauth-api", config)
    saved = raw.get(_token_key())
    manager.invalidate("oauth-api")
    assert int(raw.get(_epoch_key())) == 1
    raw.delete(_epoch_key())  # Redis restarted empty, or someone reset the epoch ...
    raw.set(_token_key(), saved, px=3600 * 1000)  # ... and the old entry is back
    with caplog.at_level(logging.WARNING, logger="oauth_gateway"):
        token = manager.get_token("oauth-api", config)
    assert token.access_token != old.access_token and auth_server.count() == 2
    assert int(raw.get(_epoch_key())) == 1
    expected = "revocation epoch of oauth-api (config: default) went back from 1 to 0"
    assert any(expected in r.getMessage() for r in caplog.records)


def test_a_token_fetched_before_a_revocation_is_not_stored_after_it(make_cache, config, raw):
    slow = make_cache()
    assert slow.load(KEY) is None  # epoch 0 seen before its fetch
    make_cache().evict(KEY)  # another process revokes meanwhile
    stale = og.Token("fetched-before-revocation-0123", expires_in=3600, issued_at=time.monotonic())
    slow.store(KEY, CacheEntry(config.fingerprint, stale, itertools.count(), stale.refresh_at))
    assert raw.exists(_token_key()) == 0
    assert slow.peek(KEY).token is stale  # still served to its own process, which did not see the revocation


# --------------------------------------------------------------------------- the lock


def test_the_lock_is_set_nx_px_with_a_random_value_and_released(make_cache, raw):
    cache = make_cache(lock_timeout=5.0)
    with cache.lock(KEY):
        value = raw.get(_lock_key())
        assert value is not None and len(value) == 32
        assert 0 < raw.pttl(_lock_key()) <= 5000
    assert raw.exists(_lock_key()) == 0
    with cache.lock(KEY):
        assert raw.get(_lock_key()) != value  # a new random value each time


def test_a_busy_lock_is_waited_for_a_bounded_time(make_cache):
    clock = FakeClock()
    sleeps = RecordingSleep(clock)
    holder = make_cache()
    waiter = make_cache(wait_timeout=3.0, clock=clock, sleep=sleeps)
    with holder.lock(KEY):
        with pytest.raises(TimeoutError) as caught:
            with waiter.lock(KEY):
                pass  # pragma: no cover - never entered
    assert "Redis lock of oauth-api (config: default) was still held" in str(caught.value)
    assert sleeps.total == pytest.approx(3.0)
    with waiter.lock(KEY):
        pass


def test_release_never_deletes_another_holders_lock(make_cache, raw):
    cache = make_cache()
    with cache.lock(KEY):
        raw.set(_lock_key(), b"another-process")  # ours expired and someone else took it
    assert raw.get(_lock_key()) == b"another-process"


def test_a_live_holder_keeps_renewing_its_lock(make_cache, raw):
    cache = make_cache(lock_timeout=0.3)
    with cache.lock(KEY):
        value = raw.get(_lock_key())
        time.sleep(0.8)  # real time: the renewal thread runs every 0.1 s
        assert raw.get(_lock_key()) == value
        assert raw.pttl(_lock_key()) > 0
    assert raw.exists(_lock_key()) == 0


def test_a_manager_fetches_anyway_when_the_lock_is_held_too_long(make_cache, config, auth_server):
    clock = FakeClock()
    holder = make_cache()
    manager = og.TokenManager(cache=make_cache(wait_timeout=1.0, clock=clock, sleep=RecordingSleep(clock)), clock=clock)
    with holder.lock(KEY):
        assert manager.get_token("oauth-api", config).access_token
    assert auth_server.count() == 1
    assert manager.get_metrics()["cache_errors"] == 1


# --------------------------------------------------------------------------- Redis down


def test_redis_down_falls_back_to_fetching_then_recovers(tmp_path, config, auth_server, caplog):
    from oauth_gateway.contrib.redis_cache import RedisTokenCache

    server = RedisServer(str(tmp_path), require_redis()).start()
    try:
        clock = FakeClock()
        cache = RedisTokenCache(server.url, retry_interval=5.0, socket_timeout=2.0, clock=clock)
        manager = og.TokenManager(cache=cache, clock=clock)
        server.stop()
        with caplog.at_level(logging.DEBUG, logger="oauth_gateway"):
            token = manager.get_token("oauth-api", config)
            assert manager.get_token("oauth-api", config) is token  # local memory still serves hits
            manager.invalidate("oauth-api")
            manager.get_token("oauth-api", config)  # Redis is left alone: fails at once
        assert auth_server.count() == 2
        metrics = manager.get_metrics()
        assert metrics["cache_errors"] >= 4
        assert metrics["token_acquisitions_failure"] == 0
        messages = [r.getMessage() for r in caplog.records]
        assert any("does not answer; tokens are fetched without it" in m for m in messages)
        assert any("trying it again in" in m for m in messages)
        assert not any(token.access_token in m for m in messages)

        server.start()  # same port, empty
        clock.advance(5.0)
        manager.invalidate("oauth-api")
        recovered = manager.get_token("oauth-api", config)
        raw = server.client()
        try:
            assert raw.exists(_token_key()) == 1  # stored in Redis again
        finally:
            raw.close()
        other = og.TokenManager(cache=RedisTokenCache(server.url))
        assert other.get_token("oauth-api", config).access_token == recovered.access_token
        assert auth_server.count() == 3
    finally:
        server.stop()


def test_an_unreachable_redis_never_fails_a_caller(config, auth_server):
    from oauth_gateway.contrib.redis_cache import RedisTokenCache

    cache = RedisTokenCache("redis://127.0.0.1:%d/0" % free_port(), socket_timeout=1.0)
    manager = og.TokenManager(cache=cache)
    assert manager.get_token("oauth-api", config).access_token
    assert manager.get_metrics()["cache_errors"] == 3  # read; lock (fails at once); write (fails at once)


# --------------------------------------------------------------------------- settings and errors


def test_settings_choose_redis(redis_server, raw):
    from oauth_gateway.contrib.redis_cache import RedisTokenCache

    key = Fernet.generate_key().decode()
    chosen = cache_from_settings(redis_server.url, encryption_key=key, environ={})
    assert isinstance(chosen, RedisTokenCache) and chosen.encrypted
    environ = {"OAUTH_GATEWAY_TOKEN_CACHE": redis_server.url, "OAUTH_GATEWAY_TOKEN_CACHE_ENCRYPTION_KEY": key}
    from_env = cache_from_settings("memory", environ=environ)
    assert isinstance(from_env, RedisTokenCache) and from_env.encrypted


def test_a_password_in_the_url_is_not_shown(redis_server):
    chosen = cache_from_settings("redis://:hunter2-password@127.0.0.1:%d/0" % redis_server.port, environ={})
    assert "hunter2" not in repr(chosen) and "***@127.0.0.1" in repr(chosen)


def test_without_the_redis_package_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.delitem(sys.modules, "oauth_gateway.contrib.redis_cache", raising=False)
    with pytest.raises(og.ConfigError) as caught:
        cache_from_settings("redis://127.0.0.1:6379/0", environ={})
    message = str(caught.value)
    assert message.startswith("$.common_mcp_gateway_config.oauth_token_cache: selects the Redis cache")
    assert "pip install 'oauth-gateway[redis]'" in message


def test_bad_arguments_are_config_errors(redis_server):
    import redis

    from oauth_gateway.contrib.redis_cache import RedisTokenCache

    with pytest.raises(og.ConfigError, match="not a Redis URL"):
        RedisTokenCache("http://127.0.0.1:6379/0")
    with pytest.raises(og.ConfigError, match="got both url and client"):
        RedisTokenCache(redis_server.url, client=redis.Redis())
    with pytest.raises(og.ConfigError, match="lock_timeout must be > 0"):
        RedisTokenCache(redis_server.url, lock_timeout=0)
