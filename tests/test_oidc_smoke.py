"""Smoke tests of the oidc-provider test server, with plain requests (they test the fixture).

They pin down what oauth-gateway's conformance tests rely on: one token per client
authentication method, the resource and scope rules, revocation, and invalid_client.
"""

from __future__ import annotations

import base64
from typing import Any, Dict, Optional
from urllib.parse import quote_plus

import pytest
import requests
import trustme

from oidc_provider import (
    ACCESS_TOKEN_TTL,
    FORBIDDEN_SCOPE,
    NO_RESOURCE_TTL,
    RESOURCE,
    SCOPE,
    OidcProvider,
    oidc_provider,  # noqa: F401 (the fixture, found by pytest here)
)

TIMEOUT = 10


def _basic(client_id: str, secret: str) -> Dict[str, str]:
    # RFC 6749 section 2.3.1: form-encode id and secret, then base64 "id:secret".
    pair = "{0}:{1}".format(quote_plus(client_id), quote_plus(secret))
    return {"Authorization": "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")}


def _raw_basic(client_id: str, secret: str) -> Dict[str, str]:
    pair = "{0}:{1}".format(client_id, secret)
    return {"Authorization": "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")}


def _post(
    provider: OidcProvider,
    url: str,
    data: Dict[str, str],
    method: str,
    secret: Optional[str] = None,
) -> requests.Response:
    """POSTs ``data`` authenticated as the ``method`` client ("basic", "post" or "mtls")."""
    client_id, real_secret = provider.clients[method]
    secret = real_secret if secret is None else secret
    headers: Dict[str, str] = {}
    body = dict(data)
    cert: Any = None
    if method == "basic":
        headers = _basic(client_id, secret or "")
    elif method == "post":
        body.update(client_id=client_id, client_secret=secret or "")
    else:
        body["client_id"] = client_id
        cert = (str(provider.client_cert_file), str(provider.client_key_file))
    return requests.post(
        url,
        data=body,
        headers=headers,
        cert=cert,
        verify=str(provider.ca_file),
        timeout=TIMEOUT,
        allow_redirects=False,
    )


def _token(provider: OidcProvider, method: str, **extra: str) -> requests.Response:
    data = {"grant_type": "client_credentials"}
    data.update(extra)
    return _post(provider, provider.token_url, data, method)


def _introspect(provider: OidcProvider, method: str, token: str) -> Dict[str, Any]:
    response = _post(provider, provider.introspection_url, {"token": token}, method)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _is_active(provider: OidcProvider, method: str, token: str) -> bool:
    return bool(_introspect(provider, method, token)["active"])


def test_discovery_names_https_endpoints_on_the_issuer(oidc_provider: OidcProvider) -> None:
    assert oidc_provider.issuer == "https://127.0.0.1:{0}".format(oidc_provider.port)
    for url in (oidc_provider.token_url, oidc_provider.revocation_url):
        assert url.startswith(oidc_provider.issuer + "/")
    methods = oidc_provider.discovery["token_endpoint_auth_methods_supported"]
    assert set(methods) == {
        "client_secret_basic",
        "client_secret_post",
        "tls_client_auth",
        "private_key_jwt",
        "client_secret_jwt",
    }
    algs = oidc_provider.discovery["token_endpoint_auth_signing_alg_values_supported"]
    assert set(algs) == {"HS256", "RS256", "PS256", "ES256", "ES384"}


def test_discovery_advertises_dpop_and_certificate_bound_tokens(oidc_provider: OidcProvider) -> None:
    algs = oidc_provider.discovery["dpop_signing_alg_values_supported"]
    assert set(algs) == {"ES256", "ES384", "RS256", "PS256"}
    assert oidc_provider.discovery["tls_client_certificate_bound_access_tokens"] is True
    assert "dpop" in oidc_provider.clients and "mtls-bound" in oidc_provider.clients


def test_secrets_need_form_encoding(oidc_provider: OidcProvider) -> None:
    basic_id, basic_secret = oidc_provider.clients["basic"]
    assert ":" in basic_id
    for special in ":+/% ":
        assert special in (basic_secret or "")
    assert "secret" not in repr(oidc_provider).lower()
    assert (basic_secret or "") not in repr(oidc_provider)


@pytest.mark.parametrize("method", ["basic", "post", "mtls"])
def test_token_with_resource_then_revoke(oidc_provider: OidcProvider, method: str) -> None:
    response = _token(oidc_provider, method, scope=SCOPE, resource=RESOURCE)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == ACCESS_TOKEN_TTL
    assert body["scope"] == SCOPE
    assert body["access_token"]
    token = body["access_token"]
    assert _is_active(oidc_provider, method, token)

    revoked = _post(
        oidc_provider,
        oidc_provider.revocation_url,
        {"token": token, "token_type_hint": "access_token"},
        method,
    )

    assert revoked.status_code == 200, revoked.text
    assert revoked.content == b""
    assert not _is_active(oidc_provider, method, token)


def test_token_without_resource_gets_the_default_resource(oidc_provider: OidcProvider) -> None:
    response = _token(oidc_provider, "basic", scope="read")

    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "read"
    assert response.json()["expires_in"] == ACCESS_TOKEN_TTL
    info = _introspect(oidc_provider, "basic", response.json()["access_token"])
    assert info["aud"] == RESOURCE


def test_unknown_scope_dropped_and_audience_ignored(oidc_provider: OidcProvider) -> None:
    response = _token(oidc_provider, "post", scope="read unknown", audience="https://x.test")

    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "read"
    info = _introspect(oidc_provider, "post", response.json()["access_token"])
    assert info["aud"] == RESOURCE


def test_token_without_scope_has_no_scope_member(oidc_provider: OidcProvider) -> None:
    response = _token(oidc_provider, "post")

    assert response.status_code == 200, response.text
    assert "scope" not in response.json()


def test_scope_not_allowed_for_the_client_is_invalid_scope(oidc_provider: OidcProvider) -> None:
    response = _token(oidc_provider, "basic", scope="read " + FORBIDDEN_SCOPE)

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_scope"


def test_unknown_resource_is_invalid_target(oidc_provider: OidcProvider) -> None:
    response = _token(oidc_provider, "post", resource="https://other.example.test/api")

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_target"


@pytest.mark.parametrize("method", ["basic", "post"])
def test_wrong_secret_is_invalid_client(oidc_provider: OidcProvider, method: str) -> None:
    data = {"grant_type": "client_credentials"}
    response = _post(oidc_provider, oidc_provider.token_url, data, method, secret="wrong:+/% x")

    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


def test_basic_without_form_encoding_is_rejected(oidc_provider: OidcProvider) -> None:
    client_id, secret = oidc_provider.clients["basic"]
    response = requests.post(
        oidc_provider.token_url,
        data={"grant_type": "client_credentials"},
        headers=_raw_basic(client_id, secret or ""),
        verify=str(oidc_provider.ca_file),
        timeout=TIMEOUT,
    )

    assert response.status_code in (400, 401), response.text
    assert response.json()["error"] in ("invalid_request", "invalid_client")


def test_mtls_without_certificate_is_invalid_client(oidc_provider: OidcProvider) -> None:
    client_id, _ = oidc_provider.clients["mtls"]
    response = requests.post(
        oidc_provider.token_url,
        data={"grant_type": "client_credentials", "client_id": client_id},
        verify=str(oidc_provider.ca_file),
        timeout=TIMEOUT,
    )

    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


def test_mtls_certificate_from_another_ca_is_invalid_client(oidc_provider: OidcProvider, tmp_path: Any) -> None:
    stranger = trustme.CA().issue_cert(
        "client@example.test",
        common_name="oauth-gateway-test-client",
        organization_name="oauth-gateway",
        organization_unit_name="conformance-tests",
    )
    cert_file = tmp_path / "stranger.pem"
    key_file = tmp_path / "stranger.key"
    stranger.cert_chain_pems[0].write_to_path(str(cert_file))
    stranger.private_key_pem.write_to_path(str(key_file))
    client_id, _ = oidc_provider.clients["mtls"]

    response = requests.post(
        oidc_provider.token_url,
        data={"grant_type": "client_credentials", "client_id": client_id},
        cert=(str(cert_file), str(key_file)),
        verify=str(oidc_provider.ca_file),
        timeout=TIMEOUT,
    )

    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


def test_mtls_certificate_with_another_subject_is_invalid_client(oidc_provider: OidcProvider, tmp_path: Any) -> None:
    other = oidc_provider.ca.issue_cert("client@example.test", common_name="someone-else")
    cert_file = tmp_path / "other.pem"
    key_file = tmp_path / "other.key"
    other.cert_chain_pems[0].write_to_path(str(cert_file))
    other.private_key_pem.write_to_path(str(key_file))
    client_id, _ = oidc_provider.clients["mtls"]

    response = requests.post(
        oidc_provider.token_url,
        data={"grant_type": "client_credentials", "client_id": client_id},
        cert=(str(cert_file), str(key_file)),
        verify=str(oidc_provider.ca_file),
        timeout=TIMEOUT,
    )

    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


def test_without_default_resource_token_has_no_audience(tmp_path: Any) -> None:
    with OidcProvider(trustme.CA(), tmp_path, default_resource=None) as provider:
        bare = _token(provider, "basic", scope=SCOPE)
        bare_info = _introspect(provider, "basic", bare.json()["access_token"])
        with_resource = _token(provider, "basic", scope=SCOPE, resource=RESOURCE)

    assert bare.status_code == 200, bare.text
    assert bare.json()["expires_in"] == NO_RESOURCE_TTL
    assert "aud" not in bare_info
    assert with_resource.status_code == 200, with_resource.text
    assert with_resource.json()["expires_in"] == ACCESS_TOKEN_TTL


def test_context_exit_stops_the_server(tmp_path: Any) -> None:
    with OidcProvider(trustme.CA(), tmp_path) as provider:
        process = provider.process
        assert process is not None
        assert process.poll() is None

    assert process.poll() is not None
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(provider.issuer, verify=str(provider.ca_file), timeout=TIMEOUT)
