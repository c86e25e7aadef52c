"""``manage.py oauth_gateway_token SERVER``: get a token for a server and describe it, masked.

It prints what ``oauth-gateway token SERVER`` prints, under the same names
(:func:`oauth_gateway.tokens.describe`); ``--show`` prints the token alone in both.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.views.decorators.debug import sensitive_variables

from oauth_gateway.contrib import django as _app
from oauth_gateway.exceptions import OAuthGatewayError
from oauth_gateway.tokens import describe, format_description

__all__ = ("Command",)


class Command(BaseCommand):
    """``manage.py oauth_gateway_token``: get a token and print it masked; not thread-safe (one run)."""

    help = (
        "Get a token for a server of the gateway file (settings.OAUTH_GATEWAY) and print what it is, "
        "with the token masked, as `oauth-gateway token` does. --show prints the token alone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("server_name", help="the server's server_name in the gateway file")
        parser.add_argument("--config-id", default=None, help="the key under mcp_configs, when the name is not unique")
        parser.add_argument(
            "--show",
            action="store_true",
            help="print the access token itself, and only it; it is a secret, keep it out of logs",
        )

    @sensitive_variables("token")
    def handle(self, *args: Any, **options: Any) -> None:
        server_name = options["server_name"]
        try:
            config_id, _config = _app.gateway_client().oauth_config(server_name, options["config_id"])
            token = _app.get_token(server_name, config_id)
        except OAuthGatewayError as error:
            # Library messages never hold a secret; the CommandError exits with status 1.
            raise CommandError("%s: %s" % (server_name, error)) from None
        if options["show"]:
            self.stdout.write(token.access_token)
            return
        self.stdout.write(format_description(describe(token, server_name, config_id)))
