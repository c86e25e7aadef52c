"""Client authentication: the form and headers of each attempt, signed assertions verified
with PyJWT against the public key, key-file rules, assertion files, and real tokens from
oidc-provider (the POST is done here with requests; the library's client wires it later).
"""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple
from urllib.parse import unquote_plus

import jwt
import pytest
import requests
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from oauth_gateway import ConfigError
from oauth_gateway._jwt import check_key_file, jwk_thumbprint, load_private_key, sign_jwt
from oauth_gateway.client_auth import (
    ASSERTION_LIFETIME,
    JWT_BEARER_ASSERTION_TYPE,
    JWT_BEARER_GRANT_TYPE,
    AssertionFile,
    ClientSecretBasic,
    ClientSecretJwt,
    ClientSecretPost,
    JwtBearerGrant,
    NoClientAuth,
    PrivateKeyJwt,
    TlsClientAuth,
    assertion_audience,
    build_client_auth,
)
from oidc_provider import (
    RESOURCE,
    SCOPE,
    OidcProvider,
    oidc_provider,  # noqa: F401 (the fixture, found by pytest here)
)

TOKEN_URL = "https://idp.example.test/oauth2/token"
ISSUER = "https://idp.example.test"
NOW = 1_700_000_000.0
TIMEOUT = 10


def _write_key(path: Path, key: Any, password: Optional[bytes] = None, mode: int = 0o600) -> str:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    os.chmod(str(path), mode)
    return str(path)


@pytest.fixture(scope="module")
def ec_key() -> Any:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rsa_key() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _apply(auth: Any, issuer: Optional[str] = ISSUER, now: float = NOW) -> Tuple[Dict[str, str], Dict[str, str]]:
    form: Dict[str, str] = {"grant_type": "client_credentials"}
    headers: Dict[str, str] = {}
    auth.apply(form, headers, token_endpoint=TOKEN_URL, issuer=issuer, now=now)
    return form, headers


def _decode(assertion: str, key: Any, alg: str, audience: str = ISSUER) -> Dict[str, Any]:
    return jwt.decode(
        assertion,
        key,
        algorithms=[alg],
        audience=audience,
        options={"verify_exp": False, "verify_iat": False},
    )


# ---------------------------------------------------------------- shared secrets, mTLS


def test_client_secret_basic_form_encodes_id_and_secret_before_base64() -> None:
    form, headers = _apply(ClientSecretBasic("id:with colon", "s3cret:+/% x"))

    scheme, _, value = headers["Authorization"].partition(" ")
    user, _, password = base64.b64decode(value).decode("utf-8").partition(":")
    assert scheme == "Basic"
    assert (unquote_plus(user), unquote_plus(password)) == ("id:with colon", "s3cret:+/% x")
    assert "%3A" in user and "client_secret" not in form and "client_id" not in form


def test_client_secret_post_puts_id_and_secret_in_the_form() -> None:
    form, headers = _apply(ClientSecretPost("cid", "pw"))

    assert form == {"grant_type": "client_credentials", "client_id": "cid", "client_secret": "pw"}
    assert headers == {}


def test_tls_client_auth_sends_only_the_client_id_and_exposes_the_cert_pair() -> None:
    auth = TlsClientAuth("cid", "/c.pem", "/k.pem")
    form, headers = _apply(auth)

    assert form == {"grant_type": "client_credentials", "client_id": "cid"}
    assert headers == {} and auth.cert == ("/c.pem", "/k.pem")


def test_reprs_show_the_client_id_and_never_a_secret(tmp_path: Path, ec_key: Any) -> None:
    key_file = _write_key(tmp_path / "k.pem", ec_key)
    secret = "hs256-secret-that-is-long-enough-0123456789"
    objects = [
        ClientSecretBasic("cid", secret),
        ClientSecretPost("cid", secret),
        ClientSecretJwt("cid", secret),
        PrivateKeyJwt("cid", load_private_key(key_file)),
        load_private_key(key_file),
    ]
    pem = Path(key_file).read_text()
    for obj in objects:
        text = repr(obj)
        assert secret not in text and pem.splitlines()[1] not in text
    assert "cid" in repr(objects[0]) and "EC P-256" in repr(objects[-1])


# ---------------------------------------------------------------- audience


def test_audience_is_the_issuer_when_known() -> None:
    assert assertion_audience(TOKEN_URL, ISSUER) == (ISSUER, "issuer", None)


def test_a_configured_audience_wins_over_the_issuer() -> None:
    choice = assertion_audience(TOKEN_URL, ISSUER, configured=TOKEN_URL)

    assert (choice.audience, choice.source, choice.warning) == (TOKEN_URL, "configured", None)


def test_without_an_issuer_the_audience_is_the_token_endpoint_with_a_warning() -> None:
    choice = assertion_audience(TOKEN_URL + "?tenant=abc", None)

    assert choice.audience == TOKEN_URL + "?tenant=abc"
    assert choice.source == "token_endpoint"
    assert choice.warning is not None
    assert TOKEN_URL + "?tenant=***" in choice.warning and "OAUTH_ISSUER" in choice.warning


def test_the_fallback_warning_is_logged_once_per_audience(
    ec_key: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    auth = PrivateKeyJwt("cid", load_private_key(_write_key(tmp_path / "k.pem", ec_key)))
    with caplog.at_level(logging.WARNING, logger="oauth_gateway.client_auth"):
        first, _ = _apply(auth, issuer=None)
        _apply(auth, issuer=None)
        _apply(auth, issuer=ISSUER)

    warnings = [r.getMessage() for r in caplog.records if "audience" in r.getMessage()]
    assert len(warnings) == 1 and TOKEN_URL in warnings[0]
    assert _decode(first["client_assertion"], ec_key.public_key(), "ES256", TOKEN_URL)["aud"] == TOKEN_URL


# ---------------------------------------------------------------- private_key_jwt


@pytest.mark.parametrize(
    "make, alg, expected_alg",
    [
        (lambda: ec.generate_private_key(ec.SECP256R1()), None, "ES256"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), None, "ES384"),
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), None, "RS256"),
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "PS256", "PS256"),
    ],
)
def test_private_key_jwt_assertion_verifies_against_the_public_key(
    tmp_path: Path, make: Any, alg: Optional[str], expected_alg: str
) -> None:
    key = make()
    auth = PrivateKeyJwt("client-1", load_private_key(_write_key(tmp_path / "k.pem", key)), alg, kid="kid-7")

    form, headers = _apply(auth)

    assert headers == {}
    assert form["client_id"] == "client-1"
    assert form["client_assertion_type"] == JWT_BEARER_ASSERTION_TYPE
    header = jwt.get_unverified_header(form["client_assertion"])
    assert header["alg"] == expected_alg and header["kid"] == "kid-7"
    assert "x5t" not in header and "x5t#S256" not in header
    claims = _decode(form["client_assertion"], key.public_key(), expected_alg)
    assert claims["iss"] == claims["sub"] == "client-1"
    assert claims["aud"] == ISSUER
    assert claims["iat"] == int(NOW)
    assert 0 < claims["exp"] - claims["iat"] <= ASSERTION_LIFETIME


def test_every_attempt_gets_a_new_jti_and_fresh_iat(tmp_path: Path, ec_key: Any) -> None:
    auth = PrivateKeyJwt("cid", load_private_key(_write_key(tmp_path / "k.pem", ec_key)))

    claims = [
        _decode(_apply(auth, now=NOW + i)[0]["client_assertion"], ec_key.public_key(), "ES256") for i in range(20)
    ]

    assert len({c["jti"] for c in claims}) == 20
    assert [c["iat"] for c in claims] == [int(NOW) + i for i in range(20)]
    assert all(len(c["jti"]) >= 22 for c in claims)


@pytest.mark.parametrize("alg", ["RS256", "ES384", "HS256", "none"])
def test_an_algorithm_that_does_not_fit_the_key_is_a_config_error(tmp_path: Path, ec_key: Any, alg: str) -> None:
    key = load_private_key(_write_key(tmp_path / "k.pem", ec_key))
    with pytest.raises(ConfigError) as caught:
        PrivateKeyJwt("cid", key, alg, json_path="$.oauth_config")

    assert caught.value.json_path == "$.oauth_config.OAUTH_CLIENT_ASSERTION_ALG"
    assert alg in str(caught.value)


def test_a_certificate_adds_x5t_and_x5t_s256_of_its_der(tmp_path: Path) -> None:
    leaf = trustme.CA().issue_cert("client.example.test")
    cert_file = tmp_path / "client.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert_file))
    key_file = tmp_path / "client.key"
    leaf.private_key_pem.write_to_path(str(key_file))
    os.chmod(str(key_file), 0o600)
    certificate = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())

    auth = PrivateKeyJwt("cid", load_private_key(str(key_file)), certificate_path=str(cert_file))
    form, _ = _apply(auth)

    header = jwt.get_unverified_header(form["client_assertion"])
    b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")  # noqa: E731
    assert header["x5t#S256"] == b64(certificate.fingerprint(hashes.SHA256()))
    assert header["x5t"] == b64(certificate.fingerprint(hashes.SHA1()))
    assert _decode(form["client_assertion"], certificate.public_key(), header["alg"])["sub"] == "cid"


def test_a_certificate_of_another_key_is_a_config_error(tmp_path: Path, ec_key: Any) -> None:
    leaf = trustme.CA().issue_cert("client.example.test")
    cert_file = tmp_path / "client.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert_file))
    key = load_private_key(_write_key(tmp_path / "k.pem", ec_key))

    with pytest.raises(ConfigError) as caught:
        PrivateKeyJwt("cid", key, certificate_path=str(cert_file), json_path="$.x")

    assert caught.value.json_path == "$.x.OAUTH_CLIENT_CERT_PATH"
    assert "does not belong" in str(caught.value)


def test_sign_jwt_takes_extra_header_members_for_dpop(tmp_path: Path, ec_key: Any) -> None:
    key = load_private_key(_write_key(tmp_path / "k.pem", ec_key))
    jwk = key.public_jwk()

    proof = sign_jwt({"typ": "dpop+jwt", "jwk": jwk}, {"htm": "POST", "jti": "x"}, key, "ES256")

    header = jwt.get_unverified_header(proof)
    assert header["typ"] == "dpop+jwt" and header["jwk"] == jwk
    embedded = jwt.PyJWK(dict(jwk, alg="ES256")).key
    assert jwt.decode(proof, embedded, algorithms=["ES256"])["htm"] == "POST"
    assert len(jwk_thumbprint(jwk)) == 43


def test_jwk_thumbprint_matches_rfc_7638_example() -> None:
    # RFC 7638 section 3.1.
    jwk = {
        "kty": "RSA",
        "e": "AQAB",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        ),
    }
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


# ---------------------------------------------------------------- key files


def test_a_missing_key_file_is_a_config_error_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_private_key(str(tmp_path / "nope.pem"), json_path="$.oauth_config")

    assert caught.value.json_path == "$.oauth_config.OAUTH_CLIENT_PRIVATE_KEY_PATH"
    assert "not found" in str(caught.value)


def test_a_directory_is_not_a_key_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a regular file"):
        check_key_file(str(tmp_path), "OAUTH_CLIENT_PRIVATE_KEY_PATH")


def test_a_key_file_larger_than_64_kib_is_refused(tmp_path: Path, ec_key: Any) -> None:
    path = Path(_write_key(tmp_path / "k.pem", ec_key))
    with open(str(path), "ab") as handle:  # PEM readers skip text after the key
        handle.write(b"# padding\n" * 6600)
    with pytest.raises(ConfigError, match="is larger than 65536 bytes") as caught:
        check_key_file(str(path), "OAUTH_CLIENT_PRIVATE_KEY_PATH", "$.oauth_config")
    assert caught.value.json_path == "$.oauth_config.OAUTH_CLIENT_PRIVATE_KEY_PATH"


def _in_a_thread(function: Any, timeout: float = 10.0) -> Tuple[Any, Dict[str, Any]]:
    """Run ``function`` in a daemon thread: one stuck on a FIFO fails the test instead of hanging it."""
    import threading

    outcome: Dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    return thread, outcome


def test_a_fifo_as_assertion_file_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "token"
    os.mkfifo(str(fifo))
    thread, outcome = _in_a_thread(lambda: AssertionFile(str(fifo)).read(NOW))
    if thread.is_alive():  # unblock the stuck reader, then fail
        os.close(os.open(str(fifo), os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5)
        pytest.fail("reading an assertion file that is a FIFO blocked")
    error = outcome["error"]
    assert isinstance(error, ConfigError)
    assert "is a FIFO, not a regular file" in str(error) and str(fifo) in str(error)


def test_an_assertion_file_larger_than_64_kib_is_refused_not_cut(tmp_path: Path) -> None:
    path = tmp_path / "token"
    claims = {"exp": NOW + 3600, "pad": "x" * 70_000}
    path.write_text(jwt.encode(claims, "k" * 32, "HS256"))
    with pytest.raises(ConfigError, match="is larger than 65536 bytes"):
        AssertionFile(str(path)).read(NOW)


def test_an_assertion_whose_claims_nest_deeply_is_not_a_jwt(tmp_path: Path) -> None:
    # 20 000 levels fit in the 64 KiB file and exceed every Python's parser recursion.
    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    path = tmp_path / "token"
    path.write_text("%s.%s.%s" % (part(b'{"alg":"RS256"}'), part(b"[" * 20_000 + b"]" * 20_000), part(b"sig")))
    with pytest.raises(ConfigError, match="does not hold a JWT"):
        AssertionFile(str(path)).read(NOW)


def test_a_client_certificate_is_searched_for_only_in_a_capped_file(tmp_path: Path) -> None:
    from oauth_gateway._jwt import MAX_CERT_FILE_BYTES, certificate_thumbprints

    path = tmp_path / "cert.pem"
    # Many openings without an end, as many as the cap allows: a lazy ".*?" search would
    # rescan the rest of the file from each; the two plain searches read it once.
    marker = "-----BEGIN CERTIFICATE-----\n"
    path.write_text(marker * (MAX_CERT_FILE_BYTES // len(marker)))
    with pytest.raises(ConfigError, match="holds no PEM certificate"):
        certificate_thumbprints(str(path))
    # One byte more is refused before it is searched.
    path.write_text(marker * (MAX_CERT_FILE_BYTES // len(marker)) + "x" * (MAX_CERT_FILE_BYTES % len(marker) + 1))
    with pytest.raises(ConfigError, match="cannot read the client certificate") as refused:
        certificate_thumbprints(str(path))
    assert "holds no PEM" not in str(refused.value)


def test_a_key_readable_by_others_loads_with_a_warning(
    tmp_path: Path, ec_key: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write_key(tmp_path / "k.pem", ec_key, mode=0o644)
    with caplog.at_level(logging.WARNING, logger="oauth_gateway.client_auth"):
        key = load_private_key(path)

    assert key.default_alg == "ES256"
    assert any("chmod 600" in r.getMessage() and "644" in r.getMessage() for r in caplog.records)


def test_an_encrypted_key_loads_with_its_password_only(tmp_path: Path, ec_key: Any) -> None:
    path = _write_key(tmp_path / "k.pem", ec_key, password=b"pa55-word")

    assert load_private_key(path, "pa55-word").curve == "P-256"
    with pytest.raises(ConfigError) as wrong:
        load_private_key(path, "wrong-pass")
    with pytest.raises(ConfigError) as missing:
        load_private_key(path)

    assert "wrong-pass" not in str(wrong.value) and "password" in str(wrong.value)
    assert "encrypted and no password" in str(missing.value)


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), "1024 bits"),
        (lambda: ed25519.Ed25519PrivateKey.generate(), "unsupported type"),
        (lambda: ec.generate_private_key(ec.SECP521R1()), "unsupported type"),
    ],
)
def test_weak_or_unsupported_keys_are_refused(tmp_path: Path, make: Any, problem: str) -> None:
    path = _write_key(tmp_path / "k.pem", make())
    with pytest.raises(ConfigError) as caught:
        load_private_key(path)

    assert problem in str(caught.value)
    assert "PRIVATE KEY" not in str(caught.value).replace("BEGIN PRIVATE KEY", "")


def test_a_file_that_is_not_pem_is_a_config_error_without_its_content(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    path.write_text("super-secret-garbage")
    os.chmod(str(path), 0o600)

    with pytest.raises(ConfigError) as caught:
        load_private_key(str(path))

    assert "super-secret-garbage" not in str(caught.value) and str(path) in str(caught.value)


# ---------------------------------------------------------------- client_secret_jwt


def test_client_secret_jwt_is_hs256_keyed_with_the_secret() -> None:
    secret = "a-client-secret-of-more-than-32-bytes-0123456789"
    form, _ = _apply(ClientSecretJwt("cid", secret))

    assert jwt.get_unverified_header(form["client_assertion"])["alg"] == "HS256"
    claims = _decode(form["client_assertion"], secret.encode(), "HS256")
    assert claims["iss"] == claims["sub"] == "cid"
    with pytest.raises(jwt.InvalidSignatureError):
        _decode(form["client_assertion"], b"another-secret-of-more-than-32-bytes-000", "HS256")


def test_a_short_client_secret_jwt_secret_warns_without_the_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="oauth_gateway.client_auth"):
        ClientSecretJwt("cid", "short-pw")

    messages = [r.getMessage() for r in caplog.records]
    assert any("8 bytes" in m for m in messages)
    assert not any("short-pw" in m for m in messages)


# ---------------------------------------------------------------- assertion files


def _platform_jwt(exp: float, sub: str = "system:serviceaccount:ns:sa", marker: str = "") -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode({"iss": "https://k8s.test", "sub": sub, "exp": int(exp), "m": marker}, key, "ES256")


def test_the_assertion_file_is_re_read_on_every_attempt(tmp_path: Path) -> None:
    path = tmp_path / "token"
    first, second = _platform_jwt(NOW + 600, marker="1"), _platform_jwt(NOW + 600, marker="2")
    auth = AssertionFile(str(path), "cid")

    path.write_text(first + "\n")
    sent_first = _apply(auth)[0]
    path.write_text(second)
    sent_second = _apply(auth)[0]

    assert sent_first["client_assertion"] == first
    assert sent_second["client_assertion"] == second
    assert sent_second["client_assertion_type"] == JWT_BEARER_ASSERTION_TYPE
    assert sent_second["client_id"] == "cid"


def test_an_expired_assertion_file_is_one_error_naming_the_file_not_the_content(tmp_path: Path) -> None:
    path = tmp_path / "token"
    token = _platform_jwt(NOW - 30)
    path.write_text(token)

    with pytest.raises(ConfigError) as caught:
        _apply(AssertionFile(str(path), json_path="$.oauth_config"))

    message = str(caught.value)
    assert caught.value.json_path == "$.oauth_config.OAUTH_CLIENT_ASSERTION_FILE"
    assert str(path) in message and "expired" in message and "30 s ago" in message
    assert token not in message and token.split(".")[1] not in message
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    "content, problem",
    [
        (None, "cannot be read"),
        ("not-a-jwt-secret-text", "does not hold a JWT"),
        ("a.b.c", "does not hold a JWT"),
        (jwt.encode({"sub": "x"}, "k" * 32, "HS256"), "without a numeric exp"),
    ],
)
def test_an_unusable_assertion_file_is_a_config_error(tmp_path: Path, content: Optional[str], problem: str) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)

    with pytest.raises(ConfigError) as caught:
        AssertionFile(str(path)).read(NOW)

    assert problem in str(caught.value) and str(path) in str(caught.value)
    if content:
        assert content not in str(caught.value)


def test_the_jwt_bearer_grant_sends_the_file_as_assertion(tmp_path: Path) -> None:
    path = tmp_path / "token"
    token = _platform_jwt(NOW + 600)
    path.write_text(token)
    form: Dict[str, str] = {"grant_type": "client_credentials"}
    headers: Dict[str, str] = {}

    for part in (JwtBearerGrant(AssertionFile(str(path))), NoClientAuth("cid")):
        part.apply(form, headers, token_endpoint=TOKEN_URL, issuer=ISSUER, now=NOW)

    assert form == {"grant_type": JWT_BEARER_GRANT_TYPE, "assertion": token, "client_id": "cid"}
    assert headers == {}


# ---------------------------------------------------------------- building from config keys


def test_build_client_auth_maps_the_methods(tmp_path: Path, ec_key: Any) -> None:
    key_file = _write_key(tmp_path / "k.pem", ec_key)
    token_file = str(tmp_path / "token")

    assert isinstance(build_client_auth("client_secret_basic", "c", client_secret="s"), ClientSecretBasic)
    assert isinstance(build_client_auth("private_key_jwt", "c", private_key_path=key_file), PrivateKeyJwt)
    assert isinstance(build_client_auth("private_key_jwt", "c", assertion_file=token_file), AssertionFile)
    with pytest.raises(ConfigError, match="not both"):
        build_client_auth("private_key_jwt", "c", private_key_path=key_file, assertion_file=token_file)
    with pytest.raises(ConfigError) as caught:
        build_client_auth("private_key_jwt", "c", json_path="$.oauth_config")
    assert caught.value.json_path == "$.oauth_config.OAUTH_TOKEN_ENDPOINT_AUTH_METHOD"
    with pytest.raises(ConfigError, match="unknown client authentication method"):
        build_client_auth("client_secret_magic", "c")


_BLOCK_JWT = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("jwt", "cryptography"):
                raise ImportError("blocked: " + name)
            return None

    sys.meta_path.insert(0, Block())
    from oauth_gateway import ConfigError
    from oauth_gateway.client_auth import AssertionFile, build_client_auth

    for method, kwargs in (
        ("private_key_jwt", {"private_key_path": sys.argv[1]}),
        ("client_secret_jwt", {"client_secret": "x" * 40}),
    ):
        try:
            build_client_auth(method, "cid", json_path="$.oauth_config", **kwargs)
        except ConfigError as exc:
            print("ERROR", exc.json_path, exc)
    print("FILE", AssertionFile(sys.argv[2]).read(0)[:3])
    """
)


def test_without_pyjwt_a_jwt_method_is_a_config_error_naming_the_extra(tmp_path: Path, ec_key: Any) -> None:
    key_file = _write_key(tmp_path / "k.pem", ec_key)
    token_file = tmp_path / "token"
    token_file.write_text(_platform_jwt(time.time() + 600))

    result = subprocess.run(
        [sys.executable, "-c", _BLOCK_JWT, key_file, str(token_file)],
        cwd=str(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    errors = [line for line in result.stdout.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 2, result.stdout
    for line in errors:
        assert "pip install 'oauth-gateway[jwt]'" in line and "needs PyJWT" in line
    assert "$.oauth_config.OAUTH_CLIENT_PRIVATE_KEY_PATH" in errors[0]
    assert "$.oauth_config.OAUTH_TOKEN_ENDPOINT_AUTH_METHOD" in errors[1]
    # Reading a platform-issued assertion needs no PyJWT.
    assert "FILE eyJ" in result.stdout


# ---------------------------------------------------------------- oidc-provider, real tokens


def _token_request(provider: OidcProvider, auth: Any, **extra: str) -> requests.Response:
    form: Dict[str, str] = {"grant_type": "client_credentials", "scope": SCOPE, "resource": RESOURCE}
    form.update(extra)
    headers: Dict[str, str] = {}
    auth.apply(form, headers, token_endpoint=provider.token_url, issuer=provider.issuer, now=time.time())
    return requests.post(
        provider.token_url,
        data=form,
        headers=headers,
        verify=str(provider.ca_file),
        timeout=TIMEOUT,
        allow_redirects=False,
    )


def _jwt_client(provider: OidcProvider, name: str, alg: Optional[str] = None) -> PrivateKeyJwt:
    client_id, _ = provider.clients[name]
    key = load_private_key(str(provider.private_key_files[name]))
    return PrivateKeyJwt(client_id, key, alg, kid=provider.key_ids[name])


@pytest.mark.parametrize("name, alg", [("jwt-ec", None), ("jwt-rsa", None), ("jwt-rsa", "PS256")])
def test_oidc_provider_issues_tokens_for_private_key_jwt(
    oidc_provider: OidcProvider,
    name: str,
    alg: Optional[str],  # noqa: F811
) -> None:
    response = _token_request(oidc_provider, _jwt_client(oidc_provider, name, alg))

    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer" and response.json()["scope"] == SCOPE


def test_oidc_provider_issues_tokens_for_client_secret_jwt(oidc_provider: OidcProvider) -> None:  # noqa: F811
    client_id, secret = oidc_provider.clients["secret-jwt"]
    response = _token_request(oidc_provider, ClientSecretJwt(client_id, secret or ""))

    assert response.status_code == 200, response.text
    assert response.json()["access_token"]


def test_oidc_provider_accepts_the_token_endpoint_as_audience(oidc_provider: OidcProvider) -> None:  # noqa: F811
    client_id, _ = oidc_provider.clients["jwt-ec"]
    key = load_private_key(str(oidc_provider.private_key_files["jwt-ec"]))
    auth = PrivateKeyJwt(client_id, key, audience=oidc_provider.token_url)

    response = _token_request(oidc_provider, auth)

    assert response.status_code == 200, response.text


def test_a_wrong_key_is_invalid_client_in_one_request(
    oidc_provider: OidcProvider,
    tmp_path: Path,  # noqa: F811
) -> None:
    client_id, _ = oidc_provider.clients["jwt-ec"]
    stranger = load_private_key(_write_key(tmp_path / "stranger.pem", ec.generate_private_key(ec.SECP256R1())))
    auth = PrivateKeyJwt(client_id, stranger, kid=oidc_provider.key_ids["jwt-ec"])

    response = _token_request(oidc_provider, auth)

    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


def test_two_assertions_in_a_row_both_get_tokens_and_a_replay_does_not(
    oidc_provider: OidcProvider,  # noqa: F811
) -> None:
    auth = _jwt_client(oidc_provider, "jwt-ec")
    first = _token_request(oidc_provider, auth)
    second = _token_request(oidc_provider, auth)

    # The same assertion sent again: oidc-provider remembers its jti.
    form: Dict[str, str] = {"grant_type": "client_credentials"}
    auth.apply(form, {}, token_endpoint=oidc_provider.token_url, issuer=oidc_provider.issuer, now=time.time())
    post = lambda: requests.post(  # noqa: E731
        oidc_provider.token_url, data=form, verify=str(oidc_provider.ca_file), timeout=TIMEOUT
    )
    fresh, replayed = post(), post()

    assert (first.status_code, second.status_code, fresh.status_code) == (200, 200, 200)
    assert first.json()["access_token"] != second.json()["access_token"]
    assert replayed.status_code == 401 and replayed.json()["error"] == "invalid_client"


def test_a_rotated_assertion_file_reaches_oidc_provider(
    oidc_provider: OidcProvider,
    tmp_path: Path,  # noqa: F811
) -> None:
    # The "platform" here signs with the client's registered key; the server sees whatever
    # the file holds at each request. Sending the old content twice would be a replay.
    signer = _jwt_client(oidc_provider, "jwt-ec")
    path = tmp_path / "token"
    auth = AssertionFile(str(path), signer.client_id)

    def rotate() -> str:
        assertion = signer.assertion(
            token_endpoint=oidc_provider.token_url, issuer=oidc_provider.issuer, now=time.time()
        )
        path.write_text(assertion)
        return assertion

    rotate()
    first = _token_request(oidc_provider, auth)
    rotate()
    second = _token_request(oidc_provider, auth)
    third = _token_request(oidc_provider, auth)  # not rotated: the same jti again

    assert (first.status_code, second.status_code) == (200, 200), second.text
    assert third.status_code == 401 and third.json()["error"] == "invalid_client"
