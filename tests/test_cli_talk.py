"""The command line says what it is doing: -v/-q, retry lines, attempts, Ctrl-C, stdin, pty."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import select
import signal
import subprocess
import sys
import time

import pytest

from gatewayfile import write_gateway_file
from oauth_gateway import cli
from servers import Fault

SERVER = "oauth-api"


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def fast_file(tmp_path, auth_server, make_block):
    """A gateway file whose retries wait 0.05 s, 0.1 s, 0.2 s."""
    block = make_block(auth_server, OAUTH_RETRY_BACKOFF=0.05, OAUTH_SCOPE="read")
    return write_gateway_file(tmp_path / "enkrypt_mcp_config.json", {SERVER: block})


def test_with_v_each_retry_is_one_line_naming_status_url_wait_and_attempt(fast_file, auth_server):
    auth_server.set_faults([Fault(status=503), Fault(status=503)])
    code, out, err = run("token", SERVER, "--config", fast_file, "-v")
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("oauth-gateway: HTTP")]
    assert lines == [
        "oauth-gateway: HTTP 503 from %s; retrying in 0.05 s (attempt 2 of 4)" % auth_server.token_url,
        "oauth-gateway: HTTP 503 from %s; retrying in 0.1 s (attempt 3 of 4)" % auth_server.token_url,
    ]
    assert auth_server.count("/token") == 3


def test_without_v_and_without_a_terminal_retries_are_silent(fast_file, auth_server):
    auth_server.set_faults([Fault(status=503)])
    code, _, err = run("token", SERVER, "--config", fast_file)
    assert (code, err) == (0, "oauth-gateway: the token is masked; --show prints it alone, for scripts\n")


def test_a_final_error_says_after_how_many_attempts(fast_file, auth_server):
    auth_server.set_faults([Fault(status=503)] * 4)
    code, out, err = run("token", SERVER, "--config", fast_file, "-q")
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and "retrying" not in err  # -q: the error alone
    assert err.rstrip().endswith("; gave up after 4 attempts")
    assert "HTTP 503" in err


def test_a_refusal_on_the_first_attempt_does_not_count_attempts(fast_file, auth_server):
    auth_server.set_faults([Fault(status=401, json={"error": "invalid_client"})])
    code, _, err = run("token", SERVER, "--config", fast_file)
    assert code == 1
    assert "invalid_client" in err and "attempt" not in err  # "gave up after 1 attempt" says nothing


def test_v_connects_the_library_log_to_stderr_and_disconnects_it_after(fast_file):
    logger = logging.getLogger("oauth_gateway")
    handlers, level = list(logger.handlers), logger.level
    code, _, err = run("token", SERVER, "--config", fast_file, "-vv")
    assert code == 0
    assert re.search(r"^oauth_gateway: DEBUG: Token request correlation_id=\w+ for oauth-api$", err, re.M)
    assert (logger.handlers, logger.level) == (handlers, level)
    code, _, err = run("token", SERVER, "--config", fast_file)
    assert "DEBUG" not in err


@pytest.mark.parametrize("command", [["validate", "x.json"], ["schema"], ["token", "s"], ["revoke", "s"], ["demo"]])
def test_every_command_takes_v_and_q_but_not_both(command):
    code, _, err = run(*command, "-v", "-q")
    assert code == 2
    assert "not allowed with argument" in err


def test_q_drops_the_ok_lines_of_validate(tmp_path, fast_file):
    assert run("validate", fast_file)[1] == "%s: ok\n" % fast_file
    assert run("validate", "-q", fast_file)[:2] == (0, "")


def test_validate_dash_reads_standard_input(monkeypatch, fast_file):
    with open(fast_file, "rb") as handle:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(handle.read())))
    assert run("validate", "-") == (0, "-: ok\n", "")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b'{"mcp_configs": [}')))
    code, out, err = run("validate", "--output", "json", "-")
    assert code == 2
    (row,) = json.loads(out)
    assert (row["file"], row["status"]) == ("-", "error") and "not valid JSON" in row["error"]


class _Interrupting:
    class buffer:  # noqa: N801 - stands in for sys.stdin.buffer
        @staticmethod
        def read():
            raise KeyboardInterrupt


def test_ctrl_c_exits_130_with_one_line(monkeypatch):
    monkeypatch.setattr("sys.stdin", _Interrupting)
    assert run("validate", "-") == (130, "", "\noauth-gateway: interrupted\n")


def test_config_id_and_config_name_are_mutually_exclusive(fast_file):
    code, _, err = run("token", SERVER, "--config", fast_file, "--config-id", "a", "--config-name", "b")
    assert code == 2
    assert "argument --config-name: not allowed with argument --config-id" in err
    code, _, err = run(
        "config", "add-server", "--config-id", "a", "--config-name", "b", "--server-name", "x", "--server-command", "y"
    )
    assert code == 2 and "not allowed with argument" in err


def test_errors_in_the_oauth_json_file_name_that_file(tmp_path, fast_file):
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"enabled": True, "OAUTH_TOKN_URL": "https://idp.example.com/token"}))
    before = open(fast_file).read()
    code, _, err = run(
        "config",
        "add-server",
        "--config",
        fast_file,
        "--server-name",
        "new",
        "--server-command",
        "npx",
        "--oauth-json",
        str(typo),
    )
    assert code == 1
    assert "oauth-gateway: error: --oauth-json %s::$.OAUTH_TOKN_URL: unknown key" % typo in err
    assert fast_file not in err
    assert open(fast_file).read() == before


def test_token_json_dates_are_iso_8601_utc(fast_file):
    code, out, _ = run("token", SERVER, "--config", fast_file, "--output", "json")
    expires_at = json.loads(out)["expires_at"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", expires_at)
    stamp = time.mktime(time.strptime(expires_at, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert abs(stamp - (time.time() + 3600)) < 60


# --------------------------------------------------------------------------- a real terminal


def _in_pty(argv, env=None, answer=None, timeout=30.0):
    """Run the CLI with stdin and stderr on a new pty (stdout piped); return (code, terminal text, stdout).

    With ``answer=(prompt, text)``, type ``text`` once ``prompt`` appears on the terminal.
    """
    master, slave = os.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "oauth_gateway"] + argv,
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=dict(os.environ, **(env or {})),
        start_new_session=True,  # no controlling terminal but the pty: getpass uses stdin
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
                if answer is not None and answer[0].encode() in seen:
                    os.write(master, answer[1].encode() + b"\n")
                    answer = None
            elif process.poll() is not None:
                break
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
        stdout = process.stdout.read().decode()
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
        process.stdout.close()
    return code, seen.decode().replace("\r\n", "\n"), stdout


def test_on_a_terminal_a_503_retried_three_times_prints_three_lines(fast_file, auth_server):
    auth_server.set_faults([Fault(status=503)] * 3)
    code, terminal, stdout = _in_pty(["token", SERVER, "--config", fast_file])
    assert code == 0, terminal
    assert terminal.splitlines() == [
        "oauth-gateway: HTTP 503 from %s; retrying in %s s (attempt %d of 4)" % (auth_server.token_url, wait, n)
        for wait, n in (("0.05", 2), ("0.1", 3), ("0.2", 4))
    ] + ["oauth-gateway: the token is masked; --show prints it alone, for scripts"]
    assert stdout.startswith("server: oauth-api\n")


def test_revoke_token_stdin_on_a_terminal_prompts_without_echo(fast_file, auth_server, make_block, tmp_path):
    block = make_block(auth_server, OAUTH_REVOCATION_URL=auth_server.revocation_url)
    path = write_gateway_file(tmp_path / "revocable.json", {SERVER: block})
    token = run("token", SERVER, "--config", path, "--show")[1].strip()
    code, terminal, stdout = _in_pty(
        ["revoke", SERVER, "--config", path, "--token-stdin"], answer=("(input hidden): ", token)
    )
    assert code == 0, terminal
    assert terminal.startswith("Token to revoke (input hidden): ")
    assert token not in terminal  # not echoed
    assert token in auth_server.revoked
    assert stdout.startswith("revoked the token for oauth-api")


# --------------------------------------------------------------------------- demo --serve


def test_demo_serve_prints_a_working_config_and_exits_0_on_ctrl_c(tmp_path, monkeypatch):
    process = subprocess.Popen(
        [sys.executable, "-m", "oauth_gateway", "demo", "--serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        text = ""
        deadline = time.monotonic() + 30
        while "Press Ctrl-C" not in text and time.monotonic() < deadline:
            line = process.stdout.readline().decode()
            if not line:
                break
            text += line
        start, end = text.index("{"), text.rindex("}") + 1
        config = tmp_path / "demo.json"
        config.write_text(text[start:end])
        secret = re.search(r"export OAUTH_GATEWAY_DEMO_SECRET=(\S+)", text).group(1)
        monkeypatch.setenv("OAUTH_GATEWAY_DEMO_SECRET", secret)
        assert run("validate", str(config))[0] == 0
        code, out, err = run("token", "oauth-api", "--config", str(config))
        assert code == 0, err
        assert "token_type: Bearer" in out
        process.send_signal(signal.SIGINT)
        rest, errors = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, errors
    assert rest.decode().strip() == (
        "oauth-gateway demo: stopped after 1 token request(s), 0 revocation(s) and 0 resource request(s)"
    )
    assert errors == b""
