"""No secret under ``__context__``: every error path of the token and revocation requests.

Issue 22 item 7: ``raise ... from None`` hides the chain when printed, but keeps
``__context__``, and the frames of that context (requests', urllib3's) hold the form,
the Basic header and the assertion as locals. Crash reporters (Sentry, Django's
technical 500 page, ``pytest -l``) walk the chain whatever ``__suppress_context__``
says. Our errors are raised outside the ``except`` block instead: each path below is
rendered with ``capture_locals=True``, every exception of the chain (suppressed
contexts included), and the client secret, the Basic header, the client assertion and
every access token the server issued must be absent from the text.
"""

from __future__ import annotations

import base64
import json
import socket
import time
import traceback
import urllib.parse
from typing import Any, Dict, List, Optional

import pytest

import oauth_gateway as og
import servers
from servers import TEST_CLIENT_ID, TEST_CLIENT_SECRET, AuthServer, Fault

#: Larger than the client's body cap (oauth_gateway.client.MAX_RESPONSE_BYTES, 256 KiB).
_OVERSIZE = 300 * 1024


def _b64url(document: Dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()


def _assertion() -> str:
    """A platform-issued JWT (unsigned is enough: the client checks its shape and exp)."""
    claims = {"iss": "https://platform.example", "sub": "workload-ctx-0123456789", "exp": int(time.time()) + 3600}
    return "%s.%s.%s" % (_b64url({"alg": "RS256", "typ": "JWT"}), _b64url(claims), "c2lnbmF0dXJlLWN0eC0wMTIzNDU2Nzg5")


def _closed_port_url(path: str) -> str:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        return "https://127.0.0.1:%d%s" % (closed.getsockname()[1], path)


def _document(token: str, **extra: Any) -> Dict[str, Any]:
    document: Dict[str, Any] = {"access_token": token, "token_type": "Bearer", "expires_in": 3600}
    document.update(extra)
    return document


class Scenario:
    """One error path: the config overrides, the scripted answers, and token or revocation."""

    def __init__(
        self,
        faults: List[Fault],
        revoke: bool = False,
        assertion: bool = False,
        closed_port: bool = False,
        **overrides: Any,
    ) -> None:
        self.faults = faults
        self.revoke = revoke
        self.assertion = assertion
        self.closed_port = closed_port
        self.overrides = overrides

    def run(self, manager: og.TokenManager, server: AuthServer, make_config: Any, assertion_file: str) -> None:
        overrides = dict(self.overrides)
        if self.assertion:
            overrides.update(OAUTH_CLIENT_ASSERTION_FILE=assertion_file, OAUTH_CLIENT_SECRET="")
        path = "/revoke" if self.revoke else "/token"
        if self.closed_port:
            overrides["OAUTH_REVOCATION_URL" if self.revoke else "OAUTH_TOKEN_URL"] = _closed_port_url(path)
        config = make_config(server, **overrides)
        if self.revoke:
            manager.get_token("s", config)  # a token to revoke (the request under test is the next one)
        server.set_faults(self.faults, path=path)
        if self.revoke:
            manager.revoke("s", config)
        else:
            manager.get_token("s", config)


_QUICK = {"OAUTH_MAX_RETRIES": 0}
_RETRY_ONCE = {"OAUTH_MAX_RETRIES": 1, "OAUTH_RETRY_BACKOFF": 0.0}
_TIMEOUT = {"OAUTH_MAX_RETRIES": 0, "OAUTH_TIMEOUT": 0.3, "OAUTH_CONNECT_TIMEOUT": 0.3}
_INVALID_CLIENT = Fault(status=401, json={"error": "invalid_client", "error_description": TEST_CLIENT_SECRET})

SCENARIOS: Dict[str, Scenario] = {
    # The server said no.
    "token_refused": Scenario([Fault(status=400, json={"error": "invalid_request"})], **_QUICK),
    "token_invalid_client_basic": Scenario([_INVALID_CLIENT], **_QUICK),
    "token_invalid_client_post": Scenario([_INVALID_CLIENT], OAUTH_USE_BASIC_AUTH=False, **_QUICK),
    "token_invalid_client_assertion": Scenario(
        [Fault(status=401, json={"error": "invalid_client"})], assertion=True, **_QUICK
    ),
    "revocation_refused": Scenario([Fault(status=400, json={"error": "invalid_request"})], revoke=True, **_QUICK),
    "revocation_invalid_client": Scenario([_INVALID_CLIENT], revoke=True, **_QUICK),
    # The network failed.
    "token_transport_failure": Scenario([], closed_port=True, **_QUICK),
    "token_transport_failure_assertion": Scenario([], closed_port=True, assertion=True, **_QUICK),
    "token_reset": Scenario([Fault(reset=True)], **_QUICK),
    "token_reset_assertion": Scenario([Fault(reset=True)], assertion=True, **_QUICK),
    "revocation_transport_failure": Scenario([], revoke=True, closed_port=True, **_QUICK),
    "revocation_reset": Scenario([Fault(reset=True)], revoke=True, **_QUICK),
    "token_timeout": Scenario([Fault(delay=2.0)], **_TIMEOUT),
    "token_timeout_assertion": Scenario([Fault(delay=2.0)], assertion=True, **_TIMEOUT),
    "revocation_timeout": Scenario([Fault(delay=2.0)], revoke=True, **_TIMEOUT),
    # The answer is not a token.
    "token_bad_json": Scenario([Fault(body='{"access_token": "json-token-0123456789", ')], **_QUICK),
    "token_bad_expires_in": Scenario([Fault(json=_document("exp-token-0123456789", expires_in="soon"))], **_QUICK),
    "token_oversize_body": Scenario([Fault(json=_document("big-token-0123456789", padding="x" * _OVERSIZE))], **_QUICK),
    "token_corrupt_gzip": Scenario(
        [Fault(body=b"\x1f\x8b\x08\x00garbage-gzip", headers={"Content-Encoding": "gzip"})], **_QUICK
    ),
    "revocation_oversize_body": Scenario([Fault(status=400, body="x" * _OVERSIZE)], revoke=True, **_QUICK),
    # Every retry used up.
    "token_retries_exhausted_status": Scenario([Fault(status=503), Fault(status=503)], **_RETRY_ONCE),
    "token_retries_exhausted_transport": Scenario([Fault(reset=True), Fault(reset=True)], **_RETRY_ONCE),
    "token_retries_exhausted_assertion": Scenario(
        [Fault(reset=True), Fault(reset=True)], assertion=True, **_RETRY_ONCE
    ),
    "revocation_retries_exhausted": Scenario([Fault(reset=True), Fault(reset=True)], revoke=True, **_RETRY_ONCE),
}


def _chain(error: Optional[BaseException]) -> List[BaseException]:
    """The error and every exception under it, by ``__cause__`` and ``__context__``, suppressed or not."""
    found: List[BaseException] = []
    pending = [error]
    while pending:
        current = pending.pop()
        if current is None or any(current is seen for seen in found):
            continue
        found.append(current)
        pending.extend([current.__cause__, current.__context__])
    return found


def _rendered(error: BaseException) -> str:
    """What a crash reporter that walks the whole chain with locals shows."""
    return "\n".join(
        "".join(traceback.TracebackException(type(e), e, e.__traceback__, capture_locals=True).format())
        for e in _chain(error)
    )


def _forbidden(server: AuthServer, assertion: str) -> Dict[str, str]:
    basic = servers.basic_credentials(TEST_CLIENT_ID, TEST_CLIENT_SECRET)
    forbidden = {
        "client secret": TEST_CLIENT_SECRET,
        "form-encoded client secret": urllib.parse.quote_plus(TEST_CLIENT_SECRET),
        "Basic header": basic[len("Basic ") :],
        "assertion": assertion,
        "assertion signature": assertion.rsplit(".", 1)[1],
    }
    for token in ("json-token-0123456789", "exp-token-0123456789", "big-token-0123456789"):
        forbidden["token " + token[:4]] = token
    for i, token in enumerate(server.issued_history):
        forbidden["issued token %d" % i] = token
    return forbidden


@pytest.fixture
def assertion_file(tmp_path: Any) -> str:
    """The path of a platform JWT (only the path: test frames are rendered with the error)."""
    path = tmp_path / "platform.jwt"
    path.write_text(_assertion())
    path.chmod(0o600)
    return str(path)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_no_secret_in_any_exception_of_the_chain_with_locals(manager, auth_server, make_config, assertion_file, name):
    with pytest.raises(og.OAuthGatewayError) as info:
        SCENARIOS[name].run(manager, auth_server, make_config, assertion_file)
    shown = _rendered(info.value)
    assert " = " in shown  # the locals were rendered
    with open(assertion_file) as handle:
        forbidden = _forbidden(auth_server, handle.read())
    leaked = sorted(label for label, secret in forbidden.items() if secret in shown)
    assert leaked == [], "%s: %s in the rendered chain" % (name, ", ".join(leaked))


@pytest.mark.parametrize(
    "name",
    sorted(n for n in SCENARIOS if "transport" in n or "reset" in n or "timeout" in n or "exhausted_transport" in n),
)
def test_a_transport_error_has_no_context_at_all(manager, auth_server, make_config, assertion_file, name):
    with pytest.raises(og.TransportError) as info:
        SCENARIOS[name].run(manager, auth_server, make_config, assertion_file)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


def test_a_refusal_parsed_from_the_body_has_no_context(manager, auth_server, make_config, assertion_file):
    for name in ("token_bad_json", "token_bad_expires_in", "token_corrupt_gzip", "token_oversize_body"):
        with pytest.raises(og.TokenRequestError) as info:
            SCENARIOS[name].run(manager, auth_server, make_config, assertion_file)
        assert info.value.__context__ is None, name
        manager.invalidate("s")
