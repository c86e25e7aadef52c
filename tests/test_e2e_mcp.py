"""End-to-end token injection into MCP servers, with real parts only.

Remote: a protected MCP server (the ``mcp`` SDK 2.x's streamable HTTP app under uvicorn, HTTPS on
127.0.0.1, ``tests/e2e/protected_server.py``) accepts only tokens the test authorization server
reports active. The gateway fetches a token with :class:`~oauth_gateway.TokenManager`,
:func:`~oauth_gateway.injection.inject_token` rewrites an ``npx -y mcp-remote URL`` entry, and
the ``mcp`` SDK's stdio client launches exactly that entry (the real ``mcp-remote`` from
``tests/e2e/node_modules``) and lists the server's tools through it. A token the server did
not issue, and a revoked one, make the same launch fail by itself, quickly. While the proxy
runs, a watcher reads every process's ``/proc/<pid>/cmdline`` (what ``ps`` shows) and fails
the test if the access token appears in one.

Local: ``tests/e2e/local_server.py`` is launched as a stdio MCP server with the injected
environment; its ``whoami`` tool answers hashes of the token variables it received.

Needs Python >= 3.10 with ``mcp`` and ``uvicorn`` (skipped otherwise), and ``node`` with
``npm ci`` run in ``tests/e2e`` (a failure otherwise, unless ``OAUTH_GATEWAY_SKIP_E2E=1``).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Set, Tuple

import pytest

if os.environ.get("OAUTH_GATEWAY_SKIP_E2E") == "1":
    pytest.skip("end-to-end MCP tests skipped: OAUTH_GATEWAY_SKIP_E2E=1", allow_module_level=True)
if sys.version_info < (3, 10):
    pytest.skip(
        "end-to-end MCP tests need Python >= 3.10 (the mcp SDK does); they run on the 3.13 leg",
        allow_module_level=True,
    )
if not sys.platform.startswith("linux"):
    pytest.skip("end-to-end MCP tests read /proc and use process groups: Linux only", allow_module_level=True)
pytest.importorskip("mcp", reason="end-to-end MCP tests need the mcp SDK (pip install the tests extra)")
pytest.importorskip("uvicorn", reason="end-to-end MCP tests need uvicorn (pip install the tests extra)")

if int(importlib.metadata.version("mcp").split(".")[0]) < 2:
    # tests/e2e's servers are MCPServer apps (mcp 2.x; FastMCP in 1.x, with another API).
    raise ImportError(
        "tests/test_e2e_mcp.py needs mcp 2.x, found %s; install the tests extra (it requires 'mcp>=2.3.0,<3')"
        % importlib.metadata.version("mcp")
    )

from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

from oauth_gateway import OAuthConfig, Token, TokenManager  # noqa: E402
from oauth_gateway.injection import inject_token  # noqa: E402

# Slow integration test: scripts/test --fast (-m "not slow") leaves it out.
pytestmark = pytest.mark.slow

E2E_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "e2e")
PROTECTED_SERVER = os.path.join(E2E_DIR, "protected_server.py")
LOCAL_SERVER = os.path.join(E2E_DIR, "local_server.py")
MCP_REMOTE_PACKAGE = os.path.join(E2E_DIR, "node_modules", "mcp-remote", "package.json")

#: The protected server's tools (see protected_server.py).
PROTECTED_TOOLS = ["add", "echo"]
#: Seconds for one whole client run (launch, handshake, calls, shutdown): a hang guard only.
CLIENT_TIMEOUT = 60.0
#: Seconds the protected server may take to print READY.
SERVER_START_TIMEOUT = 30.0
#: How often, and for how long at most, the argv watcher scans /proc.
WATCH_INTERVAL = 0.05
WATCH_LIMIT = 2 * CLIENT_TIMEOUT
#: Placeholder that mcp-remote expands from its environment (what inject_token writes).
PLACEHOLDER = "${AUTH_HEADER}"


# --------------------------------------------------------------------------- helpers


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _require_mcp_remote() -> None:
    """Fail (not skip) when node or the pinned mcp-remote is missing."""
    hint = "run `npm ci` in tests/e2e (or set OAUTH_GATEWAY_SKIP_E2E=1 to skip the end-to-end tests)"
    if shutil.which("node") is None or shutil.which("npx") is None:
        pytest.fail("node and npx are needed for the mcp-remote end-to-end test; install Node.js >= 20 and %s" % hint)
    if not os.path.isfile(MCP_REMOTE_PACKAGE):
        pytest.fail("tests/e2e/node_modules/mcp-remote is missing; %s" % hint)
    with open(os.path.join(E2E_DIR, "package.json"), encoding="utf-8") as handle:
        pinned = json.load(handle)["dependencies"]["mcp-remote"]
    with open(MCP_REMOTE_PACKAGE, encoding="utf-8") as handle:
        installed = json.load(handle)["version"]
    if installed != pinned:
        pytest.fail("tests/e2e has mcp-remote %s installed but package.json pins %s; %s" % (installed, pinned, hint))


def _kill_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` unless it is ours. Ignores a gone process."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    if pgid == os.getpgrp():
        return
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _child_env(home: str, extra: Dict[str, str]) -> Dict[str, str]:
    """A minimal environment: PATH, a private HOME, then ``extra`` (the entry's env wins)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LANG": "C.UTF-8"}
    env.update(extra)
    return env


def _assert_no_secret(path: str, secret: str, what: str) -> None:
    with open(path, encoding="utf-8", errors="replace") as handle:
        text = handle.read()
    # A plain flag: pytest would print both operands of `secret not in text`.
    leaked = secret in text
    assert not leaked, "the access token appears in %s (%s)" % (what, path)


class ArgvWatch:
    """Scans ``/proc/*/cmdline`` in a thread, as ``ps`` would, while the proxy runs.

    Records processes whose arguments contain ``secret`` (a failure) and those whose
    arguments contain ``marker`` (the protected server's URL: the proxy and its npx
    launcher), so a test can show that the watcher did see the proxy.

    Args:
        secret: the access token that must never appear in any argv.
        marker: a string that identifies the proxy's argv.
    """

    def __init__(self, secret: str, marker: str) -> None:
        self._secret = secret.encode("utf-8")
        self._marker = marker.encode("utf-8")
        self._placeholder = PLACEHOLDER.encode("utf-8")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="argv-watch", daemon=True)
        self.scans = 0
        self.offenders: Set[Tuple[int, str]] = set()
        self.proxy_pids: Set[int] = set()
        self.placeholder_seen = False

    def __enter__(self) -> ArgvWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join(WATCH_INTERVAL * 20 + 5)
        # The client already ended the proxy's process group; this catches a straggler.
        for pid in self.proxy_pids:
            if self._marker in self._argv(pid):  # still ours, not a reused pid
                _kill_group(pid)

    @staticmethod
    def _argv(pid: int) -> bytes:
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as handle:
                return handle.read()
        except OSError:
            return b""

    def _run(self) -> None:
        deadline = time.monotonic() + WATCH_LIMIT
        while not self._stop.is_set() and time.monotonic() < deadline:
            self._scan()
            self._stop.wait(WATCH_INTERVAL)

    def _scan(self) -> None:
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            argv = self._argv(int(name))  # b"" when gone between listdir and open
            if self._secret in argv:
                # Only the program's name, with the secret cut out: npm puts its whole
                # command line into argv[0] (process.title).
                program = argv.replace(self._secret, b"***").split(b"\0", 1)[0].split(b" ", 1)[0]
                self.offenders.add((int(name), program.decode("utf-8", "replace")))
            if self._marker in argv:
                self.proxy_pids.add(int(name))
                if self._placeholder in argv:
                    self.placeholder_seen = True
        self.scans += 1


class ProtectedServer:
    """The protected MCP server subprocess (tests/e2e/protected_server.py).

    Attributes:
        url: its MCP endpoint, ``https://127.0.0.1:<port>/mcp``.
        events_path: file with one ``accepted``/``rejected`` line per authentication decision.
        log_path: its stderr.
    """

    def __init__(self, workdir: str, certfile: str, introspection_url: str, ca_bundle: str) -> None:
        self.events_path = os.path.join(workdir, "protected-events.txt")
        self.log_path = os.path.join(workdir, "protected-server.log")
        self._log = open(self.log_path, "w", encoding="utf-8")
        self._process = subprocess.Popen(
            [
                sys.executable,
                PROTECTED_SERVER,
                "--certfile",
                certfile,
                "--introspection-url",
                introspection_url,
                "--ca-bundle",
                ca_bundle,
                "--events",
                self.events_path,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=_child_env(workdir, {}),
            cwd=workdir,
            start_new_session=True,
        )
        self.url = "https://127.0.0.1:%d/mcp" % self._wait_ready()

    def _wait_ready(self) -> int:
        lines: queue.Queue[str] = queue.Queue()
        stdout = self._process.stdout
        assert stdout is not None

        def pump() -> None:
            # Reads to EOF (the server's exit) and closes the pipe itself, so stop()
            # never closes it under this thread.
            with stdout:
                for raw in iter(stdout.readline, b""):
                    lines.put(raw.decode("utf-8", "replace"))
            lines.put("")

        threading.Thread(target=pump, name="protected-server-stdout", daemon=True).start()
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                pytest.fail(
                    "protected MCP server did not print READY within %ss; see %s"
                    % (SERVER_START_TIMEOUT, self.log_path)
                )
            if line.startswith("READY "):
                return int(line.split()[1])
            if line == "":
                self.stop()
                with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                    tail = handle.read()[-2000:]
                pytest.fail("protected MCP server exited before READY:\n%s" % tail)

    def events(self) -> List[str]:
        """Return the authentication decisions so far, in order."""
        if not os.path.exists(self.events_path):
            return []
        with open(self.events_path, encoding="utf-8") as handle:
            return handle.read().split()

    def stop(self) -> None:
        """Terminate the server's process group (SIGTERM, then SIGKILL after 5 s)."""
        if self._process.poll() is None:
            try:
                os.killpg(self._process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                pass
        try:
            # Its own group (start_new_session): whatever is left of it, and nothing else.
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._process.wait(5)
        self._log.close()


async def _run_client(params: StdioServerParameters, errlog_path: str, calls: Any) -> Any:
    """Launch ``params`` over stdio, initialize, and return ``await calls(session)``."""
    with open(errlog_path, "a", encoding="utf-8") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await calls(session)


def _launch(entry: Dict[str, Any], env: Dict[str, str], cwd: str, errlog_path: str, calls: Any) -> Any:
    """Run the client against the entry's command and args with ``env``, bounded in time.

    Returns:
        What ``calls(session)`` returned.

    Raises:
        Whatever the client raised; ``asyncio.TimeoutError`` when CLIENT_TIMEOUT passed.
    """
    config = entry["config"]
    params = StdioServerParameters(command=config["command"], args=list(config["args"]), env=env, cwd=cwd)
    return asyncio.run(asyncio.wait_for(_run_client(params, errlog_path, calls), CLIENT_TIMEOUT))


async def _tool_names(session: ClientSession) -> List[str]:
    result = await session.list_tools()
    return sorted(tool.name for tool in result.tools)


async def _tool_names_and_sum(session: ClientSession) -> Tuple[List[str], str]:
    names = await _tool_names(session)
    result = await session.call_tool("add", {"a": 2, "b": 40})
    assert not result.is_error
    return names, result.content[0].text


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def protected_server(ca, ca_bundle, auth_server, tmp_path):
    """A running protected MCP server that trusts only ``auth_server``'s active tokens."""
    certfile = str(tmp_path / "protected-server.pem")
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(certfile)
    server = ProtectedServer(str(tmp_path), certfile, auth_server.introspection_url, ca_bundle)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mcp_remote_installed() -> None:
    """Fail (not skip) at once when node or the pinned mcp-remote is missing."""
    _require_mcp_remote()


@pytest.fixture
def remote_setup(mcp_remote_installed, auth_server, make_block, protected_server, ca_bundle, tmp_path):
    """What the remote tests share: a manager, the config, the entry and the launch env."""
    block = make_block(auth_server)
    block["is_remote"] = True
    entry = {
        "server_name": "protected-e2e",
        "config": {
            "command": "npx",
            # The user's own mcp-remote options come first; inject_token appends the header.
            "args": ["-y", "mcp-remote", protected_server.url, "--transport", "http-only", "--auth-timeout", "5"],
        },
        "oauth_config": block,
    }
    home = tmp_path / "home"
    home.mkdir()
    base_env = {
        "NODE_EXTRA_CA_CERTS": ca_bundle,
        "MCP_REMOTE_CONFIG_DIR": str(tmp_path / "mcp-auth"),
        # npx must find the pinned mcp-remote in tests/e2e and never ask the registry.
        "npm_config_offline": "true",
        "npm_config_update_notifier": "false",
        "npm_config_cache": str(tmp_path / "npm-cache"),
    }
    return {
        "manager": TokenManager(),
        "config": OAuthConfig.from_dict(block),
        "entry": entry,
        "home": str(home),
        "base_env": base_env,
        "errlog": str(tmp_path / "mcp-remote-stderr.log"),
    }


def _injected_remote(setup: Dict[str, Any], token: Token) -> Tuple[Dict[str, Any], Dict[str, str]]:
    injected = inject_token(setup["entry"], token)
    args = injected["config"]["args"]
    assert args[: len(setup["entry"]["config"]["args"])] == setup["entry"]["config"]["args"]
    assert args[-2:] == ["--header", "Authorization:" + PLACEHOLDER]
    # Flags and hashes only: a failing assertion must not print the token.
    in_args = token.access_token in json.dumps(args)
    assert not in_args, "inject_token put the access token into the arguments"
    assert _sha256(injected["config"]["env"]["AUTH_HEADER"]) == _sha256("Bearer " + token.access_token)
    env = dict(setup["base_env"])
    env.update(injected["config"]["env"])
    return injected, _child_env(setup["home"], env)


# --------------------------------------------------------------------------- remote


def test_mcp_remote_lists_tools_with_injected_token(remote_setup, protected_server, auth_server):
    token = remote_setup["manager"].get_token("protected-e2e", remote_setup["config"], config_id="e2e")
    injected, env = _injected_remote(remote_setup, token)
    introspections_before = auth_server.count("/introspect")

    with ArgvWatch(token.access_token, protected_server.url) as watch:
        tools, total = _launch(injected, env, E2E_DIR, remote_setup["errlog"], _tool_names_and_sum)

    assert tools == PROTECTED_TOOLS
    assert total == "42"
    events = protected_server.events()
    assert "accepted" in events
    assert "rejected" not in events, "mcp-remote sent a request without the injected header"
    assert auth_server.count("/introspect") - introspections_before == len(events)
    assert not watch.offenders, "the access token is visible in the argv of %r" % (sorted(watch.offenders),)
    assert watch.scans > 0
    assert watch.proxy_pids, "the argv watcher never saw the mcp-remote process"
    assert watch.placeholder_seen, "mcp-remote's argv did not carry the literal %s" % PLACEHOLDER
    _assert_no_secret(remote_setup["errlog"], token.access_token, "mcp-remote's stderr")
    _assert_no_secret(protected_server.log_path, token.access_token, "the protected server's log")


@pytest.mark.parametrize("kind", ["never-issued", "revoked"])
def test_mcp_remote_with_wrong_token_fails_fast(kind, remote_setup, protected_server, auth_server):
    manager, config = remote_setup["manager"], remote_setup["config"]
    if kind == "revoked":
        token = manager.get_token("protected-e2e", config, config_id="e2e")
        manager.revoke("protected-e2e", config, config_id="e2e")
        revoked = token.access_token in auth_server.revoked
        assert revoked, "the authorization server did not record the revocation"
    else:
        token = Token(access_token="never-issued-" + secrets.token_urlsafe(24), expires_in=3600)
        issued = token.access_token in auth_server.issued_history
        assert not issued
    injected, env = _injected_remote(remote_setup, token)

    with ArgvWatch(token.access_token, protected_server.url) as watch:
        with pytest.raises(Exception) as failure:
            _launch(injected, env, E2E_DIR, remote_setup["errlog"], _tool_names)

    # It failed by itself (the proxy gave up on the 401), not through our hang guard.
    assert not isinstance(failure.value, asyncio.TimeoutError), "mcp-remote hung on a 401"
    assert not isinstance(failure.value, (KeyboardInterrupt, SystemExit))
    events = protected_server.events()
    assert "rejected" in events
    assert "accepted" not in events
    assert watch.proxy_pids, "the argv watcher never saw the mcp-remote process"
    assert not watch.offenders, "the access token is visible in the argv of %r" % (sorted(watch.offenders),)
    _assert_no_secret(remote_setup["errlog"], token.access_token, "mcp-remote's stderr")
    _assert_no_secret(protected_server.log_path, token.access_token, "the protected server's log")


# --------------------------------------------------------------------------- local


async def _whoami(session: ClientSession) -> Dict[str, Any]:
    result = await session.call_tool("whoami", {})
    assert not result.is_error
    return json.loads(result.content[0].text)


def test_local_server_receives_injected_token(auth_server, make_block, tmp_path):
    block = make_block(auth_server)
    entry = {
        "server_name": "local-e2e",
        "config": {"command": sys.executable, "args": [LOCAL_SERVER]},
        "oauth_config": block,
    }
    token = TokenManager().get_token("local-e2e", OAuthConfig.from_dict(block), config_id="e2e")
    injected = inject_token(entry, token)
    assert injected["config"]["args"] == [LOCAL_SERVER]
    errlog = str(tmp_path / "local-server-stderr.log")

    # Control: the same server launched without injection received nothing.
    bare = _launch(entry, _child_env(str(tmp_path), {}), str(tmp_path), errlog, _whoami)
    assert set(bare["sha256"].values()) == {None}
    assert bare["consistent"] is False

    env = _child_env(str(tmp_path), dict(injected["config"]["env"]))
    report = _launch(injected, env, str(tmp_path), errlog, _whoami)

    bearer = "Bearer " + token.access_token
    assert report["sha256"] == {
        "ENKRYPT_ACCESS_TOKEN": _sha256(token.access_token),
        "OAUTH_ACCESS_TOKEN": _sha256(token.access_token),
        "AUTHORIZATION": _sha256(bearer),
        "AUTH_HEADER": _sha256(bearer),
        "HTTP_HEADER_Authorization": _sha256(bearer),
        "HTTP_HEADER_AUTHORIZATION": _sha256(bearer),
        "OAUTH_TOKEN_TYPE": _sha256("Bearer"),
    }
    assert report["consistent"] is True
    _assert_no_secret(errlog, token.access_token, "the local server's stderr")
