from __future__ import annotations

import copy
import json
import logging
import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oauth_gateway import injection
from oauth_gateway.exceptions import ConfigError
from oauth_gateway.injection import inject_token, is_remote_server
from oauth_gateway.tokens import Token

TOKEN = Token("tok-s3cr3t-value-1234", "Bearer", expires_in=3600, issued_at=0.0)
LOGGER = "oauth_gateway.injection"


def entry(command, args=(), env=None, oauth=None, name="srv"):
    config = {"command": command, "args": list(args)}
    if env is not None:
        config["env"] = env
    result = {"server_name": name, "description": "", "config": config}
    if oauth is not None:
        result["oauth_config"] = oauth
    return result


def frozen(value):
    """A byte-exact snapshot, so any change to a nested list or dict is caught."""
    return json.dumps(value, sort_keys=True)


@pytest.fixture(autouse=True)
def _fresh_log_memory():
    with injection._LOGGED_LOCK:
        injection._LOGGED.clear()
    yield


# --- detection ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command, args, expected",
    [
        ("npx", ["-y", "mcp-remote", "https://api.example.com/mcp"], True),
        ("npx", ["-y", "mcp-remote@0.1.29", "https://api.example.com/mcp"], True),
        ("npx", ["mcp-remote@latest", "https://api.example.com/mcp"], True),
        ("/usr/local/bin/mcp-remote", ["https://api.example.com/mcp"], True),
        ("node", ["/opt/bin/mcp-remote", "https://api.example.com/mcp"], True),
        ("mcp-remote", ["https://api.example.com/mcp"], True),
        ("C:\\Program Files\\nodejs\\mcp-remote.cmd", ["https://api.example.com/mcp"], True),
        ("cmd", ["/c", "npx", "-y", "MCP-Remote", "https://api.example.com/mcp"], True),
        ("curl", ["-sN", "https://api.example.com/sse"], True),
        ("/usr/bin/curl", ["https://api.example.com/sse"], True),
        ("npx", ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"], False),
        ("npx", [], False),
        ("python", ["server.py", "--port", "8000"], False),
        ("uvx", ["mcp-server-fetch"], False),
        ("uv", ["run", "server.py"], False),
        # An http(s) URL given to a program other than mcp-remote/curl stays local:
        # env vars never break a program, an unexpected --header argument could.
        ("python", ["proxy.py", "https://api.example.com/mcp"], False),
        ("uvx", ["mcp-proxy", "https://api.example.com/sse"], False),
        # A URL whose path ends in mcp-remote is not the mcp-remote program.
        ("python", ["proxy.py", "https://example.com/mcp-remote"], False),
        ("npx", ["-y", "mcp-remote-client"], False),
        ("python", ["curly.py"], False),
    ],
)
def test_auto_detection(command, args, expected):
    assert is_remote_server(entry(command, args)) is expected


@pytest.mark.parametrize("explicit", [True, False])
def test_explicit_is_remote_wins_over_detection(explicit):
    remote_looking = entry("npx", ["-y", "mcp-remote", "https://x/mcp"], oauth={"is_remote": explicit})
    local_looking = entry("python", ["server.py"], oauth={"is_remote": explicit})
    assert is_remote_server(remote_looking) is explicit
    assert is_remote_server(local_looking) is explicit


@pytest.mark.parametrize("value", [None, "true", 1, 0, "false"])
def test_non_boolean_is_remote_falls_back_to_detection(value):
    assert is_remote_server(entry("npx", ["mcp-remote", "https://x/mcp"], oauth={"is_remote": value})) is True
    assert is_remote_server(entry("python", ["s.py"], oauth={"is_remote": value}, name="other")) is False


def test_auto_detection_logged_once_per_server_at_info(caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    remote = entry("npx", ["-y", "mcp-remote", "https://x/mcp"], name="api")
    for _ in range(3):
        is_remote_server(remote)
    inject_token(remote, TOKEN)
    is_remote_server(entry("python", ["s.py"], name="local-one"))
    records = [r for r in caplog.records if r.name == LOGGER]
    assert [r.levelno for r in records] == [logging.INFO, logging.INFO]
    first, second = (r.getMessage() for r in records)
    assert "'api'" in first and "remote" in first and "is_remote" in first
    assert "'local-one'" in second and "local" in second
    assert TOKEN.access_token not in first + second


def test_explicit_is_remote_is_not_logged(caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    is_remote_server(entry("npx", ["mcp-remote", "https://x/mcp"], oauth={"is_remote": True}))
    assert [r for r in caplog.records if r.name == LOGGER] == []


def test_log_mentions_a_non_boolean_is_remote(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    is_remote_server(entry("python", ["s.py"], oauth={"is_remote": "yes"}))
    assert "not a boolean" in caplog.records[-1].getMessage()


# --- remote injection -----------------------------------------------------------------


def header_pairs(args):
    """Header values as mcp-remote reads them: ``--header`` consumes the next argument."""
    pairs = []
    i = 0
    while i < len(args):
        if args[i] == "--header" and i + 1 < len(args):
            pairs.append(args[i + 1])
            i += 2
            continue
        if args[i].startswith("--header="):
            pairs.append(args[i][len("--header=") :])
        i += 1
    return pairs


def test_remote_gets_header_arg_and_env_only():
    original = entry("npx", ["-y", "mcp-remote", "https://api.example.com/mcp"], env={"KEEP": "1"})
    result = inject_token(original, TOKEN)
    args = result["config"]["args"]
    assert args == ["-y", "mcp-remote", "https://api.example.com/mcp", "--header", "Authorization:${AUTH_HEADER}"]
    assert result["config"]["env"] == {"KEEP": "1", "AUTH_HEADER": "Bearer tok-s3cr3t-value-1234"}
    assert all(TOKEN.access_token not in arg for arg in args)


@pytest.mark.parametrize(
    "existing",
    [
        ["--header", "Authorization: Bearer stale"],
        ["--header", "authorization:Bearer stale"],
        ["--header", " AUTHORIZATION : Bearer stale"],
        ["--header=Authorization:Bearer stale"],
        ["--header=authorization: Bearer stale"],
        ["--header", "Authorization:${AUTH_HEADER}"],
        ["--header", "Authorization: a", "--header=Authorization: b"],
    ],
)
def test_existing_authorization_header_is_replaced_not_duplicated(existing):
    args = ["-y", "mcp-remote", "https://x/mcp", "--header", "X-Trace: 1"] + existing + ["--header=X-Other:2"]
    result = inject_token(entry("npx", args, oauth={"is_remote": True}), TOKEN)
    new_args = result["config"]["args"]
    assert header_pairs(new_args) == ["X-Trace: 1", "X-Other:2", "Authorization:${AUTH_HEADER}"]
    assert "stale" not in " ".join(new_args)
    assert new_args[:3] == ["-y", "mcp-remote", "https://x/mcp"]


def test_dangling_header_option_is_dropped():
    result = inject_token(entry("mcp-remote", ["https://x/mcp", "--header"]), TOKEN)
    assert result["config"]["args"] == ["https://x/mcp", "--header", "Authorization:${AUTH_HEADER}"]


def test_remote_overwrites_stale_auth_header_env():
    original = entry("npx", ["mcp-remote", "https://x/mcp"], env={"AUTH_HEADER": "Bearer old"})
    assert inject_token(original, TOKEN)["config"]["env"]["AUTH_HEADER"] == "Bearer tok-s3cr3t-value-1234"


def test_injecting_twice_is_stable():
    once = inject_token(entry("npx", ["mcp-remote", "https://x/mcp"]), TOKEN)
    newer = Token("tok-newer-value-5678", "Bearer", expires_in=3600, issued_at=0.0)
    twice = inject_token(once, newer)
    assert header_pairs(twice["config"]["args"]) == ["Authorization:${AUTH_HEADER}"]
    assert twice["config"]["env"]["AUTH_HEADER"] == "Bearer tok-newer-value-5678"


# --- local injection ------------------------------------------------------------------

EXPECTED_LOCAL_ENV = {
    "ENKRYPT_ACCESS_TOKEN": "tok-s3cr3t-value-1234",
    "AUTHORIZATION": "Bearer tok-s3cr3t-value-1234",
    "OAUTH_ACCESS_TOKEN": "tok-s3cr3t-value-1234",
    "OAUTH_TOKEN_TYPE": "Bearer",
    "HTTP_HEADER_Authorization": "Bearer tok-s3cr3t-value-1234",
    "HTTP_HEADER_AUTHORIZATION": "Bearer tok-s3cr3t-value-1234",
    "AUTH_HEADER": "Bearer tok-s3cr3t-value-1234",
}


def test_local_gets_every_seed_variable_and_args_untouched():
    args = ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]
    result = inject_token(entry("npx", args, env={"HOME_DIR": "/h"}), TOKEN)
    assert result["config"]["args"] == args
    assert result["config"]["env"] == dict(EXPECTED_LOCAL_ENV, HOME_DIR="/h")


def test_local_overwrites_stale_values():
    stale = {name: "stale" for name in EXPECTED_LOCAL_ENV}
    result = inject_token(entry("python", ["server.py"], env=stale), TOKEN)
    assert result["config"]["env"] == EXPECTED_LOCAL_ENV


def test_local_variable_names_come_from_the_module_constants():
    names = [name for name, _ in injection.LOCAL_ENV_VARS]
    assert sorted(names) == sorted(EXPECTED_LOCAL_ENV)
    assert injection._ENV_AUTH_HEADER in names


def test_missing_or_null_args_and_env_are_written_empty_then_filled():
    bare = {"server_name": "s", "config": {"command": "python", "args": None, "env": None}}
    result = inject_token(bare, TOKEN)
    assert result["config"]["args"] == []
    assert result["config"]["env"] == EXPECTED_LOCAL_ENV
    only_command = {"server_name": "t", "config": {"command": "python"}}
    assert inject_token(only_command, TOKEN)["config"]["env"] == EXPECTED_LOCAL_ENV


# --- purity ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "original",
    [
        entry("npx", ["-y", "mcp-remote", "https://x/mcp", "--header", "Authorization: old"], env={"A": "1"}),
        entry("python", ["server.py"], env={"AUTH_HEADER": "old"}, oauth={"enabled": True, "is_remote": False}),
    ],
)
def test_input_is_not_mutated_and_result_shares_nothing(original):
    before = frozen(original)
    result = inject_token(original, TOKEN)
    assert frozen(original) == before
    assert result is not original
    assert result["config"] is not original["config"]
    assert result["config"]["args"] is not original["config"]["args"]
    assert result["config"]["env"] is not original["config"]["env"]
    result["config"]["env"]["MUTATED"] = "x"
    assert "MUTATED" not in original["config"]["env"]


def test_other_keys_are_copied_deeply():
    original = entry("python", ["s.py"], oauth={"enabled": True, "OAUTH_CUSTOM_HEADERS": {"X": "1"}})
    original["tools"] = {"read": {"enabled": True}}
    result = inject_token(original, TOKEN)
    assert result["tools"] == {"read": {"enabled": True}}
    assert result["tools"] is not original["tools"]
    assert result["oauth_config"] == original["oauth_config"]


# --- malformed entries ----------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, path",
    [
        ([], "$"),
        ({"server_name": "s"}, "$.config"),
        ({"config": "npx"}, "$.config"),
        ({"config": {"args": []}}, "$.config.command"),
        ({"config": {"command": 3}}, "$.config.command"),
        ({"config": {"command": "npx", "args": "-y mcp-remote"}}, "$.config.args"),
        ({"config": {"command": "npx", "args": ["-y", 1]}}, "$.config.args[1]"),
        ({"config": {"command": "npx", "env": ["A=1"]}}, "$.config.env"),
        ({"config": {"command": "npx", "env": {"PORT": 8080}}}, "$.config.env.PORT"),
        ({"config": {"command": "npx", "env": {"A": None}}}, "$.config.env.A"),
        ({"config": {"command": "npx"}, "oauth_config": "yes"}, "$.oauth_config"),
    ],
)
def test_malformed_entry_names_the_field(bad, path):
    with pytest.raises(ConfigError) as info:
        inject_token(bad, TOKEN)
    assert info.value.json_path == path
    assert info.value.hint
    with pytest.raises(ConfigError):
        is_remote_server(bad)


def test_error_path_uses_the_callers_prefix():
    with pytest.raises(ConfigError) as info:
        inject_token({"config": {"command": "x", "args": [1]}}, TOKEN, json_path="$.mcp_configs.c.mcp_config[2]")
    assert info.value.json_path == "$.mcp_configs.c.mcp_config[2].config.args[0]"


def test_error_message_never_contains_an_env_value():
    secret = "very-secret-api-key"
    with pytest.raises(ConfigError) as info:
        inject_token({"config": {"command": "x", "env": {"KEY": secret, "N": 1}}}, TOKEN)
    assert secret not in str(info.value)


@pytest.mark.parametrize("not_a_token", ["tok-raw-string", None, {"access_token": "tok-x"}])
def test_token_must_be_a_token(not_a_token):
    with pytest.raises(TypeError) as info:
        inject_token(entry("python", ["s.py"]), not_a_token)
    assert "tok-" not in str(info.value)


# --- curl: -H @file, never the token in argv ------------------------------------------


def test_curl_is_refused_by_inject_token_instead_of_sending_no_credentials():
    # curl does not expand ${AUTH_HEADER}: the seed's form sent that text as the header.
    candidate = entry("curl", ["-s", "https://api.example.com/sse"])
    with pytest.raises(ConfigError) as info:
        inject_token(candidate, TOKEN, json_path="$.mcp_config[0]")
    assert info.value.json_path == "$.mcp_config[0].config"
    assert "runs curl, which cannot expand ${AUTH_HEADER}" in str(info.value)
    assert "injected_entry" in info.value.hint
    assert TOKEN.access_token not in str(info.value)


def test_curl_sends_the_token_from_a_private_header_file(auth_server, ca_bundle, tmp_path):
    import shutil
    import subprocess

    from oauth_gateway.injection import _injected_entry

    curl = shutil.which("curl")
    assert curl, "the test needs curl on PATH"
    stale = ["-H", "Authorization: Bearer stale", "-HAuthorization:x", "--header", "authorization: y"]
    candidate = entry(curl, ["-s", "-o", os.devnull, "--cacert", ca_bundle, "-H", "X-Kept: 1"] + stale)
    candidate["config"]["args"].append(auth_server.url + "/mcp")
    before = frozen(candidate)
    with _injected_entry(candidate, TOKEN, directory=str(tmp_path)) as launch:
        args = launch["config"]["args"]
        assert all(TOKEN.access_token not in arg for arg in args)
        assert TOKEN.access_token not in json.dumps(launch["config"]["env"])
        assert args[:8] == ["-s", "-o", os.devnull, "--cacert", ca_bundle, "-H", "X-Kept: 1", auth_server.url + "/mcp"]
        option, reference = args[-2:]
        assert option == "-H" and reference.startswith("@")
        header_file = reference[1:]
        assert stat.S_IMODE(os.stat(header_file).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(header_file)).st_mode) == 0o700
        done = subprocess.run([launch["config"]["command"]] + args, timeout=30)
    assert done.returncode == 0
    assert frozen(candidate) == before
    assert not os.path.exists(os.path.dirname(header_file))
    (request,) = auth_server.requests_to("/mcp")
    assert request.headers["Authorization"] == TOKEN.authorization
    assert request.headers["X-Kept"] == "1"
    assert [name for name in request.headers if name.lower() == "authorization"] == ["Authorization"]


def test_injected_entry_removes_the_header_file_on_an_error_and_is_inject_token_otherwise(tmp_path):
    from oauth_gateway.injection import _injected_entry

    with pytest.raises(RuntimeError):
        with _injected_entry(entry("curl", ["https://x"]), TOKEN, directory=str(tmp_path)):
            assert len(os.listdir(str(tmp_path))) == 1
            raise RuntimeError("launch failed")
    assert os.listdir(str(tmp_path)) == []
    for other in (entry("npx", ["mcp-remote", "https://x"]), entry("python", ["s.py"])):
        with _injected_entry(other, TOKEN, directory=str(tmp_path)) as launch:
            assert launch == inject_token(other, TOKEN)
    assert os.listdir(str(tmp_path)) == []


# --- property: any shape gives a new entry or ConfigError -----------------------------

_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12))
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)
_arg = st.one_of(
    st.sampled_from(
        [
            "mcp-remote",
            "mcp-remote@1.2",
            "curl",
            "-y",
            "--header",
            "--header=Authorization:x",
            "Authorization: Bearer old",
            "https://x/mcp",
            "server.py",
        ]
    ),
    st.text(max_size=10),
    _json,
)
_args = st.one_of(st.none(), st.lists(_arg, max_size=6), _json)
_env = st.one_of(
    st.none(), st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=8), _json), max_size=4), _json
)
_config = st.one_of(
    _json,
    st.fixed_dictionaries(
        {"command": st.one_of(st.sampled_from(["npx", "curl", "mcp-remote", "python"]), _json)},
        optional={"args": _args, "env": _env},
    ),
)
_oauth = st.one_of(_json, st.fixed_dictionaries({}, optional={"is_remote": st.one_of(st.booleans(), _json)}))
_entries = st.one_of(
    _json,
    st.fixed_dictionaries({}, optional={"server_name": _json, "config": _config, "oauth_config": _oauth}),
)


@settings(max_examples=400, deadline=None)
@given(_entries)
def test_random_entries_give_a_new_entry_or_config_error(candidate):
    before = copy.deepcopy(candidate)
    try:
        result = inject_token(candidate, TOKEN)
    except ConfigError as error:
        assert TOKEN.access_token not in str(error)
        assert candidate == before
        return
    assert candidate == before
    assert isinstance(result, dict) and result is not candidate
    args, env = result["config"]["args"], result["config"]["env"]
    assert isinstance(args, list) and all(isinstance(a, str) for a in args)
    assert isinstance(env, dict) and all(isinstance(v, str) for v in env.values())
    assert all(TOKEN.access_token not in a for a in args)
    assert env["AUTH_HEADER"] == TOKEN.authorization
    if is_remote_server(candidate):
        assert header_pairs(args).count("Authorization:${AUTH_HEADER}") == 1
        assert [h for h in header_pairs(args) if h.split(":")[0].strip().lower() == "authorization"] == [
            "Authorization:${AUTH_HEADER}"
        ]
    else:
        assert env["ENKRYPT_ACCESS_TOKEN"] == TOKEN.access_token
