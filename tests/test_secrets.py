"""No client secret or access token reaches a log line, a repr, an error or CLI output.

One test runs every scenario (tokens with client_secret_basic, client_secret_post and
mTLS; retries; 401, 400 and 500 failures; revocation; a scope failure; a redirect; config
errors around the secret and its file; the gateway file, the seed-compatible service, the
requests auth object; ``oauth-gateway validate``, ``token`` and ``revoke``) with every
logger at DEBUG (root, ``urllib3`` and ``oauth_gateway`` included). It collects every log
record (formatted, with its arguments and any traceback), every exception (``str``,
``repr`` and the whole formatted chain), the ``repr`` and ``str`` of every public object
and all CLI output, then looks for every secret and token the test servers know
(``leaks.SECRETS``) and the ones made here. The suite-wide check in ``conftest.py``
covers log records only; this one covers the rest.

``oauth-gateway token --show`` is the one place a token is printed, on purpose; it is
checked separately, and kept out of the scan.
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets as _random
import sys
import traceback
import urllib.parse
from typing import Any, Callable, Iterator, List, Optional, Tuple

import pytest
import requests

import leaks
import oauth_gateway as og
import servers
from oauth_gateway import cli
from oauth_gateway.gateway import load_gateway_config
from oauth_gateway.injection import inject_token
from servers import TEST_CLIENT_ID, AuthServer, Fault


class _Evidence(logging.Handler):
    """Everything that could show a secret: log records and texts added by the scenarios."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.entries: List[Tuple[str, str]] = []
        self.records = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        where = "log %s:%s" % (record.name, record.levelname)
        self.entries.append((where, self.format(record)))  # includes a formatted traceback
        self.entries.append((where + " args", repr(record.args) + repr(record.msg)))
        if record.exc_info and record.exc_info[1] is not None:
            self.entries.append((where + " exception", _chain(record.exc_info[1])))

    def add(self, where: str, *texts: Any) -> None:
        for text in texts:
            self.entries.append((where, text if isinstance(text, str) else repr(text)))

    def error(self, where: str, error: BaseException) -> None:
        self.add(where, str(error), repr(error), _chain(error), repr(vars(error)))


def _chain(error: BaseException) -> str:
    """The whole traceback with causes, as ``logging.exception`` or a crash report prints it."""
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


@pytest.fixture
def evidence() -> Iterator[_Evidence]:
    handler = _Evidence()
    root = logging.getLogger()
    loggers = [root] + [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    loggers += [logging.getLogger(name) for name in ("urllib3", "urllib3.connectionpool", "oauth_gateway", "requests")]
    levels = [(logger, logger.level, logger.disabled) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for logger, level, disabled in levels:
            logger.setLevel(level)
            logger.disabled = disabled


def _expect(error_type, action: Callable[[], Any], evidence: _Evidence, where: str) -> BaseException:
    with pytest.raises(error_type) as info:
        action()
    evidence.error(where, info.value)
    return info.value


def _fresh_secret(label: str) -> str:
    """A new secret, registered so that the suite-wide log check looks for it too."""
    value = "%s-%s" % (label, _random.token_urlsafe(18))
    leaks.SECRETS.add(value)
    return value


def _write(path, document: Any, mode: int = 0o600) -> str:
    with open(str(path), "w") as handle:
        json.dump(document, handle)
    os.chmod(str(path), mode)
    return str(path)


def _gateway(entries: List[Tuple[str, dict]]) -> dict:
    return {
        "mcp_configs": {
            "cfg-1": {
                "mcp_config_name": "default_config",
                "mcp_config": [
                    {
                        "server_name": name,
                        "config": {"command": "npx", "args": ["-y", "mcp-remote", "https://api.example.com/mcp"]},
                        "oauth_config": block,
                    }
                    for name, block in entries
                ],
            }
        }
    }


def _cli(evidence: _Evidence, argv: List[str], stdin: Optional[str] = None) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        code = cli.main(argv, stdout=out, stderr=err)
    finally:
        sys.stdin = saved
    evidence.add("cli %s stdout" % argv[0], out.getvalue())
    evidence.add("cli %s stderr" % argv[0], err.getvalue())
    return code, out.getvalue(), err.getvalue()


def _cli_has(command: str) -> bool:
    out = io.StringIO()
    cli.main(["--help"], stdout=out, stderr=io.StringIO())
    return " %s " % command in out.getvalue()


# --------------------------------------------------------------------------- the scenarios


def _tokens_three_ways(ev, clock, sleeps, auth_server, mtls_server, make_config, client_cert) -> og.TokenManager:
    manager = og.TokenManager(clock=clock, sleep=sleeps)
    cert, key = client_cert
    basic = make_config(auth_server, OAUTH_SCOPE="read write")
    post = make_config(auth_server, OAUTH_USE_BASIC_AUTH=False)
    mtls = dict(OAUTH_USE_MTLS=True, OAUTH_CLIENT_CERT_PATH=cert, OAUTH_CLIENT_KEY_PATH=key)
    mtls_with_secret = make_config(mtls_server, **mtls)
    tls_client_auth = make_config(mtls_server, omit=["OAUTH_CLIENT_SECRET"], **mtls)
    for name, config in (
        ("basic", basic),
        ("post", post),
        ("mtls-secret", mtls_with_secret),
        ("tls-client-auth", tls_client_auth),
    ):
        token = manager.get_token(name, config)
        again = manager.refresh(name, config)
        ev.add("repr " + name, repr(config), str(config), config.to_dict(), repr(token), str(token), token.masked())
        ev.add("repr " + name, repr(again), repr(manager), json.dumps(manager.get_metrics()))
        assert token.access_token in (auth_server.issued | mtls_server.issued)
    assert auth_server.requests[-1].form.get("client_secret") is not None  # post really sent it
    return manager


def _retries_and_failures(ev, manager, clock, auth_server, make_config):
    config = make_config(auth_server, OAUTH_MAX_RETRIES=2, OAUTH_RETRY_BACKOFF=0.5)
    auth_server.set_faults([Fault(status=503), Fault(reset=True)])
    manager.get_token("retry", config)
    auth_server.set_faults([Fault(status=401, json={"error": "invalid_client", "error_description": "bad client"})])
    _expect(og.InvalidClient, lambda: manager.get_token("f401", config), ev, "401")
    _expect(og.InvalidClient, lambda: manager.get_token("f401", config), ev, "401 fail-fast")
    auth_server.set_faults([Fault(status=400, json={"error": "invalid_request", "error_description": "missing x"})])
    _expect(og.InvalidRequest, lambda: manager.get_token("f400", config), ev, "400")
    auth_server.set_faults([Fault(status=500, body="<html>Internal Server Error</html>", content_type="text/html")] * 3)
    _expect(og.TokenRequestError, lambda: manager.get_token("f500", config), ev, "500")
    auth_server.set_faults([Fault(reset=True)] * 3)
    _expect(og.TransportError, lambda: manager.get_token("reset", config), ev, "reset")
    # The real server refusing a wrong secret (not a scripted answer).
    wrong = make_config(auth_server, OAUTH_CLIENT_SECRET=_fresh_secret("wrong-secret"))
    _expect(og.InvalidClient, lambda: manager.get_token("wrong", wrong), ev, "wrong secret")
    # A refresh that fails while the old token is served from the cache (WARNING log).
    stale = make_config(auth_server, OAUTH_MAX_RETRIES=0)
    manager.get_token("stale", stale)
    clock.advance(3400)
    auth_server.set_faults([Fault(status=500)])
    manager.get_token("stale", stale)


def _revocations(ev, manager, auth_server, make_config):
    config = make_config(auth_server)
    manager.get_token("revoke", config)
    assert manager.revoke("revoke", config) is True
    manager.get_token("revoke", config)
    auth_server.set_faults([Fault(status=503)], path="/revoke")
    assert manager.revoke("revoke", config) is True
    token = manager.get_token("revoke", config)
    auth_server.set_faults([Fault(status=401, json={"error": "invalid_client"})], path="/revoke")
    _expect(og.InvalidClient, lambda: manager.revoke("revoke", config), ev, "revoke 401")
    assert token.access_token not in auth_server.revoked
    unconfigured = make_config(auth_server, OAUTH_REVOCATION_URL="")
    _expect(og.RevocationNotConfigured, lambda: manager.revoke("revoke", unconfigured), ev, "no revocation url")


def _scope_and_redirect(ev, manager, ca, auth_server, make_config):
    auth_server.scope_override = "read"
    narrow = make_config(auth_server, OAUTH_SCOPE="read write")
    _expect(og.InvalidScope, lambda: manager.get_token("scope", narrow), ev, "scope")
    auth_server.scope_override = None
    with AuthServer(ca) as elsewhere:
        query = "client_secret=%s&token=%s" % (
            urllib.parse.quote_plus(servers.TEST_CLIENT_SECRET),
            _fresh_secret("location-token"),
        )
        auth_server.set_faults([Fault(status=302, redirect_to=elsewhere.token_url + "?" + query)])
        config = make_config(auth_server)
        _expect(og.TokenRequestError, lambda: manager.get_token("redirect", config), ev, "redirect")
        assert elsewhere.count(None) == 0


def _config_errors(ev, tmp_path, auth_server, make_config, monkeypatch):
    secret = _fresh_secret("file-secret")
    good_file = tmp_path / "secret.txt"
    good_file.write_text(secret + "\n")
    config = make_config(auth_server, OAUTH_CLIENT_SECRET="", OAUTH_CLIENT_SECRET_FILE=str(good_file))
    assert config.client_secret == secret
    ev.add("repr secret-file config", repr(config), str(config), config.to_dict())
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    for where, overrides in (
        ("missing secret file", {"OAUTH_CLIENT_SECRET": "", "OAUTH_CLIENT_SECRET_FILE": str(tmp_path / "nope.txt")}),
        ("empty secret file", {"OAUTH_CLIENT_SECRET": "", "OAUTH_CLIENT_SECRET_FILE": str(empty)}),
        ("directory as secret file", {"OAUTH_CLIENT_SECRET": "", "OAUTH_CLIENT_SECRET_FILE": str(tmp_path)}),
        ("secret and secret file", {"OAUTH_CLIENT_SECRET": secret, "OAUTH_CLIENT_SECRET_FILE": str(good_file)}),
        ("secret of the wrong type", {"OAUTH_CLIENT_SECRET": [secret]}),
        ("secret under a misspelt key", {"OAUTH_CLIENT_SECRETS": secret}),
        ("secret in a header", {"OAUTH_CUSTOM_HEADERS": {"Authorization": "Basic " + secret}}),
        ("secret in a form field", {"OAUTH_ADDITIONAL_PARAMS": {"client_secret": secret}}),
        ("unset variable", {"OAUTH_CLIENT_SECRET": "${OAUTH_SECRETS_TEST_UNSET}"}),
        ("secret beside a bad URL", {"OAUTH_TOKEN_URL": "ftp://idp.example.com/token"}),
        (
            "http under 2.0",
            {"OAUTH_VERSION": "2.0", "OAUTH_TOKEN_URL": "http://idp.example.com/token?client_secret=" + secret},
        ),
    ):
        _expect(
            og.ConfigError,
            lambda overrides=overrides: make_config(auth_server, **overrides),
            ev,
            where,
        )
    from_env = _fresh_secret("env-secret")
    monkeypatch.setenv("OAUTH_SECRETS_TEST_SECRET", from_env)
    config = make_config(auth_server, OAUTH_CLIENT_SECRET="${OAUTH_SECRETS_TEST_SECRET}")
    assert config.client_secret == from_env
    ev.add("repr env config", repr(config), config.to_dict(), config.fingerprint)


def _gateway_service_auth(ev, tmp_path, manager, auth_server, make_block, ca_bundle):
    path = _write(tmp_path / "gateway.json", _gateway([("oauth-api", make_block(auth_server))]), mode=0o644)
    gateway = load_gateway_config(path)
    config_id, entry = gateway.find_server("oauth-api")
    config = gateway.oauth_config("oauth-api", config_id=config_id)
    ev.add("repr gateway", repr(gateway), str(gateway), repr(config))
    _expect(og.OAuthGatewayError, lambda: gateway.find_server("oauth-apj"), ev, "missing server")
    service = og.OAuthService(manager)
    token, error = service.get_access_token("svc", entry["oauth_config"], config_id)
    assert error is None
    ev.add("repr service", repr(service), json.dumps(service.get_metrics()))
    ok, error = service.revoke_token("svc", token, entry["oauth_config"], config_id=config_id)
    assert (ok, error) == (True, None)
    broken = dict(entry["oauth_config"], OAUTH_CLIENT_SECRET=_fresh_secret("svc-wrong"))
    token, error = service.get_access_token("svc-bad", broken, config_id)
    assert token is None and "invalid_client" in error
    ev.add("service error", error)
    auth = manager.auth("oauth-api", config, config_id)
    ev.add("repr auth", repr(auth), str(auth))
    with requests.Session() as session:
        session.auth = auth
        # verify per call: REQUESTS_CA_BUNDLE in the environment would override a Session's verify
        assert session.get(auth_server.resource_url, verify=ca_bundle, timeout=10).status_code == 200
        auth_server.expire_tokens()  # the next call gets 401 invalid_token and recovers once
        assert session.get(auth_server.resource_url, verify=ca_bundle, timeout=10).status_code == 200
    launched = inject_token(entry, manager.get_token("oauth-api", config, config_id))
    assert launched["config"]["args"][-1] == "Authorization:${AUTH_HEADER}"  # the token is only in env
    authorization = manager.get_token("oauth-api", config, config_id).authorization
    bad_entry = dict(entry, config={"command": "npx", "env": {"AUTH_HEADER": authorization}, "args": 5})
    _expect(
        og.ConfigError, lambda: inject_token(bad_entry, manager.get_token("oauth-api", config, config_id)), ev, "inject"
    )
    return path


def _command_line(ev, tmp_path, auth_server, make_block, gateway_path):
    bad = _gateway(
        [
            ("numeric", dict(make_block(auth_server), OAUTH_CLIENT_SECRET=123456789012345)),
            ("both", dict(make_block(auth_server), OAUTH_CLIENT_SECRET_FILE="/run/secrets/x")),
            ("misspelt", dict(make_block(auth_server), OAUTH_CLIENT_SECRETT=servers.TEST_CLIENT_SECRET)),
            ("header", dict(make_block(auth_server), OAUTH_CUSTOM_HEADERS={"X-Api-Key": [servers.TEST_CLIENT_SECRET]})),
        ]
    )
    bad_path = _write(tmp_path / "bad.json", bad, mode=0o644)
    for output in ("text", "json", "github"):
        code, _, _ = _cli(ev, ["validate", "--output", output, gateway_path, bad_path])
        assert code == 1
        code, _, _ = _cli(ev, ["validate", "--strict", "--output", output, gateway_path])
        assert code == 1  # the literal secret in a 0644 file is a warning, failing under --strict
    if not _cli_has("token"):
        return
    for extra in ([], ["--output", "json"], ["--refresh"], ["--config-name", "default_config"]):
        code, out, err = _cli(ev, ["token", "oauth-api", "--config", gateway_path] + extra)
        assert code == 0, err
        assert "--show" in out + err or extra == ["--output", "json"]
    broken = _write(
        tmp_path / "broken.json",
        _gateway(
            [
                ("refused", make_block(auth_server, OAUTH_CLIENT_SECRET=_fresh_secret("cli-wrong"))),
                (
                    "no-file",
                    make_block(auth_server, OAUTH_CLIENT_SECRET="", OAUTH_CLIENT_SECRET_FILE=str(tmp_path / "gone")),
                ),
            ]
        ),
    )
    code, _, err = _cli(ev, ["token", "refused", "--config", broken])
    assert code == 1 and "invalid_client" in err
    code, _, err = _cli(ev, ["token", "no-file", "--config", broken])
    assert code == 2 and "OAUTH_CLIENT_SECRET_FILE" in err
    if _cli_has("revoke"):
        token = _show_token(gateway_path)
        code, out, err = _cli(
            ev, ["revoke", "oauth-api", "--config", gateway_path, "--token-stdin"], stdin=token + "\n"
        )
        assert code == 0, err
        assert token in auth_server.revoked
        auth_server.set_faults([Fault(status=400, json={"error": "unsupported_token_type"})], path="/revoke")
        code, out, err = _cli(
            ev, ["revoke", "oauth-api", "--config", gateway_path, "--token-stdin"], stdin=token + "\n"
        )
        assert code == 1 and "unsupported_token_type" in err


def _show_token(gateway_path: str) -> str:
    """``token --show``: the token alone on stdout (kept out of the scan on purpose)."""
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["token", "oauth-api", "--config", gateway_path, "--show"], stdout=out, stderr=err) == 0, (
        err.getvalue()
    )
    assert err.getvalue() == ""
    printed = out.getvalue()
    assert printed.endswith("\n") and printed.count("\n") == 1
    return printed.strip()


def test_no_secret_or_token_is_shown_anywhere(
    evidence,
    clock,
    sleeps,
    ca,
    ca_bundle,
    auth_server,
    mtls_server,
    make_block,
    make_config,
    client_cert,
    tmp_path,
    monkeypatch,
):
    ev = evidence
    manager = _tokens_three_ways(ev, clock, sleeps, auth_server, mtls_server, make_config, client_cert)
    _retries_and_failures(ev, manager, clock, auth_server, make_config)
    _revocations(ev, manager, auth_server, make_config)
    _scope_and_redirect(ev, manager, ca, auth_server, make_config)
    _config_errors(ev, tmp_path, auth_server, make_config, monkeypatch)
    gateway_path = _gateway_service_auth(ev, tmp_path, manager, auth_server, make_block, ca_bundle)
    _command_line(ev, tmp_path, auth_server, make_block, gateway_path)
    ev.add("repr manager", repr(manager), json.dumps(manager.get_metrics()))
    manager.close()

    known = leaks.SECRETS.snapshot()
    issued = set(auth_server.issued_history) | set(mtls_server.issued_history)
    assert issued and issued <= known
    assert servers.TEST_CLIENT_SECRET in known
    # The evidence is real: DEBUG records from urllib3 and oauth_gateway, and the client id.
    text = "\n".join(entry[1] for entry in ev.entries)
    assert ev.records > 50
    assert "urllib3.connectionpool DEBUG" in text and "oauth_gateway DEBUG" in text
    assert TEST_CLIENT_ID in text or urllib.parse.quote_plus(TEST_CLIENT_ID) in text
    found = leaks.find_leaks([(where, body) for where, body in ev.entries], known)
    assert found == [], "secrets or tokens shown in: %s" % sorted({where for where, _ in found})


def test_the_leak_scan_finds_a_planted_secret():
    planted = _fresh_secret("planted")
    entries = [("log a", "nothing here"), ("repr b", "Token(...%s...)" % planted), ("cli c", "ok")]
    assert leaks.find_leaks(entries, {planted}) == [("repr b", "")]


def test_token_never_prints_the_token_without_show(auth_server, make_block, tmp_path):
    if not _cli_has("token"):
        pytest.skip("oauth-gateway token is not there yet")
    path = _write(tmp_path / "gateway.json", _gateway([("oauth-api", make_block(auth_server))]))
    for extra in ([], ["--output", "json"], ["--refresh"]):
        out, err = io.StringIO(), io.StringIO()
        assert cli.main(["token", "oauth-api", "--config", path] + extra, stdout=out, stderr=err) == 0
        issued = auth_server.issued_history[-1]
        assert issued not in out.getvalue() + err.getvalue()
        assert issued[:8] not in out.getvalue(), "more than a short prefix of the token is shown"
    shown = _show_token(path)
    assert shown == auth_server.issued_history[-1]


@pytest.mark.parametrize("path", ["/token", "/revoke"])
def test_a_server_echoing_the_secret_does_not_make_us_repeat_it(auth_server, make_config, clock, sleeps, path):
    # The suite-wide log check looks for the echoed value in the ERROR line too.
    echoed = _fresh_secret("echoed")
    with og.TokenManager(clock=clock, sleep=sleeps) as manager:
        if path == "/token":
            config = make_config(auth_server, OAUTH_CLIENT_SECRET=echoed)
            auth_server.set_faults(
                [
                    Fault(
                        status=401, json={"error": "invalid_client", "error_description": "secret %s is wrong" % echoed}
                    )
                ]
            )
            with pytest.raises(og.InvalidClient) as info:
                manager.get_token("echo", config)
        else:
            config = make_config(auth_server)
            auth_server.set_faults(
                [
                    Fault(
                        status=400, json={"error": "invalid_request", "error_description": "token %s unknown" % echoed}
                    )
                ],
                path="/revoke",
            )
            with pytest.raises(og.InvalidRequest) as info:
                manager.revoke("echo", config, token=echoed)
    assert auth_server.count(path) == 1
    assert echoed not in str(info.value)
