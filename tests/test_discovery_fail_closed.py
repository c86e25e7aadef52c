"""Every discovery mismatch, through ``TokenManager.get_token``: one clear error, zero token requests.

The MCP server and its metadata are a :class:`~metadata_servers.MetadataServer`; the
token endpoint its authorization server metadata names is the suite's
:class:`~servers.AuthServer`, which counts the requests it gets. Each case publishes one
mismatch and checks that the manager raises a :class:`~oauth_gateway.DiscoveryError`
naming the step and the URL, and that the token endpoint saw nothing (nor does it on the
next call, or on a forced refresh).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, NamedTuple

import pytest

import oauth_gateway as og
from metadata_servers import MetadataServer, Route

PRM = "/.well-known/oauth-protected-resource"
RFC8414 = "/.well-known/oauth-authorization-server"


class Scene(NamedTuple):
    meta: MetadataServer
    plain: MetadataServer  # a plain-http server, the target of the plain-http case
    token_server: Any

    @property
    def mcp(self) -> str:
        return self.meta.url + "/mcp"

    def as_document(self, **fields: Any) -> Dict[str, Any]:
        fields.setdefault("token_endpoint", self.token_server.token_url)
        fields.setdefault("revocation_endpoint", None)
        return self.meta.as_document(**fields)


@pytest.fixture
def scene(ca, auth_server) -> Iterator[Scene]:
    with MetadataServer(ca) as meta, MetadataServer(None, host="localhost") as plain:
        plain.route("/token", Route(json={"access_token": "never", "token_type": "Bearer"}), method="POST")
        yield Scene(meta, plain, auth_server)


def _resource_mismatch(scene: Scene) -> Dict[str, str]:
    scene.meta.publish(resource="https://other.example/mcp", as_document=scene.as_document())
    return {"step": "protected resource metadata", "url": scene.meta.url + PRM + "/mcp", "says": "'resource' is"}


def _issuer_mismatch(scene: Scene) -> Dict[str, str]:
    scene.meta.publish(as_document=scene.as_document(issuer=scene.meta.url + "/elsewhere"))
    return {"step": "authorization server metadata", "url": scene.meta.url + RFC8414, "says": "'issuer' is"}


def _no_token_endpoint(scene: Scene) -> Dict[str, str]:
    scene.meta.publish(as_document=scene.as_document(token_endpoint=None))
    return {"step": "authorization server metadata", "url": scene.meta.url + RFC8414, "says": "no 'token_endpoint'"}


def _no_supported_auth_method(scene: Scene) -> Dict[str, str]:
    document = scene.as_document(token_endpoint_auth_methods_supported=["self_signed_tls_client_auth"])
    scene.meta.publish(as_document=document)
    return {
        "step": "client authentication method",
        "url": scene.meta.url + RFC8414,
        "says": "none of them works with a client secret",
    }


def _plain_http_token_endpoint(scene: Scene) -> Dict[str, str]:
    scene.meta.publish(as_document=scene.as_document(token_endpoint=scene.plain.url + "/token"))
    return {"step": "authorization server metadata", "url": scene.plain.url + "/token", "says": "must be https"}


def _plain_http_authorization_server(scene: Scene) -> Dict[str, str]:
    scene.plain.json(RFC8414, scene.plain.as_document())
    scene.meta.publish(authorization_servers=[scene.plain.url])
    return {"step": "protected resource metadata", "url": scene.plain.url, "says": "must be https"}


def _metadata_not_json(scene: Scene) -> Dict[str, str]:
    scene.meta.publish(as_document=scene.as_document())
    scene.meta.route(PRM + "/mcp", Route(body=b"<html>login</html>", content_type="text/html"))
    return {"step": "protected resource metadata", "url": scene.meta.url + PRM + "/mcp", "says": "not JSON"}


def _no_challenge_and_no_well_known_document(scene: Scene) -> Dict[str, str]:
    scene.meta.json(RFC8414, scene.as_document())  # an authorization server nobody names
    scene.meta.challenge("/mcp", status=200)  # answers without a 401
    return {
        "step": "resource challenge",
        "url": scene.meta.url + "/mcp",
        "says": "no 401 challenge with resource_metadata and no well-known document",
    }


CASES: Dict[str, Callable[[Scene], Dict[str, str]]] = {
    "resource mismatch": _resource_mismatch,
    "issuer mismatch": _issuer_mismatch,
    "no token endpoint": _no_token_endpoint,
    "no supported auth method": _no_supported_auth_method,
    "plain http token endpoint": _plain_http_token_endpoint,
    "plain http authorization server": _plain_http_authorization_server,
    "metadata not JSON": _metadata_not_json,
    "no challenge and no well-known document": _no_challenge_and_no_well_known_document,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_discovery_mismatch_fails_closed_with_zero_token_requests_naming_the_url_and_the_step(
    scene, ca_bundle, clock, case
):
    expected = CASES[case](scene)
    client_id, secret = next(iter(scene.token_server.clients.items()))
    config = og.OAuthConfig.from_dict(
        {
            "enabled": True,
            "OAUTH_CLIENT_ID": client_id,
            "OAUTH_CLIENT_SECRET": secret,
            "OAUTH_RESOURCE": scene.mcp,
            "OAUTH_TRUST_DISCOVERED_ISSUER": True,  # the test moves or forges the issuer: nothing to pin
            "OAUTH_CA_BUNDLE_PATH": ca_bundle,
        }
    )
    assert config.enforce_https
    manager = og.TokenManager(clock=clock, sleep=lambda seconds: None)

    with pytest.raises(og.DiscoveryError) as info:
        manager.get_token("mcp", config)
    error = info.value
    text = str(error)
    assert error.step == expected["step"]
    assert text.startswith("%s %s: " % (expected["step"], expected["url"])), text
    assert expected["says"] in text
    assert secret not in text

    with pytest.raises(og.DiscoveryError):
        manager.get_token("mcp", config)  # the failure cool-down answers
    clock.advance(og.manager.DEFAULT_FAILURE_COOLDOWN + 1)
    with pytest.raises(og.DiscoveryError):
        manager.refresh("mcp", config)  # discovers again, and fails again
    assert scene.token_server.count("/token") == 0
    assert scene.token_server.count(None) == 0
    assert scene.plain.count() == 0
    metrics = manager.get_metrics()
    assert metrics["token_acquisitions_total"] == 0
    assert all("authorization" not in record.headers for record in scene.meta.requests + scene.plain.requests)
