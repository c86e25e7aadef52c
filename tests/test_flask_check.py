"""`flask oauth-gateway check` (through app.cli) and init_app(check=True)."""

from __future__ import annotations

import json

import flask
import pytest

import oauth_gateway as og
from gatewayfile import write_gateway_file
from oauth_gateway.contrib.checks import check_gateway_file
from oauth_gateway.contrib.flask import OAuthGateway, _check_app

SERVER = "oauth-api"


def _app(config_file, **config):
    app = flask.Flask("check_app")
    app.config["OAUTH_GATEWAY_CONFIG_FILE"] = config_file
    app.config.update(config)
    OAuthGateway().init_app(app)
    return app


def _check(app):
    """Run `flask oauth-gateway check`; its output holds stdout and stderr (click mixes them)."""
    return app.test_cli_runner().invoke(args=["oauth-gateway", "check"])


@pytest.fixture
def good_file(tmp_path, auth_server, make_block):
    return write_gateway_file(tmp_path / "enkrypt_mcp_config.json", {SERVER: make_block(auth_server)})


def test_a_good_file_passes_and_exits_0(good_file):
    result = _check(_app(good_file))
    assert result.exit_code == 0, result.output
    assert "the gateway file is ok" in result.output


def test_a_missing_file_exits_1_naming_the_file_and_the_setting(tmp_path):
    missing = str(tmp_path / "nowhere.json")
    result = _check(_app(missing))
    assert result.exit_code == 1
    text = result.output
    assert "%s: error: the gateway file does not exist (oauth_gateway.E002)" % missing in text
    assert 'app.config["OAUTH_GATEWAY_CONFIG_FILE"]' in text


def test_the_checks_are_the_ones_django_runs(tmp_path, auth_server, make_block, monkeypatch):
    monkeypatch.delenv("MISSING_SECRET", raising=False)
    block = make_block(auth_server, OAUTH_CLIENT_SECRET="${MISSING_SECRET}", OAUTH_SCOPES="read")
    path = write_gateway_file(tmp_path / "broken.json", {SERVER: block, "other": make_block(auth_server)})
    app = _app(path, OAUTH_GATEWAY_SERVERS=[SERVER, "ghost"])
    problems = _check_app(app)
    assert [p.id for p in problems] == ["oauth_gateway.E003", "oauth_gateway.E005"]
    assert problems == check_gateway_file(
        path,
        [SERVER, "ghost"],
        True,
        file_setting='app.config["OAUTH_GATEWAY_CONFIG_FILE"]',
        servers_setting='app.config["OAUTH_GATEWAY_SERVERS"]',
    )
    assert _check(app).exit_code == 1


def test_an_unset_environment_reference_fails_the_check(tmp_path, auth_server, make_block, monkeypatch):
    monkeypatch.delenv("MISSING_SECRET", raising=False)
    block = make_block(auth_server, OAUTH_CLIENT_SECRET="${MISSING_SECRET}")
    path = write_gateway_file(tmp_path / "env.json", {SERVER: block})
    (problem,) = _check_app(_app(path))
    assert (problem.id, problem.level) == ("oauth_gateway.E004", "error")
    assert "MISSING_SECRET" in problem.message
    assert _check_app(_app(path, OAUTH_GATEWAY_CHECK_ENVIRONMENT=False)) == []


def test_init_app_with_check_raises_config_error_at_start(tmp_path, good_file):
    app = flask.Flask("strict")
    app.config["OAUTH_GATEWAY_CONFIG_FILE"] = str(tmp_path / "nowhere.json")
    with pytest.raises(og.ConfigError, match="the gateway file does not exist"):
        OAuthGateway().init_app(app, check=True)
    app = flask.Flask("fine")
    app.config["OAUTH_GATEWAY_CONFIG_FILE"] = good_file
    OAuthGateway().init_app(app, check=True)
    assert "oauth_gateway" in app.extensions
    with open(good_file) as handle:
        assert json.load(handle)  # untouched
