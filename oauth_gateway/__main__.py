"""``python -m oauth_gateway``: the same program as the ``oauth-gateway`` command."""

from __future__ import annotations

import os
import sys


def _drop_working_directory() -> None:
    """Do what ``python -P`` does (3.11+) on every Python: take the current directory off ``sys.path``.

    ``python -m`` puts it first, so a file under check (a config-only pull request in CI)
    could name a module of its own as ``OAUTH_PROVIDER``. The package itself is imported
    already.
    """
    if not sys.path:
        return
    first = sys.path[0]
    try:
        here = os.getcwd()
    except OSError:  # the directory was removed: nothing can be imported from it anyway
        here = None
    if first in ("", os.curdir) or (here is not None and os.path.realpath(first) == os.path.realpath(here)):
        del sys.path[0]


if __name__ == "__main__":
    _drop_working_directory()
    from oauth_gateway.cli import main

    sys.exit(main())
