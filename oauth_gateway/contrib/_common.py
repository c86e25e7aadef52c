"""What the web framework integrations share: one gateway file and one TokenManager.

:class:`GatewayClient` loads the gateway file on first use, builds each server's
:class:`~oauth_gateway.OAuthConfig` once, and hands out tokens, ``requests`` auth
objects and sessions from one manager. Flask keeps one per app, Django one per process.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Dict, Optional, Tuple

import requests

from ..auth import TokenAuth
from ..config import OAuthConfig
from ..gateway import GatewayConfig, load_gateway_config
from ..manager import TokenManager
from ..metrics import prometheus_text
from ..tokens import Token

#: ``Content-Type`` of the Prometheus text exposition format served by the metrics views.
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_ConfigKey = Tuple[str, Optional[str], Optional[str]]

# Objects whose ``_lock`` is replaced in a forked child (gunicorn --preload, multiprocessing).
_LOCK_OWNERS: weakref.WeakSet[Any] = weakref.WeakSet()


def renew_lock_after_fork(owner: Any) -> None:
    """Give ``owner`` a new ``_lock`` in a child after ``os.fork()``: another thread may have held the old one."""
    _LOCK_OWNERS.add(owner)


def _renew_locks() -> None:
    for owner in list(_LOCK_OWNERS):
        owner._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_locks)


class GatewayClient:
    """A gateway file, read on first use, and the manager its servers' tokens come from. Thread-safe.

    The file is read once; each server's config is built once (``${ENV}`` references
    resolved then). Call :meth:`reload` after editing the file or the environment.

    Args:
        config_file: the gateway file; None means ``$OAUTH_GATEWAY_CONFIG``, else
            ``~/.enkrypt/enkrypt_mcp_config.json``.
        manager: where tokens are cached; a new :class:`~oauth_gateway.TokenManager` by default.
    """

    def __init__(self, config_file: Optional[str] = None, manager: Optional[TokenManager] = None):
        self.config_file = config_file
        self.manager = manager if manager is not None else TokenManager()
        # Guards _gateway and _configs; held while reading the file, never during HTTP.
        self._lock = threading.Lock()
        self._gateway: Optional[GatewayConfig] = None
        self._configs: Dict[_ConfigKey, Tuple[str, OAuthConfig]] = {}
        renew_lock_after_fork(self)

    def gateway_config(self) -> GatewayConfig:
        """Return the loaded gateway file, reading it on the first call.

        Raises:
            ConfigError: the file is missing, unreadable, not JSON or breaks the schema.
        """
        gateway = self._gateway
        if gateway is None:
            with self._lock:
                if self._gateway is None:
                    self._gateway = load_gateway_config(self.config_file)
                gateway = self._gateway
        return gateway

    def oauth_config(
        self, server_name: str, config_id: Optional[str] = None, config_name: Optional[str] = None
    ) -> Tuple[str, OAuthConfig]:
        """Return ``(config_id, OAuthConfig)`` of a server in the gateway file.

        Args:
            server_name: the entry's ``server_name``.
            config_id: key under ``mcp_configs``; needed only when the name is not unique.
            config_name: a config's ``mcp_config_name``, another way to choose.

        Raises:
            ConfigError: the file is unusable, or the server is missing, ambiguous,
                without ``oauth_config``, disabled or invalid (with its JSON path).
        """
        key = (server_name, config_id, config_name)
        found = self._configs.get(key)
        if found is None:
            gateway = self.gateway_config()
            with self._lock:
                found = self._configs.get(key)
                if found is None:
                    found_id, _entry = gateway.find_server(server_name, config_id, config_name)
                    found = (found_id, gateway.oauth_config(server_name, config_id=found_id))
                    self._configs[key] = found
        return found

    def get_token(self, server_name: str, config_id: Optional[str] = None, config_name: Optional[str] = None) -> Token:
        """Return a valid token for a server (see :meth:`TokenManager.get_token`)."""
        found_id, config = self.oauth_config(server_name, config_id, config_name)
        return self.manager.get_token(server_name, config, found_id)

    def auth(
        self, server_name: str, config_id: Optional[str] = None, config_name: Optional[str] = None, **options: Any
    ) -> TokenAuth:
        """Return a ``requests`` auth object for a server (options as for :class:`~oauth_gateway.auth.TokenAuth`)."""
        found_id, config = self.oauth_config(server_name, config_id, config_name)
        return self.manager.auth(server_name, config, found_id, **options)

    def session(
        self, server_name: str, config_id: Optional[str] = None, config_name: Optional[str] = None, **options: Any
    ) -> requests.Session:
        """Return a new ``requests.Session`` that sends the server's token and recovers from a 401.

        The config is resolved before the session is made, so a bad name fails here.
        Keep the session to reuse its connections; close it when done.
        """
        auth = self.auth(server_name, config_id, config_name, **options)
        session = requests.Session()
        session.auth = auth
        return session

    def reload(self) -> None:
        """Forget the loaded file and configs; the next call reads the file again. Cached tokens stay."""
        with self._lock:
            self._gateway = None
            self._configs = {}

    def metrics(self) -> Dict[str, Any]:
        """Return :meth:`TokenManager.get_metrics`."""
        return self.manager.get_metrics()

    def metrics_text(self) -> str:
        """Return the metrics in the Prometheus text exposition format."""
        return prometheus_text(self.manager.get_metrics())

    def __repr__(self) -> str:
        return "GatewayClient(config_file=%r, loaded=%r)" % (self.config_file, self._gateway is not None)
