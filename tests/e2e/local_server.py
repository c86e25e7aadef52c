"""A local stdio MCP server for the end-to-end tests: reports what token it was launched with.

An ``MCPServer`` of the ``mcp`` SDK 2.x (FastMCP in 1.x).

Its one tool, ``whoami``, returns a JSON object with the SHA-256 of each token-carrying
environment variable the gateway's injection sets (None when unset), and whether
``ENKRYPT_ACCESS_TOKEN`` and ``AUTHORIZATION`` agree. It never returns the token itself, so the
test compares hashes and no secret reaches a log.

Run as ``python local_server.py``; it speaks MCP over stdin/stdout.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, Optional

from mcp.server.mcpserver import MCPServer

ENV_NAMES = (
    "ENKRYPT_ACCESS_TOKEN",
    "OAUTH_ACCESS_TOKEN",
    "AUTHORIZATION",
    "AUTH_HEADER",
    "HTTP_HEADER_Authorization",
    "HTTP_HEADER_AUTHORIZATION",
    "OAUTH_TOKEN_TYPE",
)

mcp = MCPServer("oauth-gateway-e2e-local", log_level="WARNING")


def fingerprint(value: Optional[str]) -> Optional[str]:
    """Return the hex SHA-256 of a value, or None when it is unset.

    Args:
        value: an environment value, or None.

    Returns:
        The digest, or None.
    """
    if value is None:
        return None
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@mcp.tool()
def whoami() -> str:
    """Report hashes of the injected token variables and whether they agree."""
    hashes: Dict[str, Optional[str]] = {name: fingerprint(os.environ.get(name)) for name in ENV_NAMES}
    access = os.environ.get("ENKRYPT_ACCESS_TOKEN")
    authorization = os.environ.get("AUTHORIZATION")
    consistent = bool(access) and authorization == "Bearer " + access
    return json.dumps({"sha256": hashes, "consistent": consistent}, sort_keys=True)


if __name__ == "__main__":
    mcp.run("stdio")
