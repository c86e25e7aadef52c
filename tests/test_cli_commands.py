"""`oauth-gateway token`, `revoke`, `config add-server` and `demo` against real servers."""

from __future__ import annotations

import io
import json
import os
import re
import stat

import pytest

from oauth_gateway import cli
from servers import Fault


def run(*argv, stdin=None, monkeypatch=None):
    out, err = io.StringIO(), io.StringIO()
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = cli.main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def gateway_file(tmp_path, auth_server, make_block):
    path = tmp_path / "enkrypt_mcp_config.json"
    document = {
        "mcp_configs": {
            "abc-123": {
                "mcp_config_name": "default_config",
                "mcp_config": [
                    {
                        "server_name": "oauth-api",
                        "config": {"command": "npx", "args": ["-y", "mcp-remote", "https://api.example.com/mcp"]},
                        "oauth_config": make_block(auth_server, OAUTH_SCOPE="read write"),
                    }
                ],
            }
        }
    }
    path.write_text(json.dumps(document))
    os.chmod(str(path), 0o600)
    return str(path)


def test_token_prints_it_masked(gateway_file, auth_server):
    code, out, err = run("token", "oauth-api", "--config", gateway_file)
    assert code == 0, err
    assert out.startswith("server: oauth-api\nconfig_id: abc-123\naccess_token: ")
    assert "token_type: Bearer\nscopes: read write\nexpires_in: 3" in out
    (token,) = auth_server.issued
    assert token not in out and token not in err


def test_token_show_prints_only_the_token(gateway_file, auth_server):
    code, out, _ = run("token", "oauth-api", "--config", gateway_file, "--config-name", "default_config", "--show")
    assert code == 0
    assert out.strip() in auth_server.issued
    assert out.count("\n") == 1


def test_token_json_output(gateway_file, auth_server):
    code, out, _ = run("token", "oauth-api", "--config", gateway_file, "--output", "json")
    row = json.loads(out)
    assert code == 0
    assert (row["server"], row["config_id"], row["token_type"], row["scopes"]) == (
        "oauth-api",
        "abc-123",
        "Bearer",
        ["read", "write"],
    )
    assert 3590 <= row["expires_in"] <= 3600
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", row["expires_at"])
    assert list(row) == ["server", "config_id", "access_token", "token_type", "scopes", "expires_in", "expires_at"]


def test_token_refused_by_the_server_exits_1(gateway_file, auth_server):
    auth_server.set_faults([Fault(status=401, json={"error": "invalid_client"})])
    code, out, err = run("token", "oauth-api", "--config", gateway_file)
    assert code == 1
    assert "OAuth token request failed: invalid_client" in err
    assert out == ""


def test_token_for_an_unknown_server_exits_2(gateway_file):
    code, _, err = run("token", "oauth-apj", "--config", gateway_file)
    assert code == 2
    assert "oauth-api" in err  # the did-you-mean lists what exists


def test_revoke_reads_the_token_from_stdin(gateway_file, auth_server, monkeypatch):
    _, token, _ = run("token", "oauth-api", "--config", gateway_file, "--show")
    code, out, err = run(
        "revoke", "oauth-api", "--config", gateway_file, "--token-stdin", stdin=token, monkeypatch=monkeypatch
    )
    assert code == 0, err
    assert token.strip() in auth_server.revoked
    assert "revoked the token for oauth-api" in out
    request = auth_server.requests[-1]
    assert request.path == "/revoke" and request.form["token_type_hint"] == ["access_token"]


def test_revoke_refuses_a_token_on_the_command_line(gateway_file):
    code, _, err = run("revoke", "oauth-api", "--config", gateway_file)
    assert code == 2
    assert "--token-stdin" in err


def test_add_server_then_validate_passes(tmp_path, auth_server, make_block):
    path = str(tmp_path / "new" / "enkrypt_mcp_config.json")
    oauth_json = tmp_path / "oauth.json"
    oauth_json.write_text(json.dumps(make_block(auth_server)))
    code, out, err = run(
        "config",
        "add-server",
        "--config",
        path,
        "--config-name",
        "default_config",
        "--server-name",
        "oauth-api",
        "--server-command",
        "npx",
        "--args=-y,mcp-remote,https://api.example.com/mcp",
        "--env",
        '{"LOG_LEVEL": "debug"}',
        "--description",
        "OAuth-protected remote server",
        "--oauth-json",
        str(oauth_json),
    )
    assert code == 0, err
    assert "added server 'oauth-api'" in out
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    document = json.loads(open(path).read())
    (config,) = document["mcp_configs"].values()
    entry = config["mcp_config"][0]
    assert entry["config"]["args"] == ["-y", "mcp-remote", "https://api.example.com/mcp"]
    assert entry["config"]["env"] == {"LOG_LEVEL": "debug"}
    assert run("validate", path)[0] == 0
    code, out, _ = run("token", "oauth-api", "--config", path)
    assert code == 0 and "Bearer" in out


ENV_SECRET = "Zq7-env-file-secret-0042"


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_add_server_takes_env_values_from_a_file_or_stdin_not_argv(tmp_path, monkeypatch, source):
    path = str(tmp_path / "enkrypt_mcp_config.json")
    lines = "# comment\n\nAPI_KEY=%s\nURL=https://x/?a=b=c\nEMPTY=\n" % ENV_SECRET
    argv = ["config", "add-server", "--config", path, "--server-name", "api", "--server-command", "python"]
    argv += ["--env", '{"LOG_LEVEL": "debug"}']
    if source == "file":
        env_file = tmp_path / "env"
        env_file.write_text(lines)
        code, out, err = run(*argv, "--env-file", str(env_file))
    else:
        code, out, err = run(*argv, "--env-file", "-", stdin=lines, monkeypatch=monkeypatch)
    assert code == 0, err
    assert ENV_SECRET not in " ".join(argv)
    (config,) = json.loads(open(path).read())["mcp_configs"].values()
    assert config["mcp_config"][0]["config"]["env"] == {
        "LOG_LEVEL": "debug",
        "API_KEY": ENV_SECRET,
        "URL": "https://x/?a=b=c",
        "EMPTY": "",
    }


@pytest.mark.parametrize(
    "content, message",
    [
        ("API_KEY\n", "line 1: expected KEY=VALUE"),
        ("A=1\n=%s\n" % ENV_SECRET, "line 2: expected KEY=VALUE"),
        ("A=1\nA=%s\n" % ENV_SECRET, "line 2: A is set twice"),
        ("LOG_LEVEL=%s\n" % ENV_SECRET, "--env and --env-file both set LOG_LEVEL"),
    ],
)
def test_a_bad_env_file_exits_2_without_showing_values(tmp_path, content, message):
    path = str(tmp_path / "enkrypt_mcp_config.json")
    env_file = tmp_path / "env"
    env_file.write_text(content)
    code, out, err = run(
        "config", "add-server", "--config", path, "--server-name", "api", "--server-command", "python",
        "--env", '{"LOG_LEVEL": "debug"}', "--env-file", str(env_file),
    )  # fmt: skip
    assert code == 2 and out == ""
    assert message in err and ENV_SECRET not in err
    assert not os.path.exists(path)


def test_add_server_help_tells_to_keep_secrets_out_of_argv():
    code, out, _ = run("config", "add-server", "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "--env-file PATH" in text and "- reads the lines from standard input" in text
    assert "shows in the process list" in text


def test_add_server_refuses_deeply_nested_env_json(tmp_path):
    path = str(tmp_path / "enkrypt_mcp_config.json")
    code, out, err = run(
        "config", "add-server", "--config", path, "--server-name", "api", "--server-command", "python",
        "--env", "[" * 100_000,
    )  # fmt: skip
    assert code == 2 and out == ""
    assert err == (
        "oauth-gateway: error: --env is nested more than 64 arrays or objects deep (line 1, column 65); "
        "flatten the document; 64 levels is the limit\n"
    )


def test_add_server_refuses_an_invalid_oauth_block(tmp_path):
    path = str(tmp_path / "enkrypt_mcp_config.json")
    oauth_json = tmp_path / "oauth.json"
    oauth_json.write_text(json.dumps({"enabled": "true", "OAUTH_SCOPES": "read"}))
    code, _, err = run(
        "config",
        "add-server",
        "--config",
        path,
        "--server-name",
        "x",
        "--server-command",
        "python",
        "--oauth-json",
        str(oauth_json),
    )
    assert code == 1
    assert "OAUTH_SCOPES" in err or "enabled" in err
    assert not os.path.exists(path)


def test_demo_walks_through_every_step():
    code, out, err = run("demo")
    assert code == 0, out + err
    for number in range(1, 8):
        assert "[%d/7]" % number in out
    assert "demo finished: every step behaved as described" in out
    assert "token_acquisitions_total     2" in out


@pytest.mark.parametrize(
    "argv",
    [["validate"], ["schema"], ["token"], ["revoke"], ["config"], ["config", "add-server"], ["demo"]],
)
def test_every_help_has_an_example(argv):
    code, out, _ = run(*(argv + ["--help"]))
    assert code == 0
    assert "example:" in out


def test_config_without_a_command_says_what_to_choose():
    code, out, err = run("config")
    assert code == 2 and out == ""
    assert "oauth-gateway config --help" in err
