"""Signing cost per fetch against the fetch itself, and the cache hit with each method.

A forced refresh (``TokenManager.refresh``) against the loopback HTTPS token server, with
client_secret_basic and with private_key_jwt (ES256 on EC P-256, RS256 on RSA 2048): the
median time per refresh over N refreshes on a warm connection, and the median time of
one assertion's signing (the client's extra CPU per attempt). The server accepts any
well-formed assertion whose ``iss`` is the client (it does not verify signatures: the
figure is the client's cost plus one round trip). Then the cache hit, ``get_token`` on a
warm cache, for each method: the hit path never looks at the method, so the rows match.

Usage: python bench/fetch_sign_cost.py [--count N]   (needs trustme and 'oauth-gateway[jwt]')
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import timeit
from typing import Any, Dict, List, Optional, Sequence, Tuple

from _loopback import CLIENT_ID, CLIENT_SECRET, BenchServer, guard_loopback, isolate_environment, new_ca
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import oauth_gateway as og
from oauth_gateway._jwt import load_private_key
from oauth_gateway.client_auth import JWT_BEARER_ASSERTION_TYPE, PrivateKeyJwt

#: Forced refreshes per method (after a few warm-up ones), and cache hits per round.
DEFAULT_COUNT = 200
WARMUP = 5
HITS = 200_000
HIT_ROUNDS = 5


class AssertionServer(BenchServer):
    """The bench server, plus private_key_jwt: a well-formed assertion whose ``iss`` is the client."""

    def _authenticate(self, record: Any) -> Tuple[Optional[str], Any]:
        assertion = record.first("client_assertion")
        if assertion is None:
            return super()._authenticate(record)
        try:
            claims = json.loads(base64.urlsafe_b64decode(assertion.split(".")[1] + "=="))
        except (ValueError, IndexError):
            claims = {}
        if record.first("client_assertion_type") != JWT_BEARER_ASSERTION_TYPE or claims.get("iss") != CLIENT_ID:
            return None, self._invalid_client("bad client assertion")
        return CLIENT_ID, None


def _key_file(directory: str, name: str, key: Any) -> str:
    path = os.path.join(directory, name)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with open(path, "wb") as handle:
        handle.write(pem)
    os.chmod(path, 0o600)
    return path


def _refresh_ms(
    managers: List[og.TokenManager], configs: List[og.OAuthConfig], count: int
) -> List[Tuple[float, float]]:
    """``(median, fastest decile)`` ms per forced refresh of each config.

    The configs are timed in turn, one refresh of each per round, so a busy machine's
    noise hits all of them alike; the fastest decile shows the cost without that noise.
    """
    for manager, config in zip(managers, configs):
        for _ in range(WARMUP):
            manager.refresh("bench", config)
    times: List[List[float]] = [[] for _ in configs]
    for _ in range(count):
        for row, manager, config in zip(times, managers, configs):
            started = time.perf_counter()
            manager.refresh("bench", config)
            row.append(time.perf_counter() - started)
    return [(statistics.median(row) * 1000.0, statistics.quantiles(row, n=10)[0] * 1000.0) for row in times]


def _sign_ms(key_path: str, token_url: str, count: int) -> float:
    auth = PrivateKeyJwt(CLIENT_ID, load_private_key(key_path))
    times: List[float] = []
    for _ in range(count):
        form: Dict[str, str] = {}
        started = time.perf_counter()
        auth.apply(form, {}, token_endpoint=token_url, issuer=None, now=time.time())
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000.0


def _hit_ns(managers: List[og.TokenManager], configs: List[og.OAuthConfig]) -> List[float]:
    """Best-round ns per cache hit of each config, rounds taken in turn."""
    best = [float("inf")] * len(configs)
    for _ in range(HIT_ROUNDS):
        for index, (manager, config) in enumerate(zip(managers, configs)):
            get_token = manager.get_token
            get_token("bench", config)
            seconds = timeit.timeit(lambda: get_token("bench", config), number=HITS)  # noqa: B023
            best[index] = min(best[index], seconds / HITS * 1e9)
    return best


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="forced refreshes per method (median)")
    args = parser.parse_args(argv)
    guard_loopback()
    isolate_environment()
    server = AssertionServer(new_ca()).start()
    server.register_client(CLIENT_ID, CLIENT_SECRET)
    try:
        with tempfile.TemporaryDirectory() as directory:
            keys = {
                "ES256": _key_file(directory, "p256.pem", ec.generate_private_key(ec.SECP256R1())),
                "RS256": _key_file(
                    directory, "rsa.pem", rsa.generate_private_key(public_exponent=65537, key_size=2048)
                ),
            }
            common = {
                "enabled": True,
                "OAUTH_CLIENT_ID": CLIENT_ID,
                "OAUTH_TOKEN_URL": server.token_url,
                "OAUTH_ISSUER": server.url,  # the assertion's audience, without the fallback warning
                "OAUTH_CA_BUNDLE_PATH": server.ca_bundle,
            }
            configs = [
                (
                    "client_secret_basic",
                    None,
                    dict(common, OAUTH_CLIENT_SECRET=CLIENT_SECRET, OAUTH_USE_BASIC_AUTH=True),
                ),
            ]
            for alg, path in keys.items():
                block = dict(
                    common, OAUTH_CLIENT_PRIVATE_KEY_PATH=path, OAUTH_TOKEN_ENDPOINT_AUTH_METHOD="private_key_jwt"
                )
                configs.append(("private_key_jwt %s" % alg, path, block))
            print(
                "Python %s, oauth-gateway %s, %s; %d forced refreshes of each over HTTPS on 127.0.0.1"
                % (platform.python_version(), og.__version__, platform.machine(), args.count)
            )
            print(
                "%-24s %11s %11s %9s %11s %13s"
                % ("method", "refresh ms", "p10 ms", "sign ms", "sign share", "cache hit ns")
            )
            parsed = [og.OAuthConfig.from_dict(block) for _, _, block in configs]
            managers = [og.TokenManager() for _ in configs]
            try:
                refresh = _refresh_ms(managers, parsed, args.count)
                hits = _hit_ns(managers, parsed)
            finally:
                for manager in managers:
                    manager.close()
            for (label, key_path, _), (median_ms, p10_ms), hit_ns in zip(configs, refresh, hits):
                sign_ms = _sign_ms(key_path, server.token_url, args.count) if key_path else 0.0
                print(
                    "%-24s %11.3f %11.3f %9.3f %10.0f%% %13.0f"
                    % (label, median_ms, p10_ms, sign_ms, 100.0 * sign_ms / median_ms, hit_ns)
                )
            print(
                "(refresh ms: median; p10 ms: fastest decile; sign share: one assertion's signing over the\n"
                " median refresh; the client_secret_basic row is the fetch alone)"
            )
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
