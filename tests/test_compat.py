"""The seed gateway's documented calls return (value, error) tuples."""

from __future__ import annotations

import threading

import oauth_gateway as og
from oauth_gateway import compat
from servers import Fault


def test_get_oauth_service_is_one_object_across_threads(monkeypatch):
    monkeypatch.setattr(compat, "_default_service", None)
    seen = []
    barrier = threading.Barrier(8)

    def grab():
        barrier.wait()
        seen.append(og.get_oauth_service())

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(seen) == 8 and len({id(service) for service in seen}) == 1
    assert isinstance(seen[0].manager, og.TokenManager)


def test_seed_calls_work_unchanged_without_await(monkeypatch, auth_server, make_block):
    monkeypatch.setattr(compat, "_default_service", None)
    server_entry = {"server_name": "oauth-api", "oauth_config": make_block(auth_server)}
    service = og.get_oauth_service()

    token, error = og.refresh_server_oauth_token("oauth-api", server_entry, "config-id")
    assert error is None and type(token) is str and token in auth_server.issued

    again, error = service.get_access_token("oauth-api", server_entry["oauth_config"], "config-id")
    assert again == token and type(again) is str and error is None

    success, error = service.revoke_token(
        server_name="oauth-api",
        token=token,
        oauth_config=server_entry["oauth_config"],
        token_type_hint="access_token",
    )
    assert (success, error) == (True, None)
    assert token in auth_server.revoked

    assert og.invalidate_server_oauth_token("oauth-api", "config-id") == (True, None)
    metrics = service.get_metrics()
    assert metrics["token_acquisitions_total"] == 1
    assert metrics["token_revocations"] == 1


def test_errors_come_back_as_messages(monkeypatch, auth_server, make_block):
    monkeypatch.setattr(compat, "_default_service", None)
    auth_server.set_faults([Fault(status=401, json={"error": "invalid_client"})])
    token, error = og.refresh_server_oauth_token("oauth-api", {"oauth_config": make_block(auth_server)})
    assert token is None
    assert error.startswith("OAuth token request failed: invalid_client")

    token, error = og.refresh_server_oauth_token("oauth-api", {"server_name": "no-oauth"})
    assert token is None and "oauth_config" in error

    success, error = og.get_oauth_service().revoke_token(
        "oauth-api", "tok", make_block(auth_server, OAUTH_REVOCATION_URL="")
    )
    assert success is False and "OAUTH_REVOCATION_URL" in error


def test_the_default_service_uses_the_cache_the_gateway_file_names(monkeypatch, tmp_path):
    from oauth_gateway.contrib.file_cache import FileTokenCache

    path = tmp_path / "enkrypt_mcp_config.json"
    path.write_text(
        '{"common_mcp_gateway_config": {"oauth_token_cache": "file:%s"}, "mcp_configs": {}}' % (tmp_path / "c")
    )
    monkeypatch.setenv("OAUTH_GATEWAY_CONFIG", str(path))
    monkeypatch.delenv("OAUTH_GATEWAY_TOKEN_CACHE", raising=False)
    monkeypatch.setattr(compat, "_default_service", None)
    assert isinstance(og.get_oauth_service().manager._cache, FileTokenCache)

    monkeypatch.setenv("OAUTH_GATEWAY_TOKEN_CACHE", "memory")
    monkeypatch.setattr(compat, "_default_service", None)
    assert isinstance(og.get_oauth_service().manager._cache, og.MemoryTokenCache)


def test_a_broken_gateway_file_falls_back_to_memory_with_a_warning(monkeypatch, tmp_path, caplog):
    path = tmp_path / "enkrypt_mcp_config.json"
    path.write_text("{not json")
    monkeypatch.setenv("OAUTH_GATEWAY_CONFIG", str(path))
    monkeypatch.delenv("OAUTH_GATEWAY_TOKEN_CACHE", raising=False)
    monkeypatch.setattr(compat, "_default_service", None)
    assert isinstance(og.get_oauth_service().manager._cache, og.MemoryTokenCache)
    assert "could not be loaded" in caplog.text


def test_seed_style_code_sends_the_access_token_itself(monkeypatch, auth_server, make_block):
    # The seed returns the access token string: f"Bearer {token}" must be the header the API accepts.
    monkeypatch.setattr(compat, "_default_service", None)
    server_entry = {"server_name": "oauth-api", "oauth_config": make_block(auth_server)}
    token, error = og.refresh_server_oauth_token("oauth-api", server_entry, "config-id")
    assert error is None
    answer = _resource(auth_server, {"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200

    token, error = og.get_oauth_service().get_access_token("oauth-api", server_entry["oauth_config"], "config-id")
    assert error is None
    assert _resource(auth_server, {"Authorization": "Bearer %s" % token}).status_code == 200


def _resource(server, headers):
    import requests

    return requests.get(server.resource_url, headers=headers, verify=server.ca_bundle, timeout=10)
