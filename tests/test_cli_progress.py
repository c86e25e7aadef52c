"""What the commands say while they wait: `discover`'s retry lines, the attempt count of a
final error, and `demo --serve`'s export lines and gateway file."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import threading
from typing import Dict, List, Tuple

import pytest

from oauth_gateway import _demo, cli
from oauth_gateway._cli_progress import gave_up_suffix


def _run(*argv: str) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> List[float]:
    """The commands' waits between retries, recorded instead of slept."""
    recorded: List[float] = []
    monkeypatch.setattr(cli, "_wait", recorded.append)
    return recorded


def test_gave_up_is_said_only_after_more_than_one_attempt() -> None:
    assert gave_up_suffix("OAuth token request failed: invalid_client", 1) == ""
    assert gave_up_suffix("Discovery failed", 4) == "; gave up after 4 attempts"
    assert gave_up_suffix("Token request failed for x after 4 attempts (timed out)", 4) == ""
    assert gave_up_suffix("refused; no request was made", 3) == ""


def test_discover_on_a_closed_port_names_the_url_and_the_reason_and_counts_four_attempts(waits: List[float]) -> None:
    url = "http://127.0.0.1:%d/mcp" % _closed_port()
    code, out, err = _run("discover", url, "-v")
    assert code == 1 and out == ""
    lines = [line for line in err.splitlines() if line.startswith("oauth-gateway: connection refused")]
    assert len(lines) == 3, err  # the retries of the first fetch: attempts 2, 3 and 4 of 4
    for attempt, line in enumerate(lines, start=2):
        assert "from http://127.0.0.1:" in line and line.endswith("(attempt %d of 4)" % attempt), line
    assert "Error" not in "".join(lines)  # a plain reason, no exception class names
    assert waits == [2.0, 4.0, 8.0]
    final = err.rstrip().splitlines()[-1]
    assert final.startswith("oauth-gateway: error: ")
    assert "1 attempt" not in err and "4 attempts" in final, final


def test_discover_says_what_it_fetches_when_lines_are_on(waits: List[float]) -> None:
    url = "http://127.0.0.1:%d/mcp" % _closed_port()
    _, _, err = _run("discover", url, "-v")
    assert re.search(r"^oauth-gateway: fetching http://127\.0\.0\.1:\d+/", err, re.M), err
    _, _, quiet = _run("discover", url)  # not a terminal, no -v: only the final error
    assert quiet.count("\n") == 1 and quiet.startswith("oauth-gateway: error: "), quiet


def _serve(tmp_path, *extra: str) -> Tuple[str, Dict[str, str], threading.Thread, io.StringIO]:
    """Runs serve_demo in a thread until its instructions are printed; returns them parsed."""
    out = io.StringIO()
    ready = threading.Event()
    urls: List[str] = []

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    write = str(tmp_path / "demo.json") if "--write" in extra else None
    thread = threading.Thread(
        target=_demo.serve_demo, args=(out,), kwargs={"port": 0, "ready": on_ready, "write": write}
    )
    thread.daemon = True  # the server stops with the process: serve_demo waits for Ctrl-C
    thread.start()
    assert ready.wait(30)
    exports = dict(re.findall(r"^export (\w+)=(\S+)$", out.getvalue(), re.M))
    return urls[0], exports, thread, out


def test_demo_serve_exports_every_value_the_examples_read_and_writes_the_file(tmp_path, monkeypatch) -> None:
    url, exports, _, out = _serve(tmp_path, "--write")
    path = str(tmp_path / "demo.json")
    assert exports["OAUTH_GATEWAY_CONFIG"] == path
    assert exports["API_URL"] == url + "/resource" and exports["UPSTREAM_URL"] == url + "/resource"
    assert exports["IDP_TOKEN_URL"] == url + "/token" and exports["IDP_REVOCATION_URL"] == url + "/revoke"
    assert exports["IDP_CLIENT_ID"] == _demo.SERVE_CLIENT_ID
    assert exports["OAUTH_GATEWAY_DEMO_SECRET"] == exports["IDP_CLIENT_SECRET"]
    assert len(exports["OAUTH_TOKEN_CACHE_KEY"]) == 44  # a Fernet key
    assert os.stat(path).st_mode & 0o777 == 0o600
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    [entry] = document["mcp_configs"]["demo"]["mcp_config"]
    assert entry["server_name"] == "oauth-api"
    assert '"mcp_configs"' not in out.getvalue()  # written, not printed
    assert _run("validate", path)[0] == 0
    for name, value in exports.items():  # as if the printed lines were pasted
        monkeypatch.setenv(name, value)
    code, text, err = _run("token", "oauth-api")
    assert code == 0, err
    assert "token_type: Bearer" in text


def test_demo_serve_on_a_taken_port_names_the_fix() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        code, _, err = _run("demo", "--serve", "--port", str(taken.getsockname()[1]))
    assert code == 2
    assert "cannot listen on 127.0.0.1:" in err and "--port 0" in err
