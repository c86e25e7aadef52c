"""Every Python code block of README.rst and docs/ runs as written, against ``oauth-gateway demo --serve``.

The ``.. code-block:: python`` blocks of one page run in order in one fresh interpreter
(the installed package, a clean temporary directory as cwd and HOME), sharing one
namespace as a reader's session would: a block may use what an earlier block of the same
page defined. The environment is what the quick start tells the reader to do: start
``oauth-gateway demo --serve --write demo.json`` (here on a free port) and paste the
``export`` lines it prints. Nothing else is set, except what a reader's machine provides
anyway: ``HOME`` and ``XDG_CACHE_HOME`` (the temporary directory) and ``METRICS_PORT=0``
(the Prometheus example's port; its default, 9464, may be taken on a test machine).

A block that cannot run here is marked in the page, just before it, with the reST comment
``.. snippet: no-run -- <why>`` (invisible in the rendered page); the reason is required
and the marks are counted below, so they stay few.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.rst"] + sorted((REPO / "docs").glob("*.rst")) + sorted((REPO / "docs" / "guides").glob("*.rst"))
NO_RUN = re.compile(r"^\.\. snippet: no-run -- \S")
#: The most no-run marks allowed across all pages.
MAX_NO_RUN = 2

_RUNNER = textwrap.dedent(
    """
    import json, sys, traceback
    namespace = {"__name__": "__main__"}
    for line, code in json.load(sys.stdin):
        try:
            exec(compile(code, "%s:%d" % (sys.argv[1], line), "exec"), namespace)
        except BaseException:
            traceback.print_exc()
            print("SNIPPET-FAILED %d" % line)
            sys.exit(1)
        print("SNIPPET-OK %d" % line, flush=True)
    """
)


class Snippet(NamedTuple):
    page: str
    line: int  # of the ``.. code-block::`` directive
    language: str
    code: str
    no_run: bool


def snippets(page: Path) -> List[Snippet]:
    """The code blocks of a reST page, with their no-run marks."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found = []
    for index, line in enumerate(lines):
        match = re.match(r"^(\s*)\.\. code-block:: (\S+)\s*$", line)
        if not match:
            continue
        indent = len(match.group(1))
        body = []
        for following in lines[index + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following)
        before = index - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        no_run = before >= 0 and bool(NO_RUN.match(lines[before].strip()))
        code = textwrap.dedent("\n".join(body)).strip("\n") + "\n"
        found.append(Snippet(page.relative_to(REPO).as_posix(), index + 1, match.group(2), code, no_run))
    return found


PYTHON_PAGES = [page for page in PAGES if any(s.language == "python" for s in snippets(page))]


class Demo(NamedTuple):
    env: Dict[str, str]
    home: Path
    process: subprocess.Popen[str]

    def stop(self) -> Dict[str, int]:
        """Ctrl-C the demo; returns what it says it served: {"token": n, "revocation": n, "resource": n}."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        rest, _ = self.process.communicate(timeout=30)
        match = re.search(r"stopped after (\d+) token request\(s\), (\d+) revocation\(s\) and (\d+) resource", rest)
        assert match, rest
        return dict(zip(("token", "revocation", "resource"), (int(n) for n in match.groups())))


def _start_demo(home: Path) -> Demo:
    """``oauth-gateway demo --serve --write demo.json`` as the quick start runs it, on a free port."""
    base = {name: value for name, value in os.environ.items() if not name.startswith(("OAUTH_", "IDP_"))}
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "API_URL", "UPSTREAM_URL", "SSL_CERT_FILE"):
        base.pop(name, None)
    base.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    process = subprocess.Popen(
        [sys.executable, "-m", "oauth_gateway", "demo", "--serve", "--port", "0", "--write", "demo.json"],
        cwd=str(home),
        env=base,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    printed = []
    for _ in range(100):  # bounded: the instructions are about 25 lines
        line = process.stdout.readline()
        printed.append(line)
        if not line or line.startswith("Press Ctrl-C"):
            break
    text = "".join(printed)
    exports = dict(re.findall(r"^export (\w+)=(\S+)$", text, re.M))
    assert "OAUTH_GATEWAY_CONFIG" in exports and "API_URL" in exports, text
    env = dict(base, METRICS_PORT="0", **exports)
    return Demo(env, home, process)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    home = tmp_path / "home"
    home.mkdir()
    started = _start_demo(home)
    try:
        yield started
    finally:
        if started.process.poll() is None:
            started.process.kill()
            started.process.communicate()


def _run_page(page: Path, demo: Demo) -> subprocess.CompletedProcess[str]:
    runnable = [s for s in snippets(page) if s.language == "python" and not s.no_run]
    assert runnable, "%s has only no-run blocks" % page
    return subprocess.run(
        [sys.executable, "-c", _RUNNER, page.relative_to(REPO).as_posix()],
        input=json.dumps([(s.line, s.code) for s in runnable]),
        capture_output=True,
        text=True,
        cwd=str(demo.home),
        env=demo.env,
        timeout=120,
    )


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=lambda page: page.relative_to(REPO).as_posix())
def test_every_python_block_of_the_page_runs_against_the_demo(page: Path, demo: Demo) -> None:
    runnable = [s for s in snippets(page) if s.language == "python" and not s.no_run]
    result = _run_page(page, demo)
    ran = [int(n) for n in re.findall(r"^SNIPPET-OK (\d+)$", result.stdout, re.M)]
    assert result.returncode == 0 and ran == [s.line for s in runnable], "%s: the block at line %s failed:\n%s%s" % (
        page.name,
        (re.findall(r"SNIPPET-FAILED (\d+)", result.stdout) or ["?"])[0],
        result.stdout,
        result.stderr,
    )


def test_the_readme_blocks_really_get_a_token_and_call_the_resource(demo: Demo) -> None:
    result = _run_page(REPO / "README.rst", demo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "200 {'ok': True}" in result.stdout  # the API call with the token
    served = demo.stop()
    assert served["token"] == 1  # one token, then cache hits for the requests auth
    assert served["resource"] == 2


def test_the_manager_calls_of_the_tokens_page_revoke_a_live_token(demo: Demo) -> None:
    result = _run_page(REPO / "docs" / "tokens.rst", demo)
    assert result.returncode == 0, result.stdout + result.stderr
    served = demo.stop()
    assert served["revocation"] == 1 and served["token"] >= 3  # get, refresh, get after the revocation
    assert served["resource"] >= 1


def test_the_quick_start_revokes_and_the_resource_then_refuses(demo: Demo) -> None:
    result = _run_page(REPO / "docs" / "quickstart.rst", demo)
    assert result.returncode == 0, result.stdout + result.stderr
    token = subprocess.run(
        [sys.executable, "-m", "oauth_gateway", "token", "oauth-api", "--show"],
        capture_output=True,
        text=True,
        env=demo.env,
        cwd=str(demo.home),
        timeout=60,
    )
    assert token.returncode == 0, token.stderr  # the quick start's `oauth-gateway token oauth-api`, as pasted
    assert demo.stop()["revocation"] == 1


def test_no_run_marks_are_few_and_each_says_why():
    marked = [s for page in PAGES for s in snippets(page) if s.no_run]
    assert len(marked) <= MAX_NO_RUN, ["%s:%d" % (s.page, s.line) for s in marked]


def test_the_snippet_finder_sees_every_python_block():
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        assert len([s for s in snippets(page) if s.language == "python"]) == text.count(".. code-block:: python")
    assert len(PYTHON_PAGES) >= 7


def test_the_json_blocks_are_json_or_say_they_are_abridged():
    for page in PAGES:
        for snippet in snippets(page):
            if snippet.language != "json":
                continue
            if '"..."' in snippet.code or "..." in snippet.code:
                continue  # an abridged file
            json.loads(snippet.code)
