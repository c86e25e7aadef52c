"""TokenManager against a real HTTPS server: caching, single flight, refresh, failures, revocation."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, List

import pytest
import requests

import oauth_gateway as og
from servers import Fault, run_threads


def test_a_hit_makes_no_request(manager, auth_server, make_config):
    config = make_config(auth_server)
    first = manager.get_token("oauth-api", config)
    second = manager.get_token("oauth-api", config)
    assert first is second
    assert auth_server.count() == 1
    assert first.authorization == "Bearer " + first.access_token
    metrics = manager.get_metrics()
    assert (metrics["token_cache_hits"], metrics["token_cache_misses"]) == (1, 1)
    assert metrics["token_acquisitions_total"] == metrics["token_acquisitions_success"] == 1
    assert metrics["active_tokens"] == 1


def test_64_threads_on_a_cold_cache_make_one_request(manager, auth_server, make_config):
    auth_server.latency = 0.1
    config = make_config(auth_server)
    results, errors = run_threads(64, lambda i: manager.get_token("oauth-api", config))
    assert errors == [None] * 64
    assert auth_server.count() == 1
    assert len({token.access_token for token in results}) == 1


def test_16_keys_fetch_in_parallel(manager, auth_server, make_config):
    release = threading.Event()
    auth_server.set_faults([Fault(hold=release)] * 16)  # each request waits at the server for the event
    config = make_config(auth_server)
    outcome: List[Any] = []
    caller = threading.Thread(
        target=lambda: outcome.append(run_threads(64, lambda i: manager.get_token("server-%d" % (i % 16), config)))
    )
    caller.start()
    # Fetched one key after another, no second request would come while the first is held.
    all_in_flight = auth_server.wait_until(lambda: auth_server.held == 16, timeout=30)
    in_flight = auth_server.held
    release.set()
    caller.join(30)
    assert all_in_flight, "only %d of the 16 keys' requests were in flight at once" % in_flight
    results, errors = outcome[0]
    assert errors == [None] * 64
    assert auth_server.count() == 16
    assert len({token.access_token for token in results}) == 16


def test_waiters_get_the_leaders_error_without_a_second_request(manager, auth_server, make_config):
    auth_server.latency = 0.1
    auth_server.set_faults([Fault(status=401, json={"error": "invalid_client"})])
    config = make_config(auth_server)
    results, errors = run_threads(20, lambda i: manager.get_token("oauth-api", config))
    assert all(isinstance(error, og.InvalidClient) for error in errors)
    assert auth_server.count() == 1
    metrics = manager.get_metrics()
    assert metrics["token_acquisitions_failure"] == 1
    assert metrics["token_acquisitions_total"] == 1


def test_refresh_starts_at_expiry_minus_buffer(manager, auth_server, make_config, clock):
    config = make_config(auth_server)  # expires_in 3600, buffer 300
    first = manager.get_token("oauth-api", config)
    clock.advance(3299)
    assert manager.get_token("oauth-api", config) is first
    clock.advance(2)
    second = manager.get_token("oauth-api", config)
    assert second.access_token != first.access_token
    assert auth_server.count() == 2
    assert manager.get_metrics()["token_refreshes"] == 1


def test_buffer_is_capped_at_half_the_lifetime(manager, auth_server, make_config, clock):
    auth_server.expires_in = 60
    config = make_config(auth_server)
    first = manager.get_token("oauth-api", config)
    clock.advance(29)
    assert manager.get_token("oauth-api", config) is first
    clock.advance(2)
    assert manager.get_token("oauth-api", config) is not first
    assert auth_server.count() == 2


def test_a_token_without_expires_in_gets_the_default_lifetime(manager, auth_server, make_config, clock):
    auth_server.expires_in = None
    config = make_config(auth_server)
    token = manager.get_token("oauth-api", config)
    assert token.expires_in is None
    assert token.expires_at_monotonic == token.issued_at + og.tokens.DEFAULT_TOKEN_LIFETIME
    clock.advance(og.tokens.DEFAULT_TOKEN_LIFETIME)
    assert manager.get_token("oauth-api", config) is not token
    assert auth_server.count() == 2


def test_expiry_counts_from_when_the_successful_attempt_was_sent(manager, auth_server, make_config, clock):
    auth_server.set_faults([Fault(status=503)])  # the retry sleeps 2 s on the fake clock
    start = clock()
    token = manager.get_token("oauth-api", make_config(auth_server))
    assert clock() == start + 2
    assert token.issued_at == start + 2
    assert token.expires_at_monotonic == start + 2 + 3600


def test_expiry_counts_from_the_send_not_from_the_parse(manager, auth_server, make_config, clock):
    release = threading.Event()
    auth_server.push_fault(Fault(hold=release))
    sent = clock()
    got: List[Any] = []
    caller = threading.Thread(target=lambda: got.append(manager.get_token("oauth-api", make_config(auth_server))))
    caller.start()
    assert auth_server.wait_until(lambda: auth_server.held == 1, timeout=30)
    clock.advance(5)  # the answer arrives 5 s after the request left
    release.set()
    caller.join(30)
    assert got[0].issued_at == sent
    assert got[0].expires_at_monotonic == sent + 3600


def test_an_edited_config_never_gets_the_old_token(manager, auth_server, make_config):
    first = manager.get_token("oauth-api", make_config(auth_server, OAUTH_SCOPE="read"))
    second = manager.get_token("oauth-api", make_config(auth_server, OAUTH_SCOPE="read write"))
    assert first.access_token != second.access_token
    assert auth_server.count() == 2


def test_keys_are_server_and_config_id(manager, auth_server, make_config):
    config = make_config(auth_server)
    tokens = {
        manager.get_token("a", config, "one").access_token,
        manager.get_token("a", config, "two").access_token,
        manager.get_token("b", config, "one").access_token,
    }
    assert len(tokens) == 3
    assert manager.get_metrics()["servers"]["a"]["token_acquisitions_total"] == 2


def test_a_failed_refresh_serves_the_cached_token_and_backs_off(manager, auth_server, make_config, clock, caplog):
    config = make_config(auth_server, OAUTH_MAX_RETRIES=0)
    first = manager.get_token("oauth-api", config)
    clock.advance(3400)  # stale, still valid for 200 s
    auth_server.set_faults([Fault(status=500)] * 3)
    with caplog.at_level(logging.WARNING, logger="oauth_gateway"):
        assert manager.get_token("oauth-api", config) is first
    assert "serving the cached token" in caplog.text
    assert auth_server.count() == 2
    # The next attempt waits a short interval: no request right away...
    assert manager.get_token("oauth-api", config) is first
    assert auth_server.count() == 2
    clock.advance(1.5)  # ...then one more attempt, which fails again and doubles the wait
    assert manager.get_token("oauth-api", config) is first
    assert auth_server.count() == 3
    clock.advance(1.5)
    assert manager.get_token("oauth-api", config) is first
    assert auth_server.count() == 3
    clock.advance(1)
    fresh = manager.get_token("oauth-api", config)
    assert auth_server.count() == 4
    assert fresh is first  # the third fault
    clock.advance(5)
    fresh = manager.get_token("oauth-api", config)
    assert fresh is not first
    metrics = manager.get_metrics()
    assert metrics["token_refresh_failures_served_from_cache"] == 3
    assert metrics["token_acquisitions_success"] + metrics["token_acquisitions_failure"] == 5


def test_an_expired_token_with_a_failing_server_raises_then_fails_fast(manager, auth_server, make_config, clock):
    config = make_config(auth_server, OAUTH_MAX_RETRIES=0)
    manager.get_token("oauth-api", config)
    clock.advance(3600)
    auth_server.set_faults([Fault(status=503, json={"error": "temporarily_unavailable"})])
    with pytest.raises(og.TokenRequestError) as first:
        manager.get_token("oauth-api", config)
    with pytest.raises(og.TokenRequestError) as second:
        manager.get_token("oauth-api", config)
    assert type(second.value) is type(first.value)
    assert str(second.value).startswith(str(first.value) + "; no request was made")
    assert auth_server.count() == 2
    assert manager.get_metrics()["token_fail_fast"] == 1
    clock.advance(og.manager.DEFAULT_FAILURE_COOLDOWN)
    assert manager.get_token("oauth-api", config).access_token in auth_server.issued
    assert auth_server.count() == 3


def test_refresh_forces_a_new_token(manager, auth_server, make_config):
    config = make_config(auth_server)
    first = manager.get_token("oauth-api", config)
    second = manager.refresh("oauth-api", config)
    assert second.access_token != first.access_token
    assert manager.get_token("oauth-api", config) is second
    assert auth_server.count() == 2


def test_concurrent_refreshes_share_one_request(manager, auth_server, make_config):
    config = make_config(auth_server)
    manager.get_token("oauth-api", config)
    auth_server.latency = 0.3
    results, errors = run_threads(10, lambda i: manager.refresh("oauth-api", config))
    assert errors == [None] * 10
    assert auth_server.count() == 2
    assert len({token.access_token for token in results}) == 1


def test_invalidate_drops_the_token(manager, auth_server, make_config):
    config = make_config(auth_server)
    manager.get_token("oauth-api", config)
    manager.invalidate("oauth-api")
    manager.get_token("oauth-api", config)
    assert auth_server.count() == 2


def test_scope_validation_fails_with_the_seed_message_and_caches_nothing(manager, auth_server, make_config):
    auth_server.scope_override = "read"
    config = make_config(auth_server, OAUTH_SCOPE="read write")
    with pytest.raises(og.InvalidScope) as info:
        manager.get_token("oauth-api", config)
    assert str(info.value) == "Token scopes validation failed. Requested: read write, Received: read"
    assert manager.get_metrics()["active_tokens"] == 0


def test_scope_validation_can_be_turned_off(manager, auth_server, make_config):
    auth_server.scope_override = "read"
    config = make_config(auth_server, OAUTH_SCOPE="read write", OAUTH_VALIDATE_SCOPES=False)
    assert manager.get_token("oauth-api", config).scopes == frozenset(["read"])


def test_an_omitted_scope_means_granted_as_requested(manager, auth_server, make_config):
    auth_server.scope_override = ""
    config = make_config(auth_server, OAUTH_SCOPE="read write")
    assert manager.get_token("oauth-api", config).scopes == frozenset(["read", "write"])


def test_revoke_posts_the_cached_token_and_evicts_it(manager, auth_server, make_config, ca_bundle):
    config = make_config(auth_server)
    token = manager.get_token("oauth-api", config)
    ok = requests.get(auth_server.resource_url, headers={"Authorization": token.authorization}, verify=ca_bundle)
    assert ok.status_code == 200
    assert manager.revoke("oauth-api", config) is True
    assert token.access_token in auth_server.revoked
    denied = requests.get(auth_server.resource_url, headers={"Authorization": token.authorization}, verify=ca_bundle)
    assert denied.status_code == 401
    assert manager.get_token("oauth-api", config).access_token != token.access_token
    assert manager.get_metrics()["token_revocations"] == 1


def test_revoke_without_a_revocation_url_says_how_to_fix_it(manager, auth_server, make_config):
    config = make_config(auth_server, OAUTH_REVOCATION_URL="")
    with pytest.raises(og.RevocationNotConfigured, match="OAUTH_REVOCATION_URL"):
        manager.revoke("oauth-api", config)


def test_revocation_is_retried_on_503(manager, auth_server, make_config, sleeps):
    config = make_config(auth_server)
    token = manager.get_token("oauth-api", config)
    auth_server.set_faults([Fault(status=503)], path="/revoke")
    assert manager.revoke("oauth-api", config) is True
    assert sleeps.calls == [2.0]
    assert token.access_token in auth_server.revoked


def test_disabled_config_is_refused(manager, auth_server, make_config):
    with pytest.raises(og.ConfigError, match="enabled"):
        manager.get_token("oauth-api", make_config(auth_server, enabled=False))
    assert auth_server.count() == 0


def test_metrics_are_exact_under_threads(manager, auth_server, make_config):
    config = make_config(auth_server)
    manager.get_token("oauth-api", config)

    def hammer(i):
        for _ in range(500):
            manager.get_token("oauth-api", config)

    run_threads(8, hammer)
    metrics = manager.get_metrics()
    assert metrics["token_cache_hits"] == 4000
    assert metrics["servers"]["oauth-api"]["token_cache_hits"] == 4000
    assert metrics["token_cache_misses"] == 1
    assert metrics["cache_hit_ratio"] == round(4000 / 4001, 3)


def test_logs_carry_correlation_ids_and_retries(manager, auth_server, make_config, caplog):
    auth_server.set_faults([Fault(status=503)])
    with caplog.at_level(logging.DEBUG, logger="oauth_gateway"):
        manager.get_token("oauth-api", make_config(auth_server))
    correlation_id = auth_server.requests[-1].headers["X-Correlation-ID"]
    assert "Token request correlation_id=%s for oauth-api" % correlation_id in caplog.text
    assert "Retrying token acquisition for oauth-api, attempt 2/4" in caplog.text
    assert "expires in 3600s" in caplog.text
    assert manager.get_metrics()["token_retries"] == 1


def test_reprs_hide_secrets(manager, auth_server, make_config):
    config = make_config(auth_server)
    token = manager.get_token("oauth-api", config)
    for text in (repr(config), repr(token), str(token), repr(manager), str(config.to_dict())):
        assert token.access_token not in text
        assert config.client_secret not in text


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_gets_fresh_locks_and_sessions(manager, auth_server, make_config):
    config = make_config(auth_server)
    manager.get_token("oauth-api", config)
    manager._lock.acquire()  # held at fork time, as another thread might
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit code
            code = 1
            try:
                token = manager.refresh("oauth-api", config)
                code = 0 if token.access_token else 2
            finally:
                os._exit(code)
    finally:
        manager._lock.release()
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert auth_server.count() == 2


def test_refresh_of_a_rejected_token_happens_once(manager, auth_server, make_config):
    config = make_config(auth_server)
    rejected = manager.get_token("oauth-api", config).authorization
    replacement = manager.refresh("oauth-api", config, rejected=rejected)
    assert replacement.authorization != rejected
    # A caller that saw the same rejection later gets the replacement, with no request.
    assert manager.refresh("oauth-api", config, rejected=rejected) is replacement
    assert auth_server.count() == 2


def test_a_manager_used_once_without_a_name_stays_alive_for_its_call(auth_server, make_config):
    # `og.TokenManager().get_token(...)`: the function got from the instance must keep
    # its manager alive even when a collection runs before the slow path is reached.
    import gc

    config = make_config(auth_server)
    get_token = og.TokenManager().get_token
    gc.collect()
    assert get_token("oauth-api", config).access_token
    assert auth_server.count("/token") == 1
