"""A tiny WSGI app for gunicorn: every request gets a token through a shared cache.

Configured by the environment, as a deployment would be:

* ``OAUTH_GATEWAY_TOKEN_CACHE``: the cache (``file:/dir`` or ``redis://...``), read by
  ``cache_from_settings()``, so no code names the cache.
* ``OAUTH_GATEWAY_TEST_BLOCK``: path of a JSON file holding the ``oauth_config`` block.

``GET /ping`` answers without a token (readiness); any other path answers
``{"pid": ..., "fingerprint": ...}`` (never the token).
"""

from __future__ import annotations

import json
import os
import time
import warnings

warnings.filterwarnings("ignore", message=".*no longer supported.*")  # cryptography on 3.8

import oauth_gateway as og  # noqa: E402
from oauth_gateway.contrib.cache_settings import cache_from_settings  # noqa: E402

with open(os.environ["OAUTH_GATEWAY_TEST_BLOCK"], encoding="utf-8") as _handle:
    _CONFIG = og.OAuthConfig.from_dict(json.load(_handle))

# One manager per worker process: gunicorn imports the app in each worker (no --preload).
_MANAGER = og.TokenManager(cache=cache_from_settings())


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/ping":
        body = b"pong"
    else:
        token = _MANAGER.get_token("gunicorn-api", _CONFIG)
        time.sleep(0.005)  # a little work, so the load spreads over the workers
        body = json.dumps({"pid": os.getpid(), "fingerprint": token.fingerprint}).encode("utf-8")
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
