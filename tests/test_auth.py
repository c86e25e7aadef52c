"""TokenAuth against real HTTPS servers: the header, 401 recovery, replay rules, redirects."""

from __future__ import annotations

import io
import logging
import os
import threading

import pytest
import requests

import oauth_gateway as og
from oauth_gateway._authflow import is_invalid_token_challenge
from oauth_gateway.auth import TokenAuth
from servers import TEST_CLIENT_ID, TEST_CLIENT_SECRET, Fault, basic_credentials

SERVER = "oauth-api"
INVALID_TOKEN = {"WWW-Authenticate": 'Bearer realm="test", error="invalid_token"'}


@pytest.fixture
def session(auth_server, make_block, manager, ca_bundle):
    config = og.OAuthConfig.from_dict(make_block(auth_server))
    with requests.Session() as made:
        made.trust_env = False  # else $REQUESTS_CA_BUNDLE would replace verify
        made.verify = ca_bundle
        made.auth = manager.auth(SERVER, config)
        yield made


def _revoke_behind_the_clients_back(server, token, ca_bundle):
    """Revoke ``token`` at the server with a plain request, as another process would."""
    response = requests.post(
        server.revocation_url,
        data={"token": token, "token_type_hint": "access_token"},
        headers={"Authorization": basic_credentials(TEST_CLIENT_ID, TEST_CLIENT_SECRET)},
        verify=ca_bundle,
        timeout=10,
    )
    assert response.status_code == 200
    assert token in server.revoked


def _bearer(record):
    scheme, _, token = record.headers.get("Authorization", "").partition(" ")
    assert scheme == "Bearer"
    return token


def test_every_request_carries_the_cached_token(session, auth_server):
    first = session.get(auth_server.resource_url)
    second = session.get(auth_server.resource_url)
    assert (first.status_code, second.status_code) == (200, 200)
    sent = [_bearer(r) for r in auth_server.requests_to("/resource")]
    assert sent[0] == sent[1] == auth_server.issued_history[0]
    assert auth_server.count("/token") == 1


def test_a_token_revoked_mid_session_is_replaced_and_the_request_replayed_once(
    session, auth_server, manager, ca_bundle
):
    assert session.get(auth_server.resource_url).status_code == 200
    old = auth_server.issued_history[0]
    _revoke_behind_the_clients_back(auth_server, old, ca_bundle)

    response = session.get(auth_server.resource_url, params={"page": "2"})

    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert [r.status_code for r in response.history] == [401]
    assert auth_server.count("/token") == 2
    sent = [_bearer(r) for r in auth_server.requests_to("/resource")]
    new = auth_server.issued_history[1]
    assert sent == [old, old, new]
    assert auth_server.requests_to("/resource")[2].query == {"page": ["2"]}
    assert manager.get_token(SERVER, session.auth.config).access_token == new
    # The next call uses the new token straight away.
    assert session.get(auth_server.resource_url).history == []
    assert auth_server.count("/token") == 2


def test_many_threads_rejected_at_once_make_one_token_request(session, auth_server, ca_bundle):
    assert session.get(auth_server.resource_url).status_code == 200
    _revoke_behind_the_clients_back(auth_server, auth_server.issued_history[0], ca_bundle)
    auth_server.latency = 0.2  # the refresh is still running while the other 401s arrive
    count = 8
    barrier = threading.Barrier(count)
    results = [None] * count

    # One Session per thread, all sharing the auth object (requests.Session is not thread-safe).
    def run(i):
        with requests.Session() as own:
            own.trust_env, own.verify, own.auth = False, session.verify, session.auth
            barrier.wait()
            results[i] = own.get(auth_server.resource_url)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert [r.status_code for r in results] == [200] * count
    assert sum(len(r.history) for r in results) >= 2, "fewer than two threads saw the revoked token"
    assert auth_server.count("/token") == 2
    assert {_bearer(r) for r in auth_server.requests_to("/resource")[-count:]} >= {auth_server.issued_history[1]}


def test_a_second_401_is_returned_and_never_looped(session, auth_server):
    rejection = Fault(401, json={"error": "invalid_token"}, headers=INVALID_TOKEN)
    auth_server.set_faults([rejection, rejection, rejection], path="/resource")
    response = session.get(auth_server.resource_url)
    assert response.status_code == 401
    assert len(response.history) == 1
    assert auth_server.count("/resource") == 2
    assert auth_server.count("/token") == 2
    sent = [_bearer(r) for r in auth_server.requests_to("/resource")]
    assert sent == auth_server.issued_history[:2]


@pytest.mark.parametrize(
    "status, headers",
    [
        (401, {}),
        (401, {"WWW-Authenticate": 'Bearer error="insufficient_scope", scope="admin"'}),
        (401, {"WWW-Authenticate": 'Basic realm="x"'}),
        (403, INVALID_TOKEN),
    ],
    ids=["401-no-challenge", "401-insufficient-scope", "401-basic", "403"],
)
def test_other_rejections_are_returned_as_they_are(session, auth_server, status, headers):
    auth_server.push_fault(Fault(status, json={"error": "nope"}, headers=headers), path="/resource")
    response = session.get(auth_server.resource_url)
    assert response.status_code == status
    assert response.history == []
    assert auth_server.count("/resource") == 1
    assert auth_server.count("/token") == 1


def test_retry_on_any_401_recovers_from_a_401_without_a_challenge(auth_server, make_block, manager, ca_bundle):
    config = og.OAuthConfig.from_dict(make_block(auth_server))
    auth_server.push_fault(Fault(401, json={"error": "nope"}), path="/resource")
    response = requests.get(
        auth_server.resource_url, auth=manager.auth(SERVER, config, retry_on_any_401=True), verify=ca_bundle
    )
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    assert auth_server.count("/token") == 2


def test_a_seekable_body_is_rewound_and_sent_again(session, auth_server, ca_bundle):
    assert session.get(auth_server.resource_url).status_code == 200
    _revoke_behind_the_clients_back(auth_server, auth_server.issued_history[0], ca_bundle)
    stream = io.BytesIO(b"header:" + b"x" * 5000)
    assert stream.read(7) == b"header:"  # the body starts at position 7, not 0
    response = session.post(auth_server.resource_url, data=stream)
    assert response.status_code == 200
    bodies = [r.body for r in auth_server.requests_to("/resource")[1:]]
    assert bodies == [b"x" * 5000, b"x" * 5000]


@pytest.mark.parametrize("data", [b'{"n": 1}', '{"n": 1}'], ids=["bytes", "str"])
def test_bytes_and_text_bodies_are_sent_again(session, auth_server, ca_bundle, data):
    assert session.get(auth_server.resource_url).status_code == 200
    _revoke_behind_the_clients_back(auth_server, auth_server.issued_history[0], ca_bundle)
    response = session.put(auth_server.resource_url, data=data)
    assert response.status_code == 200
    assert [r.body for r in auth_server.requests_to("/resource")[1:]] == [b'{"n": 1}'] * 2


def test_a_generator_body_is_not_sent_again_and_the_response_says_why(session, auth_server, ca_bundle, caplog):
    assert session.get(auth_server.resource_url).status_code == 200
    _revoke_behind_the_clients_back(auth_server, auth_server.issued_history[0], ca_bundle)

    def chunks():
        yield b"part one,"
        yield b"part two"

    with caplog.at_level(logging.WARNING, logger="oauth_gateway"):
        response = session.post(auth_server.resource_url, data=chunks())

    assert response.status_code == 401
    assert response.history == []
    assert auth_server.count("/resource") == 2  # the first GET and this POST, never a replay
    assert auth_server.count("/token") == 2  # but the token was replaced
    assert "request not replayed: its body is a generator" in response.reason
    with pytest.raises(requests.HTTPError, match="token refreshed; request not replayed"):
        response.raise_for_status()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("did not send the POST request again" in message for message in warnings)
    # Sending it again works with the new token, without another token request.
    assert session.post(auth_server.resource_url, data=b"again").status_code == 200
    assert auth_server.count("/token") == 2


def test_a_file_without_a_readable_position_is_not_sent_again(session, auth_server, ca_bundle):
    class Unseekable(io.BytesIO):
        def seekable(self):
            return False

    assert session.get(auth_server.resource_url).status_code == 200
    _revoke_behind_the_clients_back(auth_server, auth_server.issued_history[0], ca_bundle)
    response = session.post(auth_server.resource_url, data=Unseekable(b"payload"))
    assert response.status_code == 401
    assert "file whose position cannot be read" in response.reason
    assert auth_server.count("/resource") == 2


def test_the_token_never_follows_a_redirect_to_another_host(session, auth_server, make_server):
    other = make_server()
    elsewhere = other.resource_url.replace("127.0.0.1", "localhost")
    auth_server.push_fault(Fault(redirect_to=elsewhere), path="/resource")

    response = session.get(auth_server.resource_url)

    assert [r.status_code for r in response.history] == [307]
    assert response.status_code == 401  # the other host saw no token, and we sent none after its 401
    arrived = other.requests_to("/resource")
    assert len(arrived) == 1
    assert "Authorization" not in arrived[0].headers
    assert other.count(None) == 1
    assert auth_server.count("/token") == 1


def test_a_redirect_on_the_same_origin_keeps_the_token(session, auth_server):
    auth_server.push_fault(Fault(redirect_to=auth_server.resource_url + "?moved=1"), path="/resource")
    response = session.get(auth_server.resource_url)
    assert response.status_code == 200
    assert [_bearer(r) for r in auth_server.requests_to("/resource")] == [auth_server.issued_history[0]] * 2


def test_a_401_after_a_redirect_on_the_same_origin_is_recovered(session, auth_server, ca_bundle):
    assert session.get(auth_server.resource_url).status_code == 200
    old = auth_server.issued_history[0]
    _revoke_behind_the_clients_back(auth_server, old, ca_bundle)
    auth_server.push_fault(Fault(redirect_to=auth_server.resource_url + "?moved=1"), path="/resource")

    response = session.get(auth_server.resource_url)

    assert response.status_code == 200
    new = auth_server.issued_history[1]
    arrived = auth_server.requests_to("/resource")[1:]
    assert [(_bearer(r), r.query) for r in arrived] == [(old, {}), (old, {"moved": ["1"]}), (new, {"moved": ["1"]})]


def test_netrc_credentials_put_on_a_redirect_to_another_host_are_never_replaced_by_a_token(
    auth_server, make_server, make_block, manager, ca_bundle, tmp_path, monkeypatch
):
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine localhost login someone password netrc-password\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    other = make_server()
    auth_server.push_fault(Fault(redirect_to=other.resource_url.replace("127.0.0.1", "localhost")), path="/resource")
    config = og.OAuthConfig.from_dict(make_block(auth_server))

    with requests.Session() as session:  # trust_env left on: requests reads the netrc file on the redirect
        session.verify = ca_bundle
        session.auth = manager.auth(SERVER, config, retry_on_any_401=True)
        response = session.get(auth_server.resource_url)

    assert response.status_code == 401  # the other host refused the netrc credentials ...
    arrived = other.requests_to("/resource")
    assert [r.headers["Authorization"].partition(" ")[0] for r in arrived] == ["Basic"]
    assert auth_server.count("/token") == 1  # ... and no token was fetched or sent there in their place


def test_the_auth_hook_counts_every_cache_hit_and_follows_a_replaced_token(session, auth_server, manager):
    for _ in range(3):
        assert session.get(auth_server.resource_url).status_code == 200
    metrics = manager.get_metrics()
    assert (metrics["token_cache_hits"], metrics["token_cache_misses"]) == (2, 1)  # the first request fetched
    manager.refresh(SERVER, session.auth.config)
    assert session.get(auth_server.resource_url).status_code == 200
    assert [_bearer(r) for r in auth_server.requests_to("/resource")] == [auth_server.issued_history[0]] * 3 + [
        auth_server.issued_history[1]
    ]
    assert manager.get_metrics()["token_cache_hits"] == 3  # the refreshed token, read from the cache


def test_a_failing_token_request_raises_and_sends_nothing(auth_server, make_block, manager, ca_bundle):
    config = og.OAuthConfig.from_dict(make_block(auth_server, OAUTH_CLIENT_SECRET="wrong secret value"))
    with pytest.raises(og.InvalidClient):
        requests.get(auth_server.resource_url, auth=manager.auth(SERVER, config), verify=ca_bundle)
    assert auth_server.count("/resource") == 0


def test_the_auth_object_shows_no_token(session, auth_server, ca_bundle, caplog):
    session.get(auth_server.resource_url)
    _revoke_behind_the_clients_back(auth_server, auth_server.issued_history[0], ca_bundle)
    with caplog.at_level(logging.DEBUG, logger="oauth_gateway"):
        assert session.get(auth_server.resource_url).status_code == 200
    text = repr(session.auth) + "\n".join(r.getMessage() for r in caplog.records)
    assert "rejected by %s/resource (401)" % auth_server.url in text
    for token in auth_server.issued_history:
        assert token not in text
    assert repr(session.auth) == "TokenAuth(server_name='oauth-api', config_id='default', retry_on_any_401=False)"


def test_manager_auth_builds_the_auth_object(auth_server, make_block, manager):
    config = og.OAuthConfig.from_dict(make_block(auth_server))
    auth = manager.auth(SERVER, config, "cfg-1", retry_on_any_401=True)
    assert isinstance(auth, TokenAuth) and isinstance(auth, requests.auth.AuthBase)
    assert (auth.server_name, auth.config_id, auth.retry_on_any_401) == (SERVER, "cfg-1", True)
    assert auth == manager.auth(SERVER, config, "cfg-1", retry_on_any_401=True)
    assert auth != manager.auth(SERVER, config, "cfg-2", retry_on_any_401=True)
    with pytest.raises(TypeError):
        manager.auth(SERVER, config, retry_on_every_401=True)


@pytest.mark.parametrize(
    "header, expected",
    [
        ('Bearer error="invalid_token"', True),
        ("Bearer error=invalid_token", True),
        ('bearer realm="a, b", error="invalid_token", error_description="The token expired"', True),
        ('Basic realm="x", Bearer error="invalid_token"', True),
        ('Negotiate abc==, Bearer realm="api", error="invalid_token"', True),
        ('Bearer realm="error=\\"invalid_token\\""', False),
        ('Bearer error="insufficient_scope"', False),
        ('Basic realm="x", error="invalid_token"', False),
        ('DPoP error="invalid_token"', False),
        ('Bearer realm="x"', False),
        ("", False),
        (None, False),
        ('garbage ,,, = "', False),
    ],
)
def test_is_invalid_token_challenge(header, expected):
    assert is_invalid_token_challenge(header) is expected


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_can_recover_from_a_401(session, auth_server, manager):
    assert session.get(auth_server.resource_url).status_code == 200
    failed = manager.get_token(SERVER, session.auth.config).authorization
    with manager._lock:  # held at fork time, as a thread recovering from a 401 might
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit code
            code = 1
            try:
                code = 0 if session.auth._replacement(failed).authorization != failed else 2
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert auth_server.count("/token") == 2
