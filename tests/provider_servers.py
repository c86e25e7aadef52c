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
:data:`leaks.SECRETS`, so the leak checks look for them. Thread-safe.
"""

from __future__ import annotations

import json
import secrets
import threading
import urllib.parse
from email.message import Message
from typing import Any, Dict, List, Optional, Set, Tuple

from leaks import SECRETS
from loopback import LoopbackServer, Reply

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


class ProviderServer(LoopbackServer):
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

    thread_name = "provider-server"

    def __init__(self, ca: Any, api_key: str, identity_secret: str, ttl: Optional[Any] = 600) -> None:
        super().__init__(ca)
        self.api_key = api_key
        self.identity_secret = identity_secret
        self.ttl = ttl
        self.latency = threading.Event()  # set: answer at once; clear: hold token answers
        self.latency.set()
        self._issued: Set[str] = set()
        self._statuses: Dict[str, List[Tuple[int, List[Tuple[str, str]]]]] = {}

    @property
    def seen(self) -> List[Seen]:
        """Every request, in arrival order."""
        return self.records

    def stop(self) -> None:
        self.latency.set()
        super().stop()

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

    def requests_to(self, path: str) -> List[Seen]:
        with self._lock:
            return [seen for seen in self.seen if seen.path == path]

    @property
    def issued(self) -> Set[str]:
        with self._lock:
            return set(self._issued)

    # -- answering

    def respond(self, method: str, target: str, headers: Message, body: bytes) -> Reply:
        path, _, query = target.partition("?")
        seen = Seen(method, path, urllib.parse.parse_qs(query), {k.lower(): v for k, v in headers.items()}, body)
        status, answer_headers, document = self.answer(seen)
        if document is None:
            return status, answer_headers, b""
        return status, answer_headers + [("Content-Type", "application/json")], json.dumps(document).encode("utf-8")

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
