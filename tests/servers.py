"""A real HTTPS OAuth 2.0 authorization server on 127.0.0.1 for the test suite, and fakes.

:class:`AuthServer` answers ``/token`` (client credentials grant, and the jwt-bearer grant of
RFC 7523 for the assertions a test registers), ``/revoke`` (RFC 7009),
``/introspect`` and ``/resource`` over TLS with trustme certificates, records every request
and can be scripted with :class:`Fault` answers. It is thread-safe: it serves each
connection on its own daemon thread, with HTTP/1.1 keep-alive.

Every client secret it registers and access token it issues goes into :data:`leaks.SECRETS`,
so the suite can fail when one reaches a log line. The fakes of time are in ``fakes.py``.
Only the standard library and trustme are used.
"""

from __future__ import annotations

import base64
import binascii
import collections
import dataclasses
import hmac
import json as _json
import os
import secrets as _secrets
import select
import shutil
import socket
import socketserver
import ssl
import struct
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import warnings
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

from leaks import SECRETS

with warnings.catch_warnings():
    # cryptography warns once at import on Python 3.8; the suite still supports 3.8.
    warnings.filterwarnings("ignore", message=".*no longer supported.*")
    import trustme

__all__ = (
    "ALL_AUTH_METHODS",
    "AuthServer",
    "Fault",
    "JWT_BEARER_GRANT",
    "RecordedRequest",
    "TEST_CLIENT_ID",
    "TEST_CLIENT_SECRET",
    "basic_credentials",
    "oauth_block",
)

#: RFC 7523 section 2.1: the grant the token endpoint accepts once assertions are registered.
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"

#: The fixture client. Both contain characters that RFC 6749 section 2.3.1 form-encodes.
TEST_CLIENT_ID = "test client:1"
TEST_CLIENT_SECRET = "a:b/c+d%e&f="

ALL_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "tls_client_auth")
#: A public client's method (a ``client_id`` in the form, no credential): only when registered with it.
PUBLIC_AUTH_METHOD = "none"

#: Seconds an idle keep-alive connection or a silent TLS handshake may last server-side.
_IO_TIMEOUT = 30.0
#: Seconds stop() waits, in total, for connection threads to end.
_JOIN_BUDGET = 5.0
_REALM = 'realm="oauth-gateway-test"'
_NO_BODY_STATUSES = frozenset({204, 304})


# --------------------------------------------------------------------------- credentials


def basic_credentials(client_id: str, secret: str) -> str:
    """Return the ``Authorization`` value RFC 6749 section 2.3.1 prescribes.

    Each part is form-url-encoded (``quote_plus``), joined by ``:`` and base64-encoded.

    Args:
        client_id: the client identifier.
        secret: the client secret.

    Returns:
        ``"Basic <base64>"``.
    """
    raw = "%s:%s" % (urllib.parse.quote_plus(client_id), urllib.parse.quote_plus(secret))
    return "Basic " + base64.b64encode(raw.encode("utf-8")).decode("ascii")


def _decode_basic(value: str) -> Optional[Tuple[str, str]]:
    """Decode a Basic ``Authorization`` value per RFC 6749 2.3.1, None when malformed."""
    scheme, _, param = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        text = base64.b64decode(param.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    if ":" not in text:
        return None
    client_id, _, secret = text.partition(":")
    return urllib.parse.unquote_plus(client_id), urllib.parse.unquote_plus(secret)


# --------------------------------------------------------------------------- records


class _Headers(Mapping):
    """Immutable request headers: case-insensitive lookup, original names when iterated."""

    def __init__(self, items: Iterable[Tuple[str, str]]) -> None:
        merged: Dict[str, Tuple[str, str]] = {}
        for name, value in items:
            key = name.lower()
            if key in merged:  # repeated fields combine as RFC 7230 section 3.2.2 says
                merged[key] = (merged[key][0], merged[key][1] + ", " + value)
            else:
                merged[key] = (name, value)
        self._items = merged

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (original for original, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        # Values can hold credentials: show the names only.
        return "<headers %s>" % ", ".join(self)


@dataclasses.dataclass(frozen=True, repr=False)
class RecordedRequest:
    """One request the server received, as it arrived. Immutable.

    Attributes:
        path: the URL path without the query string, e.g. ``"/token"``.
        method: ``"POST"``, ``"GET"``...
        headers: case-insensitive mapping; iteration gives the names as sent.
        body: the raw body.
        form: ``name -> list of values`` from an ``application/x-www-form-urlencoded`` body.
        basic_auth: ``(client_id, secret)`` decoded per RFC 6749 section 2.3.1, or None.
        client_cert: ``SSLSocket.getpeercert()`` of a verified client certificate, or None.
        time: ``time.monotonic()`` when the request had been read.
        query: ``name -> list of values`` from the query string.
        connection_id: which TCP connection carried it (1, 2, ... in accept order).
    """

    path: str
    method: str
    headers: Mapping[str, str]
    body: bytes
    form: Dict[str, List[str]]
    basic_auth: Optional[Tuple[str, str]]
    client_cert: Optional[Dict[str, Any]]
    time: float
    query: Dict[str, List[str]] = dataclasses.field(default_factory=dict)
    connection_id: int = 0

    def first(self, name: str) -> Optional[str]:
        """Return the first form value of ``name``, or None."""
        values = self.form.get(name)
        return values[0] if values else None

    @property
    def grant_type(self) -> Optional[str]:
        """The ``grant_type`` form field."""
        return self.first("grant_type")

    @property
    def scope(self) -> Optional[str]:
        """The ``scope`` form field."""
        return self.first("scope")

    @property
    def resource(self) -> List[str]:
        """Every ``resource`` form value (RFC 8707 allows several)."""
        return list(self.form.get("resource", []))

    @property
    def audience(self) -> Optional[str]:
        """The ``audience`` form field."""
        return self.first("audience")

    @property
    def organization(self) -> Optional[str]:
        """The ``organization`` form field."""
        return self.first("organization")

    @property
    def correlation_id(self) -> Optional[str]:
        """The ``X-Correlation-ID`` header."""
        return self.headers.get("X-Correlation-ID")

    @property
    def user_agent(self) -> Optional[str]:
        """The ``User-Agent`` header."""
        return self.headers.get("User-Agent")

    @property
    def client_id(self) -> Optional[str]:
        """The client id from the Basic header, else from the body."""
        if self.basic_auth is not None:
            return self.basic_auth[0]
        return self.first("client_id")

    def __repr__(self) -> str:
        # Never the body or header values: they carry secrets and tokens.
        return "RecordedRequest(%s %s, form fields=%s, conn=%d)" % (
            self.method,
            self.path,
            sorted(self.form),
            self.connection_id,
        )


# --------------------------------------------------------------------------- faults


class Fault:
    """One scripted answer, consumed by the next request to its path.

    A fault with none of ``json``, ``body``, ``redirect_to``, ``reset`` and a 200 status
    only waits ``delay`` (and adds ``headers``), then the server answers as usual.

    Args:
        status: HTTP status code.
        json: a JSON-serialisable body (exclusive with ``body``).
        body: raw body, ``bytes`` or ``str`` (UTF-8).
        headers: extra response headers, a mapping or ``(name, value)`` pairs.
        delay: real seconds to wait before answering (ends early when the server stops).
        reset: send partial response headers, then reset the TCP connection (RST).
        redirect_to: answer 307 (or ``status`` if not 200) with this ``Location``.
        content_type: ``Content-Type`` of the body; None sends none.
        drip: send the body one byte every ``drip`` seconds (with its ``Content-Length``).
        endless: send a chunked body that never ends: ``endless`` bytes per chunk, one
            chunk every millisecond, until the client hangs up or the server stops
            (at most 60 s).
        hold: before answering, hold the request until this event is set, the client hangs
            up (counted in ``AuthServer.hangups``; no answer then) or the server stops (at
            most 60 s). ``AuthServer.held`` counts the requests held at the moment.

    Raises:
        ValueError: if both ``json`` and ``body`` are given.
    """

    def __init__(
        self,
        status: int = 200,
        json: Any = None,
        body: Union[bytes, str, None] = None,
        headers: Union[Mapping[str, str], Iterable[Tuple[str, str]], None] = None,
        delay: float = 0.0,
        reset: bool = False,
        redirect_to: Optional[str] = None,
        content_type: Optional[str] = "application/json",
        drip: float = 0.0,
        endless: int = 0,
        hold: Optional[threading.Event] = None,
    ) -> None:
        if json is not None and body is not None:
            raise ValueError("Fault: give json or body, not both")
        self.status = int(status)
        self.json = json
        self.body = body
        if headers is None:
            self.headers: List[Tuple[str, str]] = []
        elif isinstance(headers, Mapping):
            self.headers = [(str(k), str(v)) for k, v in headers.items()]
        else:
            self.headers = [(str(k), str(v)) for k, v in headers]
        self.delay = float(delay)
        self.reset = bool(reset)
        self.redirect_to = redirect_to
        self.content_type = content_type
        self.drip = float(drip)
        self.endless = int(endless)
        self.hold = hold

    @property
    def is_passthrough(self) -> bool:
        """True when this fault only delays (and decorates) the normal answer."""
        return (
            self.json is None
            and self.body is None
            and self.redirect_to is None
            and not self.reset
            and not self.drip
            and not self.endless
            and self.status == 200
        )

    def payload(self) -> bytes:
        """Return the response body bytes."""
        if self.json is not None:
            return _json.dumps(self.json).encode("utf-8")
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return self.body or b""

    def __repr__(self) -> str:
        parts = ["status=%d" % self.status]
        if self.reset:
            parts.append("reset=True")
        if self.redirect_to:
            parts.append("redirect_to=%r" % self.redirect_to)
        if self.delay:
            parts.append("delay=%r" % self.delay)
        if self.hold is not None:
            parts.append("hold=%s" % ("set" if self.hold.is_set() else "unset"))
        return "Fault(%s)" % ", ".join(parts)


class _Reply:
    """A response to write: status, headers and body."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, body: bytes = b"", headers: Optional[List[Tuple[str, str]]] = None) -> None:
        self.status = status
        self.body = body
        self.headers = list(headers or [])


def _json_reply(status: int, document: Any, headers: Optional[List[Tuple[str, str]]] = None) -> _Reply:
    head = [("Content-Type", "application/json")]
    head.extend(headers or [])
    return _Reply(status, _json.dumps(document).encode("utf-8"), head)


def _error_reply(status: int, error: str, description: str, headers=None) -> _Reply:
    return _json_reply(status, {"error": error, "error_description": description}, headers)


# --------------------------------------------------------------------------- HTTP plumbing


class _Handler(BaseHTTPRequestHandler):
    """Reads one request at a time from a TLS connection and lets the AuthServer answer."""

    protocol_version = "HTTP/1.1"  # keep-alive; every answer carries Content-Length
    server_version = "oauth-gateway-test-idp/1.0"
    sys_version = ""
    timeout = _IO_TIMEOUT  # an idle keep-alive connection ends after this
    disable_nagle_algorithm = True  # headers and body are two writes: avoid the 40 ms ACK stall

    def __init__(self, request, client_address, server, connection_id: int = 0) -> None:
        self.connection_id = connection_id
        super().__init__(request, client_address, server)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        """Silence the per-request stderr line (it would show request lines in CI)."""

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _read_body(self) -> Optional[bytes]:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            n = int(length)
        except ValueError:
            self.send_error(400, "bad Content-Length")
            return None
        return self.rfile.read(n) if n > 0 else b""

    def _dispatch(self) -> None:
        owner: AuthServer = self.server.owner  # type: ignore[attr-defined]
        body = self._read_body()
        if body is None:
            return
        record = owner._record(self, body)
        fault = owner._next_fault(record.path)
        if record.path == "/token":
            owner._wait(owner.latency)
        extra: List[Tuple[str, str]] = []
        if fault is not None:
            owner._wait(fault.delay)
            if fault.hold is not None and not self._hold(owner, fault.hold):
                return
            if fault.reset:
                self._reset()
                return
            if fault.drip or fault.endless:
                self._trickle(owner, owner._fault_reply(record, fault), fault)
                return
            if not fault.is_passthrough:
                self._send(owner._fault_reply(record, fault))
                return
            extra = fault.headers
        reply = owner._answer(record)
        if extra:
            replaced = {name.lower() for name, _ in extra}
            reply.headers = [h for h in reply.headers if h[0].lower() not in replaced] + extra
        self._send(reply)

    def _send(self, reply: _Reply) -> None:
        self.send_response(reply.status)
        names = set()
        for name, value in reply.headers:
            names.add(name.lower())
            self.send_header(name, value)
        body = b"" if reply.status in _NO_BODY_STATUSES else reply.body
        if "content-length" in names:
            self.close_connection = True  # scripted length: do not trust the stream after it
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _trickle(self, owner: AuthServer, reply: _Reply, fault: Fault) -> None:
        """Send ``reply`` slowly: its body a byte at a time, or chunks that never end."""
        self.close_connection = True
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        if fault.endless:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.flush()
        deadline = time.monotonic() + 60.0  # bounded, whatever the client does
        try:
            if fault.endless:
                chunk = b"%x\r\n%s\r\n" % (fault.endless, b" " * fault.endless)
                while not owner._stopping.is_set() and time.monotonic() < deadline:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    owner._wait(0.001)
                return
            for i in range(len(reply.body)):
                if owner._stopping.is_set() or time.monotonic() >= deadline:
                    return
                self.wfile.write(reply.body[i : i + 1])
                self.wfile.flush()
                owner._wait(fault.drip)
        except OSError:  # the client hung up: what these faults expect
            owner._hung_up()
            return

    def _hold(self, owner: AuthServer, release: threading.Event) -> bool:
        """Wait for ``release``, watching the connection; False if the client hung up first."""
        deadline = time.monotonic() + 60.0  # bounded, whatever the test does
        owner._count_held(+1)
        try:
            while not release.is_set() and not owner._stopping.is_set() and time.monotonic() < deadline:
                readable, _, _ = select.select([self.connection], [], [], 0.01)
                if readable and self._peer_closed():
                    owner._hung_up()
                    return False
            return True
        finally:
            owner._count_held(-1)

    def _peer_closed(self) -> bool:
        try:
            return self.connection.recv(1) == b""
        except (OSError, ValueError):  # reset, or a TLS alert: gone either way
            return True

    def _reset(self) -> None:
        # Partial headers through TLS, then SO_LINGER 0 so closing sends RST, not FIN.
        self.close_connection = True
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Ty")
            self.wfile.flush()
        except OSError:
            pass
        # The socket closes when this handler's files and _serve_connection let go of it.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class _TLSServer(ThreadingHTTPServer):
    """Accepts TCP connections and runs TLS handshakes on per-connection daemon threads.

    The handshake runs off the accept thread so a slow or bad client delays nobody.
    """

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # many clients connect at once in concurrency tests
    allow_reuse_address = True

    def __init__(self, owner: AuthServer, context: ssl.SSLContext) -> None:
        self.owner = owner
        self.ssl_context = context
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), a DNS lookup we do not need.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address) -> None:
        connection_id = self.owner._accepted()
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address, connection_id),
            name="auth-server-conn-%d" % connection_id,
            daemon=True,
        )
        self.owner._track_thread(thread)
        thread.start()

    def _serve_connection(self, raw: socket.socket, client_address, connection_id: int) -> None:
        tls: Optional[ssl.SSLSocket] = None
        try:
            raw.settimeout(_IO_TIMEOUT)
            tls = self.ssl_context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            self.owner._track_socket(tls)
            try:
                tls.do_handshake()
            except (OSError, ValueError):
                self.owner._handshake_failed()
                return
            _Handler(tls, client_address, self, connection_id)
        except Exception:
            self.handle_error(tls or raw, client_address)
        finally:
            target = tls if tls is not None else raw
            self.owner._untrack_socket(target)
            try:
                target.close()
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        """Ignore network and TLS errors (clients hang up in tests); report real bugs."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # includes ssl.SSLError and socket.timeout
            return
        if isinstance(error, ValueError) and self.owner._stopping.is_set():
            return  # "I/O operation on closed file" after stop() cut the connection
        self.owner.errors.append(error)
        traceback.print_exc()


# --------------------------------------------------------------------------- the server


class _Client:
    __slots__ = ("client_id", "secret", "auth_methods")

    def __init__(self, client_id: str, secret: Optional[str], auth_methods: Tuple[str, ...]):
        self.client_id = client_id
        self.secret = secret
        self.auth_methods = auth_methods


class AuthServer:
    """A real HTTPS OAuth 2.0 authorization server on ``127.0.0.1`` for tests.

    Thread-safe: connections are served on daemon threads, and shared state (queues,
    records, token sets) changes under one lock. Settable at any time: ``expires_in``,
    ``token_type``, ``latency``, ``scope_override``.

    Args:
        ca: the trustme CA that issues the server certificate (127.0.0.1, localhost).
        require_client_cert: refuse TLS handshakes without a client certificate.
        client_ca: CA (trustme.CA or PEM path) that client certificates must chain to;
            without ``require_client_cert`` a certificate is optional.
        expires_in: ``expires_in`` of issued tokens; None omits the field.
        token_type: ``token_type`` of issued tokens.
        latency: real seconds to wait before answering each ``/token`` request.
        scope_override: scope granted instead of the requested one; "" omits ``scope``.

    Attributes:
        url: ``https://127.0.0.1:<port>`` once started.
        requests: every :class:`RecordedRequest`, in arrival order.
        issued: access tokens that are active. ``issued_history`` lists all, in order.
        revoked: tokens revoked through ``/revoke``.
        connections: TCP connections accepted so far.
        held: requests held by a ``Fault(hold=...)`` right now.
        hangups: requests whose client hung up before their answer was complete (held, or
            a ``drip``/``endless`` body).
        handshake_failures: TLS handshakes that failed.
        errors: unexpected exceptions raised while serving (should stay empty).
    """

    def __init__(
        self,
        ca: trustme.CA,
        *,
        require_client_cert: bool = False,
        client_ca: Union[trustme.CA, str, None] = None,
        expires_in: Optional[Union[int, float, str]] = 3600,
        token_type: str = "Bearer",
        latency: float = 0.0,
        scope_override: Optional[str] = None,
    ) -> None:
        if require_client_cert and client_ca is None:
            raise ValueError("AuthServer: require_client_cert needs client_ca")
        self.ca = ca
        self.require_client_cert = require_client_cert
        self.client_ca = client_ca
        self.expires_in = expires_in
        self.token_type = token_type
        self.latency = latency
        self.scope_override = scope_override

        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._clients: Dict[str, _Client] = {}
        self._faults: Dict[str, Deque[Fault]] = {}
        self._token_clients: Dict[str, str] = {}
        self._assertions: Set[str] = set()
        self._sockets: Set[socket.socket] = set()
        self._threads: List[threading.Thread] = []
        self._server: Optional[_TLSServer] = None
        self._serve_thread: Optional[threading.Thread] = None
        self._tmpdir: Optional[str] = None

        self.url = ""
        self.requests: List[RecordedRequest] = []
        self.issued: Set[str] = set()
        self.issued_history: List[str] = []
        self.revoked: Set[str] = set()
        self.connections = 0
        self.handshake_failures = 0
        self.errors: List[BaseException] = []
        self.held = 0
        self.hangups = 0
        self._changed = threading.Condition(self._lock)
        #: Served at ``/.well-known/oauth-authorization-server`` when set (see :meth:`publish_metadata`).
        self.metadata: Optional[Dict[str, Any]] = None

    # -- addresses

    @property
    def token_url(self) -> str:
        return self.url + "/token"

    @property
    def revocation_url(self) -> str:
        return self.url + "/revoke"

    @property
    def introspection_url(self) -> str:
        return self.url + "/introspect"

    @property
    def resource_url(self) -> str:
        return self.url + "/resource"

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("AuthServer is not started; call start() or use `with`")
        return self._server.server_address[1]

    @property
    def ca_bundle(self) -> str:
        """Path of a PEM file holding the CA certificate, written on first use."""
        with self._lock:
            if self._tmpdir is None:
                self._tmpdir = tempfile.mkdtemp(prefix="auth-server-")
            path = os.path.join(self._tmpdir, "ca.pem")
            if not os.path.exists(path):
                self.ca.cert_pem.write_to_path(path)
            return path

    # -- configuration

    def register_client(
        self,
        client_id: str,
        secret: Optional[str] = None,
        auth_methods: Sequence[str] = ALL_AUTH_METHODS,
    ) -> None:
        """Accept a client.

        Args:
            client_id: its identifier.
            secret: its secret; None allows only ``tls_client_auth``.
            auth_methods: accepted methods among :data:`ALL_AUTH_METHODS`.

        Raises:
            ValueError: for an unknown authentication method.
        """
        unknown = set(auth_methods) - set(ALL_AUTH_METHODS) - {PUBLIC_AUTH_METHOD}
        if unknown:
            raise ValueError(
                "register_client: unknown auth_methods %s; use some of %s" % (sorted(unknown), ALL_AUTH_METHODS)
            )
        if secret is not None:
            SECRETS.add(secret)
            SECRETS.add(urllib.parse.quote_plus(secret))
            SECRETS.add(basic_credentials(client_id, secret)[len("Basic ") :])
        with self._lock:
            self._clients[client_id] = _Client(client_id, secret, tuple(auth_methods))

    @property
    def clients(self) -> Dict[str, Optional[str]]:
        """``client_id -> secret`` of the registered clients, in registration order."""
        with self._lock:
            return {c.client_id: c.secret for c in self._clients.values()}

    def accept_assertions(self, *assertions: str) -> None:
        """Accept the jwt-bearer grant (RFC 7523 section 2.1) for exactly these ``assertion`` values.

        Replaces the ones accepted before. Until this is called the grant is answered
        ``unsupported_grant_type``; afterwards an assertion not in the set is ``invalid_grant``.
        The client authenticates as for client credentials when it sends credentials;
        one that sends none (only ``client_id``, or nothing) is accepted, as RFC 7523
        section 3.1 allows. The signature of the assertion is not checked.
        """
        for assertion in assertions:
            SECRETS.add(assertion)
        with self._lock:
            self._assertions = set(assertions)

    def publish_metadata(self, **fields: Any) -> str:
        """Serve RFC 8414 metadata for the issuer :attr:`url` (its token endpoint); return the issuer.

        ``fields`` are added to, or (None) removed from, the document.
        """
        document: Dict[str, Any] = {
            "issuer": self.url,
            "token_endpoint": self.token_url,
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        }
        document.update(fields)
        self.metadata = {k: v for k, v in document.items() if v is not None}
        return self.url

    def push_fault(self, fault: Fault, path: str = "/token") -> None:
        """Queue ``fault`` as the answer to a later request to ``path`` (FIFO)."""
        with self._lock:
            self._faults.setdefault(path, collections.deque()).append(fault)

    def set_faults(self, faults: Iterable[Fault], path: str = "/token") -> None:
        """Replace the queue of scripted answers for ``path``."""
        with self._lock:
            self._faults[path] = collections.deque(faults)

    def pending_faults(self, path: str = "/token") -> int:
        """Return how many scripted answers for ``path`` are still queued."""
        with self._lock:
            return len(self._faults.get(path, ()))

    def count(self, path: Optional[str] = "/token") -> int:
        """Return how many requests reached ``path`` (all paths when None)."""
        with self._lock:
            return sum(1 for r in self.requests if path is None or r.path == path)

    def requests_to(self, path: str = "/token") -> List[RecordedRequest]:
        """Return the recorded requests to ``path``, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def clear_requests(self) -> None:
        """Forget the recorded requests (tokens stay issued)."""
        with self._lock:
            del self.requests[:]

    def expire_tokens(self) -> None:
        """Make every issued token inactive, as if it had expired server-side."""
        with self._lock:
            self.issued.clear()

    # -- lifecycle

    def _context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        if self.client_ca is not None:
            if isinstance(self.client_ca, str):
                context.load_verify_locations(cafile=self.client_ca)
            else:
                self.client_ca.configure_trust(context)
            # Optional: tls_client_auth can be tested while clients without certificates work.
            required = self.require_client_cert
            context.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
        return context

    def start(self) -> AuthServer:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread. Returns self."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _TLSServer(self, self._context())
        self.url = "https://127.0.0.1:%d" % self._server.server_address[1]
        self._serve_thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},  # stop() waits up to this long
            name="auth-server-%d" % self._server.server_address[1],
            daemon=True,
        )
        self._serve_thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, cut open connections, end delays and wait (bounded) for threads."""
        server = self._server
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            sockets = list(self._sockets)
            threads = list(self._threads)
        for sock in sockets:
            try:
                # The plain socket's shutdown, not SSLSocket's: it only wakes the reader.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + _JOIN_BUDGET
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._serve_thread is not None:
            self._serve_thread.join(max(0.0, deadline - time.monotonic()))
        self._server = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> AuthServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return "AuthServer(%s, clients=%s, requests=%d)" % (
            self.url or "stopped",
            sorted(self._clients),
            len(self.requests),
        )

    # -- bookkeeping called by the HTTP plumbing

    def _accepted(self) -> int:
        with self._lock:
            self.connections += 1
            return self.connections

    def _handshake_failed(self) -> None:
        with self._lock:
            self.handshake_failures += 1

    def _track_thread(self, thread: threading.Thread) -> None:
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)

    def _track_socket(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _untrack_socket(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Wait until ``predicate()`` holds, re-checked whenever ``held`` or ``hangups`` changes.

        ``predicate`` reads attributes (``lambda: server.held == 16``) and must not call
        methods that take the server's lock.

        Returns:
            Whether it holds, after at most ``timeout`` seconds.
        """
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def _count_held(self, change: int) -> None:
        with self._changed:
            self.held += change
            self._changed.notify_all()

    def _hung_up(self) -> None:
        with self._changed:
            self.hangups += 1
            self._changed.notify_all()

    def _wait(self, seconds: float) -> None:
        if seconds and seconds > 0:
            self._stopping.wait(seconds)

    def _next_fault(self, path: str) -> Optional[Fault]:
        with self._lock:
            queue = self._faults.get(path)
            return queue.popleft() if queue else None

    def _record(self, handler: _Handler, body: bytes) -> RecordedRequest:
        split = urllib.parse.urlsplit(handler.path)
        headers = _Headers(handler.headers.items())
        form: Dict[str, List[str]] = {}
        if headers.get("Content-Type", "").split(";")[0].strip().lower() == ("application/x-www-form-urlencoded"):
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        authorization = headers.get("Authorization")
        cert = handler.connection.getpeercert() or None
        record = RecordedRequest(
            path=split.path,
            method=handler.command,
            headers=headers,
            body=body,
            form=form,
            basic_auth=_decode_basic(authorization) if authorization else None,
            client_cert=cert,
            time=time.monotonic(),
            query=urllib.parse.parse_qs(split.query, keep_blank_values=True),
            connection_id=handler.connection_id,
        )
        with self._lock:
            self.requests.append(record)
        return record

    # -- answers

    def _fault_reply(self, record: RecordedRequest, fault: Fault) -> _Reply:
        headers: List[Tuple[str, str]] = []
        body = fault.payload()
        if fault.content_type is not None and (body or fault.redirect_to is None):
            headers.append(("Content-Type", fault.content_type))
        status = fault.status
        if fault.redirect_to is not None:
            headers.append(("Location", fault.redirect_to))
            if status == 200:
                status = 307
        headers.extend(fault.headers)
        if record.path == "/token" and status == 200 and isinstance(fault.json, dict):
            token = fault.json.get("access_token")
            if isinstance(token, str) and token:
                self._issue(token, record.client_id or "")
        return _Reply(status, body, headers)

    def _answer(self, record: RecordedRequest) -> _Reply:
        route = {
            "/token": self._token,
            "/revoke": self._revoke,
            "/introspect": self._introspect,
            "/resource": self._resource,
        }.get(record.path)
        if record.path == "/.well-known/oauth-authorization-server" and self.metadata is not None:
            return _json_reply(200, self.metadata)
        if route is None:
            return _error_reply(404, "not_found", "no such endpoint: %s" % record.path)
        return route(record)

    def _authenticate(self, record: RecordedRequest) -> Tuple[Optional[str], Optional[_Reply]]:
        """Return ``(client_id, None)`` or ``(None, error reply)`` per RFC 6749 2.3."""
        authorization = record.headers.get("Authorization", "")
        uses_basic = authorization.strip().lower().startswith("basic")
        body_id = record.first("client_id")
        body_secret = record.first("client_secret")
        if uses_basic and body_secret is not None:
            return None, _error_reply(400, "invalid_request", "more than one client authentication method used")
        secret: Optional[str] = None
        if uses_basic:
            if record.basic_auth is None:
                return None, self._invalid_client("malformed Basic credentials")
            client_id, secret = record.basic_auth
            method = "client_secret_basic"
            if body_id is not None and body_id != client_id:
                return None, self._invalid_client("client_id in body differs from Basic")
        elif body_secret is not None and body_id is not None:
            client_id, secret, method = body_id, body_secret, "client_secret_post"
        elif body_id is not None and record.client_cert is not None:
            client_id, method = body_id, "tls_client_auth"
        elif body_id is not None and self._is_public(body_id):
            client_id, method = body_id, PUBLIC_AUTH_METHOD
        else:
            return None, self._invalid_client("no client authentication")
        with self._lock:
            client = self._clients.get(client_id)
        if client is None or method not in client.auth_methods:
            return None, self._invalid_client("unknown client or method not allowed")
        if method not in ("tls_client_auth", PUBLIC_AUTH_METHOD):
            if client.secret is None or not hmac.compare_digest(
                client.secret.encode("utf-8"), (secret or "").encode("utf-8")
            ):
                return None, self._invalid_client("wrong client credentials")
        return client_id, None

    def _is_public(self, client_id: str) -> bool:
        with self._lock:
            client = self._clients.get(client_id)
        return client is not None and PUBLIC_AUTH_METHOD in client.auth_methods

    @staticmethod
    def _invalid_client(description: str) -> _Reply:
        return _error_reply(401, "invalid_client", description, [("WWW-Authenticate", "Basic " + _REALM)])

    def _issue(self, token: str, client_id: str) -> None:
        SECRETS.add(token)
        with self._lock:
            self.issued.add(token)
            self.issued_history.append(token)
            self._token_clients[token] = client_id

    def _token(self, record: RecordedRequest) -> _Reply:
        if record.method != "POST":
            return _error_reply(405, "invalid_request", "the token endpoint takes POST")
        grant_type = record.grant_type
        if grant_type is None:
            return _error_reply(400, "invalid_request", "grant_type is missing")
        if grant_type == JWT_BEARER_GRANT:
            client_id, error = self._jwt_bearer(record)
        elif grant_type == "client_credentials":
            client_id, error = self._authenticate(record)
        else:
            return _error_reply(400, "unsupported_grant_type", "only client_credentials")
        if error is not None:
            return error
        token = _secrets.token_urlsafe(32)
        self._issue(token, client_id or "")
        document: Dict[str, Any] = {"access_token": token, "token_type": self.token_type}
        if self.expires_in is not None:
            document["expires_in"] = self.expires_in
        scope = self.scope_override if self.scope_override is not None else record.scope
        if scope:
            document["scope"] = scope
        return _json_reply(200, document, [("Cache-Control", "no-store"), ("Pragma", "no-cache")])

    def _jwt_bearer(self, record: RecordedRequest) -> Tuple[Optional[str], Optional[_Reply]]:
        """Check a jwt-bearer grant request: a registered ``assertion``, and the client if it authenticates."""
        with self._lock:
            accepted = set(self._assertions)
        if not accepted:
            return None, _error_reply(400, "unsupported_grant_type", "only client_credentials")
        assertion = record.first("assertion")
        if not assertion:
            return None, _error_reply(400, "invalid_request", "assertion is missing")
        if assertion not in accepted:
            return None, _error_reply(400, "invalid_grant", "the assertion is not valid")
        authenticates = (
            "Authorization" in record.headers
            or record.first("client_secret") is not None
            or record.first("client_assertion") is not None
            or record.client_cert is not None
        )
        if authenticates:
            return self._authenticate(record)
        return record.first("client_id") or "", None

    def _revoke(self, record: RecordedRequest) -> _Reply:
        if record.method != "POST":
            return _error_reply(405, "invalid_request", "the revocation endpoint takes POST")
        _, error = self._authenticate(record)
        if error is not None:
            return error
        token = record.first("token")
        if not token:
            return _error_reply(400, "invalid_request", "token is missing")
        with self._lock:
            self.issued.discard(token)
            self.revoked.add(token)
        return _Reply(200)

    def _introspect(self, record: RecordedRequest) -> _Reply:
        token = record.first("token") or ""
        with self._lock:
            active = token in self.issued
            client_id = self._token_clients.get(token)
        document: Dict[str, Any] = {"active": active}
        if active and client_id:
            document["client_id"] = client_id
        return _json_reply(200, document)

    def _resource(self, record: RecordedRequest) -> _Reply:
        scheme, _, token = record.headers.get("Authorization", "").strip().partition(" ")
        with self._lock:
            valid = scheme.lower() == "bearer" and token.strip() in self.issued
        if valid:
            return _json_reply(200, {"ok": True})
        return _error_reply(
            401,
            "invalid_token",
            "missing, expired or revoked access token",
            [("WWW-Authenticate", 'Bearer %s, error="invalid_token"' % _REALM)],
        )


# --------------------------------------------------------------------------- config helper


def oauth_block(
    server: AuthServer,
    ca_bundle: Optional[str] = None,
    omit: Iterable[str] = (),
    **overrides: Any,
) -> Dict[str, Any]:
    """Return an ``oauth_config`` dict that points at ``server``.

    The client is the server's first registered client that has a secret
    (:data:`TEST_CLIENT_ID` / :data:`TEST_CLIENT_SECRET` when none has).

    Args:
        server: a started :class:`AuthServer`.
        ca_bundle: CA PEM path for ``OAUTH_CA_BUNDLE_PATH``; default ``server.ca_bundle``.
        omit: keys to leave out of the result.
        **overrides: keys to set or replace (``OAUTH_SCOPE="read"``...).

    Returns:
        A new dict.
    """
    client_id, secret = TEST_CLIENT_ID, TEST_CLIENT_SECRET
    for registered_id, registered_secret in server.clients.items():
        if registered_secret is not None:
            client_id, secret = registered_id, registered_secret
            break
    block: Dict[str, Any] = {
        "enabled": True,
        "OAUTH_VERSION": "2.1",
        "OAUTH_CLIENT_ID": client_id,
        "OAUTH_CLIENT_SECRET": secret,
        "OAUTH_TOKEN_URL": server.token_url,
        "OAUTH_REVOCATION_URL": server.revocation_url,
        "OAUTH_CA_BUNDLE_PATH": ca_bundle if ca_bundle is not None else server.ca_bundle,
    }
    block.update(overrides)
    for key in omit:
        block.pop(key, None)
    return block


def run_threads(count: int, target: Any) -> Tuple[List[Any], List[Any]]:
    """Run ``target(i)`` in ``count`` threads released together by a barrier.

    Returns:
        ``(results, errors)``, one slot per thread; an exception is collected, not raised.
        Asserts that every thread ended within 30 s.
    """
    results: List[Any] = [None] * count
    errors: List[Any] = [None] * count
    barrier = threading.Barrier(count)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target(i)
        except BaseException as exc:  # collected and asserted by the caller
            errors[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck"
    return results, errors


def waiting_threads(threads: Iterable[threading.Thread]) -> int:
    """How many of ``threads`` are blocked in a ``threading`` wait (a Condition, Event or Barrier).

    Shows that threads reached a wait without sleeping for them to get there: poll it,
    bounded, with :func:`wait_for_waiters`.
    """
    frames = sys._current_frames()
    count = 0
    for thread in threads:
        frame = frames.get(thread.ident) if thread.ident is not None else None
        if frame is not None and frame.f_code.co_name == "wait" and frame.f_code.co_filename == threading.__file__:
            count += 1
    return count


def wait_for_waiters(threads: Sequence[threading.Thread], count: int, timeout: float = 10.0) -> None:
    """Poll, bounded, until ``count`` of ``threads`` are blocked in a ``threading`` wait."""
    deadline = time.monotonic() + timeout
    while waiting_threads(threads) < count:
        if time.monotonic() > deadline:
            raise AssertionError(
                "%d of %d threads waiting, expected %d" % (waiting_threads(threads), len(threads), count)
            )
        time.sleep(0.005)
