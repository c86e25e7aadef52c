"""`oauth-gateway discover`, then `validate` and `token` with the block it prints, on two real servers.

* The official MCP conformance suite's ``auth/client-credentials-basic`` scenario, run in
  its interactive mode (``conformance client --scenario ...`` without ``--command``): the
  suite starts its MCP server and authorization server on ``http://localhost``, prints the
  server URL and waits; its checks are written when it is stopped.
* oidc-provider, discovered by its issuer and through a test MCP server whose Protected
  Resource Metadata names it.

Each time the JSON output is parsed, its ``oauth_config`` block is completed the way the
text output asks (the client id; the secret comes from ``${CLIENT_SECRET}``), written into
a gateway file, validated, and used by ``oauth-gateway token``.
"""

from __future__ import annotations

import glob
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

import pytest
import trustme

from metadata_servers import MetadataServer
from oauth_gateway import cli
from oidc_provider import OidcProvider
from test_mcp_conformance import NODE, SUITE

#: The credentials the conformance suite's client-credentials scenarios accept.
CONFORMANCE_CLIENT_ID = "conformance-test-client"
CONFORMANCE_CLIENT_SECRET = "conformance-test-secret"
#: Seconds the suite may take to print its server URL.
STARTUP_TIMEOUT = 30.0


def run(*argv: str) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def paste(block: Dict[str, Any], client_id: str, **extra: Any) -> Dict[str, Any]:
    """Fill in the block as the text output tells the user to: the client id (the secret stays ``${...}``)."""
    assert block["OAUTH_CLIENT_ID"] == "<client id>"
    assert block["OAUTH_CLIENT_SECRET"] == "${CLIENT_SECRET}"
    completed = dict(block, OAUTH_CLIENT_ID=client_id)
    completed.update(extra)
    return completed


def gateway_file(path: Any, block: Dict[str, Any], server_url: Optional[str]) -> str:
    config = {"command": "npx", "args": ["-y", "mcp-remote", server_url]} if server_url else {"command": "mcp-local"}
    document = {
        "mcp_configs": {
            "abc-123": {
                "mcp_config_name": "default_config",
                "mcp_config": [{"server_name": "found", "config": config, "oauth_config": block}],
            }
        }
    }
    path.write_text(json.dumps(document, indent=2))
    os.chmod(str(path), 0o600)
    return str(path)


def validate_and_get_a_token(tmp_path: Any, block: Dict[str, Any], server_url: Optional[str]) -> Dict[str, Any]:
    """Validate the pasted block (alone and in a gateway file), then `token --output json` with it."""
    bare = tmp_path / "oauth.json"
    bare.write_text(json.dumps(block))  # a bare oauth_config file
    path = gateway_file(tmp_path / "enkrypt_mcp_config.json", block, server_url)
    code, out, err = run("validate", "--strict", str(bare), path)
    assert code == 0, out + err
    code, out, err = run("token", "found", "--config", path, "--output", "json")
    assert code == 0, err
    row = json.loads(out)
    assert row["server"] == "found" and row["expires_in"] > 0
    return row


# --------------------------------------------------------------------------- the conformance suite


class Suite(NamedTuple):
    process: subprocess.Popen[bytes]
    url: str
    results: str
    output: List[str]


def _pump(stream: Any, lines: queue.Queue[Optional[str]], output: List[str]) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace")
        output.append(line)
        lines.put(line)
    lines.put(None)


@pytest.fixture
def conformance_server(tmp_path) -> Iterator[Suite]:
    for path in (NODE, SUITE):
        assert os.path.isfile(path), "%s is missing; run `npm ci` in tests/conformance (scripts/test does it)" % path
    results = str(tmp_path / "results")
    process = subprocess.Popen(
        [NODE, SUITE, "client", "--scenario", "auth/client-credentials-basic", "-o", results],
        cwd=str(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, NO_COLOR="1"),
    )
    lines: queue.Queue[Optional[str]] = queue.Queue()
    output: List[str] = []
    threading.Thread(target=_pump, args=(process.stdout, lines, output), daemon=True).start()
    url = None
    try:
        while url is None:
            line = lines.get(timeout=STARTUP_TIMEOUT)
            assert line is not None, "the suite ended before printing its URL:\n" + "".join(output)
            if line.startswith("Server URL: "):
                url = line[len("Server URL: ") :].strip()
        yield Suite(process, url, results, output)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def _suite_checks(suite: Suite) -> List[Dict[str, Any]]:
    """Stop the suite and return the checks it wrote."""
    suite.process.send_signal(signal.SIGTERM)
    suite.process.wait(10)
    checks: List[Dict[str, Any]] = []
    for path in glob.glob(os.path.join(suite.results, "**", "checks.json"), recursive=True):
        with open(path, encoding="utf-8") as handle:
            checks.extend(json.load(handle))
    return checks


@pytest.mark.slow
def test_discover_on_the_conformance_suites_server_gives_a_block_that_validates_and_gets_a_token(
    conformance_server, tmp_path, monkeypatch
):
    url = conformance_server.url
    assert url.startswith("http://localhost:")

    # The program as users run it, for the JSON.
    process = subprocess.run(
        [sys.executable, "-m", "oauth_gateway", "discover", url, "--output", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=60,
    )
    assert process.returncode == 0, process.stderr.decode()
    found = json.loads(process.stdout.decode())
    assert found["resource"] == url
    assert found["resource_metadata"].startswith("http://localhost:")
    assert found["issuer"].startswith("http://localhost:")
    assert found["token_endpoint"].startswith(found["issuer"])
    assert "client_secret_basic" in found["token_endpoint_auth_methods"]
    block = found["oauth_config"]
    assert block["OAUTH_RESOURCE"] == url and block["OAUTH_ISSUER"] == found["issuer"]
    assert block["OAUTH_ENFORCE_HTTPS"] is False  # http://localhost, as given on the command line
    assert "OAUTH_TOKEN_URL" not in block

    code, text, err = run("discover", url)
    assert code == 0, err
    assert "resource:             %s" % url in text
    assert "token endpoint:       %s" % found["token_endpoint"] in text
    assert json.loads(text[text.index("{") :]) == {"oauth_config": block}

    monkeypatch.setenv("CLIENT_SECRET", CONFORMANCE_CLIENT_SECRET)
    row = validate_and_get_a_token(tmp_path, paste(block, CONFORMANCE_CLIENT_ID), url)
    assert CONFORMANCE_CLIENT_SECRET not in json.dumps(row)

    checks = _suite_checks(conformance_server)
    passed = {check["id"] for check in checks if check.get("status") == "SUCCESS"}
    failing = [check for check in checks if check.get("status") not in ("SUCCESS", "INFO")]
    assert {"token-request", "client-credentials-basic-auth"} <= passed, checks
    assert not failing, failing


# --------------------------------------------------------------------------- oidc-provider


@pytest.fixture(scope="module")
def provider_behind_mcp(tmp_path_factory) -> Iterator[Tuple[MetadataServer, OidcProvider, str]]:
    """oidc-provider, and a test MCP server whose resource metadata names it."""
    ca = trustme.CA()
    server = MetadataServer(ca=ca).start()
    mcp = server.url + "/mcp"
    prm_path = "/.well-known/oauth-protected-resource/mcp"
    try:
        with OidcProvider(ca, tmp_path_factory.mktemp("oidc-discover-cli"), extra_resources=(mcp,)) as provider:
            server.json(prm_path, {"resource": mcp, "authorization_servers": [provider.issuer]})
            server.challenge("/mcp", resource_metadata=server.url + prm_path, scope="read")
            yield server, provider, mcp
    finally:
        server.stop()


@pytest.mark.slow
def test_discover_oidc_provider_by_issuer_then_validate_and_get_a_token(provider_behind_mcp, tmp_path, monkeypatch):
    _, provider, _ = provider_behind_mcp
    ca = str(provider.ca_file)
    code, out, err = run("discover", "--issuer", provider.issuer, "--ca-bundle", ca, "--output", "json")
    assert code == 0, err
    found = json.loads(out)
    assert found["resource"] is None
    assert found["issuer"] == provider.issuer
    assert found["token_endpoint"] == provider.token_url
    assert found["authorization_server"].endswith("/.well-known/openid-configuration")
    block = found["oauth_config"]
    assert block["OAUTH_ISSUER"] == provider.issuer and "OAUTH_RESOURCE" not in block

    code, text, err = run("discover", "--issuer", provider.issuer, "--ca-bundle", ca)
    assert code == 0, err
    assert "issuer:               %s" % provider.issuer in text
    assert json.loads(text[text.index("{") :]) == {"oauth_config": block}

    client_id, secret = provider.clients["basic"]
    monkeypatch.setenv("CLIENT_SECRET", secret)
    row = validate_and_get_a_token(tmp_path, paste(block, client_id, OAUTH_CA_BUNDLE_PATH=ca), None)
    assert secret not in json.dumps(row)


@pytest.mark.slow
def test_discover_oidc_provider_through_resource_metadata_then_validate_and_get_a_token(
    provider_behind_mcp, tmp_path, monkeypatch
):
    server, provider, mcp = provider_behind_mcp
    ca = str(provider.ca_file)
    code, out, err = run("discover", mcp, "--ca-bundle", ca, "--output", "json")
    assert code == 0, err
    found = json.loads(out)
    assert found["resource"] == mcp
    assert found["resource_metadata"] == server.url + "/.well-known/oauth-protected-resource/mcp"
    assert found["issuer"] == provider.issuer
    assert found["scopes"] == ["read"]
    block = found["oauth_config"]
    assert block["OAUTH_RESOURCE"] == mcp and block["OAUTH_ISSUER"] == provider.issuer
    assert "OAUTH_ENFORCE_HTTPS" not in block

    code, text, err = run("discover", mcp, "--ca-bundle", ca)
    assert code == 0, err
    assert "resource metadata:    %s" % found["resource_metadata"] in text
    assert json.loads(text[text.index("{") :]) == {"oauth_config": block}

    client_id, secret = provider.clients["post"]
    monkeypatch.setenv("CLIENT_SECRET", secret)
    row = validate_and_get_a_token(tmp_path, paste(block, client_id, OAUTH_CA_BUNDLE_PATH=ca), mcp)
    assert row["scopes"] == ["read"]
    assert secret not in json.dumps(row)
