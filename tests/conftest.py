"""Shared fixtures: the loopback HTTPS authorization server, certificates, fake time.

Also the suite-wide secret leak check: every log record of the run is kept (formatted),
and the run fails if one contains a client secret or access token known to
``leaks.SECRETS``. The report names the logger and the test, never the secret.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from typing import Any, Callable, Dict, Iterator, Tuple

import pytest

if __package__:  # tests/ is a package (tests/__init__.py exists)
    from . import fakes, leaks, servers
else:  # rootdir-relative import: pytest put tests/ on sys.path
    import fakes
    import leaks
    import servers

# One module object under both names, so SECRETS is one registry however tests import it.
for _name, _module in (("fakes", fakes), ("leaks", leaks), ("servers", servers)):
    sys.modules.setdefault(_name, _module)
    sys.modules.setdefault("tests." + _name, _module)

_LEAK_LOGGERS = ("oauth_gateway", "urllib3")
_capture = leaks.LogCapture(logging.DEBUG)


# --------------------------------------------------------------------------- leak check


def pytest_configure(config: pytest.Config) -> None:
    logging.getLogger().addHandler(_capture)
    for name in _LEAK_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)


def pytest_unconfigure(config: pytest.Config) -> None:
    logging.getLogger().removeHandler(_capture)


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    _capture.current_test = nodeid


def pytest_runtest_logfinish(nodeid: str, location: Any) -> None:
    _capture.current_test = ""


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    found = leaks.find_leaks(_capture.entries, leaks.SECRETS.snapshot())
    if not found:
        return
    session.exitstatus = 1
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = ["a client secret or access token reached a log record (run fails):"]
    for logger_name, nodeid in found:
        lines.append("  logger %r during %s" % (logger_name, nodeid or "(outside a test)"))
    if reporter is None:
        sys.stderr.write("\nSECRET LEAK: " + "\n".join(lines) + "\n")
        return
    reporter.write_line("")  # end the progress line
    reporter.write_sep("=", "SECRET LEAK", red=True, bold=True)
    for line in lines:
        reporter.write_line(line, red=True)


# --------------------------------------------------------------------------- certificates


@pytest.fixture(scope="session")
def ca() -> servers.trustme.CA:
    """A trustme certificate authority for the whole run."""
    return servers.trustme.CA()


@pytest.fixture(scope="session")
def ca_bundle(ca, tmp_path_factory) -> str:
    """Path of a PEM file holding the ``ca`` certificate."""
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="session")
def client_cert(ca, tmp_path_factory) -> Tuple[str, str]:
    """A client certificate issued by ``ca``: ``(cert_chain_path, key_path)`` (key 0600)."""
    directory = tmp_path_factory.mktemp("client-cert")
    leaf = ca.issue_cert("client.test.example", common_name="test-client")
    cert_path = str(directory / "client.pem")
    key_path = str(directory / "client.key")
    with open(cert_path, "wb") as handle:
        for blob in leaf.cert_chain_pems:
            handle.write(blob.bytes())
    leaf.private_key_pem.write_to_path(key_path)
    os.chmod(key_path, 0o600)
    return cert_path, key_path


# --------------------------------------------------------------------------- servers


def _started(server: servers.AuthServer) -> servers.AuthServer:
    server.register_client(servers.TEST_CLIENT_ID, servers.TEST_CLIENT_SECRET)
    return server.start()


@pytest.fixture
def auth_server(ca) -> Iterator[servers.AuthServer]:
    """A started server with the client ``"test client:1"`` / ``"a:b/c+d%e&f="``.

    Client certificates chaining to ``ca`` are optional, so ``tls_client_auth`` works too.
    """
    server = _started(servers.AuthServer(ca, client_ca=ca))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mtls_server(ca) -> Iterator[servers.AuthServer]:
    """A started server that requires a client certificate issued by ``ca``."""
    server = _started(servers.AuthServer(ca, require_client_cert=True, client_ca=ca))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_server(ca) -> Iterator[Callable[..., servers.AuthServer]]:
    """Factory: ``make_server(server_class=AuthServer, **kwargs)`` -> started server with the test client."""
    started = []

    def make(server_class: Any = servers.AuthServer, **kwargs: Any) -> servers.AuthServer:
        server = _started(server_class(ca, **kwargs))
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def make_block(ca_bundle) -> Callable[..., Dict[str, Any]]:
    """``make_block(server, **overrides)`` -> ``oauth_config`` dict using ``ca_bundle``."""
    return functools.partial(servers.oauth_block, ca_bundle=ca_bundle)


@pytest.fixture
def make_config(ca_bundle) -> Callable[..., Any]:
    """``make_config(server, omit=(), **overrides)`` -> an ``OAuthConfig`` for ``server``.

    ``server`` is an :class:`servers.AuthServer`: the block is :func:`make_block`'s (its
    first client, token and revocation URLs, ``ca_bundle``). For a server of another kind,
    pass ``None`` and the keys: the block is ``enabled``, ``OAUTH_CA_BUNDLE_PATH`` and them.
    """
    from oauth_gateway import OAuthConfig

    def make(server: Any, omit: Any = (), **overrides: Any) -> Any:
        if server is None:
            block: Dict[str, Any] = {"enabled": True, "OAUTH_CA_BUNDLE_PATH": ca_bundle}
            block.update(overrides)
            for key in omit:
                block.pop(key, None)
        else:
            block = servers.oauth_block(server, ca_bundle=ca_bundle, omit=omit, **overrides)
        return OAuthConfig.from_dict(block)

    return make


# --------------------------------------------------------------------------- time


@pytest.fixture
def clock() -> fakes.FakeClock:
    """A fake monotonic clock starting at 1000.0; move it with ``advance()``."""
    return fakes.FakeClock()


@pytest.fixture
def sleeps(clock) -> fakes.RecordingSleep:
    """A sleep that records delays in ``.calls`` and advances ``clock`` instead of waiting."""
    return fakes.RecordingSleep(clock)


@pytest.fixture
def manager(clock, sleeps):
    """A TokenManager on the fake clock and recording sleep, closed after the test.

    Modules that need another kind (background refresh on, the real clock) override it
    with a fixture of the same name that says why.
    """
    import oauth_gateway as og

    with og.TokenManager(clock=clock, sleep=sleeps) as made:
        yield made


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """A real redis-server on a free loopback port, for one test module."""
    from workers.redis_server import RedisServer, require_redis

    server = RedisServer(str(tmp_path_factory.mktemp("redis")), require_redis()).start()
    try:
        yield server
    finally:
        server.stop()
