"""Discovery (RFC 9728, RFC 8414, OpenID) against real loopback servers, and its pure parts."""

from __future__ import annotations

import pickle
import threading

import pytest
import requests

from metadata_servers import CountingFetch, MetadataServer, Route, requests_fetch
from oauth_gateway import OAuthGatewayError, TransportError
from oauth_gateway.discovery import (
    AuthorizationServerMetadata,
    Discoverer,
    DiscoveryError,
    authorization_server_metadata_urls,
    canonical_resource_uri,
    choose_auth_method,
    parse_cache_max_age,
    protected_resource_metadata_urls,
)
from oidc_provider import oidc_provider  # noqa: F401 (the fixture, found by pytest here)
from servers import wait_for_waiters

PRM = "/.well-known/oauth-protected-resource"
RFC8414 = "/.well-known/oauth-authorization-server"
OIDC = "/.well-known/openid-configuration"


@pytest.fixture
def meta(ca):
    with MetadataServer(ca) as server:
        yield server


@pytest.fixture
def session(ca_bundle):
    with requests.Session() as s:
        s.verify = ca_bundle
        yield s


@pytest.fixture
def make_discoverer(session, clock):
    def make(**kwargs):
        kwargs.setdefault("clock", clock)
        fetch = CountingFetch(requests_fetch(session))
        discoverer = Discoverer(fetch, **kwargs)
        discoverer.calls = fetch.calls  # type: ignore[attr-defined]
        return discoverer

    return make


# --------------------------------------------------------------------------- URL builders


def test_an_issuer_with_a_path_tries_rfc8414_then_oidc_insert_then_oidc_append():
    assert authorization_server_metadata_urls("https://as.example/tenant/1") == [
        "https://as.example/.well-known/oauth-authorization-server/tenant/1",
        "https://as.example/.well-known/openid-configuration/tenant/1",
        "https://as.example/tenant/1/.well-known/openid-configuration",
    ]


def test_an_issuer_without_a_path_tries_rfc8414_then_oidc_at_the_root():
    expected = [
        "https://as.example/.well-known/oauth-authorization-server",
        "https://as.example/.well-known/openid-configuration",
    ]
    assert authorization_server_metadata_urls("https://as.example") == expected
    assert authorization_server_metadata_urls("https://as.example/") == expected


def test_resource_metadata_urls_insert_the_path_then_fall_back_to_the_root():
    assert protected_resource_metadata_urls("https://mcp.example/public/mcp") == [
        "https://mcp.example/.well-known/oauth-protected-resource/public/mcp",
        "https://mcp.example/.well-known/oauth-protected-resource",
    ]
    assert protected_resource_metadata_urls("https://mcp.example") == [
        "https://mcp.example/.well-known/oauth-protected-resource"
    ]


def test_the_canonical_resource_uri_lowercases_scheme_and_host_and_drops_fragment_slash_and_default_port():
    assert canonical_resource_uri("HTTPS://MCP.Example.COM:443/Path/MCP/#frag") == "https://mcp.example.com/Path/MCP"
    assert canonical_resource_uri("https://mcp.example.com/") == "https://mcp.example.com"
    assert canonical_resource_uri("http://LOCALHOST:8080/mcp?x=1") == "http://localhost:8080/mcp?x=1"
    assert canonical_resource_uri("https://[::1]:8443/mcp") == "https://[::1]:8443/mcp"
    with pytest.raises(ValueError):
        canonical_resource_uri("mcp.example.com/mcp")


# --------------------------------------------------------------------------- small rules


def test_cache_control_max_age_no_store_and_the_default():
    assert parse_cache_max_age(None) == 3600
    assert parse_cache_max_age("public, max-age=60") == 60
    assert parse_cache_max_age("max-age=99999999") == 86400
    assert parse_cache_max_age("no-store") == 0
    assert parse_cache_max_age("max-age=abc", default=10) == 10


def _metadata(methods):
    return AuthorizationServerMetadata(
        issuer="https://as.example",
        token_endpoint="https://as.example/token",
        token_endpoint_auth_methods_supported=tuple(methods),
        metadata_url="https://as.example/.well-known/oauth-authorization-server",
    )


def test_a_secret_prefers_client_secret_basic_then_post():
    assert choose_auth_method(_metadata(["client_secret_post", "client_secret_basic"]), True) == "client_secret_basic"
    assert choose_auth_method(_metadata(["client_secret_post"]), True) == "client_secret_post"
    assert choose_auth_method(_metadata(["client_secret_jwt"]), True) == "client_secret_jwt"


def test_a_private_key_or_a_certificate_selects_its_method():
    both = ["private_key_jwt", "client_secret_basic", "tls_client_auth"]
    assert choose_auth_method(_metadata(both), True, have_private_key=True) == "private_key_jwt"
    assert choose_auth_method(_metadata(["tls_client_auth"]), False, have_cert=True) == "tls_client_auth"


def test_metadata_without_auth_methods_means_client_secret_basic():
    metadata = AuthorizationServerMetadata(issuer="https://as.example", token_endpoint="https://as.example/t")
    assert choose_auth_method(metadata, True) == "client_secret_basic"


def test_no_supported_auth_method_is_a_clear_error():
    with pytest.raises(DiscoveryError) as info:
        choose_auth_method(_metadata(["private_key_jwt"]), True)
    message = str(info.value)
    assert "private_key_jwt" in message and "a client secret" in message
    assert "OAUTH_TOKEN_ENDPOINT_AUTH_METHOD" in message
    assert info.value.step == "client authentication method"


def test_a_discovery_error_names_the_step_and_the_redacted_url_and_pickles():
    error = DiscoveryError("bad", "https://u:pw@as.example/x?key=s3cret", "authorization server metadata", "fix it")
    text = str(error)
    assert "authorization server metadata https://***@as.example/x?key=***: bad; fix it" == text
    assert "s3cret" not in text and "pw" not in text
    assert isinstance(error, OAuthGatewayError)
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == text and copy.step == error.step and copy.url == error.url


# --------------------------------------------------------------------------- the whole chain


def test_the_challenge_leads_to_resource_metadata_and_to_the_authorization_server(meta, make_discoverer):
    urls = meta.publish(prm_scopes=["mcp:read"])
    discoverer = make_discoverer()
    result = discoverer.protected_resource(urls["mcp"])

    assert result.resource == urls["mcp"]
    assert result.issuer == urls["issuer"]
    assert result.token_endpoint == meta.url + "/token"
    assert result.revocation_endpoint == meta.url + "/revoke"
    assert result.resource_metadata_url == meta.url + PRM + "/mcp"
    assert result.scopes == ("mcp:read",) and result.scope == "mcp:read"
    assert [(r.method, r.path) for r in meta.requests] == [("POST", "/mcp"), ("GET", PRM + "/mcp"), ("GET", RFC8414)]

    probe = meta.requests[0]
    assert probe.headers["accept"] == "application/json, text/event-stream"
    assert b'"method":"initialize"' in probe.body
    assert all("authorization" not in r.headers for r in meta.requests)


def test_the_challenge_scope_wins_over_scopes_supported(meta, make_discoverer):
    urls = meta.publish(prm_scopes=["a", "b"], challenge_scope="mcp:basic mcp:x")
    result = make_discoverer().protected_resource(urls["mcp"])
    assert result.challenge_scope == "mcp:basic mcp:x"
    assert result.scopes == ("mcp:basic", "mcp:x")


def test_no_scope_anywhere_means_no_scope(meta, make_discoverer):
    urls = meta.publish()
    assert make_discoverer().protected_resource(urls["mcp"]).scopes == ()


def test_without_resource_metadata_in_the_challenge_the_well_known_path_then_the_root_is_tried(meta, make_discoverer):
    urls = meta.publish(in_challenge=False, prm_at=PRM)
    result = make_discoverer().protected_resource(urls["mcp"])
    assert result.resource_metadata_url == meta.url + PRM
    assert [r.path for r in meta.requests] == ["/mcp", PRM + "/mcp", PRM, RFC8414]


def test_a_server_that_does_not_challenge_still_gets_well_known_discovery(meta, make_discoverer):
    urls = meta.publish(in_challenge=False)
    meta.challenge("/mcp", status=200)
    assert make_discoverer().protected_resource(urls["mcp"]).issuer == urls["issuer"]


def test_no_challenge_and_no_well_known_document_is_an_error(meta, make_discoverer):
    meta.challenge("/mcp", resource_metadata=None)
    with pytest.raises(DiscoveryError) as info:
        make_discoverer().protected_resource(meta.url + "/mcp")
    assert "no 401 challenge with resource_metadata and no well-known document" in str(info.value)
    assert info.value.step == "resource challenge"
    assert meta.count(RFC8414) == 0


def test_a_resource_mismatch_fails_closed_before_the_authorization_server(meta, make_discoverer):
    urls = meta.publish(resource="https://other.example/mcp")
    with pytest.raises(DiscoveryError) as info:
        make_discoverer().protected_resource(urls["mcp"])
    assert "'resource' is 'https://other.example/mcp'" in str(info.value)
    assert info.value.step == "protected resource metadata"
    assert meta.count(RFC8414) == 0 and meta.count(OIDC) == 0
    assert meta.count() == 2


def test_an_issuer_mismatch_fails_closed_and_tries_no_other_metadata_url(meta, make_discoverer):
    urls = meta.publish(issuer_path="/tenant", as_document=None)
    meta.json(RFC8414 + "/tenant", meta.as_document("/tenant", issuer=meta.url + "/tenant/"))
    with pytest.raises(DiscoveryError) as info:
        make_discoverer().protected_resource(urls["mcp"])
    assert "'issuer' is" in str(info.value) and "was asked for" in str(info.value)
    assert meta.count(OIDC + "/tenant") == 0 and meta.count("/tenant" + OIDC) == 0
    assert meta.count() == 3


def test_oidc_path_insert_then_path_append_are_tried_after_rfc8414(meta, make_discoverer):
    issuer = meta.url + "/tenant"
    meta.json("/tenant" + OIDC, meta.as_document("/tenant"))
    server = make_discoverer().authorization_server(issuer)
    assert server.metadata_url == issuer + OIDC
    assert [r.path for r in meta.requests] == [RFC8414 + "/tenant", OIDC + "/tenant", "/tenant" + OIDC]


@pytest.mark.parametrize(
    "body, problem",
    [
        (b"<html>nope</html>", "the answer is not JSON"),
        (b'["a list"]', "not an object"),
        # Deeper than any metadata: refused before json.loads could recurse.
        (b"[" * 50000 + b"]" * 50000, "the answer is not JSON"),
    ],
)
def test_metadata_that_is_not_a_json_object_fails_closed(meta, make_discoverer, body, problem):
    urls = meta.publish()
    meta.route(PRM + "/mcp", Route(body=body, content_type="text/html"))
    with pytest.raises(DiscoveryError) as info:
        make_discoverer().protected_resource(urls["mcp"])
    assert problem in str(info.value)
    assert meta.count() == 2 and meta.count(RFC8414) == 0


def test_authorization_server_metadata_without_a_token_endpoint_is_an_error(meta, make_discoverer):
    urls = meta.publish(as_document=meta.as_document(token_endpoint=None))
    with pytest.raises(DiscoveryError) as info:
        make_discoverer().protected_resource(urls["mcp"])
    assert "no 'token_endpoint'" in str(info.value)
    assert meta.count(OIDC) == 0


def test_a_pinned_issuer_in_the_list_is_followed(meta, make_discoverer):
    other = "https://not-contacted.example"
    urls = meta.publish(authorization_servers=[other, meta.url])
    result = make_discoverer().protected_resource(urls["mcp"], pinned_issuer=meta.url)
    assert result.issuer == meta.url


def test_a_pinned_issuer_missing_from_the_list_fails_closed(meta, make_discoverer):
    urls = meta.publish()
    discoverer = make_discoverer()
    with pytest.raises(DiscoveryError) as info:
        discoverer.protected_resource(urls["mcp"], pinned_issuer="https://pinned.example")
    assert "OAUTH_ISSUER" in str(info.value)
    assert meta.count(RFC8414) == 0
    assert all("pinned.example" not in url for _, url in discoverer.calls)


def test_the_first_authorization_server_is_followed_without_a_pin(meta, make_discoverer):
    urls = meta.publish(authorization_servers=[meta.url, "https://second.example"])
    discoverer = make_discoverer()
    assert discoverer.protected_resource(urls["mcp"]).issuer == meta.url
    assert all("second.example" not in url for _, url in discoverer.calls)


# --------------------------------------------------------------------------- https


def test_plain_http_resource_metadata_is_refused_without_a_request(meta, make_discoverer):
    meta.challenge("/mcp", resource_metadata="http://127.0.0.1:9/.well-known/oauth-protected-resource/mcp")
    discoverer = make_discoverer()
    with pytest.raises(DiscoveryError) as info:
        discoverer.protected_resource(meta.url + "/mcp")
    assert "must be https" in str(info.value)
    assert discoverer.calls == [("POST", meta.url + "/mcp")]


def test_a_plain_http_token_endpoint_is_refused(meta, make_discoverer):
    urls = meta.publish(as_document=meta.as_document(token_endpoint="http://as.example/token"))
    with pytest.raises(DiscoveryError) as info:
        make_discoverer().protected_resource(urls["mcp"])
    assert "token_endpoint must be https" in str(info.value)


def test_a_plain_http_authorization_server_is_refused_without_a_request(meta, make_discoverer):
    urls = meta.publish(authorization_servers=["http://as.example"])
    discoverer = make_discoverer()
    with pytest.raises(DiscoveryError):
        discoverer.protected_resource(urls["mcp"])
    assert all("as.example" not in url for _, url in discoverer.calls)


def test_loopback_http_works_only_when_https_is_not_enforced(session, clock):
    with MetadataServer(None, host="localhost") as plain:
        urls = plain.publish()
        with pytest.raises(DiscoveryError) as info:
            Discoverer(requests_fetch(session), clock=clock).protected_resource(urls["mcp"])
        assert "OAUTH_ENFORCE_HTTPS" in str(info.value)
        assert plain.count() == 0

        result = Discoverer(requests_fetch(session), clock=clock, enforce_https=False).protected_resource(urls["mcp"])
        assert result.token_endpoint == plain.url + "/token"


# --------------------------------------------------------------------------- cache and single flight


def test_metadata_is_cached_for_its_max_age(meta, make_discoverer, clock):
    urls = meta.publish(prm_headers=[("Cache-Control", "max-age=60")], as_headers=[("Cache-Control", "max-age=600")])
    discoverer = make_discoverer()
    discoverer.protected_resource(urls["mcp"])
    assert meta.count() == 3
    for _ in range(100):
        discoverer.protected_resource(urls["mcp"])
    assert meta.count() == 3

    clock.advance(61)
    discoverer.protected_resource(urls["mcp"])
    assert meta.count(PRM + "/mcp") == 2 and meta.count(RFC8414) == 1

    clock.advance(600)
    discoverer.protected_resource(urls["mcp"])
    assert meta.count(RFC8414) == 2


def test_metadata_without_max_age_is_kept_one_hour(meta, make_discoverer, clock):
    meta.publish()
    discoverer = make_discoverer()
    discoverer.authorization_server(meta.url)
    clock.advance(3599)
    discoverer.authorization_server(meta.url)
    assert meta.count(RFC8414) == 1
    clock.advance(2)
    discoverer.authorization_server(meta.url)
    assert meta.count(RFC8414) == 2


def test_no_store_metadata_is_fetched_every_time(meta, make_discoverer):
    meta.publish(as_headers=[("Cache-Control", "no-store")])
    discoverer = make_discoverer()
    discoverer.authorization_server(meta.url)
    discoverer.authorization_server(meta.url)
    assert meta.count(RFC8414) == 2


def test_the_cache_is_bounded(meta, make_discoverer):
    for path in ("/a", "/b", "/c"):
        meta.json(RFC8414 + path, meta.as_document(path))
    discoverer = make_discoverer(max_entries=2)
    for path in ("/a", "/b", "/c"):
        discoverer.authorization_server(meta.url + path)
    assert discoverer.cached == 2
    discoverer.authorization_server(meta.url + "/c")
    discoverer.authorization_server(meta.url + "/a")
    assert meta.count(RFC8414 + "/c") == 1 and meta.count(RFC8414 + "/a") == 2


def test_errors_are_not_cached(meta, make_discoverer):
    urls = meta.publish(resource="https://other.example/mcp")
    discoverer = make_discoverer()
    with pytest.raises(DiscoveryError):
        discoverer.protected_resource(urls["mcp"])
    meta.publish()
    assert discoverer.protected_resource(urls["mcp"]).resource == urls["mcp"]


def _in_threads(n, target):
    barrier = threading.Barrier(n)
    results, errors = [], []

    def run():
        barrier.wait()
        try:
            results.append(target())
        except Exception as exc:  # collected for the assertions
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    return threads, results, errors


def test_sixteen_threads_share_one_fetch_per_url(meta, make_discoverer):
    urls = meta.publish()
    discoverer = make_discoverer()
    meta.hold()
    threads, results, errors = _in_threads(16, lambda: discoverer.protected_resource(urls["mcp"]))
    meta.wait_for("/mcp")
    wait_for_waiters(threads, 15)  # the other 15 reach the wait while the answer is held
    assert meta.count() == 1
    meta.release()
    for t in threads:
        t.join(10)
    assert not errors and len(results) == 16
    assert {r.token_endpoint for r in results} == {meta.url + "/token"}
    assert meta.count("/mcp") == 1 and meta.count(PRM + "/mcp") == 1 and meta.count(RFC8414) == 1


def test_threads_waiting_on_a_failed_fetch_get_its_error_without_a_second_request(meta, make_discoverer):
    urls = meta.publish(resource="https://other.example/mcp")
    discoverer = make_discoverer()
    meta.hold()
    threads, results, errors = _in_threads(16, lambda: discoverer.protected_resource(urls["mcp"]))
    meta.wait_for("/mcp")
    wait_for_waiters(threads, 15)
    meta.release()
    for t in threads:
        t.join(10)
    assert not results and len(errors) == 16
    assert all(isinstance(e, DiscoveryError) for e in errors)
    # A thread that arrived after the leader finished may start one more fetch; none ran in parallel.
    assert meta.count("/mcp") <= 2 and meta.count(RFC8414) == 0


# --------------------------------------------------------------------------- transport and status


def test_a_network_failure_is_a_transport_error_naming_the_url(session, clock, ca):
    server = MetadataServer(ca).start()
    url = server.url + "/mcp"
    server.stop()
    with pytest.raises(TransportError) as info:
        Discoverer(requests_fetch(session, timeout=2), clock=clock).protected_resource(url)
    assert url in str(info.value)


def test_a_server_error_on_a_metadata_url_is_retryable_and_stops_the_search(meta, make_discoverer):
    meta.route(RFC8414, Route(503, json={"error": "busy"}))
    with pytest.raises(DiscoveryError) as info:
        make_discoverer().authorization_server(meta.url)
    assert info.value.retryable and "HTTP 503" in str(info.value)
    assert meta.count(OIDC) == 0


def test_a_redirect_is_not_followed(meta, make_discoverer):
    meta.route(RFC8414, Route(302, headers=[("Location", meta.url + "/elsewhere")]))
    with pytest.raises(DiscoveryError):
        make_discoverer().authorization_server(meta.url)
    assert meta.count("/elsewhere") == 0


# --------------------------------------------------------------------------- oidc-provider


def test_oidc_provider_is_discovered_by_issuer_and_through_resource_metadata(oidc_provider, clock):
    with requests.Session() as s:
        s.verify = str(oidc_provider.ca_file)
        discoverer = Discoverer(requests_fetch(s), clock=clock)
        server = discoverer.authorization_server(oidc_provider.issuer)
        assert server.token_endpoint == oidc_provider.token_url
        assert server.metadata_url == oidc_provider.issuer + OIDC
        assert choose_auth_method(server, have_secret=True) == "client_secret_basic"

        with MetadataServer(oidc_provider.ca) as mcp:
            urls = mcp.publish(authorization_servers=[oidc_provider.issuer])
            result = discoverer.protected_resource(urls["mcp"], pinned_issuer=oidc_provider.issuer)
        assert result.token_endpoint == oidc_provider.token_url
        assert result.revocation_endpoint == oidc_provider.revocation_url
