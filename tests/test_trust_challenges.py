"""What a hostile resource server's 401 can make the client do, against real loopback servers.

* A 401 with 99 ``WWW-Authenticate`` lines of 64 KiB each (all http.client accepts) (issue 22, item 3): the one
  parser reads a capped prefix, the invalid_token challenge in it still counts, the call
  returns. Its cost ratio against one 64 KiB line is measured by bench/challenge_cost.py.
* A challenge whose ``resource_metadata`` names another origin (item 5, table row 6): nothing
  is fetched from it, by the auth object's recovery or by discovery, unless the config's
  ``OAUTH_RESOURCE_METADATA_URL`` names it; the error names the origins, never the answer
  of the other URL (no port oracle).
"""

from __future__ import annotations

import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List

import pytest
import requests

import oauth_gateway as og
from metadata_servers import MetadataServer, Route, requests_fetch
from oauth_gateway._access import access
from oauth_gateway._http import MAX_CHALLENGE_LENGTH, parse_www_authenticate
from oauth_gateway.discovery import Discoverer, DiscoveryError

#: http.client (under requests and urllib3) refuses a header line longer than 65536 bytes and
#: more than 100 lines counting the blank one that ends them: 99 lines of 64 KiB is the most a
#: response can deliver; test_http_rules.py parses 100 joined in memory.
LINE_BYTES = 64 * 1024
LINES = 99
_NAME = "WWW-Authenticate: "


def _hostile_lines() -> List[str]:
    """100 header values, each filling a 64 KiB line: the first starts with the real challenge."""
    room = LINE_BYTES - len(_NAME) - len("\r\n")
    first = 'Bearer error="invalid_token", realm="'
    lines = [first + "x" * (room - len(first) - 1) + '"']
    # Millions of one-letter schemes: the old auth.py parser sliced the rest of the header per scheme.
    lines += [("a, " * (room // 3 + 1))[:room] for _ in range(LINES - 1)]
    assert all(len(_NAME) + len(line) + 2 == LINE_BYTES for line in lines)
    return lines


class _HostileResource(ThreadingHTTPServer):
    """An HTTPS resource server on 127.0.0.1 that answers every request 401 with :data:`LINES` lines."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, ca: Any) -> None:
        self.lines = _hostile_lines()
        self.authorizations: List[str] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _HostileHandler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.url = "https://127.0.0.1:%d/resource" % self.server_address[1]


class _HostileHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # the body ends when the connection closes: no Content-Length line
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass

    def do_GET(self) -> None:
        server: _HostileResource = self.server  # type: ignore[assignment]
        with server.lock:
            server.authorizations.append(self.headers.get("Authorization", ""))
        self.send_response_only(401)  # no Server or Date line: exactly LINES header lines
        for line in server.lines:
            self.send_header("WWW-Authenticate", line)
        self.end_headers()


@pytest.fixture
def hostile(ca) -> Iterator[_HostileResource]:
    server = _HostileResource(ca)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_trust_a_401_of_100_lines_of_64_kib_is_read_capped_and_recovered_once(
    hostile, auth_server, make_block, manager, ca_bundle
):
    config = og.OAuthConfig.from_dict(make_block(auth_server))
    with requests.Session() as session:
        session.trust_env = False
        session.verify = ca_bundle
        response = session.get(hostile.url, auth=manager.auth("oauth-api", config))

    # The call returned, and the invalid_token challenge inside the cap was read: one
    # recovery with a new token, whose replay got the 401 that is returned.
    assert response.status_code == 401 and len(response.history) == 1
    assert auth_server.count("/token") == 2
    assert hostile.authorizations == ["Bearer " + token for token in auth_server.issued_history[:2]]
    # The whole header arrived (requests joins the lines), and the parser read only the cap of it.
    header = response.headers["WWW-Authenticate"]
    assert len(header) > LINES * (LINE_BYTES - 100)
    challenges = parse_www_authenticate(header)
    assert challenges == parse_www_authenticate(header[:MAX_CHALLENGE_LENGTH])
    assert challenges[0].scheme == "Bearer" and challenges[0].error == "invalid_token"
    assert len(challenges) == 1  # the first line's realm runs past the cap


# --------------------------------------------------------------------------- resource_metadata's origin


class _Scene:
    """An MCP server, its authorization server (serving its own metadata: the token endpoint is on
    the issuer's origin), and an internal server."""

    def __init__(self, meta: MetadataServer, token_server: Any, internal: MetadataServer) -> None:
        self.meta, self.token_server, self.internal = meta, token_server, internal
        self.mcp = meta.url + "/mcp"
        self.issuer = token_server.publish_metadata()
        self.prm = "/.well-known/oauth-protected-resource/mcp"
        meta.json(self.prm, {"resource": self.mcp, "authorization_servers": [self.issuer]})
        meta.challenge("/mcp", resource_metadata=meta.url + self.prm)
        #: An internal URL (another port of 127.0.0.1, like a cloud metadata service).
        self.internal_url = internal.url + "/latest/meta-data/iam?role=admin"
        internal.route("/latest/meta-data/iam", Route(json={"secret": "internal"}))

    def block(self, ca_bundle: str, **extra: Any) -> Dict[str, Any]:
        client_id, secret = next(iter(self.token_server.clients.items()))
        block = {
            "enabled": True,
            "OAUTH_CLIENT_ID": client_id,
            "OAUTH_CLIENT_SECRET": secret,
            "OAUTH_RESOURCE": self.mcp,
            "OAUTH_ISSUER": self.issuer,
            "OAUTH_CA_BUNDLE_PATH": ca_bundle,
        }
        block.update(extra)
        return block


@pytest.fixture
def scene(ca, make_server) -> Iterator[_Scene]:
    token_server = make_server()
    with MetadataServer(ca) as meta, MetadataServer(ca) as internal:
        yield _Scene(meta, token_server, internal)


@pytest.fixture
def discoverer(ca_bundle) -> Iterator[Discoverer]:
    with requests.Session() as session:
        session.trust_env = False
        session.verify = ca_bundle
        yield Discoverer(requests_fetch(session))


def test_trust_the_auth_recovery_never_follows_a_challenge_to_another_origin(scene, ca_bundle, clock, caplog):
    config = og.OAuthConfig.from_dict(scene.block(ca_bundle))
    manager = og.TokenManager(clock=clock)
    first = manager.get_token("mcp", config)
    assert scene.meta.count(scene.prm) == 1
    # Now the server's 401 points the client at an internal URL.
    scene.meta.challenge("/mcp", resource_metadata=scene.internal_url)
    with requests.Session() as session:
        session.trust_env = False  # else $REQUESTS_CA_BUNDLE would replace verify
        session.verify = ca_bundle
        answer = session.post(scene.mcp, json={"jsonrpc": "2.0", "id": 1}, auth=manager.auth("mcp", config))

    assert answer.status_code == 401 and len(answer.history) == 1  # recovered once with a new token
    assert answer.request.headers["Authorization"] != first.authorization
    assert scene.internal.count() == 0  # nothing was sent to the internal server
    assert scene.meta.count(scene.prm) == 1  # and the cached discovery was kept
    assert scene.token_server.count("/token") == 2
    assert any("not on the server's origin" in r.getMessage() for r in caplog.records)
    assert not any("meta-data" in r.getMessage() for r in caplog.records)
    manager.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_trust_discovery_never_fetches_a_challenge_url_on_another_origin_and_says_nothing_of_it(scene, discoverer):
    errors = []
    closed = "https://127.0.0.1:%d/latest/meta-data/iam" % _closed_port()
    for target in (scene.internal_url, closed):
        scene.meta.challenge("/mcp", resource_metadata=target)
        discoverer.clear()
        with pytest.raises(DiscoveryError) as info:
            discoverer.protected_resource(scene.mcp, scene.issuer)
        errors.append(info.value)
    assert scene.internal.count() == 0
    for error in errors:
        text = str(error)
        assert "not on the server's origin" in text and "OAUTH_RESOURCE_METADATA_URL" in text
        assert "meta-data" not in text and "HTTP" not in text and "refused" not in text.lower()
        assert error.step == "protected resource metadata" and error.retryable is False
    # An open port and a closed one give the same error, but for the port number in the origin.
    open_port, closed_port = scene.internal.url.rsplit(":", 1)[1], closed.split(":")[2].split("/")[0]
    assert str(errors[0]).replace(open_port, "PORT") == str(errors[1]).replace(closed_port, "PORT")


def test_trust_the_configured_resource_metadata_url_may_be_on_another_origin(scene, ca_bundle, clock):
    elsewhere = scene.internal.url + "/prm/mcp"
    scene.internal.json("/prm/mcp", {"resource": scene.mcp, "authorization_servers": [scene.issuer]})
    scene.meta.challenge("/mcp", resource_metadata=elsewhere)
    config = og.OAuthConfig.from_dict(scene.block(ca_bundle, OAUTH_RESOURCE_METADATA_URL=elsewhere))
    manager = og.TokenManager(clock=clock)
    token = manager.get_token("mcp", config)
    assert token.access_token in scene.token_server.issued
    assert scene.internal.count("/prm/mcp") == 1
    assert access(manager).resolve(config).token_url == scene.token_server.token_url
    manager.close()


def test_trust_the_configured_resource_metadata_url_is_used_when_the_challenge_names_none(scene, discoverer):
    elsewhere = scene.internal.url + "/prm/mcp"
    scene.internal.json("/prm/mcp", {"resource": scene.mcp, "authorization_servers": [scene.issuer]})
    scene.meta.challenge("/mcp", resource_metadata=None)
    result = discoverer.protected_resource(scene.mcp, scene.issuer, resource_metadata_url=elsewhere)
    assert result.resource_metadata_url == elsewhere and result.issuer == scene.issuer
    assert scene.internal.count("/prm/mcp") == 1 and scene.meta.count(scene.prm) == 0
