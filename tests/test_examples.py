"""The examples under examples/ run as written, against the real HTTPS test server.

Each runs in a subprocess with ``OAUTH_GATEWAY_CONFIG`` pointing at a gateway file for
the test server (whose ``OAUTH_CA_BUNDLE_PATH`` is the test CA) and
``REQUESTS_CA_BUNDLE`` set to the test CA for the calls to the API. The README's code
blocks that name an example file are checked to be verbatim excerpts of it.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
import requests

from gatewayfile import CONFIG_ID, write_gateway_file
from servers import TEST_CLIENT_ID, TEST_CLIENT_SECRET, Fault, basic_credentials

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
DJANGO_PROJECT = EXAMPLES / "django_project"
SERVER = "oauth-api"
INVALID_TOKEN = {"WWW-Authenticate": 'Bearer realm="test", error="invalid_token"'}
# Bounded wait for a started web server: 400 polls, 50 ms apart, at most 20 s.
_READY_POLLS = 400
_READY_INTERVAL = 0.05


@pytest.fixture
def gateway_file(tmp_path, auth_server, make_block):
    return write_gateway_file(tmp_path / "enkrypt_mcp_config.json", {SERVER: make_block(auth_server)})


@pytest.fixture
def env(gateway_file, ca_bundle, auth_server) -> Dict[str, str]:
    made = dict(os.environ)
    made.update(
        OAUTH_GATEWAY_CONFIG=gateway_file,
        REQUESTS_CA_BUNDLE=ca_bundle,
        OAUTH_SERVER_NAME=SERVER,
        UPSTREAM_URL=auth_server.resource_url,
        PYTHONUNBUFFERED="1",
    )
    made.pop("DJANGO_SETTINGS_MODULE", None)
    return made


def _run(args: List[str], env: Dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable] + args,
        cwd=str(cwd),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )


def _assert_no_token(server, *texts: str) -> None:
    for token in server.issued_history:
        for text in texts:
            assert token not in text


def _revoke(server, token, ca_bundle) -> None:
    response = requests.post(
        server.revocation_url,
        data={"token": token},
        headers={"Authorization": basic_credentials(TEST_CLIENT_ID, TEST_CLIENT_SECRET)},
        verify=ca_bundle,
        timeout=10,
    )
    assert response.status_code == 200


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _web_server(
    args: List[str], env: Dict[str, str], port: int, cwd: Path = REPO, ready: str = "/oauth-gateway/metrics.json"
) -> Iterator[requests.Session]:
    """Start a web server subprocess; yield a session for http://127.0.0.1:port once ``ready`` answers."""
    process = subprocess.Popen(
        [sys.executable] + args,
        cwd=str(cwd),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        universal_newlines=True,
    )
    local = requests.Session()
    local.trust_env = False  # no proxy from the environment for 127.0.0.1
    try:
        for _ in range(_READY_POLLS):
            if process.poll() is not None:
                break
            try:
                local.get("http://127.0.0.1:%d%s" % (port, ready), timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(_READY_INTERVAL)
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail("%s exited with %s:\n%s" % (" ".join(args), process.returncode, output))
        try:
            yield local
        except AssertionError as error:
            process.terminate()
            output = process.communicate(timeout=10)[0]
            raise AssertionError("%s\n--- output of %s ---\n%s" % (error, " ".join(args), output)) from None
    finally:
        local.close()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck server
            process.kill()
            process.wait(10)
        if process.stdout:
            process.stdout.close()


def _metric(text: str, name: str) -> float:
    """The value of counter ``name`` (written with or without ``_total``) for the test server."""
    base = name[: -len("_total")] if name.endswith("_total") else name
    pattern = r'^%s(?:_total)?\{server="%s"\} ([0-9.e+]+)$' % (re.escape(base), SERVER)
    match = re.search(pattern, text, re.MULTILINE)
    assert match, "%s not in the metrics" % name
    return float(match.group(1))


# --------------------------------------------------------------------------- cron script


def test_the_cron_script_calls_every_url_and_survives_a_rejected_token(env, auth_server):
    auth_server.set_faults([Fault(), Fault(401, json={"error": "invalid_token"}, headers=INVALID_TOKEN)], "/resource")
    url = auth_server.resource_url
    result = _run(["examples/cron_script.py", SERVER, url, url + "?page=2", url + "?page=3"], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "200 %s" % url,
        "200 %s?page=2 (after replacing a rejected token)" % url,
        "200 %s?page=3" % url,
    ]
    # The log shows the URL with its query values masked, as every message does.
    assert "Token for oauth-api was rejected by %s?page=*** (401)" % url in result.stderr
    assert auth_server.count("/token") == 2
    assert auth_server.count("/resource") == 4
    _assert_no_token(auth_server, result.stdout, result.stderr)


def test_the_cron_script_fails_with_the_reason(env, auth_server, tmp_path):
    result = _run(["examples/cron_script.py", "oauth-apy", auth_server.resource_url], env)
    assert result.returncode == 2
    assert "did you mean 'oauth-api'" in result.stderr
    env["OAUTH_GATEWAY_CONFIG"] = str(tmp_path / "missing.json")
    result = _run(["examples/cron_script.py", SERVER, auth_server.resource_url], env)
    assert result.returncode == 2
    assert (
        "oauth-gateway: $: config file %s (from $OAUTH_GATEWAY_CONFIG) does not exist" % env["OAUTH_GATEWAY_CONFIG"]
        in result.stderr
    )
    assert auth_server.count("/resource") == 0


def test_the_cron_script_exits_1_when_the_api_refuses(env, auth_server):
    auth_server.push_fault(Fault(500, json={"error": "server_error"}), "/resource")
    result = _run(["examples/cron_script.py", SERVER, auth_server.resource_url], env)
    assert result.returncode == 1
    assert result.stdout.strip() == "500 %s" % auth_server.resource_url


# --------------------------------------------------------------------------- Flask app


def test_the_flask_app_serves_data_and_metrics_and_survives_a_revocation(env, auth_server, ca_bundle):
    port = _free_port()
    env["PORT"] = str(port)
    with _web_server(["examples/flask_app.py"], env, port) as local:
        base = "http://127.0.0.1:%d" % port
        first = local.get(base + "/data", timeout=30)
        assert (first.status_code, first.json()) == (200, {"upstream": {"ok": True}})
        _revoke(auth_server, auth_server.issued_history[0], ca_bundle)
        second = local.get(base + "/data", timeout=30)
        assert (second.status_code, second.json()) == (200, {"upstream": {"ok": True}})
        metrics = local.get(base + "/oauth-gateway/metrics", timeout=30).text
    assert auth_server.count("/token") == 2
    assert [r.headers["Authorization"] for r in auth_server.requests_to("/resource")] == [
        "Bearer " + t for t in auth_server.issued_history[:1] * 2 + auth_server.issued_history[1:2]
    ]
    assert _metric(metrics, "oauth_gateway_token_acquisitions_success") == 2
    _assert_no_token(auth_server, metrics)


# --------------------------------------------------------------------------- Prometheus worker


def test_the_prometheus_worker_calls_the_api_and_exposes_metrics(env, auth_server):
    port = _free_port()
    env.update(METRICS_PORT=str(port), INTERVAL="3600")
    with _web_server(["examples/prometheus_worker.py"], env, port, ready="/metrics") as local:
        for _ in range(_READY_POLLS):  # the first call runs right after the metrics server starts
            if auth_server.count("/resource") >= 1:
                break
            time.sleep(_READY_INTERVAL)
        metrics = local.get("http://127.0.0.1:%d/metrics" % port, timeout=10).text
        assert _metric(metrics, "oauth_gateway_token_acquisitions_success_total") == 1, metrics
        assert _metric(metrics, "oauth_gateway_token_cache_misses_total") == 1
        assert auth_server.count("/token") == 1
    assert [r.headers["Authorization"] for r in auth_server.requests_to("/resource")] == [
        "Bearer " + auth_server.issued_history[0]
    ]
    _assert_no_token(auth_server, metrics)


# --------------------------------------------------------------------------- Django project


def test_manage_py_check_passes_on_a_good_file(env):
    result = _run(["manage.py", "check"], env, cwd=DJANGO_PROJECT)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_manage_py_check_fails_on_a_bad_file_naming_each_problem(env, tmp_path, auth_server, make_block):
    block = make_block(auth_server, OAUTH_SCOPES="read")
    block["OAUTH_TOKEN_URL"] = "http://idp.example/token"
    env["OAUTH_GATEWAY_CONFIG"] = write_gateway_file(tmp_path / "bad.json", {SERVER: block})
    result = _run(["manage.py", "check"], env, cwd=DJANGO_PROJECT)
    assert result.returncode != 0
    where = "%s::$.mcp_configs['%s'].mcp_config[0].oauth_config" % (env["OAUTH_GATEWAY_CONFIG"], CONFIG_ID)
    assert "%s.OAUTH_SCOPES: (oauth_gateway.E003) unknown key 'OAUTH_SCOPES'" % where in result.stderr
    assert "HINT: did you mean 'OAUTH_SCOPE'?" in result.stderr
    assert "%s.OAUTH_TOKEN_URL: (oauth_gateway.E003)" % where in result.stderr
    assert TEST_CLIENT_SECRET not in result.stderr + result.stdout


def test_manage_py_check_fails_when_the_server_the_project_uses_is_missing(env):
    env["OAUTH_SERVER_NAME"] = "billing-api"
    result = _run(["manage.py", "check"], env, cwd=DJANGO_PROJECT)
    assert result.returncode != 0
    assert "(oauth_gateway.E005) OAUTH_GATEWAY['SERVERS'] names 'billing-api'" in result.stderr


def test_manage_py_oauth_gateway_token(env, auth_server):
    masked = _run(["manage.py", "oauth_gateway_token", SERVER], env, cwd=DJANGO_PROJECT)
    assert masked.returncode == 0, masked.stderr
    assert "access_token: " in masked.stdout and "characters, sha256:" in masked.stdout
    _assert_no_token(auth_server, masked.stdout, masked.stderr)
    shown = _run(["manage.py", "oauth_gateway_token", SERVER, "--show"], env, cwd=DJANGO_PROJECT)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == auth_server.issued_history[-1] + "\n"  # alone, as `oauth-gateway token --show`
    missing = _run(["manage.py", "oauth_gateway_token", "billing-api"], env, cwd=DJANGO_PROJECT)
    assert missing.returncode == 1
    assert "CommandError: billing-api:" in missing.stderr and "no server named 'billing-api'" in missing.stderr


def test_the_django_project_serves_data_and_metrics_and_survives_a_revocation(env, auth_server, ca_bundle):
    port = _free_port()
    args = ["manage.py", "runserver", "--noreload", "127.0.0.1:%d" % port]
    with _web_server(args, env, port, cwd=DJANGO_PROJECT) as local:
        base = "http://127.0.0.1:%d" % port
        first = local.get(base + "/data", timeout=30)
        assert (first.status_code, first.json()) == (200, {"upstream": {"ok": True}})
        _revoke(auth_server, auth_server.issued_history[0], ca_bundle)
        second = local.get(base + "/data", timeout=30)
        assert (second.status_code, second.json()) == (200, {"upstream": {"ok": True}})
        metrics = local.get(base + "/oauth-gateway/metrics", timeout=30).text
    assert auth_server.count("/token") == 2
    assert _metric(metrics, "oauth_gateway_token_acquisitions_success") == 2


# --------------------------------------------------------------------------- README


def _readme_example_blocks(readme: Path = REPO / "docs" / "integrations.rst") -> List[List[str]]:
    """Code blocks of the integrations page (the README's part that moved there) whose first
    line is ``# examples/<file>``: the excerpt's source."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    blocks = []
    for index, line in enumerate(lines):
        if not (line.startswith(".. code-block::") or line.rstrip().endswith("::")):
            continue
        body = []
        for following in lines[index + 1 :]:
            if following.strip() and not following.startswith("    "):
                break
            body.append(following[4:])
        while body and not body[0].strip():
            body.pop(0)
        while body and not body[-1].strip():
            body.pop()
        if body and re.match(r"# examples/\S+$", body[0]):
            blocks.append(body)
    return blocks


def _is_excerpt(excerpt: List[str], source: List[str]) -> bool:
    """True when ``excerpt`` is consecutive lines of ``source`` (each part dedented).

    A ``# ...`` line separates parts taken from further down the file, in order.
    """
    parts: List[List[str]] = [[]]
    for line in excerpt:
        if line.strip() == "# ...":
            parts.append([])
        else:
            parts[-1].append(line)
    start = 0
    for part in parts:
        wanted = textwrap.dedent("\n".join(part))
        size = len(part)
        found = next(
            (
                at
                for at in range(start, len(source) - size + 1)
                if textwrap.dedent("\n".join(source[at : at + size])) == wanted
            ),
            None,
        )
        if found is None:
            return False
        start = found + size
    return True


def test_the_readme_examples_are_excerpts_of_the_tested_examples():
    blocks = _readme_example_blocks()
    named = {block[0][2:] for block in blocks}
    wanted = {
        "examples/cron_script.py",
        "examples/flask_app.py",
        "examples/prometheus_worker.py",
        "examples/django_project/example_project/settings.py",
        "examples/django_project/example_project/views.py",
    }
    assert wanted <= named, (
        "docs/integrations.rst shows no excerpt of %s (a code block whose first line is '# <file>')"
        % (", ".join(sorted(wanted - named)))
    )
    for block in blocks:
        source = (REPO / block[0][2:]).read_text(encoding="utf-8").splitlines()
        assert _is_excerpt(block[1:], source), (
            "docs/integrations.rst's excerpt of %s differs from the file" % block[0][2:]
        )
