"""Build script for oauth-gateway; the metadata lives in setup.cfg.

Only the package list is computed here, because setup.cfg cannot add a
package that ``find:`` does not see: the JSON schemas at the repository root
(``schemas/*.json``, the single source) are installed as the data-only
package ``oauth_gateway.schemas``, so the wheel carries them as
``oauth_gateway/schemas/*.json``.
"""

from __future__ import annotations

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["oauth_gateway", "oauth_gateway.*"]) + ["oauth_gateway.schemas"],
    package_dir={"oauth_gateway.schemas": "schemas"},
)
