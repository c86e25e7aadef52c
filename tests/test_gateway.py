from __future__ import annotations

import json
import logging
import os
import stat
import uuid

import pytest

from oauth_gateway import gateway
from oauth_gateway.config import OAuthConfig
from oauth_gateway.exceptions import ConfigError
from oauth_gateway.gateway import GatewayConfig, _write_json_atomic, add_server, load_gateway_config

DEFAULT_ID = "a0f1c2d3-0000-4000-8000-000000000001"
STAGING_ID = "b0f1c2d3-0000-4000-8000-000000000002"
SECRET = "s3cr3t-client-secret-value"
# GITHUB_TOKEN_URL passes the schema as a ${...} reference and fails once resolved.
ENVIRON = {"TEST_CLIENT_SECRET": SECRET, "GITHUB_TOKEN_URL": "http://idp.local/token"}

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


def at(config_id):
    """The JSON path of a config, as schema.py writes it (uuids are not identifiers)."""
    return "$.mcp_configs['%s']" % config_id


def oauth_block(**overrides):
    block = {
        "enabled": True,
        "is_remote": True,
        "OAUTH_VERSION": "2.1",
        "OAUTH_CLIENT_ID": "client-123",
        "OAUTH_CLIENT_SECRET": "${TEST_CLIENT_SECRET}",
        "OAUTH_TOKEN_URL": "https://auth.example.com/oauth/token",
        "OAUTH_AUDIENCE": "https://api.example.com",
    }
    block.update(overrides)
    return block


def server(name, command="npx", args=("-y", "mcp-remote", "https://api.example.com/mcp"), oauth=None):
    entry = {
        "server_name": name,
        "description": "%s server" % name,
        "config": {"command": command, "args": list(args), "env": {}},
    }
    if oauth is not None:
        entry["oauth_config"] = oauth
    return entry


def sample_document():
    return {
        "common_mcp_gateway_config": {"enkrypt_log_level": "INFO"},
        "mcp_configs": {
            DEFAULT_ID: {
                "mcp_config_name": "default_config",
                "mcp_config": [
                    server("oauth-api", oauth=oauth_block()),
                    server("filesystem", args=("-y", "@modelcontextprotocol/server-filesystem", "/tmp")),
                    server("disabled-api", oauth=oauth_block(enabled=False)),
                ],
            },
            STAGING_ID: {
                "mcp_config_name": "staging",
                "mcp_config": [
                    server("oauth-api", oauth=oauth_block(OAUTH_CLIENT_ID="staging-client")),
                    server("github", oauth=oauth_block(OAUTH_TOKEN_URL="${GITHUB_TOKEN_URL}")),
                ],
            },
        },
        "projects": {"p1": {"project_name": "demo", "mcp_config_id": DEFAULT_ID, "users": []}},
        "users": {"u1": {"email": "a@example.com"}},
        "apikeys": {"k1": {"project_id": "p1", "user_id": "u1"}},
        "plugins": {"guardrails": {"provider": "enkrypt"}},
    }


def write(path, document, mode=0o600):
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    os.chmod(str(path), mode)
    return path


@pytest.fixture
def config_file(tmp_path, monkeypatch):
    monkeypatch.delenv(gateway.CONFIG_PATH_ENV, raising=False)
    return write(tmp_path / "enkrypt_mcp_config.json", sample_document())


@pytest.fixture
def loaded(config_file):
    return load_gateway_config(str(config_file))


def mode_of(path):
    return stat.S_IMODE(os.stat(str(path)).st_mode)


def leftovers(directory):
    return sorted(name for name in os.listdir(str(directory)) if name.endswith(".tmp"))


# --- load_gateway_config --------------------------------------------------------------


def test_load_returns_the_document(config_file, loaded):
    assert loaded.path == str(config_file)
    assert loaded.data == sample_document()


def test_environment_variable_overrides_default(tmp_path, monkeypatch):
    target = write(tmp_path / "elsewhere.json", sample_document())
    monkeypatch.setenv("OAUTH_GATEWAY_CONFIG", str(target))
    assert load_gateway_config().path == str(target)


def test_explicit_path_beats_environment_variable(tmp_path, monkeypatch, config_file):
    monkeypatch.setenv("OAUTH_GATEWAY_CONFIG", str(tmp_path / "missing.json"))
    assert load_gateway_config(str(config_file)).path == str(config_file)


@posix_only
@pytest.mark.parametrize("env_value", [None, ""])
def test_default_path_is_under_home(tmp_path, monkeypatch, env_value):
    monkeypatch.setenv("HOME", str(tmp_path))
    if env_value is None:
        monkeypatch.delenv("OAUTH_GATEWAY_CONFIG", raising=False)
    else:
        monkeypatch.setenv("OAUTH_GATEWAY_CONFIG", env_value)
    (tmp_path / ".enkrypt").mkdir()
    target = write(tmp_path / ".enkrypt" / "enkrypt_mcp_config.json", sample_document())
    assert load_gateway_config().path == str(target)


def test_tilde_is_expanded(tmp_path, monkeypatch, config_file):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path))
    assert load_gateway_config("~/enkrypt_mcp_config.json").path == str(config_file)


def test_missing_file_names_file_and_fix(tmp_path, monkeypatch):
    missing = tmp_path / "nope.json"
    monkeypatch.setenv("OAUTH_GATEWAY_CONFIG", str(missing))
    with pytest.raises(ConfigError) as info:
        load_gateway_config()
    text = str(info.value)
    assert str(missing) in text and "does not exist" in text
    assert "$OAUTH_GATEWAY_CONFIG" in text
    assert "add-server" in info.value.hint and "OAUTH_GATEWAY_CONFIG" in info.value.hint


def test_directory_is_refused(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_gateway_config(str(tmp_path))
    assert str(tmp_path) in str(info.value) and "directory" in str(info.value)


def _as_unprivileged(body: str) -> None:
    """Run ``body`` in a child Python that file permissions apply to, even when the suite runs as root.

    As root, the child runs under util-linux's ``setpriv`` without the capabilities that
    bypass permission checks (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH). The body gets
    ``work`` (a fresh directory) and must raise on failure.
    """
    import shutil
    import subprocess
    import sys
    import tempfile
    import textwrap

    command = [sys.executable, "-c"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "running as root needs util-linux's setpriv to drop CAP_DAC_OVERRIDE for this test"
        command = [setpriv, "--bounding-set", "-dac_override,-dac_read_search"] + command
    work = tempfile.mkdtemp(prefix="oauth-gateway-perm-")
    try:
        script = "import os\nwork = %r\n%s" % (work, textwrap.dedent(body))
        result = subprocess.run(command + [script], capture_output=True, text=True, timeout=60, cwd=work)
        assert result.returncode == 0, result.stderr[-2000:]
    finally:
        shutil.rmtree(work, ignore_errors=True)


GATEWAY = '{"mcp_configs": {"abc": {"mcp_config_name": "default_config", "mcp_config": []}}}'


@posix_only
def test_unreadable_file():
    _as_unprivileged(
        """
        from oauth_gateway import ConfigError, load_gateway_config
        path = os.path.join(work, "enkrypt_mcp_config.json")
        with open(path, "w") as handle:
            handle.write(%r)
        os.chmod(path, 0)
        try:
            load_gateway_config(path)
        except ConfigError as exc:
            assert "permission denied" in str(exc) and path in str(exc), str(exc)
        else:
            raise AssertionError("an unreadable file loaded")
        """
        % GATEWAY
    )


def test_bad_json_gives_line_and_column_but_no_content(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "mcp_configs": {},\n  "OAUTH_CLIENT_SECRET": "hunter2-secret" "x"\n}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_gateway_config(str(bad))
    text = str(info.value)
    assert str(bad) in text
    assert "line 3, column 43" in text
    assert "hunter2" not in text
    assert info.value.hint


def test_not_utf8(tmp_path):
    bad = tmp_path / "latin1.json"
    bad.write_bytes(b'{"mcp_configs": {}, "x": "caf\xe9"}')
    with pytest.raises(ConfigError) as info:
        load_gateway_config(str(bad))
    assert "UTF-8" in str(info.value) and str(bad) in str(info.value)


def test_utf8_byte_order_mark_is_accepted(tmp_path):
    target = tmp_path / "bom.json"
    target.write_bytes(b"\xef\xbb\xbf" + json.dumps(sample_document()).encode("utf-8"))
    assert load_gateway_config(str(target)).data == sample_document()


def test_schema_problem_names_file_and_json_path(tmp_path):
    document = sample_document()
    document["mcp_configs"][DEFAULT_ID]["mcp_config"][1]["config"]["args"] = ["-y", 5]
    target = write(tmp_path / "invalid.json", document)
    with pytest.raises(ConfigError) as info:
        load_gateway_config(str(target))
    assert str(target) in str(info.value)
    assert info.value.json_path.startswith("%s.mcp_config[1]" % at(DEFAULT_ID))


def test_top_level_must_be_an_object(tmp_path):
    target = tmp_path / "list.json"
    target.write_text("[]", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_gateway_config(str(target))
    assert str(target) in str(info.value)
    assert info.value.json_path == "$"


@posix_only
def test_group_readable_file_is_loaded_with_a_warning(config_file, caplog):
    caplog.set_level(logging.WARNING, logger="oauth_gateway.gateway")
    load_gateway_config(str(config_file))
    assert not caplog.records
    os.chmod(str(config_file), 0o644)
    load_gateway_config(str(config_file))
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "0644" in message and "chmod 600" in message and str(config_file) in message


# --- GatewayConfig --------------------------------------------------------------------


def test_data_and_entries_are_copies(loaded):
    data = loaded.data
    data["mcp_configs"].clear()
    config_id, entry = loaded.find_server("filesystem")
    entry["config"]["args"].append("--evil")
    for _cid, item in loaded.iter_servers():
        item["server_name"] = "changed"
    assert loaded.data == sample_document()


def test_constructor_copies_its_input():
    document = sample_document()
    config = GatewayConfig(None, document)
    document["mcp_configs"].clear()
    assert config.data == sample_document()


def test_attributes_cannot_be_set(loaded):
    with pytest.raises(AttributeError):
        loaded.path = "/elsewhere"
    with pytest.raises(AttributeError):
        loaded._data = {}


def test_repr_shows_counts_not_secrets(tmp_path):
    document = sample_document()
    document["mcp_configs"][DEFAULT_ID]["mcp_config"][0]["oauth_config"]["OAUTH_CLIENT_SECRET"] = SECRET
    text = repr(GatewayConfig(None, document))
    assert SECRET not in text
    assert "configs=2" in text and "servers=5" in text


def test_iter_servers_in_file_order(loaded):
    pairs = [(cid, entry["server_name"]) for cid, entry in loaded.iter_servers()]
    assert pairs == [
        (DEFAULT_ID, "oauth-api"),
        (DEFAULT_ID, "filesystem"),
        (DEFAULT_ID, "disabled-api"),
        (STAGING_ID, "oauth-api"),
        (STAGING_ID, "github"),
    ]


def test_find_server_by_id_by_name_and_alone(loaded):
    _cid, staging = loaded.find_server("oauth-api", config_id=STAGING_ID)
    assert staging["oauth_config"]["OAUTH_CLIENT_ID"] == "staging-client"
    found_id, entry = loaded.find_server("oauth-api", config_name="default_config")
    assert found_id == DEFAULT_ID and entry["oauth_config"]["OAUTH_CLIENT_ID"] == "client-123"
    assert loaded.find_server("github")[0] == STAGING_ID
    assert loaded.find_server("github", config_id=STAGING_ID, config_name="staging")[0] == STAGING_ID


def test_ambiguous_server_name_lists_the_configs(loaded):
    with pytest.raises(ConfigError) as info:
        loaded.find_server("oauth-api")
    text = str(info.value)
    assert DEFAULT_ID in text and STAGING_ID in text
    assert "config_id" in info.value.hint


def test_duplicate_in_one_config_says_rename():
    document = sample_document()
    document["mcp_configs"][STAGING_ID]["mcp_config"].append(server("github"))
    with pytest.raises(ConfigError) as info:
        GatewayConfig(None, document).find_server("github", config_id=STAGING_ID)
    assert "rename or remove" in info.value.hint


def test_missing_server_suggests_close_names(loaded, config_file):
    with pytest.raises(ConfigError) as info:
        loaded.find_server("oauth-apj")
    error = info.value
    assert "did you mean 'oauth-api'" in error.hint
    assert "disabled-api" in error.hint and "github" in error.hint
    assert str(config_file) in str(error)


def test_missing_server_in_one_config_points_to_the_other(loaded):
    with pytest.raises(ConfigError) as info:
        loaded.find_server("github", config_name="default_config")
    error = info.value
    assert error.json_path == "%s.mcp_config" % at(DEFAULT_ID)
    assert "'staging'" in error.hint and "filesystem" in error.hint


def test_unknown_config_id_and_name_list_what_exists(loaded):
    with pytest.raises(ConfigError) as info:
        loaded.find_server("github", config_id="nope")
    assert DEFAULT_ID in info.value.hint and STAGING_ID in info.value.hint
    with pytest.raises(ConfigError) as info:
        loaded.find_server("github", config_name="stagign")
    assert "did you mean 'staging'" in info.value.hint
    assert "default_config" in info.value.hint


def test_config_id_and_name_must_agree(loaded):
    with pytest.raises(ConfigError) as info:
        loaded.find_server("github", config_id=STAGING_ID, config_name="default_config")
    assert info.value.json_path.endswith("mcp_config_name")


def test_empty_file_has_no_servers():
    with pytest.raises(ConfigError) as info:
        GatewayConfig(None, {}).find_server("x")
    assert "no servers" in info.value.hint


def test_oauth_config_is_resolved(loaded):
    config = loaded.oauth_config("oauth-api", config_name="default_config", environ=ENVIRON)
    assert isinstance(config, OAuthConfig)
    assert config.client_id == "client-123"
    assert config.client_secret == SECRET
    assert config.is_remote is True


def test_oauth_config_error_paths_point_into_the_file(loaded):
    with pytest.raises(ConfigError) as info:
        loaded.oauth_config("github", environ=ENVIRON)
    assert info.value.json_path == "%s.mcp_config[1].oauth_config.OAUTH_TOKEN_URL" % at(STAGING_ID)
    with pytest.raises(ConfigError) as info:
        loaded.oauth_config("oauth-api", config_id=DEFAULT_ID, environ={})
    assert info.value.json_path == "%s.mcp_config[0].oauth_config.OAUTH_CLIENT_SECRET" % at(DEFAULT_ID)
    assert "TEST_CLIENT_SECRET" in str(info.value)


def test_oauth_config_missing_or_disabled(loaded):
    with pytest.raises(ConfigError) as info:
        loaded.oauth_config("filesystem", environ=ENVIRON)
    assert info.value.json_path == "%s.mcp_config[1]" % at(DEFAULT_ID)
    assert "no oauth_config" in str(info.value)
    with pytest.raises(ConfigError) as info:
        loaded.oauth_config("disabled-api", environ=ENVIRON)
    assert info.value.json_path == "%s.mcp_config[2].oauth_config.enabled" % at(DEFAULT_ID)
    assert "true" in info.value.hint


def test_oauth_config_without_enabled_is_disabled():
    document = sample_document()
    del document["mcp_configs"][DEFAULT_ID]["mcp_config"][0]["oauth_config"]["enabled"]
    with pytest.raises(ConfigError) as info:
        GatewayConfig(None, document).oauth_config("oauth-api", DEFAULT_ID, environ=ENVIRON)
    assert info.value.json_path.endswith(".oauth_config.enabled")


@pytest.mark.parametrize(
    "config_id, path",
    [("prod_1", "$.mcp_configs.prod_1"), ("it's-odd", "$.mcp_configs['it\\'s-odd']")],
)
def test_config_id_in_paths_follows_the_schema_convention(config_id, path):
    document = sample_document()
    document["mcp_configs"] = {config_id: document["mcp_configs"][DEFAULT_ID]}
    with pytest.raises(ConfigError) as info:
        GatewayConfig(None, document).oauth_config("disabled-api", environ=ENVIRON)
    assert info.value.json_path == path + ".mcp_config[2].oauth_config.enabled"


@pytest.mark.parametrize(
    "layout, path",
    [
        ({"mcp_configs": []}, "$.mcp_configs"),
        ({"mcp_configs": {"c": "x"}}, "$.mcp_configs.c"),
        ({"mcp_configs": {"c": {"mcp_config": {}}}}, "$.mcp_configs.c.mcp_config"),
        ({"mcp_configs": {"c": {"mcp_config": ["x"]}}}, "$.mcp_configs.c.mcp_config[0]"),
    ],
)
def test_misshapen_layout_is_refused(layout, path):
    with pytest.raises(ConfigError) as info:
        GatewayConfig(None, layout)
    assert info.value.json_path == path


# --- add_server -----------------------------------------------------------------------


def test_add_server_creates_file_and_directory(tmp_path):
    target = tmp_path / "new-dir" / "enkrypt_mcp_config.json"
    config_id = add_server(
        str(target),
        server_name="oauth-api",
        command="npx",
        args=["-y", "mcp-remote", "https://api.example.com/mcp"],
        description="remote",
        oauth_config=oauth_block(),
    )
    assert uuid.UUID(config_id).version == 4
    if os.name == "posix":
        assert mode_of(target) == 0o600
        assert mode_of(target.parent) == 0o700
    assert not (tmp_path / "new-dir" / "enkrypt_mcp_config.json.bak").exists()
    loaded = load_gateway_config(str(target))
    found_id, entry = loaded.find_server("oauth-api", config_name="default_config")
    assert found_id == config_id
    assert entry == {
        "server_name": "oauth-api",
        "description": "remote",
        "config": {"command": "npx", "args": ["-y", "mcp-remote", "https://api.example.com/mcp"], "env": {}},
        "oauth_config": oauth_block(),
    }
    assert leftovers(target.parent) == []


def test_add_server_keeps_everything_else_and_backs_up(config_file):
    os.chmod(str(config_file), 0o644)
    before = config_file.read_bytes()
    config_id = add_server(
        str(config_file), server_name="fetch", command="uvx", args=("mcp-server-fetch",), env={"LOG": "1"}
    )
    assert config_id == DEFAULT_ID
    after = json.loads(config_file.read_text(encoding="utf-8"))
    expected = sample_document()
    expected["mcp_configs"][DEFAULT_ID]["mcp_config"].append(
        {
            "server_name": "fetch",
            "description": "",
            "config": {"command": "uvx", "args": ["mcp-server-fetch"], "env": {"LOG": "1"}},
        }
    )
    assert after == expected
    backup = config_file.parent / (config_file.name + ".bak")
    assert backup.read_bytes() == before
    if os.name == "posix":
        assert mode_of(config_file) == 0o600
        assert mode_of(backup) == 0o600
    assert leftovers(config_file.parent) == []


def test_add_server_by_config_name_and_id(config_file):
    assert add_server(str(config_file), config_name="staging", server_name="a", command="python") == STAGING_ID
    assert add_server(str(config_file), config_id=STAGING_ID, server_name="b", command="python") == STAGING_ID
    loaded = load_gateway_config(str(config_file))
    assert loaded.find_server("a")[0] == STAGING_ID and loaded.find_server("b")[0] == STAGING_ID


def test_add_server_to_the_only_config_when_none_is_default(tmp_path):
    document = sample_document()
    del document["mcp_configs"][DEFAULT_ID]
    target = write(tmp_path / "c.json", document)
    assert add_server(str(target), server_name="x", command="python") == STAGING_ID


def test_add_server_needs_a_name_when_no_default_and_several(tmp_path):
    document = sample_document()
    document["mcp_configs"][DEFAULT_ID]["mcp_config_name"] = "prod"
    target = write(tmp_path / "c.json", document)
    before = target.read_bytes()
    with pytest.raises(ConfigError) as info:
        add_server(str(target), server_name="x", command="python")
    assert "prod" in info.value.hint and "staging" in info.value.hint
    assert target.read_bytes() == before


def test_add_server_uses_environment_variable_path(tmp_path, monkeypatch):
    target = tmp_path / "via-env.json"
    monkeypatch.setenv("OAUTH_GATEWAY_CONFIG", str(target))
    add_server(None, server_name="x", command="python")
    assert load_gateway_config().find_server("x")[1]["config"]["command"] == "python"


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"server_name": "filesystem"}, "server_name"),
        ({"config_name": "defualt_config"}, None),
        ({"config_id": "missing-id"}, None),
        ({"args": "-y mcp-remote"}, "args"),
        ({"args": ["-y", 1]}, "args[1]"),
        ({"env": {"PORT": 8080}}, "env.PORT"),
        ({"env": ["A=1"]}, "env"),
        ({"command": ""}, "command"),
        ({"server_name": ""}, "server_name"),
        ({"description": None}, "description"),
        ({"oauth_config": "on"}, "oauth_config"),
        ({"oauth_config": oauth_block(OAUTH_VERSION="3.0")}, "oauth_config"),
    ],
)
def test_add_server_refusals_write_nothing(config_file, kwargs, field):
    before = config_file.read_bytes()
    arguments = {"server_name": "new-one", "command": "python", "args": ["server.py"]}
    arguments.update(kwargs)
    with pytest.raises(ConfigError) as info:
        add_server(str(config_file), **arguments)
    assert config_file.read_bytes() == before
    assert not (config_file.parent / (config_file.name + ".bak")).exists()
    assert leftovers(config_file.parent) == []
    if field:
        assert field in info.value.json_path
    else:
        assert str(config_file) in str(info.value)


def test_duplicate_server_has_a_hint(config_file):
    with pytest.raises(ConfigError) as info:
        add_server(str(config_file), config_name="default_config", server_name="filesystem", command="x")
    assert info.value.json_path == "%s.mcp_config[1].server_name" % at(DEFAULT_ID)
    assert "another server name" in info.value.hint


def test_unknown_config_name_lists_existing_names(config_file):
    with pytest.raises(ConfigError) as info:
        add_server(str(config_file), config_name="defualt_config", server_name="x", command="x")
    assert "did you mean 'default_config'" in info.value.hint and "staging" in info.value.hint


def test_duplicate_config_names_need_an_id(tmp_path):
    document = sample_document()
    document["mcp_configs"][STAGING_ID]["mcp_config_name"] = "default_config"
    target = write(tmp_path / "c.json", document)
    with pytest.raises(ConfigError) as info:
        add_server(str(target), server_name="x", command="x")
    assert "config_id" in info.value.hint


@pytest.mark.parametrize("kwargs", [{"config_name": "other"}, {"config_id": "some-id"}])
def test_empty_file_only_gets_default_config(tmp_path, kwargs):
    target = tmp_path / "fresh.json"
    with pytest.raises(ConfigError) as info:
        add_server(str(target), server_name="x", command="x", **kwargs)
    assert "default_config" in info.value.hint
    assert not target.exists()


def test_existing_file_without_configs_gets_default_config(tmp_path):
    target = write(tmp_path / "c.json", {"common_mcp_gateway_config": {"enkrypt_log_level": "INFO"}})
    config_id = add_server(str(target), config_name="default_config", server_name="x", command="python")
    data = load_gateway_config(str(target)).data
    assert data["common_mcp_gateway_config"] == {"enkrypt_log_level": "INFO"}
    assert data["mcp_configs"][config_id]["mcp_config_name"] == "default_config"


def test_bad_json_is_never_overwritten(tmp_path):
    target = tmp_path / "bad.json"
    target.write_text('{"mcp_configs": {', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        add_server(str(target), server_name="x", command="python")
    assert "line 1" in str(info.value)
    assert target.read_text(encoding="utf-8") == '{"mcp_configs": {'


@posix_only
def _add_one(path, index, barrier):
    barrier.wait()  # every process reads the file at about the same moment
    add_server(path, server_name="s%02d" % index, command="npx", args=["-y", "mcp-remote", "https://a/%d" % index])


def test_sixteen_concurrent_processes_adding_servers_all_land(tmp_path):
    import multiprocessing

    path = str(tmp_path / "enkrypt_mcp_config.json")
    add_server(path, server_name="first", command="npx")
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(16)
    workers = [context.Process(target=_add_one, args=(path, i, barrier)) for i in range(16)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0] * 16
    (config,) = load_gateway_config(path).data["mcp_configs"].values()
    names = sorted(entry["server_name"] for entry in config["mcp_config"])
    assert names == ["first"] + ["s%02d" % i for i in range(16)]
    assert stat.S_IMODE(os.stat(path + gateway._LOCK_SUFFIX).st_mode) == 0o600


@pytest.mark.skipif(os.name != "posix", reason="POSIX owners")
def test_root_editing_a_users_file_keeps_its_owner_and_group(tmp_path):
    path = str(tmp_path / "enkrypt_mcp_config.json")
    add_server(path, server_name="first", command="npx")
    if os.geteuid() != 0:  # only root can give files away; a user's own file stays the user's
        add_server(path, server_name="second", command="npx")
        assert os.stat(path).st_uid == os.geteuid()
        return
    os.chown(path, 4242, 4343)
    add_server(path, server_name="second", command="npx")
    for written in (path, path + gateway._BACKUP_SUFFIX, path + gateway._LOCK_SUFFIX):
        info = os.stat(written)
        assert (info.st_uid, info.st_gid) == (4242, 4343), written
    assert mode_of(path) == 0o600
    assert [s["server_name"] for s in load_gateway_config(path).data["mcp_configs"].popitem()[1]["mcp_config"]] == [
        "first",
        "second",
    ]


def test_symlinked_file_is_updated_at_its_target(config_file, tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to(config_file)
    add_server(str(link), server_name="x", command="python")
    assert link.is_symlink()
    assert load_gateway_config(str(config_file)).find_server("x")[0] == DEFAULT_ID


# --- failures midway ------------------------------------------------------------------


def test_unserialisable_document_touches_nothing(config_file):
    before = config_file.read_bytes()
    with pytest.raises(TypeError):
        _write_json_atomic(str(config_file), {"x": object()})
    assert config_file.read_bytes() == before
    assert not (config_file.parent / (config_file.name + ".bak")).exists()
    assert leftovers(config_file.parent) == []


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failure_on_the_main_write_keeps_the_original(config_file, monkeypatch, failing):
    before = config_file.read_bytes()
    real = getattr(os, failing)
    calls = []

    def fail_second_time(*args):
        calls.append(args)
        if len(calls) == 2:  # the first call finishes the backup, the second the file itself
            raise OSError(5, "Input/output error")
        return real(*args)

    monkeypatch.setattr(os, failing, fail_second_time)
    with pytest.raises(ConfigError) as info:
        add_server(str(config_file), server_name="x", command="python")
    monkeypatch.setattr(os, failing, real)
    assert "Input/output error" in str(info.value) and str(config_file) in str(info.value)
    assert "unchanged" in info.value.hint
    assert config_file.read_bytes() == before
    assert (config_file.parent / (config_file.name + ".bak")).read_bytes() == before
    assert leftovers(config_file.parent) == []


@posix_only
def test_read_only_directory_keeps_the_original():
    _as_unprivileged(
        """
        from oauth_gateway import ConfigError
        from oauth_gateway.gateway import add_server
        folder = os.path.join(work, "conf")
        os.mkdir(folder, 0o700)
        path = os.path.join(folder, "enkrypt_mcp_config.json")
        with open(path, "w") as handle:
            handle.write(%r)
        os.chmod(path, 0o600)
        before = open(path, "rb").read()
        os.chmod(folder, 0o500)
        try:
            add_server(path, server_name="x", command="python")
        except ConfigError:
            pass
        else:
            raise AssertionError("a read-only directory was written to")
        finally:
            os.chmod(folder, 0o700)
        assert open(path, "rb").read() == before
        assert sorted(os.listdir(folder)) == ["enkrypt_mcp_config.json"], os.listdir(folder)
        """
        % GATEWAY
    )


def test_write_json_atomic_mode_and_no_backup(tmp_path):
    target = tmp_path / "other.json"
    _write_json_atomic(str(target), {"a": 1}, mode=0o640)
    _write_json_atomic(str(target), {"a": 2}, mode=0o640, backup=False)
    assert json.loads(target.read_text(encoding="utf-8")) == {"a": 2}
    assert not (tmp_path / "other.json.bak").exists()
    if os.name == "posix":
        assert mode_of(target) == 0o640
    _write_json_atomic(str(target), {"a": 3}, mode=0o640)
    assert json.loads((tmp_path / "other.json.bak").read_text(encoding="utf-8")) == {"a": 2}


def test_write_json_atomic_keeps_unicode_readable(tmp_path):
    target = tmp_path / "u.json"
    _write_json_atomic(str(target), {"description": "café"})
    assert "café" in target.read_text(encoding="utf-8")
    assert json.loads(target.read_text(encoding="utf-8")) == {"description": "café"}
