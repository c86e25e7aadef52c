"""A tiny authorization server on 127.0.0.1 for ``oauth-gateway demo``.

Plain HTTP on loopback only, so the demo needs no certificates: the demo config sets
``OAUTH_ENFORCE_HTTPS`` to false and says so. Never use it for anything else.
"""

from __future__ import annotations

import base64
import json
import secrets
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Set, Tuple, Type

if TYPE_CHECKING:
    from email.message import Message
from urllib.parse import parse_qs, unquote_plus


class DemoAuthServer:
    """Issues client-credentials tokens, revokes them and guards one resource. Thread-safe."""

    def __init__(self, client_id: str, client_secret: str, expires_in: int = 3600, port: int = 0) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.expires_in = expires_in
        self.lock = threading.Lock()
        self.issued: Set[str] = set()
        self.revoked: Set[str] = set()
        self.counts: Dict[str, int] = {}
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="oauth-gateway-demo", daemon=True)

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self._httpd.server_address[1]

    def count(self, path: str) -> int:
        with self.lock:
            return self.counts.get(path, 0)

    def start(self) -> DemoAuthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> DemoAuthServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def client_ok(self, headers: Message, form: Dict[str, List[str]]) -> bool:
        pair: Optional[Tuple[str, str]] = None
        auth = headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                raw = base64.b64decode(auth[6:]).decode("utf-8")
                client_id, _, secret = raw.partition(":")
                pair = (unquote_plus(client_id), unquote_plus(secret))
            except (ValueError, UnicodeDecodeError):
                return False
        elif "client_secret" in form:
            pair = (form.get("client_id", [""])[0], form["client_secret"][0])
        return pair is not None and secrets.compare_digest(
            "%s\n%s" % pair, "%s\n%s" % (self.client_id, self.client_secret)
        )


def _handler_for(server: DemoAuthServer) -> Type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # the demo prints its own story
            pass

        def _reply(
            self, status: int, document: Optional[Dict[str, Any]] = None, headers: Iterable[Tuple[str, str]] = ()
        ) -> None:
            body = b"" if document is None else json.dumps(document).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _count(self) -> None:
            with server.lock:
                server.counts[self.path] = server.counts.get(self.path, 0) + 1

        def do_POST(self) -> None:
            self._count()
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode("utf-8"))
            if not server.client_ok(self.headers, form):
                return self._reply(401, {"error": "invalid_client"}, [("WWW-Authenticate", "Basic")])
            if self.path == "/token":
                if form.get("grant_type") != ["client_credentials"]:
                    return self._reply(400, {"error": "unsupported_grant_type"})
                token = secrets.token_urlsafe(32)
                with server.lock:
                    server.issued.add(token)
                document = {"access_token": token, "token_type": "Bearer", "expires_in": server.expires_in}
                if "scope" in form:
                    document["scope"] = form["scope"][0]
                return self._reply(200, document)
            if self.path == "/revoke":
                token = form.get("token", [""])[0]
                with server.lock:
                    server.issued.discard(token)
                    server.revoked.add(token)
                return self._reply(200)
            return self._reply(404, {"error": "not_found"})

        def do_GET(self) -> None:
            self._count()
            token = self.headers.get("Authorization", "")[len("Bearer ") :]
            with server.lock:
                ok = token in server.issued
            if self.path == "/resource" and ok:
                return self._reply(200, {"ok": True})
            return self._reply(401, {"error": "invalid_token"}, [("WWW-Authenticate", 'Bearer error="invalid_token"')])

    return Handler


def run_demo(out: IO[str], step_delay: float = 0.0) -> int:
    """Walk through validate, first token, cache hit, refresh, injection, revocation and metrics.

    Args:
        out: a text stream to write the walk-through to.
        step_delay: seconds to pause between steps (0 in tests).

    Returns:
        0 when every step behaved as described, 1 otherwise.
    """
    import os
    import tempfile
    import time

    from ._checkfile import check_file
    from .gateway import add_server, load_gateway_config
    from .injection import inject_token
    from .manager import TokenManager

    secret = secrets.token_urlsafe(24)
    failures: List[str] = []

    def say(text: str = "") -> None:
        out.write(text + "\n")
        out.flush()

    def check(ok: object, what: str) -> None:
        if not ok:
            failures.append(what)
            say("   !! unexpected: %s" % what)

    def step(number: int, title: str) -> None:
        if step_delay:
            time.sleep(step_delay)
        say("")
        say("[%d/7] %s" % (number, title))

    with DemoAuthServer("demo-client", secret) as idp, tempfile.TemporaryDirectory(prefix="oauth-gateway-demo-") as tmp:
        path = os.path.join(tmp, "enkrypt_mcp_config.json")
        say("oauth-gateway demo: a walk-through against an authorization server on %s" % idp.url)
        say("(plain HTTP on loopback so no certificates are needed; the demo config therefore sets")
        say(' OAUTH_VERSION "2.0" and OAUTH_ENFORCE_HTTPS false, which real configs should not do)')

        step(1, "Write a gateway file with one OAuth-protected remote server")
        environ = {"OAUTH_GATEWAY_DEMO_SECRET": secret}  # as if exported; os.environ is left alone
        block = {
            "enabled": True,
            "is_remote": True,
            "OAUTH_VERSION": "2.0",
            "OAUTH_ENFORCE_HTTPS": False,
            "OAUTH_CLIENT_ID": "demo-client",
            "OAUTH_CLIENT_SECRET": "${OAUTH_GATEWAY_DEMO_SECRET}",
            "OAUTH_TOKEN_URL": idp.url + "/token",
            "OAUTH_REVOCATION_URL": idp.url + "/revoke",
            "OAUTH_SCOPE": "read write",
        }
        config_id = add_server(
            path,
            config_name="default_config",
            server_name=SERVE_SERVER_NAME,
            command="npx",
            args=["-y", "mcp-remote", "https://mcp.example.com/mcp"],
            description="OAuth-protected remote server",
            oauth_config=block,
        )
        mode = os.stat(path).st_mode & 0o777
        say("   wrote %s (mode %o, written atomically)" % (path, mode))
        say('   the secret is not in the file: OAUTH_CLIENT_SECRET is "${OAUTH_GATEWAY_DEMO_SECRET}"')
        check(mode == 0o600, "the file mode is %o, not 600" % mode)

        step(2, "Validate it with the bundled JSON Schema (what `oauth-gateway validate` does)")
        result = check_file(path)
        errors = [p for p in result.problems if p.severity == "error"]
        say("   %s: %s" % (os.path.basename(path), "ok" if not errors and not result.failure else "invalid"))
        check(not errors and not result.failure, "the demo file does not validate")

        gateway = load_gateway_config(path)
        config = gateway.oauth_config(SERVE_SERVER_NAME, config_id=config_id, environ=environ)
        manager = TokenManager()

        step(3, "First token: one request to the token endpoint")
        started = time.perf_counter()
        token = manager.get_token(SERVE_SERVER_NAME, config, config_id)
        elapsed = (time.perf_counter() - started) * 1000
        say("   got %s token %s" % (token.token_type, token.masked()))
        say("   expires in %ds, scopes: %s, took %.1f ms" % (token.expires_in or 0, token.scope, elapsed))
        check(idp.count("/token") == 1, "expected 1 token request")

        step(4, "Cache hit: the same token, no request")
        started = time.perf_counter()
        again = manager.get_token(SERVE_SERVER_NAME, config, config_id)
        elapsed = (time.perf_counter() - started) * 1e6
        say(
            "   same token: %s, took %.1f microseconds, token requests so far: %d"
            % (again is token, elapsed, idp.count("/token"))
        )
        check(again is token and idp.count("/token") == 1, "the second call was not a cache hit")

        step(5, "Forced refresh, then injection into the server's launch spec")
        fresh = manager.refresh(SERVE_SERVER_NAME, config, config_id)
        say("   new token %s (token requests: %d)" % (fresh.masked(), idp.count("/token")))
        check(fresh.access_token != token.access_token, "the refresh returned the old token")
        _, entry = gateway.find_server(SERVE_SERVER_NAME, config_id=config_id)
        launch = inject_token(entry, fresh)
        say("   command: %s %s" % (launch["config"]["command"], " ".join(launch["config"]["args"])))
        say("   env:     AUTH_HEADER=Bearer *** (mcp-remote expands ${AUTH_HEADER}; the token never appears in argv)")
        check(fresh.access_token not in " ".join(launch["config"]["args"]), "the token is in argv")

        step(6, "Revocation (RFC 7009): the token stops working and leaves the cache")
        revoked = manager.revoke(SERVE_SERVER_NAME, config, config_id)
        say("   revoked: %s; the server now knows %d revoked token(s)" % (revoked, len(idp.revoked)))
        check(revoked and fresh.access_token in idp.revoked, "the token was not revoked")

        step(7, "Metrics (the seed gateway's names)")
        metrics = manager.get_metrics()
        for name in (
            "token_acquisitions_total",
            "token_acquisitions_success",
            "token_cache_hits",
            "token_cache_misses",
            "token_refreshes",
            "token_revocations",
            "cache_hit_ratio",
            "avg_latency_ms",
            "active_tokens",
        ):
            say("   %-28s %s" % (name, metrics[name]))
        manager.close()

    say("")
    if failures:
        say("demo finished with %d unexpected result(s)" % len(failures))
        return 1
    say("demo finished: every step behaved as described. Next: `oauth-gateway validate <your file>`.")
    return 0


#: The client of ``oauth-gateway demo --serve``. Not secrets: the server listens on
#: 127.0.0.1 only and exists to try the library without an identity provider.
SERVE_CLIENT_ID = "demo-client"
SERVE_CLIENT_SECRET = "demo-secret-for-127.0.0.1-only"
#: The server name of the demo's gateway file: the name every example of the docs uses.
SERVE_SERVER_NAME = "oauth-api"
#: A Fernet key the cache examples read from ``OAUTH_TOKEN_CACHE_KEY``; for the demo only.
SERVE_CACHE_KEY = "ZGVtby1jYWNoZS1rZXktZm9yLTEyNy4wLjAuMS1vbmw="
#: The port ``demo --serve`` listens on unless ``--port`` says otherwise: a fixed one,
#: so the printed ``export`` lines stay right when the demo is started again.
SERVE_PORT = 8400


def serve_config(url: str) -> Dict[str, Any]:
    """The gateway file ``oauth-gateway demo --serve`` prints for its server at ``url``."""
    return {
        "mcp_configs": {
            "demo": {
                "mcp_config_name": "default_config",
                "mcp_config": [
                    {
                        "server_name": SERVE_SERVER_NAME,
                        "description": "OAuth-protected remote server (demo)",
                        "config": {"command": "npx", "args": ["-y", "mcp-remote", "https://mcp.example.com/mcp"]},
                        "oauth_config": {
                            "enabled": True,
                            "is_remote": True,
                            "OAUTH_VERSION": "2.0",
                            "OAUTH_ENFORCE_HTTPS": False,
                            "OAUTH_CLIENT_ID": SERVE_CLIENT_ID,
                            "OAUTH_CLIENT_SECRET": "${OAUTH_GATEWAY_DEMO_SECRET}",
                            "OAUTH_TOKEN_URL": url + "/token",
                            "OAUTH_REVOCATION_URL": url + "/revoke",
                            "OAUTH_SCOPE": "read write",
                        },
                    }
                ],
            }
        }
    }


def serve_environment(url: str, gateway_file: Optional[str]) -> List[Tuple[str, str]]:
    """The variables the docs' examples read, as ``demo --serve`` prints them, in order.

    Args:
        url: the demo server's base URL.
        gateway_file: the absolute path of the written gateway file, or None when it was
            only printed (then ``OAUTH_GATEWAY_CONFIG`` is left out).
    """
    found = [("OAUTH_GATEWAY_CONFIG", gateway_file)] if gateway_file else []
    found += [
        ("OAUTH_GATEWAY_DEMO_SECRET", SERVE_CLIENT_SECRET),
        ("IDP_CLIENT_ID", SERVE_CLIENT_ID),
        ("IDP_CLIENT_SECRET", SERVE_CLIENT_SECRET),
        ("IDP_TOKEN_URL", url + "/token"),
        ("IDP_REVOCATION_URL", url + "/revoke"),
        ("API_URL", url + "/resource"),
        ("UPSTREAM_URL", url + "/resource"),
        ("OAUTH_TOKEN_CACHE_KEY", SERVE_CACHE_KEY),
    ]
    return [(name, value) for name, value in found if value is not None]


def _shell_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


def serve_demo(
    out: IO[str],
    port: int = 0,
    ready: Optional[Callable[[str], None]] = None,
    write: Optional[str] = None,
) -> int:
    """Run the demo authorization server until Ctrl-C, after printing how to use it.

    It prints ``export`` lines for every variable the documentation's examples read
    (:func:`serve_environment`) and the gateway file, or writes that file to ``write``.

    Args:
        out: a text stream for the instructions and the gateway file.
        port: the port on 127.0.0.1 (0: any free one).
        ready: called with the server's URL once it listens (tests).
        write: a path to save the gateway file to (mode 0600, atomic), instead of printing it.

    Returns:
        0 once interrupted with Ctrl-C.
    """
    import os
    import threading

    from ._helpers import replace_bytes

    server = DemoAuthServer(SERVE_CLIENT_ID, SERVE_CLIENT_SECRET, port=port)
    with server:
        document = json.dumps(serve_config(server.url), indent=2) + "\n"
        out.write(
            "oauth-gateway demo: an authorization server is listening on %s (127.0.0.1 only, plain HTTP)\n"
            "with the client %s and a protected resource at %s/resource.\n" % (server.url, SERVE_CLIENT_ID, server.url)
        )
        gateway_file = None
        if write:
            gateway_file = os.path.abspath(os.path.expanduser(write))
            replace_bytes(gateway_file, document.encode("utf-8"), 0o600)
            out.write("Wrote the gateway file %s (server %s).\n" % (gateway_file, SERVE_SERVER_NAME))
        else:
            out.write("Its gateway file (save it as demo.json, or run demo --serve --write demo.json):\n\n")
            out.write(document)
        out.write("\nIn another shell, in the same directory and virtualenv, paste these lines:\n\n")
        for name, value in serve_environment(server.url, gateway_file):
            out.write("export %s=%s\n" % (name, _shell_quote(value)))
        config_flag = "" if gateway_file else " --config demo.json"
        out.write(
            "\nthen try:\n\n"
            "  oauth-gateway validate %s\n"
            "  oauth-gateway token %s%s\n\n"
            "Press Ctrl-C to stop the server.\n"
            % ('"$OAUTH_GATEWAY_CONFIG"' if gateway_file else "demo.json", SERVE_SERVER_NAME, config_flag)
        )
        out.flush()
        if ready is not None:
            ready(server.url)
        stop = threading.Event()
        # Ctrl-C must stop it even when SIGINT was ignored by whoever started us (a shell
        # starts background jobs that way, and Python then installs no handler).
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.default_int_handler) if in_main else None
        try:
            while not stop.wait(3600.0):  # until Ctrl-C
                pass
        except KeyboardInterrupt:
            out.write(
                "\noauth-gateway demo: stopped after %d token request(s), %d revocation(s) and %d resource request(s)\n"
                % (server.count("/token"), server.count("/revoke"), server.count("/resource"))
            )
            out.flush()
        finally:
            if in_main:
                signal.signal(signal.SIGINT, previous)
    return 0
