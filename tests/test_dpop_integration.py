"""DPoP and certificate-bound tokens through the library, against real servers.

oidc-provider (tests/oidc_provider.py) issues DPoP-bound and certificate-bound tokens,
with and without required nonces; tests/dpop_servers.py's resource server checks every
proof on its own. Token requests are counted from urllib3's own request log (one line
per HTTP request sent), resource requests by the resource server.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import pickle
import subprocess
import sys
from typing import Any, Dict, Iterator, List, Tuple
from urllib.parse import urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import oauth_gateway as og
from dpop_servers import DPoPResourceServer
from dpop_servers import jwk_thumbprint as server_thumbprint
from metadata_servers import MetadataServer, Route
from oauth_gateway._access import access
from oauth_gateway._jwt import certificate_thumbprints
from oauth_gateway.contrib.file_cache import FileTokenCache
from oauth_gateway.dpop import _token_confirmation
from oauth_gateway.injection import _injected_entry
from oidc_provider import JWT_RESOURCE, OidcProvider, oidc_provider, oidc_provider_dpop_nonce  # noqa: F401 (fixtures)

TIMEOUT = 10


# --------------------------------------------------------------------------- helpers


class RequestLog(logging.Handler):
    """urllib3's request lines (``"POST /token HTTP/1.1" 400``), kept to count requests."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def statuses(self, url: str, method: str = "POST") -> List[int]:
        """The status of every ``method`` request sent to ``url``'s path, in order."""
        marker = '"%s %s ' % (method, urlsplit(url).path)
        return [int(line.split('" ', 1)[1].split()[0]) for line in self.lines if marker in line]


class OneShotBody:
    """A request body read once: it has a length but no position, so it cannot be rewound."""

    def __init__(self, data: bytes) -> None:
        self._stream = io.BytesIO(data)
        self._length = len(data)

    def __len__(self) -> int:
        return self._length

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@pytest.fixture
def requests_sent() -> Iterator[RequestLog]:
    handler = RequestLog()
    logger = logging.getLogger("urllib3.connectionpool")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def dpop_config(provider: OidcProvider, **extra: Any) -> og.OAuthConfig:
    client_id, secret = provider.clients["dpop"]
    options: Dict[str, Any] = {
        "client_id": client_id,
        "client_secret": secret,
        "token_url": provider.token_url,
        "ca_bundle_path": str(provider.ca_file),
        "resources": [JWT_RESOURCE],
        "scope": "read",
        "use_basic_auth": True,
        "dpop": True,
    }
    options.update(extra)
    return og.OAuthConfig(**options)


def mtls_config(provider: OidcProvider, client: str = "mtls-bound", **extra: Any) -> og.OAuthConfig:
    options: Dict[str, Any] = {
        "client_id": provider.clients[client][0],
        "token_url": provider.token_url,
        "ca_bundle_path": str(provider.ca_file),
        "resources": [JWT_RESOURCE],
        "scope": "read",
        "use_mtls": True,
        "client_cert_path": str(provider.client_cert_file),
        "client_key_path": str(provider.client_key_file),
        "token_endpoint_auth_method": "tls_client_auth",
    }
    options.update(extra)
    return og.OAuthConfig(**options)


@pytest.fixture
def manager() -> Iterator[og.TokenManager]:
    with og.TokenManager() as made:
        yield made


@pytest.fixture
def session(ca_bundle: str) -> Iterator[requests.Session]:
    with requests.Session() as http:
        http.trust_env = False  # REQUESTS_CA_BUNDLE would win over verify
        http.verify = ca_bundle
        yield http


@pytest.fixture
def resource_server(ca: Any) -> Iterator[DPoPResourceServer]:
    with DPoPResourceServer(ca) as server:
        yield server


@pytest.fixture
def nonce_resource_server(ca: Any) -> Iterator[DPoPResourceServer]:
    with DPoPResourceServer(ca, require_nonce=True) as server:
        yield server


# --------------------------------------------------------------------------- token requests


def test_a_dpop_token_takes_one_token_request_without_required_nonces(
    oidc_provider: OidcProvider,
    manager: og.TokenManager,
    requests_sent: RequestLog,  # noqa: F811
) -> None:
    config = dpop_config(oidc_provider)

    token = manager.get_token("dpop-api", config)
    again = manager.get_token("dpop-api", config)

    assert requests_sent.statuses(oidc_provider.token_url) == [200]
    assert again is token
    assert token.token_type == "DPoP"
    assert token.authorization == "DPoP " + token.access_token
    key = access(manager).dpop_key(config)
    assert key is not None and _token_confirmation(token.access_token) == {"jkt": key.jkt}


def test_a_required_nonce_costs_one_extra_token_request_the_first_time_only(
    oidc_provider_dpop_nonce: OidcProvider,
    manager: og.TokenManager,
    requests_sent: RequestLog,  # noqa: F811
) -> None:
    config = dpop_config(oidc_provider_dpop_nonce)

    first = manager.get_token("dpop-api", config)
    first_statuses = requests_sent.statuses(oidc_provider_dpop_nonce.token_url)
    second = manager.refresh("dpop-api", config)

    assert first_statuses == [400, 200]
    assert requests_sent.statuses(oidc_provider_dpop_nonce.token_url) == [400, 200, 200]
    assert first.token_type == second.token_type == "DPoP"
    assert first.access_token != second.access_token
    # The nonce answer is not a retry: OAUTH_MAX_RETRIES and its counter are untouched.
    assert manager.get_metrics()["token_retries"] == 0


def test_the_dpop_key_is_one_per_manager_and_config_and_never_pickled(
    oidc_provider: OidcProvider,  # noqa: F811
) -> None:
    config = dpop_config(oidc_provider)
    with og.TokenManager() as one, og.TokenManager() as other:
        key = access(one).dpop_key(config)
        assert key is not None and access(one).dpop_key(config) is key
        assert access(other).dpop_key(config) is not key
        assert access(one).dpop_key(dpop_config(oidc_provider, scope="write")) is not key
        with pytest.raises(TypeError, match="not picklable"):
            pickle.dumps(key)


def test_a_persistent_dpop_key_binds_the_token_to_that_key(
    oidc_provider: OidcProvider,
    manager: og.TokenManager,
    tmp_path: Any,  # noqa: F811
) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "dpop.key"
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    os.chmod(str(path), 0o600)
    numbers = private.public_key().public_numbers()
    expected = server_thumbprint(
        {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64url(numbers.x.to_bytes(32, "big")),
            "y": _b64url(numbers.y.to_bytes(32, "big")),
        }
    )

    token = manager.get_token("dpop-api", dpop_config(oidc_provider, dpop_key_path=str(path)))

    assert _token_confirmation(token.access_token) == {"jkt": expected}


def test_a_bearer_answer_to_a_dpop_request_is_a_binding_error_and_not_cached(
    auth_server: Any, make_block: Any, manager: og.TokenManager
) -> None:
    # tests/servers.py's server ignores DPoP and issues Bearer tokens.
    config = og.OAuthConfig.from_dict(make_block(auth_server, OAUTH_DPOP=True))

    with pytest.raises(og.TokenBindingError, match="token_type 'Bearer', not 'DPoP'") as caught:
        manager.get_token("dpop-api", config)

    assert caught.value.confirmation == "token_type"
    assert list(manager._cache.keys()) == []
    assert auth_server.count("/token") == 1


def test_dpop_without_pyjwt_is_a_config_error_naming_the_extra() -> None:
    code = (
        "import sys; sys.modules['jwt'] = None\n"
        "import oauth_gateway as og\n"
        "try:\n"
        "    og.OAuthConfig(client_id='c', client_secret='s', token_url='https://idp/token', dpop=True)\n"
        "except og.ConfigError as exc:\n"
        "    print(exc.json_path, '|', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)

    assert out.stdout.startswith("$.OAUTH_DPOP |"), out.stdout + out.stderr
    assert "oauth-gateway[jwt]" in out.stdout


def test_a_missing_dpop_key_file_is_a_config_error_at_its_key(tmp_path: Any) -> None:
    with pytest.raises(og.ConfigError) as caught:
        og.OAuthConfig(
            client_id="c",
            client_secret="s",
            token_url="https://idp/token",
            dpop=True,
            dpop_key_path=str(tmp_path / "missing.key"),
        )

    assert caught.value.json_path == "$.OAUTH_DPOP_KEY_PATH"


# --------------------------------------------------------------------------- the requests auth


def test_manager_auth_sends_a_verified_proof_with_every_request(
    oidc_provider: OidcProvider,  # noqa: F811
    manager: og.TokenManager,
    session: requests.Session,
    resource_server: DPoPResourceServer,
    requests_sent: RequestLog,
) -> None:
    config = dpop_config(oidc_provider)
    session.auth = manager.auth("dpop-api", config)

    answers = [session.get(resource_server.url + "/mcp?page=%d" % i, timeout=TIMEOUT) for i in range(3)]
    answers.append(session.post(resource_server.url + "/mcp", data=b'{"jsonrpc": "2.0"}', timeout=TIMEOUT))

    assert [answer.status_code for answer in answers] == [200, 200, 200, 200], [
        item.reason for item in resource_server.checked
    ]
    key = access(manager).dpop_key(config)
    assert key is not None
    assert resource_server.count() == 4
    assert {item.jkt for item in resource_server.checked} == {key.jkt}
    assert requests_sent.statuses(oidc_provider.token_url) == [200]


def test_a_resource_nonce_costs_one_repeat_then_one_request_each(
    oidc_provider: OidcProvider,  # noqa: F811
    manager: og.TokenManager,
    session: requests.Session,
    nonce_resource_server: DPoPResourceServer,
) -> None:
    session.auth = manager.auth("dpop-api", dpop_config(oidc_provider))
    url = nonce_resource_server.url + "/mcp"

    first = session.post(url, data=b"first", timeout=TIMEOUT)
    after_first = nonce_resource_server.count()
    second = session.get(url, timeout=TIMEOUT)
    after_second = nonce_resource_server.count()
    nonce_resource_server.rotate_nonce()
    third = session.get(url, timeout=TIMEOUT)

    assert [first.status_code, second.status_code, third.status_code] == [200, 200, 200]
    assert [item.status_code for item in first.history] == [401]
    assert second.history == []
    assert (after_first, after_second, nonce_resource_server.count()) == (2, 3, 5)
    assert nonce_resource_server.count("use_dpop_nonce") == 2


def test_nonces_on_both_servers_cost_one_extra_request_each_the_first_time(
    oidc_provider_dpop_nonce: OidcProvider,  # noqa: F811
    manager: og.TokenManager,
    session: requests.Session,
    nonce_resource_server: DPoPResourceServer,
    requests_sent: RequestLog,
) -> None:
    session.auth = manager.auth("dpop-api", dpop_config(oidc_provider_dpop_nonce))
    url = nonce_resource_server.url + "/mcp"

    answers = [session.get(url, timeout=TIMEOUT) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert requests_sent.statuses(oidc_provider_dpop_nonce.token_url) == [400, 200]
    assert nonce_resource_server.count() == 4  # 2 for the first request, then 1 each


def test_a_body_that_cannot_be_rewound_is_not_repeated_after_a_nonce_challenge(
    oidc_provider: OidcProvider,  # noqa: F811
    manager: og.TokenManager,
    session: requests.Session,
    nonce_resource_server: DPoPResourceServer,
) -> None:
    session.auth = manager.auth("dpop-api", dpop_config(oidc_provider))
    url = nonce_resource_server.url + "/mcp"

    answer = session.post(url, data=OneShotBody(b"ab"), timeout=TIMEOUT)
    again = session.post(url, data=b"ab", timeout=TIMEOUT)

    assert answer.status_code == 401
    assert "DPoP nonce received; request not replayed" in answer.reason
    assert "position cannot be read" in answer.reason
    assert again.status_code == 200 and again.history == []  # the nonce was remembered
    assert nonce_resource_server.count() == 2


def test_a_bearer_config_keeps_the_plain_auth_object(auth_server: Any, make_block: Any) -> None:
    config = og.OAuthConfig.from_dict(make_block(auth_server))
    with og.TokenManager() as manager:
        auth = manager.auth("api", config)
    assert type(auth) is og.TokenAuth
    assert type(og.TokenAuth(manager, "api", og.OAuthConfig(**dict(_DPOP_OPTIONS)))).__name__ == "DPoPTokenAuth"


_DPOP_OPTIONS = (("client_id", "c"), ("client_secret", "s"), ("token_url", "https://idp/token"), ("dpop", True))


# --------------------------------------------------------------------------- binding checks (mTLS)


def test_a_certificate_bound_token_matching_our_certificate_is_used(
    oidc_provider: OidcProvider,
    manager: og.TokenManager,
    caplog: Any,  # noqa: F811
) -> None:
    config = mtls_config(oidc_provider)
    _, ours, _ = certificate_thumbprints(str(oidc_provider.client_cert_file))

    with caplog.at_level(logging.WARNING, logger="oauth_gateway"):
        token = manager.get_token("mtls-api", config)

    assert token.token_type == "Bearer"
    assert _token_confirmation(token.access_token) == {"x5t#S256": ours}
    assert not [r for r in caplog.records if "not bound to the client certificate" in r.getMessage()]


def test_a_token_bound_to_another_certificate_is_refused_before_use(
    oidc_provider: OidcProvider,
    manager: og.TokenManager,
    tmp_path: Any,  # noqa: F811
) -> None:
    # Our certificate files are renewed on disk (same CA and subject, another key pair)
    # while the pooled connection still presents the old certificate: the token the
    # server then binds to the old certificate is not bound to ours.
    cert_file, key_file = tmp_path / "client.pem", tmp_path / "client.key"
    cert_file.write_bytes(oidc_provider.client_cert_file.read_bytes())
    key_file.write_bytes(oidc_provider.client_key_file.read_bytes())
    os.chmod(str(key_file), 0o600)
    config = mtls_config(oidc_provider, client_cert_path=str(cert_file), client_key_path=str(key_file))
    first = manager.get_token("mtls-api", config)
    _, old, _ = certificate_thumbprints(str(cert_file))
    renewed = oidc_provider.ca.issue_cert(
        "client@example.test",
        common_name="oauth-gateway-test-client",
        organization_name="oauth-gateway",
        organization_unit_name="conformance-tests",
    )
    renewed.cert_chain_pems[0].write_to_path(str(cert_file))
    renewed.private_key_pem.write_to_path(str(key_file))
    _, new, _ = certificate_thumbprints(str(cert_file))

    with pytest.raises(og.TokenBindingError) as caught:
        manager.refresh("mtls-api", config)

    assert (caught.value.confirmation, caught.value.expected, caught.value.actual) == ("x5t#S256", new, old)
    assert manager.get_token("mtls-api", config) is first  # the refused token was never cached
    assert first.access_token not in str(caught.value)


def _unsigned_jwt(claims: Dict[str, Any]) -> str:
    header = _b64url(json.dumps({"alg": "ES256", "typ": "at+jwt"}).encode("utf-8"))
    return "%s.%s.%s" % (header, _b64url(json.dumps(claims).encode("utf-8")), _b64url(b"not-checked-here"))


def test_a_discovered_server_promising_bound_tokens_without_cnf_is_a_warning(
    ca: Any, ca_bundle: str, client_cert: Tuple[str, str], manager: og.TokenManager, caplog: Any
) -> None:
    with MetadataServer(ca) as server:
        document = server.as_document(
            token_endpoint_auth_methods_supported=["tls_client_auth"],
            tls_client_certificate_bound_access_tokens=True,
        )
        server.json("/.well-known/oauth-authorization-server", document)
        access_token = _unsigned_jwt({"sub": "c", "aud": "api"})  # a JWT, and no cnf
        server.route(
            "/token", Route(json={"access_token": access_token, "token_type": "Bearer", "expires_in": 600}), "POST"
        )
        config = og.OAuthConfig(
            client_id="c",
            issuer=server.url,
            ca_bundle_path=ca_bundle,
            use_mtls=True,
            client_cert_path=client_cert[0],
            client_key_path=client_cert[1],
        )

        with caplog.at_level(logging.WARNING, logger="oauth_gateway"):
            token = manager.get_token("mtls-api", config)

    assert token.access_token == access_token
    warnings = [r for r in caplog.records if "not bound to the client certificate" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert access_token not in caplog.text


def test_discovery_uses_the_mtls_endpoint_alias_with_mtls(
    ca: Any, ca_bundle: str, client_cert: Tuple[str, str], manager: og.TokenManager
) -> None:
    with MetadataServer(ca) as server:
        document = server.as_document(
            mtls_endpoint_aliases={"token_endpoint": server.url + "/mtls/token"},
            token_endpoint_auth_methods_supported=["tls_client_auth"],
        )
        server.json("/.well-known/oauth-authorization-server", document)
        token_answer = Route(json={"access_token": "alias-token", "token_type": "Bearer", "expires_in": 600})
        server.route("/mtls/token", token_answer, method="POST")
        server.route("/token", token_answer, method="POST")
        config = og.OAuthConfig(
            client_id="c",
            issuer=server.url,
            ca_bundle_path=ca_bundle,
            use_mtls=True,
            client_cert_path=client_cert[0],
            client_key_path=client_cert[1],
        )

        token = manager.get_token("alias-api", config)

        assert token.access_token == "alias-token"
        assert (server.count("/mtls/token", "POST"), server.count("/token", "POST")) == (1, 0)


# --------------------------------------------------------------------------- injection and caches


def test_a_remote_server_with_dpop_is_a_config_error_saying_what_to_do(
    oidc_provider: OidcProvider,
    manager: og.TokenManager,  # noqa: F811
) -> None:
    token = manager.get_token("dpop-api", dpop_config(oidc_provider))
    entry = {
        "server_name": "remote",
        "config": {"command": "npx", "args": ["-y", "mcp-remote", "https://mcp.example.com/mcp"]},
        "oauth_config": {"enabled": True, "OAUTH_DPOP": True},
    }

    with pytest.raises(og.ConfigError) as caught:
        og.inject_token(entry, token, json_path="$.mcp_config[0]")

    assert caught.value.json_path == "$.mcp_config[0].oauth_config.OAUTH_DPOP"
    assert "mcp-remote" in str(caught.value) and "manager.auth(" in str(caught.value)
    assert token.access_token not in str(caught.value)


def test_a_curl_server_with_a_dpop_token_is_refused_before_any_header_file_is_written(tmp_path: Any) -> None:
    token = og.Token("t" * 40, "DPoP", expires_in=600)
    entry = {"server_name": "curl", "config": {"command": "curl", "args": ["https://mcp.example.com/mcp"]}}

    with pytest.raises(og.ConfigError) as caught:
        with _injected_entry(entry, token, directory=str(tmp_path)):
            pass  # pragma: no cover - never reached

    assert caught.value.json_path == "$.oauth_config.OAUTH_DPOP"
    assert os.listdir(str(tmp_path)) == []


def test_a_local_server_gets_the_dpop_token_and_its_type(
    oidc_provider: OidcProvider,
    manager: og.TokenManager,  # noqa: F811
) -> None:
    token = manager.get_token("dpop-api", dpop_config(oidc_provider))
    entry = {"server_name": "local", "config": {"command": "python", "args": ["server.py"]}}

    env = og.inject_token(entry, token)["config"]["env"]

    assert env["OAUTH_TOKEN_TYPE"] == "DPoP"
    assert env["OAUTH_ACCESS_TOKEN"] == token.access_token
    assert env["AUTHORIZATION"] == "DPoP " + token.access_token


def test_a_dpop_token_is_never_written_to_a_file_cache(
    oidc_provider: OidcProvider,
    tmp_path: Any,  # noqa: F811
) -> None:
    dpop_dir, bearer_dir = tmp_path / "dpop", tmp_path / "bearer"
    client_id, secret = oidc_provider.clients["basic"]
    bearer = og.OAuthConfig(
        client_id=client_id,
        client_secret=secret,
        token_url=oidc_provider.token_url,
        ca_bundle_path=str(oidc_provider.ca_file),
        use_basic_auth=True,
    )
    with og.TokenManager(cache=FileTokenCache(str(dpop_dir))) as dpop_manager:
        token = dpop_manager.get_token("dpop-api", dpop_config(oidc_provider))
        assert dpop_manager.get_token("dpop-api", dpop_config(oidc_provider)) is token  # kept in memory
        dpop_manager.refresh("dpop-api", dpop_config(oidc_provider))
    with og.TokenManager(cache=FileTokenCache(str(bearer_dir))) as bearer_manager:
        bearer_manager.get_token("bearer-api", bearer)

    def entries(directory: Any) -> List[str]:
        found = []
        for _root, _dirs, files in os.walk(str(directory)):
            found.extend(name for name in files if not name.endswith(".lock"))
        return found

    assert entries(dpop_dir) == []
    assert entries(bearer_dir) != []  # the same cache does write bearer tokens
