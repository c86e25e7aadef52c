"""An MCP client for the official conformance suite's authorization scenarios.

Run by ``@modelcontextprotocol/conformance`` as ``<python> client.py <server-url>``, with
the scenario in ``MCP_CONFORMANCE_SCENARIO``, the wire version in
``MCP_CONFORMANCE_PROTOCOL_VERSION`` and the scenario's credentials (if any) in
``MCP_CONFORMANCE_CONTEXT`` (JSON). It uses only the public API and knows nothing but the
URL and the credentials: its config has no token URL, so the library discovers the token
endpoint from the server (``OAUTH_RESOURCE`` = the server URL). Then it speaks MCP over
streamable HTTP with ``requests`` and ``manager.auth(...)``, at one of two wires:

- up to 2025-11-25, stateful: ``initialize`` (keeping ``Mcp-Session-Id`` when the server
  sets one), ``notifications/initialized``, ``tools/list``;
- 2026-07-28, stateless: no handshake and no session; ``server/discover`` and
  ``tools/list``, each with ``_meta`` (protocol version and client capabilities) and an
  ``MCP-Protocol-Version`` header equal to it.

Exit status 0 when every MCP call succeeded; 1 with the library's error on stderr
otherwise (``auth/metadata-issuer-mismatch`` expects that).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any, Callable, Dict, Iterator, Mapping, Optional

import requests

import oauth_gateway as og
from oauth_gateway._access import access

#: The first stateless revision (SEP-2575); earlier ones use the initialize handshake.
STATELESS_FROM = "2026-07-28"
DEFAULT_PROTOCOL_VERSION = "2025-11-25"
TIMEOUT = (5.0, 20.0)
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
CLIENT_INFO = {"name": "oauth-gateway-conformance", "version": og.__version__}
#: The client id of scenarios whose context has no credentials: their authorization
#: servers publish only the ``none`` method and authenticate no client.
PUBLIC_CLIENT_ID = "oauth-gateway-conformance"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def sse_messages(text: str) -> Iterator[Dict[str, Any]]:
    """Yield the JSON messages of a ``text/event-stream`` body (one per event's ``data:``)."""
    data = []
    for line in text.splitlines() + [""]:
        if not line:
            if data:
                payload = "\n".join(data)
                data = []
                try:
                    message = json.loads(payload)
                except ValueError:
                    continue
                if isinstance(message, dict):
                    yield message
            continue
        if line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)


def rpc_result(response: requests.Response, request_id: int) -> Dict[str, Any]:
    """Return the ``result`` of the JSON-RPC answer to ``request_id`` (JSON or SSE body)."""
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type == "text/event-stream":
        messages = list(sse_messages(response.text))
    else:
        try:
            document = response.json()
        except ValueError:
            response.raise_for_status()
            raise
        messages = document if isinstance(document, list) else [document]
    for message in messages:
        if message.get("id") == request_id:
            if "error" in message:
                raise RuntimeError(
                    "JSON-RPC error for request %d (HTTP %d): %r" % (request_id, response.status_code, message["error"])
                )
            response.raise_for_status()
            return message["result"]
    response.raise_for_status()
    raise RuntimeError("no JSON-RPC answer to request %d" % request_id)


def write_private(directory: str, name: str, text: str) -> str:
    """Write ``text`` to a new mode-0600 file and return its path."""
    path = os.path.join(directory, name)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def config_block(
    server_url: str, scenario: str, context: Mapping[str, Any], key_dir: str, *, assertion: str = "valid_jwt"
) -> Dict[str, Any]:
    """The ``oauth_config`` block for ``scenario``: credentials from ``context``, the server URL."""
    block: Dict[str, Any] = {
        "enabled": True,
        "OAUTH_CLIENT_ID": context.get("client_id") or PUBLIC_CLIENT_ID,
        "OAUTH_RESOURCE": server_url,
        "OAUTH_ENFORCE_HTTPS": False,  # the suite serves http://localhost
        # The suite's authorization server listens on a random port, so its issuer cannot
        # be pinned in advance: trust the first one discovered.
        "OAUTH_TRUST_DISCOVERED_ISSUER": True,
    }
    if context.get("client_secret"):
        block["OAUTH_CLIENT_SECRET"] = context["client_secret"]
    elif context.get("private_key_pem"):
        block["OAUTH_CLIENT_PRIVATE_KEY_PATH"] = write_private(key_dir, "client-key.pem", context["private_key_pem"])
        if context.get("signing_algorithm"):
            block["OAUTH_CLIENT_ASSERTION_ALG"] = context["signing_algorithm"]
    elif context.get(assertion):
        # Workload identity: the platform's JWT is the jwt-bearer grant's assertion and
        # there is no client secret or key, so no client authentication is sent.
        block["OAUTH_GRANT_TYPE"] = JWT_BEARER_GRANT
        path = write_private(key_dir, assertion + ".jwt", context[assertion])
        block["OAUTH_CLIENT_ASSERTION_SOURCE"] = {"type": "file", "path": path}
    else:
        block["OAUTH_TOKEN_ENDPOINT_AUTH_METHOD"] = "none"  # a public client: client_id only
    if scenario.startswith("auth/dpop"):
        block["OAUTH_DPOP"] = True
    return block


def main(argv: Optional[list] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: client.py <mcp-server-url>", file=sys.stderr)
        return 2
    server_url = args[0]
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    version = os.environ.get("MCP_CONFORMANCE_PROTOCOL_VERSION") or DEFAULT_PROTOCOL_VERSION
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    with tempfile.TemporaryDirectory() as key_dir:
        if context.get("expired_jwt"):
            refuse_expired(server_url, scenario, context, key_dir)
        config = og.OAuthConfig.from_dict(config_block(server_url, scenario, context, key_dir))
        try:
            return run(server_url, config, version)
        except og.OAuthGatewayError as exc:
            print("%s: %s" % (type(exc).__name__, exc), file=sys.stderr)
            return 1


def refuse_expired(server_url: str, scenario: str, context: Mapping[str, Any], key_dir: str) -> None:
    """Show that an expired workload JWT is refused here, before any token request.

    The suite records every token request; a request with this assertion would be a
    ``wif-assertion-expired`` FAILURE, and any request after a refusal a WARNING.
    """
    config = og.OAuthConfig.from_dict(config_block(server_url, scenario, context, key_dir, assertion="expired_jwt"))
    try:
        og.TokenManager().get_token("conformance-expired", config)
    except og.ConfigError as exc:
        print("expired assertion refused before sending: %s" % exc)
        return
    raise SystemExit("an expired assertion was accepted")


def run(server_url: str, config: og.OAuthConfig, version: str) -> int:
    """Speak MCP at wire ``version`` to ``server_url`` with tokens for ``config``."""
    manager = og.TokenManager()
    resolved = access(manager).resolve(config)
    print("discovered token endpoint %s, auth method %s" % (resolved.token_url, resolved.auth_method))
    with requests.Session() as session:
        session.auth = manager.auth("conformance", config)
        headers = dict(MCP_HEADERS)

        def post(message: Dict[str, Any]) -> requests.Response:
            return session.post(server_url, json=message, headers=headers, timeout=TIMEOUT, allow_redirects=False)

        speak = stateless if version >= STATELESS_FROM else stateful
        tools = speak(post, headers, version)
    names = [tool.get("name") for tool in tools.get("tools", [])]
    print("tools/list: %d tools %s" % (len(names), names))
    return 0


Post = Callable[[Dict[str, Any]], requests.Response]


def stateful(post: Post, headers: Dict[str, str], version: str) -> Dict[str, Any]:
    """``initialize``, ``notifications/initialized``, ``tools/list`` in one session."""
    params = {"protocolVersion": version, "capabilities": {}, "clientInfo": CLIENT_INFO}
    response = post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params})
    initialized = rpc_result(response, 1)
    session_id = response.headers.get("Mcp-Session-Id")
    if session_id:
        headers["Mcp-Session-Id"] = session_id
    headers["MCP-Protocol-Version"] = initialized.get("protocolVersion", version)
    response = post({"jsonrpc": "2.0", "method": "notifications/initialized"})
    if response.status_code not in (200, 202, 204):
        response.raise_for_status()
        raise RuntimeError("notifications/initialized answered HTTP %d" % response.status_code)
    return rpc_result(post({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}), 2)


def stateless(post: Post, headers: Dict[str, str], version: str) -> Dict[str, Any]:
    """``server/discover`` then ``tools/list``, each carrying the version in ``_meta`` and a header."""
    headers["MCP-Protocol-Version"] = version
    meta = {
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
    }
    discovered = rpc_result(
        post({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}}), 1
    )
    supported = discovered.get("supportedVersions") or []
    if version not in supported:
        raise RuntimeError("the server supports %r, not %s" % (supported, version))
    return rpc_result(post({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": meta}}), 2)


if __name__ == "__main__":
    sys.exit(main())
