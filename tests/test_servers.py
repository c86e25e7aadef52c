"""Sanity tests of the loopback authorization server and the shared fixtures.

They use plain requests on purpose: they test the fixture, not oauth_gateway.
"""

from __future__ import annotations

import base64
import logging
import socket
import threading
import urllib.parse

import pytest
import requests

import leaks
import servers
from servers import TEST_CLIENT_ID, TEST_CLIENT_SECRET, Fault

FORM = {"grant_type": "client_credentials"}


def _basic() -> dict:
    return {"Authorization": servers.basic_credentials(TEST_CLIENT_ID, TEST_CLIENT_SECRET)}


def _token(server, ca_bundle, session=None, **form):
    data = dict(FORM, **form)
    sender = session or requests
    return sender.post(server.token_url, data=data, headers=_basic(), verify=ca_bundle, timeout=10)


# --------------------------------------------------------------------------- /token


def test_token_is_issued_with_documented_fields(auth_server, ca_bundle):
    response = _token(auth_server, ca_bundle, scope="read write")

    assert response.status_code == 200
    document = response.json()
    assert document["token_type"] == "Bearer"
    assert document["expires_in"] == 3600
    assert document["scope"] == "read write"
    assert len(document["access_token"]) >= 43  # 32 random bytes, urlsafe base64
    assert auth_server.issued == {document["access_token"]}
    assert document["access_token"] in leaks.SECRETS
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Type"] == "application/json"
    assert auth_server.count() == 1
    record = auth_server.requests[0]
    assert record.path == "/token" and record.method == "POST"
    assert record.form["grant_type"] == ["client_credentials"]
    assert record.form["scope"] == ["read write"]


def test_basic_credentials_are_decoded_per_rfc6749_2_3_1(auth_server, ca_bundle):
    raw = "%s:%s" % (
        urllib.parse.quote_plus(TEST_CLIENT_ID),
        urllib.parse.quote_plus(TEST_CLIENT_SECRET),
    )
    header = "Basic " + base64.b64encode(raw.encode()).decode()
    response = requests.post(auth_server.token_url, data=FORM, headers={"Authorization": header}, verify=ca_bundle)

    assert response.status_code == 200
    assert auth_server.requests[0].basic_auth == (TEST_CLIENT_ID, TEST_CLIENT_SECRET)
    assert servers.basic_credentials(TEST_CLIENT_ID, TEST_CLIENT_SECRET) == header


def test_basic_credentials_without_form_encoding_are_rejected(auth_server, ca_bundle):
    # requests' own HTTPBasicAuth does not form-encode: the colon in the id splits wrongly.
    response = requests.post(
        auth_server.token_url,
        data=FORM,
        auth=(TEST_CLIENT_ID, TEST_CLIENT_SECRET),
        verify=ca_bundle,
    )

    assert response.status_code == 401
    assert auth_server.requests[0].basic_auth[0] == "test client"
    assert auth_server.issued == set()


def test_client_secret_post(auth_server, ca_bundle):
    data = dict(FORM, client_id=TEST_CLIENT_ID, client_secret=TEST_CLIENT_SECRET)
    response = requests.post(auth_server.token_url, data=data, verify=ca_bundle)

    assert response.status_code == 200
    record = auth_server.requests[0]
    assert record.basic_auth is None
    assert record.form["client_id"] == [TEST_CLIENT_ID]
    assert record.client_id == TEST_CLIENT_ID


@pytest.mark.parametrize(
    "headers, extra",
    [
        ({"Authorization": servers.basic_credentials(TEST_CLIENT_ID, "wrong secret")}, {}),
        ({"Authorization": servers.basic_credentials("nobody", TEST_CLIENT_SECRET)}, {}),
        ({"Authorization": "Basic !!not base64!!"}, {}),
        ({}, {"client_id": TEST_CLIENT_ID, "client_secret": "wrong secret"}),
        ({}, {}),
    ],
    ids=["wrong-secret", "unknown-client", "malformed-basic", "wrong-post-secret", "no-auth"],
)
def test_wrong_credentials_get_401_invalid_client(auth_server, ca_bundle, headers, extra):
    response = requests.post(auth_server.token_url, data=dict(FORM, **extra), headers=headers, verify=ca_bundle)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert auth_server.issued == set()


def test_two_authentication_methods_at_once_are_rejected(auth_server, ca_bundle):
    data = dict(FORM, client_id=TEST_CLIENT_ID, client_secret=TEST_CLIENT_SECRET)
    response = requests.post(auth_server.token_url, data=data, headers=_basic(), verify=ca_bundle)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_other_grant_type_is_unsupported(auth_server, ca_bundle):
    response = _token(auth_server, ca_bundle, grant_type="password")

    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_scope_override_and_missing_fields(make_server, ca_bundle):
    replaced = make_server(scope_override="read")
    assert _token(replaced, ca_bundle, scope="read write").json()["scope"] == "read"

    bare = make_server(scope_override="", expires_in=None, token_type="bearer")
    document = _token(bare, ca_bundle, scope="read write").json()
    assert "scope" not in document
    assert "expires_in" not in document
    assert document["token_type"] == "bearer"


def test_extra_parameters_and_headers_are_recorded(auth_server, ca_bundle):
    data = [
        ("grant_type", "client_credentials"),
        ("resource", "https://a.example"),
        ("resource", "https://b.example"),
        ("audience", "https://api.example"),
        ("organization", "org-1"),
    ]
    headers = dict(_basic(), **{"X-Correlation-ID": "corr-1", "User-Agent": "probe/1"})
    requests.post(auth_server.token_url, data=data, headers=headers, verify=ca_bundle)

    record = auth_server.requests[0]
    assert record.resource == ["https://a.example", "https://b.example"]
    assert record.audience == "https://api.example"
    assert record.organization == "org-1"
    assert record.correlation_id == "corr-1"
    assert record.headers["x-correlation-id"] == "corr-1"  # case-insensitive
    assert record.user_agent == "probe/1"


def test_record_repr_hides_credentials(auth_server, ca_bundle):
    _token(auth_server, ca_bundle)

    text = repr(auth_server.requests[0]) + repr(auth_server.requests[0].headers)
    assert "/token" in text
    assert TEST_CLIENT_SECRET not in text
    assert _basic()["Authorization"][6:] not in text


# --------------------------------------------------------------------------- faults


def test_faults_are_answered_in_order_then_normal_service(auth_server, ca_bundle):
    auth_server.set_faults(
        [
            Fault(500, json={"error": "server_error"}),
            Fault(429, json={"error": "slow_down"}, headers={"Retry-After": "7"}),
        ]
    )
    auth_server.push_fault(Fault(503, body="down", content_type="text/plain"))
    auth_server.push_fault(Fault(404), path="/revoke")  # another path, another queue

    answers = [_token(auth_server, ca_bundle) for _ in range(4)]

    assert [r.status_code for r in answers] == [500, 429, 503, 200]
    assert answers[1].headers["Retry-After"] == "7"
    assert answers[2].text == "down" and answers[2].headers["Content-Type"] == "text/plain"
    assert auth_server.pending_faults("/revoke") == 1
    assert auth_server.count() == 4


def test_scripted_token_is_issued(auth_server, ca_bundle):
    scripted = {"access_token": "scripted-token-123", "token_type": "Bearer"}
    auth_server.push_fault(Fault(json=scripted))

    assert _token(auth_server, ca_bundle).json()["access_token"] == "scripted-token-123"
    assert "scripted-token-123" in auth_server.issued


def test_passthrough_fault_adds_headers_to_the_normal_answer(auth_server, ca_bundle):
    auth_server.push_fault(Fault(headers={"X-Extra": "1", "Content-Type": "application/json; x=1"}))

    response = _token(auth_server, ca_bundle)

    assert response.status_code == 200
    assert response.headers["X-Extra"] == "1"
    assert response.headers["Content-Type"] == "application/json; x=1"
    assert response.json()["access_token"] in auth_server.issued


def test_reset_fault_breaks_the_connection_and_server_survives(auth_server, ca_bundle):
    auth_server.push_fault(Fault(reset=True))

    with pytest.raises(requests.exceptions.ConnectionError):
        _token(auth_server, ca_bundle)

    assert _token(auth_server, ca_bundle).status_code == 200
    assert auth_server.count() == 2
    assert auth_server.errors == []


def test_redirect_fault(auth_server, ca_bundle):
    auth_server.push_fault(Fault(redirect_to="https://evil.example/token"))

    response = requests.post(
        auth_server.token_url, data=FORM, headers=_basic(), verify=ca_bundle, allow_redirects=False
    )

    assert response.status_code == 307
    assert response.headers["Location"] == "https://evil.example/token"


@pytest.mark.parametrize("stall", ["fault-delay", "latency"])
def test_stalled_answer_times_the_client_out(auth_server, ca_bundle, stall):
    if stall == "latency":
        auth_server.latency = 30
    else:
        auth_server.push_fault(Fault(delay=30))

    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(auth_server.token_url, data=FORM, headers=_basic(), verify=ca_bundle, timeout=0.3)
    assert auth_server.count() == 1
    # stop() ends the 30 s wait at once; the fixture teardown would hang otherwise.


# --------------------------------------------------------------------------- revoke, resource


def test_revocation_makes_resource_answer_401(auth_server, ca_bundle):
    token = _token(auth_server, ca_bundle).json()["access_token"]
    bearer = {"Authorization": "Bearer " + token}
    assert requests.get(auth_server.resource_url, headers=bearer, verify=ca_bundle).json() == {"ok": True}

    revoked = requests.post(
        auth_server.revocation_url,
        data={"token": token, "token_type_hint": "access_token"},
        headers=_basic(),
        verify=ca_bundle,
    )

    assert revoked.status_code == 200 and revoked.content == b""
    assert token in auth_server.revoked and token not in auth_server.issued
    after = requests.get(auth_server.resource_url, headers=bearer, verify=ca_bundle)
    assert after.status_code == 401
    assert 'error="invalid_token"' in after.headers["WWW-Authenticate"]
    assert after.headers["WWW-Authenticate"].startswith("Bearer")
    assert auth_server.count("/resource") == 2
    assert auth_server.requests_to("/revoke")[0].form["token_type_hint"] == ["access_token"]
    active = requests.post(auth_server.introspection_url, data={"token": token}, verify=ca_bundle)
    assert active.json() == {"active": False}


def test_revocation_requires_client_authentication(auth_server, ca_bundle):
    token = _token(auth_server, ca_bundle).json()["access_token"]

    response = requests.post(auth_server.revocation_url, data={"token": token}, verify=ca_bundle)

    assert response.status_code == 401
    assert token in auth_server.issued


def test_expire_tokens_and_introspection(auth_server, ca_bundle):
    token = _token(auth_server, ca_bundle).json()["access_token"]
    introspect = lambda: requests.post(  # noqa: E731
        auth_server.introspection_url, data={"token": token}, verify=ca_bundle
    ).json()["active"]
    assert introspect() is True

    auth_server.expire_tokens()

    assert introspect() is False
    assert token not in auth_server.revoked


# --------------------------------------------------------------------------- TLS


def test_mtls_server_rejects_a_client_without_certificate(mtls_server, ca_bundle):
    with pytest.raises(requests.exceptions.ConnectionError):
        _token(mtls_server, ca_bundle)

    assert mtls_server.count() == 0


def test_mtls_server_accepts_a_client_certificate(mtls_server, ca_bundle, client_cert):
    response = requests.post(mtls_server.token_url, data=FORM, headers=_basic(), verify=ca_bundle, cert=client_cert)

    assert response.status_code == 200
    assert ("commonName", "test-client") in [
        pair for rdn in mtls_server.requests[0].client_cert["subject"] for pair in rdn
    ]


def test_tls_client_auth_on_the_optional_certificate_server(auth_server, ca_bundle, client_cert):
    data = dict(FORM, client_id=TEST_CLIENT_ID)
    with_cert = requests.post(auth_server.token_url, data=data, verify=ca_bundle, cert=client_cert)
    without_cert = requests.post(auth_server.token_url, data=data, verify=ca_bundle)

    assert with_cert.status_code == 200
    assert without_cert.status_code == 401
    assert auth_server.requests[1].client_cert is None


def test_tls_client_auth_only_for_clients_allowed_to_use_it(auth_server, ca_bundle, client_cert):
    auth_server.register_client("secret-only", "secret-only-secret", ("client_secret_basic",))
    data = dict(FORM, client_id="secret-only")

    response = requests.post(auth_server.token_url, data=data, verify=ca_bundle, cert=client_cert)

    assert response.status_code == 401


def test_bad_handshake_neither_crashes_nor_prints(auth_server, ca_bundle, capfd):
    with socket.create_connection(("127.0.0.1", auth_server.port), timeout=5) as raw:
        raw.sendall(b"GET /resource HTTP/1.1\r\nHost: x\r\n\r\n")  # plain HTTP to a TLS port
        try:
            raw.recv(100)
        except OSError:
            pass
    with pytest.raises(requests.exceptions.SSLError):  # the default store lacks our CA
        requests.get(auth_server.resource_url, verify=True, timeout=5)

    assert _token(auth_server, ca_bundle).status_code == 200
    assert capfd.readouterr().err == ""
    assert auth_server.errors == []


# --------------------------------------------------------------------------- connections


def test_keep_alive_reuses_one_connection(auth_server, ca_bundle):
    with requests.Session() as session:
        first = _token(auth_server, ca_bundle, session=session)
        second = _token(auth_server, ca_bundle, session=session)
    assert first.status_code == second.status_code == 200
    assert auth_server.connections == 1
    assert auth_server.requests[0].connection_id == auth_server.requests[1].connection_id

    with requests.Session() as other:
        _token(auth_server, ca_bundle, session=other)
    assert auth_server.connections == 2


def test_many_concurrent_connections(auth_server, ca_bundle):
    barrier = threading.Barrier(20, timeout=10)
    statuses = []

    def worker():
        with requests.Session() as session:
            barrier.wait()
            statuses.append(_token(auth_server, ca_bundle, session=session).status_code)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert statuses == [200] * 20
    assert auth_server.count() == 20
    assert len(auth_server.issued) == 20
    assert auth_server.connections == 20


def test_stop_with_an_idle_keep_alive_connection_returns(ca, ca_bundle):
    server = servers.AuthServer(ca)
    server.register_client("c-1", "c-1-secret-value")
    with server, requests.Session() as session:
        response = session.post(
            server.token_url,
            data=FORM,
            headers={"Authorization": servers.basic_credentials("c-1", "c-1-secret-value")},
            verify=ca_bundle,
        )
        assert response.status_code == 200
        server.stop()  # the session still holds its connection open
        with pytest.raises(requests.exceptions.ConnectionError):
            session.post(server.token_url, data=FORM, verify=ca_bundle, timeout=5)


# --------------------------------------------------------------------------- helpers


def test_oauth_block(auth_server, make_block, ca_bundle):
    block = make_block(auth_server, OAUTH_SCOPE="read", omit=("OAUTH_REVOCATION_URL",))

    assert block == {
        "enabled": True,
        "OAUTH_VERSION": "2.1",
        "OAUTH_CLIENT_ID": TEST_CLIENT_ID,
        "OAUTH_CLIENT_SECRET": TEST_CLIENT_SECRET,
        "OAUTH_TOKEN_URL": auth_server.token_url,
        "OAUTH_CA_BUNDLE_PATH": ca_bundle,
        "OAUTH_SCOPE": "read",
    }
    assert servers.oauth_block(auth_server)["OAUTH_REVOCATION_URL"] == auth_server.revocation_url
    with open(servers.oauth_block(auth_server)["OAUTH_CA_BUNDLE_PATH"]) as handle:
        assert "BEGIN CERTIFICATE" in handle.read()


def test_fake_clock_and_recording_sleep(clock, sleeps):
    start = clock()

    sleeps(1.5)
    sleeps(0.25)
    clock.advance(10)

    assert sleeps.calls == [1.5, 0.25]
    assert clock() == start + 11.75
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        sleeps(-1)


def test_fixture_secrets_are_registered(auth_server):
    assert TEST_CLIENT_SECRET in leaks.SECRETS
    assert urllib.parse.quote_plus(TEST_CLIENT_SECRET) in leaks.SECRETS
    assert "test client:1" not in leaks.SECRETS  # ids are not secret


def test_find_leaks_names_the_logger_not_the_secret():
    capture = leaks.LogCapture()
    logger = logging.getLogger("leak.probe")
    logger.propagate = False
    logger.addHandler(capture)
    logger.setLevel(logging.DEBUG)
    try:
        capture.current_test = "test_x"
        logger.debug("token is %s", "tok-0123456789")
        logger.debug("short %s", "abc")
        logger.info("harmless line")
    finally:
        logger.removeHandler(capture)

    secrets = {"tok-0123456789", "abc", "never-logged-secret"}
    assert leaks.find_leaks(capture.entries, secrets) == [("leak.probe", "test_x")]
    assert leaks.find_leaks(capture.entries, {"never-logged-secret"}) == []
    assert leaks.find_leaks([("a", "xx abcdefgh yy")], {"abcdefgh"}) == [("a", "")]
    assert leaks.find_leaks([("a", "xx abcdefg yy")], {"abcdefg"}) == []  # below 8 chars


def test_servers_module_is_one_object_under_both_names():
    import sys

    assert sys.modules["tests.servers"] is sys.modules["servers"] is servers
