"""The ``legacy_json`` token provider: a company's own JSON token API.

Many in-house APIs hand out session tokens their own way: POST a key as JSON, get back
``{"data": {"sessionToken": "...", "ttl": 900}}``. This provider is configured entirely
by options (``OAUTH_PROVIDER_OPTIONS``)::

    {
      "url": "https://legacy.example.com/api/v2/session",
      "method": "POST",
      "body": {"apiKey": "${LEGACY_API_KEY}", "user": "gateway"},
      "token_field": "data.sessionToken",
      "expires_in_field": "data.ttl"
    }

``${ENV}`` references in the body (and everywhere in the options) are resolved when the
config loads. ``body`` and ``headers`` are secret: masked in ``repr``, ``to_dict`` and
messages, hashed in the fingerprint. ``token_field``, ``expires_in_field`` and
``scope_field`` are dotted paths into the JSON answer (a number picks a list item). The
request goes through :meth:`~oauth_gateway.providers.ProviderContext.send`: the
config's CA bundle and mTLS identity, timeouts and retries apply, and redirects are
never followed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Dict, Optional

from .._helpers import loads_bounded
from ..exceptions import TokenRequestError
from . import ProviderContext, TokenProvider

if TYPE_CHECKING:  # pragma: no cover
    from ..client import TokenResponse
    from ..config import OAuthConfig

__all__ = ("LegacyJsonProvider",)

#: Longest lifetime believed from the answer (as for OAuth's ``expires_in``).
_MAX_LIFETIME = 86400.0
#: Largest answer read, in bytes.
_MAX_ANSWER_BYTES = 65536

_NOT_JSON = object()
_DOTTED = "^[^.\\s]+(\\.[^.\\s]+)*$"
# One character after the scheme, then anything but whitespace: no two ways to match a
# text (``[^\\s/?#]+[^\\s]*`` was quadratic on a long URL that ends in a space).
_URL = "^https://[^\\s/?#][^\\s]*$|\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}"


def _dotted(default: Optional[str], what: str) -> Dict[str, Any]:
    spec: Dict[str, Any] = {
        "type": "string",
        "pattern": _DOTTED,
        "description": 'Dotted path of %s in the JSON answer, like "data.sessionToken".' % what,
        "x-message": {"pattern": 'must be a dotted path like "data.sessionToken", got {value}'},
    }
    if default is not None:
        spec["default"] = default
    return spec


class LegacyJsonProvider(TokenProvider):
    """Tokens from a JSON endpoint configured by options. Thread-safe (stateless)."""

    options_schema: Optional[Dict[str, Any]] = {
        "type": "object",
        "required": ["url"],
        "properties": {
            "url": {
                "type": "string",
                "pattern": _URL,
                "description": "The token endpoint (https).",
                "x-message": {"pattern": "must be an https:// URL, got {value}"},
                "x-hint": {"pattern": 'write it like "https://legacy.example.com/api/session"'},
            },
            "method": {"type": "string", "enum": ["POST", "PUT", "GET"], "default": "POST"},
            "body": {
                "type": ["object", "array"],
                "x-secret": True,
                "description": "The JSON body, ${ENV} references resolved at load; not sent with GET.",
            },
            "headers": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "x-secret": True,
                "description": "Extra request headers (an API key header, ...).",
            },
            "token_field": _dotted("access_token", "the token"),
            "expires_in_field": _dotted("expires_in", "the lifetime in seconds"),
            "scope_field": _dotted(None, "the granted scope (space-separated)"),
            "lifetime": {
                "type": "number",
                "exclusiveMinimum": 0,
                "description": "Seconds assumed when the answer has no lifetime; the manager's default otherwise.",
            },
            "token_type": {"type": "string", "minLength": 1, "default": "Bearer"},
        },
        "additionalProperties": False,
    }

    def fetch(self, config: OAuthConfig, context: ProviderContext) -> TokenResponse:
        from ..client import TokenResponse

        options = context.options
        method = options.get("method", "POST")
        body = options.get("body") if method != "GET" else None
        response = context.send(method, options["url"], json=body, headers=options.get("headers"))
        status = response.status_code

        def refuse(problem: str, retryable: bool = False) -> TokenRequestError:
            return TokenRequestError(
                "legacy token endpoint for %s: %s [correlation_id=%s]"
                % (context.server_name, problem, context.correlation_id),
                status_code=status,
                correlation_id=context.correlation_id,
                server_name=context.server_name,
                retryable=retryable,
            )

        if 300 <= status < 400:
            raise refuse(
                "answered %d, a redirect, which is never followed with credentials; set url to the final endpoint"
                % status
            )
        if not 200 <= status < 300:
            raise refuse("answered HTTP %d" % status, retryable=status == 429 or status >= 500)
        content = response.content
        if len(content) > _MAX_ANSWER_BYTES:
            raise refuse("the answer is larger than %d bytes; check url" % _MAX_ANSWER_BYTES)
        try:
            answer = loads_bounded(content.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):
            answer = _NOT_JSON
        if answer is _NOT_JSON:
            raise refuse("the answer is not JSON (or nests too deeply); check url")
        token = _pick(answer, options.get("token_field", "access_token"))
        if not isinstance(token, str) or not token.strip():
            raise refuse(
                "the answer has no token at %r; check token_field" % options.get("token_field", "access_token")
            )
        raw_lifetime = _pick(answer, options.get("expires_in_field", "expires_in"))
        lifetime: Optional[float]
        if raw_lifetime is None:
            lifetime = float(options["lifetime"]) if "lifetime" in options else None
        else:
            lifetime = _seconds(raw_lifetime)
            if lifetime is None:
                raise refuse(
                    "the lifetime at %r is not a positive number of seconds"
                    % options.get("expires_in_field", "expires_in")
                )
        scope = _pick(answer, options["scope_field"]) if "scope_field" in options else None
        return TokenResponse(
            token.strip(), options.get("token_type", "Bearer"), lifetime, scope if isinstance(scope, str) else None
        )


def _pick(document: Any, dotted: str) -> Any:
    """The value at a dotted path (``data.items.0.token``), or None when absent."""
    node = document
    for part in dotted.split("."):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _seconds(value: Any) -> Optional[float]:
    if isinstance(value, bool):
        return None
    try:
        seconds = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        return None
    if math.isnan(seconds) or seconds <= 0:
        return None
    return min(seconds, _MAX_LIFETIME)
