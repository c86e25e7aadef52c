"""The benchmark's only network: a loopback HTTPS token server, and a guard that keeps it so.

:class:`BenchServer` is the test suite's :class:`AuthServer` (``tests/servers.py``, a real
HTTPS server on 127.0.0.1 with a trustme CA) plus an OpenID discovery document, which MSAL
reads before it asks for a token. :func:`guard_loopback` makes every socket of this process
refuse to connect anywhere but the loopback range, so a peer library that would call home
(MSAL's instance discovery, for one) fails instead of leaving the machine.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from typing import Any, Tuple

_TESTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from servers import AuthServer, _json_reply  # noqa: E402  (tests/servers.py)

#: The client every benchmark authenticates as (plain characters, so every peer encodes it alike).
CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-secret-0123456789abcdef"
#: Path under the server that MSAL treats as its OIDC authority.
OIDC_TENANT = "/bench-tenant"


class LoopbackOnlyError(OSError):
    """Raised when code in the benchmark process tries to connect outside 127.0.0.0/8 or ::1."""


def _is_loopback(address: Any, family: int) -> bool:
    if family == getattr(socket, "AF_UNIX", None):
        return True
    host = address[0] if isinstance(address, tuple) else address
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return str(host) == "localhost"


def guard_loopback() -> None:
    """Make ``socket.connect`` refuse any address outside the loopback range, for this process.

    Idempotent. Name resolution of other hosts still happens (it is not a connection),
    but nothing is ever sent to them.
    """
    if getattr(socket.socket, "_bench_guarded", False):
        return
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def connect(self, address):
        if not _is_loopback(address, self.family):
            raise LoopbackOnlyError("the benchmark connects to loopback addresses only, not %r" % (address,))
        return original_connect(self, address)

    def connect_ex(self, address):
        if not _is_loopback(address, self.family):
            raise LoopbackOnlyError("the benchmark connects to loopback addresses only, not %r" % (address,))
        return original_connect_ex(self, address)

    socket.socket.connect = connect  # type: ignore[assignment]
    socket.socket.connect_ex = connect_ex  # type: ignore[assignment]
    socket.socket._bench_guarded = True  # type: ignore[attr-defined]


#: Variables that would make requests ignore a session's ``verify`` or route loopback through a proxy.
_ENVIRONMENT_OVERRIDES = (
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
)


def isolate_environment() -> None:
    """Drop the variables that would point this process's HTTPS elsewhere than the bench CA and server.

    requests lets ``REQUESTS_CA_BUNDLE`` and ``CURL_CA_BUNDLE`` override a session's
    ``verify`` (the peers configure theirs that way), and a proxy variable would send
    loopback traffic to the proxy. Only this process is affected.
    """
    for name in _ENVIRONMENT_OVERRIDES:
        os.environ.pop(name, None)


class BenchServer(AuthServer):
    """AuthServer with ``<url>/bench-tenant/.well-known/openid-configuration`` for MSAL. Thread-safe."""

    @property
    def oidc_authority(self) -> str:
        return self.url + OIDC_TENANT

    def _answer(self, record):
        if record.path.endswith("/.well-known/openid-configuration"):
            return _json_reply(
                200,
                {
                    "issuer": self.oidc_authority,
                    "authorization_endpoint": self.url + "/authorize",
                    "token_endpoint": self.token_url,
                    "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                },
            )
        return super()._answer(record)


def start_server(ca: Any, latency: float = 0.0) -> Tuple[BenchServer, str]:
    """Start a :class:`BenchServer` on 127.0.0.1 that knows the bench client.

    Returns:
        The started server and the path of its CA bundle (PEM).
    """
    server = BenchServer(ca, latency=latency).start()
    server.register_client(CLIENT_ID, CLIENT_SECRET)
    return server, server.ca_bundle


def new_ca() -> Any:
    """Return a new trustme CA (imported here: trustme warns on import under Python 3.8)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import trustme

        return trustme.CA()
