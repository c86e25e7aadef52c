"""End to end with the real MCP Python SDK 2.x: its streamable HTTP client, carrying our httpx2 auth.

An ``MCPServer`` (the SDK's FastMCP, renamed in 2.x) serves streamable HTTP over HTTPS on
127.0.0.1 under uvicorn, in this process, and verifies every bearer token through the SDK's
own hook (a ``TokenVerifier``): a token counts only while the loopback token server
(tests/servers.py) holds it as issued. The SDK's client session talks to it through an
``httpx2.AsyncClient`` whose auth is our :class:`oauth_gateway.contrib.httpx2.TokenAuth`.

Needs Python >= 3.10 with ``mcp`` 2.x, ``httpx2`` and ``uvicorn`` (the tests extra installs
them there).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

import pytest

if sys.version_info < (3, 10):
    pytest.skip("the MCP Python SDK needs Python >= 3.10; these tests run on the 3.13 leg", allow_module_level=True)
pytest.importorskip("mcp", reason="the MCP SDK tests need mcp (pip install the tests extra)")
uvicorn = pytest.importorskip("uvicorn", reason="the MCP SDK tests need uvicorn (pip install the tests extra)")

if int(importlib.metadata.version("mcp").split(".")[0]) < 2:
    # The SDK 1.x has FastMCP and an httpx client; these tests are written for 2.x.
    raise ImportError(
        "tests/test_httpx_mcp.py needs mcp 2.x, found %s; install the tests extra (it requires 'mcp>=2.3.0,<3')"
        % importlib.metadata.version("mcp")
    )
httpx2 = pytest.importorskip("httpx2", reason="the MCP SDK 2.x client is built on httpx2 (pip install the tests extra)")

from mcp import ClientSession  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.server.auth.provider import AccessToken  # noqa: E402
from mcp.server.auth.settings import AuthSettings  # noqa: E402
from mcp.server.mcpserver import MCPServer  # noqa: E402

import oauth_gateway as og  # noqa: E402
from gatewayfile import write_gateway_file  # noqa: E402
from oauth_gateway.contrib.httpx2 import TokenAuth  # noqa: E402

# Slow integration test (an MCP server under uvicorn): scripts/test --fast (-m "not slow") leaves it out.
pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mcp_sdk_client.py"
#: Seconds for a whole client run: a hang guard only.
CLIENT_TIMEOUT = 60.0
#: How long, at most, the server may take to start (polled, as uvicorn has no event for it).
START_POLLS = 400
START_POLL = 0.025


class IssuedTokenVerifier:
    """The SDK's ``TokenVerifier`` hook: a token is valid while the token server holds it as issued."""

    def __init__(self, auth_server: Any) -> None:
        self._auth_server = auth_server
        self._lock = threading.Lock()
        self.accepted = 0
        self.rejected = 0

    async def verify_token(self, token: str) -> Optional[AccessToken]:
        with self._auth_server._lock:  # the test server's own lock over its issued set
            active = token in self._auth_server.issued
        with self._lock:
            if active:
                self.accepted += 1
            else:
                self.rejected += 1
        return AccessToken(token=token, client_id="mcp-e2e", scopes=[]) if active else None


def _build_app(verifier: IssuedTokenVerifier, url: str, issuer: str) -> Any:
    # The verifier decides alone: the token server binds no token to a resource (RFC 8707).
    auth = AuthSettings(issuer_url=issuer, resource_server_url=url, required_scopes=[], validate_token_resource=False)
    server = MCPServer("oauth-gateway-httpx-e2e", token_verifier=verifier, auth=auth, log_level="WARNING")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    return server.streamable_http_app()


class McpServer:
    """The protected MCP server on a uvicorn thread; ``url`` is its streamable HTTP endpoint."""

    def __init__(self, ca: Any, auth_server: Any, tmp_path: Any) -> None:
        certfile = str(tmp_path / "mcp-server.pem")
        ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(certfile)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = "https://127.0.0.1:%d/mcp" % self.sock.getsockname()[1]
        self.verifier = IssuedTokenVerifier(auth_server)
        app = _build_app(self.verifier, self.url, auth_server.url)
        config = uvicorn.Config(app, ssl_certfile=certfile, log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> McpServer:
        self.thread.start()
        stopped = threading.Event()
        for _ in range(START_POLLS):
            if self.server.started or not self.thread.is_alive():
                break
            stopped.wait(START_POLL)
        if not self.server.started:
            self.stop()
            pytest.fail("the MCP server did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def mcp_server(ca, auth_server, tmp_path) -> Iterator[McpServer]:
    server = McpServer(ca, auth_server, tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


async def _session_calls(url: str, auth: Any, ca_bundle: str, calls: int, base: int) -> Tuple[List[str], List[str]]:
    """One SDK client: initialize, list tools, call ``add`` ``calls`` times; returns (tool names, results)."""
    verify = ssl.create_default_context(cafile=ca_bundle)
    async with httpx2.AsyncClient(auth=auth, verify=verify, timeout=30.0, trust_env=False) as client:
        async with streamable_http_client(url, http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = sorted(tool.name for tool in (await session.list_tools()).tools)
                results = []
                for n in range(calls):
                    result = await session.call_tool("add", {"a": base, "b": n})
                    assert not result.is_error
                    results.append(result.content[0].text)
    return tools, results


def _run(*clients: Any) -> List[Any]:
    async def main() -> List[Any]:
        return list(await asyncio.wait_for(asyncio.gather(*clients), CLIENT_TIMEOUT))

    return asyncio.run(main())


def test_three_sdk_clients_five_tool_calls_each_make_one_token_request(auth_server, make_block, ca_bundle, mcp_server):
    config = og.OAuthConfig.from_dict(make_block(auth_server))
    with og.TokenManager() as manager:
        runs = _run(
            *(
                _session_calls(mcp_server.url, TokenAuth(manager, "mcp-api", config), ca_bundle, 5, 10 * i)
                for i in range(3)
            )
        )

    assert [tools for tools, _ in runs] == [["add"]] * 3
    assert [results for _, results in runs] == [[str(10 * i + n) for n in range(5)] for i in range(3)]
    assert auth_server.count("/token") == 1
    assert mcp_server.verifier.rejected == 0
    assert mcp_server.verifier.accepted >= 3 * 7  # initialize, initialized, list, 5 calls (each client)


def test_a_token_the_server_stops_accepting_is_replaced_once_mid_session(
    auth_server, make_block, ca_bundle, mcp_server
):
    config = og.OAuthConfig.from_dict(make_block(auth_server))
    with og.TokenManager() as manager:
        auth = TokenAuth(manager, "mcp-api", config)
        manager.get_token("mcp-api", config)
        auth_server.expire_tokens()  # the cached token is now refused by the MCP server
        ((tools, results),) = _run(_session_calls(mcp_server.url, auth, ca_bundle, 2, 40))

    assert (tools, results) == (["add"], ["40", "41"])
    assert auth_server.count("/token") == 2
    assert mcp_server.verifier.rejected == 1


def test_without_our_auth_the_server_refuses_the_client(auth_server, ca_bundle, mcp_server):
    with pytest.raises(BaseException) as failure:  # the SDK's own error (or a group of them) for the 401
        _run(_session_calls(mcp_server.url, None, ca_bundle, 1, 0))
    assert not isinstance(failure.value, asyncio.TimeoutError), "the client hung instead of failing on the 401"
    assert mcp_server.verifier.accepted == 0


def test_the_example_calls_a_tool_with_a_token_from_the_gateway_file(
    auth_server, make_block, ca_bundle, mcp_server, tmp_path
):
    gateway_file = write_gateway_file(tmp_path / "enkrypt_mcp_config.json", {"mcp-api": make_block(auth_server)})
    env = dict(os.environ, OAUTH_GATEWAY_CONFIG=gateway_file, MCP_CA_BUNDLE=ca_bundle, PYTHONUNBUFFERED="1")

    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "mcp-api", mcp_server.url, "add", '{"a": 2, "b": 40}'],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["tools: add", "add: 42"]
    assert auth_server.count("/token") == 1
    assert mcp_server.verifier.rejected == 0
    for token in auth_server.issued_history:
        assert token not in done.stdout + done.stderr
