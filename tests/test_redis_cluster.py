"""RedisTokenCache on a real 3-master Redis Cluster the tests start on loopback.

tests/workers/redis_server.py starts three ``redis-server --cluster-enabled yes`` and joins
them with ``redis-cli --cluster create``; nothing else is used. The URL tests need no server.
The processes of the many-workers test come from tests/test_many_workers.py's ``Workers``.
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
from workers.redis_server import RedisClusterServers, free_port, require_redis

KEY = ("oauth-api", "default")
#: Longest a call that meets a stopped master may take before the test calls it stuck. The
#: call's own bound is the cache's socket_timeout (1 s here) per attempt; this is only the
#: test's guard against hanging, not a timing assertion.
STUCK = 60.0


def _names(key) -> List[str]:
    digest = key_digest(key)
    return ["oauth-gateway:%s:{%s}" % (kind, digest) for kind in ("token", "lock", "epoch")]


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
def cluster(tmp_path_factory):
    require_redis()
    servers = RedisClusterServers(str(tmp_path_factory.mktemp("cluster"))).start()
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def flushed(cluster):
    for node in cluster.nodes:
        client = node.client()
        try:
            client.flushall()
        finally:
            client.close()
    return cluster


@pytest.fixture
def config(auth_server, make_block):
    return og.OAuthConfig.from_dict(make_block(auth_server))


def _on_two_masters(cluster) -> List[str]:
    """Two server names whose tokens live on different masters (bounded search)."""
    first = "oauth-api"
    home = cluster.node_of(_names((first, "default"))[0]).port
    for index in range(200):
        other = "oauth-api-%d" % index
        if cluster.node_of(_names((other, "default"))[0]).port != home:
            return [first, other]
    raise AssertionError("no second server name on another master in 200 tries")


# --------------------------------------------------------------------------- one slot per token


def test_the_keys_of_a_token_share_one_hash_slot(flushed, config):
    from oauth_gateway.contrib.redis_cache import RedisTokenCache

    cache = RedisTokenCache(flushed.url)
    manager = og.TokenManager(cache=cache)
    manager.get_token("oauth-api", config)
    manager.invalidate("oauth-api")  # writes the epoch
    manager.get_token("oauth-api", config)
    where = {}  # key written by the cache -> (node port, slot)
    with cache.lock(KEY):  # the lock key exists while held
        for node in flushed.nodes:
            client = node.client()
            try:
                for name in client.keys("oauth-gateway:*"):
                    where[name.decode()] = (node.port, int(client.execute_command("CLUSTER KEYSLOT", name)))
            finally:
                client.close()
    assert sorted(where) == sorted(_names(KEY))  # value, lock and epoch, each with the {digest} tag
    assert len(set(where.values())) == 1  # one slot, on one master


def test_a_token_is_shared_through_the_cluster(flushed, config, auth_server):
    from oauth_gateway.contrib.redis_cache import RedisTokenCache

    first = og.TokenManager(cache=RedisTokenCache(flushed.url)).get_token("oauth-api", config)
    second = og.TokenManager(cache=RedisTokenCache(flushed.url)).get_token("oauth-api", config)
    assert second.access_token == first.access_token and auth_server.count() == 1
    token_name, _lock, epoch_name = _names(KEY)
    holder = flushed.node_of(token_name).client()
    try:
        assert holder.exists(token_name) == 1  # on the master of its slot
        assert 3590 * 1000 < holder.pttl(token_name) <= 3600 * 1000
    finally:
        holder.close()
    # Revocation moves the epoch on the same master (one script, two keys of one slot).
    manager = og.TokenManager(cache=RedisTokenCache(flushed.url))
    manager.invalidate("oauth-api")
    holder = flushed.node_of(epoch_name).client()
    try:
        assert holder.exists(token_name) == 0 and int(holder.get(epoch_name)) == 1
    finally:
        holder.close()


def test_a_redis_cluster_client_can_be_passed(flushed, config, auth_server):
    from redis.cluster import ClusterNode, RedisCluster

    from oauth_gateway.contrib.redis_cache import RedisTokenCache

    client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", flushed.nodes[0].port)], decode_responses=True)
    try:
        cache = RedisTokenCache(client=client)
        assert cache.client is client
        og.TokenManager(cache=cache).get_token("oauth-api", config)
        og.TokenManager(cache=RedisTokenCache(client=client)).get_token("oauth-api", config)
        with cache.lock(KEY):
            assert client.exists(_names(KEY)[1]) == 1
        assert client.exists(_names(KEY)[1]) == 0
    finally:
        client.close()
    assert auth_server.count() == 1


def test_settings_choose_the_cluster(flushed, config, auth_server):
    from oauth_gateway.contrib.redis_cache import RedisTokenCache

    chosen = cache_from_settings(flushed.url, environ={})
    assert isinstance(chosen, RedisTokenCache) and "redis+cluster://127.0.0.1:" in repr(chosen)
    from_env = cache_from_settings("memory", environ={"OAUTH_GATEWAY_TOKEN_CACHE": flushed.url})
    og.TokenManager(cache=chosen).get_token("oauth-api", config)
    og.TokenManager(cache=from_env).get_token("oauth-api", config)
    assert auth_server.count() == 1


# --------------------------------------------------------------------------- many processes


@pytest.mark.slow
def test_8_processes_x_4_threads_make_one_request_per_key_for_two_keys(flushed, tmp_path, auth_server, make_block):
    names = _on_two_masters(flushed)
    job = {
        "block": make_block(auth_server),
        "cache": {"kind": "settings", "value": flushed.url},
        "server_names": names,
        "threads": 4,
    }
    with Workers(tmp_path / "run", job, 8) as workers:
        workers.start()
        reports = workers.results()

    assert [r["errors"] for r in reports if r["errors"]] == []
    assert sum(r["leaks"] for r in reports) == 0
    print("measured: cluster 8x4, two keys: %d token request(s)" % auth_server.count())
    assert auth_server.count() == 2  # one per key, across 8 processes and two masters
    assert sum(r["calls"] for r in reports) == 32
    per_name = {name: {fp for r in reports for fp in r["by_server"][name]} for name in names}
    assert all(len(fps) == 1 for fps in per_name.values()), per_name
    assert per_name[names[0]] != per_name[names[1]]
    assert sum(r["metrics"]["cache_errors"] for r in reports) == 0


# --------------------------------------------------------------------------- a master goes away


@pytest.mark.slow
def test_a_master_stopped_mid_run_fails_within_the_timeout(tmp_path, config, auth_server, caplog):
    from oauth_gateway.contrib.redis_cache import RedisTokenCache

    cluster = RedisClusterServers(str(tmp_path / "cluster")).start()
    try:
        names = _on_two_masters(cluster)
        clock = FakeClock()
        cache = RedisTokenCache(cluster.url, socket_timeout=1.0, retry_interval=30.0, clock=clock)
        manager = og.TokenManager(cache=cache, clock=clock)
        tokens = {name: manager.get_token(name, config) for name in names}
        assert auth_server.count() == 2
        stopped = cluster.node_of(_names((names[0], "default"))[0])
        stopped.stop()

        # The cache itself: redis-py's error after one attempt, then ours at once.
        import redis

        first = _returned(lambda: cache.load((names[0], "default")))
        print("measured: stopped master: %s: %s" % (type(first).__name__, first))
        assert isinstance(first, redis.ConnectionError), repr(first)
        assert "connecting to 127.0.0.1:%d" % stopped.port in str(first)
        second = _returned(lambda: cache.load((names[0], "default")))
        assert type(second) is ConnectionError
        assert "Redis at redis+cluster://127.0.0.1:" in str(second) and "did not answer; trying it again in" in str(
            second
        )

        # The manager: hits still come from local memory, a miss fetches without Redis.
        with caplog.at_level(logging.WARNING, logger="oauth_gateway"):
            assert manager.get_token(names[1], config) is tokens[names[1]]
            manager.invalidate(names[0])
            fresh = _returned(lambda: manager.get_token(names[0], config))
        assert isinstance(fresh, og.Token) and fresh.access_token != tokens[names[0]].access_token
        assert auth_server.count() == 3
        metrics = manager.get_metrics()
        assert metrics["cache_errors"] >= 2 and metrics["token_acquisitions_failure"] == 0
        assert any("going on without the shared cache" in r.getMessage() for r in caplog.records)
    finally:
        cluster.stop()


@pytest.mark.slow
def test_a_hung_master_costs_its_timeout_then_fails_at_once(tmp_path, config, auth_server):
    import redis

    from oauth_gateway.contrib.redis_cache import RedisTokenCache

    cluster = RedisClusterServers(str(tmp_path / "cluster")).start()
    try:
        clock = FakeClock()
        cache = RedisTokenCache(cluster.url, socket_timeout=1.0, retry_interval=30.0, clock=clock)
        manager = og.TokenManager(cache=cache, clock=clock)
        token = manager.get_token("oauth-api", config)
        cluster.node_of(_names(KEY)[0]).pause()  # connections are accepted, nothing is answered
        manager.invalidate("oauth-api")  # the Redis delete times out: socket_timeout (redis-py 4.1: 5 tries)
        fresh = _returned(lambda: manager.get_token("oauth-api", config))  # Redis is left alone: no wait
        assert isinstance(fresh, og.Token) and fresh.access_token != token.access_token
        assert auth_server.count() == 2
        assert manager.get_metrics()["cache_errors"] == 4  # evict timed out; read, lock, write failed at once
        with pytest.raises(ConnectionError, match="did not answer; trying it again in 30.0s"):
            cache.load(KEY)
        clock.advance(30.0)
        with pytest.raises(redis.TimeoutError):  # tried again after retry_interval
            cache.load(KEY)
    finally:
        cluster.stop()


def test_an_unreachable_cluster_at_start_is_a_cache_error_not_a_crash(config, auth_server):
    from oauth_gateway.contrib.redis_cache import RedisTokenCache

    cache = RedisTokenCache("redis+cluster://127.0.0.1:%d" % free_port(), socket_timeout=1.0)  # connects on use
    manager = og.TokenManager(cache=cache)
    token = _returned(lambda: manager.get_token("oauth-api", config))
    assert isinstance(token, og.Token)
    assert manager.get_metrics()["cache_errors"] >= 1 and auth_server.count() == 1


# --------------------------------------------------------------------------- URLs (no server)


@pytest.mark.parametrize(
    "url, problem",
    [
        ("redis+cluster://127.0.0.1:7000/3", "a Redis Cluster has only database 0; drop the path '/3'"),
        ("redis+cluster://127.0.0.1:7000,127.0.0.1:x", "'127.0.0.1:x' is not a host:port"),
        ("redis+cluster://127.0.0.1:70000", "'127.0.0.1:70000' is not a host:port"),
        ("redis+cluster://127.0.0.1:7000,", "'' is not a host:port"),
        ("redis+cluster://h:7000/?timeout=3", "unknown query parameter 'timeout'"),
        ("redis+cluster://h:7000/?ssl_ca_certs=/ca.pem", "ssl_ca_certs needs TLS: use rediss+cluster://"),
    ],
)
def test_a_malformed_cluster_url_names_the_setting_and_the_fix(url, problem):
    with pytest.raises(og.ConfigError) as caught:
        cache_from_settings(url, environ={})
    message = str(caught.value)
    assert message.startswith("$.common_mcp_gateway_config.oauth_token_cache: 'redis+cluster://")
    assert "is not a Redis Cluster URL" in message
    assert problem in message
    assert "write it like redis+cluster://10.0.0.1:6379,10.0.0.2:6379 (rediss+cluster:// for TLS)" in message
    with pytest.raises(og.ConfigError) as from_env:
        cache_from_settings(None, environ={"OAUTH_GATEWAY_TOKEN_CACHE": url})
    assert str(from_env.value).startswith("OAUTH_GATEWAY_TOKEN_CACHE: ")


def test_a_password_in_a_cluster_url_is_never_shown(config):
    url = "redis+cluster://app:hunter2-secret@127.0.0.1:%d,127.0.0.1:%d/5" % (free_port(), free_port())
    with pytest.raises(og.ConfigError) as caught:
        cache_from_settings(url, environ={})
    assert "hunter2" not in str(caught.value) and "***@127.0.0.1" in str(caught.value)
    from oauth_gateway.contrib.redis_cache import RedisTokenCache

    cache = RedisTokenCache(url.rsplit("/", 1)[0], socket_timeout=0.5)
    assert "hunter2" not in repr(cache) and "***@127.0.0.1" in repr(cache)


def test_an_unknown_redis_scheme_lists_the_ones_there_are():
    with pytest.raises(og.ConfigError) as caught:
        cache_from_settings("redis+clutser://h:7000", environ={})
    message = str(caught.value)
    assert message.startswith(
        "$.common_mcp_gateway_config.oauth_token_cache: 'redis+clutser://h:7000' is not a Redis URL"
    )
    assert "redis+cluster://host:6379,host:6379 or redis+sentinel://host:26379/mymaster/0" in message


def test_a_prefix_with_a_brace_is_refused():
    from oauth_gateway.contrib.redis_cache import RedisTokenCache

    with pytest.raises(og.ConfigError) as caught:
        RedisTokenCache("redis+cluster://127.0.0.1:7000", prefix="team-{a}:")
    assert "prefix must not contain { or }" in str(caught.value)
    assert "each key already ends in a hash tag" in str(caught.value)
