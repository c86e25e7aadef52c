"""A real HTTPS loopback server speaking non-OAuth token APIs, for tests/test_providers.py.

:class:`ProviderServer` answers, on 127.0.0.1 with a trustme certificate:

* ``POST /api/session``: a legacy JSON token API. It wants ``{"apiKey": <key>, ...}`` and
  answers ``{"data": {"sessionToken": ..., "ttl": <ttl>}}``.
* ``GET /metadata/identity/oauth2/token?resource=...``: a workload identity endpoint.
  It wants ``Metadata: true`` and ``X-IDENTITY-HEADER: <identity secret>`` and answers
  ``{"access_token": ..., "expires_in": "3599"}``.
* ``GET /resource``: a protected resource accepting the tokens issued here and those
  :meth:`ProviderServer.accept` was given.

It records every request, counts them per path, can be scripted with statuses to answer
first (:meth:`ProviderServer.push_status`) and registers every token it issues in
:data:`servers.SECRETS`, so the leak checks look for them. Thread-safe.
"""

from __future__ import annotations

import json
import secrets
import socketserver
import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Set, Tuple

from servers import SECRETS

__all__ = ("ProviderServer", "Seen")

LEGACY_PATH = "/api/session"
IDENTITY_PATH = "/metadata/identity/oauth2/token"


class Seen:
    """One request as it arrived. Immutable."""

    def __init__(self, method: str, path: str, query: Dict[str, List[str]], headers: Dict[str, str], body: bytes):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers  # lower-cased names
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self) -> str:  # never headers or body: they carry keys
        return "Seen(%s %s)" % (self.method, self.path)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass

    def do_GET(self) -> None:
        owner: ProviderServer = self.server.owner  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        path, _, query = self.path.partition("?")
        seen = Seen(
            self.command,
            path,
            urllib.parse.parse_qs(query),
            {k.lower(): v for k, v in self.headers.items()},
            body,
        )
        status, headers, document = owner.answer(seen)
        payload = b"" if document is None else json.dumps(document).encode("utf-8")
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if payload:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    do_POST = do_PUT = do_GET


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, owner: ProviderServer, context: ssl.SSLContext) -> None:
        self.owner = owner
        self.context = context
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # no getfqdn() lookup
        self.server_name, self.server_port = self.server_address[:2]

    def get_request(self) -> Any:
        sock, address = super().get_request()
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            request.settimeout(30)
            request.do_handshake()  # on the connection's own thread
        except (OSError, ValueError):
            return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hang up; the tests assert on what was recorded


class ProviderServer:
    """A loopback HTTPS server with a legacy token API, an identity endpoint and a resource.

    Args:
        ca: the trustme CA that issues the server certificate.
        api_key: the key the legacy API wants in ``apiKey``.
        identity_secret: the ``X-IDENTITY-HEADER`` the identity endpoint wants.
        ttl: the legacy API's ``ttl`` (None leaves it out).

    Attributes:
        url: ``https://127.0.0.1:<port>`` once started.
        seen: every request, in arrival order.
    """

    def __init__(self, ca: Any, api_key: str, identity_secret: str, ttl: Optional[Any] = 600) -> None:
        self.ca = ca
        self.api_key = api_key
        self.identity_secret = identity_secret
        self.ttl = ttl
        self.url = ""
        self.seen: List[Seen] = []
        self.latency = threading.Event()  # set: answer at once; clear: hold token answers
        self.latency.set()
        self._lock = threading.Lock()
        self._issued: Set[str] = set()
        self._statuses: Dict[str, List[Tuple[int, List[Tuple[str, str]]]]] = {}
        self._server: Optional[_Server] = None

    def start(self) -> ProviderServer:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self._server = _Server(self, context)
        self.url = "https://127.0.0.1:%d" % self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="provider-server", daemon=True).start()
        return self

    def stop(self) -> None:
        self.latency.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- scripting and reading

    def push_status(self, path: str, status: int, headers: Tuple[Tuple[str, str], ...] = ()) -> None:
        """Answer the next request to ``path`` with ``status`` (an empty JSON object body)."""
        with self._lock:
            self._statuses.setdefault(path, []).append((status, list(headers)))

    def accept(self, token: str) -> None:
        """Let ``/resource`` accept ``token`` (a static token the server did not issue)."""
        with self._lock:
            self._issued.add(token)

    def reject(self, token: str) -> None:
        """Make ``/resource`` refuse ``token`` from now on (revoked behind the client's back)."""
        with self._lock:
            self._issued.discard(token)

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for seen in self.seen if seen.path == path)

    def requests_to(self, path: str) -> List[Seen]:
        with self._lock:
            return [seen for seen in self.seen if seen.path == path]

    @property
    def issued(self) -> Set[str]:
        with self._lock:
            return set(self._issued)

    # -- answering

    def _issue(self) -> str:
        token = secrets.token_urlsafe(24)
        SECRETS.add(token)
        with self._lock:
            self._issued.add(token)
        return token

    def answer(self, seen: Seen) -> Tuple[int, List[Tuple[str, str]], Any]:
        with self._lock:
            self.seen.append(seen)
            queued = self._statuses.get(seen.path)
            scripted = queued.pop(0) if queued else None
        if scripted is not None:
            return scripted[0], scripted[1], {}
        if seen.path in (LEGACY_PATH, IDENTITY_PATH):
            self.latency.wait(10)
        if seen.path == LEGACY_PATH:
            return self._legacy(seen)
        if seen.path == IDENTITY_PATH:
            return self._identity(seen)
        if seen.path == "/resource":
            scheme, _, token = seen.headers.get("authorization", "").partition(" ")
            with self._lock:
                valid = scheme.lower() == "bearer" and token in self._issued
            return (
                (200, [], {"ok": True}) if valid else (401, [("WWW-Authenticate", 'Bearer error="invalid_token"')], {})
            )
        return 404, [], {"message": "no such path"}

    def _legacy(self, seen: Seen) -> Tuple[int, List[Tuple[str, str]], Any]:
        if seen.method not in ("POST", "PUT"):
            return 405, [], {"message": "POST or PUT"}
        try:
            document = seen.json()
        except ValueError:
            return 400, [], {"message": "not JSON"}
        if not isinstance(document, dict) or document.get("apiKey") != self.api_key:
            return 401, [], {"message": "bad apiKey %r" % document.get("apiKey") if isinstance(document, dict) else ""}
        data: Dict[str, Any] = {"sessionToken": self._issue()}
        if self.ttl is not None:
            data["ttl"] = self.ttl
        return 200, [], {"status": "ok", "data": data}

    def _identity(self, seen: Seen) -> Tuple[int, List[Tuple[str, str]], Any]:
        if seen.headers.get("metadata") != "true" or seen.headers.get("x-identity-header") != self.identity_secret:
            return 400, [], {"error": "bad_request"}
        if not seen.query.get("resource"):
            return 400, [], {"error": "resource missing"}
        return 200, [], {"access_token": self._issue(), "expires_in": "3599", "token_type": "Bearer"}
