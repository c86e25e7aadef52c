"""List and call the tools of a token-protected MCP server with the MCP Python SDK.

The SDK 2.x's streamable HTTP client talks through an ``httpx2.AsyncClient`` whose auth is
oauth-gateway's ``TokenAuth``: every request carries a cached token (no lock, no I/O),
a token fetch runs in a worker thread, off the event loop, and a token the server
rejects is replaced once.

Usage (the gateway file is $OAUTH_GATEWAY_CONFIG, else ~/.enkrypt/enkrypt_mcp_config.json)::

    pip install "oauth-gateway[httpx2]" "mcp>=2"
    python3 mcp_sdk_client.py oauth-api https://mcp.example.com/mcp add '{"a": 2, "b": 40}'

``MCP_CA_BUNDLE`` names a CA file for the MCP server's certificate (default: the system's).
Prints the server's tools, then the tool's result. Exit status: 0 done, 1 the MCP call
failed, 2 the config or the token is unusable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

import oauth_gateway as og
from oauth_gateway.contrib.httpx2 import TokenAuth


async def call_tool(auth: TokenAuth, url: str, tool: str, arguments: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    """Initialize a session, list the tools, call ``tool``; return (tool names, the result's texts)."""
    verify = ssl.create_default_context(cafile=os.environ.get("MCP_CA_BUNDLE"))
    async with httpx2.AsyncClient(auth=auth, verify=verify, timeout=30.0) as client:
        async with streamable_http_client(url, http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = [tool.name for tool in (await session.list_tools()).tools]
                result = await session.call_tool(tool, arguments)
    return tools, [getattr(part, "text", "") for part in result.content]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Call an MCP server's tool with a token from the gateway file.")
    parser.add_argument("server", help="server_name of the MCP server in the gateway file")
    parser.add_argument("url", help="the server's streamable HTTP endpoint, https://.../mcp")
    parser.add_argument("tool", help="the tool to call")
    parser.add_argument("arguments", nargs="?", default="{}", help="the tool's arguments as a JSON object")
    args = parser.parse_args(argv)
    try:
        gateway = og.load_gateway_config()  # $OAUTH_GATEWAY_CONFIG, else ~/.enkrypt/enkrypt_mcp_config.json
        config_id, _entry = gateway.find_server(args.server)
        config = gateway.oauth_config(args.server, config_id=config_id)
    except og.OAuthGatewayError as error:
        print("oauth-gateway: %s" % error, file=sys.stderr)
        return 2
    with og.TokenManager() as manager:
        auth = TokenAuth(manager, args.server, config, config_id)
        try:
            tools, texts = asyncio.run(call_tool(auth, args.url, args.tool, json.loads(args.arguments)))
        except og.OAuthGatewayError as error:  # no token: the server's oauth_config or the IdP
            print("oauth-gateway: %s" % error, file=sys.stderr)
            return 2
        except Exception as error:  # the MCP session failed (the SDK raises groups of errors)
            print("MCP call failed: %s" % error.__class__.__name__, file=sys.stderr)
            return 1
    print("tools: %s" % ", ".join(sorted(tools)))
    print("%s: %s" % (args.tool, " ".join(texts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
