"""An oauth-gateway token provider for a workload identity (instance metadata) endpoint.

Cloud platforms hand a workload its tokens from a local endpoint: a GET with a
``resource`` query parameter and a ``Metadata: true`` header, answered with
``{"access_token": ..., "expires_in": "3599"}``. Some also want a per-instance secret
header. Options (``OAUTH_PROVIDER_OPTIONS``)::

    {"url": "https://169.254.169.254/metadata/identity/oauth2/token",
     "resource": "https://api.example.com",
     "identity_header": "${IDENTITY_HEADER}"}

``identity_header`` is ``writeOnly`` in the schema, so oauth-gateway masks it like a
client secret. The request goes through ``context.send``: the config's CA bundle,
timeouts and retries apply, and redirects are never followed.
"""

from __future__ import annotations

from typing import Any, Dict, Optional
from urllib.parse import urlencode

from oauth_gateway import TokenRequestError
from oauth_gateway.providers import ProviderContext, TokenProvider, TokenResponse


class MetadataIdentityProvider(TokenProvider):
    """Tokens from a metadata identity endpoint. Thread-safe (stateless)."""

    options_schema: Optional[Dict[str, Any]] = {
        "type": "object",
        "required": ["url", "resource"],
        "properties": {
            "url": {"type": "string", "pattern": "^https://"},
            "resource": {"type": "string", "minLength": 1},
            "identity_header": {"type": "string", "writeOnly": True},
        },
        "additionalProperties": False,
    }

    def fetch(self, config: Any, context: ProviderContext) -> TokenResponse:
        options = context.options
        headers = {"Metadata": "true"}
        if "identity_header" in options:
            headers["X-IDENTITY-HEADER"] = options["identity_header"]
        url = "%s?%s" % (options["url"], urlencode({"resource": options["resource"]}))
        answer = context.send("GET", url, headers=headers)
        if answer.status_code != 200:
            raise TokenRequestError(
                "identity endpoint answered HTTP %d for %s" % (answer.status_code, context.server_name),
                status_code=answer.status_code,
                correlation_id=context.correlation_id,
                server_name=context.server_name,
            )
        document = answer.json()
        token = document.get("access_token")
        if not isinstance(token, str) or not token:
            raise TokenRequestError("identity endpoint answered without access_token", status_code=200)
        expires_in = document.get("expires_in")
        return TokenResponse(token, "Bearer", float(expires_in) if expires_in else None, None)
