"""Token requests against a real HTTPS server: wire format, retries, redirects, parsing."""

from __future__ import annotations

import base64
import json
import socket
import threading
from urllib.parse import unquote_plus

import pytest

import oauth_gateway as og
from oauth_gateway.client import MAX_TOKEN_LIFETIME, TokenClient, client_credentials_form, parse_token_response
from oauth_gateway.client_auth import basic_credentials
from servers import TEST_CLIENT_ID, TEST_CLIENT_SECRET, AuthServer, Fault


def _client(sleeps):
    return TokenClient(sleep=sleeps)


def _token(client, config, *args, **kwargs):
    """A client-credentials request for ``config`` through its endpoint."""
    return client.request_token(client.endpoint(config), client_credentials_form(config), *args, **kwargs)


def test_basic_credentials_are_form_encoded_before_base64():
    header = basic_credentials("test client:1", "a:b/c+d%e&f=")
    raw = base64.b64decode(header[len("Basic ") :]).decode()
    assert raw == "test+client%3A1:a%3Ab%2Fc%2Bd%25e%26f%3D"
    client_id, secret = raw.split(":", 1)
    assert (unquote_plus(client_id), unquote_plus(secret)) == ("test client:1", "a:b/c+d%e&f=")


def test_client_secret_basic_sends_rfc6749_credentials(auth_server, make_config, sleeps):
    config = make_config(auth_server, OAUTH_SCOPE="read write")
    response = _token(_client(sleeps), config, "oauth-api")
    assert response.access_token in auth_server.issued
    request = auth_server.requests[-1]
    assert request.basic_auth == (TEST_CLIENT_ID, TEST_CLIENT_SECRET)
    assert request.form["grant_type"] == ["client_credentials"]
    assert request.form["scope"] == ["read write"]
    assert "client_secret" not in request.form
    assert request.headers["Accept"] == "application/json"
    assert request.headers["User-Agent"].startswith("oauth-gateway/%s " % og.__version__)
    assert len(request.headers["X-Correlation-ID"]) == 8


def test_client_secret_post_puts_credentials_in_the_body(auth_server, make_config, sleeps):
    config = make_config(auth_server, OAUTH_USE_BASIC_AUTH=False)
    _token(_client(sleeps), config, "oauth-api")
    request = auth_server.requests[-1]
    assert request.basic_auth is None
    assert "Authorization" not in request.headers
    assert request.form["client_id"] == [TEST_CLIENT_ID]
    assert request.form["client_secret"] == [TEST_CLIENT_SECRET]


def test_every_parameter_and_header_is_sent(auth_server, make_config, sleeps):
    config = make_config(
        auth_server,
        OAUTH_AUDIENCE="https://api.example.com",
        OAUTH_ORGANIZATION="org-123",
        OAUTH_SCOPE="read write",
        OAUTH_RESOURCE=["https://a.example.com/mcp", "https://b.example.com/"],
        OAUTH_ADDITIONAL_PARAMS={"realm": "myrealm", "max_age": 5, "flag": True},
        OAUTH_CUSTOM_HEADERS={"X-Tenant": "blue"},
    )
    _token(_client(sleeps), config, "oauth-api", correlation_id="abcd1234")
    request = auth_server.requests[-1]
    assert request.form["audience"] == ["https://api.example.com"]
    assert request.form["organization"] == ["org-123"]
    assert request.form["scope"] == ["read write"]
    assert request.form["resource"] == ["https://a.example.com/mcp", "https://b.example.com/"]
    assert request.form["realm"] == ["myrealm"]
    assert request.form["max_age"] == ["5"]
    assert request.form["flag"] == ["true"]
    assert request.headers["X-Tenant"] == "blue"
    assert request.headers["X-Correlation-ID"] == "abcd1234"


def test_tls_client_auth_sends_the_certificate_and_no_secret(mtls_server, make_config, client_cert, sleeps):
    cert, key = client_cert
    config = make_config(
        mtls_server,
        omit=["OAUTH_CLIENT_SECRET"],
        OAUTH_USE_MTLS=True,
        OAUTH_CLIENT_CERT_PATH=cert,
        OAUTH_CLIENT_KEY_PATH=key,
    )
    assert config.auth_method == "tls_client_auth"
    response = _token(_client(sleeps), config, "oauth-api")
    assert response.access_token in mtls_server.issued
    request = mtls_server.requests[-1]
    assert request.client_cert is not None
    assert request.form["client_id"] == [TEST_CLIENT_ID]
    assert "client_secret" not in request.form
    assert request.basic_auth is None


def test_mtls_fails_closed_when_the_certificate_disappears(mtls_server, make_config, client_cert, sleeps, tmp_path):
    import shutil

    cert, key = client_cert
    moved = str(tmp_path / "moved-cert.pem")
    shutil.copy(cert, moved)
    config = make_config(mtls_server, OAUTH_USE_MTLS=True, OAUTH_CLIENT_CERT_PATH=moved, OAUTH_CLIENT_KEY_PATH=key)
    import os

    os.remove(moved)
    with pytest.raises(og.ConfigError, match="Client certificate not found"):
        _token(_client(sleeps), config, "oauth-api")
    assert mtls_server.count() == 0


def test_transient_statuses_are_retried_with_backoff(auth_server, make_config, sleeps):
    auth_server.set_faults([Fault(status=503), Fault(status=502), Fault(status=500)])
    response = _token(_client(sleeps), make_config(auth_server), "oauth-api")
    assert response.access_token in auth_server.issued
    assert auth_server.count() == 4
    assert sleeps.calls == [2.0, 4.0, 8.0]


def test_the_adapter_never_retries_so_every_attempt_is_built_by_our_loop(auth_server, make_config, sleeps):
    client = _client(sleeps)
    config = make_config(auth_server)
    adapter = client.endpoint(config).session.get_adapter(config.token_url)
    assert adapter.max_retries.total == 0
    policy = client.endpoint(config).retry
    assert (policy.total, policy.backoff_base, policy.retry_after_cap) == (3, 2.0, 60.0)
    assert "POST" in policy.allowed_methods


def test_each_attempt_is_built_anew_with_its_number(auth_server, make_config, sleeps):
    class NumberedAttempts(TokenClient):
        def _authenticated(self, endpoint, form, call, url):
            build = super()._authenticated(endpoint, form, call, url)

            def build_attempt():
                headers, fields = build()
                return headers, fields + [("attempt", str(call.attempts))]

            return build_attempt

    auth_server.set_faults([Fault(status=503), Fault(status=502)])
    _token(NumberedAttempts(sleep=sleeps), make_config(auth_server), "oauth-api")
    assert [request.form["attempt"] for request in auth_server.requests] == [["1"], ["2"], ["3"]]
    assert sleeps.calls == [2.0, 4.0]


def test_retries_in_two_threads_keep_their_own_server_names_and_counts(ca, auth_server, make_config, sleeps):
    seen = []
    lock = threading.Lock()

    def on_retry(server_name, attempt, total, reason):
        with lock:
            seen.append((server_name, attempt, total, reason))

    client = TokenClient(sleep=sleeps, on_retry=on_retry)
    errors = []
    with AuthServer(ca) as other:
        other.register_client(TEST_CLIENT_ID, TEST_CLIENT_SECRET)
        auth_server.set_faults([Fault(status=503)] * 2)
        other.set_faults([Fault(status=502)])
        configs = {"api-a": make_config(auth_server), "api-b": make_config(other)}

        def fetch(name):
            try:
                _token(client, configs[name], name)
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=fetch, args=(name,)) for name in configs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert other.count() == 2
    assert errors == []
    assert sorted(seen) == [("api-a", 2, 4, "HTTP 503"), ("api-a", 3, 4, "HTTP 503"), ("api-b", 2, 4, "HTTP 502")]
    assert auth_server.count() == 3


def test_retries_stop_after_max_retries(auth_server, make_config, sleeps):
    auth_server.set_faults([Fault(status=504, json={"error": "temporarily_unavailable"})] * 3)
    config = make_config(auth_server, OAUTH_MAX_RETRIES=2, OAUTH_RETRY_BACKOFF=0.5)
    with pytest.raises(og.TokenRequestError) as info:
        _token(_client(sleeps), config, "oauth-api")
    assert info.value.status_code == 504
    assert info.value.retryable is True
    assert auth_server.count() == 3
    assert sleeps.calls == [0.5, 1.0]


def test_retry_after_is_honoured(auth_server, make_config, sleeps):
    auth_server.set_faults([Fault(status=429, headers={"Retry-After": "1"})])
    _token(_client(sleeps), make_config(auth_server), "oauth-api")
    assert auth_server.count() == 2
    assert sleeps.calls == [1.0]


def test_a_retry_after_above_the_cap_fails_at_once(auth_server, make_config, sleeps):
    auth_server.set_faults([Fault(status=429, headers={"Retry-After": "3600"}, json={"error": "slow_down"})])
    with pytest.raises(og.TokenRequestError) as info:
        _token(_client(sleeps), make_config(auth_server), "oauth-api")
    assert info.value.status_code == 429
    assert info.value.error == "slow_down"
    assert "OAUTH_RETRY_AFTER_MAX" in str(info.value)
    assert auth_server.count() == 1
    assert sleeps.calls == []


@pytest.mark.parametrize(
    "status, code, exc",
    [
        (400, "invalid_request", og.InvalidRequest),
        (401, "invalid_client", og.InvalidClient),
        (400, "invalid_scope", og.InvalidScope),
        (400, "unauthorized_client", og.UnauthorizedClient),
        (400, "something_new", og.TokenRequestError),
    ],
)
def test_client_errors_are_not_retried(auth_server, make_config, sleeps, status, code, exc):
    auth_server.set_faults([Fault(status=status, json={"error": code, "error_description": "nope"})])
    with pytest.raises(exc) as info:
        _token(_client(sleeps), make_config(auth_server), "oauth-api", correlation_id="c0ffee00")
    error = info.value
    assert str(error).startswith("OAuth token request failed: %s (nope)" % code)
    assert (error.error, error.error_description, error.status_code) == (code, "nope", status)
    assert error.correlation_id == "c0ffee00"
    assert error.retryable is False
    assert auth_server.count() == 1
    assert sleeps.calls == []


def test_redirects_are_never_followed(ca, ca_bundle, auth_server, make_config, sleeps):
    with AuthServer(ca) as elsewhere:
        auth_server.set_faults([Fault(status=307, redirect_to=elsewhere.token_url)])
        with pytest.raises(og.TokenRequestError, match="redirect") as info:
            _token(_client(sleeps), make_config(auth_server), "oauth-api")
        assert info.value.status_code == 307
        assert auth_server.count() == 1
        assert len(elsewhere.requests) == 0


def test_connection_refused_is_retried_then_a_transport_error(make_config, auth_server, sleeps):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = make_config(auth_server, OAUTH_TOKEN_URL="https://127.0.0.1:%d/token" % port)
    with pytest.raises(og.TransportError, match="connection refused") as info:
        _token(_client(sleeps), config, "oauth-api")
    assert info.value.retryable is True
    assert sleeps.calls == [2.0, 4.0, 8.0]


def test_connection_reset_is_retried(auth_server, make_config, sleeps):
    auth_server.set_faults([Fault(reset=True)])
    response = _token(_client(sleeps), make_config(auth_server), "oauth-api")
    assert response.access_token in auth_server.issued
    assert auth_server.count() == 2
    assert sleeps.calls == [2.0]


def test_untrusted_server_certificate_fails_without_retry(auth_server, make_config, sleeps):
    config = make_config(auth_server, omit=["OAUTH_CA_BUNDLE_PATH"])
    with pytest.raises(og.TransportError, match="certificate verify failed") as info:
        _token(_client(sleeps), config, "oauth-api")
    assert info.value.retryable is False
    assert auth_server.count() == 0


def test_connections_are_reused(auth_server, make_config, sleeps):
    client = _client(sleeps)
    config = make_config(auth_server)
    for _ in range(5):
        _token(client, config, "oauth-api")
    assert auth_server.count() == 5
    assert auth_server.connections == 1


def test_revocation_posts_rfc7009_form(auth_server, make_config, sleeps):
    client = _client(sleeps)
    config = make_config(auth_server)
    token = _token(client, config, "oauth-api").access_token
    client.revoke_token(client.endpoint(config), token, "access_token", "oauth-api")
    request = auth_server.requests[-1]
    assert request.path == "/revoke"
    assert request.form["token"] == [token]
    assert request.form["token_type_hint"] == ["access_token"]
    assert request.basic_auth == (TEST_CLIENT_ID, TEST_CLIENT_SECRET)
    assert token in auth_server.revoked


# -- response parsing (pure) -------------------------------------------------


def _ok(document):
    return parse_token_response(200, json.dumps(document).encode())


def test_parse_accepts_a_bearer_token_in_any_case():
    parsed = _ok({"access_token": "t" * 20, "token_type": "bEaReR", "expires_in": 3600, "scope": "read"})
    assert parsed == ("t" * 20, "Bearer", 3600.0, "read", None)


@pytest.mark.parametrize("value, expected", [("3600", 3600.0), (None, None), (1e12, MAX_TOKEN_LIFETIME), (59.5, 59.5)])
def test_parse_expires_in_forms(value, expected):
    document = {"access_token": "t" * 20, "token_type": "Bearer"}
    if value is not None:
        document["expires_in"] = value
    else:
        document["expires_in"] = None
    assert _ok(document).expires_in == expected


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b"<html>hello</html>", "not a JSON object"),
        (b"{}", "access_token is missing"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"access_token": "", "token_type": "Bearer"}', "access_token is missing or empty"),
        (b'{"access_token": "abc", "token_type": "mac"}', "'mac', not Bearer"),
        (b'{"access_token": "abc"}', "not Bearer"),
        (b'{"access_token": "abc", "token_type": "Bearer", "expires_in": 0}', "expires_in"),
        (b'{"access_token": "abc", "token_type": "Bearer", "expires_in": -5}', "expires_in"),
        (b'{"access_token": "abc", "token_type": "Bearer", "expires_in": "soon"}', "expires_in"),
        (b'{"access_token": "abc", "token_type": "Bearer", "expires_in": true}', "expires_in"),
        (b'{"access_token": "abc", "token_type": "Bearer", "expires_in": NaN}', "not a JSON object"),
        (b'{"access_token": "abc", "token_type": "Bearer", "scope": ["a"]}', "scope"),
        (b"\xff\xfe", "not a JSON object"),
    ],
)
def test_parse_rejects_what_is_not_a_token(body, fragment):
    with pytest.raises(og.TokenRequestError) as info:
        parse_token_response(200, body)
    assert fragment in str(info.value)
    assert type(info.value) is og.TokenRequestError


def test_error_bodies_are_never_echoed_whole():
    body = json.dumps({"error": "invalid_client", "error_description": "x" * 5000, "debug": "SECRET-DUMP"}).encode()
    with pytest.raises(og.InvalidClient) as info:
        parse_token_response(401, body)
    assert len(str(info.value)) < 300
    assert "SECRET-DUMP" not in str(info.value)


def test_errors_pickle_with_their_fields():
    import pickle

    error = og.InvalidClient("OAuth token request failed: invalid_client", error="invalid_client", status_code=401)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is og.InvalidClient
    assert (copy.error, copy.status_code, str(copy)) == ("invalid_client", 401, str(error))
    config_error = og.ConfigError("must be https", "$.a", "use https")
    again = pickle.loads(pickle.dumps(config_error))
    assert (again.json_path, again.hint, str(again)) == ("$.a", "use https", str(config_error))
