"""Hardening, round 2: what a security review showed, each with a test that failed before the fix.

Every test runs against the real loopback HTTPS token server (``servers.AuthServer``),
extended with bodies that drip a byte at a time, chunked bodies that never end and gzip
bombs. Deadline tests use small timeouts and check that the client hung up on the server
before the slow body was complete, not how long that took.
"""

from __future__ import annotations

import gzip
import http.server
import json
import logging
import socket
import threading
import traceback
import tracemalloc
import urllib.parse
from typing import Any, Callable, Dict, Iterator, List

import pytest
import requests

import oauth_gateway as og
import servers
from oauth_gateway import _response, client
from oauth_gateway.contrib.store import acquire_polling
from servers import TEST_CLIENT_ID, TEST_CLIENT_SECRET, AuthServer, Fault


def _token_document(token: str = "tok-0123456789abcdef") -> Dict[str, Any]:
    return {"access_token": token, "token_type": "Bearer", "expires_in": 3600}


# --------------------------------------------------------------------------- 4. frame locals


def _with_locals(error: BaseException) -> str:
    """The error as a crash reporter with local variables shows it (Sentry, Django, pytest -l)."""
    return "".join(traceback.TracebackException(type(error), error, error.__traceback__, capture_locals=True).format())


def _secrets_of(server: AuthServer, *extra: str) -> List[str]:
    basic = servers.basic_credentials(TEST_CLIENT_ID, TEST_CLIENT_SECRET)[len("Basic ") :]
    return (
        [TEST_CLIENT_SECRET, urllib.parse.quote_plus(TEST_CLIENT_SECRET), basic]
        + list(server.issued_history)
        + [value for value in extra if value]
    )


def _scenario_invalid_client_echoing_the_secret(manager, server, make_config):
    server.set_faults([Fault(status=401, json={"error": "invalid_client", "error_description": TEST_CLIENT_SECRET})])
    manager.get_token("s", make_config(server))


def _scenario_post_auth_refused(manager, server, make_config):
    server.set_faults([Fault(status=400, json={"error": "invalid_request"})])
    manager.get_token("s", make_config(server, OAUTH_USE_BASIC_AUTH=False))


def _scenario_a_token_of_the_wrong_type(manager, server, make_config):
    server.set_faults([Fault(json={"access_token": "mac-token-0123456789", "token_type": "mac"})])
    manager.get_token("s", make_config(server))


def _scenario_a_token_with_a_newline(manager, server, make_config):
    server.set_faults([Fault(json={"access_token": "nl-token-0123456789\r\nX: 1", "token_type": "Bearer"})])
    manager.get_token("s", make_config(server))


def _scenario_connection_refused(manager, server, make_config):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = "https://127.0.0.1:%d/token" % closed.getsockname()[1]
        manager.get_token("s", make_config(server, OAUTH_TOKEN_URL=url, OAUTH_MAX_RETRIES=0))


def _scenario_tls_failure(manager, server, make_config):
    other = servers.trustme.CA()
    server_with_other_ca = AuthServer(other).start()
    try:
        manager.get_token("s", make_config(server_with_other_ca))
    finally:
        server_with_other_ca.stop()


def _scenario_scope_refused(manager, server, make_config):
    server.scope_override = "read"
    manager.get_token("s", make_config(server, OAUTH_SCOPE="read write", OAUTH_VALIDATE_SCOPES=True))


def _scenario_revocation_refused(manager, server, make_config):
    config = make_config(server)
    manager.get_token("s", config)
    server.set_faults([Fault(status=400, json={"error": "invalid_request"})], path="/revoke")
    manager.revoke("s", config)


def _scenario_the_auth_object_refresh_fails(manager, server, make_config):
    config = make_config(server)
    with requests.Session() as session:
        session.auth = manager.auth("s", config)
        assert session.get(server.resource_url, timeout=10, verify=server.ca_bundle).status_code == 200
        server.expire_tokens()
        server.set_faults([Fault(status=401, json={"error": "invalid_client"})])
        session.get(server.resource_url, timeout=10, verify=server.ca_bundle)


def _scenario_a_body_past_its_deadline(manager, server, make_config):
    server.set_faults([Fault(json=_token_document("drip-token-0123456789"), drip=0.05)])
    manager.get_token("s", make_config(server, OAUTH_TIMEOUT=0.3, OAUTH_CONNECT_TIMEOUT=0.3, OAUTH_MAX_RETRIES=0))


SCENARIOS: Dict[str, Callable[..., None]] = {
    name[len("_scenario_") :]: function for name, function in list(globals().items()) if name.startswith("_scenario_")
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_no_secret_or_token_in_the_locals_of_any_error_traceback(manager, auth_server, make_config, scenario):
    with pytest.raises(og.OAuthGatewayError) as info:
        SCENARIOS[scenario](manager, auth_server, make_config)
    shown = _with_locals(info.value)
    assert " = " in shown  # the locals were rendered
    leaked = [
        i
        for i, secret in enumerate(
            _secrets_of(auth_server, "mac-token-0123456789", "nl-token-0123456789", "drip-token-0123456789")
        )
        if secret in shown
    ]
    assert leaked == []


def test_a_token_response_never_prints_its_token():
    from oauth_gateway.client import parse_token_response

    response = parse_token_response(200, json.dumps(_token_document("repr-token-0123456789")).encode())
    assert "repr-token" not in repr(response) and "repr-token" not in str(response)
    assert response.access_token == "repr-token-0123456789" and type(response.access_token) is str


def test_transport_errors_carry_their_reason_but_no_chain(manager, auth_server, make_config):
    with pytest.raises(og.TransportError) as info:
        _scenario_connection_refused(manager, auth_server, make_config)
    assert "connection refused" in str(info.value)
    # Raised outside the except block: no chain at all, not just a hidden one (issue 22 item 9).
    assert info.value.__cause__ is None and info.value.__context__ is None


# --------------------------------------------------------------------------- 5. the trust store


def test_requests_ca_bundle_cannot_replace_the_default_trust_store(manager, monkeypatch, tmp_path):
    attacker = servers.trustme.CA()
    server = AuthServer(attacker)
    server.register_client(TEST_CLIENT_ID, TEST_CLIENT_SECRET)
    server.start()
    try:
        bundle = str(tmp_path / "attacker.pem")
        attacker.cert_pem.write_to_path(bundle)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", bundle)
        monkeypatch.setenv("CURL_CA_BUNDLE", bundle)
        config = og.OAuthConfig.from_dict(servers.oauth_block(server, ca_bundle="", OAUTH_MAX_RETRIES=0))
        assert config.ca_bundle_path == ""
        with pytest.raises(og.TransportError) as info:
            manager.get_token("oauth-api", config)
        assert "certificate verify failed" in str(info.value)
        assert server.count() == 0  # the client secret never reached the attacker's endpoint
    finally:
        server.stop()
    assert client.default_ca_bundle() == requests.certs.where()


# --------------------------------------------------------------------------- 6. deadlines


def _fast(server: AuthServer, make_config, **overrides: Any) -> og.OAuthConfig:
    # A 0.5 + 2 x 0.5 = 1.5 s deadline per attempt.
    values = dict(OAUTH_TIMEOUT=0.5, OAUTH_CONNECT_TIMEOUT=0.5, OAUTH_MAX_RETRIES=0)
    values.update(overrides)
    return make_config(server, **values)


def test_the_deadline_is_connect_plus_twice_read(auth_server, make_config):
    assert client.attempt_deadline(_fast(auth_server, make_config)) == 1.5
    assert client.attempt_deadline(make_config(auth_server)) == 25.0  # the defaults: 5 + 2 x 10


def test_a_body_sent_a_byte_at_a_time_fails_within_the_deadline(manager, auth_server, make_config):
    # Each byte comes well within the 0.5 s read timeout: only a deadline stops this.
    auth_server.set_faults([Fault(json=_token_document(), drip=0.3)])
    with pytest.raises(og.TransportError) as info:
        manager.get_token("oauth-api", _fast(auth_server, make_config))
    assert "did not finish within its deadline of 1.5 s" in str(info.value)
    assert info.value.retryable is True
    assert auth_server.wait_until(lambda: auth_server.hangups == 1)  # before the body's end, ~30 s away


def test_a_chunked_body_that_never_ends_fails_within_the_deadline(manager, auth_server, make_config):
    auth_server.set_faults([Fault(body=b"", endless=64)])
    with pytest.raises(og.OAuthGatewayError) as info:
        manager.get_token("oauth-api", _fast(auth_server, make_config))
    assert "deadline" in str(info.value) or "larger than" in str(info.value)
    assert auth_server.wait_until(lambda: auth_server.hangups == 1)  # the client stopped reading, and hung up


def test_threads_waiting_for_a_slow_leader_fail_within_the_deadline(manager, auth_server, make_config):
    auth_server.set_faults([Fault(json=_token_document(), drip=0.3)])
    config = _fast(auth_server, make_config)
    errors: List[BaseException] = []
    barrier = threading.Barrier(4)

    def call() -> None:
        barrier.wait()
        try:
            manager.get_token("oauth-api", config)
        except og.OAuthGatewayError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)  # the dripped body would take ~30 s: a waiter left waiting for it is still alive
    assert not any(thread.is_alive() for thread in threads)
    assert len(errors) == 4 and all(isinstance(error, og.TransportError) for error in errors)
    assert auth_server.count() == 1
    assert auth_server.wait_until(lambda: auth_server.hangups == 1)  # the leader hung up at its deadline


def test_a_shared_lock_wait_ends_even_when_the_clock_stands_still():
    slept: List[float] = []
    calls = [0]

    def busy() -> bool:
        calls[0] += 1
        if calls[0] > 100000:
            raise AssertionError("the wait never ended")
        return False

    with pytest.raises(TimeoutError):
        acquire_polling(busy, 2.0, lambda: 1000.0, slept.append, "the lock of oauth-api")
    assert sum(slept) == pytest.approx(2.0)


# --------------------------------------------------------------------------- 7. the auth object over http


class _PlainServer:
    """A plain-http loopback server that records the Authorization headers it receives."""

    def __init__(self) -> None:
        seen = self.seen = []  # type: List[str]

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.headers.get("Authorization", ""))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/data" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def plain_server() -> Iterator[_PlainServer]:
    server = _PlainServer()
    try:
        yield server
    finally:
        server.stop()


def test_the_auth_object_refuses_to_send_a_token_over_http(manager, auth_server, make_config, plain_server):
    config = make_config(auth_server)
    with requests.Session() as session:
        session.auth = manager.auth("oauth-api", config)
        with pytest.raises(og.InsecureTransportError) as info:
            session.get(plain_server.url, timeout=5)
    assert "https" in str(info.value) and "allow_insecure=True" in str(info.value)
    assert plain_server.seen == []
    assert auth_server.count() == 0  # not even a token was fetched


def test_loopback_http_needs_enforcement_off_or_an_explicit_opt_in(manager, auth_server, make_config, plain_server):
    relaxed = make_config(auth_server, OAUTH_VERSION="2.0", OAUTH_ENFORCE_HTTPS=False)
    strict = make_config(auth_server)
    with requests.Session() as session:
        session.auth = manager.auth("relaxed", relaxed)
        assert session.get(plain_server.url, timeout=5).status_code == 200
        with pytest.raises(og.InsecureTransportError):  # enforcement off covers loopback only
            session.get("http://192.0.2.1/data", timeout=5)
        session.auth = manager.auth("strict", strict, allow_insecure=True)
        assert session.get(plain_server.url, timeout=5).status_code == 200
    assert len(plain_server.seen) == 2 and all(value.startswith("Bearer ") for value in plain_server.seen)


# --------------------------------------------------------------------------- 8. big bodies


def test_a_gzip_bomb_fails_fast_with_little_memory(manager, auth_server, make_config):
    bomb = gzip.compress(b"{" + b" " * (96 << 20), 9)  # about 96 KB that inflate to 96 MB
    auth_server.set_faults([Fault(body=bomb, headers={"Content-Encoding": "gzip"})])
    config = make_config(auth_server, OAUTH_MAX_RETRIES=0)
    tracemalloc.start()
    try:
        with pytest.raises(og.TokenRequestError) as info:
            manager.get_token("oauth-api", config)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "larger than %d bytes" % _response.MAX_RESPONSE_BYTES in str(info.value)
    assert info.value.retryable is False
    assert peak < 8 << 20, "peak %d bytes" % peak


def test_a_gzip_token_response_is_inflated(manager, auth_server, make_config):
    body = gzip.compress(json.dumps(_token_document("gz-token-0123456789")).encode())
    auth_server.set_faults([Fault(body=body, headers={"Content-Encoding": "gzip"})])
    assert manager.get_token("oauth-api", make_config(auth_server)).access_token == "gz-token-0123456789"


def test_a_plain_body_over_the_cap_is_refused(manager, auth_server, make_config):
    document = dict(_token_document(), padding="x" * (_response.MAX_RESPONSE_BYTES + 10))
    auth_server.set_faults([Fault(json=document)])
    with pytest.raises(og.TokenRequestError) as info:
        manager.get_token("oauth-api", make_config(auth_server, OAUTH_MAX_RETRIES=0))
    assert "larger than" in str(info.value)


# --------------------------------------------------------------------------- 10. server text


_FORGED = "\x1b[2J\x1b]0;owned\x07\r\nERROR forged log line"


def test_a_redirect_location_is_sanitised(manager, auth_server, make_config):
    # No CR/LF: a header value cannot hold them, but ESC and BEL pass through lax servers.
    location = "https://evil.example/x\x1b[2J\x1b]0;owned\x07" + "y" * 5000 + "?code=abc123"
    auth_server.set_faults([Fault(status=302, redirect_to=location)])
    with pytest.raises(og.TokenRequestError) as info:
        manager.get_token("oauth-api", make_config(auth_server))
    message = str(info.value)
    assert "\x1b" not in message and "\r" not in message and "\n" not in message and "\x07" not in message
    assert "abc123" not in message and "evil.example" in message
    assert len(message) < 600


def test_error_uri_is_sanitised_and_short(manager, auth_server, make_config):
    uri = "https://idp.example/help?sig=s3cr3t" + _FORGED + "z" * (200 << 10)
    auth_server.set_faults([Fault(status=400, json={"error": "invalid_request", "error_uri": uri})])
    with pytest.raises(og.TokenRequestError) as info:
        manager.get_token("oauth-api", make_config(auth_server))
    kept = info.value.error_uri
    assert kept is not None and len(kept) <= 200
    assert "\x1b" not in kept and "\n" not in kept and "s3cr3t" not in kept
    assert kept.startswith("https://idp.example/help?sig=***")


@pytest.mark.parametrize("scope", ["read" + _FORGED, "read " + "w" * 100000])
def test_a_granted_scope_that_is_not_rfc6749_is_refused_unrepeated(manager, auth_server, make_config, scope):
    auth_server.scope_override = scope
    with pytest.raises(og.TokenRequestError) as info:
        manager.get_token("oauth-api", make_config(auth_server, OAUTH_SCOPE="read"))
    message = str(info.value)
    assert "scope is not an RFC 6749 scope" in message
    assert "forged" not in message and "www" not in message and len(message) < 400


# --------------------------------------------------------------------------- 11. token syntax


@pytest.mark.parametrize(
    "token",
    ["abc\r\nX-Injected: 1", "abc\x00def", "two words", "t\u00f6ken", "abc\tdef", "=abc", "abc=def"],
)
def test_an_access_token_outside_b64token_is_refused_unrepeated(manager, auth_server, make_config, token):
    auth_server.set_faults([Fault(json=_token_document(token))])
    with pytest.raises(og.TokenRequestError) as info:
        manager.get_token("oauth-api", make_config(auth_server))
    assert "b64token" in str(info.value)
    assert token not in str(info.value) and token not in repr(info.value)
    assert info.value.retryable is False


@pytest.mark.parametrize("token", ["abcDEF0123-._~+/", "abc==", "eyJhbGciOi.eyJzdWIi.c2ln"])
def test_b64token_access_tokens_are_accepted(manager, auth_server, make_config, token):
    auth_server.set_faults([Fault(json=_token_document(token))])
    assert manager.get_token("oauth-api", make_config(auth_server)).access_token == token


# --------------------------------------------------------------------------- 12. credentials in URLs


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("https://gateway:pa55-in-url@idp.example/token", "user:password@"),
        ("https://idp.example/token?client_secret=pa55-in-url", "in its query"),
        ("https://idp.example/token?api_key=pa55-in-url&p=x", "in its query"),
    ],
)
def test_credentials_in_an_endpoint_url_are_refused_and_never_shown(url, fragment):
    block = {
        "enabled": True,
        "OAUTH_CLIENT_ID": "gateway",
        "OAUTH_CLIENT_SECRET": "${SECRET}",
        "OAUTH_TOKEN_URL": "${TOKEN_URL}",
    }
    with pytest.raises(og.ConfigError) as info:
        og.OAuthConfig.from_dict(block, environ={"TOKEN_URL": url, "SECRET": "s"})
    assert fragment in str(info.value)
    assert "pa55-in-url" not in str(info.value)


def test_an_http_url_error_never_shows_its_query_or_user_info():
    with pytest.raises(og.ConfigError) as info:
        og.OAuthConfig(
            version="2.0", client_id="g", client_secret="s", token_url="http://idp.example/token?p=pa55-in-url"
        )
    assert "must be https" in str(info.value) and "pa55-in-url" not in str(info.value)


def test_the_config_repr_masks_query_values(auth_server, make_config):
    config = make_config(auth_server, OAUTH_TOKEN_URL=auth_server.token_url + "?p=tenant-policy-x")
    assert "tenant-policy-x" not in repr(config) and "p=***" in repr(config)


def test_urllib3_debug_log_shows_no_credential(auth_server, make_config, manager):
    records: List[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Keep(logging.DEBUG)
    logger = logging.getLogger("urllib3")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        config = make_config(auth_server, OAUTH_TOKEN_URL=auth_server.token_url + "?p=b2c_policy")
        token = manager.get_token("oauth-api", config)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    text = "\n".join(records)
    assert '"POST /token?p=b2c_policy HTTP/1.1" 200' in text  # a non-secret query is logged, as documented
    assert [secret for secret in _secrets_of(auth_server, token.access_token) if secret in text] == []
