"""The checks of ``oauth_config`` keys that need more than their schema: custom headers, DPoP,
and the grant keys (token exchange, the enterprise-managed authorization block).

Called by :mod:`oauth_gateway.config`'s field table after ``${ENV}`` resolution; pure apart
from reading the files the keys name.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, Optional

from ._config_files import expand_path, read_secret_file
from ._http import credential_problem, header_value_problem, is_header_name, transport_problem
from ._jsonpath import join as _join
from ._jwt import check_key_file, require_jwt
from .exceptions import ConfigError
from .grants import TOKEN_EXCHANGE_GRANT_TYPE, IdentityAssertion

__all__ = ("block_path", "check_custom_headers", "check_dpop", "check_grant", "load_identity_assertion")

_Values = Dict[str, Any]
_PathOf = Callable[[str], str]


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _path(value: Any) -> str:
    return expand_path(value or "")


def load_identity_assertion(value: Any, where: str) -> Optional[IdentityAssertion]:
    """``OAUTH_IDENTITY_ASSERTION`` as an :class:`IdentityAssertion`, or None when absent or empty."""
    if isinstance(value, IdentityAssertion):
        return value
    block = dict(value or {})
    if not block:
        return None
    return IdentityAssertion(
        token_url=_text(block.get("token_url")),
        issuer=_text(block.get("issuer")),
        client_id=_text(block.get("client_id")),
        client_secret=_text(block.get("client_secret")),
        client_secret_file=_path(block.get("client_secret_file")),
        private_key_path=_path(block.get("private_key_path")),
        subject_token_file=_path(block.get("subject_token_file")),
        subject_token_type=_text(block.get("subject_token_type")),
    )


def check_grant(values: Dict[str, Any], path_of: Callable[[str], str], discovery_hint: str) -> None:
    """Token exchange and enterprise-managed authorization: what each needs from the other keys.

    The subject token may come per call (``subject_token=``), so none is required here;
    a token exchange whose endpoint is discovered must say which issuer may receive it.
    ``values`` are the block's attribute values (a grant that needs client credentials);
    ``discovery_hint`` is the credential rule's fix, named when the issuer is missing.

    Raises:
        ConfigError: the keys do not fit together (named by their JSON path).
    """
    exchange = values["grant_type"] == TOKEN_EXCHANGE_GRANT_TYPE
    if values["actor_token_file"] and not exchange:
        raise ConfigError(
            "is used only with the token-exchange grant",
            path_of("OAUTH_ACTOR_TOKEN_FILE"),
            'set OAUTH_GRANT_TYPE to "%s", or remove it' % TOKEN_EXCHANGE_GRANT_TYPE,
        )
    if values["subject_token_file"] and not exchange:
        raise ConfigError(
            "is used only with the token-exchange grant",
            path_of("OAUTH_SUBJECT_TOKEN_FILE"),
            'set OAUTH_GRANT_TYPE to "%s" (or, for enterprise-managed authorization, put '
            "subject_token_file in OAUTH_IDENTITY_ASSERTION)" % TOKEN_EXCHANGE_GRANT_TYPE,
        )
    if exchange and not (values["token_url"] or values["issuer"] or values["trust_discovered_issuer"]):
        raise ConfigError(
            "is required with the token-exchange grant when OAUTH_TOKEN_URL is not set: the users' tokens "
            "would go to whatever authorization server discovery finds",
            path_of("OAUTH_ISSUER"),
            discovery_hint,
        )
    assertion: Optional[IdentityAssertion] = values["identity_assertion"]
    if assertion is None:
        return
    where = path_of("OAUTH_IDENTITY_ASSERTION")
    if values["grant_type"] != "client_credentials":
        raise ConfigError(
            "implies the jwt-bearer grant at the authorization server; OAUTH_GRANT_TYPE %r cannot be used with it"
            % values["grant_type"],
            path_of("OAUTH_GRANT_TYPE"),
            "remove OAUTH_GRANT_TYPE",
        )
    if not assertion.token_url and not assertion.issuer:
        raise ConfigError(
            "needs the IdP's token_url or issuer",
            where,
            'set "token_url" to the IdP\'s token endpoint, or "issuer" to have it discovered',
        )
    if not values["issuer"] and not values["trust_discovered_issuer"]:
        raise ConfigError(
            "is required with OAUTH_IDENTITY_ASSERTION: the ID-JAG's audience is the authorization server's issuer",
            path_of("OAUTH_ISSUER"),
            "set OAUTH_ISSUER to the MCP server's authorization server (`oauth-gateway discover URL` prints it), "
            "or set OAUTH_TRUST_DISCOVERED_ISSUER to true to use the one discovered from OAUTH_RESOURCE",
        )
    for key, url in (("token_url", assertion.token_url), ("issuer", assertion.issuer)):
        if url:
            problem = credential_problem(url) or transport_problem(
                url, enforce_https=values["enforce_https"], any_http_host=True
            )
            if problem is not None:
                raise ConfigError(problem.problem, _join(where, key), problem.hint)
    if sum(bool(v) for v in (assertion.client_secret, assertion.client_secret_file, assertion.private_key_path)) > 1:
        raise ConfigError(
            "holds more than one of client_secret, client_secret_file and private_key_path",
            where,
            "keep the one the IdP expects",
        )
    if assertion.client_secret_file:
        secret = read_secret_file(assertion.client_secret_file, _join(where, "client_secret_file"))
        values["identity_assertion"] = assertion = assertion.replace(client_secret=secret)
    if assertion.private_key_path:
        check_key_file(assertion.private_key_path, "private_key_path", where, label="IdP client assertion key")


def check_custom_headers(values: _Values, path_of: _PathOf) -> None:
    """Refuse header names and values that requests would reject or send split.

    Checked after ``${ENV}`` resolution (a key read from an environment variable often
    ends with a newline); messages name the header, never its value.
    """
    where = path_of("OAUTH_CUSTOM_HEADERS")
    for name, value in values["custom_headers"]:
        if not is_header_name(name):
            raise ConfigError(
                "header name %s is not an HTTP token (RFC 7230: letters, digits and !#$%%&'*+-.^_`|~, no spaces)"
                % json.dumps(name),
                where,
                'rename it, e.g. "X-Api-Key"',
            )
        problem = header_value_problem(value)
        if problem is not None:
            raise ConfigError(
                "the value of header %s %s" % (name, problem),
                _join(where, name),
                "remove it from the value (or from the variable it comes from); "
                "header values are one line of text without control characters",
            )


def block_path(path_of: _PathOf) -> str:
    """The JSON path of the block itself (``path_of`` gives its keys' paths)."""
    key_path = path_of("OAUTH_CLIENT_PRIVATE_KEY_PATH")
    return key_path[: -len(".OAUTH_CLIENT_PRIVATE_KEY_PATH")] or "$"


def check_dpop(values: _Values, path_of: _PathOf) -> None:
    """DPoP needs the jwt extra (signing); a persistent key file must exist (fail closed)."""
    if not values["enabled"] or not values["dpop"]:
        return
    require_jwt(path_of("OAUTH_DPOP"))
    if values["dpop_key_path"]:
        check_key_file(values["dpop_key_path"], "OAUTH_DPOP_KEY_PATH", block_path(path_of), label="DPoP key")
