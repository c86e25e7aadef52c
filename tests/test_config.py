"""OAuthConfig.from_dict: defaults, references, secret files, URL and mTLS checks, masking."""

from __future__ import annotations

import datetime
import json
import os
import pickle
import threading

import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

import oauth_gateway as og
from oauth_gateway.config import FIELDS
from oauth_gateway.schema import load_schema

BASE = {
    "enabled": True,
    "OAUTH_CLIENT_ID": "client-1",
    "OAUTH_CLIENT_SECRET": "s3cr3t-value-1234",
    "OAUTH_TOKEN_URL": "https://idp.example.com/oauth/token",
}


def build(**changes):
    block = dict(BASE)
    for key, value in changes.items():
        if value is None:
            block.pop(key, None)
        else:
            block[key] = value
    return og.OAuthConfig.from_dict(block, environ={})


def test_defaults_match_the_schema():
    config = build()
    properties = load_schema("oauth-config")["properties"]
    data = config.to_dict(show_secret=True)
    for key, value in data.items():
        if key in ("enabled", "OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "OAUTH_TOKEN_URL"):
            continue
        assert properties[key]["default"] == value, key
    assert config.version == "2.0"
    assert config.auth_method == "client_secret_basic"
    assert (config.expiry_buffer, config.max_retries, config.retry_backoff) == (300, 3, 2.0)
    assert config.is_remote is None


def test_the_field_table_declares_exactly_the_schemas_keys():
    properties = load_schema("oauth-config")["properties"]
    keys = [field.key for field in FIELDS]
    assert len(keys) == len(set(keys))
    assert set(keys) == set(properties) - {"$schema"}


def test_every_field_default_is_the_schema_default_and_loads_to_its_type():
    properties = load_schema("oauth-config")["properties"]
    config = og.OAuthConfig.from_dict({}, environ={})
    data = config.to_dict(show_secret=True)
    for field in FIELDS:
        assert field.default == properties[field.key]["default"], field.key
        value = getattr(config, field.name)
        assert isinstance(value, field.type), field.key
        if field.key in data:
            assert data[field.key] == properties[field.key]["default"], field.key


def test_every_field_has_an_annotation_and_a_slot():
    names = [field.name for field in FIELDS] + ["scopes", "fingerprint"]
    assert list(og.OAuthConfig.__slots__) == names
    assert set(og.OAuthConfig.__annotations__) == set(names)


def test_secret_fields_never_reach_repr_or_to_dict():
    config = build(OAUTH_CLIENT_PRIVATE_KEY_PASSWORD="k3y-passw0rd")
    for field in FIELDS:
        if field.secret:
            assert getattr(config, field.name)
            assert "'***'" in repr(config)
            assert config.to_dict()[field.key] == "***"
    assert "s3cr3t" not in repr(config)
    assert "k3y-passw0rd" not in repr(config) + repr(config.to_dict())


def test_keyword_construction_with_python_names_equals_from_dict():
    made = og.OAuthConfig(
        client_id="client-1",
        client_secret="s3cr3t-value-1234",
        token_url="https://idp.example.com/oauth/token",
        scope="read write",
        resources=("https://api.example.com/mcp",),
        additional_params={"tenant": "t1"},
        timeout=3,
    )
    loaded = build(
        OAUTH_SCOPE="read write",
        OAUTH_RESOURCE="https://api.example.com/mcp",
        OAUTH_ADDITIONAL_PARAMS={"tenant": "t1"},
        OAUTH_TIMEOUT=3,
    )
    assert made == loaded
    assert made.fingerprint == loaded.fingerprint
    assert made.enabled is True
    assert made.scopes == frozenset(["read", "write"])
    assert made.timeout == 3.0


@pytest.mark.parametrize(
    "options, json_path, fragment",
    [
        ({"client_id": "c", "token_url": "https://idp/token"}, "$.OAUTH_CLIENT_SECRET", "client secret is required"),
        (
            {"client_id": "c", "client_secret": "s", "token_url": "http://idp/token"},
            "$.OAUTH_TOKEN_URL",
            "must be https",
        ),
        (
            {"client_id": 3, "client_secret": "s", "token_url": "https://idp/token"},
            "$.OAUTH_CLIENT_ID",
            "must be a string",
        ),
        ({"client_secret": "s", "token_url": "https://idp/token"}, "$.OAUTH_CLIENT_ID", "required"),
    ],
)
def test_keyword_construction_is_validated_like_from_dict(options, json_path, fragment):
    with pytest.raises(og.ConfigError) as info:
        og.OAuthConfig(**options)
    assert info.value.json_path == json_path
    assert fragment in str(info.value)


def test_an_unknown_keyword_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match="unexpected keyword argument 'client_idd'.*client_id"):
        og.OAuthConfig(client_idd="c")


def test_a_pickle_without_a_newer_field_takes_its_default():
    config = build()
    state = {field.name: getattr(config, field.name) for field in FIELDS if field.name != "client_secret_file"}
    restored = config.__reduce__()[0](state)
    assert restored == config
    assert restored.client_secret_file == ""


def test_env_references_are_resolved_whole_and_embedded():
    block = dict(BASE, OAUTH_CLIENT_SECRET="${IDP_SECRET}", OAUTH_TOKEN_URL="https://${IDP_HOST}/token")
    config = og.OAuthConfig.from_dict(block, environ={"IDP_SECRET": "from-env-secret", "IDP_HOST": "idp.test"})
    assert config.client_secret == "from-env-secret"
    assert config.token_url == "https://idp.test/token"


def test_an_unset_reference_names_the_variable():
    block = dict(BASE, OAUTH_CLIENT_SECRET="${MISSING_SECRET}")
    with pytest.raises(og.ConfigError) as info:
        og.OAuthConfig.from_dict(block, json_path="$.oauth_config", environ={})
    assert info.value.json_path == "$.oauth_config.OAUTH_CLIENT_SECRET"
    assert "MISSING_SECRET" in str(info.value)


def test_a_reference_to_an_empty_secret_is_refused():
    block = dict(BASE, OAUTH_CLIENT_SECRET="${EMPTY}")
    with pytest.raises(og.ConfigError, match="OAUTH_CLIENT_SECRET"):
        og.OAuthConfig.from_dict(block, environ={"EMPTY": ""})


def test_secret_file_is_read_and_stripped(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("file-secret-value\n")
    config = build(OAUTH_CLIENT_SECRET=None, OAUTH_CLIENT_SECRET_FILE=str(secret_file))
    assert config.client_secret == "file-secret-value"


@pytest.mark.parametrize("content", [None, ""])
def test_a_missing_or_empty_secret_file_is_an_error(tmp_path, content):
    secret_file = tmp_path / "secret"
    if content is not None:
        secret_file.write_text(content)
    with pytest.raises(og.ConfigError, match="OAUTH_CLIENT_SECRET_FILE"):
        build(OAUTH_CLIENT_SECRET=None, OAUTH_CLIENT_SECRET_FILE=str(secret_file))


def _load_in_a_thread(timeout: float = 10.0, **changes):
    """build(**changes) in a daemon thread: a loader stuck on a FIFO fails the test instead of hanging it."""
    outcome = {}

    def run():
        try:
            outcome["config"] = build(**changes)
        except Exception as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    return thread, outcome


def test_a_fifo_as_secret_file_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "secret"
    os.mkfifo(str(fifo))
    thread, outcome = _load_in_a_thread(OAUTH_CLIENT_SECRET=None, OAUTH_CLIENT_SECRET_FILE=str(fifo))
    if thread.is_alive():  # unblock the stuck reader (a writer that closes at once), then fail
        os.close(os.open(str(fifo), os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5)
        pytest.fail("loading a config whose secret file is a FIFO blocked")
    error = outcome["error"]
    assert isinstance(error, og.ConfigError)
    assert error.json_path == "$.OAUTH_CLIENT_SECRET_FILE"
    assert "is a FIFO, not a regular file" in str(error) and str(fifo) in str(error)


def test_a_device_as_secret_file_is_refused():
    with pytest.raises(og.ConfigError, match="is a device, not a regular file") as caught:
        build(OAUTH_CLIENT_SECRET=None, OAUTH_CLIENT_SECRET_FILE=os.devnull)
    assert caught.value.json_path == "$.OAUTH_CLIENT_SECRET_FILE"


def test_a_secret_file_larger_than_64_kib_is_refused(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(b"x" * (64 * 1024 + 1))
    os.chmod(str(secret_file), 0o600)
    with pytest.raises(og.ConfigError, match="is larger than 65536 bytes"):
        build(OAUTH_CLIENT_SECRET=None, OAUTH_CLIENT_SECRET_FILE=str(secret_file))
    secret_file.write_bytes(b"y" * (64 * 1024))  # the limit itself is fine
    assert len(build(OAUTH_CLIENT_SECRET=None, OAUTH_CLIENT_SECRET_FILE=str(secret_file)).client_secret) == 65536


def test_a_group_readable_secret_file_is_warned_about_without_the_secret(tmp_path, caplog):
    secret_file = tmp_path / "secret"
    secret_file.write_text("file-secret-value-77\n")
    os.chmod(str(secret_file), 0o640)
    caplog.set_level("WARNING", logger="oauth_gateway")
    config = build(OAUTH_CLIENT_SECRET=None, OAUTH_CLIENT_SECRET_FILE=str(secret_file))
    assert config.client_secret == "file-secret-value-77"
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and str(secret_file) in r.getMessage()]
    assert len(warnings) == 1
    assert "readable by group or others (mode 0640)" in warnings[0].getMessage()
    assert "chmod 600" in warnings[0].getMessage()
    assert "file-secret-value-77" not in caplog.text
    caplog.clear()
    os.chmod(str(secret_file), 0o600)
    build(OAUTH_CLIENT_SECRET=None, OAUTH_CLIENT_SECRET_FILE=str(secret_file))
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


#: A header value that is an API key; never in a message.
HEADER_SECRET = "k3y-Zq7-header-value-0042"


@pytest.mark.parametrize(
    "value, problem",
    [
        (HEADER_SECRET + "\n", "holds a line break (CR or LF)"),
        (HEADER_SECRET + "\r\nX-Injected: 1", "holds a line break (CR or LF)"),
        (HEADER_SECRET + "\x00", "holds a NUL character"),
        (HEADER_SECRET + "\x1b[2J", "holds the control character U+001B"),
        (HEADER_SECRET + "\x7f", "holds the control character U+007F"),
        (" " + HEADER_SECRET, "starts or ends with whitespace"),
        (HEADER_SECRET + "\t", "starts or ends with whitespace"),
    ],
    ids=["lf", "crlf", "nul", "esc", "del", "leading-space", "trailing-tab"],
)
@pytest.mark.parametrize("through_env", [False, True], ids=["literal", "env"])
def test_a_bad_custom_header_value_is_refused_at_load_naming_the_header_not_the_value(value, problem, through_env):
    block = dict(BASE, OAUTH_CUSTOM_HEADERS={"X-Api-Key": "${API_KEY}" if through_env else value})
    with pytest.raises(og.ConfigError) as caught:
        og.OAuthConfig.from_dict(block, "$.oauth_config", environ={"API_KEY": value})
    error = caught.value
    assert error.json_path == "$.oauth_config.OAUTH_CUSTOM_HEADERS['X-Api-Key']"
    assert "the value of header X-Api-Key %s" % problem in str(error)
    for text in (str(error), repr(error), error.hint or ""):
        assert HEADER_SECRET not in text


@pytest.mark.parametrize("name", ["X Api Key", "X-Api-Key:", "X-Api\nKey", "", "Ключ"])
def test_a_custom_header_name_that_is_not_a_token_is_refused(name):
    block = dict(BASE, OAUTH_CUSTOM_HEADERS={name: HEADER_SECRET})
    with pytest.raises(og.ConfigError, match="is not an HTTP token") as caught:
        og.OAuthConfig.from_dict(block, "$.oauth_config", environ={})
    assert caught.value.json_path == "$.oauth_config.OAUTH_CUSTOM_HEADERS"
    assert "\n" not in str(caught.value) and HEADER_SECRET not in str(caught.value)


def test_good_custom_headers_load_as_given():
    headers = {"X-Api-Key": HEADER_SECRET, "X-Tenant": "a b\tc", "x_odd!#$%&'*+.^`|~": "", "X-Empty": ""}
    config = build(OAUTH_CUSTOM_HEADERS=headers)
    assert dict(config.custom_headers) == headers


def test_http_token_url_under_2_1_keeps_the_seed_message():
    block = dict(BASE, OAUTH_VERSION="2.1", OAUTH_TOKEN_URL="${URL}")
    with pytest.raises(og.ConfigError, match="OAuth 2.1 requires HTTPS for token_url"):
        og.OAuthConfig.from_dict(block, environ={"URL": "http://idp.example.com/token"})


def test_http_is_allowed_only_when_https_enforcement_is_off():
    with pytest.raises(og.ConfigError, match="must be https"):
        og.OAuthConfig.from_dict(dict(BASE, OAUTH_TOKEN_URL="${URL}"), environ={"URL": "http://idp/token"})
    config = build(OAUTH_TOKEN_URL="http://127.0.0.1:8080/token", OAUTH_ENFORCE_HTTPS=False)
    assert config.token_url.startswith("http://")


def test_resource_with_a_fragment_is_refused():
    with pytest.raises(og.ConfigError):
        og.OAuthConfig.from_dict(dict(BASE, OAUTH_RESOURCE="${R}"), environ={"R": "https://api.example.com/#frag"})


def test_resource_list_is_kept_in_order():
    config = build(OAUTH_RESOURCE=["https://b.example.com/", "https://a.example.com/"])
    assert config.resources == ("https://b.example.com/", "https://a.example.com/")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    ca = trustme.CA()
    folder = tmp_path_factory.mktemp("pki")
    cert = ca.issue_cert("client.example.test")
    other = ca.issue_cert("other.example.test")
    paths = {}
    for name, blob in (
        ("cert", cert.cert_chain_pems[0].bytes()),
        ("key", cert.private_key_pem.bytes()),
        ("other_key", other.private_key_pem.bytes()),
        ("ca", ca.cert_pem.bytes()),
    ):
        path = folder / (name + ".pem")
        path.write_bytes(blob)
        os.chmod(str(path), 0o600)
        paths[name] = str(path)
    return paths


def mtls(pki, **changes):
    values = dict(
        OAUTH_USE_MTLS=True,
        OAUTH_CLIENT_CERT_PATH=pki["cert"],
        OAUTH_CLIENT_KEY_PATH=pki["key"],
        OAUTH_CA_BUNDLE_PATH=pki["ca"],
    )
    values.update(changes)
    return build(**values)


def test_mtls_files_load_as_a_pair(pki):
    config = mtls(pki)
    assert config.tls_identity == ((pki["cert"], pki["key"]), pki["ca"])


def test_a_missing_certificate_keeps_the_seed_message(pki, tmp_path):
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(og.ConfigError) as info:
        mtls(pki, OAUTH_CLIENT_CERT_PATH=missing)
    assert "Client certificate not found: %s" % missing in str(info.value)
    assert info.value.json_path == "$.OAUTH_CLIENT_CERT_PATH"


def test_a_mismatched_key_is_refused(pki):
    with pytest.raises(og.ConfigError, match="do not load as a pair"):
        mtls(pki, OAUTH_CLIENT_KEY_PATH=pki["other_key"])


def test_an_unreadable_key_is_refused(pki, tmp_path):
    if os.geteuid() == 0:
        # root reads anything; a directory in place of the key is unreadable as a file instead
        with pytest.raises(og.ConfigError, match="Client key not found"):
            mtls(pki, OAUTH_CLIENT_KEY_PATH=str(tmp_path))
        return
    locked = tmp_path / "locked.pem"
    locked.write_bytes(open(pki["key"], "rb").read())
    os.chmod(str(locked), 0)
    with pytest.raises(og.ConfigError, match="not readable"):
        mtls(pki, OAUTH_CLIENT_KEY_PATH=str(locked))


def _expired_pair(folder):
    """A self-signed certificate that expired on 2000-01-02, and its key (cryptography ships with trustme)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old.example.test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime(2000, 1, 1))
        .not_valid_after(datetime.datetime(2000, 1, 2))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "c.pem", folder / "k.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    os.chmod(str(key_path), 0o600)
    return str(cert_path), str(key_path)


def test_an_expired_certificate_is_refused(tmp_path):
    cert_path, key_path = _expired_pair(tmp_path)
    with pytest.raises(og.ConfigError, match="Client certificate expired on 2000-01-02"):
        build(OAUTH_USE_MTLS=True, OAUTH_CLIENT_CERT_PATH=cert_path, OAUTH_CLIENT_KEY_PATH=key_path)


def test_a_group_readable_key_is_warned_about(pki, tmp_path, caplog):
    loose = tmp_path / "loose.pem"
    loose.write_bytes(open(pki["key"], "rb").read())
    os.chmod(str(loose), 0o644)
    mtls(pki, OAUTH_CLIENT_KEY_PATH=str(loose))
    assert "readable by group or others" in caplog.text
    assert "chmod 600" in caplog.text


def test_an_mtls_key_file_larger_than_64_kib_is_refused(pki, tmp_path):
    padded = tmp_path / "padded.pem"
    # A working key followed by 64 KiB of text that PEM readers skip.
    padded.write_bytes(open(pki["key"], "rb").read() + b"# padding\n" * 6600)
    os.chmod(str(padded), 0o600)
    with pytest.raises(og.ConfigError, match="is larger than 65536 bytes") as caught:
        mtls(pki, OAUTH_CLIENT_KEY_PATH=str(padded))
    assert caught.value.json_path == "$.OAUTH_CLIENT_KEY_PATH"


def test_tls_client_auth_needs_no_secret(pki):
    config = mtls(pki, OAUTH_CLIENT_SECRET=None)
    assert config.auth_method == "tls_client_auth"


def test_home_is_expanded(pki, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", os.path.dirname(pki["cert"]))
    config = mtls(pki, OAUTH_CLIENT_CERT_PATH="~/cert.pem")
    assert config.client_cert_path == pki["cert"]


def test_config_is_immutable_and_hides_its_secret():
    config = build()
    with pytest.raises(AttributeError):
        config.client_secret = "x"
    assert "s3cr3t-value-1234" not in repr(config)
    assert config.to_dict()["OAUTH_CLIENT_SECRET"] == "***"
    assert config.to_dict(show_secret=True)["OAUTH_CLIENT_SECRET"] == "s3cr3t-value-1234"
    assert pickle.loads(pickle.dumps(config)) == config


def test_fingerprint_changes_with_what_changes_the_token():
    base = build().fingerprint
    assert build().fingerprint == base
    assert build(OAUTH_SCOPE="read").fingerprint != base
    assert build(OAUTH_CLIENT_SECRET="another-secret-99").fingerprint != base
    assert build(OAUTH_RESOURCE="https://api.example.com/").fingerprint != base
    assert build(OAUTH_TOKEN_EXPIRY_BUFFER=10).fingerprint == base
    assert build(OAUTH_TIMEOUT=3).fingerprint == base
    assert "s3cr3t" not in base


def test_a_schema_problem_is_raised_with_its_path():
    with pytest.raises(og.ConfigError) as info:
        og.OAuthConfig.from_dict(dict(BASE, enabled="false"), json_path="$.oauth_config", environ={})
    assert info.value.json_path == "$.oauth_config.enabled"


def test_a_non_object_is_refused():
    with pytest.raises(og.ConfigError, match="must be a JSON object"):
        og.OAuthConfig.from_dict(["not", "a", "block"])


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
KEYS = st.sampled_from(sorted(load_schema("oauth-config")["properties"]))


@settings(max_examples=300, deadline=None)
@given(st.one_of(JSON, st.dictionaries(KEYS, JSON, max_size=8)))
def test_any_json_gives_a_config_or_a_config_error(value):
    try:
        config = og.OAuthConfig.from_dict(value, environ={})
    except og.ConfigError as exc:
        assert exc.json_path.startswith("$")
        return
    assert isinstance(config, og.OAuthConfig)
    json.dumps(config.to_dict())


def test_a_ca_bundle_replaced_by_junk_is_refused_though_the_good_one_loaded_before(tmp_path):
    # Loading a CA bundle is remembered by file version, so a repeated from_dict is cheap;
    # a changed file must be loaded, and refused, again.
    bundle = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(bundle))
    block = {
        "enabled": True,
        "OAUTH_CLIENT_ID": "abc",
        "OAUTH_CLIENT_SECRET": "s3cret-value",
        "OAUTH_TOKEN_URL": "https://idp.example.com/token",
        "OAUTH_CA_BUNDLE_PATH": str(bundle),
    }
    og.OAuthConfig.from_dict(block)
    og.OAuthConfig.from_dict(block)
    bundle.write_text("not a certificate, and longer than the PEM it replaced " * 40)
    with pytest.raises(og.ConfigError, match="holds no usable PEM certificate"):
        og.OAuthConfig.from_dict(block)
