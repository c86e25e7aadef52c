"""Start and stop real ``redis-server`` processes on free loopback ports for the tests.

The tests never use a Redis they did not start: each :class:`RedisServer` runs
Debian's ``redis-server`` binary with no persistence (``--save "" --appendonly no``)
in a temporary directory, on 127.0.0.1 only. :class:`RedisClusterServers` makes three
of them a Redis Cluster (``--cluster-enabled yes``, then ``redis-cli --cluster create``);
:class:`RedisSentinelServers` runs a master and ``redis-server --sentinel`` watching it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from typing import List, Optional, Sequence

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


def require_redis_cli() -> str:
    """Return the path of ``redis-cli`` (Debian ships it with redis-server, in redis-tools)."""
    require_redis()
    binary = shutil.which("redis-cli") or ("/usr/bin/redis-cli" if os.path.exists("/usr/bin/redis-cli") else None)
    if binary is None:
        message = "the Redis Cluster tests need redis-cli (Debian: apt-get install -y redis-tools)"
        if os.environ.get(SKIP_ENV) == "1":
            pytest.skip(message)
        pytest.fail(message, pytrace=False)
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

    def __init__(self, directory: str, binary: str, extra_args: Sequence[str] = ()):
        self.directory = directory
        self.binary = binary
        self.extra_args = list(extra_args)
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
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_ready():
                return self
            self.stop()
            self.port = 0
        raise RuntimeError("redis-server did not start; see the logs in %s" % self.directory)

    def _command(self) -> List[str]:
        return [
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
        ] + self.extra_args

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

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): it accepts connections but never answers, like a hung host."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s) and wait for it; a paused one is resumed first."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _wait_for(predicate, what: str, directory: str) -> None:
    """Poll ``predicate`` every 50 ms for at most :data:`_START_BUDGET` seconds."""
    deadline = time.monotonic() + _START_BUDGET
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("%s did not happen in %.0fs; see the logs in %s" % (what, _START_BUDGET, directory))
        time.sleep(0.05)


class RedisClusterServers:
    """Three ``redis-server --cluster-enabled yes`` masters joined by ``redis-cli --cluster create``.

    Args:
        directory: one sub-directory per node (its ``nodes.conf`` and log).
        count: how many masters (3, the smallest cluster redis-cli creates).
    """

    def __init__(self, directory: str, count: int = 3):
        binary = require_redis()
        self.cli = require_redis_cli()
        self.directory = directory
        self.nodes = [
            RedisServer(
                os.path.join(directory, "node-%d" % index),
                binary,
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    str(free_port()),
                    "--cluster-node-timeout",
                    "2000",
                ],
            )
            for index in range(count)
        ]

    @property
    def url(self) -> str:
        """``redis+cluster://`` naming the first two nodes: the client finds the third itself."""
        return "redis+cluster://%s" % ",".join("127.0.0.1:%d" % node.port for node in self.nodes[:2])

    def start(self) -> RedisClusterServers:
        try:
            for node in self.nodes:
                node.start()
            addresses = ["127.0.0.1:%d" % node.port for node in self.nodes]
            created = subprocess.run(
                [self.cli, "--cluster", "create"] + addresses + ["--cluster-replicas", "0", "--cluster-yes"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=30,
            )
            if created.returncode != 0:
                raise RuntimeError("redis-cli --cluster create failed:\n" + created.stdout.decode("utf-8", "replace"))
            _wait_for(self.is_ok, "cluster_state:ok on every node", self.directory)
        except BaseException:
            self.stop()
            raise
        return self

    def is_ok(self) -> bool:
        """True when every running node says ``cluster_state:ok`` and knows all the others."""
        for node in self.nodes:
            client = node.client()
            try:
                info = client.execute_command("CLUSTER INFO")
            except Exception:
                return False
            finally:
                client.close()
            if isinstance(info, bytes):  # redis-py parses CLUSTER INFO into a dict; older releases may not
                info = dict(line.split(":", 1) for line in info.decode().split() if ":" in line)
            values = {str(name): str(value) for name, value in info.items()}
            if values.get("cluster_state") != "ok" or values.get("cluster_known_nodes") != str(len(self.nodes)):
                return False
        return True

    def node_of(self, key: str) -> RedisServer:
        """The master holding the hash slot of ``key``."""
        first = self.nodes[0].client()
        try:
            slot = int(first.execute_command("CLUSTER KEYSLOT", key))
            ranges = first.execute_command("CLUSTER SLOTS")
        finally:
            first.close()
        for start, end, master, *_replicas in ranges:
            if int(start) <= slot <= int(end):
                port = int(master[1])
                return next(node for node in self.nodes if node.port == port)
        raise AssertionError("no node holds slot %d" % slot)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class SentinelServer(RedisServer):
    """``redis-server sentinel.conf --sentinel`` watching one master as ``service_name``."""

    def __init__(self, directory: str, binary: str, master_port: int, service_name: str):
        super().__init__(directory, binary)
        self.master_port = master_port
        self.service_name = service_name

    def _command(self) -> List[str]:
        # Sentinel rewrites its config file, so it is written anew in the temporary directory.
        path = os.path.join(self.directory, "sentinel-%d.conf" % self.port)
        with open(path, "w") as handle:
            handle.write(
                "port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n"
                "sentinel monitor %s 127.0.0.1 %d 1\n"
                "sentinel down-after-milliseconds %s 1000\n"
                % (
                    self.port,
                    self.directory,
                    os.path.join(self.directory, "sentinel-%d.log" % self.port),
                    self.service_name,
                    self.master_port,
                    self.service_name,
                )
            )
        return [self.binary, path, "--sentinel"]


class RedisSentinelServers:
    """A master and one Sentinel that knows it as ``service_name``."""

    def __init__(self, directory: str, service_name: str = "tokens"):
        binary = require_redis()
        self.directory = directory
        self.service_name = service_name
        self.master = RedisServer(os.path.join(directory, "master"), binary)
        self.sentinel: Optional[SentinelServer] = None
        self.binary = binary

    @property
    def url(self) -> str:
        assert self.sentinel is not None
        return "redis+sentinel://127.0.0.1:%d/%s/0" % (self.sentinel.port, self.service_name)

    def start(self) -> RedisSentinelServers:
        try:
            self.master.start()
            self.sentinel = SentinelServer(
                os.path.join(self.directory, "sentinel"), self.binary, self.master.port, self.service_name
            ).start()
            _wait_for(self._knows_master, "the Sentinel to report the master", self.directory)
        except BaseException:
            self.stop()
            raise
        return self

    def _knows_master(self) -> bool:
        assert self.sentinel is not None
        client = self.sentinel.client()
        try:
            address = client.execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", self.service_name)
        except Exception:
            return False
        finally:
            client.close()
        return bool(address) and int(address[1]) == self.master.port

    def stop(self) -> None:
        if self.sentinel is not None:
            self.sentinel.stop()
        self.master.stop()
