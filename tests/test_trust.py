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
