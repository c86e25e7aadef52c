"""The oauth_gateway Django app: reads ``settings.OAUTH_GATEWAY`` and registers the system check."""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from .._common import GatewayClient, renew_lock_after_fork

#: The Django setting this app reads.
SETTING = "OAUTH_GATEWAY"
#: Keys accepted in ``settings.OAUTH_GATEWAY``.
SETTING_KEYS = ("CONFIG_FILE", "SERVERS", "CHECK_ENVIRONMENT")


class Options(NamedTuple):
    """``settings.OAUTH_GATEWAY``, checked.

    Attributes:
        config_file: the gateway file, or None for ``$OAUTH_GATEWAY_CONFIG`` or the default path.
        servers: the server names the project uses, or None for every server in the file.
        check_environment: whether the system check also builds each server's config
            (``${ENV}`` references, secret files, TLS files), not only the schema.
    """

    config_file: Optional[str] = None
    servers: Optional[Tuple[str, ...]] = None
    check_environment: bool = True


def read_options() -> Tuple[Options, List[Tuple[str, str, str]]]:
    """Read ``settings.OAUTH_GATEWAY``.

    Returns:
        The options (defaults where a value is wrong) and the problems found, each
        ``(where, problem, hint)``, like ``("OAUTH_GATEWAY['SERVERS']", "must be ...", "...")``.
    """
    raw = getattr(settings, SETTING, None)
    if raw is None:
        return Options(), []
    problems: List[Tuple[str, str, str]] = []
    if not isinstance(raw, dict):
        got = "must be a dict, got %s" % type(raw).__name__
        problems.append((SETTING, got, 'write it as {"CONFIG_FILE": "/path/to/file.json"}'))
        return Options(), problems
    values: Dict[str, Any] = {}
    for key in raw:
        if key not in SETTING_KEYS:
            problems.append(
                ("%s[%r]" % (SETTING, key), "unknown key", "remove it; the keys are %s" % ", ".join(SETTING_KEYS))
            )
    config_file = raw.get("CONFIG_FILE")
    if config_file is not None:
        if isinstance(config_file, (str, os.PathLike)) and os.fspath(config_file):
            values["config_file"] = os.fspath(config_file)
        else:
            problems.append(
                (
                    "%s['CONFIG_FILE']" % SETTING,
                    "must be a file path or None, got %s" % type(config_file).__name__,
                    "give the path of the gateway file, or None for $OAUTH_GATEWAY_CONFIG "
                    "or ~/.enkrypt/enkrypt_mcp_config.json",
                )
            )
    servers = raw.get("SERVERS")
    if servers is not None:
        if isinstance(servers, (list, tuple)) and all(isinstance(s, str) and s for s in servers):
            values["servers"] = tuple(servers)
        else:
            problems.append(
                (
                    "%s['SERVERS']" % SETTING,
                    "must be a list of server names",
                    'write it as ["oauth-api"], or leave it out to check every server',
                )
            )
    check_environment = raw.get("CHECK_ENVIRONMENT", True)
    if isinstance(check_environment, bool):
        values["check_environment"] = check_environment
    else:
        problems.append(("%s['CHECK_ENVIRONMENT']" % SETTING, "must be True or False", "use a boolean, not a string"))
    return Options(**values), problems


class OAuthGatewayConfig(AppConfig):
    """The app; holds the process's :class:`~oauth_gateway.contrib._common.GatewayClient`. Thread-safe."""

    name = "oauth_gateway.contrib.django"
    label = "oauth_gateway"
    verbose_name = "OAuth gateway"

    def __init__(self, app_name: str, app_module: Any):
        super().__init__(app_name, app_module)
        self._lock = threading.Lock()
        self._client: Optional[GatewayClient] = None
        renew_lock_after_fork(self)

    def ready(self) -> None:
        from .checks import check_gateway_config

        checks.register(check_gateway_config, "oauth_gateway")
        setting_changed.connect(self._setting_changed, dispatch_uid="oauth_gateway.setting_changed")

    @property
    def client(self) -> GatewayClient:
        """The gateway file and token manager of this process, made on first use.

        Raises:
            ImproperlyConfigured: ``settings.OAUTH_GATEWAY`` is malformed.
        """
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    options, problems = read_options()
                    if problems:
                        where, problem, hint = problems[0]
                        raise ImproperlyConfigured("%s: %s; %s" % (where, problem, hint))
                    self._client = GatewayClient(options.config_file)
                client = self._client
        return client

    def _setting_changed(self, setting: str, **kwargs: Any) -> None:
        # Tests (override_settings) and reloads get a new client for the new file.
        if setting == SETTING:
            with self._lock:
                if self._client is not None:
                    self._client.manager.close()
                self._client = None
