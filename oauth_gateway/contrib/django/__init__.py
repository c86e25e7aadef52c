"""Django integration: tokens from the gateway file, a system check, a command and metrics views.

Needs the ``django`` extra (``pip install 'oauth-gateway[django]'``). In ``settings.py``::

    INSTALLED_APPS = [..., "oauth_gateway.contrib.django"]
    OAUTH_GATEWAY = {
        "CONFIG_FILE": "/etc/myapp/enkrypt_mcp_config.json",  # None: $OAUTH_GATEWAY_CONFIG or ~/.enkrypt/...
        "SERVERS": ["oauth-api"],       # optional: the servers this project uses
        "CHECK_ENVIRONMENT": True,      # optional: the check also resolves ${ENV} secrets and files
    }

In a view::

    from oauth_gateway.contrib.django import session

    with session("oauth-api") as api:
        data = api.get("https://api.example.com/data", timeout=10).json()

``manage.py check`` reports every problem of the gateway file with its JSON path
(:mod:`.checks`), ``manage.py oauth_gateway_token oauth-api`` prints a masked token, and
``path("oauth-gateway/", include("oauth_gateway.contrib.django.urls"))`` serves metrics.
The process has one :class:`~oauth_gateway.TokenManager`, and the file is read on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from django.views.decorators.debug import sensitive_variables

if TYPE_CHECKING:  # pragma: no cover
    import requests

    from ...auth import TokenAuth
    from ...manager import TokenManager
    from ...tokens import Token
    from .._common import GatewayClient

__all__ = ("auth", "gateway_client", "get_manager", "get_token", "reload", "session")

#: The app label (``apps.get_app_config(APP_LABEL)``).
APP_LABEL = "oauth_gateway"

# Every function here is marked sensitive_variables(): Django's error pages and
# AdminEmailHandler mails never show the locals of these frames.


@sensitive_variables()
def gateway_client() -> GatewayClient:
    """Return the process's :class:`~oauth_gateway.contrib._common.GatewayClient` (the app's).

    Raises:
        ImproperlyConfigured: the app is not installed.
    """
    from django.apps import apps
    from django.core.exceptions import ImproperlyConfigured

    try:
        app_config = apps.get_app_config(APP_LABEL)
    except LookupError:
        raise ImproperlyConfigured(
            "the oauth_gateway Django app is not installed; add 'oauth_gateway.contrib.django' to INSTALLED_APPS"
        ) from None
    return app_config.client


@sensitive_variables()
def get_manager() -> TokenManager:
    """Return the process's token manager.

    Raises:
        ImproperlyConfigured: the app is not installed or ``OAUTH_GATEWAY`` is malformed.
    """
    return gateway_client().manager


@sensitive_variables()
def get_token(server_name: str, config_id: Optional[str] = None) -> Token:
    """Return a valid token for a server of the gateway file.

    Args:
        server_name: the entry's ``server_name``.
        config_id: key under ``mcp_configs``; needed only when the name is not unique.

    Raises:
        ConfigError, TokenRequestError, TransportError: as :meth:`TokenManager.get_token`.
    """
    return gateway_client().get_token(server_name, config_id)


@sensitive_variables()
def auth(server_name: str, config_id: Optional[str] = None, **options: Any) -> TokenAuth:
    """Return a ``requests`` auth object for a server (options: ``retry_on_any_401``)."""
    return gateway_client().auth(server_name, config_id, **options)


@sensitive_variables()
def session(server_name: str, config_id: Optional[str] = None, **options: Any) -> requests.Session:
    """Return a new ``requests.Session`` that sends the server's token and recovers from a 401.

    Args:
        server_name: the entry's ``server_name`` in the gateway file.
        config_id: key under ``mcp_configs``; needed only when the name is not unique.
        **options: passed to :class:`~oauth_gateway.auth.TokenAuth` (``retry_on_any_401``).

    Raises:
        ConfigError: the file or the server's ``oauth_config`` is unusable.
    """
    return gateway_client().session(server_name, config_id, **options)


@sensitive_variables()
def reload() -> None:
    """Read the gateway file again on next use (cached tokens stay)."""
    gateway_client().reload()
