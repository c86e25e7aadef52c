"""Real loopback servers that publish discovery metadata, for tests/test_discovery.py.

:class:`MetadataServer` is an HTTPS (trustme) or plain-HTTP server on 127.0.0.1 that
answers fixed routes: an MCP endpoint that challenges with 401 and ``WWW-Authenticate``,
Protected Resource Metadata (RFC 9728), authorization server metadata (RFC 8414 / OpenID)
and a token endpoint, each scriptable (status, headers, body) so a test can publish a
mismatch. It counts requests per path and can hold answers until released, so a test can
keep a fetch in flight. :func:`requests_fetch` is a discovery transport on a
``requests.Session``, the way the token client will provide one. Only the standard
library, requests and trustme are used.
"""

from __future__ import annotations

import json as _json
import os
import tempfile
import threading
import time
from email.message import Message
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import requests

from loopback import LoopbackServer, Reply

__all__ = ("MetadataServer", "Recorded", "Route", "requests_fetch", "CountingFetch")

#: Seconds a held answer waits at most for release() (so a broken test cannot hang).
HOLD_LIMIT = 10.0


class Route:
    """One scripted answer: status, headers and body. Immutable once built."""

    def __init__(
        self,
        status: int = 200,
        json: Any = None,
        body: Optional[bytes] = None,
        headers: Iterable[Tuple[str, str]] = (),
        content_type: Optional[str] = "application/json",
    ) -> None:
        self.status = status
        if json is not None:
            body = _json.dumps(json).encode("utf-8")
        self.body = body or b""
        self.headers = list(headers)
        if content_type and self.body:
            self.headers.append(("Content-Type", content_type))


class Recorded:
    """A request as the server saw it."""

    def __init__(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> None:
        self.method = method
        self.path = path
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body

    def __repr__(self) -> str:
        return "Recorded(%s %s)" % (self.method, self.path)


class MetadataServer(LoopbackServer):
    """A loopback server publishing discovery metadata. Thread-safe.

    Args:
        ca: a trustme CA for HTTPS; None serves plain HTTP.
        host: the host name used in :attr:`url` (``127.0.0.1`` or ``localhost``).

    Attributes:
        url: ``https://127.0.0.1:<port>`` (or ``http://...``) once started.
        requests: every :class:`Recorded` request, in arrival order.
    """

    thread_name = "metadata-server"

    def __init__(self, ca: Any = None, host: str = "127.0.0.1") -> None:
        super().__init__(ca, host)
        self._routes: Dict[Tuple[str, str], Route] = {}
        self._gate = threading.Event()
        self._gate.set()
        self._tmpdir: Optional[str] = None

    @property
    def requests(self) -> List[Recorded]:
        """Every :class:`Recorded` request, in arrival order."""
        return self.records

    # -- lifecycle

    def stop(self) -> None:
        self._gate.set()
        super().stop()

    @property
    def ca_bundle(self) -> str:
        """PEM path of the CA certificate (HTTPS servers only)."""
        if self._tmpdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix="metadata-server-")
        path = os.path.join(self._tmpdir, "ca.pem")
        if not os.path.exists(path):
            self.ca.cert_pem.write_to_path(path)
        return path

    # -- scripting

    def route(self, path: str, route: Route, method: str = "GET") -> None:
        """Answer ``method path`` with ``route`` (replaces an earlier one)."""
        with self._lock:
            self._routes[(method, path)] = route

    def json(self, path: str, document: Any, status: int = 200, headers: Iterable[Tuple[str, str]] = ()) -> None:
        """Answer ``GET path`` with a JSON document."""
        self.route(path, Route(status, json=document, headers=headers))

    def challenge(
        self,
        path: str = "/mcp",
        resource_metadata: Optional[str] = None,
        scope: Optional[str] = None,
        scheme: str = "Bearer",
        status: int = 401,
    ) -> None:
        """Answer ``POST path`` with a 401 challenge (no ``resource_metadata`` when None)."""
        params = ['error="invalid_token"']
        if resource_metadata is not None:
            params.append('resource_metadata="%s"' % resource_metadata)
        if scope is not None:
            params.append('scope="%s"' % scope)
        headers = [("WWW-Authenticate", "%s %s" % (scheme, ", ".join(params)))] if status == 401 else []
        self.route(path, Route(status, json={"error": "invalid_token"}, headers=headers), method="POST")

    def publish(
        self,
        mcp_path: str = "/mcp",
        issuer_path: str = "",
        *,
        in_challenge: bool = True,
        prm_at: Optional[str] = None,
        resource: Optional[str] = None,
        authorization_servers: Optional[Sequence[str]] = None,
        prm_scopes: Optional[Sequence[str]] = None,
        challenge_scope: Optional[str] = None,
        as_document: Optional[Dict[str, Any]] = None,
        as_at: Optional[str] = None,
        as_headers: Iterable[Tuple[str, str]] = (),
        prm_headers: Iterable[Tuple[str, str]] = (),
    ) -> Dict[str, str]:
        """Publish a consistent MCP server + authorization server on this one origin.

        Args:
            mcp_path: where the MCP endpoint is.
            issuer_path: the issuer's path ("" for the origin).
            in_challenge: put ``resource_metadata`` in the 401 challenge.
            prm_at: the PRM path; default the RFC 9728 path-insert URL of the MCP endpoint.
            resource: the PRM's ``resource``; default the MCP endpoint's URL.
            authorization_servers: the PRM's list; default ``[issuer]``.
            prm_scopes: the PRM's ``scopes_supported``, or None to omit.
            challenge_scope: the challenge's ``scope``, or None.
            as_document: the AS metadata; default a valid one for the issuer.
            as_at: the AS metadata path; default RFC 8414 path-insert.
            as_headers, prm_headers: extra response headers (``Cache-Control``...).

        Returns:
            ``{"mcp": url, "issuer": ..., "prm_path": ..., "as_path": ...}``.
        """
        mcp = self.url + mcp_path
        issuer = self.url + issuer_path
        prm_path = prm_at or "/.well-known/oauth-protected-resource" + mcp_path
        as_path = as_at or "/.well-known/oauth-authorization-server" + issuer_path
        prm: Dict[str, Any] = {
            "resource": mcp if resource is None else resource,
            "authorization_servers": [issuer] if authorization_servers is None else list(authorization_servers),
        }
        if prm_scopes is not None:
            prm["scopes_supported"] = list(prm_scopes)
        self.route(prm_path, Route(json=prm, headers=prm_headers))
        document = as_document if as_document is not None else self.as_document(issuer_path)
        self.route(as_path, Route(json=document, headers=as_headers))
        self.challenge(mcp_path, self.url + prm_path if in_challenge else None, challenge_scope)
        return {"mcp": mcp, "issuer": issuer, "prm_path": prm_path, "as_path": as_path}

    def as_document(self, issuer_path: str = "", **fields: Any) -> Dict[str, Any]:
        """A valid authorization server metadata document for ``url + issuer_path``."""
        document: Dict[str, Any] = {
            "issuer": self.url + issuer_path,
            "token_endpoint": self.url + issuer_path + "/token",
            "revocation_endpoint": self.url + issuer_path + "/revoke",
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "grant_types_supported": ["client_credentials"],
        }
        document.update(fields)
        return {k: v for k, v in document.items() if v is not None}

    def hold(self) -> None:
        """Make every answer wait until :meth:`release` (at most :data:`HOLD_LIMIT` s)."""
        self._gate.clear()

    def release(self) -> None:
        """Let held answers go."""
        self._gate.set()

    # -- counting

    def wait_for(self, path: str, n: int = 1, limit: float = 5.0) -> None:
        """Wait (bounded) until ``n`` requests for ``path`` arrived."""
        deadline = time.monotonic() + limit
        while self.count(path) < n:
            if time.monotonic() > deadline:
                raise AssertionError("%d requests for %s expected, got %d" % (n, path, self.count(path)))
            time.sleep(0.005)

    # -- called by the handler

    def respond(self, method: str, target: str, headers: Message, body: bytes) -> Reply:
        path = target.split("?", 1)[0]
        record = Recorded(method, path, dict(headers.items()), body)
        with self._lock:
            self.records.append(record)
            route = self._routes.get((method, path))
        self._gate.wait(HOLD_LIMIT)
        if route is None:
            route = Route(404, json={"error": "not_found"})
        return route.status, route.headers, route.body


def requests_fetch(session: requests.Session, timeout: float = 10.0):
    """A discovery transport on ``session``: no redirects, a timeout, no credentials."""

    def fetch(method: str, url: str, headers: Mapping[str, str], body: Optional[bytes], deadline=None):
        response = session.request(
            method,
            url,
            headers=dict(headers),
            data=body,
            timeout=timeout,
            allow_redirects=False,
            verify=session.verify,  # else REQUESTS_CA_BUNDLE would override it
        )
        return response.status_code, response.headers, response.content

    return fetch


class CountingFetch:
    """Wraps a transport and records each ``(method, url)`` it is called with. Thread-safe."""

    def __init__(self, fetch: Any) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self.calls: List[Tuple[str, str]] = []

    def __call__(self, method: str, url: str, headers: Mapping[str, str], body: Optional[bytes], deadline=None):
        with self._lock:
            self.calls.append((method, url))
        return self._fetch(method, url, headers, body, deadline)
