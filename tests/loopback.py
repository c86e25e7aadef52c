"""The scaffolding the suite's small loopback test servers share.

:class:`LoopbackServer` is the base of the scripted servers in tests/metadata_servers.py,
tests/dpop_servers.py and tests/provider_servers.py: a threading HTTP server on 127.0.0.1,
HTTPS with a certificate from the conftest trustme CA (or plain HTTP without a CA), a
thread-safe list of what it recorded, :meth:`LoopbackServer.count`, start/stop and the
context manager protocol, and quiet logging (clients hang up; tests assert on records).
A subclass answers requests in :meth:`LoopbackServer.respond`. Only the standard library
is used; the main token server (tests/servers.py) keeps its own connection handling.
"""

from __future__ import annotations

import socketserver
import ssl
import threading
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, List, Optional, Tuple, TypeVar

__all__ = ("LoopbackServer", "Reply")

#: What :meth:`LoopbackServer.respond` returns: status, headers and body.
Reply = Tuple[int, List[Tuple[str, str]], bytes]

#: Seconds a connection may sit idle (handshake or request) before it is dropped.
IO_TIMEOUT = 30

_S = TypeVar("_S", bound="LoopbackServer")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IO_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass

    def do_GET(self) -> None:
        owner: LoopbackServer = self.server.owner  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        status, headers, payload = owner.respond(self.command, self.path, self.headers, body)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
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

    def __init__(self, owner: LoopbackServer, context: Optional[ssl.SSLContext]) -> None:
        self.owner = owner
        self.context = context
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # no getfqdn() lookup
        self.server_name, self.server_port = self.server_address[:2]  # type: ignore[misc]

    def get_request(self) -> Any:
        sock, address = super().get_request()
        if self.context is not None:
            sock = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.context is not None:
            try:
                request.settimeout(IO_TIMEOUT)
                request.do_handshake()  # on the connection's own thread
            except (OSError, ValueError):
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hang up; the tests assert on what was recorded


class LoopbackServer:
    """A scripted test server on 127.0.0.1; subclasses implement :meth:`respond`. Thread-safe.

    Args:
        ca: a trustme CA that issues the certificate (for 127.0.0.1 and localhost); None
            serves plain HTTP.
        host: the host name used in :attr:`url` (``127.0.0.1`` or ``localhost``).

    Attributes:
        url: ``https://<host>:<port>`` (or ``http://...``) once started.
        records: what the subclass recorded with :meth:`record`, in arrival order.
    """

    #: The name of the serving thread.
    thread_name = "loopback-server"

    def __init__(self, ca: Any = None, host: str = "127.0.0.1") -> None:
        self.ca = ca
        self.host = host
        self.url = ""
        self.records: List[Any] = []
        self._lock = threading.Lock()
        self._server: Optional[_Server] = None

    def start(self: _S) -> _S:
        """Listen on a free port of 127.0.0.1 and serve on a daemon thread."""
        context = None
        if self.ca is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        server = _Server(self, context)
        self._server = server
        self.url = "%s://%s:%d" % ("https" if context else "http", self.host, server.server_address[1])
        threading.Thread(target=server.serve_forever, args=(0.05,), name=self.thread_name, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def record(self, item: Any) -> None:
        """Append ``item`` to :attr:`records` (under the lock)."""
        with self._lock:
            self.records.append(item)

    def count(self, path: Optional[str] = None, method: Optional[str] = None) -> int:
        """Records for ``path`` (all paths when None), optionally of one method."""
        with self._lock:
            return sum(
                1 for r in self.records if (path is None or r.path == path) and (method is None or r.method == method)
            )

    def respond(self, method: str, target: str, headers: Message, body: bytes) -> Reply:
        """Answer one request.

        Args:
            method: the request method.
            target: the request target as sent (path and query).
            headers: the request headers.
            body: the request body (``Content-Length`` bytes).

        Returns:
            ``(status, headers, body)``; ``Content-Length`` is added.
        """
        raise NotImplementedError
