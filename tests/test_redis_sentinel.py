"""RedisTokenCache on a master found through a real Sentinel the tests start on loopback.

tests/workers/redis_server.py starts a ``redis-server`` master and ``redis-server --sentinel``
with a config file in a temporary directory. The URL tests need no server.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, List

import pytest

import oauth_gateway as og
from fakes import FakeClock
from oauth_gateway import cache_from_settings
from oauth_gateway.contrib.store import key_digest
from test_many_workers import Workers
from workers.redis_server import RedisSentinelServers, free_port, require_redis

KEY = ("oauth-api", "default")
#: The test's guard against a call that hangs (not a timing assertion): the call's own
#: bound is the cache's socket_timeout per Sentinel asked and for the master.
STUCK = 60.0


def _token_name(key=KEY) -> str:
    return "oauth-gateway:token:{%s}" % key_digest(key)


def _returned(call: Callable[[], Any]) -> Any:
    """Run ``call`` in a thread; fail if it has not returned after STUCK; return its result or exception."""
    outcome: List[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the test, which asserts on it
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(STUCK)
    assert not thread.is_alive(), "the call did not return"
    return outcome[0]


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory):
    require_redis()
    servers = RedisSentinelServers(str(tmp_path_factory.mktemp("sentinel"))).start()
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def raw(sentinel):
    """A plain client on the master, flushed."""
    client = sentinel.master.client()
    client.flushall()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def config(auth_server, make_block):
    return og.OAuthConfig.from_dict(make_block(auth_server))


def test_a_token_is_shared_through_the_sentinel_master(sentinel, raw, config, auth_server):
    from oauth_gateway.contrib.redis_cache import RedisTokenCache

    assert sentinel.url.startswith("redis+sentinel://127.0.0.1:") and sentinel.url.endswith("/tokens/0")
    first = og.TokenManager(cache=RedisTokenCache(sentinel.url)).get_token("oauth-api", config)
    second = og.TokenManager(cache=RedisTokenCache(sentinel.url)).get_token("oauth-api", config)
    assert second.access_token == first.access_token and auth_server.count() == 1
    assert raw.exists(_token_name()) == 1  # on the master the Sentinel named


def test_the_database_in_the_url_is_used(sentinel, raw, config):
    from oauth_gateway.contrib.redis_cache import RedisTokenCache

    url = sentinel.url.rsplit("/", 1)[0] + "/3"
    og.TokenManager(cache=RedisTokenCache(url)).get_token("oauth-api", config)
    assert raw.exists(_token_name()) == 0
    raw.select(3) if hasattr(raw, "select") else raw.execute_command("SELECT", 3)
    assert raw.exists(_token_name()) == 1


def test_a_sentinel_master_client_can_be_passed(sentinel, raw, config, auth_server):
    from redis.sentinel import Sentinel

    from oauth_gateway.contrib.redis_cache import RedisTokenCache

    master = Sentinel([("127.0.0.1", sentinel.sentinel.port)], socket_timeout=2).master_for("tokens", socket_timeout=2)
    cache = RedisTokenCache(client=master)
    assert cache.client is master
    og.TokenManager(cache=cache).get_token("oauth-api", config)
    og.TokenManager(cache=RedisTokenCache(client=master)).get_token("oauth-api", config)
    assert auth_server.count() == 1 and raw.exists(_token_name()) == 1


def test_settings_choose_sentinel_and_tls_applies_to_sentinels_and_master(sentinel, raw, config, auth_server):
    from oauth_gateway.contrib.redis_cache import RedisTokenCache

    chosen = cache_from_settings(sentinel.url, environ={})
    assert isinstance(chosen, RedisTokenCache)
    og.TokenManager(cache=chosen).get_token("oauth-api", config)
    assert raw.exists(_token_name()) == 1 and auth_server.count() == 1
    # rediss+sentinel: TLS (and its files) to the Sentinels and to the master; nothing is connected yet.
    tls = RedisTokenCache("rediss+sentinel://127.0.0.1:26379/tokens?ssl_ca_certs=/etc/ca.pem").client
    pool = tls.connection_pool
    assert "SSL" in pool.connection_class.__name__ and pool.connection_kwargs["ssl_ca_certs"] == "/etc/ca.pem"
    (asked,) = pool.sentinel_manager.sentinels
    assert asked.connection_pool.connection_kwargs["ssl_ca_certs"] == "/etc/ca.pem"


@pytest.mark.slow
def test_8_processes_x_4_threads_make_one_request_per_key_for_two_keys(
    sentinel, raw, tmp_path, auth_server, make_block
):
    names = ["oauth-api", "other-api"]
    job = {
        "block": make_block(auth_server),
        "cache": {"kind": "settings", "value": sentinel.url},
        "server_names": names,
        "threads": 4,
    }
    with Workers(tmp_path / "run", job, 8) as workers:
        workers.start()
        reports = workers.results()

    assert [r["errors"] for r in reports if r["errors"]] == []
    assert sum(r["leaks"] for r in reports) == 0
    print("measured: sentinel 8x4, two keys: %d token request(s)" % auth_server.count())
    assert auth_server.count() == 2
    assert sum(r["calls"] for r in reports) == 32
    per_name = {name: {fp for r in reports for fp in r["by_server"][name]} for name in names}
    assert all(len(fps) == 1 for fps in per_name.values()), per_name
    assert per_name[names[0]] != per_name[names[1]]
    assert sum(r["metrics"]["cache_errors"] for r in reports) == 0


@pytest.mark.slow
def test_a_master_stopped_mid_run_fails_within_the_timeout(tmp_path, config, auth_server, caplog):
    import redis

    from oauth_gateway.contrib.redis_cache import RedisTokenCache

    servers = RedisSentinelServers(str(tmp_path / "sentinel")).start()
    try:
        clock = FakeClock()
        cache = RedisTokenCache(servers.url, socket_timeout=1.0, retry_interval=30.0, clock=clock)
        manager = og.TokenManager(cache=cache, clock=clock)
        token = manager.get_token("oauth-api", config)
        servers.master.stop()

        first = _returned(lambda: cache.load(KEY))
        print("measured: stopped master behind Sentinel: %s: %s" % (type(first).__name__, first))
        assert isinstance(first, redis.ConnectionError), repr(first)
        second = _returned(lambda: cache.load(KEY))
        assert type(second) is ConnectionError
        assert "Redis at redis+sentinel://127.0.0.1:" in str(second)
        assert "did not answer; trying it again in" in str(second)

        with caplog.at_level(logging.WARNING, logger="oauth_gateway"):
            assert manager.get_token("oauth-api", config) is token  # local memory still serves it
            manager.invalidate("oauth-api")
            fresh = _returned(lambda: manager.get_token("oauth-api", config))
        assert isinstance(fresh, og.Token) and fresh.access_token != token.access_token
        assert auth_server.count() == 2
        assert manager.get_metrics()["cache_errors"] >= 2
        assert any("going on without the shared cache" in r.getMessage() for r in caplog.records)
    finally:
        servers.stop()


@pytest.mark.slow
def test_a_hung_master_costs_its_timeout_then_fails_at_once(tmp_path, config, auth_server):
    import redis

    from oauth_gateway.contrib.redis_cache import RedisTokenCache

    servers = RedisSentinelServers(str(tmp_path / "sentinel")).start()
    try:
        clock = FakeClock()
        cache = RedisTokenCache(servers.url, socket_timeout=1.0, retry_interval=30.0, clock=clock)
        manager = og.TokenManager(cache=cache, clock=clock)
        token = manager.get_token("oauth-api", config)
        servers.master.pause()  # connections are accepted, nothing is answered
        failure = _returned(lambda: cache.load(KEY))
        assert isinstance(failure, redis.TimeoutError), repr(failure)
        manager.invalidate("oauth-api")
        fresh = _returned(lambda: manager.get_token("oauth-api", config))  # Redis is left alone: no wait
        assert isinstance(fresh, og.Token) and fresh.access_token != token.access_token
        assert auth_server.count() == 2 and manager.get_metrics()["cache_errors"] == 4
    finally:
        servers.stop()


def test_no_sentinel_answering_is_a_cache_error(config, auth_server):
    import redis

    from oauth_gateway.contrib.redis_cache import RedisTokenCache

    url = "redis+sentinel://127.0.0.1:%d,127.0.0.1:%d/tokens" % (free_port(), free_port())
    cache = RedisTokenCache(url, socket_timeout=1.0)
    failure = _returned(lambda: cache.load(KEY))
    assert isinstance(failure, redis.sentinel.MasterNotFoundError) and "tokens" in str(failure)
    manager = og.TokenManager(cache=RedisTokenCache(url, socket_timeout=1.0))
    assert isinstance(_returned(lambda: manager.get_token("oauth-api", config)), og.Token)
    assert manager.get_metrics()["cache_errors"] >= 1 and auth_server.count() == 1


# --------------------------------------------------------------------------- URLs (no server)


@pytest.mark.parametrize(
    "url, problem",
    [
        ("redis+sentinel://127.0.0.1:26379", "the path must be /service_name or /service_name/db, got ''"),
        ("redis+sentinel://127.0.0.1:26379/a/b/c", "the path must be /service_name or /service_name/db"),
        ("redis+sentinel://127.0.0.1:26379/mymaster/x", "the database must be a number, got 'x'"),
        ("redis+sentinel://127.0.0.1:port/mymaster", "'127.0.0.1:port' is not a host:port"),
        ("rediss+sentinel://h/mymaster?ssl=yes", "unknown query parameter 'ssl'"),
    ],
)
def test_a_malformed_sentinel_url_names_the_setting_and_the_fix(url, problem):
    with pytest.raises(og.ConfigError) as caught:
        cache_from_settings(url, environ={})
    message = str(caught.value)
    assert message.startswith("$.common_mcp_gateway_config.oauth_token_cache: '")
    assert "is not a Redis Sentinel URL (%s" % problem in message
    assert "write it like redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/0" in message


def test_sentinel_urls_take_default_ports_credentials_and_ipv6():
    from oauth_gateway.contrib.redis_cache import RedisTokenCache

    cache = RedisTokenCache("redis+sentinel://app:s3cret-pw@sentinel-a,[::1]:26380/mymaster/2")
    assert "s3cret" not in repr(cache) and "***@sentinel-a" in repr(cache)
    pool = cache.client.connection_pool
    assert pool.service_name == "mymaster" and pool.connection_kwargs["db"] == 2
    assert pool.connection_kwargs["username"] == "app" and pool.connection_kwargs["password"] == "s3cret-pw"
    hosts = [
        (s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
        for s in pool.sentinel_manager.sentinels
    ]
    assert hosts == [("sentinel-a", 26379), ("::1", 26380)]
    # The Sentinels are asked without the master's password (see the guide).
    assert all(s.connection_pool.connection_kwargs.get("password") is None for s in pool.sentinel_manager.sentinels)
