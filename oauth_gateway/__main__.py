"""``python -m oauth_gateway``: the same program as the ``oauth-gateway`` command."""

from __future__ import annotations

import sys

from oauth_gateway.cli import main

if __name__ == "__main__":
    sys.exit(main())
