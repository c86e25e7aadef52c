"""A protected MCP server for the end-to-end tests: streamable HTTP over HTTPS on 127.0.0.1.

Every HTTP request, whatever its path, must carry ``Authorization: Bearer <token>`` where the
token is active according to the test authorization server's introspection endpoint (RFC 7662,
verified with the test CA). Anything else gets ``401`` with a ``WWW-Authenticate: Bearer``
challenge and no protected resource metadata, so a client has nowhere to start an interactive
sign-in and fails at once.

The app is an ``MCPServer`` of the ``mcp`` SDK 2.x (FastMCP in 1.x); the checks use the SDK's
own hooks: a ``TokenVerifier`` that introspects, ``BearerAuthBackend`` and
``RequireAuthMiddleware``.

Run as a subprocess::

    python protected_server.py --certfile CERT_AND_KEY.pem --introspection-url URL \
        --ca-bundle CA.pem --events EVENTS_FILE

It binds a free port, prints ``READY <port>`` on stdout once it accepts connections, and
appends one line per authentication decision to the events file: ``accepted`` or
``rejected`` (never the token itself).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import ssl
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Optional

import uvicorn
from mcp.server.auth.middleware.bearer_auth import BearerAuthBackend, RequireAuthMiddleware
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import MCPServer
from starlette.middleware.authentication import AuthenticationMiddleware

TOOL_NAMES = ("echo", "add")
_INTROSPECTION_TIMEOUT = 5.0
_STARTUP_POLLS = 400
_STARTUP_POLL_INTERVAL = 0.025


class _EventLog:
    """Appends authentication decisions to a file, one word a line. Thread-safe."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()

    def write(self, word: str) -> None:
        with self._lock, open(self._path, "a", encoding="utf-8") as handle:
            handle.write(word + "\n")


class IntrospectionTokenVerifier:
    """``TokenVerifier`` that asks the authorization server's ``/introspect`` about each token.

    Args:
        introspection_url: the RFC 7662 endpoint; it answers ``{"active": true|false}``.
        ca_bundle: PEM file of the CA that issued the endpoint's certificate.
        events: where each decision is recorded.
    """

    def __init__(self, introspection_url: str, ca_bundle: str, events: _EventLog) -> None:
        self._url = introspection_url
        self._ssl = ssl.create_default_context(cafile=ca_bundle)
        self._events = events

    async def verify_token(self, token: str) -> Optional[AccessToken]:
        """Return the token's access info when the introspection endpoint calls it active.

        Args:
            token: the bearer token from the request.

        Returns:
            An ``AccessToken`` for an active token, else None (the middleware answers 401).
        """
        loop = asyncio.get_running_loop()
        try:
            active = await loop.run_in_executor(None, self._introspect, token)
        except (OSError, ValueError) as exc:
            # Only the exception's type: the token travels in the request body.
            print("introspection failed: %s" % type(exc).__name__, file=sys.stderr, flush=True)
            active = False
        self._events.write("accepted" if active else "rejected")
        if not active:
            return None
        return AccessToken(token=token, client_id="e2e", scopes=[])

    def _introspect(self, token: str) -> bool:
        """POST ``token=<token>`` (blocking; the stdlib keeps the server free of HTTP client deps)."""
        request = urllib.request.Request(
            self._url,
            data=urllib.parse.urlencode({"token": token}).encode("ascii"),
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=_INTROSPECTION_TIMEOUT, context=self._ssl) as response:
            document = json.loads(response.read().decode("utf-8"))
        return isinstance(document, dict) and document.get("active") is True


def _build_mcp() -> MCPServer:
    mcp = MCPServer("oauth-gateway-e2e-protected", log_level="WARNING")

    @mcp.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @mcp.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    return mcp


def build_app(introspection_url: str, ca_bundle: str, events: _EventLog) -> Any:
    """Build the ASGI app: the MCP streamable HTTP app behind a bearer check on every path.

    Args:
        introspection_url: the authorization server's introspection endpoint.
        ca_bundle: CA PEM that verifies that endpoint.
        events: where authentication decisions are recorded.

    Returns:
        An ASGI callable. Lifespan events go straight to the MCP app (they carry no request).
    """
    # host: the SDK's DNS-rebinding guard then accepts only Host 127.0.0.1 / localhost.
    inner = _build_mcp().streamable_http_app(host="127.0.0.1")
    verifier = IntrospectionTokenVerifier(introspection_url, ca_bundle, events)
    guarded = AuthenticationMiddleware(
        RequireAuthMiddleware(inner, required_scopes=[]),
        backend=BearerAuthBackend(verifier),
    )

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await guarded(scope, receive, send)
        else:
            await inner(scope, receive, send)

    return app


async def _announce_when_started(server: uvicorn.Server, port: int) -> None:
    for _ in range(_STARTUP_POLLS):
        if server.started:
            print("READY %d" % port, flush=True)
            return
        await asyncio.sleep(_STARTUP_POLL_INTERVAL)
    print("server did not start", file=sys.stderr, flush=True)
    server.should_exit = True


async def _serve(server: uvicorn.Server, sock: socket.socket, port: int) -> None:
    announcer = asyncio.ensure_future(_announce_when_started(server, port))
    try:
        await server.serve(sockets=[sock])
    finally:
        announcer.cancel()


def main(argv: Optional[list] = None) -> int:
    """Serve until terminated.

    Args:
        argv: command line arguments (default ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certfile", required=True, help="PEM with the server key and certificate chain")
    parser.add_argument("--introspection-url", required=True)
    parser.add_argument("--ca-bundle", required=True, help="CA PEM that verifies the introspection endpoint")
    parser.add_argument("--events", required=True, help="file that receives accepted/rejected lines")
    args = parser.parse_args(argv)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = build_app(args.introspection_url, args.ca_bundle, _EventLog(args.events))
    config = uvicorn.Config(
        app,
        ssl_certfile=args.certfile,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    asyncio.run(_serve(server, sock, port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
