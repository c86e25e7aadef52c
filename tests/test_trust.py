"""The trust issue: credentials go only where the operator said, checking never runs code,
provider answers are checked like token responses, and CLI output stays printable."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from typing import Any, Dict, Tuple

import pytest

import oauth_gateway as og
from oauth_gateway import cli, schema

RESOURCE = "https://mcp.example.com/mcp"


def run(*argv: str) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


# --- 1. a credential needs OAUTH_TOKEN_URL or OAUTH_ISSUER -------------------------------


def _credentials(tmp_path: Any) -> Dict[str, Dict[str, Any]]:
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cret")
    os.chmod(str(secret_file), 0o600)
    return {
        "secret": {"OAUTH_CLIENT_SECRET": "s3cret"},
        "secret file": {"OAUTH_CLIENT_SECRET_FILE": str(secret_file)},
        "private key": {"OAUTH_CLIENT_PRIVATE_KEY_PATH": str(tmp_path / "key.pem")},
        "assertion file": {"OAUTH_CLIENT_ASSERTION_FILE": str(tmp_path / "workload.jwt")},
        "mtls": {
            "OAUTH_USE_MTLS": True,
            "OAUTH_CLIENT_CERT_PATH": str(tmp_path / "c.pem"),
            "OAUTH_CLIENT_KEY_PATH": str(tmp_path / "k.pem"),
        },
    }


def _discovered(credential: Dict[str, Any], **extra: Any) -> Dict[str, Any]:
    block: Dict[str, Any] = {"enabled": True, "OAUTH_CLIENT_ID": "gateway", "OAUTH_RESOURCE": RESOURCE}
    block.update(credential)
    block.update(extra)
    return block


def test_trust_each_credential_without_token_url_or_issuer_is_refused_at_load(tmp_path) -> None:
    for kind, credential in _credentials(tmp_path).items():
        with pytest.raises(og.ConfigError) as info:
            og.OAuthConfig.from_dict(_discovered(credential))
        error = info.value
        assert error.json_path == "$.OAUTH_ISSUER", kind
        assert "oauth-gateway discover URL" in (error.hint or ""), kind
        assert "paste" in (error.hint or ""), kind
        assert "s3cret" not in str(error)


def test_trust_the_credential_keys_are_one_line_each_of_the_schema_rule() -> None:
    from oauth_gateway import config

    rule = schema.credential_rule()
    assert config._CREDENTIAL_KEYS == tuple(key for option in rule["if"]["anyOf"] for key in option["required"])
    assert set(config._CREDENTIAL_KEYS) >= {
        "OAUTH_CLIENT_SECRET",
        "OAUTH_CLIENT_SECRET_FILE",
        "OAUTH_CLIENT_PRIVATE_KEY_PATH",
        "OAUTH_CLIENT_ASSERTION_FILE",
        "OAUTH_USE_MTLS",
    }


def test_trust_validate_reports_the_credential_rule_at_oauth_issuer(tmp_path) -> None:
    block = _discovered({"OAUTH_CLIENT_SECRET": "${SECRET}"})
    problems = og.validate_config(block)
    assert [p.json_path for p in problems] == ["$.OAUTH_ISSUER"]
    assert "oauth-gateway discover URL" in (problems[0].hint or "")
    path = tmp_path / "gateway.json"
    entry = {"server_name": "remote", "config": {"command": "npx", "args": ["-y", "mcp-remote", RESOURCE]}}
    entry["oauth_config"] = {"enabled": True, "OAUTH_CLIENT_ID": "c", "OAUTH_CLIENT_SECRET": "${SECRET}"}
    path.write_text(json.dumps({"mcp_configs": {"abc": {"mcp_config": [entry]}}}))
    code, out, _ = run("validate", str(path))
    assert code == cli.EXIT_INVALID
    assert "mcp_config[0].oauth_config.OAUTH_ISSUER: is required when the config holds a credential" in out


def test_trust_an_empty_token_url_variable_does_not_open_discovery() -> None:
    block = _discovered({"OAUTH_CLIENT_SECRET": "s3cret"}, OAUTH_TOKEN_URL="${TOKEN_URL}")
    assert og.validate_config(block) == []  # the schema sees a reference
    with pytest.raises(og.ConfigError) as info:
        og.OAuthConfig.from_dict(block, environ={"TOKEN_URL": ""})
    assert info.value.json_path == "$.OAUTH_ISSUER"


def test_trust_the_issuer_the_token_url_or_the_opt_in_each_let_a_credential_load() -> None:
    secret = {"OAUTH_CLIENT_SECRET": "s3cret"}
    assert og.OAuthConfig.from_dict(_discovered(secret, OAUTH_ISSUER="https://idp.example.com")).issuer
    assert og.OAuthConfig.from_dict(_discovered(secret, OAUTH_TOKEN_URL="https://idp.example.com/token")).token_url
    trusted = og.OAuthConfig.from_dict(_discovered(secret, OAUTH_TRUST_DISCOVERED_ISSUER=True))
    assert trusted.trust_discovered_issuer and trusted.is_discovered
    for block in (
        _discovered(secret, OAUTH_ISSUER="https://idp.example.com"),
        _discovered(secret, OAUTH_TRUST_DISCOVERED_ISSUER=True),
        dict(_discovered(secret), enabled=False),
    ):
        assert og.validate_config(block) == [], block


def test_trust_a_block_with_no_endpoint_at_all_gets_one_problem_not_two() -> None:
    problems = og.validate_config({"enabled": True, "OAUTH_CLIENT_ID": "c", "OAUTH_CLIENT_SECRET": "s"})
    assert [p.json_path for p in problems] == ["$.OAUTH_TOKEN_URL"]


# --- 2. checking never runs code ---------------------------------------------------------

EVIL_MODULE = """
import os
open(os.environ["TRUST_MARKER"], "w").close()


class thing:
    def fetch(self, config, context):
        raise RuntimeError
"""


def _pull_request(tmp_path: Any, provider: str) -> Any:
    """A config-only pull request: a gateway file naming ``provider``, beside a module that marks its import."""
    (tmp_path / "evil_module.py").write_text(EVIL_MODULE)
    entry = {
        "server_name": "api",
        "config": {"command": "python", "args": ["server.py"]},
        "oauth_config": {
            "enabled": True,
            "OAUTH_CLIENT_ID": "c",
            "OAUTH_TOKEN_URL": "https://idp.example.com/token",
            "OAUTH_PROVIDER": provider,
        },
    }
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps({"mcp_configs": {"abc": {"mcp_config": [entry]}}}))
    return path


def _python_m(tmp_path: Any, *argv: str) -> Tuple[int, str, str]:
    marker = tmp_path / "marker"
    env = dict(os.environ, TRUST_MARKER=str(marker), PYTHONPATH="")
    done = subprocess.run(
        [sys.executable, "-m", "oauth_gateway", *argv],
        cwd=str(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert not marker.exists(), "the module named by the config was imported"
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("provider", ["evil_module:thing", "subprocess:Popen"])
def test_trust_validate_imports_no_provider_a_config_names(tmp_path, provider) -> None:
    path = _pull_request(tmp_path, provider)
    code, out, err = _python_m(tmp_path, "validate", str(path))
    assert code == 0, (out, err)
    assert "Traceback" not in err
    assert (
        "mcp_config[0].oauth_config.OAUTH_PROVIDER: warning: token provider %s is not checked (code)" % provider in out
    )
    assert "--load-providers" in out
    code, out, err = _python_m(tmp_path, "validate", "--strict", str(path))
    assert code == 1 and "Traceback" not in err


def test_trust_python_m_does_not_import_from_the_working_directory(tmp_path) -> None:
    path = _pull_request(tmp_path, "evil_module:thing")
    code, out, err = _python_m(tmp_path, "validate", "--load-providers", str(path))
    assert code == 1, (out, err)
    assert "Traceback" not in err
    assert "token provider 'evil_module:thing' could not be imported (ModuleNotFoundError)" in out


def test_trust_a_provider_whose_constructor_fails_is_a_config_error(tmp_path) -> None:
    path = _pull_request(tmp_path, "subprocess:Popen")
    code, out, err = _python_m(tmp_path, "validate", "--load-providers", str(path))
    assert code == 1, (out, err)
    assert "Traceback" not in err
    assert "token provider 'subprocess:Popen' could not be constructed (TypeError)" in out


def test_trust_the_framework_checks_import_no_provider(tmp_path, monkeypatch) -> None:
    from oauth_gateway.contrib.checks import check_gateway_file

    path = _pull_request(tmp_path, "evil_module:thing")
    monkeypatch.setenv("TRUST_MARKER", str(tmp_path / "marker"))
    monkeypatch.syspath_prepend(str(tmp_path))  # importable, as in a project's own directory
    problems = check_gateway_file(str(path))
    assert not (tmp_path / "marker").exists()
    assert [(p.level, p.obj.split("::")[1]) for p in problems] == [
        ("warning", "$.mcp_configs.abc.mcp_config[0].oauth_config.OAUTH_PROVIDER")
    ]
    assert "not checked (code)" in problems[0].message


# --- 6. provider answers are checked like token responses --------------------------------


class _FixedAnswer:
    """A real HTTPS loopback server that answers every request with one JSON body."""

    def __init__(self, ca: Any, body: bytes) -> None:
        from loopback import LoopbackServer

        answer = body

        class Server(LoopbackServer):
            def respond(self, method: str, target: str, headers: Any, body: bytes) -> Any:
                return 200, [("Content-Type", "application/json")], answer

        self.server = Server(ca).start()
        self.url = self.server.url


def _legacy_config(url: str, ca_bundle: str) -> og.OAuthConfig:
    return og.OAuthConfig.from_dict(
        {
            "enabled": True,
            "OAUTH_PROVIDER": "legacy_json",
            "OAUTH_PROVIDER_OPTIONS": {"url": url + "/api/session", "body": {"k": "v"}},
            "OAUTH_CA_BUNDLE_PATH": ca_bundle,
            "OAUTH_MAX_RETRIES": 0,
        }
    )


@pytest.mark.parametrize(
    "answer, says",
    [
        (b'{"access_token": "abc\\r\\nX-Injected: 1", "expires_in": 60}', "b64token"),
        (b'{"access_token": "' + b"a" * 20000 + b'", "expires_in": 60}', "longer than"),
        (b'{"access_token": "abc", "expires_in": 60, "scope": "read\\u0000write"}', "not an RFC 6749 scope"),
        (b'{"access_token": ' + b"[" * 30000 + b"]" * 30000 + b"}", "nests too deeply"),
    ],
    ids=["crlf", "too-long", "scope", "deep-json"],
)
def test_trust_a_legacy_json_answer_is_checked_like_a_token_response(ca, ca_bundle, clock, answer, says) -> None:
    fixed = _FixedAnswer(ca, answer)
    try:
        config = _legacy_config(fixed.url, ca_bundle).replace(
            provider_options={"url": fixed.url + "/api/session", "body": {"k": "v"}, "scope_field": "scope"}
        )
        manager = og.TokenManager(clock=clock, sleep=lambda seconds: None)
        with pytest.raises(og.TokenRequestError) as info:
            manager.get_token("legacy", config)
        assert says in str(info.value)
        assert "X-Injected" not in str(info.value)
        manager.close()
    finally:
        fixed.server.stop()


def test_trust_a_crlf_token_from_a_static_file_never_reaches_a_childs_auth_header(tmp_path, clock) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("abc\r\nAUTH_HEADER=forged\n")
    config = og.OAuthConfig.from_dict(
        {"enabled": True, "OAUTH_PROVIDER": "static", "OAUTH_PROVIDER_OPTIONS": {"file": str(token_file)}}
    )
    manager = og.TokenManager(clock=clock, sleep=lambda seconds: None)
    with pytest.raises(og.TokenRequestError) as info:
        manager.get_token("static", config)
    assert "b64token" in str(info.value)
    assert "forged" not in str(info.value)
    manager.close()


def test_trust_the_shared_checks_say_what_is_wrong_without_quoting() -> None:
    from oauth_gateway import _tokencheck

    assert _tokencheck.token_problem("abc.DEF-_~+/==", "Bearer", 60.0, "read write") is None
    assert _tokencheck.token_problem("abc", "Bearer\r\nX: y", None, None) is not None
    assert _tokencheck.token_problem("abc", "Bearer", float("nan"), None) is not None
    assert "secret" not in (_tokencheck.access_token_problem("secret value") or "secret")


# --- 8. linear patterns, printable output ------------------------------------------------


def test_trust_validating_a_1_mb_legacy_json_url_names_the_field() -> None:
    # Linear because the options schema's url pattern is (tests/test_schema.py checks every
    # pattern with tests/linear.py; tests/test_linear.py shows it rejects the old quadratic one).
    block = {
        "enabled": True,
        "OAUTH_PROVIDER": "legacy_json",
        "OAUTH_PROVIDER_OPTIONS": {"url": "https://" + "a" * 1_000_000 + " "},
    }
    problems = og.validate_config(block)
    assert [p.json_path for p in problems] == ["$.OAUTH_PROVIDER_OPTIONS.url"]


FORGED = "read\nissuer:               https://evil.example (verified)\x1b[2J\u202e"


def test_trust_discover_prints_server_values_on_one_line_each_without_control_characters(ca) -> None:
    from metadata_servers import MetadataServer

    with MetadataServer(ca) as meta:
        published = meta.publish(prm_scopes=[FORGED], as_document=meta.as_document(scopes_supported=[FORGED]))
        code, out, err = run("discover", published["mcp"], "--ca-bundle", meta.ca_bundle)
    assert code == 0, err
    assert "\x1b" not in out and "\u202e" not in out and "\r" not in out
    issuer_lines = [line for line in out.splitlines() if line.startswith("issuer:")]
    assert issuer_lines == ["issuer:               %s" % published["issuer"]]
    assert repr(FORGED) in out  # the odd value shown whole, as its repr
    block = json.loads(out[out.index("{") :])["oauth_config"]
    assert block["OAUTH_ISSUER"] == published["issuer"]  # the pasted block names the issuer


def test_trust_every_cli_line_is_printable(tmp_path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"enabled": True, "OAUTH_CLIENT_ID": "c", "OAUTH_TOKN\x1b[31m\x9b": 1}))
    code, out, err = run("validate", str(path))
    assert code == 1
    assert "\x1b" not in out + err and "\x9b" not in out + err
    assert "OAUTH_TOKN" in out
