"""Acting for a user: the requests of a token exchange and of enterprise-managed authorization.

:mod:`oauth_gateway.grants` says what goes in each form; this module reads the token
files, sends the forms through the token client and names the leg that failed. The
manager calls :func:`fetch_for_subject` from its slow path only.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from typing import Callable, Optional, Tuple, TypeVar

from ._helpers import MAX_SECRET_FILE_BYTES, masked, read_regular_file, redact_url
from ._jsonpath import join as _join
from .client import TokenClient, TokenResponse
from .config import OAuthConfig
from .dpop import DPoPKey, NonceStore
from .exceptions import ConfigError, OAuthGatewayError, TokenRequestError
from .grants import (
    ACCESS_TOKEN_TYPE,
    ID_JAG_TOKEN_TYPE,
    JWT_TOKEN_TYPE,
    NOT_APPLICABLE,
    TOKEN_EXCHANGE_GRANT_TYPE,
    IdentityAssertion,
    SecurityToken,
    id_jag_form,
    id_jag_redeem_form,
    token_exchange_form,
)

#: IdP configs a manager keeps built (one per ``OAUTH_IDENTITY_ASSERTION`` block).
MAX_IDP_CONFIGS = 256

_E = TypeVar("_E", bound=BaseException)

#: Requested token types a resource server may receive as an access token.
SENDABLE_TOKEN_TYPES = frozenset([ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE])


def check_sendable(config: OAuthConfig) -> None:
    """Raise when ``config`` asks for a token that is not an access token (an ID-JAG, an ID token...).

    Raises:
        ConfigError: ``OAUTH_REQUESTED_TOKEN_TYPE`` names such a token: it is never sent as Bearer.
    """
    if config.requested_token_type and config.requested_token_type not in SENDABLE_TOKEN_TYPES:
        raise ConfigError(
            "asks for %s, which is not an access token; it is never sent in an Authorization header"
            % config.requested_token_type,
            "$.oauth_config.OAUTH_REQUESTED_TOKEN_TYPE",
            "use manager.get_token() for such a token, or ask for an access token "
            "(urn:ietf:params:oauth:token-type:access_token)",
        )


def acts_for_a_subject(config: OAuthConfig) -> bool:
    """True when ``config``'s tokens are obtained for a subject (token exchange or ID-JAG)."""
    return config.grant_type == TOKEN_EXCHANGE_GRANT_TYPE or config.identity_assertion is not None


def read_token_file(path: str, json_path: str, what: str) -> str:
    """Read a subject or actor token from its file, again for every request.

    Raises:
        ConfigError: the file cannot be read, is not UTF-8 or is empty; the message names
            the file, never its content.
    """
    read, problem = read_regular_file(path, MAX_SECRET_FILE_BYTES)
    if problem is not None:
        raise ConfigError(
            "the %s file %s cannot be read (it %s)" % (what, path, problem.problem),
            json_path,
            "%s; it must be a regular file this user may read" % problem.hint,
        )
    assert read is not None
    text = read.data.decode("utf-8", "replace").strip()
    if "\ufffd" in text or not text:
        raise ConfigError(
            "the %s file %s %s" % (what, path, "is empty" if not text else "is not UTF-8 text"),
            json_path,
            "write the %s into it" % what,
        )
    token: str = masked(text)
    return token


def _subject(given: Optional[str], path: str, json_path: str) -> str:
    if given is not None:
        return given
    if not path:
        raise ConfigError(
            "no subject token: none was passed and no subject token file is configured",
            json_path,
            "pass subject_token= to get_token() or auth(), or set the file that holds it",
        )
    return read_token_file(path, json_path, "subject token")


def _named(exc: _E, where: str) -> _E:
    """A copy of ``exc`` whose message starts with which leg and which server failed."""
    clone = copy.copy(exc)
    if clone.args and isinstance(clone.args[0], str):
        clone.args = ("%s: %s" % (where, clone.args[0]),) + tuple(clone.args[1:])
    clone.__cause__ = exc.__cause__
    clone.__suppress_context__ = True
    return clone


class IdpConfigs:
    """The IdP side of each ``OAUTH_IDENTITY_ASSERTION`` block, built once. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._built: OrderedDict[Tuple[str, str], OAuthConfig] = OrderedDict()

    def config_for(self, config: OAuthConfig) -> OAuthConfig:
        """The IdP's own config (its token endpoint or issuer, its client) for leg 1.

        The transport settings (TLS trust, https rule, timeouts, retries) are the block's parent's.
        """
        assertion: Optional[IdentityAssertion] = config.identity_assertion
        assert assertion is not None
        key = (config.fingerprint, config.ca_bundle_path)
        with self._lock:
            found = self._built.get(key)
        if found is not None:
            return found
        built = OAuthConfig(
            client_id=assertion.client_id,
            client_secret=assertion.client_secret,
            client_private_key_path=assertion.private_key_path,
            token_url=assertion.token_url,
            issuer=assertion.issuer,
            grant_type=TOKEN_EXCHANGE_GRANT_TYPE,
            subject_token_type=assertion.subject_token_type,
            enforce_https=config.enforce_https,
            ca_bundle_path=config.ca_bundle_path,
            timeout=config.timeout,
            connect_timeout=config.connect_timeout,
            max_retries=config.max_retries,
            retry_backoff=config.retry_backoff,
            retry_after_max=config.retry_after_max,
            custom_headers=dict(config.custom_headers),
            # Without a secret or key the gateway is a public client of the IdP, discovered or not.
            token_endpoint_auth_method="" if assertion.client_secret or assertion.private_key_path else "none",
        )
        with self._lock:
            self._built[key] = built
            while len(self._built) > MAX_IDP_CONFIGS:
                self._built.popitem(last=False)
        return built


def fetch_for_subject(
    client: TokenClient,
    config: OAuthConfig,
    server_name: str,
    subject_token: Optional[str],
    resolve: Callable[[OAuthConfig, Optional[float]], OAuthConfig],
    idp_configs: IdpConfigs,
    dpop_key: Optional[DPoPKey] = None,
    nonces: Optional[NonceStore] = None,
    deadline: Optional[float] = None,
) -> TokenResponse:
    """Get a token for a subject: one token exchange, or the two legs of enterprise-managed authorization.

    Args:
        config: the resolved config of the MCP server's authorization server.
        subject_token: the subject given per call, or None to read the configured file.
        resolve: the manager's resolver (discovers the IdP's token endpoint from its issuer).
        deadline: the manager's clock time by which the whole call ends (both legs).

    Raises:
        ConfigError: no subject token, or a token file that cannot be read.
        TokenRequestError: a server refused; with ``OAUTH_IDENTITY_ASSERTION`` the message
            says which leg and which server.
        TransportError: the network failed (the leg named likewise).
    """
    subject_token = masked(subject_token)  # frame locals may be printed with a traceback
    assertion: Optional[IdentityAssertion] = config.identity_assertion
    if assertion is None:
        return _token_exchange(client, config, server_name, subject_token, dpop_key, nonces, deadline)
    where = "$.oauth_config.OAUTH_IDENTITY_ASSERTION"
    subject = SecurityToken(
        _subject(subject_token, assertion.subject_token_file, _join(where, "subject_token_file")),
        assertion.subject_token_type,
    )
    idp = idp_configs.config_for(config)
    leg1 = "leg 1 of enterprise-managed authorization (token exchange at the IdP %s)" % redact_url(
        idp.token_url or idp.issuer
    )
    try:
        idp = resolve(idp, deadline)
        form = id_jag_form(subject, config.issuer, config.resources, config.scope)
        id_jag = client.request_token(
            client.endpoint(idp), form, server_name, exchange=ID_JAG_TOKEN_TYPE, deadline=deadline
        )
    except OAuthGatewayError as exc:
        raise _named(exc, leg1) from None
    leg2 = "leg 2 of enterprise-managed authorization (jwt-bearer at the authorization server %s)" % redact_url(
        config.token_url
    )
    try:
        # The ID-JAG is used once: it lives in this frame only, never in a cache.
        form = id_jag_redeem_form(masked(id_jag.access_token), config.scope)
        form.extend(("resource", resource) for resource in config.resources)
        return client.request_token(
            client.endpoint(config), form, server_name, dpop_key=dpop_key, nonces=nonces, deadline=deadline
        )
    except OAuthGatewayError as exc:
        raise _named(exc, leg2) from None


def _token_exchange(
    client: TokenClient,
    config: OAuthConfig,
    server_name: str,
    subject_token: Optional[str],
    dpop_key: Optional[DPoPKey],
    nonces: Optional[NonceStore],
    deadline: Optional[float],
) -> TokenResponse:
    subject = SecurityToken(
        _subject(subject_token, config.subject_token_file, "$.oauth_config.OAUTH_SUBJECT_TOKEN_FILE"),
        config.subject_token_type,
    )
    actor = None
    if config.actor_token_file:
        actor = SecurityToken(
            read_token_file(config.actor_token_file, "$.oauth_config.OAUTH_ACTOR_TOKEN_FILE", "actor token"),
            config.actor_token_type,
        )
    form = token_exchange_form(
        subject,
        actor,
        config.requested_token_type,
        config.scope,
        (config.audience,),
        config.resources,
        config.additional_params,
    )
    response = client.request_token(
        client.endpoint(config),
        form,
        server_name,
        dpop_key=dpop_key,
        nonces=nonces,
        exchange=config.requested_token_type,
        deadline=deadline,
    )
    if response.token_type == NOT_APPLICABLE and not config.requested_token_type:
        raise TokenRequestError(
            "OAuth token request failed: the token endpoint answered 200 with token_type N_A: a token that is "
            "not an access token, which nobody asked for; set OAUTH_REQUESTED_TOKEN_TYPE to the type wanted "
            "(such a token is handed out by get_token() and never sent as Bearer)",
            status_code=200,
            server_name=server_name,
            retryable=False,
        )
    return response
