"""One tenant, one token: identity held in a file or a variable keeps tenants apart.

Two tenants run the same config text (the same ``OAUTH_CLIENT_ASSERTION_FILE`` path, the
same static provider ``env`` name) as separate processes on one real Redis or one shared
file cache; what the file or the variable holds differs. Each must get its own token,
and a second process of the same tenant must still share the first one's (one request).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List

import pytest

import oauth_gateway as og
from oauth_gateway._principal import ABSENT, principal_digest
from servers import JWT_BEARER_GRANT

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers", "token_worker.py")


def _jwt(**claims: Any) -> str:
    def part(value: Dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims.setdefault("iss", "https://kubernetes.default.svc")
    claims.setdefault("exp", time.time() + 600)
    return "%s.%s.c2lnbmF0dXJl" % (part({"alg": "RS256", "typ": "JWT"}), part(claims))


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:8]


@pytest.fixture(params=["redis", "file"])
def shared_cache(request, tmp_path):
    """A worker cache spec: the module's real Redis, or one file cache directory."""
    if request.param == "redis":
        return {"kind": "redis", "url": request.getfixturevalue("redis_server").url}
    return {"kind": "file", "path": str(tmp_path / "shared-cache")}


def _run_worker(directory, name: str, cache: Dict[str, Any], block: Dict[str, Any], server_name: str, **env: str):
    """Run one token_worker process to completion (one thread); return its report."""
    run = directory / name
    (run / "ready").mkdir(parents=True)
    (run / "go").write_text("")  # no barrier: the processes run one after the other
    job = {"cache": cache, "block": block, "server_name": server_name, "threads": 1}
    job.update(ready_dir=str(run / "ready"), go_file=str(run / "go"))
    job_path = run / "job.json"
    job_path.write_text(json.dumps(job))
    done = subprocess.run(
        [sys.executable, WORKER, str(job_path)],
        capture_output=True,
        timeout=60,
        env=dict(os.environ, **env),
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")[-3000:]
    report = json.loads(done.stdout.decode("utf-8").strip().splitlines()[-1])
    assert report["errors"] == [] and report["leaks"] == 0
    return report


def test_two_tenants_with_different_assertion_files_get_their_own_tokens(
    auth_server, make_block, tmp_path, shared_cache
):
    tenant_a, tenant_b = _jwt(sub="system:serviceaccount:tenant-a:gw"), _jwt(sub="system:serviceaccount:tenant-b:gw")
    rotated_a = _jwt(sub="system:serviceaccount:tenant-a:gw", exp=time.time() + 900)  # same workload, new token
    auth_server.accept_assertions(tenant_a, tenant_b, rotated_a)
    path = tmp_path / "projected" / "token"  # one path in the config text; each process sees its own file
    path.parent.mkdir()
    block = make_block(
        auth_server,
        OAUTH_GRANT_TYPE=JWT_BEARER_GRANT,
        OAUTH_CLIENT_ASSERTION_FILE=str(path),
        omit=("OAUTH_CLIENT_SECRET",),
    )
    server_name = "tenants-%s" % shared_cache["kind"]
    reports = []
    for name, assertion in (("a", tenant_a), ("a2", rotated_a), ("b", tenant_b)):
        path.write_text(assertion)
        reports.append(_run_worker(tmp_path, name, shared_cache, block, server_name))

    sent = [r.first("assertion") for r in auth_server.requests_to("/token")]
    assert sent == [tenant_a, tenant_b]  # one request per tenant; the second tenant-A process shared
    issued = [_fingerprint(token) for token in auth_server.issued_history]
    assert [r["fingerprints"] for r in reports] == [[issued[0]], [issued[0]], [issued[1]]]


def test_two_tenants_with_different_static_provider_variables_get_their_own_tokens(tmp_path, shared_cache):
    block = {"enabled": True, "OAUTH_PROVIDER": "static", "OAUTH_PROVIDER_OPTIONS": {"env": "TENANT_API_TOKEN"}}
    server_name = "static-%s" % shared_cache["kind"]
    got = [
        _run_worker(tmp_path, name, shared_cache, block, server_name, TENANT_API_TOKEN=value)["fingerprints"]
        for name, value in (("a", "token-of-tenant-a"), ("b", "token-of-tenant-b"))
    ]
    assert got == [[_fingerprint("token-of-tenant-a")], [_fingerprint("token-of-tenant-b")]]


def test_a_shared_entry_of_another_principal_is_a_miss_in_the_same_process(auth_server, make_block, tmp_path):
    from oauth_gateway.contrib.file_cache import FileTokenCache

    tenant_a, tenant_b = _jwt(sub="tenant-a"), _jwt(sub="tenant-b")
    auth_server.accept_assertions(tenant_a, tenant_b)
    path = tmp_path / "token"
    path.write_text(tenant_a)
    block = make_block(
        auth_server,
        OAUTH_GRANT_TYPE=JWT_BEARER_GRANT,
        OAUTH_CLIENT_ASSERTION_FILE=str(path),
        omit=("OAUTH_CLIENT_SECRET",),
    )
    config = og.OAuthConfig.from_dict(block)  # its fingerprint holds tenant A's digest
    cache_dir = str(tmp_path / "cache")
    with og.TokenManager(cache=FileTokenCache(cache_dir)) as first:
        token_a = first.get_token("api", config)
    path.write_text(tenant_b)  # the file now names another tenant; the config object is the old one
    with og.TokenManager(cache=FileTokenCache(cache_dir)) as second:
        token_b = second.get_token("api", config)
    assert token_b.access_token != token_a.access_token
    assert [r.first("assertion") for r in auth_server.requests_to("/token")] == [tenant_a, tenant_b]


# --------------------------------------------------------------------------- principal_digest


def test_principal_digest_of_a_jwt_is_its_issuer_and_subject(tmp_path):
    path = tmp_path / "token"
    path.write_text(_jwt(sub="workload", exp=1))
    first = principal_digest(file=str(path))
    path.write_text(_jwt(sub="workload", exp=2, jti="x") + "\n")  # rotated: same iss and sub
    assert principal_digest(file=str(path)) == first and first.startswith("jwt:")
    path.write_text(_jwt(sub="another"))
    assert principal_digest(file=str(path)) != first
    path.write_text(_jwt(sub="workload", iss="https://other.example"))
    assert principal_digest(file=str(path)) != first


def test_principal_digest_of_other_content_is_its_content_and_never_shows_it(tmp_path):
    secret = "opaque-api-key-1234567890"
    digest = principal_digest(env="TENANT_KEY", environ={"TENANT_KEY": secret})
    assert digest.startswith("sha256:") and secret not in digest and secret not in repr(digest)
    assert principal_digest(env="TENANT_KEY", environ={"TENANT_KEY": secret + "x"}) != digest
    path = tmp_path / "key"
    path.write_text(secret)
    assert principal_digest(file=str(path)) == digest  # one digest of one content, wherever it is held
    assert principal_digest(file=str(tmp_path / "missing")) == ABSENT
    assert principal_digest(env="UNSET", environ={}) == ABSENT
    assert principal_digest(env="EMPTY", environ={"EMPTY": ""}) not in (ABSENT, digest)


def test_the_config_fingerprint_follows_what_the_identity_file_holds(auth_server, make_block, tmp_path):
    path = tmp_path / "token"
    block = make_block(
        auth_server,
        OAUTH_GRANT_TYPE=JWT_BEARER_GRANT,
        OAUTH_CLIENT_ASSERTION_FILE=str(path),
        omit=("OAUTH_CLIENT_SECRET",),
    )
    fingerprints: List[str] = []
    for assertion in (_jwt(sub="a", exp=1), _jwt(sub="a", exp=2), _jwt(sub="b")):
        path.write_text(assertion)
        fingerprints.append(og.OAuthConfig.from_dict(block).fingerprint)
    assert fingerprints[0] == fingerprints[1] != fingerprints[2]
