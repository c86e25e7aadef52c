"""The Flask extension with Flask's test client, calling real HTTPS test servers."""

from __future__ import annotations

import os

import flask
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

import oauth_gateway as og
from gatewayfile import CONFIG_ID, write_gateway_file
from oauth_gateway.contrib.flask import OAuthGateway
from servers import TEST_CLIENT_ID, TEST_CLIENT_SECRET, basic_credentials

SERVER = "oauth-api"


@pytest.fixture
def upstream_trust(monkeypatch, ca_bundle):
    """Let the sessions the views make trust the test CA (the process-wide requests setting)."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_bundle)


@pytest.fixture
def gateway_file(tmp_path, auth_server, make_block):
    return write_gateway_file(tmp_path / "enkrypt_mcp_config.json", {SERVER: make_block(auth_server)})


def _make_app(gateway, config_file, upstream_url):
    app = flask.Flask("test_app")
    app.config["OAUTH_GATEWAY_CONFIG_FILE"] = config_file
    gateway.init_app(app)
    app.register_blueprint(gateway.metrics_blueprint(url_prefix="/oauth-gateway"))

    @app.route("/data")
    def data():
        with gateway.session(SERVER) as session:
            upstream = session.get(upstream_url, timeout=10)
        return {"status": upstream.status_code, "retried": len(upstream.history)}

    return app


def _revoke(server, token, ca_bundle):
    response = requests.post(
        server.revocation_url,
        data={"token": token},
        headers={"Authorization": basic_credentials(TEST_CLIENT_ID, TEST_CLIENT_SECRET)},
        verify=ca_bundle,
        timeout=10,
    )
    assert response.status_code == 200


def test_a_view_calls_the_api_with_the_token_and_survives_a_revocation(
    gateway_file, auth_server, upstream_trust, ca_bundle
):
    gateway = OAuthGateway()
    app = _make_app(gateway, gateway_file, auth_server.resource_url)
    client = app.test_client()

    assert client.get("/data").get_json() == {"status": 200, "retried": 0}
    assert client.get("/data").get_json() == {"status": 200, "retried": 0}
    assert auth_server.count("/token") == 1  # one token for both requests: one manager per app
    _revoke(auth_server, auth_server.issued_history[0], ca_bundle)
    assert client.get("/data").get_json() == {"status": 200, "retried": 1}
    assert auth_server.count("/token") == 2
    sent = [r.headers["Authorization"] for r in auth_server.requests_to("/resource")]
    assert sent == ["Bearer " + t for t in auth_server.issued_history[:1] * 3 + auth_server.issued_history[1:2]]


def test_each_app_has_its_own_manager_in_app_extensions(gateway_file, auth_server):
    gateway = OAuthGateway()
    first = _make_app(gateway, gateway_file, auth_server.resource_url)
    second = _make_app(gateway, gateway_file, auth_server.resource_url)
    one, two = first.extensions["oauth_gateway"], second.extensions["oauth_gateway"]
    assert one.manager is not two.manager
    with first.app_context():
        assert gateway.manager is one.manager
        token = gateway.get_token(SERVER)
        assert gateway.get_token(SERVER) is token
    with second.app_context():
        assert gateway.manager is two.manager
        assert gateway.get_token(SERVER).access_token != token.access_token
    assert auth_server.count("/token") == 2


def test_the_app_given_to_the_constructor_works_outside_a_context(gateway_file, auth_server):
    app = flask.Flask("direct")
    app.config["OAUTH_GATEWAY_CONFIG_FILE"] = gateway_file
    gateway = OAuthGateway(app)
    token = gateway.get_token(SERVER)
    assert token.access_token == auth_server.issued_history[0]
    assert gateway.oauth_config(SERVER).token_url == auth_server.token_url
    assert gateway.gateway_config().path == gateway_file
    auth = gateway.auth(SERVER, retry_on_any_401=True)
    assert (auth.server_name, auth.config_id, auth.retry_on_any_401) == (SERVER, CONFIG_ID, True)


def test_a_custom_manager_is_used(gateway_file, clock, sleeps):
    app = flask.Flask("custom")
    app.config["OAUTH_GATEWAY_CONFIG_FILE"] = gateway_file
    manager = og.TokenManager(clock=clock, sleep=sleeps)
    gateway = OAuthGateway(app, manager=manager)
    assert gateway.manager is manager


def test_without_a_config_file_setting_the_library_default_applies(monkeypatch, gateway_file, auth_server):
    monkeypatch.setenv("OAUTH_GATEWAY_CONFIG", gateway_file)
    app = flask.Flask("defaults")
    gateway = OAuthGateway(app)
    assert app.config["OAUTH_GATEWAY_CONFIG_FILE"] is None
    assert gateway.get_token(SERVER).access_token == auth_server.issued_history[0]


def test_misuse_and_bad_names_say_what_to_do(gateway_file, tmp_path):
    with pytest.raises(RuntimeError, match="outside an application context"):
        OAuthGateway().manager
    bare = flask.Flask("bare")
    with bare.app_context(), pytest.raises(RuntimeError, match=r"call gateway.init_app\(app\)"):
        OAuthGateway().manager
    app = flask.Flask("names")
    app.config["OAUTH_GATEWAY_CONFIG_FILE"] = gateway_file
    gateway = OAuthGateway(app)
    with pytest.raises(og.ConfigError, match="did you mean 'oauth-api'"):
        gateway.session("oauth-apy")
    missing = flask.Flask("missing")
    missing.config["OAUTH_GATEWAY_CONFIG_FILE"] = str(tmp_path / "nowhere.json")
    with pytest.raises(og.ConfigError, match="does not exist"):
        OAuthGateway(missing).session(SERVER)


def test_reload_reads_an_edited_file(gateway_file, auth_server, make_server, make_block):
    app = flask.Flask("reload")
    app.config["OAUTH_GATEWAY_CONFIG_FILE"] = gateway_file
    gateway = OAuthGateway(app)
    assert gateway.oauth_config(SERVER).token_url == auth_server.token_url
    other = make_server()
    write_gateway_file(gateway_file, {SERVER: make_block(other)})
    assert gateway.oauth_config(SERVER).token_url == auth_server.token_url  # read once
    gateway.reload()
    assert gateway.oauth_config(SERVER).token_url == other.token_url


def test_the_metrics_blueprint_serves_prometheus_text_and_json(gateway_file, auth_server):
    gateway = OAuthGateway()
    app = _make_app(gateway, gateway_file, auth_server.resource_url)
    with app.app_context():
        gateway.get_token(SERVER)
        gateway.get_token(SERVER)
    client = app.test_client()

    text = client.get("/oauth-gateway/metrics")
    assert text.status_code == 200
    assert text.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(text.get_data(as_text=True))}
    hits = families["oauth_gateway_token_cache_hits"].samples
    assert [(s.labels, s.value) for s in hits] == [({"server": SERVER}, 1)]
    success = families["oauth_gateway_token_acquisitions_success"].samples
    assert [(s.labels, s.value) for s in success] == [({"server": SERVER}, 1)]

    document = client.get("/oauth-gateway/metrics.json").get_json()
    assert document["token_acquisitions_success"] == 1
    assert document["servers"][SERVER]["token_cache_hits"] == 1
    assert client.post("/oauth-gateway/metrics").status_code == 405
    for token in auth_server.issued_history:
        assert token not in text.get_data(as_text=True)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_gets_a_fresh_lock(gateway_file, auth_server):
    app = flask.Flask("forked")
    app.config["OAUTH_GATEWAY_CONFIG_FILE"] = gateway_file
    gateway = OAuthGateway(app)
    state = app.extensions["oauth_gateway"]
    with state._lock:  # held at fork time, as a thread reading the file might
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit code
            code = 1
            try:
                code = 0 if gateway.oauth_config(SERVER).token_url == auth_server.token_url else 2
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
