"""The oauth_gateway Django app: reads ``settings.OAUTH_GATEWAY`` and registers the system check."""

from __future__ import annotations

import threading
from typing import Any, Optional

from django.apps import AppConfig
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from .._common import GatewayClient, renew_lock_after_fork
from ._settings import SETTING, read_options
from .checks import check_gateway_config

__all__ = ("OAuthGatewayConfig",)


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
