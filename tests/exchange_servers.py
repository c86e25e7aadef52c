"""Loopback servers for acting for a user: an RFC 8693 token exchange endpoint and an ID-JAG IdP.

:class:`ExchangeServer` is the suite's :class:`~servers.AuthServer` that also answers the
token-exchange grant: for the subject tokens a test registers with ``accept_subjects``
it issues an access token, or (``requested_token_type`` ID-JAG) an ID-JAG, a JWT whose
``aud`` is the requested ``audience``, answered with ``token_type`` ``N_A``. An ID-JAG
server given ``redeem_at=as_server`` makes the ID-JAGs it issues the assertions that
authorization server accepts (leg 2, the jwt-bearer grant). Every subject token and
every token issued is registered with the suite's leak check.
"""

from __future__ import annotations

import base64
import json
import secrets as _secrets
import threading
import time
from collections import Counter
from typing import Any, Dict, List, Optional, Set

from servers import SECRETS, AuthServer, RecordedRequest, _error_reply, _json_reply, _Reply

TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
ID_JAG_TYPE = "urn:ietf:params:oauth:token-type:id-jag"


def make_jwt(**claims: Any) -> str:
    """A JWT-shaped token (not signed for real: the servers here check the value, not the signature)."""

    def part(value: Dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims.setdefault("exp", int(time.time()) + 3600)
    claims.setdefault("jti", _secrets.token_hex(8))
    token = "%s.%s.%s" % (part({"alg": "ES256", "typ": "JWT"}), part(claims), _secrets.token_urlsafe(16))
    SECRETS.add(token)
    return token


class ExchangeServer(AuthServer):
    """An AuthServer that answers RFC 8693 token exchange too. Thread-safe.

    Settable at any time: ``issued_type_override`` (the ``issued_token_type`` answered,
    whatever was asked), ``exchange_token_type`` (the ``token_type`` of an issued access
    token; ``N_A`` to misbehave), ``redeem_at``.

    Attributes:
        exchanges: how many exchanges each subject token got (the test's own tokens).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._subjects: Set[str] = set()
        self._exchange_lock = threading.Lock()
        self.exchanges: Counter[str] = Counter()
        self.issued_type_override: Optional[str] = None
        self.exchange_token_type = "Bearer"
        self.redeem_at: Optional[AuthServer] = None
        self.id_jags: List[str] = []

    def accept_subjects(self, *subjects: str) -> None:
        """Accept these subject tokens (in addition to the ones accepted before)."""
        for subject in subjects:
            SECRETS.add(subject)
        with self._exchange_lock:
            self._subjects.update(subjects)

    def _token(self, record: RecordedRequest) -> _Reply:
        if record.method == "POST" and record.grant_type == TOKEN_EXCHANGE_GRANT:
            return self._exchange(record)
        return super()._token(record)

    def _exchange(self, record: RecordedRequest) -> _Reply:
        authenticates = "Authorization" in record.headers or record.first("client_secret") is not None
        client_id: Optional[str] = record.first("client_id") or ""
        if authenticates:
            client_id, error = self._authenticate(record)
            if error is not None:
                return error
        subject = record.first("subject_token")
        subject_type = record.first("subject_token_type")
        if not subject or not subject_type:
            return _error_reply(400, "invalid_request", "subject_token and subject_token_type are required")
        if record.first("actor_token") and not record.first("actor_token_type"):
            return _error_reply(400, "invalid_request", "actor_token_type is required with actor_token")
        with self._exchange_lock:
            known = subject in self._subjects
            if known:
                self.exchanges[subject] += 1
        if not known:
            return _error_reply(400, "invalid_grant", "the subject token is not valid")
        requested = record.first("requested_token_type") or ACCESS_TOKEN_TYPE
        issued_type = self.issued_type_override or requested
        document: Dict[str, Any]
        if requested == ID_JAG_TYPE:
            audience = record.audience
            if not audience:
                return _error_reply(400, "invalid_request", "an ID-JAG needs the audience")
            id_jag = make_jwt(
                iss=self.url,
                aud=audience,
                sub="user:%d" % len(self.id_jags),
                client_id=client_id,
                resource=record.resource[0] if record.resource else None,
                exp=int(time.time()) + 300,
            )
            with self._exchange_lock:
                self.id_jags.append(id_jag)
                redeem_at, issued = self.redeem_at, list(self.id_jags)
            if redeem_at is not None:  # the authorization server trusts this IdP's grants
                redeem_at.accept_assertions(*issued)
            document = {"access_token": id_jag, "issued_token_type": issued_type, "token_type": "N_A"}
        else:
            token = _secrets.token_urlsafe(32)
            self._issue(token, client_id or "")
            token_type = "N_A" if issued_type != ACCESS_TOKEN_TYPE else self.exchange_token_type
            document = {"access_token": token, "issued_token_type": issued_type, "token_type": token_type}
            if self.expires_in is not None:
                document["expires_in"] = self.expires_in
        if record.scope:
            document["scope"] = record.scope
        return _json_reply(200, document, [("Cache-Control", "no-store")])

    def exchange_requests(self) -> List[RecordedRequest]:
        """The token exchange requests received, in order."""
        return [r for r in self.requests_to("/token") if r.grant_type == TOKEN_EXCHANGE_GRANT]

    def grant_counts(self) -> Dict[Optional[str], int]:
        """Token requests per ``grant_type``."""
        return dict(Counter(r.grant_type for r in self.requests_to("/token")))
