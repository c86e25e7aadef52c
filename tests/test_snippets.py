"""Every Python code block of README.rst and docs/ runs as written, against the test servers.

The ``.. code-block:: python`` blocks of one page run in order in one fresh interpreter
(the installed package, a clean temporary directory as cwd and HOME), sharing one
namespace as a reader's session would: a block may use what an earlier block of the same
page defined. The environment is what the pages tell the reader to set:

* ``OAUTH_GATEWAY_CONFIG``: a gateway file whose server ``oauth-api`` (config name
  ``default_config``) gets its tokens from the HTTPS test server;
* ``IDP_CLIENT_ID``, ``IDP_CLIENT_SECRET``, ``IDP_TOKEN_URL``, ``IDP_REVOCATION_URL``:
  the same client and server, for the blocks that build a config by hand;
* ``API_URL``: the test server's protected resource; ``REQUESTS_CA_BUNDLE`` and ``IDP_CA_BUNDLE``: the test CA;
* ``METRICS_PORT``, ``OAUTH_TOKEN_CACHE_KEY``, ``XDG_CACHE_HOME``: what the cache and
  Prometheus blocks read.

A block that cannot run here is marked in the page, just before it, with the reST comment
``.. snippet: no-run -- <why>`` (invisible in the rendered page); the reason is required
and the marks are counted below, so they stay few.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List, NamedTuple

import pytest

from gatewayfile import write_gateway_file
from servers import TEST_CLIENT_ID, TEST_CLIENT_SECRET

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


@pytest.fixture
def reader_env(tmp_path, auth_server, make_block, ca_bundle):
    """The environment the pages tell a reader to set, pointing at the test servers."""
    gateway_file = write_gateway_file(tmp_path / "enkrypt_mcp_config.json", {"oauth-api": make_block(auth_server)})
    home = tmp_path / "home"
    home.mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith("OAUTH_GATEWAY")}
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        OAUTH_GATEWAY_CONFIG=gateway_file,
        IDP_CLIENT_ID=TEST_CLIENT_ID,
        IDP_CLIENT_SECRET=TEST_CLIENT_SECRET,
        IDP_TOKEN_URL=auth_server.token_url,
        IDP_REVOCATION_URL=auth_server.revocation_url,
        API_URL=auth_server.resource_url,
        UPSTREAM_URL=auth_server.resource_url,
        REQUESTS_CA_BUNDLE=ca_bundle,
        IDP_CA_BUNDLE=ca_bundle,
        METRICS_PORT="0",
        OAUTH_TOKEN_CACHE_KEY="u0Xy5vYbDm6nOq0fD3QxGQ2dJv8n3vVfJY3oVnKkWzM=",  # a Fernet key for tests only
    )
    return env, home


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=lambda page: page.relative_to(REPO).as_posix())
def test_every_python_block_of_the_page_runs(page, reader_env, auth_server):
    env, home = reader_env
    runnable = [s for s in snippets(page) if s.language == "python" and not s.no_run]
    assert runnable, "%s has only no-run blocks" % page
    result = subprocess.run(
        [sys.executable, "-c", _RUNNER, page.relative_to(REPO).as_posix()],
        input=json.dumps([(s.line, s.code) for s in runnable]),
        capture_output=True,
        text=True,
        cwd=str(home),
        env=env,
        timeout=120,
    )
    ran = [int(n) for n in re.findall(r"^SNIPPET-OK (\d+)$", result.stdout, re.M)]
    assert result.returncode == 0 and ran == [s.line for s in runnable], "%s: the block at line %s failed:\n%s%s" % (
        page.name,
        (re.findall(r"SNIPPET-FAILED (\d+)", result.stdout) or ["?"])[0],
        result.stdout,
        result.stderr,
    )


def test_the_pages_with_token_snippets_really_got_tokens(reader_env, auth_server):
    env, home = reader_env
    page = REPO / "README.rst"
    runnable = [s for s in snippets(page) if s.language == "python" and not s.no_run]
    subprocess.run(
        [sys.executable, "-c", _RUNNER, "README.rst"],
        input=json.dumps([(s.line, s.code) for s in runnable]),
        capture_output=True,
        text=True,
        cwd=str(home),
        env=env,
        timeout=120,
        check=True,
    )
    assert auth_server.count("/token") >= 3  # Getting a token, refresh, the seed gateway's calls
    assert auth_server.count("/resource") >= 1  # the API call with the token
    assert auth_server.count("/revoke") >= 1


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
