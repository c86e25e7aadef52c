"""Start and stop a real ``redis-server`` on a free loopback port for the tests.

The tests never use a Redis they did not start: each :class:`RedisServer` runs
Debian's ``redis-server`` binary with no persistence (``--save "" --appendonly no``)
in a temporary directory, on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from typing import Optional

import pytest

#: Set to 1 to skip (instead of fail) the Redis tests where redis-server or redis-py is missing.
SKIP_ENV = "OAUTH_GATEWAY_SKIP_REDIS"

_START_BUDGET = 10.0


def require_redis() -> str:
    """Return the path of ``redis-server``; fail the test (or skip, with ``OAUTH_GATEWAY_SKIP_REDIS=1``) without it."""
    missing = []
    binary = shutil.which("redis-server")
    if binary is None and os.path.exists("/usr/bin/redis-server"):  # PATH without /usr/bin
        binary = "/usr/bin/redis-server"
    if binary is None:
        missing.append("the redis-server binary (Debian: apt-get install -y redis-server)")
    try:
        import redis  # noqa: F401
    except ImportError:
        missing.append("the redis Python package (pip install 'oauth-gateway[tests]')")
    if missing:
        message = "the Redis tests need %s; or set %s=1 to skip them" % (" and ".join(missing), SKIP_ENV)
        if os.environ.get(SKIP_ENV) == "1":
            pytest.skip(message)
        pytest.fail(message, pytrace=False)
    assert binary is not None
    return binary


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One ``redis-server`` process; :meth:`stop` and :meth:`start` again keep the port.

    Args:
        directory: its working directory (``--dir``) and log file location.
        binary: the ``redis-server`` path (:func:`require_redis`).
    """

    def __init__(self, directory: str, binary: str):
        self.directory = directory
        self.binary = binary
        self.port = 0
        self.process: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return "redis://127.0.0.1:%d/0" % self.port

    def start(self) -> RedisServer:
        """Start on the previous port, or a free one the first time; wait until it answers PING."""
        os.makedirs(self.directory, exist_ok=True)
        for _ in range(3):  # another process may grab a free port before redis-server binds it
            if not self.port:
                self.port = free_port()
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    self.directory,
                    "--logfile",
                    os.path.join(self.directory, "redis-%d.log" % self.port),
                    "--daemonize",
                    "no",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_ready():
                return self
            self.stop()
            self.port = 0
        raise RuntimeError("redis-server did not start; see the logs in %s" % self.directory)

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + _START_BUDGET
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def client(self):
        """A new plain ``redis.Redis`` on this server (no oauth_gateway involved)."""
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, db=0, socket_timeout=5)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s) and wait for it."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
