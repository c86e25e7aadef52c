"""An MCP client for the official conformance suite's client-credentials scenarios.

Run by ``@modelcontextprotocol/conformance`` as ``<python> client.py <server-url>``, with
the scenario's credentials in ``MCP_CONFORMANCE_CONTEXT`` (JSON: ``client_id`` and
``client_secret``, or ``private_key_pem`` and ``signing_algorithm``). It uses only the
public API and knows nothing but the URL and the credentials: its config has no token
URL, so the library discovers the token endpoint from the server (``OAUTH_RESOURCE`` = the
server URL); then it speaks MCP over streamable HTTP (``initialize``,
``notifications/initialized``, ``tools/list``) with ``requests`` and ``manager.auth(...)``.
Exit status 0 when every MCP call succeeded.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any, Dict, Iterator, Mapping, Optional

import requests

import oauth_gateway as og
from oauth_gateway._access import access

PROTOCOL_VERSION = "2025-06-18"
TIMEOUT = (5.0, 20.0)
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


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
    response.raise_for_status()
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type == "text/event-stream":
        messages = list(sse_messages(response.text))
    else:
        document = response.json()
        messages = document if isinstance(document, list) else [document]
    for message in messages:
        if message.get("id") == request_id:
            if "error" in message:
                raise RuntimeError("JSON-RPC error for request %d: %r" % (request_id, message["error"]))
            return message["result"]
    raise RuntimeError("no JSON-RPC answer to request %d" % request_id)


def config_block(server_url: str, context: Mapping[str, Any], key_dir: str) -> Dict[str, Any]:
    """The ``oauth_config`` block: the client id, a secret or a private key, and the server URL."""
    block: Dict[str, Any] = {
        "enabled": True,
        "OAUTH_CLIENT_ID": context["client_id"],
        "OAUTH_RESOURCE": server_url,
        "OAUTH_ENFORCE_HTTPS": False,  # the suite serves http://localhost
        # The suite's authorization server listens on a random port, so its issuer cannot
        # be pinned in advance: trust the first one discovered.
        "OAUTH_TRUST_DISCOVERED_ISSUER": True,
    }
    if context.get("client_secret"):
        block["OAUTH_CLIENT_SECRET"] = context["client_secret"]
    if context.get("private_key_pem"):
        path = os.path.join(key_dir, "client-key.pem")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(context["private_key_pem"])
        block["OAUTH_CLIENT_PRIVATE_KEY_PATH"] = path
        if context.get("signing_algorithm"):
            block["OAUTH_CLIENT_ASSERTION_ALG"] = context["signing_algorithm"]
    return block


def main(argv: Optional[list] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: client.py <mcp-server-url>", file=sys.stderr)
        return 2
    server_url = args[0]
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    with tempfile.TemporaryDirectory() as key_dir:
        config = og.OAuthConfig.from_dict(config_block(server_url, context, key_dir))
        return run(server_url, config)


def run(server_url: str, config: og.OAuthConfig) -> int:
    """Speak MCP to ``server_url`` with tokens for ``config``."""
    manager = og.TokenManager()
    resolved = access(manager).resolve(config)
    print("discovered token endpoint %s, auth method %s" % (resolved.token_url, resolved.auth_method))
    with requests.Session() as session:
        session.auth = manager.auth("conformance", config)
        headers = dict(MCP_HEADERS)

        def post(message: Dict[str, Any]) -> requests.Response:
            return session.post(server_url, json=message, headers=headers, timeout=TIMEOUT, allow_redirects=False)

        response = post(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "oauth-gateway-conformance", "version": og.__version__},
                },
            }
        )
        initialized = rpc_result(response, 1)
        session_id = response.headers.get("Mcp-Session-Id")
        if session_id:
            headers["Mcp-Session-Id"] = session_id
        headers["MCP-Protocol-Version"] = initialized.get("protocolVersion", PROTOCOL_VERSION)

        response = post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        if response.status_code not in (200, 202, 204):
            response.raise_for_status()
            raise RuntimeError("notifications/initialized answered HTTP %d" % response.status_code)

        tools = rpc_result(post({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}), 2)
        names = [tool.get("name") for tool in tools.get("tools", [])]
        print("tools/list: %d tools %s" % (len(names), names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
