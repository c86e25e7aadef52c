"""Tests for oauth_gateway.schema and the bundled schemas (schemas/*.schema.json)."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linear import ANCHORED_USE, CANNOT_FAIL_ONCE_STARTED, content_regexes, quadratic_shape
from oauth_gateway import schema
from oauth_gateway.exceptions import ConfigError
from oauth_gateway.schema import Problem, validate_config, validate_oauth_block

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE_FILES = sorted(p.name for p in FIXTURES.glob("*.json"))

#: Every key of the oauth_config contract (notes KEYS.md), with its default.
KEYS = {
    "enabled": False,
    "is_remote": None,
    "OAUTH_VERSION": "2.0",
    "OAUTH_GRANT_TYPE": "client_credentials",
    "OAUTH_PROVIDER": "client_credentials",
    "OAUTH_PROVIDER_OPTIONS": {},
    "OAUTH_CLIENT_ID": "",
    "OAUTH_CLIENT_SECRET": "",
    "OAUTH_CLIENT_SECRET_FILE": "",
    "OAUTH_TOKEN_URL": "",
    "OAUTH_AUDIENCE": "",
    "OAUTH_ORGANIZATION": "",
    "OAUTH_SCOPE": "",
    "OAUTH_RESOURCE": "",
    "OAUTH_USE_BASIC_AUTH": True,
    "OAUTH_ENFORCE_HTTPS": True,
    "OAUTH_TOKEN_IN_HEADER_ONLY": True,
    "OAUTH_VALIDATE_SCOPES": True,
    "OAUTH_TOKEN_EXPIRY_BUFFER": 300,
    "OAUTH_USE_MTLS": False,
    "OAUTH_CLIENT_CERT_PATH": "",
    "OAUTH_CLIENT_KEY_PATH": "",
    "OAUTH_CA_BUNDLE_PATH": "",
    "OAUTH_REVOCATION_URL": "",
    "OAUTH_ADDITIONAL_PARAMS": {},
    "OAUTH_CUSTOM_HEADERS": {},
    "OAUTH_TIMEOUT": 10,
    "OAUTH_CONNECT_TIMEOUT": 5,
    "OAUTH_MAX_RETRIES": 3,
    "OAUTH_RETRY_BACKOFF": 2,
    "OAUTH_RETRY_AFTER_MAX": 60,
    "OAUTH_ISSUER": "",
    "OAUTH_TRUST_DISCOVERED_ISSUER": False,
    "OAUTH_RESOURCE_METADATA_URL": "",
    "OAUTH_TOKEN_ENDPOINT_AUTH_METHOD": "",
    "OAUTH_CLIENT_PRIVATE_KEY_PATH": "",
    "OAUTH_CLIENT_PRIVATE_KEY_PASSWORD": "",
    "OAUTH_CLIENT_ASSERTION_ALG": "",
    "OAUTH_CLIENT_KEY_ID": "",
    "OAUTH_CLIENT_ASSERTION_AUDIENCE": "",
    "OAUTH_CLIENT_ASSERTION_FILE": "",
    "OAUTH_CLIENT_ASSERTION_SOURCE": {},
    "OAUTH_DPOP": False,
    "OAUTH_DPOP_KEY_PATH": "",
    "OAUTH_SUBJECT_TOKEN_FILE": "",
    "OAUTH_SUBJECT_TOKEN_TYPE": "urn:ietf:params:oauth:token-type:access_token",
    "OAUTH_ACTOR_TOKEN_FILE": "",
    "OAUTH_ACTOR_TOKEN_TYPE": "urn:ietf:params:oauth:token-type:access_token",
    "OAUTH_REQUESTED_TOKEN_TYPE": "",
    "OAUTH_IDENTITY_ASSERTION": {},
}

BLOCK = "$.mcp_configs.abc.mcp_config[0].oauth_config"

#: A valid enabled block; each rule test changes one thing.
BASE: Dict[str, Any] = {
    "enabled": True,
    "OAUTH_CLIENT_ID": "cid",
    "OAUTH_CLIENT_SECRET": "${IDP_SECRET}",
    "OAUTH_TOKEN_URL": "https://idp.example.com/token",
}


def block(**changes: Any) -> Dict[str, Any]:
    """BASE with keys changed; a value of ... removes the key."""
    result = dict(BASE)
    for key, value in changes.items():
        if value is ...:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def gateway(oauth_config: Any, config_id: str = "abc") -> Dict[str, Any]:
    return {
        "mcp_configs": {
            config_id: {
                "mcp_config_name": "default_config",
                "mcp_config": [
                    {"server_name": "oauth-api", "config": {"command": "npx"}, "oauth_config": oauth_config}
                ],
            }
        }
    }


def by_path(problems: List[Problem]) -> Dict[str, Problem]:
    paths = [p.json_path for p in problems]
    assert len(paths) == len(set(paths)), "more than one problem at a path: %s" % paths
    return {p.json_path: p for p in problems}


# --- the schema files ------------------------------------------------------------------


@pytest.mark.parametrize("name", schema.SCHEMA_NAMES)
def test_bundled_schemas_are_valid_draft7(name: str) -> None:
    from jsonschema import Draft7Validator

    document = schema.load_schema(name)
    Draft7Validator.check_schema(document)
    assert document["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert document["title"] and document["description"]


def test_oauth_schema_documents_every_contract_key_with_its_default() -> None:
    document = schema.load_schema("oauth-config")
    assert document["$id"].startswith("https://")
    properties = document["properties"]
    assert set(properties) - {"$schema"} == set(KEYS)
    for key, default in KEYS.items():
        prop = properties[key]
        assert prop["title"] and prop["description"], key
        assert prop["default"] == default, key
        # every default is itself valid
        assert validate_oauth_block({key: default}) == [], key


def test_oauth_schema_is_self_contained() -> None:
    # No internal $ref: with an https $id, old resolvers (jsonschema 3.2 and
    # check-jsonschema 0.13) would try to download it.
    assert "$ref" not in json.dumps(schema.load_schema("oauth-config"))


def test_gateway_schema_refers_to_the_oauth_schema_by_relative_file() -> None:
    text = json.dumps(schema.load_schema("gateway-config"))
    assert '"$ref": "oauth-config.schema.json"' in text
    assert "$id" not in schema.load_schema("gateway-config")  # so the ref resolves next to the file


# --- loading ---------------------------------------------------------------------------


def test_schema_path_names_the_bundled_files() -> None:
    for name in schema.SCHEMA_NAMES:
        path = schema.schema_path(name)
        assert os.path.isfile(path)
        assert os.path.basename(path) == "%s.schema.json" % name
        with open(path, encoding="utf-8") as handle:
            assert json.load(handle) == schema.load_schema(name)
    assert schema.schema_path() == schema.schema_path("oauth-config")


def test_schema_path_refuses_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown schema '../secrets'"):
        schema.schema_path("../secrets")


def test_loader_prefers_the_package_schemas_then_the_source_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "repo" / "oauth_gateway"
    (package / "schemas").mkdir(parents=True)
    (tmp_path / "repo" / "schemas").mkdir()
    monkeypatch.setattr(schema, "_PACKAGE_DIR", str(package))

    with pytest.raises(FileNotFoundError, match="oauth-config.schema.json"):
        schema.schema_path("oauth-config")
    source = tmp_path / "repo" / "schemas" / "oauth-config.schema.json"
    source.write_text("{}")
    assert schema.schema_path("oauth-config") == str(source)
    installed = package / "schemas" / "oauth-config.schema.json"
    installed.write_text("{}")
    assert schema.schema_path("oauth-config") == str(installed)


def test_load_schema_is_cached() -> None:
    assert schema.load_schema("gateway-config") is schema.load_schema("gateway-config")


def test_import_does_not_load_jsonschema() -> None:
    code = "import sys, oauth_gateway.schema, oauth_gateway.cli; print('jsonschema' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# --- good documents --------------------------------------------------------------------

GOOD_BLOCKS = {
    "empty": {},
    "disabled with nothing else": {"enabled": False},
    "minimal 2.1 from the docs": {
        "enabled": True,
        "OAUTH_VERSION": "2.1",
        "OAUTH_GRANT_TYPE": "client_credentials",
        "OAUTH_CLIENT_ID": "your-client-id",
        "OAUTH_CLIENT_SECRET": "your-client-secret",
        "OAUTH_TOKEN_URL": "https://auth.example.com/oauth/token",
    },
    "secret file instead of secret": block(OAUTH_CLIENT_SECRET=..., OAUTH_CLIENT_SECRET_FILE="/run/secrets/idp"),
    "empty secret beside a secret file": block(OAUTH_CLIENT_SECRET="", OAUTH_CLIENT_SECRET_FILE="/run/secrets/idp"),
    "mTLS without a secret": block(
        OAUTH_CLIENT_SECRET=..., OAUTH_USE_MTLS=True, OAUTH_CLIENT_CERT_PATH="/c.pem", OAUTH_CLIENT_KEY_PATH="/k.pem"
    ),
    "http with OAUTH_ENFORCE_HTTPS false": block(
        OAUTH_ENFORCE_HTTPS=False,
        OAUTH_TOKEN_URL="http://127.0.0.1:8080/token",
        OAUTH_REVOCATION_URL="http://127.0.0.1/r",
    ),
    "env references in URLs under 2.1": block(
        OAUTH_VERSION="2.1",
        OAUTH_TOKEN_URL="${IDP}/token",
        OAUTH_REVOCATION_URL="${IDP}/revoke",
        OAUTH_RESOURCE="${RES}",
    ),
    "2.1 without a revocation URL": block(OAUTH_VERSION="2.1"),
    "2.1 with explicit true flags": block(
        OAUTH_VERSION="2.1", OAUTH_ENFORCE_HTTPS=True, OAUTH_TOKEN_IN_HEADER_ONLY=True
    ),
    "seed nulls for paths and revocation URL": block(
        OAUTH_CLIENT_CERT_PATH=None, OAUTH_CLIENT_KEY_PATH=None, OAUTH_CA_BUNDLE_PATH=None, OAUTH_REVOCATION_URL=None
    ),
    "is_remote null": block(is_remote=None),
    "resource list": block(OAUTH_RESOURCE=["https://a.example.com", "urn:example:b"]),
    "scope tokens with punctuation": block(OAUTH_SCOPE="read:data write:data https://x/y!#"),
    "additional params of every allowed type": block(OAUTH_ADDITIONAL_PARAMS={"realm": "r", "n": 1.5, "b": False}),
    "prefixed custom headers": block(OAUTH_CUSTOM_HEADERS={"X-Authorization-Id": "1", "Content-Type-Hint": "x"}),
    "whole-number float buffer": block(OAUTH_TOKEN_EXPIRY_BUFFER=300.0),
    "boundary numbers": block(
        OAUTH_TOKEN_EXPIRY_BUFFER=0,
        OAUTH_MAX_RETRIES=10,
        OAUTH_RETRY_BACKOFF=0,
        OAUTH_RETRY_AFTER_MAX=0,
        OAUTH_TIMEOUT=0.1,
    ),
    "$schema in a bare block": block(**{"$schema": "../schemas/oauth-config.schema.json"}),
}


# --- every regular expression applied to file content runs in linear time ------------
# The static check of tests/linear.py, not timings (bench/linear.py prints those ratios).


def test_the_audit_covers_the_schema_patterns_and_the_module_regexes() -> None:
    names = list(content_regexes())
    assert any("https?://" in name for name in names)
    assert "oauth_gateway.schema._ENV_REFERENCE" in names
    assert "oauth_gateway._helpers._JSON_STRUCTURE" in names
    assert any(name.startswith("provider legacy_json: ^https://") for name in names)
    assert len(names) >= 8
    assert ANCHORED_USE | CANNOT_FAIL_ONCE_STARTED <= set(names)  # no stale entry hides a renamed regex


@pytest.mark.parametrize("name", sorted(content_regexes()))
def test_every_pattern_applied_to_file_content_is_linear(name: str) -> None:
    regex = content_regexes()[name]
    # match() has one start position; search(), sub() and finditer() try every one.
    assert quadratic_shape(regex, anchored=True) is None
    if name not in ANCHORED_USE and name not in CANNOT_FAIL_ONCE_STARTED:
        assert quadratic_shape(regex, anchored=False) is None


_UNTERMINATED = '"' + '\\"' * 500


@pytest.mark.parametrize(
    ("text", "strings"),
    [
        (_UNTERMINATED, [_UNTERMINATED]),
        ('"' * 1000, ['""'] * 500),
        ('"' + "a" * 1000 + "\\", ['"' + "a" * 1000 + "\\"]),
        ('"a\\"b" ["c', ['"a\\"b"', '"c']),
    ],
    ids=["escaped-quotes-unterminated", "quotes", "trailing-backslash", "unterminated-last"],
)
def test_a_json_string_match_cannot_fail_once_started(text: str, strings: List[str]) -> None:
    # Why _JSON_STRUCTURE is linear under finditer although its loop can consume '"': a string
    # it starts runs to its closing quote or to the end of the text, so no start is scanned twice.
    from oauth_gateway._helpers import _JSON_STRUCTURE

    assert [m.group() for m in _JSON_STRUCTURE.finditer(text) if m.group().startswith('"')] == strings


def test_validating_a_crafted_1_mb_url_names_the_field_briefly() -> None:
    # Linear because every schema pattern is (above): this shows the 1 MB value gets through.
    url = "https://" + "a" * 1_000_000 + " "
    block = {"enabled": True, "OAUTH_TOKEN_URL": url, "OAUTH_CLIENT_ID": "c", "OAUTH_CLIENT_SECRET": "s"}
    problems = validate_oauth_block(block)
    assert [p.json_path for p in problems] == ["$.OAUTH_TOKEN_URL"]
    assert len(problems[0].message) < 200  # the value is shortened, not repeated whole


def test_finding_literal_secrets_in_a_crafted_1_mb_value() -> None:
    # "${" * n is the input a rescanning reference pattern is quadratic on; _ENV_REFERENCE is
    # checked above.
    document = {"mcp_configs": {"a": {"mcp_config": [{"oauth_config": {"OAUTH_CLIENT_SECRET": "${" * 500_000}}]}}}
    assert schema.literal_secret_paths(document) == ["$.mcp_configs.a.mcp_config[0].oauth_config.OAUTH_CLIENT_SECRET"]


@pytest.mark.parametrize("name", sorted(GOOD_BLOCKS))
def test_good_blocks_have_no_problems(name: str) -> None:
    assert validate_oauth_block(GOOD_BLOCKS[name]) == []
    assert validate_config(GOOD_BLOCKS[name]) == []
    nested = [p.json_path for p in validate_config(gateway(GOOD_BLOCKS[name]))]
    assert nested == ([BLOCK + "['$schema']"] if "$schema" in GOOD_BLOCKS[name] else [])


def test_complete_docs_example_with_every_key_is_valid() -> None:
    full = dict(KEYS)
    full.update(
        BASE, OAUTH_VERSION="2.1", OAUTH_SCOPE="read write delete", OAUTH_RESOURCE="https://resource.example.com"
    )
    assert validate_oauth_block(full) == []


def test_gateway_tolerates_the_seed_sections_and_unknown_server_fields() -> None:
    document = json.loads((FIXTURES / "gateway-good-seed.json").read_text())
    assert validate_config(document) == []
    document["plugins"]["anything"] = [1, {"x": None}]
    document["future_section"] = "whatever"
    server = document["mcp_configs"]["0f0e5c3a-6d0e-4a55-9d6c-0a1b2c3d4e5f"]["mcp_config"][0]
    server["sandbox"] = {"enabled": False}
    server["config"]["url"] = "https://mcp.example.com/mcp"
    assert validate_config(document) == []


# --- every rule, bad ---------------------------------------------------------------------

BAD_BLOCKS = [
    # (block, path under $, message fragment, hint fragment or None)
    (
        block(OAUTH_TOKEN_URL="http://idp/token"),
        "OAUTH_TOKEN_URL",
        "must be https, got 'http://idp/token'",
        "use https or set OAUTH_ENFORCE_HTTPS to false for local tests",
    ),
    (
        block(OAUTH_REVOCATION_URL="http://idp/revoke"),
        "OAUTH_REVOCATION_URL",
        "must be https, got 'http://idp/revoke'",
        "OAUTH_ENFORCE_HTTPS",
    ),
    (
        block(OAUTH_TOKEN_URL="idp.example.com/token"),
        "OAUTH_TOKEN_URL",
        "must be an absolute http:// or https:// URL",
        "https://idp.example.com",
    ),
    (
        block(OAUTH_ENFORCE_HTTPS=False, OAUTH_TOKEN_URL="ftp://idp/token"),
        "OAUTH_TOKEN_URL",
        "absolute http:// or https:// URL, got 'ftp://idp/token'",
        None,
    ),
    (
        block(OAUTH_VERSION="2.1", OAUTH_TOKEN_URL="http://idp/token"),
        "OAUTH_TOKEN_URL",
        "OAuth 2.1 requires HTTPS for token_url",
        'set OAUTH_VERSION to "2.0"',
    ),
    (
        block(OAUTH_VERSION="2.1", OAUTH_REVOCATION_URL="http://idp/revoke"),
        "OAUTH_REVOCATION_URL",
        "OAuth 2.1 requires HTTPS for revocation_url",
        "https://",
    ),
    (
        block(OAUTH_VERSION="2.1", OAUTH_ENFORCE_HTTPS=False),
        "OAUTH_ENFORCE_HTTPS",
        'cannot be false when OAUTH_VERSION is "2.1"',
        "set it to true",
    ),
    (
        block(OAUTH_VERSION="2.1", OAUTH_TOKEN_IN_HEADER_ONLY=False),
        "OAUTH_TOKEN_IN_HEADER_ONLY",
        'cannot be false when OAUTH_VERSION is "2.1"',
        "query strings",
    ),
    (block(OAUTH_CLIENT_ID=...), "OAUTH_CLIENT_ID", "is required when enabled is true", "client id"),
    (block(OAUTH_CLIENT_ID=""), "OAUTH_CLIENT_ID", "must not be empty when enabled is true", "client id"),
    (
        block(OAUTH_TOKEN_URL=...),
        "OAUTH_TOKEN_URL",
        "is required when enabled is true and neither OAUTH_ISSUER",
        "OAUTH_RESOURCE to the MCP server's URL",
    ),
    (
        block(OAUTH_TOKEN_URL=""),
        "OAUTH_TOKEN_URL",
        "is required when enabled is true and neither OAUTH_ISSUER",
        "set OAUTH_ISSUER",
    ),
    (
        block(OAUTH_TOKEN_URL=..., OAUTH_ISSUER="http://idp.example.com"),
        "OAUTH_ISSUER",
        "must be https",
        "OAUTH_ENFORCE_HTTPS",
    ),
    (
        block(OAUTH_GRANT_TYPE="urn:ietf:params:oauth:grant-type:jwt-bearer"),
        "OAUTH_CLIENT_ASSERTION_FILE",
        "is required with the jwt-bearer grant",
        None,
    ),
    (
        block(OAUTH_CLIENT_PRIVATE_KEY_PATH="/k.pem", OAUTH_CLIENT_ASSERTION_FILE="/t.jwt"),
        "OAUTH_CLIENT_ASSERTION_FILE",
        "cannot be used together with OAUTH_CLIENT_PRIVATE_KEY_PATH",
        "keep one",
    ),
    (
        block(OAUTH_TOKEN_ENDPOINT_AUTH_METHOD="client_secret_magic"),
        "OAUTH_TOKEN_ENDPOINT_AUTH_METHOD",
        "must be one of",
        "private_key_jwt",
    ),
    (
        block(OAUTH_CLIENT_SECRET=...),
        "OAUTH_CLIENT_SECRET",
        "a client secret is required when enabled is true",
        "OAUTH_CLIENT_SECRET_FILE",
    ),
    (block(OAUTH_CLIENT_SECRET=""), "OAUTH_CLIENT_SECRET", "a client secret is required", "OAUTH_USE_MTLS"),
    (
        block(OAUTH_CLIENT_SECRET="", OAUTH_CLIENT_SECRET_FILE=""),
        "OAUTH_CLIENT_SECRET",
        "a client secret is required",
        None,
    ),
    (
        block(OAUTH_CLIENT_SECRET_FILE="/run/secrets/idp"),
        "OAUTH_CLIENT_SECRET_FILE",
        "cannot be used together with OAUTH_CLIENT_SECRET",
        "keep one",
    ),
    (
        block(OAUTH_USE_MTLS=True, OAUTH_CLIENT_KEY_PATH="/k.pem"),
        "OAUTH_CLIENT_CERT_PATH",
        "is required when OAUTH_USE_MTLS is true",
        "certificate",
    ),
    (
        block(OAUTH_USE_MTLS=True, OAUTH_CLIENT_CERT_PATH="/c.pem"),
        "OAUTH_CLIENT_KEY_PATH",
        "is required when OAUTH_USE_MTLS is true",
        "chmod 600",
    ),
    (
        block(OAUTH_USE_MTLS=True, OAUTH_CLIENT_CERT_PATH="/c.pem", OAUTH_CLIENT_KEY_PATH=""),
        "OAUTH_CLIENT_KEY_PATH",
        "must be set when OAUTH_USE_MTLS is true",
        None,
    ),
    (
        block(OAUTH_USE_MTLS=True, OAUTH_CLIENT_CERT_PATH=None, OAUTH_CLIENT_KEY_PATH="/k"),
        "OAUTH_CLIENT_CERT_PATH",
        "must be set when OAUTH_USE_MTLS is true",
        None,
    ),
    (
        block(OAUTH_ADDITIONAL_PARAMS={"grant_type": "password"}),
        "OAUTH_ADDITIONAL_PARAMS.grant_type",
        "may not be overridden",
        "client_credentials",
    ),
    (
        block(OAUTH_ADDITIONAL_PARAMS={"client_id": "x"}),
        "OAUTH_ADDITIONAL_PARAMS.client_id",
        "may not be overridden",
        "OAUTH_CLIENT_ID",
    ),
    (
        block(OAUTH_ADDITIONAL_PARAMS={"client_secret": "x"}),
        "OAUTH_ADDITIONAL_PARAMS.client_secret",
        "may not be overridden",
        "OAUTH_CLIENT_SECRET",
    ),
    (
        block(OAUTH_ADDITIONAL_PARAMS={"scope": "x"}),
        "OAUTH_ADDITIONAL_PARAMS.scope",
        "may not be overridden",
        "OAUTH_SCOPE",
    ),
    (
        block(OAUTH_ADDITIONAL_PARAMS={"audience": "x"}),
        "OAUTH_ADDITIONAL_PARAMS.audience",
        "may not be overridden",
        "OAUTH_AUDIENCE",
    ),
    (
        block(OAUTH_ADDITIONAL_PARAMS={"organization": "x"}),
        "OAUTH_ADDITIONAL_PARAMS.organization",
        "may not be overridden",
        "OAUTH_ORGANIZATION",
    ),
    (
        block(OAUTH_ADDITIONAL_PARAMS={"resource": "x"}),
        "OAUTH_ADDITIONAL_PARAMS.resource",
        "may not be overridden",
        "OAUTH_RESOURCE",
    ),
    (
        block(OAUTH_ADDITIONAL_PARAMS={"client_assertion_type": "x"}),
        "OAUTH_ADDITIONAL_PARAMS.client_assertion_type",
        "may not be set",
        "OAUTH_CLIENT_PRIVATE_KEY_PATH",
    ),
    (
        block(OAUTH_ADDITIONAL_PARAMS={"deep": {"a": 1}}),
        "OAUTH_ADDITIONAL_PARAMS.deep",
        "must be a string, number or boolean, got an object",
        None,
    ),
    (block(OAUTH_ADDITIONAL_PARAMS=[]), "OAUTH_ADDITIONAL_PARAMS", "must be an object, got a list", None),
    (
        block(OAUTH_CUSTOM_HEADERS={"Authorization": "Bearer x"}),
        "OAUTH_CUSTOM_HEADERS.Authorization",
        "may not be set",
        "Authorization header",
    ),
    (block(OAUTH_CUSTOM_HEADERS={"aUtHoRiZaTiOn": "x"}), "OAUTH_CUSTOM_HEADERS.aUtHoRiZaTiOn", "may not be set", None),
    (
        block(OAUTH_CUSTOM_HEADERS={"content-type": "text/plain"}),
        "OAUTH_CUSTOM_HEADERS['content-type']",
        "may not be set",
        "x-www-form-urlencoded",
    ),
    (
        block(OAUTH_CUSTOM_HEADERS={"X-Count": 5}),
        "OAUTH_CUSTOM_HEADERS['X-Count']",
        "must be a string (header values are text)",
        "quotes",
    ),
    (
        block(OAUTH_USE_BASIC_AUTH="false"),
        "OAUTH_USE_BASIC_AUTH",
        "must be a boolean (true or false without quotes), got the string 'false'",
        None,
    ),
    (block(enabled="true"), "enabled", "must be a boolean (true or false without quotes), got the string 'true'", None),
    (
        block(OAUTH_VALIDATE_SCOPES=1),
        "OAUTH_VALIDATE_SCOPES",
        "must be a boolean (true or false without quotes), got the number 1",
        None,
    ),
    (block(is_remote="yes"), "is_remote", "must be true, false or null (without quotes), got the string 'yes'", None),
    (block(OAUTH_CLIENT_ID=12345), "OAUTH_CLIENT_ID", "must be a string, got the number 12345", "put it in quotes"),
    (block(OAUTH_AUDIENCE=True), "OAUTH_AUDIENCE", "must be a string, got true", "quotes"),
    (block(OAUTH_VERSION=2.1), "OAUTH_VERSION", "must be a string, got the number 2.1", 'put it in quotes, like "2.1"'),
    (block(OAUTH_VERSION="3.0"), "OAUTH_VERSION", "must be one of '2.0', '2.1', got '3.0'", None),
    (
        block(OAUTH_GRANT_TYPE="authorization_code"),
        "OAUTH_GRANT_TYPE",
        "must be 'client_credentials', 'urn:ietf:params:oauth:grant-type:jwt-bearer' or 'urn:ietf:params:oauth:grant-type:token-exchange', got 'authorization_code'",
        None,
    ),
    (
        block(OAUTH_SCOPE="read  write"),
        "OAUTH_SCOPE",
        "must be scope tokens separated by single spaces",
        "repeated spaces",
    ),
    (block(OAUTH_SCOPE=" read"), "OAUTH_SCOPE", "RFC 6749 section 3.3", None),
    (block(OAUTH_SCOPE='read "write"'), "OAUTH_SCOPE", "RFC 6749 section 3.3", None),
    (
        block(OAUTH_RESOURCE="https://api.example.com#frag"),
        "OAUTH_RESOURCE",
        "must be an absolute URI without a fragment (RFC 8707)",
        "drop any",
    ),
    (block(OAUTH_RESOURCE="api.example.com"), "OAUTH_RESOURCE", "absolute URI", None),
    (block(OAUTH_RESOURCE=[]), "OAUTH_RESOURCE", "must not be an empty list", None),
    (block(OAUTH_RESOURCE=["https://ok", ""]), "OAUTH_RESOURCE[1]", "absolute URI", None),
    (
        block(OAUTH_RESOURCE={"a": 1}),
        "OAUTH_RESOURCE",
        "must be a URI string or a list of URI strings, got an object",
        None,
    ),
    (block(OAUTH_TOKEN_EXPIRY_BUFFER=-1), "OAUTH_TOKEN_EXPIRY_BUFFER", "must be at least 0, got -1", None),
    (
        block(OAUTH_TOKEN_EXPIRY_BUFFER=1.5),
        "OAUTH_TOKEN_EXPIRY_BUFFER",
        "must be a whole number, got the number 1.5",
        None,
    ),
    (
        block(OAUTH_TOKEN_EXPIRY_BUFFER="300"),
        "OAUTH_TOKEN_EXPIRY_BUFFER",
        "must be a whole number",
        "remove the quotes",
    ),
    (block(OAUTH_TIMEOUT=0), "OAUTH_TIMEOUT", "must be greater than 0, got 0", None),
    (block(OAUTH_TIMEOUT="10"), "OAUTH_TIMEOUT", "must be a number, got the string '10'", "remove the quotes"),
    (block(OAUTH_CONNECT_TIMEOUT=-0.5), "OAUTH_CONNECT_TIMEOUT", "must be greater than 0, got -0.5", None),
    (block(OAUTH_MAX_RETRIES=11), "OAUTH_MAX_RETRIES", "must be at most 10, got 11", None),
    (block(OAUTH_MAX_RETRIES=-1), "OAUTH_MAX_RETRIES", "must be at least 0, got -1", None),
    (block(OAUTH_RETRY_BACKOFF=-2), "OAUTH_RETRY_BACKOFF", "must be at least 0, got -2", None),
    (block(OAUTH_RETRY_AFTER_MAX=-1), "OAUTH_RETRY_AFTER_MAX", "must be at least 0, got -1", None),
    (block(OAUTH_CA_BUNDLE_PATH=5), "OAUTH_CA_BUNDLE_PATH", "must be a string or null, got the number 5", None),
    (block(OAUTH_SCOPES="read"), "OAUTH_SCOPES", "unknown key 'OAUTH_SCOPES'", "did you mean 'OAUTH_SCOPE'?"),
    (["enabled"], "", "must be an object of OAUTH_* settings, got a list", None),
]


@pytest.mark.parametrize("document,where,message,hint", BAD_BLOCKS)
def test_each_rule_reports_one_problem_at_its_path(document: Any, where: str, message: str, hint: Any) -> None:
    suffix = where if not where or where.startswith("[") or where.startswith("['") else "." + where
    problems = validate_config(document)
    assert len(problems) == 1, [str(p) for p in problems]
    problem = problems[0]
    assert problem.json_path == "$" + suffix
    assert message in problem.message
    assert problem.severity == "error"
    if hint is not None:
        assert problem.hint is not None and hint in problem.hint
    # the same problem inside a gateway file, at the nested path
    if isinstance(document, dict):
        nested = validate_config(gateway(document))
        assert [(p.json_path, p.message) for p in nested] == [(BLOCK + suffix, problem.message)]


def test_messages_follow_the_documented_wording() -> None:
    (problem,) = validate_oauth_block(block(OAUTH_TOKEN_URL="http://idp/token"), "$.oauth_config")
    assert str(problem) == (
        "$.oauth_config.OAUTH_TOKEN_URL: must be https, got 'http://idp/token'; "
        "use https or set OAUTH_ENFORCE_HTTPS to false for local tests"
    )
    (problem,) = validate_config(block(OAUTH_SCOPES="x"))
    assert str(problem) == "$.OAUTH_SCOPES: unknown key 'OAUTH_SCOPES'; did you mean 'OAUTH_SCOPE'?"
    (problem,) = validate_config(block(OAUTH_CLIENT_ID=12345))
    assert str(problem) == "$.OAUTH_CLIENT_ID: must be a string, got the number 12345; put it in quotes"


# --- did you mean ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "key,suggestion",
    [
        ("OAUTH_SCOPES", "OAUTH_SCOPE"),
        ("OAUTH_CLIENTID", "OAUTH_CLIENT_ID"),
        ("OAUTH_TOKENURL", "OAUTH_TOKEN_URL"),
        ("oauth_token_url", "OAUTH_TOKEN_URL"),
        ("client_secret", "OAUTH_CLIENT_SECRET"),
        ("OAUTH_REVOCATION_URI", "OAUTH_REVOCATION_URL"),
        ("OAUTH_ENFORCE_HTTP", "OAUTH_ENFORCE_HTTPS"),
        ("enable", "enabled"),
        ("isRemote", "is_remote"),
        ("OAUTH_MAX_RETRY", "OAUTH_MAX_RETRIES"),
    ],
)
def test_unknown_keys_suggest_the_closest_key(key: str, suggestion: str) -> None:
    (problem,) = validate_config(block(**{key: "x"}))
    assert problem.json_path == ("$." + key if re.match(r"^[A-Za-z_]\w*$", key) else "$['%s']" % key)
    assert problem.message == "unknown key '%s'" % key
    assert problem.hint is not None and problem.hint.startswith("did you mean '%s'?" % suggestion)


def test_case_only_differences_say_keys_are_case_sensitive() -> None:
    (problem,) = validate_config(block(oauth_scope="read"))
    assert problem.hint == "did you mean 'OAUTH_SCOPE'? keys are case-sensitive"


def test_unknown_keys_without_a_close_match_point_to_the_schema() -> None:
    (problem,) = validate_config(block(zzz=1))
    assert problem.message == "unknown key 'zzz'"
    assert problem.hint is not None and "did you mean" not in problem.hint
    assert "oauth-gateway schema" in problem.hint


def test_seed_only_keys_are_unknown() -> None:
    problems = validate_config(block(OAUTH_AUTHORIZATION_URL="https://idp/authorize", OAUTH_USE_PKCE=False))
    assert [p.json_path for p in problems] == ["$.OAUTH_AUTHORIZATION_URL", "$.OAUTH_USE_PKCE"]
    assert all(p.message.startswith("unknown key") for p in problems)


# --- paths, sorting, one problem per path ----------------------------------------------------


def test_paths_quote_keys_that_are_not_identifiers() -> None:
    document = gateway(block(OAUTH_TOKEN_URL="http://idp/token"), config_id="0f0e-uuid id")
    document["mcp_configs"]["0f0e-uuid id"]["mcp_config"][0]["oauth_config"]["OAUTH_CUSTOM_HEADERS"] = {"it's": 1}
    paths = [p.json_path for p in validate_config(document)]
    assert paths == [
        "$.mcp_configs['0f0e-uuid id'].mcp_config[0].oauth_config.OAUTH_CUSTOM_HEADERS['it\\'s']",
        "$.mcp_configs['0f0e-uuid id'].mcp_config[0].oauth_config.OAUTH_TOKEN_URL",
    ]


def test_problems_are_sorted_by_path_with_numeric_indexes() -> None:
    servers = [{"server_name": "s%d" % i, "config": {}, "oauth_config": {"OAUTH_TIMEOUT": "slow"}} for i in range(12)]
    problems = validate_config({"mcp_configs": {"b": {"mcp_config": servers}, "a": {}}})
    paths = [p.json_path for p in problems]
    assert paths[0] == "$.mcp_configs.a.mcp_config"
    assert paths[1:] == ["$.mcp_configs.b.mcp_config[%d].oauth_config.OAUTH_TIMEOUT" % i for i in range(12)]


def test_http_token_url_under_2_1_is_one_problem_not_two() -> None:
    problems = validate_config(gateway(block(OAUTH_VERSION="2.1", OAUTH_TOKEN_URL="http://idp/token")))
    (problem,) = problems
    assert problem.json_path == BLOCK + ".OAUTH_TOKEN_URL"
    assert problem.message.startswith("OAuth 2.1 requires HTTPS for token_url")
    assert problem.hint


def test_string_false_under_2_1_reports_the_type_not_the_2_1_rule() -> None:
    (problem,) = validate_config(block(OAUTH_VERSION="2.1", OAUTH_ENFORCE_HTTPS="false"))
    assert problem.json_path == "$.OAUTH_ENFORCE_HTTPS"
    assert problem.message == "must be a boolean (true or false without quotes), got the string 'false'"


def test_2_1_with_enforce_false_reports_both_fields_once() -> None:
    problems = validate_config(block(OAUTH_VERSION="2.1", OAUTH_ENFORCE_HTTPS=False, OAUTH_TOKEN_URL="http://idp/t"))
    found = by_path(problems)
    assert set(found) == {"$.OAUTH_ENFORCE_HTTPS", "$.OAUTH_TOKEN_URL"}
    assert found["$.OAUTH_TOKEN_URL"].message.startswith("OAuth 2.1 requires HTTPS for token_url")


def test_enabled_without_anything_reports_each_missing_key_at_its_path() -> None:
    problems = validate_config(gateway({"enabled": True}))
    assert [(p.json_path, p.message) for p in problems] == [
        (BLOCK + ".OAUTH_CLIENT_ID", "is required when enabled is true"),
        (BLOCK + ".OAUTH_CLIENT_SECRET", "a client secret is required when enabled is true"),
        (
            BLOCK + ".OAUTH_TOKEN_URL",
            "is required when enabled is true and neither OAUTH_ISSUER nor OAUTH_RESOURCE is set",
        ),
    ]


def test_a_block_without_a_token_url_is_valid_with_an_issuer_or_a_resource_url() -> None:
    base = {"enabled": True, "OAUTH_CLIENT_ID": "c", "OAUTH_CLIENT_SECRET": "s"}
    assert validate_config(dict(base, OAUTH_ISSUER="https://idp.example.com")) == []
    resource = dict(base, OAUTH_RESOURCE="https://mcp.example.com/mcp")
    assert validate_config(dict(resource, OAUTH_ISSUER="https://idp.example.com")) == []
    assert validate_config(dict(resource, OAUTH_TRUST_DISCOVERED_ISSUER=True)) == []


def test_a_remote_gateway_server_needs_no_token_url_its_mcp_remote_url_is_the_resource() -> None:
    entry = {
        "server_name": "remote",
        "config": {"command": "npx", "args": ["-y", "mcp-remote", "https://mcp.example.com/mcp"]},
        "oauth_config": {
            "enabled": True,
            "OAUTH_CLIENT_ID": "c",
            "OAUTH_CLIENT_SECRET": "s",
            "OAUTH_ISSUER": "https://idp.example.com",
        },
    }
    local = dict(entry, server_name="local", config={"command": "python", "args": ["server.py"]})
    local["oauth_config"] = {"enabled": True, "OAUTH_CLIENT_ID": "c", "OAUTH_CLIENT_SECRET": "s"}
    document = {"mcp_configs": {"abc": {"mcp_config": [entry, local]}}}
    problems = validate_config(document)
    assert [(p.json_path, p.message) for p in problems] == [
        (
            "$.mcp_configs.abc.mcp_config[1].oauth_config.OAUTH_TOKEN_URL",
            "is required when enabled is true and neither OAUTH_ISSUER nor OAUTH_RESOURCE is set",
        )
    ]


def test_secrets_are_not_required_with_a_private_key_an_assertion_file_or_mtls_methods() -> None:
    base = {"enabled": True, "OAUTH_CLIENT_ID": "c", "OAUTH_ISSUER": "https://idp.example.com"}
    assert validate_config(dict(base, OAUTH_CLIENT_PRIVATE_KEY_PATH="/k.pem")) == []
    assert validate_config(dict(base, OAUTH_CLIENT_ASSERTION_FILE="/t.jwt")) == []
    assert validate_config(dict(base, OAUTH_TOKEN_ENDPOINT_AUTH_METHOD="private_key_jwt")) == []
    problems = validate_config(dict(base, OAUTH_TOKEN_ENDPOINT_AUTH_METHOD="client_secret_jwt"))
    assert [p.json_path for p in problems] == ["$.OAUTH_CLIENT_SECRET"]


def test_done_when_file_gives_exactly_four_problems() -> None:
    document = json.loads((FIXTURES / "gateway-bad-done-when.json").read_text())
    problems = validate_config(document)
    assert [(p.json_path, p.message, p.hint) for p in problems] == [
        (
            BLOCK + ".OAUTH_CLIENT_KEY_PATH",
            "is required when OAUTH_USE_MTLS is true",
            'set it to the path of the certificate\'s PEM private key (chmod 600), like "~/.certs/client-key.pem"',
        ),
        (BLOCK + ".OAUTH_SCOPES", "unknown key 'OAUTH_SCOPES'", "did you mean 'OAUTH_SCOPE'?"),
        (
            BLOCK + ".OAUTH_TOKEN_URL",
            "OAuth 2.1 requires HTTPS for token_url, got 'http://idp/token'",
            'use an https:// URL; for a local test server over plain http set OAUTH_VERSION to "2.0" and OAUTH_ENFORCE_HTTPS to false',
        ),
        (
            BLOCK + ".OAUTH_VALIDATE_SCOPES",
            "must be a boolean (true or false without quotes), got the string 'false'",
            None,
        ),
    ]


def test_validate_oauth_block_prefixes_the_given_path() -> None:
    (problem,) = validate_oauth_block({"OAUTH_TIMEOUT": 0}, "$.servers[2].oauth_config")
    assert problem.json_path == "$.servers[2].oauth_config.OAUTH_TIMEOUT"
    (problem,) = validate_oauth_block(None, "$.x")
    assert problem.json_path == "$.x"


# --- gateway layout --------------------------------------------------------------------


def test_gateway_or_block_is_decided_by_the_top_level_keys() -> None:
    assert validate_config({"common_mcp_gateway_config": {}}) == []
    assert validate_config({"mcp_configs": {}}) == []
    (problem,) = validate_config({"projects": {}})  # no gateway key: a bare block
    assert problem.message == "unknown key 'projects'"


def test_gateway_layout_problems() -> None:
    document = json.loads((FIXTURES / "gateway-bad-server.json").read_text())
    found = by_path(validate_config(document))
    base = "$.mcp_configs.c1.mcp_config"
    assert set(found) == {
        base + "[0].server_name",
        base + "[0].config.command",
        base + "[0].config.args",
        base + "[0].config.env.K",
        base + "[0].enable_tool_guardrails",
        base + "[1].server_name",
        base + "[1].config",
    }
    assert found[base + "[0].server_name"].message == "must not be empty"
    assert found[base + "[1].server_name"].message == "is required"
    assert found[base + "[0].enable_tool_guardrails"].message.startswith("must be a boolean")
    (problem,) = validate_config({"mcp_configs": {"x": {"mcp_config": {}}}})
    assert (problem.json_path, problem.message) == ("$.mcp_configs.x.mcp_config", "must be a list, got an object")


def test_oauth_config_must_be_an_object_in_a_gateway() -> None:
    (problem,) = validate_config(gateway(True))
    assert (problem.json_path, problem.message) == (BLOCK, "must be an object of OAUTH_* settings, got true")


def test_schema_key_is_allowed_at_top_level_and_in_bare_blocks_only() -> None:
    assert validate_config({"$schema": "x.json", "mcp_configs": {}}) == []
    assert validate_config({"$schema": "x.json", "enabled": False}) == []
    (problem,) = validate_config(gateway({"$schema": "x.json"}))
    assert problem.json_path == BLOCK + "['$schema']"
    assert "only at the top of a file" in problem.message
    (problem,) = validate_config({"$schema": 5})
    assert problem.json_path == "$['$schema']"


# --- secrets never echoed --------------------------------------------------------------

MARKER = "S3cr3tV4lu3"


@pytest.mark.parametrize(
    "document",
    [
        block(OAUTH_CLIENT_SECRET=["S3cr3tV4lu3"]),
        block(OAUTH_CUSTOM_HEADERS={"X-Api-Key": ["S3cr3tV4lu3"], "authorization": "Bearer S3cr3tV4lu3"}),
        block(OAUTH_ADDITIONAL_PARAMS={"client_secret": "S3cr3tV4lu3", "api": {"k": "S3cr3tV4lu3"}}),
        block(OAUTH_SCOPE=1, OAUTH_CLIENT_SECRET_FILE="/f", OAUTH_CLIENT_SECRET="S3cr3tV4lu3"),
        block(OAUTH_TOKEN_URL="http://user:S3cr3tV4lu3@idp/token"),
        block(OAUTH_TOKEN_URL="http://idp/token?client_secret=S3cr3tV4lu3&a=1"),
        {"mcp_configs": {"a": {"mcp_config": [{"server_name": "s", "config": {"env": {"API_TOKEN": 4242424242}}}]}}},
    ],
)
def test_problems_never_show_secret_values(document: Any) -> None:
    problems = validate_config(document)
    assert problems
    for problem in problems:
        assert MARKER not in str(problem) and "4242424242" not in str(problem)


def test_a_numeric_secret_is_described_not_shown() -> None:
    (problem,) = validate_config(block(OAUTH_CLIENT_SECRET=987654321))
    assert problem.message == "must be a string, got a number"
    assert problem.hint == "put it in quotes"


# --- raise_for_problems ----------------------------------------------------------------


def test_raise_for_problems_raises_the_first_error() -> None:
    problems = validate_config(block(OAUTH_TIMEOUT=0, OAUTH_MAX_RETRIES=99))
    with pytest.raises(ConfigError) as caught:
        schema.raise_for_problems(problems)
    assert caught.value.json_path == "$.OAUTH_MAX_RETRIES"
    assert caught.value.problem == "must be at most 10, got 99"
    assert str(caught.value) == "$.OAUTH_MAX_RETRIES: must be at most 10, got 99"


def test_raise_for_problems_ignores_warnings_and_empty_lists() -> None:
    schema.raise_for_problems([])
    schema.raise_for_problems([Problem("$.x", "literal secret", None, "warning")])
    with pytest.raises(ConfigError, match="hint here"):
        schema.raise_for_problems([Problem("$.x", "w", None, "warning"), Problem("$.y", "bad", "hint here")])


def test_problem_str_and_defaults() -> None:
    assert str(Problem("$.a", "is bad")) == "$.a: is bad"
    assert str(Problem("$.a", "is bad", "fix it")) == "$.a: is bad; fix it"
    assert Problem("$.a", "m").severity == "error"


def test_literal_secret_paths() -> None:
    document = gateway(block(OAUTH_CLIENT_SECRET="plain"))
    document["mcp_configs"]["abc"]["mcp_config"].append(
        {"server_name": "b", "config": {}, "oauth_config": {"OAUTH_CLIENT_SECRET": "${ONLY_ENV}"}}
    )
    document["mcp_configs"]["abc"]["mcp_config"].append(
        {"server_name": "c", "config": {}, "oauth_config": {"OAUTH_CLIENT_SECRET": "pre-${ENV}"}}
    )
    assert schema.literal_secret_paths(document) == [
        BLOCK + ".OAUTH_CLIENT_SECRET",
        "$.mcp_configs.abc.mcp_config[2].oauth_config.OAUTH_CLIENT_SECRET",
    ]
    assert schema.literal_secret_paths({"OAUTH_CLIENT_SECRET": ""}) == []
    assert schema.literal_secret_paths({"OAUTH_CLIENT_SECRET": "x"}) == ["$.OAUTH_CLIENT_SECRET"]


# --- property test -----------------------------------------------------------------------

_KEY_NAMES = sorted(KEYS) + [
    "mcp_configs",
    "common_mcp_gateway_config",
    "mcp_config",
    "oauth_config",
    "server_name",
    "config",
    "env",
    "$schema",
    "OAUTH_SCOPES",
]
_keys = st.one_of(st.text(max_size=10), st.sampled_from(_KEY_NAMES))
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["http://idp/t", "https://idp/t", "2.1", "false", "${X}", "a#b", ""]),
)
json_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=6),
    max_leaves=25,
)
oauth_blocks = st.dictionaries(st.sampled_from(_KEY_NAMES), json_values, max_size=10)
gateway_documents = st.builds(
    lambda config_id, blocks, extra: dict(
        extra,
        mcp_configs={
            config_id: {"mcp_config": [{"server_name": "s", "config": {}, "oauth_config": b} for b in blocks]}
        },
    ),
    st.text(max_size=8),
    st.lists(st.one_of(oauth_blocks, json_values), max_size=3),
    st.dictionaries(st.text(max_size=8), json_values, max_size=3),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, oauth_blocks, gateway_documents))
def test_any_json_value_gives_a_list_of_problems(document: Any) -> None:
    before = copy.deepcopy(document) if document == document else None
    problems = validate_config(document)
    assert isinstance(problems, list)
    assert all(isinstance(p, Problem) for p in problems)
    assert all(p.severity == "error" and p.json_path.startswith("$") and p.message for p in problems)
    assert len({p.json_path for p in problems}) == len(problems)
    if before is not None:
        assert document == before  # never mutates the input


# --- agreement with check-jsonschema --------------------------------------------------------


def _check_jsonschema() -> str:
    """The check-jsonschema command: $CHECK_JSONSCHEMA, beside this Python, or on PATH."""
    candidates = [
        os.environ.get("CHECK_JSONSCHEMA", ""),
        os.path.join(os.path.dirname(sys.executable), "check-jsonschema"),
    ]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("check-jsonschema")
    if not found:
        pytest.skip("check-jsonschema is not installed (pip install check-jsonschema, or set CHECK_JSONSCHEMA)")
    return found


def test_fixtures_cover_good_and_bad_files_of_both_kinds() -> None:
    kinds = {name.split("-")[0] + "-" + name.split("-")[1] for name in FIXTURE_FILES}
    assert kinds == {"gateway-good", "gateway-bad", "oauth-good", "oauth-bad"}


@pytest.mark.slow
@pytest.mark.parametrize("name", FIXTURE_FILES)
def test_check_jsonschema_and_validate_agree_on_fixture(name: str) -> None:
    from oauth_gateway import cli

    path = FIXTURES / name
    kind = "gateway-config" if name.startswith("gateway-") else "oauth-config"
    expected_valid = "-good-" in name
    document = json.loads(path.read_text())
    assert (kind == "gateway-config") == (
        isinstance(document, dict) and any(k in document for k in schema._GATEWAY_KEYS)
    )

    ours = cli.main(["validate", str(path)], stdout=_Sink(), stderr=_Sink())
    assert ours == (0 if expected_valid else 1)

    result = subprocess.run(
        [_check_jsonschema(), "--schemafile", schema.schema_path(kind), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    # a crash (say, a $ref it could not resolve) also exits 1: insist on a verdict
    verdict = "ok -- validation done" if expected_valid else "Schema validation errors were encountered"
    assert verdict in output, output
    assert result.returncode == ours, output


class _Sink:
    """A text stream that keeps nothing."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass
