"""What goes in a token request's form, grant by grant, and the checks of an exchange's answer.

Pure: no I/O, no logging, no clock. The token client sends what these functions build,
and hands the answer's fields back to :func:`check_exchange_answer`.

- **client_credentials** (RFC 6749 section 4.4): ``grant_type``, then the target fields.
- **jwt-bearer** (RFC 7523 section 2.1): ``grant_type`` and ``assertion``.
- **token exchange** (RFC 8693 section 2.1): ``subject_token`` and ``subject_token_type``,
  an optional ``actor_token`` / ``actor_token_type`` (delegation), ``requested_token_type``,
  and the target fields: ``audience``, every ``resource``, ``scope``.
- **ID-JAG** (enterprise-managed authorization, the Identity Assertion JWT Authorization
  Grant): leg 1 is a token exchange at the enterprise IdP for
  ``urn:ietf:params:oauth:token-type:id-jag`` whose ``audience`` is the MCP server's
  authorization server (its issuer), with ``resource`` and ``scope``; leg 2 is a
  jwt-bearer request at that authorization server with the ID-JAG as the assertion and
  the authorization server's own client authentication.

Client authentication is never part of these forms: the token endpoint adds it per attempt.
"""

from __future__ import annotations

import hashlib
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from ._helpers import masked
from .client_auth import JWT_BEARER_GRANT_TYPE

#: The grant and token-type URNs a config names (``OAUTH_GRANT_TYPE``, ``OAUTH_*_TOKEN_TYPE``);
#: the form builders and answer checks are the token client's internal interface.
__all__ = (
    "ACCESS_TOKEN_TYPE",
    "ID_JAG_TOKEN_TYPE",
    "ID_TOKEN_TYPE",
    "JWT_BEARER_GRANT_TYPE",
    "TOKEN_EXCHANGE_GRANT_TYPE",
)

CLIENT_CREDENTIALS_GRANT_TYPE = "client_credentials"
TOKEN_EXCHANGE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"

#: RFC 8693 section 3 token type identifiers, and the ID-JAG's.
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
REFRESH_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:refresh_token"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
SAML1_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:saml1"
SAML2_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:saml2"
ID_JAG_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id-jag"
#: The ``token_type`` of an issued token that is not an access token (RFC 8693 section 2.2.1).
NOT_APPLICABLE = "N_A"

Form = List[Tuple[str, str]]


class SecurityToken(NamedTuple):
    """A token sent in a token exchange (a subject or an actor) and its type URI.

    The ``repr`` shows the type only: the token is a user's credential.
    """

    token: str
    token_type: str

    def __repr__(self) -> str:
        return "SecurityToken(token='***', token_type=%r)" % self.token_type


def target_fields(scope: str = "", audiences: Iterable[str] = (), resources: Iterable[str] = ()) -> Form:
    """``scope``, each ``audience`` and each ``resource`` (RFC 8707 / RFC 8693), those that are set."""
    fields: Form = []
    if scope:
        fields.append(("scope", scope))
    fields.extend(("audience", audience) for audience in audiences if audience)
    fields.extend(("resource", resource) for resource in resources if resource)
    return fields


def token_exchange_form(
    subject: SecurityToken,
    actor: Optional[SecurityToken] = None,
    requested_token_type: str = "",
    scope: str = "",
    audiences: Iterable[str] = (),
    resources: Iterable[str] = (),
    extra: Iterable[Tuple[str, str]] = (),
) -> Form:
    """The form of an RFC 8693 token exchange request (section 2.1).

    The result's ``repr`` hides it (it holds the subject token).
    """
    form: Form = [
        ("grant_type", TOKEN_EXCHANGE_GRANT_TYPE),
        ("subject_token", subject.token),
        ("subject_token_type", subject.token_type),
    ]
    if actor is not None:
        form.append(("actor_token", actor.token))
        form.append(("actor_token_type", actor.token_type))
    if requested_token_type:
        form.append(("requested_token_type", requested_token_type))
    form.extend(target_fields(scope, audiences, resources))
    form.extend(extra)
    result: Form = masked(form)
    return result


def jwt_bearer_form(assertion: str, scope: str = "", resources: Iterable[str] = ()) -> Form:
    """The form of a jwt-bearer grant request (RFC 7523 section 2.1), its ``repr`` hidden."""
    form: Form = [("grant_type", JWT_BEARER_GRANT_TYPE), ("assertion", assertion)]
    form.extend(target_fields(scope, (), resources))
    result: Form = masked(form)
    return result


def id_jag_form(
    subject: SecurityToken, authorization_server: str, resources: Sequence[str] = (), scope: str = ""
) -> Form:
    """Leg 1 of enterprise-managed authorization: the token exchange at the enterprise IdP.

    Args:
        subject: the signed-in user's identity assertion (an ID token, a SAML assertion).
        authorization_server: the issuer of the MCP server's authorization server, the
            ID-JAG's ``audience``.
        resources: the MCP server(s) the access token will be for (``resource``).
        scope: the scope asked of the authorization server.
    """
    return token_exchange_form(
        subject,
        requested_token_type=ID_JAG_TOKEN_TYPE,
        scope=scope,
        audiences=(authorization_server,),
        resources=resources,
    )


def id_jag_redeem_form(id_jag: str, scope: str = "") -> Form:
    """Leg 2 of enterprise-managed authorization: the jwt-bearer request at the authorization server.

    The ID-JAG carries the resource; ``scope`` is repeated when configured.
    """
    return jwt_bearer_form(id_jag, scope=scope)


class ExchangeAnswer(NamedTuple):
    """What :func:`check_exchange_answer` found in a token exchange's answer.

    Attributes:
        issued_token_type: the answer's ``issued_token_type``.
        is_access_token: the issued token is an access token, to be sent to a resource
            server (``Bearer``); False for an ID-JAG, an ID token, a SAML assertion...,
            which are never sent as ``Bearer``.
    """

    issued_token_type: str
    is_access_token: bool


def check_exchange_answer(
    data: Mapping[str, Any], requested_token_type: str = ""
) -> Tuple[Optional[ExchangeAnswer], str]:
    """Check the RFC 8693 fields of a token exchange's successful answer (section 2.2.1).

    ``issued_token_type`` is required; when a type was requested it must be that type
    (a server that answers another type answered another question). ``token_type`` is
    ``Bearer`` (or ``DPoP``) for an access token; ``N_A`` is accepted for a token that
    is not an access token and for nothing else.

    Pure: the problem is returned as text, for the caller's error.

    Returns:
        ``(answer, "")`` when the answer is usable, else ``(None, problem)``, the problem
        worded to follow "the token endpoint answered 200 but".
    """
    issued = data.get("issued_token_type")
    if not isinstance(issued, str) or not issued:
        return None, "issued_token_type is missing (RFC 8693 section 2.2.1 requires it)"
    if len(issued) > 200 or not issued.isprintable():
        return None, "issued_token_type is not a token type URI"
    if requested_token_type and issued != requested_token_type:
        return None, "issued_token_type is %r, not the requested %r; check OAUTH_REQUESTED_TOKEN_TYPE" % (
            issued,
            requested_token_type,
        )
    token_type = data.get("token_type")
    if not isinstance(token_type, str):
        return None, "token_type is missing"
    if token_type == NOT_APPLICABLE:
        if issued == ACCESS_TOKEN_TYPE:
            return None, "token_type is N_A for an access token (N_A is for tokens that are not access tokens)"
        return ExchangeAnswer(issued, False), ""
    if token_type.lower() not in ("bearer", "dpop"):
        shown = token_type if len(token_type) < 20 else type(token_type).__name__
        return None, "token_type is %r, not Bearer or N_A" % shown
    return ExchangeAnswer(issued, True), ""


class IdentityAssertion:
    """The ``OAUTH_IDENTITY_ASSERTION`` block: leg 1 of enterprise-managed authorization. Immutable.

    Attributes:
        token_url: the IdP's token endpoint, or ``""`` to discover it from ``issuer``.
        issuer: the IdP's issuer (RFC 8414 / OIDC discovery, and the pinned issuer).
        client_id: the gateway's client id at the IdP.
        client_secret: its secret (read from ``client_secret_file`` when that is set), or ``""``.
        client_secret_file: where the secret was read from, or ``""``.
        private_key_path: a key for private_key_jwt at the IdP, or ``""``.
        subject_token_file: the file holding the user's identity assertion (re-read per
            request), or ``""`` when it is given per call (``subject_token=``).
        subject_token_type: the type URI of that assertion (an ID token by default).

    ``repr`` masks the secret; :meth:`fingerprint_material` holds its SHA-256.
    """

    __slots__ = (
        "token_url",
        "issuer",
        "client_id",
        "client_secret",
        "client_secret_file",
        "private_key_path",
        "subject_token_file",
        "subject_token_type",
    )

    token_url: str
    issuer: str
    client_id: str
    client_secret: str
    client_secret_file: str
    private_key_path: str
    subject_token_file: str
    subject_token_type: str

    def __init__(
        self,
        token_url: str = "",
        issuer: str = "",
        client_id: str = "",
        client_secret: str = "",
        client_secret_file: str = "",
        private_key_path: str = "",
        subject_token_file: str = "",
        subject_token_type: str = ID_TOKEN_TYPE,
    ) -> None:
        sets = object.__setattr__
        for name, value in (
            ("token_url", token_url),
            ("issuer", issuer),
            ("client_id", client_id),
            ("client_secret", masked(client_secret)),
            ("client_secret_file", client_secret_file),
            ("private_key_path", private_key_path),
            ("subject_token_file", subject_token_file),
            ("subject_token_type", subject_token_type or ID_TOKEN_TYPE),
        ):
            sets(self, name, value)

    def replace(self, **changes: str) -> IdentityAssertion:
        """A copy with some attributes replaced (a secret read from its file, a discovered token URL)."""
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return IdentityAssertion(**values)

    def to_dict(self, show_secret: bool = False) -> Dict[str, str]:
        """The block as written in a file (set keys only), the secret masked unless asked for."""
        data: Dict[str, str] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if not value or (name == "client_secret" and self.client_secret_file):
                continue
            if name == "subject_token_type" and value == ID_TOKEN_TYPE:
                continue
            data[name] = str(value) if show_secret or name != "client_secret" else "***"
        return data

    def fingerprint_material(self) -> Dict[str, str]:
        """What enters the config's fingerprint: every value, the secret as its SHA-256."""
        material = {name: str(getattr(self, name)) for name in self.__slots__ if name != "client_secret_file"}
        material["client_secret"] = hashlib.sha256(material["client_secret"].encode("utf-8")).hexdigest()
        return material

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("IdentityAssertion is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IdentityAssertion):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    def __hash__(self) -> int:
        return hash((self.token_url, self.issuer, self.client_id))

    def __reduce__(self) -> Tuple[Any, ...]:
        return (_restore, ({name: str(getattr(self, name)) for name in self.__slots__},))

    def __repr__(self) -> str:
        return "IdentityAssertion(token_url=%r, issuer=%r, client_id=%r, client_secret=%s)" % (
            self.token_url,
            self.issuer,
            self.client_id,
            "'***'" if self.client_secret else "''",
        )


def _restore(values: Mapping[str, str]) -> IdentityAssertion:
    return IdentityAssertion(**values)
