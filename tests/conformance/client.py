"""An MCP client for the official conformance suite's client-credentials scenarios.

Run by ``@modelcontextprotocol/conformance`` as ``<python> client.py <server-url>``, with
the scenario's credentials in ``MCP_CONFORMANCE_CONTEXT`` (JSON: ``client_id`` and
``client_secret``). It knows nothing but the URL and the credentials: discovery finds
the token endpoint, then it speaks MCP over streamable HTTP (``initialize``,
``notifications/initialized``, ``tools/list``) with ``requests`` and
``manager.auth(...)``. Exit status 0 when every MCP call succeeded.

Until the library discovers by itself from a config without ``OAUTH_TOKEN_URL``, this
script builds that config from what :class:`oauth_gateway.discovery.Discoverer` found.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple
from urllib.parse import urlsplit

import requests

import oauth_gateway as og
from oauth_gateway.discovery import Discoverer, choose_auth_method, is_loopback_host

PROTOCOL_VERSION = "2025-06-18"
TIMEOUT = (5.0, 20.0)
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def requests_fetch(session: requests.Session):
    """A discovery transport on ``session``: no redirects, a timeout, no credentials."""

    def fetch(method: str, url: str, headers: Mapping[str, str], body: Optional[bytes]):
        response = session.request(
            method,
            url,
            headers=dict(headers),
            data=body,
            timeout=TIMEOUT,
            allow_redirects=False,
            verify=session.verify,  # else REQUESTS_CA_BUNDLE would override it
        )
        return response.status_code, response.headers, response.content

    return fetch


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


def discovered_config(server_url: str, context: Mapping[str, Any]) -> Tuple[og.OAuthConfig, str]:
    """Discover the token endpoint for ``server_url`` and build the ``OAuthConfig``."""
    plain_loopback = urlsplit(server_url).scheme == "http" and is_loopback_host(urlsplit(server_url).hostname)
    with requests.Session() as session:
        result = Discoverer(requests_fetch(session), enforce_https=not plain_loopback).protected_resource(server_url)
    method = choose_auth_method(result.authorization_server, have_secret=bool(context.get("client_secret")))
    block: Dict[str, Any] = {
        "enabled": True,
        "OAUTH_VERSION": "2.0" if plain_loopback else "2.1",
        "OAUTH_CLIENT_ID": context["client_id"],
        "OAUTH_CLIENT_SECRET": context["client_secret"],
        "OAUTH_TOKEN_URL": result.token_endpoint,
        "OAUTH_RESOURCE": result.resource,
        "OAUTH_USE_BASIC_AUTH": method == "client_secret_basic",
        "OAUTH_ENFORCE_HTTPS": not plain_loopback,
    }
    if result.revocation_endpoint:
        block["OAUTH_REVOCATION_URL"] = result.revocation_endpoint
    if result.scope:
        block["OAUTH_SCOPE"] = result.scope
    return og.OAuthConfig.from_dict(block), method


def main(argv: Optional[list] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: client.py <mcp-server-url>", file=sys.stderr)
        return 2
    server_url = args[0]
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    config, method = discovered_config(server_url, context)
    print("discovered token endpoint %s, auth method %s" % (config.token_url, method))

    manager = og.TokenManager()
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
