"""Token providers end to end: static, legacy_json and an installed plugin, against real loopback servers.

Each provider's tokens get what client-credentials tokens get: the cache (a hit makes
no request), single flight (32 threads, one request), refresh, stale-if-error,
injection, the requests auth object with its 401 recovery, metrics per provider, and
masked secrets. The example plugin under examples/provider_plugin is installed as a
real distribution (pip, into a temporary directory put on sys.path) and found through
its entry point.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import pickle
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

import oauth_gateway as og
from leaks import SECRETS, LogCapture, find_leaks
from oauth_gateway import providers
from oauth_gateway.cli import main as cli_main
from oauth_gateway.client import TokenClient
from oauth_gateway.providers import ClientCredentialsProvider, ProviderContext, TokenProvider, TokenResponse
from provider_servers import IDENTITY_PATH, LEGACY_PATH, ProviderServer
from servers import run_threads

REPO = Path(__file__).resolve().parents[1]
PLUGIN_SOURCE = REPO / "examples" / "provider_plugin"
API_KEY = "legacy-api-key-6f1d2c"
IDENTITY_SECRET = "identity-header-secret-91ab"
SECRETS.add(API_KEY)
SECRETS.add(IDENTITY_SECRET)
BLOCK = "$.mcp_configs.c1.mcp_config[0].oauth_config"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def example_plugin(tmp_path_factory):
    """examples/provider_plugin installed as a distribution into a directory on sys.path."""
    source = tmp_path_factory.mktemp("plugin-source") / "provider_plugin"
    shutil.copytree(PLUGIN_SOURCE, source)  # the build writes into its source tree
    target = tmp_path_factory.mktemp("plugin-site")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["--target", str(target), str(source)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        sys.modules.pop("example_provider", None)


@pytest.fixture
def server(ca):
    started = ProviderServer(ca, API_KEY, IDENTITY_SECRET).start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def legacy_block(server, ca_bundle):
    def make(**options):
        merged = {
            "url": server.url + LEGACY_PATH,
            "body": {"apiKey": "${LEGACY_API_KEY}", "user": "gateway"},
            "token_field": "data.sessionToken",
            "expires_in_field": "data.ttl",
        }
        merged.update(options)
        return {
            "enabled": True,
            "OAUTH_PROVIDER": "legacy_json",
            "OAUTH_PROVIDER_OPTIONS": merged,
            "OAUTH_CA_BUNDLE_PATH": ca_bundle,
            "OAUTH_MAX_RETRIES": 2,
        }

    return make


def _legacy(block):
    return og.OAuthConfig.from_dict(block, json_path="$.oauth_config", environ={"LEGACY_API_KEY": API_KEY})


def _static_file(tmp_path, token, name="token"):
    path = tmp_path / name
    path.write_text(token + "\n")
    return path


def _static(path, **options):
    merged = {"file": str(path), "lifetime": 600}
    merged.update(options)
    return og.OAuthConfig.from_dict({"enabled": True, "OAUTH_PROVIDER": "static", "OAUTH_PROVIDER_OPTIONS": merged})


def _gateway(block):
    return {
        "mcp_configs": {
            "c1": {
                "mcp_config_name": "default_config",
                "mcp_config": [
                    {"server_name": "api", "config": {"command": "npx", "args": ["-y", "srv"]}, "oauth_config": block}
                ],
            }
        }
    }


# --------------------------------------------------------------------------- the interface


class CountingProvider(TokenProvider):
    """Wraps the built-in client-credentials provider and counts its calls (module:attribute tests)."""

    calls = 0

    def fetch(self, config, context):
        CountingProvider.calls += 1
        return ClientCredentialsProvider().fetch(config, context)


class BrokenProvider(TokenProvider):
    def fetch(self, config, context):
        raise KeyError("the-provider-bug-text-with-secret-0xdeadbeef")


def test_the_default_provider_is_the_built_in_client_credentials_one(manager, auth_server, make_block):
    implicit = og.OAuthConfig.from_dict(make_block(auth_server))
    explicit = og.OAuthConfig.from_dict(make_block(auth_server, OAUTH_PROVIDER="client_credentials"))
    assert implicit.provider == "client_credentials"
    assert implicit == explicit and implicit.fingerprint == explicit.fingerprint
    assert isinstance(providers.get_provider("client_credentials"), ClientCredentialsProvider)
    token = manager.get_token("oauth-api", implicit)
    assert manager.get_token("oauth-api", explicit) is token
    assert auth_server.count() == 1
    assert manager.get_metrics()["providers"] == {
        "client_credentials": {
            "token_acquisitions_total": 1,
            "token_acquisitions_success": 1,
            "token_acquisitions_failure": 0,
        }
    }


def test_a_module_attribute_provider_wraps_the_built_in_one_through_the_same_interface(
    manager, auth_server, make_block
):
    CountingProvider.calls = 0
    config = og.OAuthConfig.from_dict(make_block(auth_server, OAUTH_PROVIDER="test_providers:CountingProvider"))
    token = manager.get_token("oauth-api", config)
    assert manager.get_token("oauth-api", config) is token
    assert (CountingProvider.calls, auth_server.count()) == (1, 1)
    request = auth_server.requests_to("/token")[0]
    assert request.grant_type == "client_credentials"
    assert request.correlation_id  # the context's correlation id reached the wire


def test_a_provider_bug_becomes_a_token_request_error_without_its_text(manager, caplog):
    config = og.OAuthConfig.from_dict({"enabled": True, "OAUTH_PROVIDER": "test_providers:BrokenProvider"})
    with caplog.at_level(logging.DEBUG, logger="oauth_gateway"):
        with pytest.raises(og.TokenRequestError, match="KeyError") as info:
            manager.get_token("broken", config)
    assert "0xdeadbeef" not in str(info.value)
    assert "0xdeadbeef" not in caplog.text
    assert manager.get_metrics()["providers"]["test_providers:BrokenProvider"]["token_acquisitions_failure"] == 1


def test_an_unknown_provider_is_a_config_error_naming_the_installed_ones(example_plugin):
    with pytest.raises(og.ConfigError) as info:
        og.OAuthConfig.from_dict({"enabled": True, "OAUTH_PROVIDER": "vault"}, json_path="$.oauth_config")
    assert info.value.json_path == "$.oauth_config.OAUTH_PROVIDER"
    message = str(info.value)
    assert "unknown token provider 'vault'" in message
    for name in ("client_credentials", "legacy_json", "static", "metadata_identity"):
        assert name in message
    problems = og.validate_config(_gateway({"enabled": True, "OAUTH_PROVIDER": "vault"}))
    assert [p.json_path for p in problems] == [BLOCK + ".OAUTH_PROVIDER"]


def test_a_module_attribute_that_is_not_a_provider_is_refused():
    with pytest.raises(og.ConfigError, match="not a TokenProvider"):
        og.OAuthConfig.from_dict({"enabled": True, "OAUTH_PROVIDER": "json:dumps"})
    with pytest.raises(og.ConfigError, match="could not be imported"):
        og.OAuthConfig.from_dict({"enabled": True, "OAUTH_PROVIDER": "no_such_module_xyz:Provider"})


def test_other_providers_need_no_client_credentials_but_the_default_still_does(tmp_path):
    path = _static_file(tmp_path, "static-token-value-1")
    static = {"enabled": True, "OAUTH_PROVIDER": "static", "OAUTH_PROVIDER_OPTIONS": {"file": str(path)}}
    assert og.validate_config(_gateway(static)) == []
    assert og.validate_config(static) == []
    default = og.validate_config(_gateway({"enabled": True}))
    assert {p.json_path for p in default} >= {BLOCK + ".OAUTH_CLIENT_ID", BLOCK + ".OAUTH_TOKEN_URL"}


def test_the_built_in_provider_takes_no_options(auth_server, make_block):
    with pytest.raises(og.ConfigError) as info:
        og.OAuthConfig.from_dict(make_block(auth_server, OAUTH_PROVIDER_OPTIONS={"x": 1}), json_path="$.oauth_config")
    assert info.value.json_path == "$.oauth_config.OAUTH_PROVIDER_OPTIONS"
    assert "takes no options" in str(info.value)


# --------------------------------------------------------------------------- schema fragments


def test_validate_applies_the_providers_schema_fragment_with_json_paths(server):
    block = {
        "enabled": True,
        "OAUTH_PROVIDER": "legacy_json",
        "OAUTH_PROVIDER_OPTIONS": {"url": "http://legacy.example.com/session", "method": "DELETE", "tokenfield": "x"},
    }
    problems = og.validate_config(_gateway(block))
    found = {p.json_path: p.message for p in problems}
    options = BLOCK + ".OAUTH_PROVIDER_OPTIONS"
    assert found[options + ".url"] == "must be an https:// URL, got 'http://legacy.example.com/session'"
    assert found[options + ".method"].startswith("must be one of 'POST', 'PUT', 'GET'")
    assert found[options + ".tokenfield"] == "unknown key 'tokenfield'"
    with pytest.raises(og.ConfigError) as info:
        og.OAuthConfig.from_dict(block, json_path="$.oauth_config")
    assert info.value.json_path.startswith("$.oauth_config.OAUTH_PROVIDER_OPTIONS.")


def test_the_validate_command_prints_fragment_errors_with_their_paths(tmp_path):
    path = tmp_path / "gateway.json"
    block = {"enabled": True, "OAUTH_PROVIDER": "static", "OAUTH_PROVIDER_OPTIONS": {"env": "${TOKEN}"}}
    path.write_text(json.dumps(_gateway(block)))
    out, err = io.StringIO(), io.StringIO()
    assert cli_main(["validate", str(path)], stdout=out, stderr=err) == 1
    text = out.getvalue() + err.getvalue()
    assert "%s::%s.OAUTH_PROVIDER_OPTIONS.env: must be an environment variable name" % (path, BLOCK) in text


def test_a_secret_options_value_is_never_echoed_by_validation():
    block = {
        "enabled": True,
        "OAUTH_PROVIDER": "legacy_json",
        "OAUTH_PROVIDER_OPTIONS": {"url": "https://legacy.example.com/s", "body": "wrong-type-secret-7781"},
    }
    problems = og.validate_config(_gateway(block))
    assert [str(p) for p in problems] == [
        BLOCK + ".OAUTH_PROVIDER_OPTIONS.body: must be an object or a list, got a string"
    ]


# --------------------------------------------------------------------------- static


def test_a_static_token_is_cached_and_re_read_only_when_its_file_changes(manager, tmp_path, clock):
    path = _static_file(tmp_path, "static-token-value-A")
    config = _static(path, lifetime=600)
    first = manager.get_token("static-api", config)
    assert first.access_token == "static-token-value-A"
    assert manager.get_token("static-api", config) is first  # a hit
    metrics = manager.get_metrics()
    assert (metrics["token_cache_hits"], metrics["token_acquisitions_total"]) == (1, 1)
    assert first.refresh_at - clock() == pytest.approx(300)  # the buffer is at most half the lifetime
    assert manager.refresh("static-api", config).access_token == "static-token-value-A"
    path.write_text("static-token-value-B-longer\n")  # a rotation (size and mtime change)
    assert manager.get_token("static-api", config).access_token == "static-token-value-A"  # still cached
    clock.advance(301)
    assert manager.get_token("static-api", config).access_token == "static-token-value-B-longer"
    assert manager.get_metrics()["providers"]["static"]["token_acquisitions_success"] == 3


def test_a_static_token_from_the_environment(manager, monkeypatch):
    monkeypatch.setenv("PROVIDER_TEST_TOKEN", "env-static-token-123")
    config = og.OAuthConfig.from_dict(
        {"enabled": True, "OAUTH_PROVIDER": "static", "OAUTH_PROVIDER_OPTIONS": {"env": "PROVIDER_TEST_TOKEN"}}
    )
    token = manager.get_token("env-api", config)
    assert (token.access_token, token.authorization) == ("env-static-token-123", "Bearer env-static-token-123")
    monkeypatch.delenv("PROVIDER_TEST_TOKEN")
    with pytest.raises(og.ConfigError, match="PROVIDER_TEST_TOKEN is not set"):
        manager.refresh("env-api", config)


def test_a_missing_token_file_fails_at_load_with_its_path(tmp_path):
    with pytest.raises(og.ConfigError) as info:
        og.OAuthConfig.from_dict(
            {"enabled": True, "OAUTH_PROVIDER": "static", "OAUTH_PROVIDER_OPTIONS": {"file": str(tmp_path / "none")}},
            json_path="$.oauth_config",
        )
    assert info.value.json_path == "$.oauth_config.OAUTH_PROVIDER_OPTIONS.file"


def test_32_threads_on_a_cold_cache_make_one_static_fetch(manager, tmp_path):
    config = _static(_static_file(tmp_path, "static-token-threads"))
    results, errors = run_threads(32, lambda i: manager.get_token("static-api", config))
    assert errors == [None] * 32
    assert len({id(token) for token in results}) == 1
    assert manager.get_metrics()["token_acquisitions_total"] == 1


def test_the_auth_object_recovers_from_a_401_by_re_reading_a_rotated_file(manager, server, tmp_path, ca_bundle):
    path = _static_file(tmp_path, "rotating-token-one")
    server.accept("rotating-token-one")
    config = _static(path)
    with requests.Session() as session:
        session.trust_env = False
        session.verify = ca_bundle
        session.auth = manager.auth("static-api", config)
        assert session.get(server.url + "/resource").status_code == 200
        server.accept("rotating-token-two")
        server.reject("rotating-token-one")  # revoked where it is checked
        path.write_text("rotating-token-two")
        assert session.get(server.url + "/resource").status_code == 200
    sent = [seen.headers["authorization"] for seen in server.requests_to("/resource")]
    assert sent == ["Bearer rotating-token-one", "Bearer rotating-token-one", "Bearer rotating-token-two"]


# --------------------------------------------------------------------------- legacy_json


def test_a_legacy_token_is_fetched_once_with_the_configured_body_and_cached(manager, server, legacy_block):
    config = _legacy(legacy_block())
    token = manager.get_token("legacy-api", config)
    assert manager.get_token("legacy-api", config) is token
    assert server.count(LEGACY_PATH) == 1
    seen = server.requests_to(LEGACY_PATH)[0]
    assert seen.method == "POST"
    assert seen.json() == {"apiKey": API_KEY, "user": "gateway"}
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["x-correlation-id"]
    assert token.access_token in server.issued
    assert token.expires_at_monotonic - token.issued_at == pytest.approx(600)  # data.ttl
    assert manager.get_metrics()["providers"]["legacy_json"]["token_acquisitions_total"] == 1


def test_32_threads_make_one_legacy_request(manager, server, legacy_block):
    config = _legacy(legacy_block())
    server.latency.clear()  # hold the answer until every thread is waiting
    timer = threading.Timer(0.3, server.latency.set)
    timer.start()
    try:
        results, errors = run_threads(32, lambda i: manager.get_token("legacy-api", config))
    finally:
        timer.cancel()
        server.latency.set()
    assert errors == [None] * 32
    assert len({token.access_token for token in results}) == 1
    assert server.count(LEGACY_PATH) == 1


def test_legacy_requests_are_retried_through_the_librarys_policy(manager, server, legacy_block, sleeps):
    server.push_status(LEGACY_PATH, 503)
    server.push_status(LEGACY_PATH, 429, (("Retry-After", "1"),))
    token = manager.get_token("legacy-api", _legacy(legacy_block()))
    assert token.access_token in server.issued
    assert server.count(LEGACY_PATH) == 3
    assert sleeps.calls == [2.0, 1.0]  # the backoff, then the server's Retry-After
    assert manager.get_metrics()["token_retries"] == 2


def test_a_legacy_redirect_is_never_followed(manager, server, legacy_block):
    server.push_status(LEGACY_PATH, 302, (("Location", server.url + "/elsewhere"),))
    with pytest.raises(og.TokenRequestError, match="redirect") as info:
        manager.get_token("legacy-api", _legacy(legacy_block()))
    assert info.value.status_code == 302
    assert [seen.path for seen in server.seen] == [LEGACY_PATH]


def test_a_legacy_refusal_names_the_status_and_never_the_key(manager, server, legacy_block, caplog):
    config = og.OAuthConfig.from_dict(legacy_block(), environ={"LEGACY_API_KEY": "wrong-key-but-secret-55"})
    with caplog.at_level(logging.DEBUG, logger="oauth_gateway"):
        with pytest.raises(og.TokenRequestError, match="HTTP 401") as info:
            manager.get_token("legacy-api", config)
    assert info.value.status_code == 401
    assert "wrong-key-but-secret-55" not in str(info.value) + caplog.text  # the server echoed it back


def test_a_legacy_token_without_a_lifetime_takes_the_lifetime_option(manager, ca, ca_bundle):
    no_ttl = ProviderServer(ca, API_KEY, IDENTITY_SECRET, ttl=None).start()
    try:
        block = {
            "enabled": True,
            "OAUTH_PROVIDER": "legacy_json",
            "OAUTH_CA_BUNDLE_PATH": ca_bundle,
            "OAUTH_PROVIDER_OPTIONS": {
                "url": no_ttl.url + LEGACY_PATH,
                "body": {"apiKey": API_KEY},
                "token_field": "data.sessionToken",
                "lifetime": 120,
            },
        }
        token = manager.get_token("legacy-api", og.OAuthConfig.from_dict(block))
    finally:
        no_ttl.stop()
    assert token.expires_at_monotonic - token.issued_at == pytest.approx(120)


def test_a_failed_legacy_refresh_serves_the_cached_token(manager, server, legacy_block, clock):
    config = _legacy(legacy_block(lifetime=600))
    token = manager.get_token("legacy-api", config)
    clock.advance(400)  # past the refresh point, before expiry
    for _ in range(3):  # the first attempt and OAUTH_MAX_RETRIES = 2
        server.push_status(LEGACY_PATH, 503)
    assert manager.get_token("legacy-api", config) is token
    assert manager.get_metrics()["token_refresh_failures_served_from_cache"] == 1


def test_legacy_tokens_are_injected_and_carried_by_the_auth_object(manager, server, legacy_block, ca_bundle):
    config = _legacy(legacy_block())
    entry = {
        "server_name": "legacy-api",
        "config": {"command": "npx", "args": ["mcp-remote", "https://mcp.example/mcp"]},
    }
    token = manager.get_token("legacy-api", config)
    injected = og.inject_token(entry, token)
    assert injected["config"]["env"]["AUTH_HEADER"] == "Bearer " + token.access_token
    assert token.access_token not in " ".join(injected["config"]["args"])
    with requests.Session() as session:
        session.trust_env = False
        session.verify = ca_bundle
        session.auth = manager.auth("legacy-api", config)
        assert session.get(server.url + "/resource").status_code == 200
    assert server.requests_to("/resource")[0].headers["authorization"] == "Bearer " + token.access_token
    assert server.count(LEGACY_PATH) == 1


def test_legacy_secret_options_are_masked_and_hashed_in_the_fingerprint(manager, server, legacy_block):
    config = _legacy(legacy_block(headers={"X-Api-Key": "header-secret-value-42"}))
    assert config.provider_options.secret_keys == {"body", "headers"}
    shown = repr(config) + str(config.to_dict()) + repr(config.provider_options)
    assert API_KEY not in shown and "header-secret-value-42" not in shown
    assert config.to_dict()["OAUTH_PROVIDER_OPTIONS"]["body"] == "***"
    assert config.to_dict(show_secret=True)["OAUTH_PROVIDER_OPTIONS"]["body"]["apiKey"] == API_KEY
    assert API_KEY not in json.dumps(config.provider_options.fingerprint_material())
    other_key = og.OAuthConfig.from_dict(legacy_block(), environ={"LEGACY_API_KEY": "another-key"})
    assert other_key.fingerprint != _legacy(legacy_block()).fingerprint
    assert pickle.loads(pickle.dumps(config)) == config
    assert pickle.loads(pickle.dumps(config)).fingerprint == config.fingerprint


def test_an_edited_option_never_gets_the_old_options_token(manager, server, legacy_block):
    first = manager.get_token("legacy-api", _legacy(legacy_block()))
    second = manager.get_token("legacy-api", _legacy(legacy_block(token_type="Bearer", lifetime=60)))
    assert first.access_token != second.access_token
    assert server.count(LEGACY_PATH) == 2


def test_no_provider_secret_reaches_a_log_line(manager, server, legacy_block, example_plugin, ca_bundle):
    capture = LogCapture()
    logger = logging.getLogger("oauth_gateway")
    logger.addHandler(capture)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        config = _legacy(legacy_block())
        manager.get_token("legacy-api", config)
        logging.getLogger("oauth_gateway").debug("config: %r", config)
        identity = _identity_config(server, ca_bundle)
        manager.get_token("identity-api", identity)
        logging.getLogger("oauth_gateway").debug("config: %r", identity)
        server.push_status(LEGACY_PATH, 400)
        with pytest.raises(og.TokenRequestError):
            manager.refresh("legacy-api", config)
    finally:
        logger.removeHandler(capture)
        logger.setLevel(old_level)
    assert capture.entries  # something was logged
    assert find_leaks(capture.entries, SECRETS) == []


# --------------------------------------------------------------------------- the installed plugin


def _identity_config(server, ca_bundle):
    return og.OAuthConfig.from_dict(
        {
            "enabled": True,
            "OAUTH_PROVIDER": "metadata_identity",
            "OAUTH_CA_BUNDLE_PATH": ca_bundle,
            "OAUTH_PROVIDER_OPTIONS": {
                "url": server.url + IDENTITY_PATH,
                "resource": "https://api.example.com",
                "identity_header": "${IDENTITY_HEADER}",
            },
        },
        environ={"IDENTITY_HEADER": IDENTITY_SECRET},
    )


def test_the_example_plugin_is_an_installed_distribution_with_an_entry_point(example_plugin):
    from importlib import metadata

    distribution = metadata.distribution("oauth-gateway-example-provider")
    points = [ep for ep in distribution.entry_points if ep.group == providers.ENTRY_POINT_GROUP]
    assert [(ep.name, ep.value) for ep in points] == [
        ("metadata_identity", "example_provider:MetadataIdentityProvider")
    ]
    assert "metadata_identity" in providers.available_providers()
    assert str(example_plugin) in str(distribution.locate_file(""))


def test_the_plugin_gets_cached_single_flight_tokens_through_its_entry_point(
    manager, server, example_plugin, ca_bundle
):
    config = _identity_config(server, ca_bundle)
    assert type(providers.get_provider("metadata_identity")).__module__ == "example_provider"
    assert "identity_header': '***'" in repr(config)
    assert IDENTITY_SECRET not in repr(config) + str(config.to_dict())
    server.latency.clear()
    timer = threading.Timer(0.3, server.latency.set)
    timer.start()
    try:
        results, errors = run_threads(32, lambda i: manager.get_token("identity-api", config))
    finally:
        timer.cancel()
        server.latency.set()
    assert errors == [None] * 32
    assert len({token.access_token for token in results}) == 1
    assert manager.get_token("identity-api", config) is results[0]
    assert server.count(IDENTITY_PATH) == 1
    seen = server.requests_to(IDENTITY_PATH)[0]
    assert (seen.method, seen.query["resource"]) == ("GET", ["https://api.example.com"])
    assert seen.headers["x-identity-header"] == IDENTITY_SECRET
    with requests.Session() as session:
        session.trust_env = False
        session.verify = ca_bundle
        session.auth = manager.auth("identity-api", config)
        assert session.get(server.url + "/resource").status_code == 200
    assert manager.get_metrics()["providers"]["metadata_identity"]["token_acquisitions_success"] == 1


def test_the_plugins_schema_fragment_is_applied_by_validate(example_plugin):
    block = {"enabled": True, "OAUTH_PROVIDER": "metadata_identity", "OAUTH_PROVIDER_OPTIONS": {"url": "https://x"}}
    problems = og.validate_config(_gateway(block))
    assert [(p.json_path, p.message) for p in problems] == [(BLOCK + ".OAUTH_PROVIDER_OPTIONS.resource", "is required")]


# --------------------------------------------------------------------------- the context


def test_the_context_exposes_the_transport_through_public_attributes(manager, tmp_path, ca_bundle):
    config = og.OAuthConfig.from_dict(
        {
            "enabled": True,
            "OAUTH_PROVIDER": "static",
            "OAUTH_PROVIDER_OPTIONS": {"file": str(_static_file(tmp_path, "ctx-token-1"))},
            "OAUTH_CA_BUNDLE_PATH": ca_bundle,
            "OAUTH_TIMEOUT": 7,
            "OAUTH_CONNECT_TIMEOUT": 2,
        }
    )
    client = TokenClient(sleep=lambda seconds: None)
    context = ProviderContext(config, "ctx-api", client, lambda: 5.0, correlation_id="abc12345")
    assert context.timeout == (2.0, 7.0)
    assert context.allow_redirects is False
    assert context.session.verify == ca_bundle
    assert dict(context.options) == {"file": str(tmp_path / "token")}
    assert "ctx-token" not in repr(context)
    response = providers.get_provider("static").fetch(config, context)
    assert isinstance(response, TokenResponse)
    assert (response.access_token, response.expires_in) == ("ctx-token-1", 300.0)
    client.close()
