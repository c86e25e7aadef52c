"""Call OAuth-protected URLs from cron, with a token for a server of the gateway file.

Usage (the gateway file is $OAUTH_GATEWAY_CONFIG, else ~/.enkrypt/enkrypt_mcp_config.json)::

    python3 cron_script.py oauth-api https://api.example.com/v1/report https://api.example.com/v1/usage

    # crontab: every 15 minutes
    */15 * * * * OAUTH_GATEWAY_CONFIG=/etc/mcp/gateway.json python3 cron_script.py oauth-api https://api.example.com/v1/report

One token serves every call; a token the API rejects (revoked, rotated keys) is
replaced and the call sent once more. Prints one line per URL.
Exit status: 0 all calls succeeded, 1 a call failed, 2 the config or the token is unusable.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional, Sequence

import requests

import oauth_gateway as og


def call_api(server_name: str, urls: Sequence[str]) -> List[requests.Response]:
    """GET each URL with a token for ``server_name``; raises OAuthGatewayError or RequestException."""
    gateway = og.load_gateway_config()  # $OAUTH_GATEWAY_CONFIG, else ~/.enkrypt/enkrypt_mcp_config.json
    config_id, _entry = gateway.find_server(server_name)
    config = gateway.oauth_config(server_name, config_id=config_id)

    manager = og.TokenManager()
    with requests.Session() as session:
        session.auth = manager.auth(server_name, config, config_id)
        return [session.get(url, timeout=30) for url in urls]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="GET URLs with a token from the gateway file.")
    parser.add_argument("server", help="server_name of the API in the gateway file")
    parser.add_argument("urls", nargs="+", metavar="URL", help="URLs to GET")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        responses = call_api(args.server, args.urls)
    except og.OAuthGatewayError as error:  # the file, the server's oauth_config, or no token
        print("oauth-gateway: %s" % error, file=sys.stderr)
        return 2
    except requests.RequestException as error:
        print("request failed: %s" % error.__class__.__name__, file=sys.stderr)
        return 1
    for response in responses:
        rejected = any(earlier.status_code == 401 for earlier in response.history)
        note = " (after replacing a rejected token)" if rejected else ""
        print("%d %s%s" % (response.status_code, response.url, note))
    return 0 if all(response.ok for response in responses) else 1


if __name__ == "__main__":
    sys.exit(main())
