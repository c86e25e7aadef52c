#!/usr/bin/env python3
"""Django's command-line utility for the example project.

python3 manage.py check                           # fails on a bad gateway file
python3 manage.py oauth_gateway_token oauth-api   # a masked token
python3 manage.py runserver                       # /data and /oauth-gateway/metrics
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
