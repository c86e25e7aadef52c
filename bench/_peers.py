"""The peers, each pointed at the loopback token server and driven through its own public API.

A peer is described by :class:`Peer`: how to build a fresh client against a server
(``build``), the statement that gets a token from that client's cache (``hit_stmt``),
and what one caller does to get a token through it on a cold cache (``caller``).
A peer that is not installed, or cannot be pointed at loopback, is reported as
``n/a`` with the reason; it never stops the benchmark.

* Authlib: ``OAuth2Session(grant_type="client_credentials", token_endpoint=...)``; the
  cache hit is its requests auth hook (``session.token_auth``) on a prepared request.
  A cold cache is an expired token, which Authlib's own ``ensure_active_token``
  replaces through the client-credentials grant (it has no "no token yet" path: a
  session without any token raises ``MissingTokenError``).
* requests-oauth2client: ``OAuth2ClientCredentialsAuth(OAuth2Client(...))``, the auth
  hook on a prepared request, which gets a token when it has none.
* MSAL: ``ConfidentialClientApplication(oidc_authority=<loopback>/bench-tenant)``,
  ``acquire_token_for_client(scopes)``; MSAL reads the server's OpenID discovery
  document once when the application is built (not counted as a token request).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import requests
from _loopback import CLIENT_ID, CLIENT_SECRET

#: Scope MSAL asks for (it requires one); the other clients ask for none.
MSAL_SCOPES = ["api://bench/.default"]


class Peer:
    """One peer library, or why it cannot run here.

    Attributes:
        name: shown in the tables.
        version: its installed version, or None.
        reason: why it is n/a, or None when it can run.
    """

    name = ""
    module = ""
    distribution = ""

    def __init__(self) -> None:
        self.version: Optional[str] = None
        self.reason: Optional[str] = None
        try:
            __import__(self.module)
        except ImportError:
            self.reason = "not installed (pip install -r bench/requirements.txt)"
            return
        except Exception as exc:  # a broken install: say so, go on
            self.reason = "import failed: %s" % type(exc).__name__
            return
        self.version = _version(self.distribution)

    @property
    def available(self) -> bool:
        return self.reason is None

    def build(self, server: Any, ca_bundle: str) -> Any:
        """Return a new client of this peer that gets tokens from ``server``."""
        raise NotImplementedError

    def hit_stmt(self, client: Any, request: requests.PreparedRequest) -> tuple[str, Dict[str, Any]]:
        """Return ``(statement, namespace)`` that gets a cached token (the client holds one)."""
        raise NotImplementedError

    def caller(self, client: Any, request: requests.PreparedRequest) -> Callable[[], Any]:
        """Return what one thread calls to get a token through ``client``."""
        raise NotImplementedError

    def close(self, client: Any) -> None:
        session = getattr(client, "bench_session", None)
        if session is not None:
            session.close()


class AuthlibPeer(Peer):
    name = "Authlib OAuth2Session auth hook"
    module = "authlib.integrations.requests_client"
    distribution = "Authlib"

    def build(self, server, ca_bundle):
        from authlib.integrations.requests_client import OAuth2Session

        session = OAuth2Session(
            CLIENT_ID,
            CLIENT_SECRET,
            token_endpoint=server.token_url,
            grant_type="client_credentials",
            token_endpoint_auth_method="client_secret_basic",
        )
        session.verify = ca_bundle
        # Expired: Authlib's own ensure_active_token() fetches through client credentials.
        session.token = {"access_token": "expired-placeholder", "token_type": "Bearer", "expires_at": 1}
        session.bench_session = session
        return session

    def hit_stmt(self, client, request):
        return "auth(req); hooks.clear()", {
            "auth": client.token_auth,
            "req": request,
            "hooks": request.hooks["response"],
        }

    def caller(self, client, request):
        auth = client.token_auth
        return lambda: auth(request.copy())


class RequestsOAuth2ClientPeer(Peer):
    name = "requests-oauth2client auth hook"
    module = "requests_oauth2client"
    distribution = "requests_oauth2client"

    def build(self, server, ca_bundle):
        from requests_oauth2client import OAuth2Client, OAuth2ClientCredentialsAuth

        session = requests.Session()
        session.verify = ca_bundle
        client = OAuth2Client(token_endpoint=server.token_url, auth=(CLIENT_ID, CLIENT_SECRET), session=session)
        auth = OAuth2ClientCredentialsAuth(client)
        auth.bench_session = session
        return auth

    def close(self, client):
        client.bench_session.close()

    def hit_stmt(self, client, request):
        return "auth(req); hooks.clear()", {"auth": client, "req": request, "hooks": request.hooks["response"]}

    def caller(self, client, request):
        return lambda: client(request.copy())


class MsalPeer(Peer):
    name = "MSAL acquire_token_for_client"
    module = "msal"
    distribution = "msal"

    def build(self, server, ca_bundle):
        import msal

        try:
            app = msal.ConfidentialClientApplication(
                CLIENT_ID,
                client_credential=CLIENT_SECRET,
                oidc_authority=server.oidc_authority,
                verify=ca_bundle,
            )
        except TypeError:
            raise PeerUnavailable("this MSAL has no oidc_authority (1.28+), so it cannot be pointed at loopback")
        return app

    def close(self, client):
        http = getattr(client, "http_client", None)
        close = getattr(http, "close", None)
        if close is not None:
            close()

    def hit_stmt(self, client, request):
        return "acquire(scopes)", {"acquire": client.acquire_token_for_client, "scopes": MSAL_SCOPES}

    def caller(self, client, request):
        def call():
            result = client.acquire_token_for_client(MSAL_SCOPES)
            if "access_token" not in result:
                raise RuntimeError("MSAL got no token: %s" % result.get("error"))
            return result

        return call


class PeerUnavailable(Exception):
    """This peer cannot run the measurement here; the message says why."""


def all_peers() -> List[Peer]:
    return [AuthlibPeer(), RequestsOAuth2ClientPeer(), MsalPeer()]


def describe_failure(exc: BaseException) -> str:
    """A short reason for a peer's failure (the bench's own fake secret is all it could hold)."""
    if isinstance(exc, PeerUnavailable):
        return str(exc)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return ("%s: %s" % (type(exc).__name__, text[:100])).rstrip(": ")


def _version(distribution: str) -> Optional[str]:
    try:
        from importlib.metadata import version  # Python 3.8+
    except ImportError:  # pragma: no cover
        return None
    try:
        return version(distribution)
    except Exception:
        return None
