"""Flask integration: tokens from the gateway file for the requests an app makes.

Needs the ``flask`` extra (``pip install 'oauth-gateway[flask]'``)::

    from flask import Flask
    from oauth_gateway.contrib.flask import OAuthGateway

    gateway = OAuthGateway()

    def create_app():
        app = Flask(__name__)
        app.config["OAUTH_GATEWAY_CONFIG_FILE"] = "/etc/myapp/enkrypt_mcp_config.json"
        gateway.init_app(app)
        app.register_blueprint(gateway.metrics_blueprint(url_prefix="/oauth-gateway"))
        return app

    # in a view
    with gateway.session("oauth-api") as session:
        data = session.get("https://api.example.com/data", timeout=10).json()

Each app gets one :class:`~oauth_gateway.TokenManager`, kept in
``app.extensions["oauth_gateway"]`` with the gateway file, which is read on first use.

``init_app`` adds ``flask oauth-gateway check`` to the app's command line, as
Flask-Migrate adds ``flask db``: it runs the checks of Django's system check
(:func:`oauth_gateway.contrib.checks.check_gateway_file`) and exits 1 on an error, so a
deployment fails before the first request needs a token. ``init_app(app, check=True)``
runs the same check at once and raises :class:`~oauth_gateway.ConfigError` on an error.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import click
import flask
import requests
from flask.cli import AppGroup

from ..auth import TokenAuth
from ..config import OAuthConfig
from ..exceptions import ConfigError
from ..gateway import GatewayConfig
from ..manager import TokenManager
from ..tokens import Token
from ._common import PROMETHEUS_CONTENT_TYPE, GatewayClient
from .checks import CheckProblem, check_gateway_file

__all__ = ("OAuthGateway",)

#: Key of the extension's state in ``app.extensions``.
_EXTENSION_KEY = "oauth_gateway"
#: ``app.config`` key naming the gateway file; None means ``$OAUTH_GATEWAY_CONFIG`` or
#: ``~/.enkrypt/enkrypt_mcp_config.json``.
_CONFIG_FILE_KEY = "OAUTH_GATEWAY_CONFIG_FILE"
#: ``app.config`` key listing server names the check requires (None: every enabled server).
_SERVERS_KEY = "OAUTH_GATEWAY_SERVERS"
#: ``app.config`` key: the check also builds each server's config (``${ENV}``, secret files).
_CHECK_ENVIRONMENT_KEY = "OAUTH_GATEWAY_CHECK_ENVIRONMENT"


def _check_app(app: flask.Flask) -> List[CheckProblem]:
    """Return the problems of ``app``'s gateway file, as ``flask oauth-gateway check`` prints them.

    Reads ``OAUTH_GATEWAY_CONFIG_FILE``, ``OAUTH_GATEWAY_SERVERS`` and
    ``OAUTH_GATEWAY_CHECK_ENVIRONMENT`` from ``app.config``.
    """
    return check_gateway_file(
        app.config.get(_CONFIG_FILE_KEY),
        app.config.get(_SERVERS_KEY),
        bool(app.config.get(_CHECK_ENVIRONMENT_KEY, True)),
        file_setting='app.config["%s"]' % _CONFIG_FILE_KEY,
        servers_setting='app.config["%s"]' % _SERVERS_KEY,
    )


def _command_group() -> AppGroup:
    """The ``flask oauth-gateway`` commands (one group per app: ``app.cli`` owns it)."""
    group = AppGroup("oauth-gateway", help="oauth-gateway: check the gateway file of this app.")

    @group.command("check")
    def check() -> None:
        """Check the gateway file as Django's system check does; exit 1 on an error."""
        problems = _check_app(flask.current_app)
        for problem in problems:
            click.echo(str(problem), err=True)
        errors = sum(1 for problem in problems if problem.level == "error")
        if errors:
            click.echo("oauth-gateway: %d error(s) in the gateway file" % errors, err=True)
            raise SystemExit(1)
        click.echo("oauth-gateway: the gateway file is ok (%d warning(s))" % len(problems))

    return group


class OAuthGateway:
    """The Flask extension. Thread-safe; one instance may serve several apps.

    Methods act on the current app (``flask.current_app``), or, outside an app
    context, on the app given to the constructor.

    Args:
        app: the app to set up now; or call :meth:`init_app` later (app factories).
        manager: the token manager for ``app``; a new one by default.
    """

    def __init__(self, app: Optional[flask.Flask] = None, manager: Optional[TokenManager] = None):
        self.app = app
        if app is not None:
            self.init_app(app, manager)

    def init_app(self, app: flask.Flask, manager: Optional[TokenManager] = None, check: bool = False) -> None:
        """Give ``app`` its token manager, remember its gateway file and add ``flask oauth-gateway``.

        Reads ``app.config["OAUTH_GATEWAY_CONFIG_FILE"]`` now (None by default); the file
        itself is read on first use, or now with ``check``.

        Args:
            app: the Flask app.
            manager: its token manager; a new :class:`~oauth_gateway.TokenManager` by default.
            check: run ``flask oauth-gateway check``'s checks now.

        Raises:
            ConfigError: with ``check``, the gateway file has an error (all are listed).
        """
        app.config.setdefault(_CONFIG_FILE_KEY, None)
        app.config.setdefault(_SERVERS_KEY, None)
        app.config.setdefault(_CHECK_ENVIRONMENT_KEY, True)
        if check:
            errors = [problem for problem in _check_app(app) if problem.level == "error"]
            if errors:
                raise ConfigError(
                    "; ".join("%s: %s" % (problem.obj, problem.message) for problem in errors),
                    "",
                    errors[0].hint or "run `flask oauth-gateway check` for every problem and its fix",
                )
        app.extensions[_EXTENSION_KEY] = GatewayClient(app.config[_CONFIG_FILE_KEY], manager)
        app.cli.add_command(_command_group())

    # -- per-app state ------------------------------------------------------------------

    def _client(self) -> GatewayClient:
        if flask.has_app_context():
            app = flask.current_app._get_current_object()  # type: ignore[attr-defined]
        elif self.app is not None:
            app = self.app
        else:
            raise RuntimeError(
                "OAuthGateway used outside an application context and without an app; "
                "call it inside a request or `with app.app_context():`, or pass the app to OAuthGateway(app)"
            )
        client = app.extensions.get(_EXTENSION_KEY)
        if client is None:
            raise RuntimeError(
                "OAuthGateway is not set up for app %r; call gateway.init_app(app) in the app factory" % app.name
            )
        return client

    @property
    def manager(self) -> TokenManager:
        """The current app's token manager."""
        return self._client().manager

    def gateway_config(self) -> GatewayConfig:
        """Return the current app's gateway file, reading it on first use.

        Raises:
            ConfigError: the file is missing, unreadable, not JSON or breaks the schema.
        """
        return self._client().gateway_config()

    def oauth_config(self, server_name: str, config_id: Optional[str] = None) -> OAuthConfig:
        """Return a server's :class:`~oauth_gateway.OAuthConfig` from the gateway file.

        Raises:
            ConfigError: the server is missing, ambiguous, disabled or invalid.
        """
        return self._client().oauth_config(server_name, config_id)[1]

    def get_token(self, server_name: str, config_id: Optional[str] = None) -> Token:
        """Return a valid token for a server of the gateway file.

        Args:
            server_name: the entry's ``server_name``.
            config_id: key under ``mcp_configs``; needed only when the name is not unique.

        Raises:
            ConfigError, TokenRequestError, TransportError: as :meth:`TokenManager.get_token`.
        """
        return self._client().get_token(server_name, config_id)

    def auth(self, server_name: str, config_id: Optional[str] = None, **options: Any) -> TokenAuth:
        """Return a ``requests`` auth object for a server (options: ``retry_on_any_401``)."""
        return self._client().auth(server_name, config_id, **options)

    def session(self, server_name: str, config_id: Optional[str] = None, **options: Any) -> requests.Session:
        """Return a new ``requests.Session`` that sends the server's token and recovers from a 401.

        Args:
            server_name: the entry's ``server_name`` in the gateway file.
            config_id: key under ``mcp_configs``; needed only when the name is not unique.
            **options: passed to :class:`~oauth_gateway.auth.TokenAuth` (``retry_on_any_401``).

        Raises:
            ConfigError: the file or the server's ``oauth_config`` is unusable.
        """
        return self._client().session(server_name, config_id, **options)

    def reload(self) -> None:
        """Read the current app's gateway file again on next use (cached tokens stay)."""
        self._client().reload()

    # -- metrics --------------------------------------------------------------------------

    def metrics_blueprint(self, url_prefix: str = "/oauth-gateway", name: str = "oauth_gateway") -> flask.Blueprint:
        """Return a blueprint serving the current app's token metrics.

        ``GET <url_prefix>/metrics`` answers in the Prometheus text format,
        ``GET <url_prefix>/metrics.json`` with :meth:`TokenManager.get_metrics` as JSON.
        Neither shows a token or a secret; protect them as you would other operational
        endpoints.

        Args:
            url_prefix: where to mount the two routes.
            name: the blueprint's name (endpoints are ``<name>.metrics`` and ``<name>.metrics_json``).
        """
        blueprint = flask.Blueprint(name, __name__, url_prefix=url_prefix)

        @blueprint.route("/metrics", methods=["GET"])
        def metrics() -> flask.Response:
            return flask.Response(self._client().metrics_text(), content_type=PROMETHEUS_CONTENT_TYPE)

        @blueprint.route("/metrics.json", methods=["GET"])
        def metrics_json() -> Dict[str, Any]:
            return self._client().metrics()

        return blueprint

    def __repr__(self) -> str:
        return "OAuthGateway(app=%r)" % (self.app.name if self.app is not None else None,)
