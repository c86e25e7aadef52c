"""Tests for oauth_gateway.cli (``oauth-gateway`` / ``python -m oauth_gateway``)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, List, Tuple

import pytest

import oauth_gateway
from oauth_gateway import cli, schema

FIXTURES = Path(__file__).parent / "fixtures"
DONE_WHEN = FIXTURES / "gateway-bad-done-when.json"
BLOCK = "$.mcp_configs.abc.mcp_config[0].oauth_config"

DONE_WHEN_LINES = [
    BLOCK + ".OAUTH_CLIENT_KEY_PATH: is required when OAUTH_USE_MTLS is true; set it to the path of the "
    'certificate\'s PEM private key (chmod 600), like "~/.certs/client-key.pem"',
    BLOCK + ".OAUTH_SCOPES: unknown key 'OAUTH_SCOPES'; did you mean 'OAUTH_SCOPE'?",
    BLOCK + ".OAUTH_TOKEN_URL: OAuth 2.1 requires HTTPS for token_url, got 'http://idp/token'; "
    'use an https:// URL; for a local test server over plain http set OAUTH_VERSION to "2.0" and OAUTH_ENFORCE_HTTPS to false',
    BLOCK + ".OAUTH_VALIDATE_SCOPES: must be a boolean (true or false without quotes), got the string 'false'",
]


def run(*argv: str) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def write(path: Path, document: Any, mode: int = 0o600) -> str:
    path.write_text(json.dumps(document, indent=2))
    os.chmod(str(path), mode)
    return str(path)


GOOD = {"enabled": True, "OAUTH_CLIENT_ID": "c", "OAUTH_CLIENT_SECRET": "${S}", "OAUTH_TOKEN_URL": "https://idp/t"}


# --- validate: text --------------------------------------------------------------------


def test_done_when_file_prints_four_problem_lines_and_exits_1() -> None:
    code, out, err = run("validate", str(DONE_WHEN))
    assert code == 1
    assert err == ""
    assert out.splitlines() == ["%s::%s" % (DONE_WHEN, line) for line in DONE_WHEN_LINES]


def test_valid_files_print_ok_and_exit_0(tmp_path: Path) -> None:
    first = write(tmp_path / "a.json", GOOD)
    second = str(FIXTURES / "gateway-good-seed.json")
    code, out, err = run("validate", first, second)
    assert (code, err) == (0, "")
    assert out.splitlines() == ["%s: ok" % first, "%s: ok" % second]


def test_one_invalid_file_among_valid_ones_exits_1(tmp_path: Path) -> None:
    good = write(tmp_path / "good.json", GOOD)
    bad = write(tmp_path / "bad.json", dict(GOOD, OAUTH_TIMEOUT=0))
    code, out, _ = run("validate", good, bad)
    assert code == 1
    assert out.splitlines() == ["%s: ok" % good, "%s::$.OAUTH_TIMEOUT: must be greater than 0, got 0" % bad]


# --- validate: json and github ----------------------------------------------------------------


def test_json_output_lists_every_problem() -> None:
    code, out, err = run("validate", "--output", "json", str(DONE_WHEN))
    assert (code, err) == (1, "")
    (result,) = json.loads(out)
    assert (result["file"], result["status"], result["error"]) == (str(DONE_WHEN), "invalid", None)
    rows = result["problems"]
    assert [sorted(row) for row in rows] == [["hint", "json_path", "message", "severity"]] * 4
    assert [row["json_path"] for row in rows] == [line.split(":", 1)[0] for line in DONE_WHEN_LINES]
    assert {row["severity"] for row in rows} == {"error"}
    assert rows[1]["message"] == "unknown key 'OAUTH_SCOPES'"
    assert rows[1]["hint"] == "did you mean 'OAUTH_SCOPE'?"
    assert rows[3]["hint"] is None


def test_json_output_of_a_valid_file_is_one_object_with_no_problems(tmp_path: Path) -> None:
    path = write(tmp_path / "ok.json", GOOD)
    code, out, _ = run("validate", "--output", "json", path)
    assert (code, json.loads(out)) == (0, [{"file": path, "status": "valid", "problems": [], "error": None}])


def test_json_output_reports_an_unreadable_file_in_its_own_object(tmp_path: Path) -> None:
    good = write(tmp_path / "ok.json", GOOD)
    missing = str(tmp_path / "missing.json")
    code, out, err = run("validate", "--output", "json", missing, good)
    assert code == 2
    rows = json.loads(out)
    assert [(row["file"], row["status"]) for row in rows] == [(missing, "error"), (good, "valid")]
    assert rows[0]["error"] == "%s does not exist" % missing and rows[0]["problems"] == []
    assert "does not exist" in err


def test_github_output_writes_workflow_annotations() -> None:
    code, out, _ = run("validate", "--output", "github", str(DONE_WHEN))
    assert code == 1
    assert out.splitlines() == [
        "::error file=%s,title=oauth-gateway::%s" % (DONE_WHEN, line) for line in DONE_WHEN_LINES
    ]


def test_github_output_escapes_file_names_and_messages(tmp_path: Path) -> None:
    odd = write(tmp_path / "a,b:c.json", {"OAUTH_SCOPE": "50%\nmore"})
    code, out, _ = run("validate", "--output", "github", odd)
    assert code == 1
    (line,) = out.splitlines()
    assert line.startswith(
        "::error file=%s,title=oauth-gateway::$.OAUTH_SCOPE: " % odd.replace(",", "%2C").replace(":", "%3A")
    )
    assert "50%25\\nmore" in line


# --- exit code 2 -----------------------------------------------------------------------


def test_missing_file_exits_2_and_says_which(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.json")
    good = write(tmp_path / "good.json", GOOD)
    code, out, err = run("validate", missing, good)
    assert code == 2
    assert err == "oauth-gateway: error: %s does not exist\n" % missing
    assert out == "%s: ok\n" % good


def test_invalid_json_exits_2_with_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "enabled" true\n}\n')
    code, out, err = run("validate", str(path))
    assert (code, out) == (2, "")
    assert err == "oauth-gateway: error: %s is not valid JSON: Expecting ':' delimiter at line 2, column 13\n" % path
    code, out, _ = run("validate", "--output", "github", str(path))
    assert code == 2
    assert out.startswith("::error file=%s,line=2,col=13,title=oauth-gateway::" % path)


def test_non_utf8_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"OAUTH_AUDIENCE": "caf\xe9"}')
    code, _, err = run("validate", str(path))
    assert code == 2
    assert "is not UTF-8 text" in err and str(path) in err


def test_directory_exits_2(tmp_path: Path) -> None:
    code, _, err = run("validate", str(tmp_path))
    assert code == 2
    assert err == "oauth-gateway: error: %s is a directory\n" % tmp_path


@pytest.mark.parametrize(
    "argv",
    [[], ["validate"], ["validate", "--output", "xml", "f.json"], ["nope"], ["--bogus"], ["schema", "--name", "other"]],
)
def test_usage_errors_exit_2_on_stderr(argv: List[str]) -> None:
    code, out, err = run(*argv)
    assert code == 2
    assert out == ""
    assert err.startswith("usage: oauth-gateway")


def test_deeply_nested_file_is_checked_without_crashing(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"common_mcp_gateway_config": {}, "plugins": ' + "[" * 5000 + "]" * 5000 + "}")
    code, out, err = run("validate", str(path))
    # Refused before parsing, the same way on every Python, at the 65th level (the 64th "[").
    assert (code, out) == (2, "")
    assert err == "oauth-gateway: error: %s is nested more than 64 arrays or objects deep (line 1, column 109)\n" % path


# --- literal secrets and --strict --------------------------------------------------------------

SECRET_BLOCK = {
    "enabled": True,
    "OAUTH_CLIENT_ID": "c",
    "OAUTH_CLIENT_SECRET": "hunter2-literal",
    "OAUTH_TOKEN_URL": "https://idp/t",
}


def test_literal_secret_in_a_0644_file_warns_and_still_exits_0(tmp_path: Path) -> None:
    path = write(tmp_path / "enkrypt_mcp_config.json", SECRET_BLOCK, 0o644)
    code, out, _ = run("validate", path)
    assert code == 0
    assert out.splitlines() == [
        "%s::$.OAUTH_CLIENT_SECRET: warning: holds a literal client secret in a file readable by group or "
        'others (mode 0644); use "${ENV_NAME}" or OAUTH_CLIENT_SECRET_FILE instead, or run chmod 600 %s' % (path, path),
        "%s: ok" % path,
    ]
    assert "hunter2" not in out


def test_strict_makes_the_warning_fail(tmp_path: Path) -> None:
    path = write(tmp_path / "enkrypt_mcp_config.json", SECRET_BLOCK, 0o644)
    code, out, _ = run("validate", "--strict", path)
    assert code == 1
    assert "warning: holds a literal client secret" in out
    assert "%s: ok" % path not in out
    code, out, _ = run("validate", "--strict", "--output", "json", path)
    assert code == 1
    (result,) = json.loads(out)
    assert result["status"] == "invalid"  # --strict: the warning fails
    (row,) = result["problems"]
    assert (row["json_path"], row["severity"]) == ("$.OAUTH_CLIENT_SECRET", "warning")
    assert "chmod 600" in row["hint"] and "OAUTH_CLIENT_SECRET_FILE" in row["hint"]
    code, out, _ = run("validate", "--strict", "--output", "github", path)
    assert out.startswith("::error file=")
    code, out, _ = run("validate", "--output", "github", path)
    assert (code, out.startswith("::warning file=")) == (0, True)


@pytest.mark.parametrize(
    "mode,secret",
    [(0o600, "hunter2-literal"), (0o400, "hunter2-literal"), (0o644, "${IDP_SECRET}"), (0o644, "")],
)
def test_no_warning_for_private_files_or_env_references(tmp_path: Path, mode: int, secret: str) -> None:
    document = dict(SECRET_BLOCK, OAUTH_CLIENT_SECRET=secret)
    if not secret:
        document["OAUTH_CLIENT_SECRET_FILE"] = "/run/secrets/idp"
    path = write(tmp_path / "c.json", document, mode)
    assert run("validate", "--strict", path) == (0, "%s: ok\n" % path, "")


def test_group_readable_gateway_file_warns_at_the_nested_path(tmp_path: Path) -> None:
    document = json.loads((FIXTURES / "gateway-good-seed.json").read_text())
    server = document["mcp_configs"]["0f0e5c3a-6d0e-4a55-9d6c-0a1b2c3d4e5f"]["mcp_config"][1]
    server["oauth_config"]["OAUTH_CLIENT_SECRET"] = "literal"
    path = write(tmp_path / "g.json", document, 0o640)
    code, out, _ = run("validate", "--strict", path)
    assert code == 1
    assert out.splitlines()[0].startswith(
        "%s::$.mcp_configs['0f0e5c3a-6d0e-4a55-9d6c-0a1b2c3d4e5f'].mcp_config[1].oauth_config.OAUTH_CLIENT_SECRET: "
        "warning: holds a literal client secret in a file readable by group or others (mode 0640)" % path
    )


# --- schema, --version, help -----------------------------------------------------------------


@pytest.mark.parametrize("name", schema.SCHEMA_NAMES)
def test_schema_prints_the_bundled_schema(name: str) -> None:
    code, out, _ = run("schema", "--name", name)
    assert code == 0
    assert json.loads(out) == schema.load_schema(name)
    code, out, _ = run("schema", "--name", name, "--path")
    assert (code, out) == (0, schema.schema_path(name) + "\n")


def test_schema_defaults_to_oauth_config() -> None:
    code, out, _ = run("schema")
    assert (code, json.loads(out)["title"]) == (0, schema.load_schema("oauth-config")["title"])


def test_version() -> None:
    assert run("--version") == (0, "oauth-gateway %s\n" % oauth_gateway.__version__, "")


@pytest.mark.parametrize("command", [None, "validate", "schema"])
def test_every_help_has_an_example(command: Any) -> None:
    argv = ["--help"] if command is None else [command, "--help"]
    code, out, err = run(*argv)
    assert (code, err) == (0, "")
    assert out.startswith("usage: oauth-gateway")
    example = out.split("example:\n", 1)[1]
    assert example.lstrip().startswith("oauth-gateway ")


def test_main_never_raises_system_exit() -> None:
    for argv in (["--help"], ["--version"], ["nope"], []):
        assert isinstance(cli.main(argv, stdout=io.StringIO(), stderr=io.StringIO()), int)


def test_python_dash_m_runs_the_same_program(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in [str(Path(oauth_gateway.__file__).parent.parent), env.get("PYTHONPATH", "")] if p
    )
    result = subprocess.run(
        [sys.executable, "-m", "oauth_gateway", "validate", str(DONE_WHEN)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == ["%s::%s" % (DONE_WHEN, line) for line in DONE_WHEN_LINES]
    result = subprocess.run(
        [sys.executable, "-m", "oauth_gateway"], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 2 and "usage: oauth-gateway" in result.stderr


def test_pre_commit_hook_definition() -> None:
    lines = (Path(__file__).parent.parent / ".pre-commit-hooks.yaml").read_text().splitlines()
    assert lines[0].startswith("- id: ")
    assert sum(line.startswith("- ") for line in lines) == 1  # one hook
    hook = dict(line.lstrip("- ").split(": ", 1) for line in lines if ": " in line)
    assert hook["id"] == "oauth-gateway-validate"
    assert hook["entry"] == "oauth-gateway validate"
    assert hook["language"] == "python"
    pattern = re.compile(hook["files"])
    assert pattern.search("home/me/.enkrypt/enkrypt_mcp_config.json")
    assert pattern.search("enkrypt_mcp_config.prod.json")
    assert not pattern.search("enkrypt_mcp_config.json.bak")
    assert not pattern.search("other.json")
