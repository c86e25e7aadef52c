"""DPoP proofs, nonces and binding checks (oauth_gateway/dpop.py), against real servers.

Token requests go to oidc-provider (tests/oidc/server.js) with DPoP on, with and without
required nonces; resource requests go to :class:`dpop_servers.DPoPResourceServer`, which
checks every proof independently. The token and resource POSTs are written here with
plain requests, the way the client and the requests auth will send them: one proof per
attempt, and one retry when the server asks for a nonce.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import threading
import time
from typing import Any, Dict, Optional, Tuple

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dpop_servers import DPoPResourceServer, jwk_thumbprint
from oauth_gateway._jwt import certificate_thumbprints
from oauth_gateway.client_auth import basic_credentials
from oauth_gateway.dpop import (
    DPoPKey,
    NonceStore,
    TokenBindingError,
    _access_token_hash,
    _check_binding,
    _resource_nonce_challenge,
    _token_confirmation,
    check_dpop_token_type,
    make_proof,
    origin_of,
    token_nonce_challenge,
)
from oauth_gateway.exceptions import ConfigError, OAuthGatewayError
from oidc_provider import JWT_RESOURCE, RESOURCE, OidcProvider, oidc_provider, oidc_provider_dpop_nonce  # noqa: F401 (fixtures)

TIMEOUT = 10
NOW = 1_700_000_000.0


# --------------------------------------------------------------------------- helpers


def _body(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _dpop_token(
    provider: OidcProvider,
    key: DPoPKey,
    store: NonceStore,
    *,
    client: str = "dpop",
    resource: str = JWT_RESOURCE,
) -> Tuple[requests.Response, int]:
    """A client-credentials token request with DPoP: a fresh proof per attempt, at most
    one retry when the server asks for a nonce. Returns the last response and the
    number of requests sent."""
    client_id, secret = provider.clients[client]
    attempts = 0
    while True:
        attempts += 1
        proof = make_proof(key, "POST", provider.token_url, now=time.time(), nonce=store.get(provider.token_url))
        response = requests.post(
            provider.token_url,
            data={"grant_type": "client_credentials", "scope": "read", "resource": resource},
            headers={"Authorization": basic_credentials(client_id, secret or ""), "DPoP": proof},
            verify=str(provider.ca_file),
            timeout=TIMEOUT,
            allow_redirects=False,
        )
        store.update(provider.token_url, response.headers)
        nonce = token_nonce_challenge(response.status_code, response.headers, _body(response))
        if nonce is None or attempts == 2:
            return response, attempts


def _resource_get(
    session: requests.Session,
    url: str,
    key: DPoPKey,
    token: str,
    store: NonceStore,
    *,
    now: Optional[float] = None,
) -> Tuple[requests.Response, int]:
    """A resource request with ``Authorization: DPoP`` and a proof with ``ath``; repeated
    once on 401 ``use_dpop_nonce``. Returns the last response and the requests sent."""
    attempts = 0
    while True:
        attempts += 1
        proof = make_proof(
            key,
            "GET",
            url,
            now=time.time() if now is None else now,
            nonce=store.get(url),
            access_token=token,
        )
        response = session.get(url, headers={"Authorization": "DPoP " + token, "DPoP": proof}, timeout=TIMEOUT)
        store.update(url, response.headers)
        nonce = _resource_nonce_challenge(response.status_code, response.headers)
        if nonce is None or attempts == 2:
            return response, attempts


def _claims(token: str) -> Dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


@pytest.fixture
def key() -> DPoPKey:
    return DPoPKey.generate()


@pytest.fixture
def session(ca_bundle: str) -> Any:
    with requests.Session() as http:
        # A session's verify loses to REQUESTS_CA_BUNDLE in requests (psf/requests#3829).
        http.trust_env = False
        http.verify = ca_bundle
        yield http


@pytest.fixture
def resource_server(ca: Any) -> Any:
    with DPoPResourceServer(ca) as server:
        yield server


@pytest.fixture
def nonce_resource_server(ca: Any) -> Any:
    with DPoPResourceServer(ca, require_nonce=True) as server:
        yield server


@pytest.fixture(scope="module")
def dpop_token(oidc_provider: OidcProvider) -> Tuple[DPoPKey, str]:  # noqa: F811
    """A key and a JWT access token oidc-provider bound to it."""
    bound_key = DPoPKey.generate()
    response, _ = _dpop_token(oidc_provider, bound_key, NonceStore())
    assert response.status_code == 200, response.text
    return bound_key, response.json()["access_token"]


# --------------------------------------------------------------------------- proofs


def test_a_proof_has_the_rfc_9449_header_and_claims(key: DPoPKey) -> None:
    proof = make_proof(key, "post", "https://as.example.test/token?x=1#frag", now=NOW + 0.9)

    header = jwt.get_unverified_header(proof)
    claims = _claims(proof)
    assert header["typ"] == "dpop+jwt"
    assert header["alg"] == "ES256"
    assert header["jwk"] == {"kty": "EC", "crv": "P-256", "x": key.public_jwk["x"], "y": key.public_jwk["y"]}
    assert "d" not in header["jwk"]
    assert claims["htm"] == "POST"
    assert claims["htu"] == "https://as.example.test/token"
    assert claims["iat"] == int(NOW)
    assert len(claims["jti"]) >= 16
    assert "ath" not in claims and "nonce" not in claims


def test_a_proof_verifies_with_its_embedded_key(key: DPoPKey) -> None:
    proof = make_proof(key, "GET", "https://rs.example.test/mcp", now=NOW, nonce="n-1", access_token="tok")

    public = jwt.PyJWK(jwt.get_unverified_header(proof)["jwk"], "ES256").key
    claims = jwt.decode(proof, public, algorithms=["ES256"], options={"verify_iat": False})

    assert claims["nonce"] == "n-1"
    assert claims["ath"] == _access_token_hash("tok")


def test_every_proof_has_a_new_jti(key: DPoPKey) -> None:
    jtis = {_claims(make_proof(key, "GET", "https://rs.test/", now=NOW))["jti"] for _ in range(50)}

    assert len(jtis) == 50


def test_ath_is_the_base64url_sha256_of_the_token() -> None:
    # RFC 9449 section 7.1, the example's access token and its ath.
    token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"

    assert _access_token_hash(token) == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"


def test_the_key_thumbprint_is_the_rfc_7638_thumbprint_of_its_public_jwk(key: DPoPKey) -> None:
    assert key.jkt == jwk_thumbprint(key.public_jwk)
    assert key.jkt != DPoPKey.generate().jkt


def test_a_key_shows_its_type_and_a_short_thumbprint_never_the_private_key(key: DPoPKey) -> None:
    text = repr(key)

    assert text.startswith("DPoPKey(path=None, type='EC P-256', jkt='")
    assert key.jkt not in text and key.jkt[:8] in text
    assert key.public_jwk["x"] not in text
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(key)


def test_a_key_file_loads_with_the_key_file_rules(tmp_path: Any) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "dpop.pem"
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    os.chmod(str(path), 0o600)

    loaded = DPoPKey.from_file(str(path), json_path="$.oauth_config")
    again = DPoPKey.from_file(str(path))

    assert loaded.path == str(path)
    assert loaded.alg == "ES256"
    assert loaded.jkt == again.jkt
    assert str(path) in repr(loaded)


def test_a_missing_key_file_is_a_config_error_naming_the_key(tmp_path: Any) -> None:
    missing = str(tmp_path / "nope.pem")

    with pytest.raises(ConfigError) as caught:
        DPoPKey.from_file(missing, json_path="$.oauth_config")

    assert caught.value.json_path == "$.oauth_config.OAUTH_DPOP_KEY_PATH"
    assert missing in str(caught.value)


def test_without_pyjwt_making_a_key_is_a_config_error_naming_the_extra() -> None:
    # A real interpreter where `import jwt` fails; importing oauth_gateway.dpop must not need it.
    code = (
        "import sys; sys.modules['jwt'] = None\n"
        "from oauth_gateway.dpop import DPoPKey, _token_confirmation\n"
        "assert _token_confirmation('opaque') is None\n"
        "try:\n"
        "    DPoPKey.generate(json_path='$.oauth_config')\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=os.path.dirname(__file__)
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ConfigError $.oauth_config.OAUTH_DPOP: ")
    assert "pip install 'oauth-gateway[jwt]'" in result.stdout


# --------------------------------------------------------------------------- nonces


def test_the_nonce_store_keys_by_origin() -> None:
    store = NonceStore()
    store.remember("https://AS.example.test/token?x=1", "n1")

    assert store.get("https://as.example.test:443/other") == "n1"
    assert store.get("https://as.example.test:8443/token") is None
    assert store.get("http://as.example.test/token") is None
    assert origin_of("https://[::1]:9000/x") == "https://[::1]:9000"


def test_the_nonce_store_refuses_malformed_nonces_and_keeps_the_latest() -> None:
    store = NonceStore()

    assert not store.remember("https://a.test/", 'bad"quote')
    assert not store.remember("https://a.test/", "")
    assert not store.remember("https://a.test/", "x" * 1025)
    assert store.get("https://a.test/") is None
    assert store.update("https://a.test/", {"dpop-nonce": " n2 "}) == "n2"
    assert store.update("https://a.test/", {"Other": "x"}) is None
    assert store.get("https://a.test/") == "n2"


def test_the_nonce_store_forgets_the_least_recently_used_server() -> None:
    store = NonceStore(max_entries=2)
    store.remember("https://a.test/", "na")
    store.remember("https://b.test/", "nb")
    store.get("https://a.test/")
    store.remember("https://c.test/", "nc")

    assert len(store) == 2
    assert store.get("https://b.test/") is None
    assert store.get("https://a.test/") == "na"
    assert store.get("https://c.test/") == "nc"


def test_the_nonce_store_is_safe_under_threads() -> None:
    store = NonceStore(max_entries=8)

    def work(n: int) -> None:
        for i in range(300):
            store.remember("https://s%d.test/" % (i % 16), "n%d-%d" % (n, i))
            store.get("https://s%d.test/" % (i % 7))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(store) == 8


def test_a_token_endpoint_nonce_challenge_is_recognised() -> None:
    headers = {"DPoP-Nonce": "abc"}
    body = {"error": "use_dpop_nonce", "error_description": "x"}

    assert token_nonce_challenge(400, headers, body) == "abc"
    assert token_nonce_challenge(400, {}, body) is None
    assert token_nonce_challenge(400, headers, {"error": "invalid_dpop_proof"}) is None
    assert token_nonce_challenge(401, headers, body) is None
    assert token_nonce_challenge(400, headers, ["use_dpop_nonce"]) is None


def test_a_resource_server_nonce_challenge_is_recognised() -> None:
    challenge = 'Bearer realm="mcp", DPoP error="use_dpop_nonce", error_description="send one"'

    assert _resource_nonce_challenge(401, {"WWW-Authenticate": challenge, "DPoP-Nonce": "n9"}) == "n9"
    assert _resource_nonce_challenge(401, {"www-authenticate": challenge, "dpop-nonce": "n9"}) == "n9"
    assert _resource_nonce_challenge(401, {"WWW-Authenticate": challenge}) is None
    assert _resource_nonce_challenge(403, {"WWW-Authenticate": challenge, "DPoP-Nonce": "n9"}) is None
    other = 'DPoP error="invalid_token", Bearer error="use_dpop_nonce"'
    assert _resource_nonce_challenge(401, {"WWW-Authenticate": other, "DPoP-Nonce": "n9"}) is None


# --------------------------------------------------------------------------- binding checks


def _unsigned_jwt(claims: Dict[str, Any]) -> str:
    return jwt.encode(claims, "k" * 32, algorithm="HS256")


def test_confirmation_is_read_from_a_jwt_and_none_for_an_opaque_token() -> None:
    assert _token_confirmation(_unsigned_jwt({"cnf": {"jkt": "abc"}})) == {"jkt": "abc"}
    assert _token_confirmation(_unsigned_jwt({"sub": "x"})) is None
    assert _token_confirmation(_unsigned_jwt({"cnf": "jkt"})) is None
    assert _token_confirmation("2YotnFZFEjr1zCsicMWpAA") is None
    assert _token_confirmation("a.b.c") is None
    assert _token_confirmation("") is None


def test_a_token_bound_to_our_key_or_certificate_passes() -> None:
    _check_binding({"jkt": "ours"}, dpop_jkt="ours")
    _check_binding({"x5t#S256": "cert"}, cert_x5t_s256="cert")
    _check_binding({"x5t#S256": "cert", "jkt": "ours"}, dpop_jkt="ours", cert_x5t_s256="cert")
    _check_binding({"jkt": "ours"}, dpop_jkt="ours", cert_x5t_s256="only-for-client-auth")
    _check_binding(None, dpop_jkt="ours", cert_x5t_s256="cert")


@pytest.mark.parametrize(
    "cnf, kwargs, confirmation, fix",
    [
        ({"jkt": "theirs-0123456789"}, {"dpop_jkt": "ours-0123456789"}, "jkt", "DPoP support"),
        ({"jkt": "theirs-0123456789"}, {}, "jkt", "turn OAUTH_DPOP on"),
        ({"x5t#S256": "cert-0123456789"}, {"dpop_jkt": "ours-0123456789"}, "jkt", "DPoP support"),
        ({"x5t#S256": "other-0123456789"}, {"cert_x5t_s256": "ours-0123456789"}, "x5t#S256", "OAUTH_CLIENT_CERT_PATH"),
        ({"x5t#S256": "other-0123456789"}, {}, "x5t#S256", "OAUTH_CLIENT_CERT_PATH"),
    ],
)
def test_a_token_bound_to_something_else_is_refused_with_the_fix(
    cnf: Dict[str, str], kwargs: Dict[str, str], confirmation: str, fix: str
) -> None:
    with pytest.raises(TokenBindingError) as caught:
        _check_binding(cnf, **kwargs)

    error = caught.value
    assert isinstance(error, OAuthGatewayError)
    assert error.confirmation == confirmation
    assert fix in str(error)
    assert not error.retryable
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) and copy.confirmation == confirmation


def test_a_bearer_answer_to_a_dpop_request_is_refused() -> None:
    check_dpop_token_type("DPoP")
    check_dpop_token_type("dpop")
    for answer in ("Bearer", None, 3):
        with pytest.raises(TokenBindingError, match="not 'DPoP'"):
            check_dpop_token_type(answer)


# --------------------------------------------------------------------------- oidc-provider


def test_a_dpop_token_request_takes_one_request_without_required_nonces(
    oidc_provider: OidcProvider,
    key: DPoPKey,  # noqa: F811
) -> None:
    response, attempts = _dpop_token(oidc_provider, key, NonceStore())

    assert attempts == 1
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "DPoP"
    check_dpop_token_type(body["token_type"])
    assert _token_confirmation(body["access_token"]) == {"jkt": key.jkt}
    _check_binding(_token_confirmation(body["access_token"]), dpop_jkt=key.jkt)


def test_an_opaque_dpop_token_is_bound_to_our_key_at_introspection(
    oidc_provider: OidcProvider,
    key: DPoPKey,  # noqa: F811
) -> None:
    response, _ = _dpop_token(oidc_provider, key, NonceStore(), resource=RESOURCE)
    token = response.json()["access_token"]
    client_id, secret = oidc_provider.clients["dpop"]

    info = requests.post(
        oidc_provider.introspection_url,
        data={"token": token},
        headers={"Authorization": basic_credentials(client_id, secret or "")},
        verify=str(oidc_provider.ca_file),
        timeout=TIMEOUT,
    ).json()

    assert response.json()["token_type"] == "DPoP"
    assert _token_confirmation(token) is None
    assert info["active"] is True
    _check_binding(info["cnf"], dpop_jkt=key.jkt)
    with pytest.raises(TokenBindingError):
        _check_binding(info["cnf"], dpop_jkt=DPoPKey.generate().jkt)


def test_a_required_nonce_costs_one_retry_then_is_remembered(
    oidc_provider_dpop_nonce: OidcProvider,
    key: DPoPKey,  # noqa: F811
) -> None:
    store = NonceStore()

    first, first_attempts = _dpop_token(oidc_provider_dpop_nonce, key, store)
    second, second_attempts = _dpop_token(oidc_provider_dpop_nonce, key, store)

    assert (first_attempts, second_attempts) == (2, 1)
    for response in (first, second):
        assert response.status_code == 200, response.text
        assert response.json()["token_type"] == "DPoP"
        assert _token_confirmation(response.json()["access_token"]) == {"jkt": key.jkt}
    assert store.get(oidc_provider_dpop_nonce.token_url)


def test_a_proof_without_the_required_nonce_is_use_dpop_nonce(
    oidc_provider_dpop_nonce: OidcProvider,
    key: DPoPKey,  # noqa: F811
) -> None:
    client_id, secret = oidc_provider_dpop_nonce.clients["dpop"]
    response = requests.post(
        oidc_provider_dpop_nonce.token_url,
        data={"grant_type": "client_credentials"},
        headers={
            "Authorization": basic_credentials(client_id, secret or ""),
            "DPoP": make_proof(key, "POST", oidc_provider_dpop_nonce.token_url, now=time.time()),
        },
        verify=str(oidc_provider_dpop_nonce.ca_file),
        timeout=TIMEOUT,
    )

    assert response.status_code == 400
    assert response.json()["error"] == "use_dpop_nonce"
    assert token_nonce_challenge(response.status_code, response.headers, response.json())


def test_a_dpop_bound_client_without_a_proof_is_refused(oidc_provider: OidcProvider) -> None:  # noqa: F811
    client_id, secret = oidc_provider.clients["dpop"]
    response = requests.post(
        oidc_provider.token_url,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": basic_credentials(client_id, secret or "")},
        verify=str(oidc_provider.ca_file),
        timeout=TIMEOUT,
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_a_replayed_token_request_proof_is_refused(oidc_provider: OidcProvider, key: DPoPKey) -> None:  # noqa: F811
    client_id, secret = oidc_provider.clients["dpop"]
    proof = make_proof(key, "POST", oidc_provider.token_url, now=time.time())
    statuses = []
    for _ in range(2):
        response = requests.post(
            oidc_provider.token_url,
            data={"grant_type": "client_credentials"},
            headers={"Authorization": basic_credentials(client_id, secret or ""), "DPoP": proof},
            verify=str(oidc_provider.ca_file),
            timeout=TIMEOUT,
        )
        statuses.append((response.status_code, _body(response).get("error")))

    assert statuses == [(200, None), (400, "invalid_grant")]


# --------------------------------------------------------------------------- resource server


def test_the_resource_server_accepts_our_proof_in_one_request(
    resource_server: DPoPResourceServer, session: requests.Session, dpop_token: Tuple[DPoPKey, str]
) -> None:
    bound_key, token = dpop_token

    response, attempts = _resource_get(session, resource_server.url + "/mcp?q=1", bound_key, token, NonceStore())

    assert response.status_code == 200, response.text
    assert attempts == 1 and resource_server.count() == 1
    assert response.json()["jkt"] == bound_key.jkt


def test_a_resource_nonce_costs_one_repeat_then_one_request_each(
    nonce_resource_server: DPoPResourceServer, session: requests.Session, dpop_token: Tuple[DPoPKey, str]
) -> None:
    bound_key, token = dpop_token
    store = NonceStore()
    url = nonce_resource_server.url + "/mcp"

    counts = [_resource_get(session, url, bound_key, token, store)[1] for _ in range(3)]
    nonce_resource_server.rotate_nonce()
    after_rotation = _resource_get(session, url, bound_key, token, store)

    assert counts == [2, 1, 1]
    assert after_rotation[0].status_code == 200 and after_rotation[1] == 2
    assert nonce_resource_server.count("use_dpop_nonce") == 2
    assert nonce_resource_server.count(None) == 4
    assert store.get(url) == nonce_resource_server.nonce


def test_nonces_on_both_servers_cost_one_extra_request_each_the_first_time(
    oidc_provider_dpop_nonce: OidcProvider,  # noqa: F811
    nonce_resource_server: DPoPResourceServer,
    session: requests.Session,
    key: DPoPKey,
) -> None:
    store = NonceStore()
    token_response, token_attempts = _dpop_token(oidc_provider_dpop_nonce, key, store)
    token = token_response.json()["access_token"]
    url = nonce_resource_server.url + "/tools"

    first = _resource_get(session, url, key, token, store)
    second = _resource_get(session, url, key, token, store)

    assert token_attempts == 2
    assert (first[1], second[1]) == (2, 1)
    assert first[0].status_code == second[0].status_code == 200
    assert len(store) == 2


def test_the_resource_server_refuses_a_proof_made_with_another_key(
    resource_server: DPoPResourceServer, session: requests.Session, dpop_token: Tuple[DPoPKey, str]
) -> None:
    _, token = dpop_token
    stranger = DPoPKey.generate()

    response, _ = _resource_get(session, resource_server.url + "/mcp", stranger, token, NonceStore())

    assert response.status_code == 401
    assert resource_server.checked[-1].error == "invalid_token"
    assert "cnf.jkt" in resource_server.checked[-1].reason
    # The check the client makes before use catches the same thing without a request.
    with pytest.raises(TokenBindingError):
        _check_binding(_token_confirmation(token), dpop_jkt=stranger.jkt)


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"access_token": None}, "ath"),
        ({"htm": "POST"}, "htm"),
        ({"htu": "/other"}, "htu"),
        ({"now": time.time() - 600}, "iat"),
    ],
)
def test_the_resource_server_refuses_a_proof_that_does_not_match_the_request(
    resource_server: DPoPResourceServer,
    session: requests.Session,
    dpop_token: Tuple[DPoPKey, str],
    change: Dict[str, Any],
    reason: str,
) -> None:
    bound_key, token = dpop_token
    url = resource_server.url + "/mcp"
    args: Dict[str, Any] = {"htm": "GET", "htu": "/mcp", "now": time.time(), "access_token": token}
    args.update(change)

    proof = make_proof(
        bound_key, args["htm"], resource_server.url + args["htu"], now=args["now"], access_token=args["access_token"]
    )
    response = session.get(url, headers={"Authorization": "DPoP " + token, "DPoP": proof}, timeout=TIMEOUT)

    assert response.status_code == 401
    assert 'DPoP error="invalid_dpop_proof"' in response.headers["WWW-Authenticate"]
    assert resource_server.checked[-1].reason.startswith(reason)
    assert _resource_nonce_challenge(response.status_code, response.headers) is None


def test_the_resource_server_refuses_a_replayed_proof(
    resource_server: DPoPResourceServer, session: requests.Session, dpop_token: Tuple[DPoPKey, str]
) -> None:
    bound_key, token = dpop_token
    url = resource_server.url + "/mcp"
    proof = make_proof(bound_key, "GET", url, now=time.time(), access_token=token)
    headers = {"Authorization": "DPoP " + token, "DPoP": proof}

    statuses = [session.get(url, headers=headers, timeout=TIMEOUT).status_code for _ in range(2)]

    assert statuses == [200, 401]
    assert resource_server.checked[-1].reason == "jti replayed"


# --------------------------------------------------------------------------- certificate-bound tokens


def _mtls_token(provider: OidcProvider, cert: Tuple[str, str]) -> requests.Response:
    client_id, _ = provider.clients["mtls-bound"]
    return requests.post(
        provider.token_url,
        data={"grant_type": "client_credentials", "client_id": client_id, "resource": JWT_RESOURCE},
        cert=cert,
        verify=str(provider.ca_file),
        timeout=TIMEOUT,
    )


def test_a_certificate_bound_token_matches_our_certificate(oidc_provider: OidcProvider) -> None:  # noqa: F811
    cert = (str(oidc_provider.client_cert_file), str(oidc_provider.client_key_file))
    _, ours, _ = certificate_thumbprints(cert[0])

    response = _mtls_token(oidc_provider, cert)

    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"
    assert oidc_provider.discovery["tls_client_certificate_bound_access_tokens"] is True
    cnf = _token_confirmation(response.json()["access_token"])
    assert cnf == {"x5t#S256": ours}
    _check_binding(cnf, cert_x5t_s256=ours)


def test_a_token_bound_to_another_certificate_is_refused(
    oidc_provider: OidcProvider,
    tmp_path: Any,  # noqa: F811
) -> None:
    # Same CA and subject (so tls_client_auth accepts it), another key pair.
    other = oidc_provider.ca.issue_cert(
        "client@example.test",
        common_name="oauth-gateway-test-client",
        organization_name="oauth-gateway",
        organization_unit_name="conformance-tests",
    )
    other_cert, other_key = str(tmp_path / "other.pem"), str(tmp_path / "other.key")
    other.cert_chain_pems[0].write_to_path(other_cert)
    other.private_key_pem.write_to_path(other_key)
    _, ours, _ = certificate_thumbprints(str(oidc_provider.client_cert_file))
    _, theirs, _ = certificate_thumbprints(other_cert)

    response = _mtls_token(oidc_provider, (other_cert, other_key))
    token = response.json()["access_token"]

    assert response.status_code == 200, response.text
    assert _token_confirmation(token) == {"x5t#S256": theirs}
    with pytest.raises(TokenBindingError) as caught:
        _check_binding(_token_confirmation(token), cert_x5t_s256=ours)
    assert caught.value.expected == ours and caught.value.actual == theirs
    assert token not in str(caught.value) and token not in repr(caught.value)


def test_binding_errors_never_show_the_token(dpop_token: Tuple[DPoPKey, str]) -> None:
    _, token = dpop_token
    cnf = _token_confirmation(token)

    with pytest.raises(TokenBindingError) as caught:
        _check_binding(cnf, dpop_jkt=DPoPKey.generate().jkt)

    assert token not in str(caught.value)
    assert token[-20:] not in str(caught.value)
    assert json.dumps(caught.value.__dict__).find(token[-20:]) == -1
