"""Fuzzed input (hypothesis) where the other property tests stop.

* ``parse_token_response(status, body)``: random statuses; bodies that are random token
  documents (``access_token``, ``token_type``, ``expires_in``, ``scope`` and the error
  fields of random types), random JSON and random bytes (deep nesting has its own test). Only
  ``TokenRequestError`` escapes; an accepted response is a usable bearer token; an error
  pickles and never repeats the access token.
* ``validate_config`` on deeper gateway documents (several configs and servers, blocks of
  known keys with values of the right and wrong types): problems are sorted, point into
  the document, agree with ``validate_oauth_block`` per block and never show a secret.
* ``OAuthConfig.from_dict`` with random secrets: neither its errors nor its ``repr`` or
  ``to_dict()`` show the secret.
* ``oauth-gateway validate`` on random files: exit 0, 1 or 2, never an exception; files
  nested 100 000 deep are refused before parsing, also near the recursion limit.

Shallower versions already exist: ``test_schema.py::test_any_json_value_gives_a_list_of_problems``,
``test_config.py::test_any_json_gives_a_config_or_a_config_error`` and
``test_injection.py::test_random_entries_give_a_new_entry_or_config_error``.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import pickle
import re
import tempfile
from typing import Any, List, Tuple

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import oauth_gateway as og
from oauth_gateway import cli
from oauth_gateway.client import MAX_TOKEN_LIFETIME, parse_token_response
from oauth_gateway.schema import Problem, load_schema, validate_config, validate_oauth_block

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: For properties that build a config or run the CLI per example (slower on Python 3.8).
SLOW_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- token responses

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
#: Tokens long enough that finding one in a message is not a coincidence.
_access_tokens = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~", min_size=20, max_size=64
)
_expires_in = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["3600", " 60 ", "0", "-5", "1e12", "1e999", "nan", "inf", "-inf", "0x10", "", "3600s", "١٢"]),
    _json,
)
_token_documents = st.fixed_dictionaries(
    {},
    optional={
        "access_token": st.one_of(_access_tokens, st.sampled_from(["", "  "]), _json),
        "token_type": st.one_of(
            st.sampled_from(["Bearer", "bearer", "BEARER", "mac", "", " Bearer", "Bearer\n"]), _json
        ),
        "expires_in": _expires_in,
        "scope": st.one_of(st.sampled_from(["read", "read write", ""]), _json),
        "error": st.one_of(st.sampled_from(["invalid_client", "invalid_scope", "slow_down"]), _json),
        "error_description": _json,
        "error_uri": _json,
        "refresh_token": _json,
    },
)
_bodies = st.one_of(
    _token_documents.map(lambda document: ("document", document, json.dumps(document).encode("utf-8"))),
    _json.map(lambda value: ("json", value, json.dumps(value).encode("utf-8"))),
    st.binary(max_size=200).map(lambda raw: ("bytes", None, raw)),
    st.integers(min_value=1, max_value=50).map(lambda depth: ("nested", None, b"[" * depth + b"]" * depth)),
)
_statuses = st.one_of(st.just(200), st.integers(min_value=100, max_value=599), st.integers(min_value=0, max_value=999))

_ACCEPTED_FIELDS = ("access_token", "token_type", "expires_in", "scope")


def _echoable_elsewhere(document: Any, token: str) -> bool:
    """True when the token also sits in a field a message may legitimately quote."""
    if not isinstance(document, dict):
        return False
    return any(
        isinstance(document.get(field), str) and token in document[field]
        for field in ("error", "error_description", "error_uri", "token_type")
    )


@SETTINGS
@given(_statuses, _bodies)
@example(
    200, ("raw", None, b'{"access_token": "abcdefghijklmnopqrstuvwxyz", "token_type": "Bearer", "expires_in": NaN}')
)
@example(
    200, ("raw", None, b'{"access_token": "abcdefghijklmnopqrstuvwxyz", "token_type": "Bearer", "expires_in": 1e400}')
)
@example(
    200,
    (
        "raw",
        None,
        b'{"access_token": "abcdefghijklmnopqrstuvwxyz", "token_type": "Bearer", "expires_in": 1' + b"0" * 400 + b"}",
    ),
)
def test_parse_token_response_raises_only_token_request_error(status, body):
    kind, document, raw = body
    try:
        parsed = parse_token_response(status, raw, server_name="fuzz", correlation_id="c0ffee00")
    except og.TokenRequestError as error:
        message = str(error)
        assert message.startswith("OAuth token request failed: ")
        if not 300 <= status < 400:
            assert message.endswith("[correlation_id=c0ffee00]")
        assert error.status_code in (status, 400)  # a 200 carrying "error" is reported as 400
        assert error.correlation_id == "c0ffee00"
        assert isinstance(error.retryable, bool)
        for attribute in ("error", "error_description", "error_uri"):
            assert getattr(error, attribute) is None or isinstance(getattr(error, attribute), str)
        if error.error_description is not None:
            assert len(error.error_description) <= 200 and "\n" not in error.error_description
        assert len(message) <= 400, "the message repeats the body"
        assert "\n" not in message and "\r" not in message
        token = document.get("access_token") if isinstance(document, dict) else None
        if isinstance(token, str) and len(token) >= 20 and not _echoable_elsewhere(document, token):
            assert token not in message and token not in repr(error)
        copied = pickle.loads(pickle.dumps(error))
        assert type(copied) is type(error) and str(copied) == message
        assert (copied.error, copied.status_code, copied.retryable) == (error.error, error.status_code, error.retryable)
        return
    assert status == 200
    assert isinstance(parsed.access_token, str) and parsed.access_token.strip()
    assert parsed.token_type == "Bearer"
    assert parsed.expires_in is None or (
        isinstance(parsed.expires_in, float)
        and 0 < parsed.expires_in <= MAX_TOKEN_LIFETIME
        and not math.isnan(parsed.expires_in)
    )
    assert parsed.scope is None or isinstance(parsed.scope, str)
    if kind == "document":
        assert parsed.access_token == document["access_token"]
        assert "error" not in document
        assert parsed.scope == document.get("scope")


@pytest.mark.parametrize("depth", [900, 5_000, 200_000])
@pytest.mark.parametrize("opening, closing", [(b"[", b"]"), (b'{"a":', b"}")], ids=["arrays", "objects"])
@pytest.mark.parametrize("status", [200, 400])
def test_deeply_nested_bodies_are_refused(status, opening, closing, depth):
    # Outside hypothesis on purpose: CPython 3.8 aborted ("Cannot recover from stack overflow"
    # in json's C scanner) when hypothesis fed it thousands of 200 000-deep bodies in one run.
    body = opening * depth + (b"1" if opening != b"[" else b"") + closing * depth
    with pytest.raises(og.TokenRequestError) as info:
        parse_token_response(status, body, correlation_id="c0ffee00")
    assert info.value.status_code == status
    assert len(str(info.value)) <= 400


@pytest.mark.parametrize(
    "code",
    ["x" * 5000, "invalid_client\nINFO forged log line", "invalid_client\r\n\r\n<html>"],
    ids=["long", "newline", "crlf"],
)
def test_an_error_code_outside_rfc6749_is_not_echoed_whole(code):
    with pytest.raises(og.TokenRequestError) as info:
        parse_token_response(400, json.dumps({"error": code}).encode(), correlation_id="c0ffee00")
    message = str(info.value)
    assert len(message) <= 400
    assert "\n" not in message and "\r" not in message


# --------------------------------------------------------------------------- gateway documents

_OAUTH_SCHEMA = load_schema("oauth-config")
_OAUTH_KEYS = sorted(_OAUTH_SCHEMA["properties"])
#: Marks a secret; never a substring of a message by accident.
_SECRET_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_secrets = st.text(alphabet=_SECRET_ALPHABET, min_size=12, max_size=24).map(lambda s: "Zq7" + s)

_good_values = {
    "enabled": st.booleans(),
    "is_remote": st.one_of(st.none(), st.booleans()),
    "OAUTH_VERSION": st.sampled_from(["2.0", "2.1"]),
    "OAUTH_GRANT_TYPE": st.just("client_credentials"),
    "OAUTH_CLIENT_ID": st.sampled_from(["client", "my client:1", "${CLIENT_ID}"]),
    "OAUTH_TOKEN_URL": st.sampled_from(["https://idp.example.com/token", "http://127.0.0.1/token", "${IDP}/token"]),
    "OAUTH_REVOCATION_URL": st.sampled_from(["https://idp.example.com/revoke", "", "ftp://x"]),
    "OAUTH_SCOPE": st.sampled_from(["read", "read write", " read", "a  b", ""]),
    "OAUTH_RESOURCE": st.one_of(
        st.sampled_from(["https://api.example.com", "urn:x", "https://a#b"]),
        st.lists(st.sampled_from(["https://a.example", "x"]), max_size=2),
    ),
    "OAUTH_TOKEN_EXPIRY_BUFFER": st.one_of(st.integers(-5, 1000), st.floats(allow_nan=False, allow_infinity=False)),
    "OAUTH_TIMEOUT": st.one_of(st.integers(-1, 60), st.floats(allow_nan=False, allow_infinity=False)),
    "OAUTH_MAX_RETRIES": st.integers(-2, 12),
    "OAUTH_ADDITIONAL_PARAMS": st.dictionaries(
        st.sampled_from(["realm", "scope", "client_secret", "x"]), _scalars, max_size=3
    ),
    "OAUTH_CUSTOM_HEADERS": st.dictionaries(
        st.sampled_from(["X-A", "Authorization", "content-type"]), _scalars, max_size=3
    ),
}


def _value_for(key: str):
    good = _good_values.get(key, st.one_of(st.booleans(), st.text(max_size=12)))
    return st.one_of(good, good, _json)


_oauth_blocks = st.one_of(
    st.fixed_dictionaries(
        {"enabled": st.booleans()},
        optional=dict(
            {key: _value_for(key) for key in _OAUTH_KEYS if key not in ("enabled", "OAUTH_CLIENT_SECRET")},
            OAUTH_SCOPES=_json,
        ),
    ),
    _json,
)
_servers = st.fixed_dictionaries(
    {"server_name": st.one_of(st.sampled_from(["api", "oauth-api", ""]), _json)},
    optional={
        "config": st.one_of(
            st.fixed_dictionaries(
                {"command": st.sampled_from(["npx", "python"])},
                optional={
                    "args": st.lists(st.text(max_size=8), max_size=3),
                    "env": st.dictionaries(st.text(max_size=6), _scalars, max_size=2),
                },
            ),
            _json,
        ),
        "oauth_config": _oauth_blocks,
        "description": _json,
    },
)
_config_sets = st.fixed_dictionaries(
    {},
    optional={
        "mcp_config_name": st.one_of(st.text(max_size=8), _json),
        "mcp_config": st.one_of(st.lists(_servers, max_size=4), _json),
    },
)
_gateways = st.fixed_dictionaries(
    {"mcp_configs": st.one_of(st.dictionaries(st.text(max_size=10), _config_sets, max_size=3), _json)},
    optional={"common_mcp_gateway_config": _json, "$schema": _json},
)


def _with_secret(document: Any, secret: Any, where: int) -> Any:
    """Put ``secret`` as OAUTH_CLIENT_SECRET (and in env) of oauth_config blocks, by ``where`` bits."""
    configs = document.get("mcp_configs") if isinstance(document, dict) else None
    if not isinstance(configs, dict):
        return document
    n = 0
    for config_set in configs.values():
        servers_ = config_set.get("mcp_config") if isinstance(config_set, dict) else None
        for server in servers_ if isinstance(servers_, list) else ():
            if not isinstance(server, dict):
                continue
            n += 1
            block = server.get("oauth_config")
            if isinstance(block, dict) and where & (1 << (n % 8)):
                block["OAUTH_CLIENT_SECRET"] = secret
            launch = server.get("config")
            if isinstance(launch, dict) and isinstance(launch.get("env"), dict):
                launch["env"]["API_KEY"] = secret
    return document


_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\['((?:[^'\\]|\\.)*)'\]")


def _segments(path: str) -> List[Any]:
    assert path.startswith("$"), path
    segments, position = [], 1
    while position < len(path):
        match = _SEGMENT.match(path, position)
        assert match, "unparsable JSON path %r at %d" % (path, position)
        name, index, quoted = match.groups()
        if index is not None:
            segments.append(int(index))
        elif name is not None:
            segments.append(name)
        else:
            segments.append(re.sub(r"\\(.)", r"\1", quoted))
        position = match.end()
    return segments


def _resolves(document: Any, segments: List[Any]) -> bool:
    node = document
    for segment in segments:
        if isinstance(segment, int) and isinstance(node, list) and 0 <= segment < len(node):
            node = node[segment]
        elif isinstance(node, dict) and segment in node:
            node = node[segment]
        elif isinstance(node, dict) and str(segment) in node:
            node = node[str(segment)]
        else:
            return False
    return True


def _blocks(document: Any) -> List[Tuple[str, Any]]:
    found = []
    configs = document.get("mcp_configs") if isinstance(document, dict) else None
    for config_id, config_set in configs.items() if isinstance(configs, dict) else ():
        servers_ = config_set.get("mcp_config") if isinstance(config_set, dict) else None
        for i, server in enumerate(servers_ if isinstance(servers_, list) else ()):
            if isinstance(server, dict) and "oauth_config" in server:
                found.append(
                    (_path(("mcp_configs", config_id, "mcp_config", i, "oauth_config")), server["oauth_config"])
                )
    return found


def _path(segments) -> str:
    """A JSON path as the README writes them: ``.key``, ``[index]``, ``['odd key']``."""
    parts = ["$"]
    for segment in segments:
        if isinstance(segment, int):
            parts.append("[%d]" % segment)
        elif re.match(r"[A-Za-z_][A-Za-z0-9_]*\Z", segment):
            parts.append("." + segment)
        else:
            parts.append("['%s']" % segment.replace("\\", "\\\\").replace("'", "\\'"))
    return "".join(parts)


@SETTINGS
@given(
    _gateways, st.one_of(_secrets, _secrets.map(lambda s: [s]), _secrets.map(lambda s: {"v": s})), st.integers(0, 255)
)
def test_deep_gateway_documents_give_sorted_problems_that_point_into_them(document, secret, where):
    document = _with_secret(document, secret, where)
    before = copy.deepcopy(document)
    problems = validate_config(document)
    assert document == before
    assert all(isinstance(p, Problem) and p.message for p in problems)
    needle = secret if isinstance(secret, str) else (secret[0] if isinstance(secret, list) else secret["v"])
    assert needle not in json.dumps([list(p) for p in problems], ensure_ascii=False)
    for problem in problems:
        segments = _segments(problem.json_path)
        # The problem's node exists, or (a missing key) its parent does.
        assert _resolves(document, segments) or _resolves(document, segments[:-1]), problem
    _assert_sorted(problems)


def _sort_key(path: str):
    return [(0, s, "") if isinstance(s, int) else (1, 0, s) for s in _segments(path)]


def _assert_sorted(problems: List[Problem]) -> None:
    keys = [_sort_key(p.json_path) for p in problems]
    assert keys == sorted(keys), [p.json_path for p in problems]


@SETTINGS
@given(_gateways)
def test_a_block_in_a_gateway_has_the_problems_it_has_alone(document):
    problems = validate_config(document)
    for path, block in _blocks(document):
        if isinstance(block, dict) and "$schema" in block:
            continue  # allowed in a bare block file, not inside a gateway (test_schema.py checks both)
        alone = validate_oauth_block(block, path)
        inside = [
            p
            for p in problems
            if p.json_path == path or p.json_path.startswith(path + ".") or p.json_path.startswith(path + "[")
        ]
        assert sorted(inside) == sorted(alone), path


# --------------------------------------------------------------------------- OAuthConfig with secrets


@SLOW_SETTINGS
@given(
    st.fixed_dictionaries(
        {"OAUTH_CLIENT_SECRET": _secrets},
        optional={
            key: _value_for(key)
            for key in _OAUTH_KEYS
            if key
            not in (
                "OAUTH_CLIENT_SECRET",
                "OAUTH_CLIENT_SECRET_FILE",
                "OAUTH_USE_MTLS",
                "OAUTH_CLIENT_CERT_PATH",
                "OAUTH_CLIENT_KEY_PATH",
                "OAUTH_CA_BUNDLE_PATH",
            )
        },
    ),
    st.sampled_from(["${SECRET}", "literal", "prefix-${SECRET}"]),
)
def test_a_config_never_shows_its_secret(block, form):
    secret = block["OAUTH_CLIENT_SECRET"]
    environ = {"SECRET": secret, "CLIENT_ID": "client", "IDP": "https://idp.example.com"}
    if form == "${SECRET}":
        block = dict(block, OAUTH_CLIENT_SECRET="${SECRET}")
    elif form == "prefix-${SECRET}":
        block = dict(block, OAUTH_CLIENT_SECRET="prefix-${SECRET}")
    try:
        config = og.OAuthConfig.from_dict(block, "$.oauth_config", environ=environ)
    except og.ConfigError as error:
        for text in (str(error), repr(error), error.json_path, error.hint or "", error.problem):
            assert secret not in text
        return
    assert secret in config.client_secret
    for text in (repr(config), str(config), json.dumps(config.to_dict()), repr(config.to_dict()), config.fingerprint):
        assert secret not in text
    assert config.to_dict()["OAUTH_CLIENT_SECRET"] == "***"


# --------------------------------------------------------------------------- the CLI on random files


@SLOW_SETTINGS
@given(
    st.one_of(
        st.binary(max_size=300),
        _gateways.map(lambda d: json.dumps(d).encode()),
        _oauth_blocks.map(lambda d: json.dumps(d).encode()),
        st.sampled_from([b"\xef\xbb\xbf{}", b"1" * 5000, b'{"a": 1e999}', b"\xff\xfe{}"]),
        # Nesting around the limit only: 100 000 levels have their own tests below, outside
        # hypothesis, whose deep frames once made CPython 3.8 abort on such input.
        st.integers(min_value=1, max_value=200).map(lambda depth: b"[" * depth + b"]" * depth),
        st.integers(min_value=1, max_value=200).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
    ),
    st.sampled_from(["text", "json", "github"]),
)
def test_validate_on_any_file_exits_0_1_or_2(content, output):
    handle, path = tempfile.mkstemp(suffix=".json")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(content)
        os.chmod(path, 0o600)
        out, err = io.StringIO(), io.StringIO()
        code = cli.main(["validate", "--output", output, path], stdout=out, stderr=err)
    finally:
        os.unlink(path)
    assert code in (0, 1, 2)
    if code == 2:
        assert err.getvalue().startswith("oauth-gateway: error: %s " % path)
    if output == "json":
        assert isinstance(json.loads(out.getvalue()), list)


@pytest.mark.parametrize(
    "content",
    [b"[" * 100000, b"[" * 100000 + b"]" * 100000, b'{"a":' * 100000 + b"1" + b"}" * 100000, b"\n  " + b"{" * 100000],
    ids=["open-arrays", "closed-arrays", "objects", "second-line"],
)
def test_validate_refuses_a_100000_deep_file_the_same_on_every_python(tmp_path, content):
    path = tmp_path / "deep.json"
    path.write_bytes(content)
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["validate", str(path)], stdout=out, stderr=err)
    line, column = (2, 67) if content.startswith(b"\n") else (1, 65 if content.startswith(b"[") else 321)
    assert (code, out.getvalue()) == (2, "")
    assert (
        err.getvalue()
        == "oauth-gateway: error: %s is nested more than 64 arrays or objects deep (line %d, column %d)\n"
        % (
            path,
            line,
            column,
        )
    )


def test_brackets_inside_strings_do_not_count_as_nesting(tmp_path):
    path = tmp_path / "strings.json"
    path.write_text(json.dumps({"common_mcp_gateway_config": {}, "plugins": ["[" * 100000, '\\"{' * 1000]}))
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["validate", str(path)], stdout=out, stderr=err) == 0, err.getvalue()


_NEAR_THE_LIMIT = """
import io, sys
from oauth_gateway import cli

path = sys.argv[1]

def deep(levels):
    if levels:
        return deep(levels - 1)
    codes = set()
    for _ in range(200):
        out, err = io.StringIO(), io.StringIO()
        codes.add((cli.main(["validate", path], stdout=out, stderr=err), err.getvalue()))
    return codes

codes = deep(sys.getrecursionlimit() - 80)
print(repr(sorted(codes)))
"""


def test_a_deep_file_cannot_take_the_interpreter_down_near_the_recursion_limit(tmp_path):
    # In a child process: if the interpreter aborts, this test fails instead of the run.
    import subprocess
    import sys

    path = tmp_path / "deep.json"
    path.write_bytes(b"[" * 100000)
    done = subprocess.run(
        [sys.executable, "-c", _NEAR_THE_LIMIT, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    expected = "oauth-gateway: error: %s is nested more than 64 arrays or objects deep (line 1, column 65)\n" % path
    assert done.stdout.strip() == repr([(2, expected)])
