"""Workload identity sources (``OAUTH_CLIENT_ASSERTION_SOURCE``) against loopback platforms.

The GitHub Actions and GCP metadata servers below implement the documented endpoints
(request shape, headers, audience parameter, answer shape) and are found through the
same environment variables the platforms set (``ACTIONS_ID_TOKEN_REQUEST_URL`` and
``ACTIONS_ID_TOKEN_REQUEST_TOKEN``; ``GCE_METADATA_HOST``). The token server
(tests/servers.py) issues a token only for the assertions a test registers, so a token
proves that the platform's JWT reached it.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from email.message import Message
from typing import Any, Dict, List, Tuple
from urllib.parse import parse_qs, urlsplit

import pytest

import oauth_gateway as og
from loopback import LoopbackServer, Reply
from oauth_gateway._access import access
from oauth_gateway._workload import KUBERNETES_TOKEN_PATH, assertion_source
from servers import JWT_BEARER_GRANT

AUDIENCE = "https://auth.example.com"
REQUEST_TOKEN = "gha-request-token-3f9c"


def _jwt(lifetime: float = 600, **claims: Any) -> str:
    """An unsigned-looking JWT (the library checks shape and ``exp``; the server checks the value)."""

    def part(value: Dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    now = time.time()
    claims.setdefault("iat", int(now))
    claims.setdefault("exp", int(now + lifetime))
    claims.setdefault("iss", "https://token.actions.githubusercontent.com")
    claims.setdefault("sub", "repo:example/gateway:ref:refs/heads/main")
    return "%s.%s.c2lnbmF0dXJl" % (part({"alg": "RS256", "typ": "JWT"}), part(claims))


class Platform(LoopbackServer):
    """Hands out the JWTs queued with :meth:`issue`; records ``(method, path, query, headers)``."""

    def __init__(self, ca: Any, answer: str) -> None:
        super().__init__(ca)
        self.answer = answer  # "github" (JSON {"value": ...}) or "gcp" (the JWT as text)
        self.tokens: List[str] = []
        self.path = ""
        self.status = 200
        self._served = threading.Lock()

    def issue(self, *tokens: str) -> None:
        self.tokens.extend(tokens)

    def respond(self, method: str, target: str, headers: Message, body: bytes) -> Reply:
        parts = urlsplit(target)
        self.record((method, parts.path, parse_qs(parts.query), {k.lower(): v for k, v in headers.items()}))
        if parts.path != self.path or self.status != 200:
            return self.status if parts.path == self.path else 404, [], b""
        with self._served:
            token = self.tokens.pop(0) if len(self.tokens) > 1 else self.tokens[0]
        if self.answer == "github":
            payload = json.dumps({"count": 1, "value": token}).encode()
            return 200, [("Content-Type", "application/json; charset=utf-8")], payload
        return 200, [("Content-Type", "application/text"), ("Metadata-Flavor", "Google")], token.encode()


@pytest.fixture
def github(ca, monkeypatch):
    with Platform(ca, "github") as server:
        server.path = "/_apis/pipelines/1/runs/7/idtoken"
        # GitHub's URL already carries a query (api-version): audience is appended to it.
        monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", server.url + server.path + "?api-version=2.0")
        monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN)
        yield server


@pytest.fixture
def gcp(monkeypatch):
    with Platform(None, "gcp") as server:  # the metadata server speaks plain http
        server.path = "/computeMetadata/v1/instance/service-accounts/default/identity"
        monkeypatch.setenv("GCE_METADATA_HOST", server.url.split("://", 1)[1])
        yield server


def _bearer_config(make_block, auth_server, source: Dict[str, str]) -> og.OAuthConfig:
    block = make_block(
        auth_server,
        OAUTH_GRANT_TYPE=JWT_BEARER_GRANT,
        OAUTH_CLIENT_ASSERTION_SOURCE=source,
        omit=("OAUTH_CLIENT_SECRET",),
    )
    return og.OAuthConfig.from_dict(block)


def test_github_actions_token_is_requested_as_documented_and_is_the_jwt_bearer_assertion(
    github, auth_server, make_block
):
    jwt = _jwt()
    github.issue(jwt)
    auth_server.accept_assertions(jwt)
    config = _bearer_config(make_block, auth_server, {"type": "github_actions", "audience": AUDIENCE})

    token = og.TokenManager().get_token("workload", config)

    assert token.access_token in auth_server.issued
    ((method, path, query, headers),) = github.records
    assert (method, path) == ("GET", github.path)
    assert query == {"api-version": ["2.0"], "audience": [AUDIENCE]}
    assert headers["authorization"] == "bearer " + REQUEST_TOKEN
    (record,) = auth_server.requests_to("/token")
    assert record.grant_type == JWT_BEARER_GRANT and record.first("assertion") == jwt
    # No secret and no key: no client authentication, only the client_id.
    assert record.basic_auth is None and record.first("client_assertion") is None
    assert record.first("client_secret") is None


def test_a_fetched_jwt_is_kept_until_near_its_exp_and_fetched_again_after(github, auth_server, make_block):
    long_lived, near_exp, fresh = _jwt(3600), _jwt(iat=int(time.time()) - 3560, exp=int(time.time()) + 40), _jwt()
    auth_server.accept_assertions(long_lived, near_exp, fresh)
    manager = og.TokenManager()
    config = _bearer_config(make_block, auth_server, {"type": "github_actions", "audience": AUDIENCE})

    github.issue(long_lived)
    manager.get_token("workload", config)
    manager.refresh("workload", config)
    assert len(github.records) == 1  # two token requests, one platform request
    assert [r.first("assertion") for r in auth_server.requests_to("/token")] == [long_lived, long_lived]

    # 40 s left of a one-hour JWT is inside the refresh margin: fetched anew each time.
    other = og.OAuthConfig.from_dict(dict(config.to_dict(), OAUTH_SCOPE="other"))
    github.tokens[:] = [near_exp, fresh]
    manager.get_token("workload-2", other)
    manager.refresh("workload-2", other)
    assert len(github.records) == 3
    assert [r.first("assertion") for r in auth_server.requests_to("/token")][2:] == [near_exp, fresh]


def test_an_expired_platform_jwt_is_never_sent(github, auth_server, make_block):
    github.issue(_jwt(exp=int(time.time()) - 60))
    config = _bearer_config(make_block, auth_server, {"type": "github_actions", "audience": AUDIENCE})
    with pytest.raises(og.ConfigError) as info:
        og.TokenManager().get_token("workload", config)
    assert "GitHub Actions OIDC token" in str(info.value) and "expired" in str(info.value)
    assert auth_server.count("/token") == 0


def test_a_refused_assertion_is_one_error_with_no_second_request(github, auth_server, make_block):
    github.issue(_jwt())
    auth_server.accept_assertions("another-assertion")
    config = _bearer_config(make_block, auth_server, {"type": "github_actions", "audience": AUDIENCE})
    with pytest.raises(og.TokenRequestError) as info:
        og.TokenManager().get_token("workload", config)
    assert info.value.error == "invalid_grant"
    assert [r.grant_type for r in auth_server.requests_to("/token")] == [JWT_BEARER_GRANT]  # no fallback grant


def test_github_actions_without_its_variables_names_them(github, auth_server, make_block, monkeypatch):
    monkeypatch.delenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    config = _bearer_config(make_block, auth_server, {"type": "github_actions", "audience": AUDIENCE})
    with pytest.raises(og.ConfigError) as info:
        og.TokenManager().get_token("workload", config)
    assert "ACTIONS_ID_TOKEN_REQUEST_TOKEN" in str(info.value) and "id-token: write" in str(info.value)
    assert info.value.json_path.endswith("OAUTH_CLIENT_ASSERTION_SOURCE")
    assert github.records == [] and auth_server.count("/token") == 0


def test_gcp_metadata_identity_token_is_requested_as_documented_and_sent_as_client_assertion(
    gcp, auth_server, make_block
):
    jwt = _jwt(iss="https://accounts.google.com", sub="1234567890")
    gcp.issue(jwt)
    block = make_block(
        auth_server,
        OAUTH_CLIENT_ASSERTION_SOURCE={"type": "gcp_metadata", "audience": AUDIENCE},
        omit=("OAUTH_CLIENT_SECRET",),
    )
    config = og.OAuthConfig.from_dict(block)
    assert config.auth_method == "private_key_jwt"

    with pytest.raises(og.TokenRequestError):  # the test server knows no such client assertion
        og.TokenManager().get_token("workload", config)

    ((method, path, query, headers),) = gcp.records
    assert (method, path) == ("GET", gcp.path)
    assert query == {"audience": [AUDIENCE], "format": ["full"]}
    assert headers["metadata-flavor"] == "Google"
    assert "authorization" not in headers
    (record,) = auth_server.requests_to("/token")
    assert record.grant_type == "client_credentials"
    assert record.first("client_assertion") == jwt
    assert record.first("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def test_gcp_metadata_host_is_read_like_google_auth(monkeypatch):
    def url_of(environ: Dict[str, str]) -> Tuple[str, Dict[str, str]]:
        source = assertion_source({"type": "gcp_metadata", "audience": AUDIENCE}, lambda *args: (500, {}, b""), environ)
        return source.request()  # type: ignore[attr-defined, no-any-return]

    assert url_of({})[0].startswith("http://metadata.google.internal/computeMetadata/v1/")
    assert url_of({"GCE_METADATA_ROOT": "root.example:8080"})[0].startswith("http://root.example:8080/")
    both = {"GCE_METADATA_HOST": "host.example", "GCE_METADATA_ROOT": "root.example"}
    assert url_of(both)[0].startswith("http://host.example/")


def test_a_kubernetes_token_rotated_between_two_requests_reaches_the_server(tmp_path, auth_server, make_block):
    path = tmp_path / "serviceaccount" / "token"
    path.parent.mkdir()
    first, second = _jwt(sub="system:serviceaccount:mcp:gateway"), _jwt(sub="system:serviceaccount:mcp:gateway", n=2)
    path.write_text(first)
    auth_server.accept_assertions(first)
    manager = og.TokenManager()
    config = _bearer_config(make_block, auth_server, {"type": "kubernetes", "path": str(path)})
    manager.get_token("workload", config)

    path.write_text(second)  # the kubelet rotates the projected token
    auth_server.accept_assertions(second)
    manager.refresh("workload", config)

    assert [r.first("assertion") for r in auth_server.requests_to("/token")] == [first, second]


def test_kubernetes_defaults_to_the_projected_service_account_path():
    source = assertion_source({"type": "kubernetes"})
    assert source.path == KUBERNETES_TOKEN_PATH == "/var/run/secrets/kubernetes.io/serviceaccount/token"  # type: ignore[attr-defined]


def test_the_file_source_and_its_short_form_send_the_same(tmp_path, auth_server, make_block):
    path = tmp_path / "token"
    jwt = _jwt()
    path.write_text(jwt)
    auth_server.accept_assertions(jwt)
    long_form = _bearer_config(make_block, auth_server, {"type": "file", "path": str(path)})
    short_form = og.OAuthConfig.from_dict(
        make_block(
            auth_server,
            OAUTH_GRANT_TYPE=JWT_BEARER_GRANT,
            OAUTH_CLIENT_ASSERTION_FILE=str(path),
            omit=("OAUTH_CLIENT_SECRET",),
        )
    )
    og.TokenManager().get_token("a", long_form)
    og.TokenManager().get_token("b", short_form)
    assert [r.first("assertion") for r in auth_server.requests_to("/token")] == [jwt, jwt]


def test_both_forms_at_once_are_refused(tmp_path, auth_server, make_block):
    block = make_block(
        auth_server,
        OAUTH_CLIENT_ASSERTION_FILE=str(tmp_path / "t"),
        OAUTH_CLIENT_ASSERTION_SOURCE={"type": "kubernetes"},
        omit=("OAUTH_CLIENT_SECRET",),
    )
    with pytest.raises(og.ConfigError) as info:
        og.OAuthConfig.from_dict(block)
    assert info.value.json_path.endswith("OAUTH_CLIENT_ASSERTION_SOURCE")


@pytest.mark.parametrize(
    "source, where",
    [
        ({"type": "github_actions"}, "audience"),
        ({"type": "file"}, "path"),
        ({"type": "gcp_metadata", "audience": AUDIENCE, "path": "/x"}, "OAUTH_CLIENT_ASSERTION_SOURCE"),
        ({"path": "/x"}, "OAUTH_CLIENT_ASSERTION_SOURCE"),
        ({"type": "aws"}, "type"),
    ],
)
def test_the_schema_checks_each_type_and_its_keys(source, where):
    problems = og.validate_config(
        {
            "enabled": True,
            "OAUTH_CLIENT_ID": "c",
            "OAUTH_TOKEN_URL": "https://a/t",
            "OAUTH_CLIENT_ASSERTION_SOURCE": source,
        }
    )
    assert [p.json_path for p in problems if p.json_path.endswith(where)], problems


def test_the_source_enters_the_fingerprint_and_no_repr_shows_a_fetched_jwt(github, auth_server, make_block):
    jwt = _jwt()
    github.issue(jwt)
    auth_server.accept_assertions(jwt)
    a = _bearer_config(make_block, auth_server, {"type": "github_actions", "audience": AUDIENCE})
    b = _bearer_config(make_block, auth_server, {"type": "github_actions", "audience": AUDIENCE + "/other"})
    assert a.fingerprint != b.fingerprint
    manager = og.TokenManager()
    manager.get_token("workload", a)
    assert jwt not in repr(manager) and jwt not in repr(a)


def test_a_discovered_server_that_takes_private_key_jwt_gets_the_source_as_client_assertion(ca, tmp_path):
    from metadata_servers import MetadataServer

    path = tmp_path / "token"
    path.write_text(_jwt())
    with MetadataServer(ca) as meta:
        document = meta.as_document(token_endpoint_auth_methods_supported=["private_key_jwt"])
        urls = meta.publish(as_document=document)
        config = og.OAuthConfig.from_dict(
            {
                "enabled": True,
                "OAUTH_CLIENT_ID": "workload",
                "OAUTH_RESOURCE": urls["mcp"],
                "OAUTH_ISSUER": urls["issuer"],
                "OAUTH_CA_BUNDLE_PATH": meta.ca_bundle,
                "OAUTH_CLIENT_ASSERTION_SOURCE": {"type": "kubernetes", "path": str(path)},
            }
        )
        resolved = access(og.TokenManager()).resolve(config)
    assert resolved.auth_method == "private_key_jwt"


def test_threads_that_need_a_fetched_jwt_at_once_share_one_fetch():
    jwt = _jwt()
    entered, release = threading.Event(), threading.Event()
    calls: List[str] = []

    def fetch(method, url, headers, body, deadline):
        calls.append(url)
        entered.set()
        assert release.wait(10)
        return 200, {}, json.dumps({"value": jwt}).encode()

    environ = {"ACTIONS_ID_TOKEN_REQUEST_URL": "https://gh.example/idtoken?x=1", "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "t"}
    source = assertion_source({"type": "github_actions", "audience": AUDIENCE}, fetch, environ)
    got: List[str] = []

    def ask() -> None:
        got.append(source.assertion(time.time()).text)

    threads = [threading.Thread(target=ask) for _ in range(6)]
    threads[0].start()
    assert entered.wait(10)  # the leader is inside its fetch
    for thread in threads[1:]:
        thread.start()
    flight = source._flights._flights[source.kind]  # type: ignore[attr-defined]
    for _ in range(1000):  # bounded: until the five others wait on the leader's flight
        with source._lock:  # type: ignore[attr-defined]
            if len(flight._done._waiters) == 5:
                break
        threads[1].join(0.01)
    else:
        pytest.fail("the other threads never waited on the leader")
    release.set()
    for thread in threads:
        thread.join(10)
    assert got == [jwt] * 6
    assert len(calls) == 1
