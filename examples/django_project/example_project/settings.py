"""Settings of the example project: only what oauth_gateway needs, no database.

Set DJANGO_SECRET_KEY in production. OAUTH_SERVER_NAME (default oauth-api) and
UPSTREAM_URL choose the API the /data view calls.
"""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-change-me")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "example_project.urls"
MIDDLEWARE = []
DATABASES = {}
USE_TZ = True

INSTALLED_APPS = [
    "oauth_gateway.contrib.django",
]

OAUTH_GATEWAY = {
    # The gateway file; None means $OAUTH_GATEWAY_CONFIG, else ~/.enkrypt/enkrypt_mcp_config.json
    "CONFIG_FILE": None,
    # `manage.py check` fails unless these servers exist, are enabled and usable
    "SERVERS": [os.environ.get("OAUTH_SERVER_NAME", "oauth-api")],
}

OAUTH_SERVER_NAME = OAUTH_GATEWAY["SERVERS"][0]
UPSTREAM_URL = os.environ.get("UPSTREAM_URL", "https://api.example.com/v1/data")
