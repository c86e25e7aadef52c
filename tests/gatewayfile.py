"""Gateway files for the integration tests (Flask, Django, Prometheus, examples)."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Mapping

#: The config id and name every helper-written file uses.
CONFIG_ID = "abc-123"
CONFIG_NAME = "default_config"


def gateway_document(servers: Mapping[str, Dict[str, Any]]) -> Dict[str, Any]:
    """Return a gateway file document with one config holding ``server_name -> oauth_config``."""
    entries = [
        {
            "server_name": name,
            "description": "test server %s" % name,
            "config": {"command": "npx", "args": ["-y", "mcp-remote", "https://api.example.invalid/mcp"]},
            "oauth_config": block,
        }
        for name, block in servers.items()
    ]
    return {"mcp_configs": {CONFIG_ID: {"mcp_config_name": CONFIG_NAME, "mcp_config": entries}}}


def write_gateway_file(path: Any, servers: Mapping[str, Dict[str, Any]]) -> str:
    """Write :func:`gateway_document` to ``path`` with mode 0600 and return the path as a string."""
    path = str(path)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(gateway_document(servers), handle, indent=2)
    os.chmod(path, 0o600)
    return path
