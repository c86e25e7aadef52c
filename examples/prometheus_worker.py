"""A worker that calls an OAuth-protected API on a schedule and exposes its token metrics to Prometheus.

Run it (the gateway file is $OAUTH_GATEWAY_CONFIG, else ~/.enkrypt/enkrypt_mcp_config.json)::

    pip install 'oauth-gateway[prometheus]'
    UPSTREAM_URL=https://api.example.com/v1/ping python3 prometheus_worker.py
    curl http://127.0.0.1:9464/metrics

Environment: OAUTH_SERVER_NAME (default oauth-api), UPSTREAM_URL, METRICS_PORT (default
9464), INTERVAL (seconds between calls, default 60). Stop it with Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import logging
import os
import time

import requests
from prometheus_client import REGISTRY, start_http_server

import oauth_gateway as og
from oauth_gateway.contrib.prometheus import OAuthGatewayCollector

SERVER = os.environ.get("OAUTH_SERVER_NAME", "oauth-api")
UPSTREAM_URL = os.environ.get("UPSTREAM_URL", "https://api.example.com/v1/ping")
METRICS_PORT = int(os.environ.get("METRICS_PORT", "9464"))
INTERVAL = float(os.environ.get("INTERVAL", "60"))

log = logging.getLogger("prometheus_worker")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    gateway = og.load_gateway_config()
    config_id, _entry = gateway.find_server(SERVER)
    config = gateway.oauth_config(SERVER, config_id=config_id)

    manager = og.TokenManager()
    REGISTRY.register(OAuthGatewayCollector(manager))
    start_http_server(METRICS_PORT, addr="127.0.0.1")

    with requests.Session() as session:
        session.auth = manager.auth(SERVER, config, config_id)
        while True:
            try:
                response = session.get(UPSTREAM_URL, timeout=30)
                log.info("%s answered %d", UPSTREAM_URL, response.status_code)
            except (og.OAuthGatewayError, requests.RequestException) as error:
                log.warning("calling %s failed: %s", UPSTREAM_URL, error)
            time.sleep(INTERVAL)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
