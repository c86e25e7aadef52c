"""A Flask app that calls an OAuth-protected API with tokens from the gateway file.

Run it (the gateway file is $OAUTH_GATEWAY_CONFIG, else ~/.enkrypt/enkrypt_mcp_config.json)::

    pip install 'oauth-gateway[flask]'
    UPSTREAM_URL=https://api.example.com/v1/data python3 flask_app.py      # or: flask --app flask_app run
    curl http://127.0.0.1:5000/data
    curl http://127.0.0.1:5000/oauth-gateway/metrics

Settings come from the environment: OAUTH_SERVER_NAME (default oauth-api), UPSTREAM_URL,
PORT (default 5000).
"""

from __future__ import annotations

import os

from flask import Flask, jsonify

from oauth_gateway.contrib.flask import OAuthGateway

SERVER = os.environ.get("OAUTH_SERVER_NAME", "oauth-api")
UPSTREAM_URL = os.environ.get("UPSTREAM_URL", "https://api.example.com/v1/data")

gateway = OAuthGateway()


def create_app() -> Flask:
    app = Flask(__name__)
    # The gateway file; None (the default) means $OAUTH_GATEWAY_CONFIG, else ~/.enkrypt/enkrypt_mcp_config.json
    app.config.setdefault("OAUTH_GATEWAY_CONFIG_FILE", None)
    gateway.init_app(app)
    app.register_blueprint(gateway.metrics_blueprint(url_prefix="/oauth-gateway"))

    @app.route("/data")
    def data():
        with gateway.session(SERVER) as api:
            upstream = api.get(UPSTREAM_URL, timeout=10)
        if not upstream.ok:
            return jsonify(error="upstream answered %d" % upstream.status_code), 502
        return jsonify(upstream=upstream.json())

    return app


app = create_app()

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
