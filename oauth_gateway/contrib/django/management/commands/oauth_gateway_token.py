"""``manage.py oauth_gateway_token SERVER``: get a token for a server and describe it, masked."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.views.decorators.debug import sensitive_variables

from oauth_gateway.contrib import django as _app
from oauth_gateway.exceptions import OAuthGatewayError


class Command(BaseCommand):
    help = (
        "Get a token for a server of the gateway file (settings.OAUTH_GATEWAY) and print what it is, "
        "with the token masked. --show prints the token itself."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("server_name", help="the server's server_name in the gateway file")
        parser.add_argument("--config-id", default=None, help="the key under mcp_configs, when the name is not unique")
        parser.add_argument(
            "--show", action="store_true", help="print the access token itself; it is a secret, keep it out of logs"
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
        if token.expires_in is None:
            lifetime = "not given by the server"
        else:
            lifetime = "%ds" % token.expires_in
        lines = [
            "server: %s" % server_name,
            "config_id: %s" % config_id,
            "token_type: %s" % token.token_type,
            "access_token: %s" % (token.access_token if options["show"] else token.masked()),
            "scopes: %s" % (token.scope or "(none)"),
            "expires_in: %s" % lifetime,
        ]
        self.stdout.write("\n".join(lines))
