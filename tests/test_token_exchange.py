"""Acting for a user: token exchange (RFC 8693) and enterprise-managed authorization (ID-JAG).

The forms and answer checks of grants.py need no server; everything else runs against
real HTTPS loopback servers (tests/exchange_servers.py), which count the requests.
"""

from __future__ import annotations

import json
import pickle
import threading
import time

import pytest
import requests

import oauth_gateway as og
from exchange_servers import (
    ACCESS_TOKEN_TYPE,
    ID_JAG_TYPE,
    ID_TOKEN_TYPE,
    TOKEN_EXCHANGE_GRANT,
    ExchangeServer,
    make_jwt,
)
from oauth_gateway import grants
from oauth_gateway._subjects import DEFAULT_MAX_SUBJECTS, SubjectTokens, subject_expiry
from servers import JWT_BEARER_GRANT, SECRETS, TEST_CLIENT_ID, TEST_CLIENT_SECRET, AuthServer, basic_credentials

JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"

# --------------------------------------------------------------------------- the forms (pure)


def test_token_exchange_form_holds_the_rfc_8693_fields_in_order() -> None:
    subject = grants.SecurityToken("user-token-1234567", ID_TOKEN_TYPE)
    actor = grants.SecurityToken("gateway-token-7654321", JWT_TYPE)
    form = grants.token_exchange_form(
        subject,
        actor,
        requested_token_type=ACCESS_TOKEN_TYPE,
        scope="read write",
        audiences=("api",),
        resources=("https://a.example/mcp", "https://b.example/mcp"),
        extra=(("tenant", "t1"),),
    )
    assert list(form) == [
        ("grant_type", TOKEN_EXCHANGE_GRANT),
        ("subject_token", "user-token-1234567"),
        ("subject_token_type", ID_TOKEN_TYPE),
        ("actor_token", "gateway-token-7654321"),
        ("actor_token_type", JWT_TYPE),
        ("requested_token_type", ACCESS_TOKEN_TYPE),
        ("scope", "read write"),
        ("audience", "api"),
        ("resource", "https://a.example/mcp"),
        ("resource", "https://b.example/mcp"),
        ("tenant", "t1"),
    ]
    assert "user-token" not in repr(form) and "user-token" not in repr(subject)


def test_the_id_jag_legs_ask_the_idp_for_an_id_jag_for_the_authorization_server() -> None:
    subject = grants.SecurityToken("id-token-abcdefgh", ID_TOKEN_TYPE)
    leg1 = grants.id_jag_form(subject, "https://as.example", ("https://mcp.example/mcp",), "tools")
    assert dict(leg1)["requested_token_type"] == ID_JAG_TYPE
    assert dict(leg1)["audience"] == "https://as.example"
    assert dict(leg1)["resource"] == "https://mcp.example/mcp"
    assert dict(leg1)["scope"] == "tools"
    assert dict(leg1)["subject_token_type"] == ID_TOKEN_TYPE
    leg2 = grants.id_jag_redeem_form("the.id.jag", "tools")
    assert list(leg2) == [("grant_type", JWT_BEARER_GRANT), ("assertion", "the.id.jag"), ("scope", "tools")]


@pytest.mark.parametrize(
    "answer, requested, problem",
    [
        ({"token_type": "Bearer"}, "", "issued_token_type is missing"),
        ({"token_type": "Bearer", "issued_token_type": JWT_TYPE}, ACCESS_TOKEN_TYPE, "not the requested"),
        ({"token_type": "N_A", "issued_token_type": ACCESS_TOKEN_TYPE}, "", "N_A for an access token"),
        ({"token_type": "MAC", "issued_token_type": ACCESS_TOKEN_TYPE}, "", "not Bearer or N_A"),
        ({"issued_token_type": ACCESS_TOKEN_TYPE}, "", "token_type is missing"),
    ],
)
def test_an_exchange_answer_that_does_not_fit_the_request_is_refused(answer, requested, problem) -> None:
    checked, found = grants.check_exchange_answer(answer, requested)
    assert checked is None and problem in found


def test_n_a_is_accepted_for_a_token_that_is_not_an_access_token() -> None:
    answer, problem = grants.check_exchange_answer({"token_type": "N_A", "issued_token_type": ID_JAG_TYPE}, ID_JAG_TYPE)
    assert problem == "" and answer == grants.ExchangeAnswer(ID_JAG_TYPE, False)
    answer, _ = grants.check_exchange_answer({"token_type": "bearer", "issued_token_type": ACCESS_TOKEN_TYPE})
    assert answer == grants.ExchangeAnswer(ACCESS_TOKEN_TYPE, True)


def test_subject_digests_are_keyed_per_manager_and_jwt_expiry_is_read() -> None:
    one, two = SubjectTokens(time.monotonic), SubjectTokens(time.monotonic)
    assert one.digest("subject-a") == one.digest("subject-a") != two.digest("subject-a")
    assert "subject-a" not in one.digest("subject-a")
    assert subject_expiry(make_jwt(exp=1234567890)) == 1234567890.0
    assert subject_expiry("opaque-token") is None
    assert DEFAULT_MAX_SUBJECTS == 1000


# --------------------------------------------------------------------------- config keys


def _exchange_block(server, make_block, **overrides):
    block = make_block(server, OAUTH_GRANT_TYPE=TOKEN_EXCHANGE_GRANT, OAUTH_REVOCATION_URL="", **overrides)
    return block


def test_a_token_exchange_config_may_be_a_public_client(auth_server, make_block) -> None:
    block = _exchange_block(auth_server, make_block, omit=())
    del block["OAUTH_CLIENT_SECRET"]
    config = og.OAuthConfig.from_dict(block)
    assert config.auth_method == "none"
    assert config.subject_token_type == ACCESS_TOKEN_TYPE


def test_a_discovered_token_exchange_needs_a_pinned_issuer() -> None:
    with pytest.raises(og.ConfigError) as info:
        og.OAuthConfig.from_dict(
            {
                "enabled": True,
                "OAUTH_CLIENT_ID": "c",
                "OAUTH_GRANT_TYPE": TOKEN_EXCHANGE_GRANT,
                "OAUTH_RESOURCE": "https://mcp.example/mcp",
            }
        )
    assert info.value.json_path == "$.OAUTH_ISSUER"
    assert "token-exchange" in str(info.value)


def test_subject_files_belong_to_the_token_exchange_grant(auth_server, make_block, tmp_path) -> None:
    path = tmp_path / "subject"
    path.write_text("subject-token-123456")
    with pytest.raises(og.ConfigError) as info:
        og.OAuthConfig.from_dict(make_block(auth_server, OAUTH_SUBJECT_TOKEN_FILE=str(path)))
    assert info.value.json_path == "$.OAUTH_SUBJECT_TOKEN_FILE" and "token-exchange" in (info.value.hint or "")


@pytest.mark.parametrize(
    "assertion, overrides, path, words",
    [
        ({"client_id": "idp"}, {}, "$.OAUTH_IDENTITY_ASSERTION", "token_url or issuer"),
        (
            {"client_id": "idp", "token_url": "https://idp/t"},
            {"OAUTH_GRANT_TYPE": TOKEN_EXCHANGE_GRANT},
            "$.OAUTH_GRANT_TYPE",
            "implies",
        ),
        ({"client_id": "idp", "token_url": "https://idp/t"}, {"OAUTH_ISSUER": ""}, "$.OAUTH_ISSUER", "audience"),
        (
            {"client_id": "idp", "token_url": "http://idp.example/t"},
            {},
            "$.OAUTH_IDENTITY_ASSERTION.token_url",
            "https",
        ),
        ({"token_url": "https://idp/t"}, {}, "$.OAUTH_IDENTITY_ASSERTION.client_id", "client_id"),
        ({"client_id": "idp", "token_url": "https://idp/t", "colour": "x"}, {}, "$.OAUTH_IDENTITY_ASSERTION", ""),
    ],
)
def test_identity_assertion_blocks_are_checked_with_their_json_path(
    auth_server, make_block, assertion, overrides, path, words
) -> None:
    block = make_block(auth_server, OAUTH_ISSUER=auth_server.url, OAUTH_IDENTITY_ASSERTION=assertion)
    block.update(overrides)
    with pytest.raises(og.ConfigError) as info:
        og.OAuthConfig.from_dict(block)
    assert info.value.json_path.startswith(path), info.value
    assert words in str(info.value) + (info.value.hint or "")


def test_an_identity_assertion_secret_is_masked_and_fingerprinted(auth_server, make_block, tmp_path) -> None:
    secret_file = tmp_path / "idp-secret"
    secret_file.write_text("idp-secret-value-1\n")
    secret_file.chmod(0o600)
    block = make_block(
        auth_server,
        OAUTH_ISSUER=auth_server.url,
        OAUTH_IDENTITY_ASSERTION={
            "token_url": "https://idp.example/token",
            "client_id": "idp",
            "client_secret_file": str(secret_file),
        },
    )
    config = og.OAuthConfig.from_dict(block)
    assert config.identity_assertion.client_secret == "idp-secret-value-1"
    for shown in (repr(config), json.dumps(config.to_dict()), repr(config.identity_assertion)):
        assert "idp-secret-value-1" not in shown
    assert pickle.loads(pickle.dumps(config)) == config
    secret_file.write_text("idp-secret-value-2\n")
    assert og.OAuthConfig.from_dict(block).fingerprint != config.fingerprint


# --------------------------------------------------------------------------- token exchange, end to end


@pytest.fixture
def exchange_server(make_server) -> ExchangeServer:
    server = make_server(ExchangeServer)
    server.accept_subjects("subject-alice-123456", "subject-bob-1234567", "subject-carol-12345")
    return server


@pytest.fixture
def exchange_config(exchange_server, make_block):
    return og.OAuthConfig.from_dict(
        _exchange_block(
            exchange_server,
            make_block,
            OAUTH_SCOPE="read",
            OAUTH_AUDIENCE="orders-api",
            OAUTH_RESOURCE="https://orders.example/mcp",
        )
    )


def test_two_subjects_times_twenty_calls_make_two_exchanges(exchange_server, exchange_config) -> None:
    manager = og.TokenManager()
    tokens = {}
    for _ in range(20):
        for subject in ("subject-alice-123456", "subject-bob-1234567"):
            tokens.setdefault(subject, set()).add(
                manager.get_token("api", exchange_config, subject_token=subject).access_token
            )
    assert exchange_server.count() == 2
    assert dict(exchange_server.exchanges) == {"subject-alice-123456": 1, "subject-bob-1234567": 1}
    assert all(len(seen) == 1 for seen in tokens.values())
    assert tokens["subject-alice-123456"] != tokens["subject-bob-1234567"]
    sent = exchange_server.exchange_requests()[0].form
    assert sent["subject_token_type"] == [ACCESS_TOKEN_TYPE]
    assert sent["audience"] == ["orders-api"]
    assert sent["resource"] == ["https://orders.example/mcp"]
    assert sent["scope"] == ["read"]
    assert "requested_token_type" not in sent and "actor_token" not in sent
    # the client-credentials path of the same server name is another cache entry
    assert manager.get_metrics()["servers"]["api"]["token_cache_misses"] == 2


def test_thirty_two_threads_for_one_subject_make_one_request(exchange_server, exchange_config) -> None:
    exchange_server.latency = 0.2  # the leader is still waiting when the others arrive
    manager = og.TokenManager()
    barrier = threading.Barrier(32)
    results, errors = [], []

    def call() -> None:
        barrier.wait()
        try:
            results.append(manager.get_token("api", exchange_config, subject_token="subject-alice-123456").access_token)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and len(results) == 32 and len(set(results)) == 1
    assert exchange_server.count() == 1


def test_the_subjects_per_server_are_bounded_least_recently_used_first(exchange_server, exchange_config) -> None:
    manager = og.TokenManager(max_subjects=2)
    for subject in ("subject-alice-123456", "subject-bob-1234567", "subject-alice-123456", "subject-carol-12345"):
        manager.get_token("api", exchange_config, subject_token=subject)
    assert exchange_server.count() == 3  # alice was used again, so bob went when carol came
    manager.get_token("api", exchange_config, subject_token="subject-alice-123456")
    assert exchange_server.count() == 3
    manager.get_token("api", exchange_config, subject_token="subject-bob-1234567")
    assert exchange_server.count() == 4
    assert manager._subjects.count("api", "default") == 2


def test_a_token_ends_with_its_subject_token(exchange_server, exchange_config, clock) -> None:
    subject = make_jwt(sub="alice", exp=int(time.time()) + 100)
    exchange_server.accept_subjects(subject)
    manager = og.TokenManager(clock=clock)
    first = manager.get_token("api", exchange_config, subject_token=subject)
    clock.advance(50)
    assert manager.get_token("api", exchange_config, subject_token=subject) is first
    clock.advance(60)  # past the subject's exp, long before the access token's
    assert manager.get_token("api", exchange_config, subject_token=subject) is not first
    assert exchange_server.count() == 2


def test_invalidate_forgets_every_subject_of_the_server(exchange_server, exchange_config) -> None:
    manager = og.TokenManager()
    manager.get_token("api", exchange_config, subject_token="subject-alice-123456")
    manager.invalidate("api")
    manager.get_token("api", exchange_config, subject_token="subject-alice-123456")
    assert exchange_server.count() == 2


def test_the_subject_never_appears_in_errors_reprs_or_metrics(exchange_server, exchange_config, caplog) -> None:
    manager = og.TokenManager()
    unknown = "subject-mallory-98765"
    SECRETS.add(unknown)
    with caplog.at_level("DEBUG", logger="oauth_gateway"):
        with pytest.raises(og.TokenRequestError) as info:
            manager.get_token("api", exchange_config, subject_token=unknown)
        manager.get_token("api", exchange_config, subject_token="subject-alice-123456")
        auth = manager.auth("api", exchange_config, subject_token="subject-alice-123456")
    assert info.value.error == "invalid_grant"
    shown = [str(info.value), repr(info.value), repr(manager), repr(auth), json.dumps(manager.get_metrics())]
    shown.append(caplog.text)
    for text in shown:
        assert unknown not in text and "subject-alice" not in text


def test_requests_auth_sends_the_subjects_token(exchange_server, exchange_config, ca_bundle) -> None:
    manager = og.TokenManager()
    with requests.Session() as session:
        for subject in ("subject-alice-123456", "subject-bob-1234567"):
            session.auth = manager.auth("api", exchange_config, subject_token=subject)
            assert session.get(exchange_server.resource_url, verify=ca_bundle).status_code == 200
            expected = manager.get_token("api", exchange_config, subject_token=subject).authorization
            assert exchange_server.requests_to("/resource")[-1].headers["Authorization"] == expected
    assert exchange_server.count() == 2


def test_a_subject_token_file_is_read_for_every_request(exchange_server, make_block, tmp_path) -> None:
    path = tmp_path / "subject"
    path.write_text("subject-alice-123456\n")
    config = og.OAuthConfig.from_dict(_exchange_block(exchange_server, make_block, OAUTH_SUBJECT_TOKEN_FILE=str(path)))
    manager = og.TokenManager()
    manager.get_token("api", config)
    path.write_text("subject-bob-1234567\n")
    manager.refresh("api", config)
    assert [r.first("subject_token") for r in exchange_server.exchange_requests()] == [
        "subject-alice-123456",
        "subject-bob-1234567",
    ]


def test_no_subject_at_all_names_the_file_key(exchange_server, exchange_config) -> None:
    with pytest.raises(og.ConfigError) as info:
        og.TokenManager().get_token("api", exchange_config)
    assert info.value.json_path.endswith("OAUTH_SUBJECT_TOKEN_FILE")
    assert exchange_server.count() == 0


def test_a_subject_token_for_a_client_credentials_config_is_refused(auth_server, make_block) -> None:
    config = og.OAuthConfig.from_dict(make_block(auth_server))
    with pytest.raises(og.ConfigError) as info:
        og.TokenManager().get_token("api", config, subject_token="subject-alice-123456")
    assert info.value.json_path == "$.oauth_config.OAUTH_GRANT_TYPE"
    assert auth_server.count() == 0


def test_an_issued_token_type_other_than_requested_is_refused(exchange_server, exchange_config, make_block) -> None:
    exchange_server.issued_type_override = JWT_TYPE
    config = exchange_config.replace(requested_token_type=ACCESS_TOKEN_TYPE)
    with pytest.raises(og.TokenRequestError) as info:
        og.TokenManager().get_token("api", config, subject_token="subject-alice-123456")
    assert "issued_token_type" in str(info.value) and "OAUTH_REQUESTED_TOKEN_TYPE" in str(info.value)


def test_an_n_a_token_is_handed_out_when_asked_for_and_never_sent_as_bearer(exchange_server, exchange_config) -> None:
    config = exchange_config.replace(requested_token_type=ID_TOKEN_TYPE)
    manager = og.TokenManager()
    token = manager.get_token("api", config, subject_token="subject-alice-123456")
    assert token.token_type == "N_A" and not token.authorization.startswith("Bearer")
    with pytest.raises(og.ConfigError) as info:
        manager.auth("api", config, subject_token="subject-alice-123456")
    assert info.value.json_path == "$.oauth_config.OAUTH_REQUESTED_TOKEN_TYPE"


def test_an_n_a_token_nobody_asked_for_is_refused(exchange_server, exchange_config) -> None:
    exchange_server.issued_type_override = ID_TOKEN_TYPE  # answered N_A for an unrequested type
    with pytest.raises(og.TokenRequestError) as info:
        og.TokenManager().get_token("api", exchange_config, subject_token="subject-alice-123456")
    assert "not an access token" in str(info.value)


def test_an_access_token_answered_n_a_is_refused(exchange_server, exchange_config) -> None:
    exchange_server.exchange_token_type = "N_A"
    with pytest.raises(og.TokenRequestError) as info:
        og.TokenManager().get_token("api", exchange_config, subject_token="subject-alice-123456")
    assert "N_A for an access token" in str(info.value)


def test_delegation_sends_the_actor_token(exchange_server, make_block, tmp_path) -> None:
    actor = tmp_path / "actor"
    actor.write_text("gateway-actor-token-1\n")
    SECRETS.add("gateway-actor-token-1")
    config = og.OAuthConfig.from_dict(
        _exchange_block(exchange_server, make_block, OAUTH_ACTOR_TOKEN_FILE=str(actor), OAUTH_ACTOR_TOKEN_TYPE=JWT_TYPE)
    )
    og.TokenManager().get_token("api", config, subject_token="subject-alice-123456")
    sent = exchange_server.exchange_requests()[0].form
    assert sent["actor_token"] == ["gateway-actor-token-1"] and sent["actor_token_type"] == [JWT_TYPE]


# --------------------------------------------------------------------------- enterprise-managed authorization


@pytest.fixture
def idp(make_server) -> ExchangeServer:
    return make_server(ExchangeServer)


@pytest.fixture
def id_jag_config(idp, make_server, make_block):
    authorization_server = make_server(AuthServer)
    idp.redeem_at = authorization_server
    block = make_block(
        authorization_server,
        OAUTH_ISSUER=authorization_server.url,
        OAUTH_RESOURCE="https://mcp.example/mcp",
        OAUTH_SCOPE="tools",
        OAUTH_REVOCATION_URL="",
        OAUTH_USE_BASIC_AUTH=True,
        OAUTH_IDENTITY_ASSERTION={"token_url": idp.token_url, "client_id": "gateway-at-idp"},
    )
    return authorization_server, og.OAuthConfig.from_dict(block)


def test_one_thousand_calls_by_ten_subjects_make_ten_requests_at_each_server(idp, id_jag_config) -> None:
    authorization_server, config = id_jag_config
    subjects = [make_jwt(sub="user-%d" % i, aud="gateway-at-idp") for i in range(10)]
    idp.accept_subjects(*subjects)
    manager = og.TokenManager()
    for _ in range(100):
        for subject in subjects:
            manager.get_token("mcp", config, subject_token=subject)
    assert idp.count() == 10
    assert authorization_server.count() == 10
    leg1 = idp.exchange_requests()[0]
    assert leg1.first("requested_token_type") == ID_JAG_TYPE
    assert leg1.first("subject_token_type") == ID_TOKEN_TYPE
    assert leg1.first("audience") == authorization_server.url
    assert leg1.resource == ["https://mcp.example/mcp"]
    assert leg1.first("client_id") == "gateway-at-idp" and "Authorization" not in leg1.headers
    leg2 = authorization_server.requests_to("/token")[0]
    assert leg2.grant_type == JWT_BEARER_GRANT
    assert leg2.first("assertion") == idp.id_jags[0]
    assert leg2.headers["Authorization"] == basic_credentials(TEST_CLIENT_ID, TEST_CLIENT_SECRET)
    assert leg2.resource == ["https://mcp.example/mcp"] and leg2.scope == "tools"


def test_a_refused_first_leg_names_the_idp(idp, id_jag_config) -> None:
    authorization_server, config = id_jag_config
    with pytest.raises(og.TokenRequestError) as info:
        og.TokenManager().get_token("mcp", config, subject_token=make_jwt(sub="stranger"))
    assert str(info.value).startswith("leg 1 of enterprise-managed authorization (token exchange at the IdP")
    assert info.value.error == "invalid_grant"
    assert authorization_server.count() == 0


def test_a_refused_second_leg_names_the_authorization_server(idp, id_jag_config) -> None:
    authorization_server, config = id_jag_config
    subject = make_jwt(sub="alice")
    idp.accept_subjects(subject)
    wrong = config.replace(client_secret="not-the-secret-1")
    with pytest.raises(og.InvalidClient) as info:
        og.TokenManager().get_token("mcp", wrong, subject_token=subject)
    assert str(info.value).startswith(
        "leg 2 of enterprise-managed authorization (jwt-bearer at the authorization server"
    )
    assert idp.count() == 1 and authorization_server.count() == 1


@pytest.mark.parametrize("asynchronous", [False, True])
def test_the_httpx_auth_sends_each_subjects_token(exchange_server, exchange_config, ca_bundle, asynchronous) -> None:
    import ssl

    httpx = pytest.importorskip("httpx")
    from oauth_gateway.contrib.httpx import TokenAuth

    manager = og.TokenManager()
    verify = ssl.create_default_context(cafile=ca_bundle)
    sent = {}
    for subject in ("subject-alice-123456", "subject-bob-1234567"):
        auth = TokenAuth(manager, "api", exchange_config, subject_token=subject)
        assert subject not in repr(auth)
        if asynchronous:

            async def call(auth=auth):
                async with httpx.AsyncClient(auth=auth, verify=verify, trust_env=False) as client:
                    for _ in range(3):
                        assert (await client.get(exchange_server.resource_url)).status_code == 200

            asyncio_run(call())
        else:
            with httpx.Client(auth=auth, verify=verify, trust_env=False) as client:
                for _ in range(3):
                    assert client.get(exchange_server.resource_url).status_code == 200
        sent[subject] = exchange_server.requests_to("/resource")[-1].headers["Authorization"]
        assert sent[subject] == manager.get_token("api", exchange_config, subject_token=subject).authorization
    assert sent["subject-alice-123456"] != sent["subject-bob-1234567"]
    assert exchange_server.count() == 2


def asyncio_run(coroutine) -> None:
    import asyncio

    asyncio.run(coroutine)
