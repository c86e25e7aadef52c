"""The HTTP rules of oauth_gateway._http and oauth_gateway._authflow: pure functions, no server."""

from __future__ import annotations

import pytest

from oauth_gateway._authflow import check_transport, is_invalid_token_challenge, read_401, same_origin
from oauth_gateway._http import (
    MAX_CHALLENGE_LENGTH,
    header_value_problem,
    is_header_name,
    is_loopback_host,
    origin_of,
    parse_www_authenticate,
    remote_program,
    remote_url,
    resource_metadata_problem,
    transport_problem,
)
from oauth_gateway.exceptions import InsecureTransportError

# --------------------------------------------------------------------------- WWW-Authenticate


def test_a_bearer_challenge_gives_resource_metadata_scope_and_error():
    header = (
        'Bearer realm="mcp", error="invalid_token", error_description="no token", '
        'resource_metadata="https://mcp.example/.well-known/oauth-protected-resource/mcp", scope="read write"'
    )
    (challenge,) = parse_www_authenticate(header)
    assert challenge.scheme == "Bearer"
    assert challenge.resource_metadata == "https://mcp.example/.well-known/oauth-protected-resource/mcp"
    assert challenge.scope == "read write"
    assert challenge.error == "invalid_token"
    assert challenge.get("REALM") == "mcp"


def test_several_challenges_token68_escapes_and_unquoted_values_are_parsed():
    header = 'Basic YWxhZGRpbjpvcGVu==, DPoP algs="ES256 PS256", Bearer Scope=read, title="say \\"hi\\"", Newauth'
    challenges = parse_www_authenticate(header)
    assert [c.scheme for c in challenges] == ["Basic", "DPoP", "Bearer", "Newauth"]
    assert challenges[0].token68 == "YWxhZGRpbjpvcGVu=="
    assert challenges[1].get("algs") == "ES256 PS256"
    assert challenges[2].scope == "read"
    assert challenges[2].get("title") == 'say "hi"'
    assert challenges[3].params == ()


def test_malformed_challenges_never_raise():
    for header in ("", ",,,", '"', "Bearer =", 'Bearer a="unterminated', "=x", "Bearer a=,b", "\x00\x01 ü"):
        parse_www_authenticate(header)
    (challenge,) = parse_www_authenticate('Bearer a="unterminated')
    assert challenge.get("a") == "unterminated"


@pytest.mark.parametrize(
    "hostile",
    [
        "Bearer " + 'a="' * 50000,
        "a " * 50000 + "=",
        "Bearer " + "a=b," * 50000,
        "Bearer " + "\\" * 100000,
        "x=" * 50000,
        "a, " * 2000000,  # two million schemes: the old auth.py parser sliced the rest of the header per scheme
    ],
)
def test_the_challenge_parser_reads_at_most_the_cap_of_adversarial_input(hostile):
    # The cost is bounded by reading MAX_CHALLENGE_LENGTH characters (bench/challenge_cost.py
    # measures it); here, the behaviour: the call returns and sees nothing past the cap.
    assert len(hostile) > MAX_CHALLENGE_LENGTH
    assert parse_www_authenticate(hostile) == parse_www_authenticate(hostile[:MAX_CHALLENGE_LENGTH])


def test_100_header_lines_of_64_kib_joined_are_read_up_to_the_cap():
    first = 'Bearer error="invalid_token", realm="' + "x" * (64 * 1024) + '"'
    lines = [first] + [("a, " * 22000)[: 64 * 1024] for _ in range(99)]
    header = ", ".join(lines)  # how requests joins repeated headers
    challenges = parse_www_authenticate(header)
    assert [(c.scheme, c.error) for c in challenges] == [("Bearer", "invalid_token")]
    assert read_401(header, "https://mcp.example/mcp").invalid_token


def test_a_challenge_past_the_cap_is_not_read_one_before_it_is():
    padding = "x" * MAX_CHALLENGE_LENGTH
    early = 'Bearer error="invalid_token", realm="%s"' % padding
    late = 'Basic realm="%s", Bearer error="invalid_token"' % padding
    assert is_invalid_token_challenge(early)
    assert not is_invalid_token_challenge(late)


@pytest.mark.parametrize(
    "header, expected",
    [
        ('Bearer error="invalid_token"', True),
        ('Basic realm="x", Bearer realm="y", error="invalid_token"', True),
        ('Bearer error="insufficient_scope"', False),
        ('Basic error="invalid_token"', False),
        (None, False),
    ],
)
def test_the_invalid_token_rule_counts_only_our_scheme(header, expected):
    assert is_invalid_token_challenge(header) is expected


def test_read_401_gives_the_nonce_request_and_the_invalid_token_of_a_dpop_config():
    header = 'DPoP error="use_dpop_nonce", Bearer error="invalid_token"'
    rejection = read_401(header, "https://mcp.example/mcp", ("dpop", "bearer"))
    assert rejection.use_dpop_nonce and rejection.invalid_token
    assert not read_401('DPoP error="invalid_token"', "https://mcp.example/mcp").invalid_token  # a bearer config


# --------------------------------------------------------------------------- resource_metadata origin rule


def test_a_challenge_metadata_url_on_the_resource_origin_is_followed():
    url = "https://mcp.example/.well-known/oauth-protected-resource/mcp"
    header = 'Bearer error="invalid_token", resource_metadata="%s"' % url
    rejection = read_401(header, "https://MCP.example:443/mcp")
    assert rejection.resource_metadata == url and rejection.refused_metadata is None
    assert resource_metadata_problem("https://mcp.example/mcp", url) is None


@pytest.mark.parametrize(
    "metadata_url",
    [
        "https://169.254.169.254/latest/meta-data/iam",
        "https://mcp.example:8443/.well-known/oauth-protected-resource",
        "http://mcp.example/.well-known/oauth-protected-resource",
        "https://internal.mcp.example/admin?q=1",
        "not a url",
    ],
)
def test_a_challenge_metadata_url_on_another_origin_is_refused_naming_only_the_origins(metadata_url):
    header = 'Bearer error="invalid_token", resource_metadata="%s"' % metadata_url
    rejection = read_401(header, "https://mcp.example/mcp")
    assert rejection.invalid_token and rejection.resource_metadata is None
    assert rejection.refused_metadata is not None
    message = rejection.refused_metadata.problem
    assert "https://mcp.example:443" in message
    assert "latest/meta-data" not in message and "admin" not in message and "q=1" not in message
    assert "OAUTH_RESOURCE_METADATA_URL" in rejection.refused_metadata.hint


def test_the_configured_metadata_url_may_be_on_another_origin_and_only_that_one():
    configured = "https://meta.example/prm/mcp"
    assert resource_metadata_problem("https://mcp.example/mcp", configured, configured) is None
    assert resource_metadata_problem("https://mcp.example/mcp", configured + "x", configured) is not None
    header = 'Bearer error="invalid_token", resource_metadata="%s"' % configured
    assert read_401(header, "https://mcp.example/mcp", configured_metadata=configured).resource_metadata == configured


# --------------------------------------------------------------------------- https, loopback, origins


def test_https_rules_allow_loopback_http_only_when_not_enforced():
    assert transport_problem("https://as.example/token") is None
    assert transport_problem("http://localhost:8080/token", enforce_https=False) is None
    assert transport_problem("http://127.0.0.5/token", enforce_https=False) is None
    assert transport_problem("http://[::1]/token", enforce_https=False) is None
    for url, enforce in (
        ("http://localhost/token", True),
        ("http://as.example/token", False),
        ("ftp://as.example/token", False),
        ("/token", False),
    ):
        assert transport_problem(url, enforce_https=enforce) is not None, url
    assert transport_problem("ftp://as.example/token").malformed
    assert is_loopback_host("app.localhost") and not is_loopback_host("localhost.example.com")
    assert is_loopback_host("LOCALHOST.") and is_loopback_host("[::1]") and not is_loopback_host("")


def test_any_http_host_allows_plain_http_only_with_enforcement_off():
    assert transport_problem("http://idp/token", enforce_https=False, any_http_host=True) is None
    refused = transport_problem("http://idp/token", any_http_host=True)
    assert refused is not None and refused.problem == "must be https, got 'http://idp/token'"
    assert "OAUTH_ENFORCE_HTTPS" in refused.hint


def test_the_token_is_sent_over_https_or_an_allowed_http_only():
    check_transport("https://api.example/x", "api", enforce_https=True)
    check_transport("http://127.0.0.1:9/x", "api", enforce_https=False)
    check_transport("http://api.example/x", "api", enforce_https=True, allow_insecure=True)
    for url, enforce in (("http://api.example/x", False), ("http://127.0.0.1/x", True), ("ftp://api/x", False)):
        with pytest.raises(InsecureTransportError) as info:
            check_transport(url, "api", enforce_https=enforce)
        assert "refusing to send the api token" in str(info.value)
    with pytest.raises(InsecureTransportError, match="a URL without a scheme"):
        check_transport("/relative", "api", enforce_https=True)


def test_origins_fill_in_default_ports_and_lower_case():
    assert origin_of("HTTPS://Example.COM/x") == "https://example.com:443"
    assert origin_of("https://[::1]:9000/x") == "https://[::1]:9000"
    assert same_origin("https://a.example/x", "https://a.example:443/y")
    assert not same_origin("https://a.example/x", "http://a.example/x")
    assert origin_of("https://a.example:bad/x") == "invalid:"
    assert resource_metadata_problem("https://a.example:bad/x", "https://a.example:bad/y") is not None


# --------------------------------------------------------------------------- headers


def test_header_names_are_tokens_and_values_are_one_clean_line():
    assert is_header_name("X-Api-Key") and not is_header_name("X Api") and not is_header_name("")
    assert header_value_problem("Bearer abc") is None
    assert header_value_problem("a\r\nX-Injected: 1") == "holds a line break (CR or LF)"
    assert header_value_problem("a\0") == "holds a NUL character"
    assert header_value_problem("a\x1b") == "holds the control character U+001B"
    assert header_value_problem(" a") == "starts or ends with whitespace"


# --------------------------------------------------------------------------- the remote-server detector


@pytest.mark.parametrize(
    "command, args, program, url",
    [
        ("npx", ["-y", "mcp-remote", "https://api/mcp"], "mcp-remote", "https://api/mcp"),
        ("npx", ["mcp-remote@0.1.2", "https://api/mcp", "--header", "X:1"], "mcp-remote", "https://api/mcp"),
        ("C:\\tools\\mcp-remote.cmd", ["https://api/mcp"], "mcp-remote", "https://api/mcp"),
        ("/usr/bin/curl", ["-s", "https://api/mcp"], "curl", "https://api/mcp"),
        ("npx", ["-y", "some-server", "https://host/mcp-remote"], None, None),
        ("uvx", ["server"], None, None),
        ("npx", ["https://api/mcp", "mcp-remote"], "mcp-remote", None),  # no URL after the program
        ("npx", [3, None, "mcp-remote", "ftp://x", "http://api/mcp"], "mcp-remote", "http://api/mcp"),
    ],
)
def test_one_detector_names_the_remote_program_and_its_url(command, args, program, url):
    assert remote_program(command, args) == program
    assert remote_url(command, args) == url
