"""One table of client-authentication methods: config, discovery and the builder all read it."""

from __future__ import annotations

import itertools
from typing import Any, Dict, FrozenSet

import pytest

import oauth_gateway as og
from oauth_gateway import client_auth, discovery
from oauth_gateway.client_auth import (
    AUTH_METHOD_TABLE,
    AUTH_METHODS,
    CREDENTIALS,
    SIGNING_METHODS,
    ClientSecretBasic,
    NoClientAuth,
    TlsClientAuth,
    auth_problem,
    build_client_auth,
    default_auth_method,
    held_credentials,
    preferred_auth_method,
)
from oauth_gateway.discovery import AuthorizationServerMetadata, choose_auth_method
from oauth_gateway.exceptions import ConfigError, DiscoveryError

BASE: Dict[str, Any] = {
    "enabled": True,
    "OAUTH_CLIENT_ID": "client-1",
    "OAUTH_CLIENT_SECRET": "s3cr3t-value-1234",
    "OAUTH_TOKEN_URL": "https://idp.example.com/oauth/token",
}
KINDS = tuple(CREDENTIALS)
EVERY_HELD = [frozenset(c) for n in range(len(KINDS) + 1) for c in itertools.combinations(KINDS, n)]


def _metadata(methods: Any) -> AuthorizationServerMetadata:
    return AuthorizationServerMetadata(
        issuer="https://as.example",
        token_endpoint="https://as.example/token",
        token_endpoint_auth_methods_supported=tuple(methods),
        metadata_url="https://as.example/.well-known/oauth-authorization-server",
    )


def test_every_row_needs_only_known_credentials_and_the_name_tuples_come_from_the_table():
    assert [row.name for row in AUTH_METHOD_TABLE] == list(AUTH_METHODS)
    assert len(set(AUTH_METHODS)) == len(AUTH_METHODS)
    for row in AUTH_METHOD_TABLE:
        assert set(row.needs) <= set(CREDENTIALS), row.name
    assert SIGNING_METHODS == ("private_key_jwt", "client_secret_jwt")
    # discovery re-uses the table's names; it keeps no tuple of its own.
    assert discovery.SIGNING_METHODS is client_auth.SIGNING_METHODS
    assert not hasattr(discovery, "AUTH_METHODS") and not hasattr(discovery, "_SECRET_METHODS")


@pytest.mark.parametrize("method", AUTH_METHODS)
@pytest.mark.parametrize("held", EVERY_HELD, ids=lambda held: "+".join(sorted(held)) or "nothing")
def test_a_method_is_usable_exactly_when_one_of_its_needs_is_held(method: str, held: FrozenSet[str]):
    row = next(r for r in AUTH_METHOD_TABLE if r.name == method)
    problem = auth_problem(method, held)
    assert (problem is None) == (not row.needs or bool(held & set(row.needs)))
    if problem is not None:
        assert problem.message.startswith("%s needs " % method)
        for kind in row.needs:
            assert CREDENTIALS[kind].label in problem.message and CREDENTIALS[kind].keys in problem.hint


def test_an_unknown_method_names_every_known_one():
    problem = auth_problem("client_secret_magic", frozenset(["secret"]))
    assert problem is not None and problem.key == "OAUTH_TOKEN_ENDPOINT_AUTH_METHOD"
    assert all(name in problem.hint for name in AUTH_METHODS)


@pytest.mark.parametrize(
    "method, block_changes, builder_kwargs",
    [
        ("tls_client_auth", {}, {}),
        ("private_key_jwt", {}, {}),
    ],
)
def test_the_config_and_the_builder_give_one_message(method: str, block_changes: Any, builder_kwargs: Any):
    block = dict(BASE, OAUTH_TOKEN_ENDPOINT_AUTH_METHOD=method, **block_changes)
    with pytest.raises(ConfigError) as from_config:
        og.OAuthConfig.from_dict(block, json_path="$.oauth_config")
    with pytest.raises(ConfigError) as from_builder:
        build_client_auth(method, "client-1", json_path="$.oauth_config", **builder_kwargs)
    assert (
        from_config.value.json_path == from_builder.value.json_path == "$.oauth_config.OAUTH_TOKEN_ENDPOINT_AUTH_METHOD"
    )
    assert str(from_config.value) == str(from_builder.value)
    assert "%s needs" % method in str(from_config.value)


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post", "client_secret_jwt"])
def test_a_secret_method_without_a_secret_is_refused_at_the_secret(method: str):
    with pytest.raises(ConfigError) as from_builder:
        build_client_auth(method, "client-1", json_path="$.oauth_config")
    assert from_builder.value.json_path == "$.oauth_config.OAUTH_CLIENT_SECRET"
    assert "%s needs a client secret" % method in str(from_builder.value)
    # Empty only once ${EMPTY} is resolved: past the schema, the load-time check speaks.
    block = dict(BASE, OAUTH_TOKEN_ENDPOINT_AUTH_METHOD=method, OAUTH_CLIENT_SECRET="${EMPTY}")
    with pytest.raises(ConfigError) as from_config:
        og.OAuthConfig.from_dict(block, json_path="$.oauth_config", environ={"EMPTY": ""})
    assert "is empty after resolving" in str(from_config.value)
    assert from_config.value.json_path == "$.oauth_config.OAUTH_CLIENT_SECRET"
    # The hint lists the other credentials, in the table's words.
    for kind in ("key", "assertion", "certificate"):
        assert CREDENTIALS[kind].keys in str(from_config.value)


def test_the_builder_makes_each_rows_class():
    assert isinstance(build_client_auth("client_secret_basic", "c", client_secret="s"), ClientSecretBasic)
    assert isinstance(build_client_auth("tls_client_auth", "c", cert_path="/c.pem", key_path="/k.pem"), TlsClientAuth)
    none = build_client_auth("none", "c")
    assert isinstance(none, NoClientAuth) and none.client_id == "c"


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({}, "client_secret_basic"),
        ({"OAUTH_USE_BASIC_AUTH": False}, "client_secret_post"),
        ({"OAUTH_TOKEN_ENDPOINT_AUTH_METHOD": "client_secret_jwt"}, "client_secret_jwt"),
    ],
)
def test_the_configs_method_is_the_tables_default(changes: Any, expected: str):
    config = og.OAuthConfig.from_dict(dict(BASE, **changes))
    assert config.auth_method == expected


@pytest.mark.parametrize("held", EVERY_HELD, ids=lambda held: "+".join(sorted(held)) or "nothing")
def test_the_default_method_is_one_the_held_credentials_allow(held: FrozenSet[str]):
    for jwt_bearer in (False, True):
        method = default_auth_method(held, jwt_bearer=jwt_bearer)
        if held and not (jwt_bearer and held == {"assertion"}):
            assert auth_problem(method, held) is None, (held, jwt_bearer, method)
    assert default_auth_method(frozenset(["assertion"]), jwt_bearer=True) == "none"  # the file is the grant's
    assert default_auth_method(frozenset(["certificate", "secret"])) == "client_secret_basic"


def test_discovery_prefers_in_table_order_and_never_chooses_none():
    everything = [row.name for row in AUTH_METHOD_TABLE]
    assert preferred_auth_method(everything, held_credentials(secret=True, key=True)) == "private_key_jwt"
    assert preferred_auth_method(["none"], frozenset()) is None
    assert choose_auth_method(_metadata(["tls_client_auth", "client_secret_post"]), True) == "client_secret_post"
    assert choose_auth_method(_metadata(["tls_client_auth"]), False, have_cert=True) == "tls_client_auth"


def test_discoverys_refusal_names_the_credentials_in_the_tables_words():
    with pytest.raises(DiscoveryError) as info:
        choose_auth_method(_metadata(["private_key_jwt"]), True, have_cert=True)
    text = str(info.value)
    assert "%s and %s" % (CREDENTIALS["secret"].label, CREDENTIALS["certificate"].label) in text
    assert "private_key_jwt" in text
