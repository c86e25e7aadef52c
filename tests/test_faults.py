"""The fault matrix: every way a token endpoint fails, through ``TokenManager.get_token``.

One test (or one parametrized case) per row. Each goes through the public path,
``TokenManager(clock=clock, sleep=sleeps).get_token``, against the real loopback HTTPS
server, and asserts three things: how many token requests reached the server, the delays
slept (recorded by the injected ``sleep``, which also moves the fake clock) and the exact
outcome (the token, or the exception class, its message and its fields).

Rows already covered at the client level, and not repeated here: the wire format
(``test_client.py``), a cert file removed before a client-level request
(``test_client.py::test_mtls_fails_closed_when_the_certificate_disappears``), the mTLS
files checked when loading (``test_config.py::test_a_missing_certificate_keeps_the_seed_message``,
``test_a_mismatched_key_is_refused``, ``test_an_unreadable_key_is_refused``,
``test_an_expired_certificate_is_refused``) and a revocation endpoint answering 503 then
200 (``test_manager.py::test_revocation_is_retried_on_503``).
"""

from __future__ import annotations

import datetime
import email.utils
import functools
import os
import re
import shutil
import socket
import ssl
import threading
import time
from typing import Any, Dict

import pytest

import oauth_gateway as og
import servers
from oauth_gateway.client import MAX_TOKEN_LIFETIME
from servers import AuthServer, Fault

#: The default retry schedule: OAUTH_RETRY_BACKOFF 2 s, doubled, OAUTH_MAX_RETRIES 3.
SCHEDULE = [2.0, 4.0, 8.0]


def _metrics(manager: og.TokenManager) -> Dict[str, Any]:
    return manager.get_metrics()


def _eventually(predicate, seconds: float = 5.0) -> bool:
    """Wait, bounded, for the server's connection threads to record what the client already saw."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _assert_failed_once(manager: og.TokenManager, retries: int) -> None:
    metrics = _metrics(manager)
    assert metrics["token_acquisitions_total"] == 1
    assert metrics["token_acquisitions_failure"] == 1
    assert metrics["token_acquisitions_success"] == 0
    assert metrics["token_retries"] == retries
    assert metrics["active_tokens"] == 0


def _assert_fails_fast(manager, config, first_error, server: AuthServer, requests_so_far: int) -> None:
    """The same key answers with the same error, without a request, during the cool-down."""
    with pytest.raises(type(first_error)) as again:
        manager.get_token("oauth-api", config)
    assert str(again.value).startswith(str(first_error) + "; no request was made")
    assert re.search(r"a call in [0-5]\.\d s or later makes a new request$", str(again.value))
    assert again.value.correlation_id == first_error.correlation_id
    assert server.count() == requests_so_far
    assert _metrics(manager)["token_fail_fast"] == 1


# --------------------------------------------------------------------------- the network


def test_connection_refused_is_retried_then_a_transport_error(manager, auth_server, make_config, sleeps):
    # A bound socket that does not listen: connecting to it is refused, and no one can take the port.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = "https://127.0.0.1:%d/token" % closed.getsockname()[1]
        config = make_config(auth_server, OAUTH_TOKEN_URL=url)
        with pytest.raises(og.TransportError) as info:
            manager.get_token("oauth-api", config)
    error = info.value
    assert "failed for oauth-api after 4 attempts (connection refused)" in str(error)
    assert error.retryable is True
    assert error.server_name == "oauth-api"
    assert error.correlation_id and len(error.correlation_id) == 8
    assert sleeps.calls == SCHEDULE
    assert auth_server.count(None) == 0
    _assert_failed_once(manager, retries=3)
    _assert_fails_fast(manager, config, error, auth_server, 0)


def test_connection_reset_mid_response_is_retried(manager, auth_server, make_config, sleeps):
    auth_server.set_faults([Fault(reset=True)])
    token = manager.get_token("oauth-api", make_config(auth_server))
    assert token.access_token in auth_server.issued
    assert auth_server.count() == 2
    assert sleeps.calls == [2.0]
    assert _metrics(manager)["token_retries"] == 1


def test_connection_reset_on_every_attempt_is_a_transport_error(manager, auth_server, make_config, sleeps):
    auth_server.set_faults([Fault(reset=True)] * 4)
    config = make_config(auth_server)
    with pytest.raises(og.TransportError) as info:
        manager.get_token("oauth-api", config)
    assert "Token acquisition to %s failed for oauth-api after 4 attempts" % auth_server.token_url in str(info.value)
    assert info.value.retryable is True
    assert auth_server.count() == 4
    assert auth_server.pending_faults() == 0
    assert sleeps.calls == SCHEDULE
    _assert_failed_once(manager, retries=3)


def test_read_timeout_is_retried(manager, auth_server, make_config, sleeps):
    auth_server.set_faults([Fault(delay=2.0)])  # longer than OAUTH_TIMEOUT, then normal service
    token = manager.get_token("oauth-api", make_config(auth_server, OAUTH_TIMEOUT=0.2))
    assert token.access_token in auth_server.issued
    assert auth_server.count() == 2
    assert sleeps.calls == [2.0]
    assert _metrics(manager)["token_retries"] == 1


def test_read_timeout_on_every_attempt_is_a_transport_error(manager, auth_server, make_config, sleeps):
    never = threading.Event()  # the answers stall until the client gives up on them
    auth_server.set_faults([Fault(hold=never)] * 2)
    config = make_config(auth_server, OAUTH_TIMEOUT=0.2, OAUTH_MAX_RETRIES=1)
    with pytest.raises(og.TransportError) as info:
        manager.get_token("oauth-api", config)
    # The read timeout cut each stalled answer short: the client hung up while it was held.
    assert auth_server.wait_until(lambda: auth_server.hangups == 2), "hang-ups seen: %d" % auth_server.hangups
    message = str(info.value)
    assert "Token acquisition to %s timed out for oauth-api after 2 attempts" % auth_server.token_url in message
    assert "raise OAUTH_TIMEOUT or check the server" in message
    assert info.value.retryable is True
    assert auth_server.count() == 2
    assert sleeps.calls == [2.0]
    _assert_failed_once(manager, retries=1)


def test_read_timeout_message_says_how_to_fix_it(manager, auth_server, make_config, sleeps):
    auth_server.set_faults([Fault(delay=2.0)])
    config = make_config(auth_server, OAUTH_TIMEOUT=0.2, OAUTH_MAX_RETRIES=0)
    with pytest.raises(og.TransportError) as info:
        manager.get_token("oauth-api", config)
    assert auth_server.count() == 1
    assert sleeps.calls == []
    assert "timed out for oauth-api after 1 attempts" in str(info.value)
    assert "raise OAUTH_TIMEOUT or check the server" in str(info.value)


def _traceback_length(error: BaseException) -> int:
    length, entry = 0, error.__traceback__
    while entry is not None:
        length, entry = length + 1, entry.tb_next
    return length


def test_fail_fast_errors_do_not_accumulate_the_callers_frames(manager, auth_server, make_config, sleeps):
    auth_server.set_faults([Fault(status=503)])
    config = make_config(auth_server, OAUTH_MAX_RETRIES=0)
    lengths = []
    for _ in range(50):
        with pytest.raises(og.TokenRequestError) as info:
            manager.get_token("oauth-api", config)
        lengths.append(_traceback_length(info.value))
    assert auth_server.count() == 1
    assert _metrics(manager)["token_fail_fast"] == 49
    assert lengths[-1] == lengths[1], "traceback grew from %d to %d entries" % (lengths[1], lengths[-1])


# --------------------------------------------------------------------------- transient statuses


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_transient_status_then_success(manager, auth_server, make_config, sleeps, status):
    auth_server.set_faults([Fault(status=status, json={"error": "temporarily_unavailable"})])
    token = manager.get_token("oauth-api", make_config(auth_server))
    assert token.access_token in auth_server.issued
    assert auth_server.count() == 2
    assert sleeps.calls == [2.0]
    metrics = _metrics(manager)
    assert (metrics["token_retries"], metrics["token_acquisitions_success"]) == (1, 1)


def test_500_502_503_then_success_uses_the_whole_schedule(manager, auth_server, make_config, sleeps, clock):
    auth_server.set_faults([Fault(status=500), Fault(status=502), Fault(status=503)])
    start = clock()
    token = manager.get_token("oauth-api", make_config(auth_server))
    assert token.access_token in auth_server.issued
    assert auth_server.count() == 4
    assert sleeps.calls == SCHEDULE
    assert clock() == start + 14.0
    assert _metrics(manager)["token_retries"] == 3


def test_a_transient_status_on_every_attempt_raises_the_last_answer(manager, auth_server, make_config, sleeps):
    auth_server.set_faults([Fault(status=502)] * 3 + [Fault(status=504, json={"error": "temporarily_unavailable"})])
    config = make_config(auth_server)
    with pytest.raises(og.TokenRequestError) as info:
        manager.get_token("oauth-api", config)
    error = info.value
    assert type(error) is og.TokenRequestError
    assert (error.status_code, error.error, error.retryable) == (504, "temporarily_unavailable", True)
    assert str(error).startswith("OAuth token request failed: temporarily_unavailable [correlation_id=")
    assert auth_server.count() == 4
    assert sleeps.calls == SCHEDULE
    _assert_failed_once(manager, retries=3)
    _assert_fails_fast(manager, config, error, auth_server, 4)


# --------------------------------------------------------------------------- 429 and Retry-After


def test_429_with_retry_after_1_waits_one_second(manager, auth_server, make_config, sleeps):
    auth_server.set_faults([Fault(status=429, headers={"Retry-After": "1"}, json={"error": "slow_down"})])
    token = manager.get_token("oauth-api", make_config(auth_server))
    assert token.access_token in auth_server.issued
    assert auth_server.count() == 2
    assert sleeps.calls == [1.0]


def test_429_with_retry_after_at_the_cap_is_honoured(manager, auth_server, make_config, sleeps):
    auth_server.set_faults([Fault(status=429, headers={"Retry-After": "60"})])
    manager.get_token("oauth-api", make_config(auth_server))
    assert auth_server.count() == 2
    assert sleeps.calls == [60.0]


@pytest.mark.parametrize("retry_after", ["86400", "999999999999", "61"])
def test_429_with_a_huge_retry_after_fails_at_once(manager, auth_server, make_config, sleeps, retry_after):
    auth_server.set_faults([Fault(status=429, headers={"Retry-After": retry_after}, json={"error": "slow_down"})])
    config = make_config(auth_server)
    with pytest.raises(og.TokenRequestError) as info:
        manager.get_token("oauth-api", config)
    error = info.value
    assert (error.status_code, error.error, error.retryable) == (429, "slow_down", True)
    assert "longer than OAUTH_RETRY_AFTER_MAX" in str(error)
    assert auth_server.count() == 1
    assert sleeps.calls == []
    _assert_failed_once(manager, retries=0)


def test_429_with_an_http_date_a_day_away_fails_at_once(manager, auth_server, make_config, sleeps):
    when = email.utils.formatdate(time.time() + 86400, usegmt=True)
    auth_server.set_faults([Fault(status=429, headers={"Retry-After": when})])
    with pytest.raises(og.TokenRequestError) as info:
        manager.get_token("oauth-api", make_config(auth_server))
    assert info.value.status_code == 429
    assert "longer than OAUTH_RETRY_AFTER_MAX" in str(info.value)
    assert auth_server.count() == 1
    assert sleeps.calls == []


@pytest.mark.parametrize("headers", [{}, {"Retry-After": "soon"}], ids=["no-retry-after", "unparsable"])
def test_429_without_a_usable_retry_after_uses_the_backoff(manager, auth_server, make_config, sleeps, headers):
    auth_server.set_faults([Fault(status=429, headers=headers)])
    manager.get_token("oauth-api", make_config(auth_server))
    assert auth_server.count() == 2
    assert sleeps.calls == [2.0]


def test_a_lower_retry_after_max_refuses_what_the_default_honours(manager, auth_server, make_config, sleeps):
    auth_server.set_faults([Fault(status=429, headers={"Retry-After": "10"})])
    with pytest.raises(og.TokenRequestError) as info:
        manager.get_token("oauth-api", make_config(auth_server, OAUTH_RETRY_AFTER_MAX=5))
    assert info.value.status_code == 429
    assert auth_server.count() == 1
    assert sleeps.calls == []


# --------------------------------------------------------------------------- the server says no


@pytest.mark.parametrize(
    "status, code, exc",
    [
        (400, "invalid_request", og.InvalidRequest),
        (401, "invalid_client", og.InvalidClient),
        (400, "invalid_scope", og.InvalidScope),
        (400, "unauthorized_client", og.UnauthorizedClient),
    ],
)
def test_client_errors_are_final_and_fail_fast(manager, auth_server, make_config, sleeps, status, code, exc):
    auth_server.set_faults([Fault(status=status, json={"error": code, "error_description": "refused"})])
    config = make_config(auth_server)
    with pytest.raises(exc) as info:
        manager.get_token("oauth-api", config)
    error = info.value
    assert type(error) is exc
    assert str(error) == "OAuth token request failed: %s (refused) [correlation_id=%s]" % (code, error.correlation_id)
    assert (error.status_code, error.error, error.error_description, error.retryable) == (
        status,
        code,
        "refused",
        False,
    )
    assert error.correlation_id == auth_server.requests[-1].correlation_id
    assert auth_server.count() == 1
    assert sleeps.calls == []
    _assert_failed_once(manager, retries=0)
    _assert_fails_fast(manager, config, error, auth_server, 1)


# --------------------------------------------------------------------------- 200, but not a token


@pytest.mark.parametrize(
    "fault, fragment",
    [
        (Fault(body="<html><body>Sign in</body></html>", content_type="text/html"), "its body is not a JSON object"),
        (Fault(json={}), "access_token is missing or empty"),
        (
            Fault(json=[{"access_token": "in-an-array-0123456789", "token_type": "Bearer"}]),
            "its body is not a JSON object",
        ),
        (Fault(json={"access_token": "", "token_type": "Bearer"}), "access_token is missing or empty"),
        (
            Fault(json={"access_token": "mac-token-0123456789abcdef", "token_type": "mac"}),
            "token_type is 'mac', not Bearer",
        ),
        (
            Fault(json={"access_token": "zero-lifetime-0123456789", "token_type": "Bearer", "expires_in": 0}),
            "expires_in",
        ),
        (
            Fault(json={"access_token": "negative-lifetime-0123456", "token_type": "Bearer", "expires_in": -5}),
            "expires_in",
        ),
        (
            Fault(json={"access_token": "word-lifetime-0123456789", "token_type": "Bearer", "expires_in": "soon"}),
            "expires_in",
        ),
    ],
    ids=[
        "html",
        "empty-object",
        "json-array",
        "empty-access-token",
        "mac",
        "expires-in-0",
        "expires-in-negative",
        "expires-in-word",
    ],
)
def test_a_200_that_is_not_a_token_is_refused_without_retry(manager, auth_server, make_config, sleeps, fault, fragment):
    auth_server.set_faults([fault])
    config = make_config(auth_server)
    with pytest.raises(og.TokenRequestError) as info:
        manager.get_token("oauth-api", config)
    error = info.value
    assert type(error) is og.TokenRequestError
    assert str(error).startswith("OAuth token request failed: the token endpoint answered 200 but ")
    assert fragment in str(error)
    assert (error.status_code, error.retryable) == (200, False)
    assert "Sign in" not in str(error) and "in-an-array" not in str(error)  # bodies are never echoed
    assert auth_server.count() == 1
    assert sleeps.calls == []
    _assert_failed_once(manager, retries=0)


@pytest.mark.parametrize(
    "expires_in, lifetime",
    [("3600", 3600.0), (" 120 ", 120.0), (1e12, MAX_TOKEN_LIFETIME), (None, 3600.0), (59.5, 59.5)],
    ids=["string-3600", "padded-string", "1e12-capped-at-a-day", "null-default-lifetime", "fraction"],
)
def test_expires_in_forms_that_are_accepted(manager, auth_server, make_config, sleeps, clock, expires_in, lifetime):
    access_token = "accepted-token-0123456789abcdef"
    auth_server.set_faults(
        [Fault(json={"access_token": access_token, "token_type": "Bearer", "expires_in": expires_in})]
    )
    config = make_config(auth_server)
    start = clock()
    token = manager.get_token("oauth-api", config)
    assert token.access_token == access_token
    assert (token.issued_at, token.expires_at_monotonic) == (start, start + lifetime)
    assert token.expires_in == (None if expires_in is None else lifetime)
    assert auth_server.count() == 1
    assert sleeps.calls == []
    # Cached until expiry minus the buffer (300 s, capped at half the lifetime), refreshed after.
    refresh_after = lifetime - min(300.0, lifetime / 2)
    clock.advance(refresh_after - 0.5)
    assert manager.get_token("oauth-api", config) is token
    clock.advance(1.0)
    assert manager.get_token("oauth-api", config) is not token
    assert auth_server.count() == 2


# --------------------------------------------------------------------------- redirects


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_host_is_never_followed(manager, ca, auth_server, make_config, sleeps, status):
    with AuthServer(ca) as elsewhere:
        elsewhere.register_client(servers.TEST_CLIENT_ID, servers.TEST_CLIENT_SECRET)
        target = elsewhere.token_url + "?client_secret=" + "q" * 12
        auth_server.set_faults([Fault(status=status, redirect_to=target)])
        config = make_config(auth_server)
        with pytest.raises(og.TokenRequestError) as info:
            manager.get_token("oauth-api", config)
        assert elsewhere.count(None) == 0
        assert elsewhere.connections == 0
    error = info.value
    assert type(error) is og.TokenRequestError
    # redact_url keeps the query's names and masks their values.
    assert "the server answered %d, a redirect to %s?client_secret=***, which is never followed" % (
        status,
        elsewhere.token_url,
    ) in str(error)
    assert "set the URL to the final endpoint" in str(error)
    assert "q" * 12 not in str(error)  # the Location's query is not repeated
    assert (error.status_code, error.retryable) == (status, False)
    assert auth_server.count() == 1
    assert sleeps.calls == []
    _assert_failed_once(manager, retries=0)


# --------------------------------------------------------------------------- TLS


def test_a_server_certificate_from_another_ca_is_refused(manager, auth_server, make_config, sleeps, tmp_path):
    stranger = str(tmp_path / "other-ca.pem")
    servers.trustme.CA().cert_pem.write_to_path(stranger)
    config = make_config(auth_server, OAUTH_CA_BUNDLE_PATH=stranger)
    with pytest.raises(og.TransportError) as info:
        manager.get_token("oauth-api", config)
    error = info.value
    assert str(error).startswith("TLS with %s failed for oauth-api (certificate verify failed)" % auth_server.token_url)
    assert "check OAUTH_CA_BUNDLE_PATH" in str(error)
    assert error.retryable is False
    assert auth_server.count(None) == 0
    assert _eventually(lambda: auth_server.handshake_failures == 1)
    assert sleeps.calls == []
    _assert_failed_once(manager, retries=0)


class _TLS12Server(AuthServer):
    """An AuthServer capped at TLS 1.2, where a refused client certificate fails the handshake itself.

    Under TLS 1.3 the client finishes its side of the handshake before the server checks
    the certificate, so the refusal can reach the client as a reset of its first request
    instead: :func:`test_tls13_certificate_refusals_never_reach_the_endpoint` covers that.
    """

    def _context(self) -> ssl.SSLContext:
        context = super()._context()
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        return context


@pytest.fixture
def tls12(make_server, ca) -> Any:
    """Factory for started TLS 1.2 servers with the test client; stopped at teardown."""
    return functools.partial(make_server, _TLS12Server, client_ca=ca)


@pytest.fixture
def cert_copy(client_cert, tmp_path):
    """A private copy of the client certificate and key, which a test may change after loading."""
    cert, key = client_cert
    cert_copy, key_copy = str(tmp_path / "client.pem"), str(tmp_path / "client.key")
    shutil.copy(cert, cert_copy)
    shutil.copy(key, key_copy)
    os.chmod(key_copy, 0o600)
    return cert_copy, key_copy


def _mtls_config(server, make_config, cert, key):
    """tls_client_auth: the certificate is the only credential (no secret)."""
    return make_config(
        server,
        omit=["OAUTH_CLIENT_SECRET"],
        OAUTH_USE_MTLS=True,
        OAUTH_CLIENT_CERT_PATH=cert,
        OAUTH_CLIENT_KEY_PATH=key,
    )


def test_mtls_server_refuses_a_client_without_a_certificate(manager, tls12, make_config, sleeps):
    server = tls12(require_client_cert=True)
    with pytest.raises(og.TransportError) as info:
        manager.get_token("oauth-api", make_config(server))
    error = info.value
    assert str(error).startswith("TLS with %s failed for oauth-api (" % server.token_url)
    assert "with mTLS, the client certificate" in str(error)
    assert error.retryable is False
    assert server.count(None) == 0
    assert _eventually(lambda: server.handshake_failures == 1)
    assert sleeps.calls == []
    _assert_failed_once(manager, retries=0)


def test_mtls_works_on_the_tls12_server(manager, tls12, make_config, cert_copy, sleeps):
    # The control for the rows below: the same files, unchanged, get a token with the certificate.
    server = tls12(require_client_cert=True)
    token = manager.get_token("oauth-api", _mtls_config(server, make_config, *cert_copy))
    assert token.access_token in server.issued
    assert server.requests[-1].client_cert is not None
    assert "client_secret" not in server.requests[-1].form
    assert sleeps.calls == []


def _replace_with_directory(path: str) -> None:
    os.remove(path)
    os.mkdir(path)


def _replace_with_garbage(path: str) -> None:
    with open(path, "w") as handle:
        handle.write("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")


@pytest.mark.parametrize(
    "which, change, message",
    [
        ("cert", os.remove, "$.oauth_config.OAUTH_CLIENT_CERT_PATH: Client certificate not found: "),
        ("key", os.remove, "$.oauth_config.OAUTH_CLIENT_KEY_PATH: Client key not found: "),
        ("key", _replace_with_directory, "$.oauth_config.OAUTH_CLIENT_KEY_PATH: Client key not found: "),
    ],
    ids=["cert-removed", "key-removed", "key-now-a-directory"],
)
def test_mtls_file_gone_after_loading_fails_before_connecting(
    manager, tls12, make_config, cert_copy, sleeps, which, change, message
):
    # The server takes clients without a certificate too, so a request sent without one would count.
    server = tls12()
    config = _mtls_config(server, make_config, *cert_copy)
    path = cert_copy[0] if which == "cert" else cert_copy[1]
    change(path)
    with pytest.raises(og.ConfigError) as info:
        manager.get_token("oauth-api", config)
    assert str(info.value) == message + path + "; check the path"
    assert server.connections == 0
    assert server.count(None) == 0
    assert sleeps.calls == []


def test_mtls_file_removed_while_a_connection_is_pooled_still_fails_closed(
    manager, tls12, make_config, cert_copy, sleeps
):
    # The pooled connection was opened with the certificate; the file check runs before every
    # request all the same, so a removed certificate stops the next request, not the next handshake.
    server = tls12()
    config = _mtls_config(server, make_config, *cert_copy)
    manager.get_token("oauth-api", config)
    assert (server.count(), server.connections) == (1, 1)
    manager.invalidate("oauth-api")
    os.remove(cert_copy[0])
    with pytest.raises(og.ConfigError, match="Client certificate not found"):
        manager.get_token("oauth-api", config)
    assert server.count() == 1
    assert sleeps.calls == []


@pytest.mark.parametrize(
    "fault", [Fault(status=401, json={"error": "invalid_client"}), Fault(status=503)], ids=["invalid_client", "503"]
)
def test_refresh_raises_when_the_fetch_fails(manager, auth_server, make_config, sleeps, fault):
    config = make_config(auth_server, OAUTH_MAX_RETRIES=0)
    cached = manager.get_token("oauth-api", config)
    auth_server.set_faults([fault])
    with pytest.raises(og.TokenRequestError) as info:
        manager.refresh("oauth-api", config)
    assert info.value.status_code == fault.status
    assert auth_server.count() == 2
    assert manager.get_token("oauth-api", config) is cached  # the cached token is kept


def _other_key(ca, path: str) -> None:
    ca.issue_cert("someone-else.test.example").private_key_pem.write_to_path(path)


@pytest.mark.parametrize("change", ["mismatched-key", "garbled-key"])
def test_mtls_files_changed_after_loading_fail_closed(manager, ca, tls12, make_config, cert_copy, sleeps, change):
    server = tls12()  # certificate optional: a request without one would reach /token
    config = _mtls_config(server, make_config, *cert_copy)
    if change == "mismatched-key":
        _other_key(ca, cert_copy[1])
    else:
        _replace_with_garbage(cert_copy[1])
    with pytest.raises(og.TransportError) as info:
        manager.get_token("oauth-api", config)
    error = info.value
    assert str(error).startswith("TLS with %s failed for oauth-api (" % server.token_url)
    assert error.retryable is False
    assert server.count(None) == 0
    assert sleeps.calls == []
    _assert_failed_once(manager, retries=0)


def _write_leaf(leaf, cert_path: str, key_path: str) -> None:
    with open(cert_path, "wb") as handle:
        for blob in leaf.cert_chain_pems:
            handle.write(blob.bytes())
    leaf.private_key_pem.write_to_path(key_path)


def test_mtls_certificate_expired_after_loading_is_refused_in_the_handshake(
    manager, ca, tls12, make_config, cert_copy, sleeps
):
    server = tls12()
    config = _mtls_config(server, make_config, *cert_copy)
    expired = ca.issue_cert("client.test.example", not_after=datetime.datetime(2001, 1, 1))
    _write_leaf(expired, *cert_copy)  # renewed in place by mistake with an old pair
    with pytest.raises(og.TransportError) as info:
        manager.get_token("oauth-api", config)
    assert str(info.value).startswith("TLS with %s failed for oauth-api (" % server.token_url)
    assert info.value.retryable is False
    assert server.count(None) == 0
    assert _eventually(lambda: server.handshake_failures == 1)
    assert sleeps.calls == []


@pytest.mark.parametrize("variant", ["no-certificate", "expired-certificate"])
def test_tls13_certificate_refusals_never_reach_the_endpoint(
    manager, ca, mtls_server, make_config, cert_copy, sleeps, variant
):
    # TLS 1.3: the refusal may arrive as a reset of the first request (then retried, on
    # urllib3 1.26 more often than on 2.x) or as the TLS alert. Either way nothing is sent.
    if variant == "no-certificate":
        config = make_config(mtls_server)
    else:
        config = _mtls_config(mtls_server, make_config, *cert_copy)
        _write_leaf(ca.issue_cert("client.test.example", not_after=datetime.datetime(2001, 1, 1)), *cert_copy)
    with pytest.raises(og.TransportError) as info:
        manager.get_token("oauth-api", config)
    assert "failed for oauth-api" in str(info.value)
    assert mtls_server.count(None) == 0
    attempts = len(sleeps.calls) + 1
    assert sleeps.calls == SCHEDULE[: attempts - 1]
    assert _eventually(lambda: mtls_server.handshake_failures >= 1)
    assert mtls_server.handshake_failures <= attempts
    assert _metrics(manager)["token_retries"] == len(sleeps.calls)


# --------------------------------------------------------------------------- revocation


def test_revocation_failing_on_every_attempt_raises_and_still_evicts(manager, auth_server, make_config, sleeps):
    config = make_config(auth_server)
    token = manager.get_token("oauth-api", config)
    auth_server.set_faults([Fault(status=503, json={"error": "temporarily_unavailable"})] * 4, path="/revoke")
    with pytest.raises(og.TokenRequestError) as info:
        manager.revoke("oauth-api", config)
    error = info.value
    assert str(error).startswith("OAuth token revocation failed: temporarily_unavailable [correlation_id=")
    assert (error.status_code, error.retryable) == (503, True)
    assert auth_server.count("/revoke") == 4
    assert sleeps.calls == SCHEDULE
    assert token.access_token not in auth_server.revoked
    metrics = _metrics(manager)
    assert (metrics["token_revocation_failures"], metrics["token_revocations"]) == (1, 0)
    assert manager.get_token("oauth-api", config).access_token != token.access_token  # evicted anyway
    assert auth_server.count() == 2


def test_revocation_refused_with_invalid_client_is_not_retried(manager, auth_server, make_config, sleeps):
    config = make_config(auth_server)
    manager.get_token("oauth-api", config)
    auth_server.set_faults([Fault(status=401, json={"error": "invalid_client"})], path="/revoke")
    with pytest.raises(og.InvalidClient) as info:
        manager.revoke("oauth-api", config)
    assert info.value.status_code == 401
    assert auth_server.count("/revoke") == 1
    assert sleeps.calls == []


def test_a_revocation_redirect_is_never_followed(manager, ca, auth_server, make_config, sleeps):
    config = make_config(auth_server)
    token = manager.get_token("oauth-api", config)
    with AuthServer(ca) as elsewhere:
        auth_server.set_faults([Fault(status=307, redirect_to=elsewhere.revocation_url)], path="/revoke")
        with pytest.raises(og.TokenRequestError, match="a redirect to .*, which is never followed") as info:
            manager.revoke("oauth-api", config)
        assert elsewhere.count(None) == 0
        assert elsewhere.connections == 0
    assert info.value.status_code == 307
    assert auth_server.count("/revoke") == 1
    assert token.access_token not in auth_server.revoked
    assert sleeps.calls == []
